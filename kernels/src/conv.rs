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
    if crate::tracks_grad(&[x, weight]) || bias.is_some_and(|b| b.track_op()) {
        return conv_trained(x, weight, bias, 1, 1);
    }
    if !x.device().is_cpu() {
        return conv3x3_unfused(x, weight, bias);
    }
    conv3x3_taps(x, &Taps::new(weight)?, bias, &Epilogue::default())
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
    /// Re-lays `weight` `[c_out, c_in, 3, 3]`: read in place when it is f32 and
    /// contiguous, written row by row in parallel (this runs for every 3x3 layer at load,
    /// where a serial scatter into a zeroed buffer showed up as seconds for SD 1.5).
    pub fn new(weight: &Tensor) -> Result<Self> {
        use rayon::prelude::*;
        let (c_out, c_in, _, _) = weight.dims4()?;
        let data = crate::cpu::with_f32(weight, |w| {
            let mut data: Vec<f32> = Vec::with_capacity(9 * c_out * c_in);
            data.spare_capacity_mut().par_chunks_mut(c_in.max(1)).enumerate().for_each(|(row, out)| {
                let (t, o) = (row / c_out, row % c_out);
                for (i, x) in out.iter_mut().enumerate() {
                    x.write(w[(o * c_in + i) * 9 + t]);
                }
            });
            // Safety: the chunks above cover the whole capacity, each element written once.
            unsafe { data.set_len(9 * c_out * c_in) };
            data
        })?;
        Ok(Self { data, c_out, c_in })
    }
}

/// Spatial sizes from which each batch item gets its own thread; below it the batch is
/// stacked into one set of (parallel) gemms, so the weights are read once for all items.
const PER_ITEM_MIN_PIXELS: usize = 1024;

/// Spatial sizes from which even-sized maps take the Winograd path (its per-call filter
/// transform and extra memory passes cost more than they save on smaller maps).
const WINOGRAD_MIN_PIXELS: usize = 256;

/// What is added to a convolution's output as it is written: the layer bias `[c_out]`,
/// a per-item channel bias `[b, c_out]` (a residual block's time embedding) and a
/// residual `[b, c_out, h, w]` (its skip connection).
#[derive(Default, Clone, Copy)]
pub struct Epilogue<'a> {
    /// Per-item channel bias.
    pub item_bias: Option<&'a Tensor>,
    /// Tensor added element-wise.
    pub residual: Option<&'a Tensor>,
}

/// The epilogue as plain values.
pub(crate) struct Adds<'a> {
    bias: Vec<f32>,
    item_bias: Option<Vec<f32>>,
    pub(crate) residual: Option<&'a [f32]>,
    c_out: usize,
}

impl Adds<'_> {
    /// The constant added to every pixel of channel `o` of item `it`.
    pub(crate) fn channel(&self, it: usize, o: usize) -> f32 {
        self.bias[o] + self.item_bias.as_ref().map_or(0.0, |v| v[it * self.c_out + o])
    }
}

fn bias_values(bias: Option<&Tensor>, c_out: usize) -> Result<Vec<f32>> {
    match bias {
        Some(t) => t.to_dtype(DType::F32)?.to_vec1::<f32>(),
        None => Ok(vec![0.0; c_out]),
    }
}

fn item_bias_values(e: &Epilogue, b: usize, c_out: usize) -> Result<Option<Vec<f32>>> {
    match e.item_bias {
        Some(t) => {
            if t.dims2()? != (b, c_out) {
                candle_core::bail!("conv: item bias {:?}, expected [{b}, {c_out}]", t.shape());
            }
            Ok(Some(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
        }
        None => Ok(None),
    }
}

/// Runs `f` with the residual's values (or none), checking its shape.
fn with_residual<R>(e: &Epilogue, shape: (usize, usize, usize, usize), f: impl FnOnce(Option<&[f32]>) -> R) -> Result<R> {
    match e.residual {
        Some(r) => {
            if r.dims4()? != shape {
                candle_core::bail!("conv: residual {:?}, expected {shape:?}", r.shape());
            }
            crate::cpu::with_f32(r, |v| f(Some(v)))
        }
        None => Ok(f(None)),
    }
}

fn conv3x3_taps(x: &Tensor, taps: &Taps, bias: Option<&Tensor>, epilogue: &Epilogue) -> Result<Tensor> {
    let (b, c_in, h, w) = x.dims4()?;
    let (c_out, dtype) = (taps.c_out, x.dtype());
    if c_in != taps.c_in {
        candle_core::bail!(
            "conv3x3: {c_in} input channels for a {}-channel weight",
            taps.c_in
        );
    }
    let bias = bias_values(bias, c_out)?;
    let item_bias = item_bias_values(epilogue, b, c_out)?;
    let (hp, wp) = (h + 2, w + 2);
    // two spare elements so the last tap's shifted window stays inside the buffer
    let plane = hp * wp + 2;
    let threads = rayon::current_num_threads();
    let per_item = b >= threads && h * w >= PER_ITEM_MIN_PIXELS;
    // `items` consecutive batch items, stacked: padded planes one after another per channel.
    let run = |xs: &[f32],
               adds: &Adds,
               first: usize,
               items: usize,
               out: &mut [f32],
               parallelism: gemm::Parallelism| {
        let stride = items * plane;
        let mut padded = crate::cpu::par_zeroed(c_in * stride);
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
        let mut acc = crate::cpu::par_zeroed(c_out * n);
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
        // drop the padding columns while adding the epilogue
        let extract = |idx: usize, plane_out: &mut [f32]| {
            let (it, o) = (idx / c_out, idx % c_out);
            let add = adds.channel(first + it, o);
            let res = adds.residual.map(|r| &r[((first + it) * c_out + o) * h * w..][..h * w]);
            for y in 0..h {
                let src = &acc[o * n + it * plane + y * wp..][..w];
                let dst = &mut plane_out[y * w..][..w];
                match res {
                    Some(r) => {
                        for ((d, &s), &r) in dst.iter_mut().zip(src).zip(&r[y * w..][..w]) {
                            *d = s + add + r;
                        }
                    }
                    None => {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = s + add;
                        }
                    }
                }
            }
        };
        if per_item {
            out.chunks_mut(h * w).enumerate().for_each(|(i, p)| extract(i, p));
        } else {
            out.par_chunks_mut(h * w).enumerate().for_each(|(i, p)| extract(i, p));
        }
    };
    let out = crate::cpu::with_f32(x, |xs| {
        with_residual(epilogue, (b, c_out, h, w), |residual| {
            let adds = Adds { bias, item_bias, residual, c_out };
            let mut out = crate::cpu::par_zeroed(b * c_out * h * w);
            if h % 2 == 0 && w % 2 == 0 && h * w >= WINOGRAD_MIN_PIXELS {
                crate::winograd::conv3x3(xs, (b, c_in, h, w), &taps.data, c_out, &adds, &mut out);
            } else if per_item {
                out.par_chunks_mut(c_out * h * w)
                    .enumerate()
                    .for_each(|(bi, o)| run(xs, &adds, bi, 1, o, gemm::Parallelism::None));
            } else {
                run(xs, &adds, 0, b, &mut out, gemm::Parallelism::Rayon(threads));
            }
            out
        })
    })??;
    crate::cpu::from_f32(out, &(b, c_out, h, w).into(), dtype)
}

/// 1x1 convolution (stride 1, no padding): one `[c_out, c_in] x [c_in, h*w]` product per
/// item, written in place (candle's path builds a column matrix and transposes back).
fn conv1x1(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, epilogue: &Epilogue) -> Result<Tensor> {
    let (b, c_in, h, w) = x.dims4()?;
    let c_out = weight.dim(0)?;
    let hw = h * w;
    let bias = bias_values(bias, c_out)?;
    let item_bias = item_bias_values(epilogue, b, c_out)?;
    let threads = rayon::current_num_threads();
    let per_item = b >= threads;
    let out = crate::cpu::with_f32(weight, |ws| {
        crate::cpu::with_f32(x, |xs| {
            with_residual(epilogue, (b, c_out, h, w), |residual| {
                let adds = Adds { bias, item_bias, residual, c_out };
                let mut out = crate::cpu::par_zeroed(b * c_out * hw);
                let run = |it: usize, o: &mut [f32], par: gemm::Parallelism| {
                    // Safety: [c_out, c_in] x [c_in, hw] -> [c_out, hw], all row-major slices.
                    unsafe {
                        gemm::gemm(
                            c_out, hw, c_in,
                            o.as_mut_ptr(), 1, hw as isize, false,
                            ws.as_ptr(), 1, c_in as isize,
                            xs.as_ptr().add(it * c_in * hw), 1, hw as isize,
                            0.0, 1.0,
                            false, false, false,
                            par,
                        );
                    }
                    for (oc, plane) in o.chunks_mut(hw).enumerate() {
                        let add = adds.channel(it, oc);
                        match adds.residual {
                            Some(r) => {
                                for (d, &r) in plane.iter_mut().zip(&r[(it * c_out + oc) * hw..][..hw]) {
                                    *d += add + r;
                                }
                            }
                            None => plane.iter_mut().for_each(|d| *d += add),
                        }
                    }
                };
                if per_item {
                    out.par_chunks_mut(c_out * hw).enumerate().for_each(|(it, o)| run(it, o, gemm::Parallelism::None));
                } else {
                    for (it, o) in out.chunks_mut(c_out * hw).enumerate() {
                        run(it, o, gemm::Parallelism::Rayon(threads));
                    }
                }
                out
            })
        })
    })???;
    Tensor::from_vec(out, (b, c_out, h, w), &Device::Cpu)?.to_dtype(x.dtype())
}

/// The same with candle's convolution (any device; the reference for the fused kernel).
pub fn conv3x3_unfused(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.conv2d(weight, 1, 1, 1, 1)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// `conv2d(x, weight, padding, stride) + bias` from differentiable tensor ops — zero
/// padding, one gather of the `k * k` input pixels under every output pixel into columns
/// (im2col as an `index_select`, whose backward is one scatter-add), one batched matrix
/// product — for training: candle's own convolution backward runs per-element loops.
pub fn conv2d_unfolded(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, padding: usize, stride: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (co, ci, kh, kw) = weight.dims4()?;
    if ci != c || stride == 0 || h + 2 * padding < kh || w + 2 * padding < kw {
        candle_core::bail!("conv: weight {:?}, stride {stride}, padding {padding} do not fit input {:?}", weight.shape(), x.shape());
    }
    let xp = if padding > 0 { x.pad_with_zeros(2, padding, padding)?.pad_with_zeros(3, padding, padding)? } else { x.clone() };
    let (ho, wo) = ((h + 2 * padding - kh) / stride + 1, (w + 2 * padding - kw) / stride + 1);
    let y = if (kh, kw, stride) == (1, 1, 1) {
        weight.reshape((co, ci))?.broadcast_matmul(&xp.reshape((b, c, ho * wo))?)?
    } else {
        let wp = w + 2 * padding;
        let mut idx = Vec::with_capacity(kh * kw * ho * wo);
        for dy in 0..kh {
            for dx in 0..kw {
                for y in 0..ho {
                    idx.extend((0..wo).map(|x| ((y * stride + dy) * wp + x * stride + dx) as u32));
                }
            }
        }
        let idx = Tensor::from_vec(idx, kh * kw * ho * wo, x.device())?;
        let cols = xp.flatten_from(2)?.contiguous()?.index_select(&idx, 2)?.reshape((b, c * kh * kw, ho * wo))?;
        weight.reshape((co, ci * kh * kw))?.broadcast_matmul(&cols)?
    };
    let y = y.reshape((b, co, ho, wo))?;
    match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, co, 1, 1))?),
        None => Ok(y),
    }
}

/// The differentiable convolution: [`conv3x3_train`] for 3x3 / padding 1 / stride 1 on
/// f32 CPU tensors, [`conv2d_unfolded`] otherwise.
fn conv_trained(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, padding: usize, stride: usize) -> Result<Tensor> {
    if (padding, stride) == (1, 1) && w.dims().get(2..) == Some(&[3, 3][..]) && x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let y = conv3x3_train(x, w)?;
        return match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        };
    }
    conv2d_unfolded(x, w, bias, padding, stride)
}

/// A 3x3 convolution (padding 1, stride 1, no bias) for training whose forward and
/// backward passes both run the fused kernel: the input gradient is the same convolution
/// of the output gradient with the weights transposed and flipped, the weight gradient
/// nine matrix products of the gradient with shifted inputs. CPU, f32.
pub fn conv3x3_train(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&weight.contiguous()?, Conv3x3Train)
}

struct Conv3x3Train;

/// A contiguous f32 CPU storage as a tensor (copied).
fn storage_tensor(s: &candle_core::CpuStorage, l: &candle_core::Layout) -> Result<Tensor> {
    let candle_core::CpuStorage::F32(data) = s else { candle_core::bail!("conv3x3_train: f32 tensors only") };
    if !l.is_contiguous() {
        candle_core::bail!("conv3x3_train: contiguous tensors only");
    }
    let start = l.start_offset();
    Tensor::from_slice(&data[start..start + l.shape().elem_count()], l.shape(), &Device::Cpu)
}

impl candle_core::CustomOp2 for Conv3x3Train {
    fn name(&self) -> &'static str {
        "stipple-conv3x3"
    }

    fn cpu_fwd(&self, s1: &candle_core::CpuStorage, l1: &candle_core::Layout, s2: &candle_core::CpuStorage, l2: &candle_core::Layout) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (x, w) = (storage_tensor(s1, l1)?, storage_tensor(s2, l2)?);
        let y = conv3x3(&x, &w, None)?;
        let shape = y.shape().clone();
        Ok((candle_core::CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (x, w, grad) = (x.detach(), w.detach(), grad.detach().contiguous()?);
        let (b, ci, h, wd) = x.dims4()?;
        let co = w.dim(0)?;
        let rev = Tensor::new(&[2u32, 1, 0], x.device())?;
        let flipped = w.transpose(0, 1)?.contiguous()?.index_select(&rev, 2)?.index_select(&rev, 3)?;
        let dx = conv3x3(&grad, &flipped, None)?;
        let g = grad.transpose(0, 1)?.reshape((co, b * h * wd))?;
        let xp = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        let mut taps = Vec::with_capacity(9);
        for dy in 0..3 {
            for dx in 0..3 {
                let shifted = xp.narrow(2, dy, h)?.narrow(3, dx, wd)?.transpose(0, 1)?.contiguous()?.reshape((ci, b * h * wd))?;
                taps.push(g.matmul(&shifted.t()?)?);
            }
        }
        let dw = Tensor::stack(&taps, 2)?.reshape((co, ci, 3, 3))?;
        Ok((Some(dx), Some(dw)))
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
        // a trained weight stays as is: its tap-major copy would not follow its updates
        let weight = if fused && weight.device().is_cpu() && weight.dtype() == DType::F32 && !crate::tracks_grad(&[&weight]) {
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

impl Conv2d {
    /// `conv(x) + bias`, plus the epilogue's per-item channel bias and residual, added as
    /// the output is written (no extra passes on the CPU paths).
    pub fn forward_with(&self, x: &Tensor, epilogue: &Epilogue) -> Result<Tensor> {
        let tracked = match &self.weight {
            ConvWeight::Tensor(w) => crate::tracks_grad(&[x, w]) || self.bias.as_ref().is_some_and(|b| b.track_op()),
            ConvWeight::Taps(_) => x.track_op(),
        };
        let cpu = x.device().is_cpu() && !tracked;
        let y = match &self.weight {
            ConvWeight::Taps(taps) if cpu => return conv3x3_taps(x, taps, self.bias.as_ref(), epilogue),
            ConvWeight::Taps(_) => candle_core::bail!("conv: fixed CPU weights used with a {:?} input, or one that needs gradients", x.device()),
            ConvWeight::Tensor(w) if cpu && self.padding == 0 && self.stride == 1 && w.dims().get(2..) == Some(&[1, 1][..]) => {
                return conv1x1(x, w, self.bias.as_ref(), epilogue);
            }
            ConvWeight::Tensor(w) if tracked => conv_trained(x, w, self.bias.as_ref(), self.padding, self.stride)?,
            ConvWeight::Tensor(w) => {
                let y = x.conv2d(w, self.padding, self.stride, 1, 1)?;
                match &self.bias {
                    Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
                    None => y,
                }
            }
        };
        let y = match epilogue.item_bias {
            Some(t) => y.broadcast_add(&t.unsqueeze(2)?.unsqueeze(3)?)?,
            None => y,
        };
        match epilogue.residual {
            Some(r) => y + r,
            None => Ok(y),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, &Epilogue::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trained 3x3 convolution's values and both gradients match candle's.
    #[test]
    fn trained_conv3x3_matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for (b, ci, co, h, w) in [(2, 3, 5, 7, 6), (1, 8, 4, 16, 16), (3, 2, 2, 1, 4)] {
            let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap()).unwrap();
            let wt = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap()).unwrap();
            let ours = conv3x3_train(x.as_tensor(), wt.as_tensor()).unwrap();
            let theirs = x.as_tensor().conv2d(wt.as_tensor(), 1, 1, 1, 1).unwrap();
            assert!(crate::test_util::max_abs_diff(&ours, &theirs) < 1e-4);
            let r = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt] {
                let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(crate::test_util::max_abs_diff(a, b) < 1e-3, "gradient of {:?}", v.dims());
            }
        }
    }

    /// Values and both gradients of the unfolded form match candle's convolution.
    #[test]
    fn unfolded_conv_matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for (k, padding, stride, h, w) in [(3, 1, 1, 7, 6), (3, 0, 2, 9, 11), (1, 0, 1, 5, 5), (3, 1, 2, 9, 9), (4, 0, 4, 8, 12)] {
            let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap()).unwrap();
            let wt = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 3, k, k), &dev).unwrap()).unwrap();
            let bias = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
            let ours = conv2d_unfolded(x.as_tensor(), wt.as_tensor(), Some(&bias), padding, stride).unwrap();
            let theirs = x.as_tensor().conv2d(wt.as_tensor(), padding, stride, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 5, 1, 1)).unwrap()).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(crate::test_util::max_abs_diff(&ours, &theirs) < 1e-4, "k {k} stride {stride}");
            let r = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt] {
                let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(crate::test_util::max_abs_diff(a, b) < 1e-3, "gradient, k {k} stride {stride}");
            }
        }
    }

    #[test]
    fn fused_matches_candle() {
        let dev = Device::Cpu;
        // small sizes take the stacked-batch path, odd sizes from 1024 pixels the per-item
        // one, even sizes from 1024 pixels Winograd's
        for (b, ci, co, h, w, bias) in [
            (1, 3, 5, 7, 9, true),
            (2, 8, 4, 5, 5, false),
            (3, 16, 16, 1, 6, true),
            (1, 4, 2, 12, 3, true),
            (3, 4, 6, 40, 40, true),
            (2, 5, 7, 32, 34, false),
            (2, 3, 2, 33, 35, true),
            (1, 40, 24, 64, 32, true),
            // several Winograd passes, one straddling the two items
            (2, 2, 3, 66, 130, true),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap();
            let bs = bias.then(|| Tensor::randn(0f32, 1.0, co, &dev).unwrap());
            let got = conv3x3(&x, &wt, bs.as_ref()).unwrap();
            let want = conv3x3_unfused(&x, &wt, bs.as_ref()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = crate::test_util::max_abs_diff(&got, &want);
            assert!(diff < 1e-4, "{b}x{ci}->{co} {h}x{w}: {diff}");
        }
    }

    #[test]
    fn epilogue_and_1x1_match_candle() {
        let dev = Device::Cpu;
        for (b, h, w) in [(2, 40, 40), (1, 5, 7), (3, 4, 4)] {
            let x = Tensor::randn(0f32, 1.0, (b, 6, h, w), &dev).unwrap();
            let item_bias = Tensor::randn(0f32, 1.0, (b, 4), &dev).unwrap();
            let residual = Tensor::randn(0f32, 1.0, (b, 4, h, w), &dev).unwrap();
            let e = Epilogue { item_bias: Some(&item_bias), residual: Some(&residual) };
            for k in [1, 3] {
                let wt = Tensor::randn(0f32, 1.0, (4, 6, k, k), &dev).unwrap();
                let bias = Tensor::randn(0f32, 1.0, 4, &dev).unwrap();
                let got = Conv2d::new(wt.clone(), Some(bias.clone()), k / 2, 1).unwrap().forward_with(&x, &e).unwrap();
                let want = ((x.conv2d(&wt, k / 2, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 4, 1, 1)).unwrap()).unwrap()
                    .broadcast_add(&item_bias.reshape((b, 4, 1, 1)).unwrap())).unwrap() + &residual).unwrap();
                let diff = crate::test_util::max_abs_diff(&got, &want);
                assert!(diff < 1e-4, "k {k}, {b}x{h}x{w}: {diff}");
            }
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
        assert!(crate::test_util::max_abs_diff(&same, &want) < 1e-4);
    }
}
