//! Convolutional building blocks shared by the UNet and the VAE (diffusers' `resnet.py`,
//! `downsampling.py`, `upsampling.py`): the residual block with an optional timestep
//! projection, and the stride-2 / nearest-2x resamplers.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
pub use stipple_kernels::conv::{Conv2d, Epilogue};

/// GroupNorm with its affine weights, on the fused kernel (optionally followed by SiLU,
/// as almost every GroupNorm in the UNet and VAE is).
#[derive(Clone, Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias` (`channels` each) under `vb`.
    pub fn new(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        if groups == 0 || channels % groups != 0 {
            candle_core::bail!("group norm: {channels} channels cannot be split into {groups} groups");
        }
        Ok(Self { weight: vb.get(channels, "weight")?, bias: vb.get(channels, "bias")?, groups, eps })
    }

    /// Normalises `xs` `[b, c, ...]`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        stipple_kernels::group_norm::group_norm(xs, self.groups, &self.weight, &self.bias, self.eps, false)
    }

    /// Normalises then applies SiLU, in one pass.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        stipple_kernels::group_norm::group_norm(xs, self.groups, &self.weight, &self.bias, self.eps, true)
    }
}

/// A `k`x`k` convolution with bias and the given padding and stride (3x3 / stride 1 /
/// padding 1 runs on the fused im2col-free kernel).
pub fn conv2d(vb: VarBuilder, c_in: usize, c_out: usize, k: usize, padding: usize, stride: usize) -> Result<Conv2d> {
    let weight = vb.get((c_out, c_in, k, k), "weight")?;
    let bias = vb.get(c_out, "bias")?;
    Conv2d::new(weight, Some(bias), padding, stride)
}

/// A linear layer (`weight` `[out, in]`, `bias`) on stipple's flat-gemm kernel.
pub fn linear(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<stipple_kernels::linear::Linear> {
    stipple_kernels::linear::Linear::new(&vb.get((c_out, c_in), "weight")?, Some(vb.get(c_out, "bias")?))
}

/// The same without a bias.
pub fn linear_no_bias(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<stipple_kernels::linear::Linear> {
    stipple_kernels::linear::Linear::new(&vb.get((c_out, c_in), "weight")?, None)
}

/// The same without a bias.
pub fn conv2d_no_bias(vb: VarBuilder, c_in: usize, c_out: usize, k: usize, padding: usize, stride: usize) -> Result<Conv2d> {
    Conv2d::new(vb.get((c_out, c_in, k, k), "weight")?, None, padding, stride)
}

/// `ResnetBlock2D`: GroupNorm, SiLU, conv, (+ projected time embedding), GroupNorm, SiLU,
/// conv, plus a 1x1 shortcut when the channel count changes.
#[derive(Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// `temb_channels` is `None` in the VAE (no timestep).
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f64,
        output_scale_factor: f64,
    ) -> Result<Self> {
        let norm1 = GroupNorm::new(vb.pp("norm1"), groups, c_in, eps)?;
        let conv1 = conv2d(vb.pp("conv1"), c_in, c_out, 3, 1, 1)?;
        let time_emb_proj = match temb_channels {
            Some(t) => Some(candle_nn::linear(t, c_out, vb.pp("time_emb_proj"))?),
            None => None,
        };
        let norm2 = GroupNorm::new(vb.pp("norm2"), groups, c_out, eps)?;
        let conv2 = conv2d(vb.pp("conv2"), c_out, c_out, 3, 1, 1)?;
        let conv_shortcut = if c_in != c_out { Some(conv2d(vb.pp("conv_shortcut"), c_in, c_out, 1, 0, 1)?) } else { None };
        Ok(Self { norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut, output_scale_factor })
    }

    /// `temb` is the SiLU-activated time embedding's input (`[b, temb_channels]`). The
    /// time embedding and the skip connection are added inside the convolutions' output
    /// passes.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let t = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => Some(proj.forward(&candle_nn::ops::silu(t)?)?),
            _ => None,
        };
        let h = self.conv1.forward_with(&self.norm1.forward_silu(xs)?, &Epilogue { item_bias: t.as_ref(), residual: None })?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        let out = self.conv2.forward_with(&self.norm2.forward_silu(&h)?, &Epilogue { item_bias: None, residual: Some(&skip) })?;
        if self.output_scale_factor == 1.0 { Ok(out) } else { out.affine(1.0 / self.output_scale_factor, 0.0) }
    }
}

/// `Downsample2D`: a stride-2 3x3 convolution. The VAE uses padding 0 after padding the
/// right and bottom edges by one (`pad_right_bottom`), the UNet padding 1.
#[derive(Debug)]
pub struct Downsample2D {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl Downsample2D {
    /// Loads `conv` under `vb`.
    pub fn new(vb: VarBuilder, channels: usize, padding: usize) -> Result<Self> {
        Ok(Self { conv: conv2d(vb.pp("conv"), channels, channels, 3, padding, 2)?, pad_right_bottom: padding == 0 })
    }

    /// Halves the spatial size.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.pad_right_bottom {
            let xs = xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&xs)
        } else {
            self.conv.forward(xs)
        }
    }
}

/// `Upsample2D`: nearest-neighbour upsampling (to twice the size, or to the skip
/// connection's size when odd sizes were halved) followed by a 3x3 convolution.
#[derive(Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// Loads `conv` under `vb`.
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self { conv: conv2d(vb.pp("conv"), channels, channels, 3, 1, 1)? })
    }

    /// Upsamples to `size` (`(h, w)`), or 2x when `None`.
    pub fn forward(&self, xs: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = xs.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward(&xs.upsample_nearest2d(th, tw)?)
    }
}
