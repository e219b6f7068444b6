//! Launching stipple's CUDA kernels (`kernels/cuda/*.cu`, compiled to PTX by `build.rs`)
//! on candle's CUDA device. Each kernel has a CPU twin with the same semantics in its
//! module; the tests compare the two on random inputs wherever a GPU is present.

// `device()` of the CUDA storage
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{DType, Error, Result, Storage, Tensor};

use crate::confidence::{Accumulate, GumbelNoise, GumbelPick, RowStats};

const CONFIDENCE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/confidence.ptx"));

/// Threads per row of the confidence kernel (a power of two: the block reduction halves).
const CONFIDENCE_THREADS: u32 = 256;
/// Shared memory per thread: the largest softmax state (f64 accumulation) and a Gumbel pick.
const CONFIDENCE_STATE_BYTES: u32 = 40 + 16;

fn wrap(e: impl std::fmt::Display) -> Error {
    Error::Msg(format!("CUDA kernel: {e}"))
}

/// [`crate::confidence::confidence_stats`] on a CUDA tensor: one block per row.
pub(crate) fn confidence_stats(logits: &Tensor, vocab: usize, acc: Accumulate) -> Result<Vec<RowStats>> {
    let logits = logits.contiguous()?;
    let rows = logits.elem_count() / vocab;
    let (storage, layout) = logits.storage_and_layout();
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| Error::Msg("confidence_stats: non-contiguous logits".into()))?;
    let Storage::Cuda(cuda) = &*storage else {
        return Err(Error::Msg("confidence_stats: expected CUDA storage".into()));
    };
    let dev: &CudaDevice = cuda.device();
    let name = format!("confidence_{}_{}", dtype_name(logits.dtype())?, acc_name(acc));
    let func = dev.get_or_load_custom_func(&name, "stipple_confidence", CONFIDENCE_PTX)?;
    let out = dev.alloc_zeros::<f64>(rows * 6)?;
    let config = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (CONFIDENCE_THREADS, 1, 1), shared_mem_bytes: CONFIDENCE_THREADS * CONFIDENCE_STATE_BYTES };
    let (rows_u32, vocab_u32) = (rows as u32, vocab as u32);
    macro_rules! launch {
        ($t:ty) => {{
            let slice = cuda.as_cuda_slice::<$t>()?.slice(start..end);
            let mut builder = func.builder();
            builder.arg(&slice).arg(&out).arg(&rows_u32).arg(&vocab_u32);
            // Safety: the arguments match the kernel's signature (logits, out, rows, vocab),
            // `out` holds 6 doubles per row and the grid has one block per row.
            unsafe { builder.launch(config) }.map_err(wrap)?;
        }};
    }
    match logits.dtype() {
        DType::F32 => launch!(f32),
        DType::F16 => launch!(half::f16),
        _ => launch!(half::bf16),
    }
    let host = dev.clone_dtoh(&out)?;
    Ok(host
        .chunks(6)
        .map(|o| RowStats { argmax: o[0] as u32, max_logit: o[1], sum_exp: o[2], p1: o[3], p2: o[4], neg_entropy: o[5] })
        .collect())
}

/// [`crate::confidence::gumbel_pick`] on a CUDA tensor: one block per row, Philox noise.
pub(crate) fn gumbel_pick(logits: &Tensor, vocab: usize, row_ids: &[u32], noise: GumbelNoise, acc: Accumulate) -> Result<Vec<GumbelPick>> {
    let logits = logits.contiguous()?;
    let rows = logits.elem_count() / vocab;
    let (storage, layout) = logits.storage_and_layout();
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| Error::Msg("gumbel_pick: non-contiguous logits".into()))?;
    let Storage::Cuda(cuda) = &*storage else {
        return Err(Error::Msg("gumbel_pick: expected CUDA storage".into()));
    };
    let dev: &CudaDevice = cuda.device();
    let name = format!("gumbel_{}_{}", dtype_name(logits.dtype())?, acc_name(acc));
    let func = dev.get_or_load_custom_func(&name, "stipple_confidence", CONFIDENCE_PTX)?;
    let ids = dev.clone_htod(row_ids)?;
    let out = dev.alloc_zeros::<f64>(rows * 8)?;
    let config = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (CONFIDENCE_THREADS, 1, 1), shared_mem_bytes: CONFIDENCE_THREADS * CONFIDENCE_STATE_BYTES };
    let (rows_u32, vocab_u32) = (rows as u32, vocab as u32);
    macro_rules! launch {
        ($t:ty) => {{
            let slice = cuda.as_cuda_slice::<$t>()?.slice(start..end);
            let mut builder = func.builder();
            builder.arg(&slice).arg(&ids).arg(&out).arg(&rows_u32).arg(&vocab_u32).arg(&noise.key).arg(&noise.temperature);
            // Safety: the arguments match the kernel's signature (logits, row_ids, out, rows,
            // vocab, key, temperature), `ids` holds one id per row, `out` 8 doubles per row.
            unsafe { builder.launch(config) }.map_err(wrap)?;
        }};
    }
    match logits.dtype() {
        DType::F32 => launch!(f32),
        DType::F16 => launch!(half::f16),
        _ => launch!(half::bf16),
    }
    let host = dev.clone_dtoh(&out)?;
    Ok(host
        .chunks(8)
        .map(|o| GumbelPick {
            stats: RowStats { argmax: o[0] as u32, max_logit: o[1], sum_exp: o[2], p1: o[3], p2: o[4], neg_entropy: o[5] },
            token: o[6] as u32,
            logit: o[7] as f32,
        })
        .collect())
}

fn dtype_name(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        dt => Err(Error::Msg(format!("unsupported dtype {dt:?} (f32, f16, bf16)"))),
    }
}

fn acc_name(acc: Accumulate) -> &'static str {
    match acc {
        Accumulate::F32 => "acc32",
        Accumulate::F64 => "acc64",
    }
}
