//! Launching stipple's CUDA kernels (`kernels/cuda/*.cu`, compiled to PTX by `build.rs`)
//! on candle's CUDA device. Each kernel has a CPU twin with the same semantics in its
//! module; the tests compare the two on random inputs wherever a GPU is present.

// `device()` of the CUDA storage
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{DType, Error, Layout, Result, Shape, Storage, Tensor};

use crate::confidence::{Accumulate, GumbelNoise, GumbelPick, RowStats};
use crate::gated::Gate;

const CONFIDENCE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/confidence.ptx"));
const GATED_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gated.ptx"));
const GROUP_NORM_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/group_norm.ptx"));

/// Threads per row of the confidence kernel (a power of two: the block reduction halves).
const CONFIDENCE_THREADS: u32 = 256;
/// Shared memory per thread: the largest softmax state (f64 accumulation) and a Gumbel pick.
const CONFIDENCE_STATE_BYTES: u32 = 40 + 16;

fn wrap(e: impl std::fmt::Display) -> Error {
    Error::Msg(format!("CUDA kernel: {e}"))
}

/// [`crate::confidence::confidence_stats`] on a CUDA tensor: one block per row.
pub(crate) fn confidence_stats(logits: &Tensor, vocab: usize, acc: Accumulate) -> Result<Vec<RowStats>> {
    Ok(row_pass(logits, vocab, acc, None)?.chunks(6).map(row_stats).collect())
}

/// [`crate::confidence::gumbel_pick`] on a CUDA tensor: one block per row, Philox noise.
pub(crate) fn gumbel_pick(logits: &Tensor, vocab: usize, row_ids: &[u32], noise: GumbelNoise, acc: Accumulate) -> Result<Vec<GumbelPick>> {
    Ok(row_pass(logits, vocab, acc, Some((row_ids, noise)))?
        .chunks(8)
        .map(|o| GumbelPick { stats: row_stats(&o[..6]), token: o[6] as u32, logit: o[7] as f32 })
        .collect())
}

/// The statistics in the kernel's first 6 doubles of a row.
fn row_stats(o: &[f64]) -> RowStats {
    RowStats { argmax: o[0] as u32, max_logit: o[1], sum_exp: o[2], p1: o[3], p2: o[4], neg_entropy: o[5] }
}

/// One launch of `confidence.cu` over every row of `logits`, one block per row: the
/// `confidence_*` kernel (6 doubles per row), or with `gumbel` the `gumbel_*` one (8).
fn row_pass(logits: &Tensor, vocab: usize, acc: Accumulate, gumbel: Option<(&[u32], GumbelNoise)>) -> Result<Vec<f64>> {
    let logits = logits.contiguous()?;
    let rows = logits.elem_count() / vocab;
    let (storage, layout) = logits.storage_and_layout();
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| Error::Msg("confidence kernel: non-contiguous logits".into()))?;
    let Storage::Cuda(cuda) = &*storage else {
        return Err(Error::Msg("confidence kernel: expected CUDA storage".into()));
    };
    let dev: &CudaDevice = cuda.device();
    let (kind, width) = if gumbel.is_some() { ("gumbel", 8) } else { ("confidence", 6) };
    let name = format!("{kind}_{}_{}", dtype_name(logits.dtype())?, acc_name(acc));
    let func = dev.get_or_load_custom_func(&name, "stipple_confidence", CONFIDENCE_PTX)?;
    let ids = gumbel.map(|(ids, _)| dev.clone_htod(ids)).transpose()?;
    let out = dev.alloc_zeros::<f64>(rows * width)?;
    let config = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (CONFIDENCE_THREADS, 1, 1), shared_mem_bytes: CONFIDENCE_THREADS * CONFIDENCE_STATE_BYTES };
    let (rows_u32, vocab_u32) = (rows as u32, vocab as u32);
    macro_rules! launch {
        ($t:ty) => {{
            let slice = cuda.as_cuda_slice::<$t>()?.slice(start..end);
            let mut builder = func.builder();
            builder.arg(&slice);
            if let Some(ids) = &ids {
                builder.arg(ids);
            }
            builder.arg(&out).arg(&rows_u32).arg(&vocab_u32);
            if let Some((_, noise)) = &gumbel {
                builder.arg(&noise.key).arg(&noise.temperature);
            }
            // Safety: the arguments match the kernel's signature, (logits, out, rows, vocab)
            // or (logits, row_ids, out, rows, vocab, key, temperature); `ids` holds one id
            // per row, `out` `width` doubles per row, and the grid has one block per row.
            unsafe { builder.launch(config) }.map_err(wrap)?;
        }};
    }
    match logits.dtype() {
        DType::F32 => launch!(f32),
        DType::F16 => launch!(half::f16),
        _ => launch!(half::bf16),
    }
    Ok(dev.clone_dtoh(&out)?)
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

/// A 1-D grid covering `n` elements with 256-thread blocks (grid-stride loops cover the rest).
fn elementwise_config(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// The gated activation ([`crate::gated::gated`]) of a contiguous CUDA storage `[.., 2m]`.
pub(crate) fn gated(storage: &CudaStorage, layout: &Layout, gate: Gate) -> Result<(CudaStorage, Shape)> {
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| Error::Msg("gated: input must be contiguous".into()))?;
    let dims = layout.shape().dims();
    let m = dims[dims.len() - 1] / 2;
    let rows = if m == 0 { 0 } else { (end - start) / (2 * m) };
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("rank >= 1") = m;
    let dev = storage.device().clone();
    let prefix = match gate {
        Gate::SiluFirst => "silu_mul",
        Gate::GeluSecond => "gelu_mul",
    };
    let func = dev.get_or_load_custom_func(&format!("{prefix}_{}", dtype_name(storage.dtype())?), "stipple_gated", GATED_PTX)?;
    let (rows_u64, m_u32) = (rows as u64, m as u32);
    let config = elementwise_config(rows * m);
    macro_rules! launch {
        ($t:ty) => {{
            let src = storage.as_cuda_slice::<$t>()?.slice(start..end);
            // Safety: every element is written by the kernel before it is read.
            let out = unsafe { dev.alloc::<$t>(rows * m) }?;
            let mut builder = func.builder();
            builder.arg(&src).arg(&out).arg(&rows_u64).arg(&m_u32);
            // Safety: the arguments match gated.cu's signature (x, y, rows, m); `src` holds
            // rows * 2m elements and `out` rows * m.
            unsafe { builder.launch(config) }.map_err(wrap)?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        }};
    }
    let out = match storage.dtype() {
        DType::F32 => launch!(f32),
        DType::F16 => launch!(half::f16),
        _ => launch!(half::bf16),
    };
    Ok((out, Shape::from_dims(&out_dims)))
}

/// [`crate::group_norm::group_norm`] of a CUDA tensor `[b, c, ...]`: one 1024-thread block
/// per (item, group).
pub(crate) fn group_norm(x: &Tensor, groups: usize, gamma: &Tensor, beta: &Tensor, eps: f64, silu: bool) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (b, c) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    if gamma.elem_count() != c || beta.elem_count() != c {
        candle_core::bail!("group_norm: {} / {} affine values for {c} channels", gamma.elem_count(), beta.elem_count());
    }
    let x = x.contiguous()?;
    let (gamma, beta) = (gamma.to_dtype(DType::F32)?.contiguous()?, beta.to_dtype(DType::F32)?.contiguous()?);
    let (xs, xl) = x.storage_and_layout();
    let (gs, gl) = gamma.storage_and_layout();
    let (bs, bl) = beta.storage_and_layout();
    let (Storage::Cuda(xs), Storage::Cuda(gs), Storage::Cuda(bs)) = (&*xs, &*gs, &*bs) else {
        candle_core::bail!("group_norm: expected CUDA tensors");
    };
    let (x0, x1) = xl.contiguous_offsets().expect("contiguous");
    let g = gs.as_cuda_slice::<f32>()?.slice(gl.start_offset()..gl.start_offset() + c);
    let bt = bs.as_cuda_slice::<f32>()?.slice(bl.start_offset()..bl.start_offset() + c);
    let dev = xs.device().clone();
    let func = dev.get_or_load_custom_func(&format!("group_norm_{}", dtype_name(x.dtype())?), "stipple_group_norm", GROUP_NORM_PTX)?;
    let config = LaunchConfig { grid_dim: ((b * groups) as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
    let (groups_u32, c_u32, spatial_u32, eps_f32, silu_i32) = (groups as u32, c as u32, spatial as u32, eps as f32, silu as i32);
    macro_rules! launch {
        ($t:ty) => {{
            let src = xs.as_cuda_slice::<$t>()?.slice(x0..x1);
            // Safety: every element is written by the kernel before it is read.
            let out = unsafe { dev.alloc::<$t>(x1 - x0) }?;
            let mut builder = func.builder();
            builder.arg(&src).arg(&g).arg(&bt).arg(&out).arg(&groups_u32).arg(&c_u32).arg(&spatial_u32).arg(&eps_f32).arg(&silu_i32);
            // Safety: the arguments match group_norm.cu's signature; the grid has one block
            // per (item, group) and `out` as many elements as `src`.
            unsafe { builder.launch(config) }.map_err(wrap)?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        }};
    }
    let out = match x.dtype() {
        DType::F32 => launch!(f32),
        DType::F16 => launch!(half::f16),
        _ => launch!(half::bf16),
    };
    Ok(Tensor::from_storage(Storage::Cuda(out), dims, candle_core::op::BackpropOp::none(), false))
}
