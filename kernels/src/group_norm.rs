//! GroupNorm, optionally followed by SiLU, in one parallel pass per group.
//!
//! candle's GroupNorm is a chain of reductions and broadcasts (17 ms for one SD 1.5
//! 320-channel 64x64 activation, plus 5 ms for the SiLU after it); every UNet and VAE
//! residual block runs it twice. Here each (item, group) is one task: statistics in two
//! vectorised passes, then normalise, scale, shift and activate in a third.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// `silu?(group_norm(x) * gamma + beta)` for `x` `[b, c, ...]` with `groups` groups over
/// the channels. CPU tensors use the fused kernel (f16 / bf16 computed in f32), CUDA
/// tensors (with the `cuda` feature) its twin in `kernels/cuda/group_norm.cu`; other
/// devices use [`group_norm_unfused`].
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || groups == 0 || dims[1] % groups != 0 {
        candle_core::bail!(
            "group_norm: {:?} cannot be split into {groups} groups of channels",
            x.shape()
        );
    }
    if crate::tracks_grad(&[x, gamma, beta]) {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = GroupNormTrain { groups, eps, silu };
            return x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op);
        }
        return group_norm_unfused(x, groups, gamma, beta, eps, silu);
    }
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return crate::cuda::group_norm(x, groups, gamma, beta, eps, silu);
    }
    if !x.device().is_cpu() {
        return group_norm_unfused(x, groups, gamma, beta, eps, silu);
    }
    let c = dims[1];
    let spatial: usize = dims[2..].iter().product();
    let per_group = c / groups * spatial;
    let dtype = x.dtype();
    let mut data = crate::cpu::par_zeroed(x.elem_count());
    let g = gamma.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let bt = beta.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    if g.len() != c || bt.len() != c {
        candle_core::bail!(
            "group_norm: {} / {} affine values for {c} channels",
            g.len(),
            bt.len()
        );
    }
    let eps = eps as f32;
    crate::cpu::with_f32(x, |src| {
        data.par_chunks_mut(per_group)
            .zip(src.par_chunks(per_group))
            .enumerate()
            .for_each(|(task, (chunk, src))| {
                chunk.copy_from_slice(src);
                let group = task % groups;
                let n = chunk.len() as f32;
                let mean = sum(chunk) / n;
                let var = sq_dev_sum(chunk, mean) / n;
                let rstd = 1.0 / (var + eps).sqrt();
                for (k, plane) in chunk.chunks_mut(spatial).enumerate() {
                    let ch = group * (c / groups) + k;
                    let scale = rstd * g[ch];
                    let shift = bt[ch] - mean * scale;
                    apply(plane, scale, shift, silu);
                }
            })
    })?;
    crate::cpu::from_f32(data, x.shape(), dtype)
}

/// GroupNorm (+ SiLU) for training: the fused forward, and a backward pass computed in one
/// parallel sweep per (item, group) instead of the dozen tensor ops of the unfused form.
struct GroupNormTrain {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// A contiguous f32 CPU storage's values.
fn storage_slice<'a>(s: &'a candle_core::CpuStorage, l: &candle_core::Layout) -> Result<&'a [f32]> {
    let candle_core::CpuStorage::F32(data) = s else { candle_core::bail!("group_norm (training): f32 tensors only") };
    if !l.is_contiguous() {
        candle_core::bail!("group_norm (training): contiguous tensors only");
    }
    Ok(&data[l.start_offset()..l.start_offset() + l.shape().elem_count()])
}

impl candle_core::CustomOp3 for GroupNormTrain {
    fn name(&self) -> &'static str {
        "stipple-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let t = |s, l: &candle_core::Layout| Tensor::from_slice(storage_slice(s, l)?, l.shape(), &Device::Cpu);
        let y = group_norm(&t(s1, l1)?, self.groups, &t(s2, l2)?, &t(s3, l3)?, self.eps, self.silu)?;
        let shape = y.shape().clone();
        Ok((candle_core::CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims();
        let (b, c) = (dims[0], dims[1]);
        let spatial: usize = dims[2..].iter().product();
        let cg = c / self.groups;
        let xs = x.detach().flatten_all()?.to_vec1::<f32>()?;
        let dy = grad.detach().contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = gamma.detach().to_vec1::<f32>()?;
        let bt = beta.detach().to_vec1::<f32>()?;
        let per_group = cg * spatial;
        let eps = self.eps as f32;
        // per (item, group): dx, and that group's share of dgamma / dbeta per channel
        let parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..b * self.groups)
            .into_par_iter()
            .map(|task| {
                let group = task % self.groups;
                let xg = &xs[task * per_group..(task + 1) * per_group];
                let dyg = &dy[task * per_group..(task + 1) * per_group];
                let n = per_group as f32;
                let mean = xg.iter().sum::<f32>() / n;
                let var = xg.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
                let rstd = 1.0 / (var + eps).sqrt();
                let (mut dgamma, mut dbeta) = (vec![0f32; cg], vec![0f32; cg]);
                let mut dxhat = vec![0f32; per_group];
                for k in 0..cg {
                    let ch = group * cg + k;
                    for i in k * spatial..(k + 1) * spatial {
                        let xhat = (xg[i] - mean) * rstd;
                        let mut d = dyg[i];
                        if self.silu {
                            let z = xhat * g[ch] + bt[ch];
                            let s = 1.0 / (1.0 + (-z).exp());
                            d *= s * (1.0 + z * (1.0 - s));
                        }
                        dgamma[k] += d * xhat;
                        dbeta[k] += d;
                        dxhat[i] = d * g[ch];
                    }
                }
                let (mut m1, mut m2) = (0f32, 0f32);
                for (i, &d) in dxhat.iter().enumerate() {
                    m1 += d;
                    m2 += d * (xg[i] - mean) * rstd;
                }
                let (m1, m2) = (m1 / n, m2 / n);
                let dx = dxhat.iter().zip(xg).map(|(&d, &v)| rstd * (d - m1 - (v - mean) * rstd * m2)).collect();
                (dx, dgamma, dbeta)
            })
            .collect();
        let mut dx = Vec::with_capacity(xs.len());
        let (mut dgamma, mut dbeta) = (vec![0f32; c], vec![0f32; c]);
        for (task, (part, dg, db)) in parts.into_iter().enumerate() {
            dx.extend(part);
            let group = task % self.groups;
            for k in 0..cg {
                dgamma[group * cg + k] += dg[k];
                dbeta[group * cg + k] += db[k];
            }
        }
        let dev = x.device();
        Ok((Some(Tensor::from_vec(dx, x.shape(), dev)?), Some(Tensor::from_vec(dgamma, c, dev)?), Some(Tensor::from_vec(dbeta, c, dev)?)))
    }
}

/// The same with candle ops (the reference for the fused kernel).
pub fn group_norm_unfused(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (b, c) = (dims[0], dims[1]);
    let xs = x.to_dtype(DType::F32)?.reshape((b, groups, ()))?;
    let mean = xs.mean_keepdim(2)?;
    let centered = xs.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(2)?;
    let normed = centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape(dims.as_slice())?;
    let mut shape = vec![1, c];
    shape.extend(std::iter::repeat_n(1, dims.len() - 2));
    let y = normed
        .broadcast_mul(&gamma.to_dtype(DType::F32)?.reshape(shape.as_slice())?)?
        .broadcast_add(&beta.to_dtype(DType::F32)?.reshape(shape.as_slice())?)?;
    let y = if silu { y.silu()? } else { y };
    y.to_dtype(x.dtype())
}

const LANES: usize = 16;

#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    rest + acc.iter().sum::<f32>()
}

#[inline(always)]
fn sq_dev_sum_lanes(xs: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|&x| (x - mean) * (x - mean))
        .sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += (x - mean) * (x - mean);
        }
    }
    rest + acc.iter().sum::<f32>()
}

#[inline(always)]
fn apply_plain(xs: &mut [f32], scale: f32, shift: f32, silu: bool) {
    if silu {
        for x in xs.iter_mut() {
            let y = *x * scale + shift;
            *x = y / (1.0 + crate::fastmath::exp(-y));
        }
    } else {
        for x in xs.iter_mut() {
            *x = *x * scale + shift;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_avx2(xs: &[f32]) -> f32 {
    sum_lanes(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sq_dev_sum_avx2(xs: &[f32], mean: f32) -> f32 {
    sq_dev_sum_lanes(xs, mean)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_avx2(xs: &mut [f32], scale: f32, shift: f32, silu: bool) {
    apply_plain(xs, scale, shift, silu)
}

fn sum(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::fastmath::has_avx2_fma() {
        // Safety: the features were just checked.
        return unsafe { sum_avx2(xs) };
    }
    sum_lanes(xs)
}

fn sq_dev_sum(xs: &[f32], mean: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::fastmath::has_avx2_fma() {
        // Safety: the features were just checked.
        return unsafe { sq_dev_sum_avx2(xs, mean) };
    }
    sq_dev_sum_lanes(xs, mean)
}

fn apply(xs: &mut [f32], scale: f32, shift: f32, silu: bool) {
    #[cfg(target_arch = "x86_64")]
    if crate::fastmath::has_avx2_fma() {
        // Safety: the features were just checked.
        unsafe { apply_avx2(xs, scale, shift, silu) };
        return;
    }
    apply_plain(xs, scale, shift, silu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The training form's values and gradients (input, gains, shifts) match the unfused
    /// candle ops, with and without SiLU.
    #[test]
    fn training_form_matches_unfused_gradients() {
        let dev = Device::Cpu;
        for silu in [false, true] {
            let x = candle_core::Var::from_tensor(&Tensor::randn(0.5f32, 2.0, (2, 6, 5, 3), &dev).unwrap()).unwrap();
            let g = candle_core::Var::from_tensor(&Tensor::randn(1f32, 0.3, 6, &dev).unwrap()).unwrap();
            let bt = candle_core::Var::from_tensor(&Tensor::randn(0f32, 0.3, 6, &dev).unwrap()).unwrap();
            let ours = group_norm(x.as_tensor(), 3, g.as_tensor(), bt.as_tensor(), 1e-5, silu).unwrap();
            let theirs = group_norm_unfused(x.as_tensor(), 3, g.as_tensor(), bt.as_tensor(), 1e-5, silu).unwrap();
            assert!(crate::test_util::max_abs_diff(&ours, &theirs) < 1e-4);
            let r = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &g, &bt] {
                let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(crate::test_util::max_abs_diff(a, b) < 1e-3, "silu {silu}, gradient of {:?}", v.dims());
            }
        }
    }

    /// The CUDA twin against the CPU kernel on fresh random inputs: odd spatial sizes, one
    /// channel per group, SD 1.5's 320-channel 64x64 activation, with and without SiLU.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_twin_group_norm_matches_the_cpu_kernel() {
        let Some(dev) = crate::test_util::cuda_device() else { return };
        for (i, (shape, groups)) in [(vec![1, 4, 1, 1], 2), (vec![2, 8, 5, 7], 4), (vec![3, 32, 33], 32), (vec![2, 320, 64, 64], 32), (vec![1, 512, 17, 9], 32)].into_iter().enumerate() {
            let c = shape[1];
            let x = crate::test_util::seeded_randn(&shape, 60 + i as u64).affine(2.0, 0.5).unwrap();
            let gamma = crate::test_util::seeded_randn(&[c], 70 + i as u64).affine(0.3, 1.0).unwrap();
            let beta = (crate::test_util::seeded_randn(&[c], 80 + i as u64) * 0.3).unwrap();
            for silu in [false, true] {
                for (dt, rel) in [(DType::F32, 1e-5), (DType::F16, 1e-2), (DType::BF16, 1e-2)] {
                    let x = x.to_dtype(dt).unwrap();
                    let want = group_norm(&x, groups, &gamma, &beta, 1e-5, silu).unwrap().to_dtype(DType::F32).unwrap();
                    let on = |t: &Tensor| t.to_device(&dev).unwrap();
                    let got = group_norm(&on(&x), groups, &on(&gamma), &on(&beta), 1e-5, silu).unwrap();
                    let got = got.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
                    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
                    let diff = crate::test_util::max_abs_diff(&got, &want);
                    assert!(diff <= rel * scale, "{shape:?} groups {groups} silu {silu} {dt:?}: {diff} (scale {scale})");
                }
            }
        }
    }

    #[test]
    fn fused_matches_unfused() {
        let dev = Device::Cpu;
        for (shape, groups, silu) in [
            (vec![2, 8, 5, 7], 4, true),
            (vec![1, 6, 33], 3, false),
            (vec![3, 32, 4, 4], 32, true),
            (vec![1, 4, 1, 1], 2, false),
        ] {
            let c = shape[1];
            let x = (Tensor::randn(0f32, 2.0, shape.as_slice(), &dev).unwrap() + 3.0).unwrap();
            let gamma = Tensor::randn(1f32, 0.3, c, &dev).unwrap();
            let beta = Tensor::randn(0f32, 0.3, c, &dev).unwrap();
            let got = group_norm(&x, groups, &gamma, &beta, 1e-5, silu).unwrap();
            let want = group_norm_unfused(&x, groups, &gamma, &beta, 1e-5, silu).unwrap();
            let diff = crate::test_util::max_abs_diff(&got, &want);
            assert!(diff < 1e-4, "{shape:?} {groups} {silu}: {diff}");
        }
        assert!(
            group_norm(
                &Tensor::zeros((1, 6, 2), DType::F32, &dev).unwrap(),
                4,
                &Tensor::ones(6, DType::F32, &dev).unwrap(),
                &Tensor::zeros(6, DType::F32, &dev).unwrap(),
                1e-5,
                false
            )
            .is_err()
        );
    }
}
