//! Gated activations over one fused projection `[.., 2m]`, split in two halves `a | b`:
//!
//! * SwiGLU (LLaDA / Dream MLPs): `silu(a) * b`;
//! * GEGLU (the Stable Diffusion transformer feed-forward): `a * gelu(b)`, with the exact
//!   (erf) GELU.
//!
//! With separate ops this reads/writes the activations four times, allocates three
//! buffers, and candle's GELU calls a scalar `erf` per element (216 ms for one SD 1.5
//! feed-forward at 64x64); fused it is one vectorised parallel pass.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Which gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `silu(a) * b`.
    SiluFirst,
    /// `a * gelu(b)`.
    GeluSecond,
}

/// `silu(x[.., :m]) * x[.., m:]` for `x` of last dimension `2m` (SwiGLU).
pub fn silu_mul(x: &Tensor) -> Result<Tensor> {
    gated(x, Gate::SiluFirst)
}

/// `x[.., :m] * gelu(x[.., m:])` for `x` of last dimension `2m` (GEGLU).
pub fn gelu_mul(x: &Tensor) -> Result<Tensor> {
    gated(x, Gate::GeluSecond)
}

/// The fused kernel on CPU tensors and, with the `cuda` feature, its twin in
/// `kernels/cuda/gated.cu` on CUDA tensors (f32 / f16 / bf16, computed in f32); other
/// devices, and tensors tracked for gradients, use [`gated_unfused`].
pub fn gated(x: &Tensor, gate: Gate) -> Result<Tensor> {
    let last = x.dim(candle_core::D::Minus1)?;
    if last % 2 != 0 {
        candle_core::bail!("{gate:?}: last dimension {last} is odd");
    }
    if !(x.device().is_cpu() || cfg!(feature = "cuda") && x.device().is_cuda()) || x.track_op() {
        return gated_unfused(x, gate);
    }
    let x = x.contiguous()?;
    x.apply_op1_no_bwd(&Gated(gate))
}

/// The same with candle ops (the reference for the fused kernel).
pub fn gated_unfused(x: &Tensor, gate: Gate) -> Result<Tensor> {
    let m = x.dim(candle_core::D::Minus1)? / 2;
    let a = x.narrow(candle_core::D::Minus1, 0, m)?;
    let b = x.narrow(candle_core::D::Minus1, m, m)?;
    match gate {
        Gate::SiluFirst => (a.silu()? * b)?.contiguous(),
        Gate::GeluSecond => (a * b.gelu_erf()?)?.contiguous(),
    }
}

/// erf by Abramowitz & Stegun 7.1.26 (1.5e-7 in exact arithmetic; below 1e-6 in f32), on the vectorised exp.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * crate::fastmath::exp(-x * x);
    y.copysign(x)
}

#[inline(always)]
fn apply(gate: Gate, a: f32, b: f32) -> f32 {
    match gate {
        Gate::SiluFirst => a / (1.0 + crate::fastmath::exp(-a)) * b,
        Gate::GeluSecond => a * (0.5 * b * (1.0 + erf(b * std::f32::consts::FRAC_1_SQRT_2))),
    }
}

#[inline(always)]
fn row_f32(gate: Gate, a: &[f32], b: &[f32], o: &mut [f32]) {
    match gate {
        // one loop per gate, so each vectorises without a branch inside
        Gate::SiluFirst => o
            .iter_mut()
            .zip(a)
            .zip(b)
            .for_each(|((o, &a), &b)| *o = apply(Gate::SiluFirst, a, b)),
        Gate::GeluSecond => o
            .iter_mut()
            .zip(a)
            .zip(b)
            .for_each(|((o, &a), &b)| *o = apply(Gate::GeluSecond, a, b)),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_f32_avx2(gate: Gate, a: &[f32], b: &[f32], o: &mut [f32]) {
    row_f32(gate, a, b, o)
}

/// One f32 row, in the AVX2 + FMA copy when the CPU has it.
fn row_f32_dispatch(gate: Gate, a: &[f32], b: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::fastmath::has_avx2_fma() {
        // Safety: the features were just checked.
        unsafe { row_f32_avx2(gate, a, b, o) };
        return;
    }
    row_f32(gate, a, b, o)
}

fn run_f32(gate: Gate, src: &[f32], m: usize) -> Vec<f32> {
    let rows = src.len() / (2 * m);
    let mut out = vec![0f32; rows * m];
    out.par_chunks_mut(m).enumerate().for_each(|(r, o)| {
        let (a, b) = src[r * 2 * m..(r + 1) * 2 * m].split_at(m);
        row_f32_dispatch(gate, a, b, o);
    });
    out
}

fn run<T: Copy + Send + Sync>(
    gate: Gate,
    src: &[T],
    m: usize,
    to: impl Fn(T) -> f32 + Sync,
    from: impl Fn(f32) -> T + Sync + Send,
    zero: T,
) -> Vec<T> {
    let rows = src.len() / (2 * m);
    let mut out = vec![zero; rows * m];
    // each row widened to f32 once, so the vectorised f32 loop does the arithmetic
    out.par_chunks_mut(m).enumerate().for_each_init(
        || (vec![0f32; m], vec![0f32; m], vec![0f32; m]),
        |(a32, b32, o32), (r, o)| {
            let (a, b) = src[r * 2 * m..(r + 1) * 2 * m].split_at(m);
            a32.iter_mut().zip(a).for_each(|(d, &x)| *d = to(x));
            b32.iter_mut().zip(b).for_each(|(d, &x)| *d = to(x));
            row_f32_dispatch(gate, a32, b32, o32);
            o.iter_mut().zip(o32.iter()).for_each(|(d, &x)| *d = from(x));
        },
    );
    out
}

struct Gated(Gate);

impl CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        match self.0 {
            Gate::SiluFirst => "silu-mul",
            Gate::GeluSecond => "gelu-mul",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("{}: input must be contiguous", self.name());
        };
        let dims = l.shape().dims();
        let m = dims[dims.len() - 1] / 2;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = m;
        let g = self.0;
        let storage = match s {
            CpuStorage::F32(v) => CpuStorage::F32(run_f32(g, &v[start..end], m)),
            CpuStorage::F16(v) => CpuStorage::F16(run(
                g,
                &v[start..end],
                m,
                f16::to_f32,
                f16::from_f32,
                f16::ZERO,
            )),
            CpuStorage::BF16(v) => CpuStorage::BF16(run(
                g,
                &v[start..end],
                m,
                bf16::to_f32,
                bf16::from_f32,
                bf16::ZERO,
            )),
            other => candle_core::bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((storage, Shape::from(out_dims)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::gated(s, l, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn fused_matches_unfused_for_every_gate_and_dtype() {
        let x = Tensor::randn(0f32, 2.0, (3, 5, 2 * 37), &Device::Cpu).unwrap();
        for gate in [Gate::SiluFirst, Gate::GeluSecond] {
            let want = gated_unfused(&x, gate).unwrap();
            for dt in [DType::F32, DType::F16, DType::BF16] {
                let got = gated(&x.to_dtype(dt).unwrap(), gate)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap();
                assert_eq!(got.dims(), &[3, 5, 37]);
                let diff = crate::test_util::max_abs_diff(&got, &want);
                // relative to the largest output (bf16 keeps 8 bits of mantissa)
                let scale = want
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let tol = scale * if dt == DType::F32 { 2e-6 } else { 1e-2 };
                assert!(diff < tol, "{gate:?} {dt:?}: {diff}");
            }
        }
        assert!(silu_mul(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err());
    }

    /// The CUDA twin against the CPU kernel on fresh random inputs of several shapes (odd
    /// widths, LLaDA-8B's and SD 1.5's feed-forward widths), every gate and dtype.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_twin_gated_matches_the_cpu_kernel() {
        let Some(dev) = crate::test_util::cuda_device() else { return };
        for (i, shape) in [vec![1, 2], vec![3, 5, 2 * 37], vec![2, 64, 2 * 12_288], vec![2, 4096, 2 * 1280]].into_iter().enumerate() {
            let x = (crate::test_util::seeded_randn(&shape, 40 + i as u64) * 2.0).unwrap();
            for gate in [Gate::SiluFirst, Gate::GeluSecond] {
                for (dt, rel) in [(DType::F32, 1e-5), (DType::F16, 1e-2), (DType::BF16, 1e-2)] {
                    let x = x.to_dtype(dt).unwrap();
                    let want = gated(&x, gate).unwrap().to_dtype(DType::F32).unwrap();
                    let got = gated(&x.to_device(&dev).unwrap(), gate).unwrap().to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
                    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
                    let diff = crate::test_util::max_abs_diff(&got, &want);
                    assert!(diff <= rel * scale, "{shape:?} {gate:?} {dt:?}: {diff} (scale {scale})");
                }
            }
        }
    }

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        for i in -4000..=4000 {
            let x = i as f64 / 1000.0;
            // reference: erf via the complementary series of libm-free double arithmetic
            let want = erf_f64(x);
            worst = worst.max((erf(x as f32) as f64 - want).abs());
        }
        assert!(worst < 1e-6, "{worst}");
    }

    /// erf in f64 by its Taylor series (|x| <= 4 needs ~60 terms).
    fn erf_f64(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
