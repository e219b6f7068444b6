//! Classifier-free guidance fused with a linear sampler update.
//!
//! Deterministic first-order steps (Euler, flow-matching Euler, DDIM with eta = 0,
//! DPM-Solver++ first order) are linear in the sample and the model output:
//! `next = a * x + b * out`. With guidance, `out = uncond + g (cond - uncond)`. Done with
//! separate tensor ops this reads and writes the latents six times; fused it is one pass.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `a * x + b * (uncond + g * (cond - uncond))`, elementwise, for f32 tensors of one shape.
///
/// A candle custom op: the CPU body reads the three inputs in place and writes the output
/// once; the CUDA twin goes in [`GuidedLinearStep::cuda_fwd`] (not built yet: it errors).
pub fn guided_linear_step(x: &Tensor, cond: &Tensor, uncond: &Tensor, g: f32, a: f32, b: f32) -> Result<Tensor> {
    if x.shape() != cond.shape() || x.shape() != uncond.shape() {
        candle_core::bail!("guided_linear_step: shapes differ: {:?}, {:?}, {:?}", x.shape(), cond.shape(), uncond.shape());
    }
    x.apply_op3_no_bwd(cond, uncond, &GuidedLinearStep { g, a, b })
}

/// The fused op's parameters.
struct GuidedLinearStep {
    g: f32,
    a: f32,
    b: f32,
}

/// A contiguous f32 view of a CPU tensor's storage.
fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("guided_linear_step: inputs must be contiguous");
    };
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        other => candle_core::bail!("guided_linear_step: f32 only, got {:?}", other.dtype()),
    }
}

impl CustomOp3 for GuidedLinearStep {
    fn name(&self) -> &'static str {
        "guided-linear-step"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (xs, cs, us) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let (g, a, b) = (self.g, self.a, self.b);
        let mut out = vec![0f32; xs.len()];
        const CHUNK: usize = 1 << 15;
        let body = |(ci, chunk): (usize, &mut [f32])| {
            let start = ci * CHUNK;
            let (x, c, u) = (&xs[start..start + chunk.len()], &cs[start..start + chunk.len()], &us[start..start + chunk.len()]);
            for (((o, &x), &c), &u) in chunk.iter_mut().zip(x).zip(c).zip(u) {
                *o = a * x + b * (u + g * (c - u));
            }
        };
        if out.len() > CHUNK {
            out.par_chunks_mut(CHUNK).enumerate().for_each(body);
        } else {
            out.chunks_mut(CHUNK).enumerate().for_each(body);
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _s1: &candle_core::CudaStorage,
        _l1: &Layout,
        _s2: &candle_core::CudaStorage,
        _l2: &Layout,
        _s3: &candle_core::CudaStorage,
        _l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        // ---- CUDA TWIN GOES HERE (kernels/cuda/guided_update.cu) ----
        candle_core::bail!("guided_linear_step: the CUDA twin is not built yet; use the unfused path")
    }
}

/// The same computation with separate candle ops (the reference the fused kernel must match).
pub fn guided_linear_step_unfused(x: &Tensor, cond: &Tensor, uncond: &Tensor, g: f32, a: f32, b: f32) -> Result<Tensor> {
    let guided = (uncond + (cond - uncond)?.affine(g as f64, 0.0)?)?;
    x.affine(a as f64, 0.0)? + guided.affine(b as f64, 0.0)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use rand::{Rng, SeedableRng};

    #[test]
    fn fused_matches_unfused() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 2 * 4 * 33 * 17;
        let mut draw = || Tensor::from_vec((0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect::<Vec<_>>(), (2, 4, 33, 17), &Device::Cpu).unwrap();
        let (x, c, u) = (draw(), draw(), draw());
        let fused = guided_linear_step(&x, &c, &u, 7.5, 0.98, -0.12).unwrap();
        let plain = guided_linear_step_unfused(&x, &c, &u, 7.5, 0.98, -0.12).unwrap();
        let diff = crate::test_util::max_abs_diff(&fused, &plain);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((4,), DType::F32, &Device::Cpu).unwrap();
        let f64s = Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(guided_linear_step(&f64s, &f64s, &f64s, 1.0, 1.0, 1.0).is_err());
        assert!(guided_linear_step(&a, &a, &b, 1.0, 1.0, 1.0).is_err());
    }
}
