//! SwiGLU's gate: `silu(g) * u` from one fused projection `[.., 2m]` whose first half is
//! the gate `g` and second half the up branch `u`.
//!
//! With separate ops this reads/writes the activations four times and allocates three
//! buffers; fused it is one parallel pass (the LLaDA / Dream MLP runs it every layer).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// `silu(x[.., :m]) * x[.., m:]` for `x` of last dimension `2m`.
///
/// CPU: a fused rayon kernel for f32 / f16 / bf16 (computed in f32). Other devices use
/// [`silu_mul_unfused`] until the CUDA twin exists.
pub fn silu_mul(x: &Tensor) -> Result<Tensor> {
    let last = x.dim(candle_core::D::Minus1)?;
    if last % 2 != 0 {
        candle_core::bail!("silu_mul: last dimension {last} is odd");
    }
    if !x.device().is_cpu() {
        return silu_mul_unfused(x);
    }
    let x = x.contiguous()?;
    x.apply_op1_no_bwd(&SiluMul)
}

/// The same with candle ops (the reference for the fused kernel).
pub fn silu_mul_unfused(x: &Tensor) -> Result<Tensor> {
    let m = x.dim(candle_core::D::Minus1)? / 2;
    let g = x.narrow(candle_core::D::Minus1, 0, m)?;
    let u = x.narrow(candle_core::D::Minus1, m, m)?;
    (g.silu()? * u)?.contiguous()
}

struct SiluMul;

#[inline(always)]
fn silu_mul_f32(g: f32, u: f32) -> f32 {
    g / (1.0 + crate::fastmath::exp(-g)) * u
}

#[inline(always)]
fn row_f32(g: &[f32], u: &[f32], o: &mut [f32]) {
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        *o = silu_mul_f32(g, u);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_f32_avx2(g: &[f32], u: &[f32], o: &mut [f32]) {
    row_f32(g, u, o)
}

/// One f32 row, in the AVX2 + FMA copy when the CPU has it.
fn row_f32_dispatch(g: &[f32], u: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::fastmath::has_avx2_fma() {
        // Safety: the features were just checked.
        unsafe { row_f32_avx2(g, u, o) };
        return;
    }
    row_f32(g, u, o)
}

fn run_f32(src: &[f32], m: usize) -> Vec<f32> {
    let rows = src.len() / (2 * m);
    let mut out = vec![0f32; rows * m];
    out.par_chunks_mut(m).enumerate().for_each(|(r, o)| {
        let (g, u) = src[r * 2 * m..(r + 1) * 2 * m].split_at(m);
        row_f32_dispatch(g, u, o);
    });
    out
}

fn run<T: Copy + Send + Sync>(src: &[T], m: usize, to: impl Fn(T) -> f32 + Sync, from: impl Fn(f32) -> T + Sync + Send, zero: T) -> Vec<T> {
    let rows = src.len() / (2 * m);
    let mut out = vec![zero; rows * m];
    out.par_chunks_mut(m).enumerate().for_each(|(r, o)| {
        let row = &src[r * 2 * m..(r + 1) * 2 * m];
        let (g, u) = row.split_at(m);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = from(silu_mul_f32(to(g), to(u)));
        }
    });
    out
}

impl CustomOp1 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("silu_mul: input must be contiguous");
        };
        let dims = l.shape().dims();
        let m = dims[dims.len() - 1] / 2;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = m;
        let storage = match s {
            CpuStorage::F32(v) => CpuStorage::F32(run_f32(&v[start..end], m)),
            CpuStorage::F16(v) => CpuStorage::F16(run(&v[start..end], m, f16::to_f32, f16::from_f32, f16::ZERO)),
            CpuStorage::BF16(v) => CpuStorage::BF16(run(&v[start..end], m, bf16::to_f32, bf16::from_f32, bf16::ZERO)),
            other => candle_core::bail!("silu_mul: unsupported dtype {:?}", other.dtype()),
        };
        Ok((storage, Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn fused_matches_unfused_for_every_dtype() {
        let x = Tensor::randn(0f32, 2.0, (3, 5, 2 * 37), &Device::Cpu).unwrap();
        let want = silu_mul_unfused(&x).unwrap();
        for dt in [DType::F32, DType::F16, DType::BF16] {
            let got = silu_mul(&x.to_dtype(dt).unwrap()).unwrap().to_dtype(DType::F32).unwrap();
            assert_eq!(got.dims(), &[3, 5, 37]);
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            // relative to the largest output (bf16 keeps 8 bits of mantissa)
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let tol = scale * if dt == DType::F32 { 1e-6 } else { 1e-2 };
            assert!(diff < tol, "{dt:?}: {diff}");
        }
        assert!(silu_mul(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
