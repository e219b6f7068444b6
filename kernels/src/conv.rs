//! 3x3 convolution (stride 1, padding 1) as nine shifted matrix products, without im2col.
//!
//! candle's CPU convolution builds an im2col matrix 9x the size of its input (94 MB for
//! a 320-channel 64x64 SD latent, 1.2 GB in the VAE's last level at 512x512) and ran at
//! about a third of the matmul speed. Here the input is padded once; on the padded grid
//! every tap (dy, dx) is the same matrix shifted by `dy * (w + 2) + dx` elements, so the
//! output on that grid is `sum_k W_k X_k` — nine gemm calls accumulating into one buffer —
//! of which the two padding columns per row are then dropped.

use candle_core::{DType, Device, Module, Result, Tensor};
use rayon::prelude::*;

/// `conv2d(x, weight, padding = 1, stride = 1) + bias` for `x` `[b, c_in, h, w]` and
/// `weight` `[c_out, c_in, 3, 3]`. CPU tensors use the fused kernel (f16 / bf16 computed
/// in f32); other devices use candle's convolution.
pub fn conv3x3(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, c_in, h, w) = x.dims4()?;
    let (c_out, c_in_w, kh, kw) = weight.dims4()?;
    if (c_in_w, kh, kw) != (c_in, 3, 3) {
        candle_core::bail!("conv3x3: weight {:?} does not fit input {:?}", weight.shape(), x.shape());
    }
    if !x.device().is_cpu() {
        return conv3x3_unfused(x, weight, bias);
    }
    let dtype = x.dtype();
    let f32s = |t: &Tensor| -> Result<Vec<f32>> { t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>() };
    let (xs, ws) = (f32s(x)?, f32s(weight)?);
    let bs = match bias {
        Some(t) => f32s(t)?,
        None => vec![0.0; c_out],
    };
    let (hp, wp) = (h + 2, w + 2);
    // two spare elements so the last tap's shifted window stays inside the buffer
    let plane = hp * wp + 2;
    let n = h * wp;
    let mut out = vec![0f32; b * c_out * h * w];
    let threads = rayon::current_num_threads();
    // Batch items in parallel when there are enough of them, else parallel gemms.
    let per_item_par = b >= threads;
    let run_item = |bi: usize, out_item: &mut [f32]| {
        let mut padded = vec![0f32; c_in * plane];
        for c in 0..c_in {
            let src = &xs[(bi * c_in + c) * h * w..][..h * w];
            let dst = &mut padded[c * plane..][..plane];
            for y in 0..h {
                dst[(y + 1) * wp + 1..][..w].copy_from_slice(&src[y * w..][..w]);
            }
        }
        let mut acc = vec![0f32; c_out * n];
        let parallelism = if per_item_par { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
        for tap in 0..9 {
            let (ky, kx) = (tap / 3, tap % 3);
            let shift = ky * wp + kx;
            // Safety: lhs reads weight[o, i, ky, kx] (stride 9 along i, 9 c_in along o);
            // rhs reads padded[i * plane + shift + j] for j < n, and shift + n <= plane.
            unsafe {
                gemm::gemm(
                    c_out, n, c_in,
                    acc.as_mut_ptr(), 1, n as isize, tap > 0,
                    ws.as_ptr().add(tap), 9, (c_in * 9) as isize,
                    padded.as_ptr().add(shift), 1, plane as isize,
                    1.0, 1.0,
                    false, false, false,
                    parallelism,
                );
            }
        }
        for (o, plane_out) in out_item.chunks_mut(h * w).enumerate() {
            let bias = bs[o];
            for y in 0..h {
                let src = &acc[o * n + y * wp..][..w];
                for (d, &s) in plane_out[y * w..][..w].iter_mut().zip(src) {
                    *d = s + bias;
                }
            }
        }
    };
    if per_item_par {
        out.par_chunks_mut(c_out * h * w).enumerate().for_each(|(bi, o)| run_item(bi, o));
    } else {
        for (bi, o) in out.chunks_mut(c_out * h * w).enumerate() {
            run_item(bi, o);
        }
    }
    Tensor::from_vec(out, (b, c_out, h, w), &Device::Cpu)?.to_dtype(dtype)
}

/// The same with candle's convolution (any device; the reference for the fused kernel).
pub fn conv3x3_unfused(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.conv2d(weight, 1, 1, 1, 1)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// A convolution layer that takes the fused path for 3x3 / stride 1 / padding 1 and
/// candle's otherwise.
#[derive(Clone, Debug)]
pub struct Conv2d {
    inner: candle_core::Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// A convolution with the given weight `[c_out, c_in, k, k]`, bias, padding and stride.
    pub fn new(weight: Tensor, bias: Option<Tensor>, padding: usize, stride: usize) -> Self {
        Self { inner: weight, bias, padding, stride }
    }

    /// The weight.
    pub fn weight(&self) -> &Tensor {
        &self.inner
    }

    fn fused(&self) -> bool {
        self.padding == 1 && self.stride == 1 && self.inner.dims().get(2..) == Some(&[3, 3][..])
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused() {
            return conv3x3(x, &self.inner, self.bias.as_ref());
        }
        let y = x.conv2d(&self.inner, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_matches_candle() {
        let dev = Device::Cpu;
        for (b, ci, co, h, w, bias) in [(1, 3, 5, 7, 9, true), (2, 8, 4, 5, 5, false), (3, 16, 16, 1, 6, true), (1, 4, 2, 12, 3, true)] {
            let x = Tensor::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap();
            let bs = bias.then(|| Tensor::randn(0f32, 1.0, co, &dev).unwrap());
            let got = conv3x3(&x, &wt, bs.as_ref()).unwrap();
            let want = conv3x3_unfused(&x, &wt, bs.as_ref()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{b}x{ci}->{co} {h}x{w}: {diff}");
        }
    }

    #[test]
    fn layer_dispatches_other_shapes_to_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1.0, (6, 4, 3, 3), &dev).unwrap();
        let strided = Conv2d::new(wt.clone(), None, 1, 2).forward(&x).unwrap();
        assert_eq!(strided.dims(), &[1, 6, 4, 4]);
        let same = Conv2d::new(wt.clone(), None, 1, 1).forward(&x).unwrap();
        let want = conv3x3_unfused(&x, &wt, None).unwrap();
        assert!((same - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() < 1e-4);
    }
}
