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
