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
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&v))
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
