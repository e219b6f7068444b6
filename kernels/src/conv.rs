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
    let (_, c_in, _, _) = x.dims4()?;
    let (_, c_in_w, kh, kw) = weight.dims4()?;
    if (c_in_w, kh, kw) != (c_in, 3, 3) {
        candle_core::bail!(
            "conv3x3: weight {:?} does not fit input {:?}",
            weight.shape(),
            x.shape()
        );
    }
    if !x.device().is_cpu() {
        return conv3x3_unfused(x, weight, bias);
    }
    conv3x3_taps(x, &Taps::new(weight)?, bias)
}

/// A 3x3 weight laid out tap-major, `[9][c_out][c_in]`, so each tap is a contiguous
/// row-major matrix (prepared once per layer).
#[derive(Clone, Debug)]
pub struct Taps {
    data: Vec<f32>,
    c_out: usize,
    c_in: usize,
}

impl Taps {
    /// Re-lays `weight` `[c_out, c_in, 3, 3]`.
    pub fn new(weight: &Tensor) -> Result<Self> {
        let (c_out, c_in, _, _) = weight.dims4()?;
        let w = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut data = vec![0f32; 9 * c_out * c_in];
        for o in 0..c_out {
            for i in 0..c_in {
                for t in 0..9 {
                    data[(t * c_out + o) * c_in + i] = w[(o * c_in + i) * 9 + t];
                }
            }
        }
        Ok(Self { data, c_out, c_in })
    }
}

/// Spatial sizes from which each batch item gets its own thread; below it the batch is
/// stacked into one set of (parallel) gemms, so the weights are read once for all items.
const PER_ITEM_MIN_PIXELS: usize = 1024;

fn conv3x3_taps(x: &Tensor, taps: &Taps, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, c_in, h, w) = x.dims4()?;
    let (c_out, dtype) = (taps.c_out, x.dtype());
    if c_in != taps.c_in {
        candle_core::bail!(
            "conv3x3: {c_in} input channels for a {}-channel weight",
            taps.c_in
        );
    }
    let bs = match bias {
        Some(t) => t.to_dtype(DType::F32)?.to_vec1::<f32>()?,
        None => vec![0.0; c_out],
    };
    let (hp, wp) = (h + 2, w + 2);
    // two spare elements so the last tap's shifted window stays inside the buffer
    let plane = hp * wp + 2;
    let threads = rayon::current_num_threads();
    let per_item = b >= threads && h * w >= PER_ITEM_MIN_PIXELS;
    // `items` consecutive batch items, stacked: padded planes one after another per channel.
    let run = |xs: &[f32],
               first: usize,
               items: usize,
               out: &mut [f32],
               parallelism: gemm::Parallelism| {
        let stride = items * plane;
        let mut padded = vec![0f32; c_in * stride];
        let pad_channel = |c: usize, dst: &mut [f32]| {
            for it in 0..items {
                let src = &xs[((first + it) * c_in + c) * h * w..][..h * w];
                let dst = &mut dst[it * plane..][..plane];
                for y in 0..h {
                    dst[(y + 1) * wp + 1..][..w].copy_from_slice(&src[y * w..][..w]);
                }
            }
        };
        if per_item {
            padded
                .chunks_mut(stride)
                .enumerate()
                .for_each(|(c, d)| pad_channel(c, d));
        } else {
            padded
                .par_chunks_mut(stride)
                .enumerate()
                .for_each(|(c, d)| pad_channel(c, d));
        }
        // output columns: item `it`'s pixel (y, x) is column it * plane + y * wp + x
        let n = (items - 1) * plane + h * wp;
        let mut acc = vec![0f32; c_out * n];
        for tap in 0..9 {
            let shift = (tap / 3) * wp + tap % 3;
            // Safety: lhs is tap `tap`'s [c_out, c_in] block; rhs reads
            // padded[i * stride + shift + j] for j < n, and shift + n <= stride.
            unsafe {
                gemm::gemm(
                    c_out,
                    n,
                    c_in,
                    acc.as_mut_ptr(),
                    1,
                    n as isize,
                    tap > 0,
                    taps.data.as_ptr().add(tap * c_out * c_in),
                    1,
                    c_in as isize,
                    padded.as_ptr().add(shift),
                    1,
                    stride as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        for it in 0..items {
            for o in 0..c_out {
                let plane_out = &mut out[(it * c_out + o) * h * w..][..h * w];
                let bias = bs[o];
                for y in 0..h {
                    let src = &acc[o * n + it * plane + y * wp..][..w];
                    for (d, &s) in plane_out[y * w..][..w].iter_mut().zip(src) {
                        *d = s + bias;
                    }
                }
            }
        }
    };
    let out = crate::cpu::with_f32(x, |xs| {
        let mut out = vec![0f32; b * c_out * h * w];
        if per_item {
            out.par_chunks_mut(c_out * h * w)
                .enumerate()
                .for_each(|(bi, o)| run(xs, bi, 1, o, gemm::Parallelism::None));
        } else {
            run(xs, 0, b, &mut out, gemm::Parallelism::Rayon(threads));
        }
        out
    })?;
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
///
/// On the CPU a 3x3 layer keeps only its tap-major copy of the weight, so the weights are
/// held once.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: ConvWeight,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

#[derive(Clone, Debug)]
enum ConvWeight {
    Tensor(Tensor),
    Taps(Taps),
}

impl Conv2d {
    /// A convolution with the given weight `[c_out, c_in, k, k]`, bias, padding and stride.
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let fused = padding == 1 && stride == 1 && weight.dims().get(2..) == Some(&[3, 3][..]);
        let weight = if fused && weight.device().is_cpu() && weight.dtype() == DType::F32 {
            ConvWeight::Taps(Taps::new(&weight)?)
        } else {
            ConvWeight::Tensor(weight)
        };
        Ok(Self {
            weight,
            bias,
            padding,
            stride,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let weight = match &self.weight {
            ConvWeight::Taps(taps) => return conv3x3_taps(x, taps, self.bias.as_ref()),
            ConvWeight::Tensor(w)
                if self.padding == 1
                    && self.stride == 1
                    && w.dims().get(2..) == Some(&[3, 3][..]) =>
            {
                return conv3x3(x, w, self.bias.as_ref());
            }
            ConvWeight::Tensor(w) => w,
        };
        let y = x.conv2d(weight, self.padding, self.stride, 1, 1)?;
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
        // small sizes take the stacked-batch path, 40x40 the per-item one
        for (b, ci, co, h, w, bias) in [
            (1, 3, 5, 7, 9, true),
            (2, 8, 4, 5, 5, false),
            (3, 16, 16, 1, 6, true),
            (1, 4, 2, 12, 3, true),
            (3, 4, 6, 40, 40, true),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap();
            let bs = bias.then(|| Tensor::randn(0f32, 1.0, co, &dev).unwrap());
            let got = conv3x3(&x, &wt, bs.as_ref()).unwrap();
            let want = conv3x3_unfused(&x, &wt, bs.as_ref()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{b}x{ci}->{co} {h}x{w}: {diff}");
        }
    }

    #[test]
    fn layer_dispatches_other_shapes_to_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1.0, (6, 4, 3, 3), &dev).unwrap();
        let strided = Conv2d::new(wt.clone(), None, 1, 2)
            .unwrap()
            .forward(&x)
            .unwrap();
        assert_eq!(strided.dims(), &[1, 6, 4, 4]);
        let same = Conv2d::new(wt.clone(), None, 1, 1)
            .unwrap()
            .forward(&x)
            .unwrap();
        let want = conv3x3_unfused(&x, &wt, None).unwrap();
        assert!(
            (same - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                < 1e-4
        );
    }
}
