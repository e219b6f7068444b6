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
