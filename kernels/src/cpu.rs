//! Borrowing a CPU tensor's values without copying them.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};

/// Runs `f` on the f32 values of a CPU tensor in row-major order: the storage itself when
/// it is f32 and contiguous (the usual case, and no copy), a converted copy otherwise.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&v[start..end]));
        }
    }
    {
        // f16 / bf16: widened in parallel (candle's to_dtype is one thread)
        use rayon::prelude::*;
        let (storage, layout) = t.storage_and_layout();
        let widened: Option<Vec<f32>> = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::BF16(v)), Some((s, e))) => Some(v[s..e].par_iter().with_min_len(1 << 14).map(|x| x.to_f32()).collect()),
            (Storage::Cpu(CpuStorage::F16(v)), Some((s, e))) => Some(v[s..e].par_iter().with_min_len(1 << 14).map(|x| x.to_f32()).collect()),
            _ => None,
        };
        if let Some(v) = widened {
            return Ok(f(&v));
        }
    }
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&v))
}

/// A CPU tensor of `dtype` from f32 values, narrowed in parallel for f16 / bf16.
pub fn from_f32(data: Vec<f32>, shape: &candle_core::Shape, dtype: DType) -> Result<Tensor> {
    use rayon::prelude::*;
    let dev = candle_core::Device::Cpu;
    match dtype {
        DType::BF16 => Tensor::from_vec(data.par_iter().with_min_len(1 << 14).map(|&x| half::bf16::from_f32(x)).collect::<Vec<_>>(), shape, &dev),
        DType::F16 => Tensor::from_vec(data.par_iter().with_min_len(1 << 14).map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>(), shape, &dev),
        _ => Tensor::from_vec(data, shape, &dev)?.to_dtype(dtype),
    }
}

/// A raw output pointer handed to parallel tasks that each write their own disjoint part
/// of the buffer behind it (the writer's contract, stated where it is used).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// Safety: only moved between the tasks of one parallel region, which write disjoint regions.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `n` zeros, written in parallel: a large buffer zeroed (and first touched) on the
/// calling thread alone showed up as serial time while the other cores waited.
pub fn par_zeroed(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let mut v: Vec<MaybeUninit<f32>> = Vec::with_capacity(n);
    // Safety: MaybeUninit elements need no initialisation.
    unsafe { v.set_len(n) };
    v.par_chunks_mut(1 << 15).for_each(|c| {
        for x in c {
            x.write(0.0);
        }
    });
    let mut v = std::mem::ManuallyDrop::new(v);
    // Safety: every element was written above; MaybeUninit<f32> has f32's layout.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// The transpose of a 2-D tensor, contiguous: on the CPU for f32 / f16 / bf16 a parallel
/// blocked copy (weights are transposed once at load, where candle's one-thread strided
/// copy took ~13% of an SD 1.5 load); elsewhere candle's `t().contiguous()`.
pub fn transpose(x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x.dims2()?;
    if !x.device().is_cpu() || x.track_op() {
        return x.t()?.contiguous();
    }
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        return x.t()?.contiguous();
    };
    let dev = candle_core::Device::Cpu;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Tensor::from_vec(transpose_slice(&v[start..end], rows, cols), (cols, rows), &dev),
        Storage::Cpu(CpuStorage::F16(v)) => Tensor::from_vec(transpose_slice(&v[start..end], rows, cols), (cols, rows), &dev),
        Storage::Cpu(CpuStorage::BF16(v)) => Tensor::from_vec(transpose_slice(&v[start..end], rows, cols), (cols, rows), &dev),
        _ => {
            drop(storage);
            x.t()?.contiguous()
        }
    }
}

/// `src` `[rows, cols]` row-major -> `[cols, rows]`: output rows in parallel, read in
/// 64-row tiles so each source cache line is used 16 times before it is evicted.
fn transpose_slice<T: Copy + Send + Sync>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    use rayon::prelude::*;
    const TILE: usize = 64;
    let mut out: Vec<T> = Vec::with_capacity(rows * cols);
    if rows == 0 || cols == 0 {
        return out;
    }
    // each task writes a block of TILE output rows (source columns)
    out.spare_capacity_mut().par_chunks_mut(TILE * rows).enumerate().for_each(|(block, dst)| {
        let c0 = block * TILE;
        let width = dst.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            for c in c0..c0 + width {
                let d = &mut dst[(c - c0) * rows..(c - c0 + 1) * rows];
                for r in r0..(r0 + TILE).min(rows) {
                    d[r].write(src[r * cols + c]);
                }
            }
        }
    });
    // Safety: the blocks cover every output element, each written once.
    unsafe { out.set_len(rows * cols) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_candle() {
        for (r, c) in [(1, 1), (3, 5), (64, 64), (65, 130), (200, 7)] {
            let x = Tensor::arange(0f32, (r * c) as f32, &candle_core::Device::Cpu).unwrap().reshape((r, c)).unwrap();
            for dt in [DType::F32, DType::BF16] {
                let x = x.to_dtype(dt).unwrap();
                let want = x.t().unwrap().contiguous().unwrap().to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
                let got = transpose(&x).unwrap();
                assert_eq!(got.dims(), &[c, r]);
                assert_eq!(got.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(), want);
            }
        }
    }
}
