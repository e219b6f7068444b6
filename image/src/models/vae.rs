//! `AutoencoderKL` (the SD VAE), configured by `vae/config.json`: images in [-1, 1] to
//! latent distributions and latents back to images. Scale and shift factors come from
//! the config (0.18215 for SD 1.x/2.x, 0.13025 for SDXL).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::attention::SpatialSelfAttention;
use super::resnet::{Conv2d, Downsample2D, GroupNorm, ResnetBlock2D, Upsample2D, conv2d};

/// The keys of `vae/config.json` stipple reads.
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per encoder level (the decoder has one more).
    #[serde(default = "one")]
    pub layers_per_block: usize,
    /// Latent channels.
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// GroupNorm groups.
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    /// Latents are multiplied by this after encoding.
    #[serde(default = "scale")]
    pub scaling_factor: f64,
    /// Latents are shifted by this before scaling (SD3 / FLUX VAEs).
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// A 1x1 convolution after the encoder.
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    /// A 1x1 convolution before the decoder.
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    /// Self-attention in the mid blocks.
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    /// Side of the pictures it was trained on, when recorded.
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default)]
    down_block_types: Vec<String>,
    #[serde(default)]
    up_block_types: Vec<String>,
}

fn three() -> usize { 3 }
fn one() -> usize { 1 }
fn four() -> usize { 4 }
fn groups() -> usize { 32 }
fn scale() -> f64 { 0.18215 }
fn yes() -> bool { true }

impl VaeConfig {
    /// Image pixels per latent pixel along each side: 2^(levels - 1).
    pub fn spatial_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

const EPS: f64 = 1e-6;

/// `UNetMidBlock2D` without a time embedding: resnet, (attention), resnet.
#[derive(Debug)]
struct MidBlock {
    r1: ResnetBlock2D,
    attn: Option<SpatialSelfAttention>,
    r2: ResnetBlock2D,
}

impl MidBlock {
    fn new(vb: VarBuilder, c: usize, groups: usize, attention: bool) -> Result<Self> {
        Ok(Self {
            r1: ResnetBlock2D::new(vb.pp("resnets.0"), c, c, None, groups, EPS, 1.0)?,
            attn: if attention { Some(SpatialSelfAttention::new(vb.pp("attentions.0"), c, groups, EPS)?) } else { None },
            r2: ResnetBlock2D::new(vb.pp("resnets.1"), c, c, None, groups, EPS, 1.0)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = self.r1.forward(xs, None)?;
        if let Some(a) = &self.attn {
            h = a.forward(&h)?;
        }
        self.r2.forward(&h, None)
    }
}

#[derive(Debug)]
struct Encoder {
    conv_in: Conv2d,
    down: Vec<(Vec<ResnetBlock2D>, Option<Downsample2D>)>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let g = cfg.norm_num_groups;
        let conv_in = conv2d(vb.pp("conv_in"), cfg.in_channels, ch[0], 3, 1, 1)?;
        let mut down = Vec::with_capacity(n);
        let mut c_out = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let c_in = c_out;
            c_out = c;
            let vb = vb.pp(format!("down_blocks.{i}"));
            let res = (0..cfg.layers_per_block)
                .map(|j| ResnetBlock2D::new(vb.pp(format!("resnets.{j}")), if j == 0 { c_in } else { c_out }, c_out, None, g, EPS, 1.0))
                .collect::<Result<Vec<_>>>()?;
            let ds = if i + 1 < n { Some(Downsample2D::new(vb.pp("downsamplers.0"), c_out, 0)?) } else { None };
            down.push((res, ds));
        }
        let mid = MidBlock::new(vb.pp("mid_block"), ch[n - 1], g, cfg.mid_block_add_attention)?;
        let norm_out = GroupNorm::new(vb.pp("conv_norm_out"), g, ch[n - 1], EPS)?;
        let conv_out = conv2d(vb.pp("conv_out"), ch[n - 1], 2 * cfg.latent_channels, 3, 1, 1)?;
        Ok(Self { conv_in, down, mid, norm_out, conv_out })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(xs)?;
        for (res, ds) in &self.down {
            for r in res {
                h = r.forward(&h, None)?;
            }
            if let Some(d) = ds {
                h = d.forward(&h)?;
            }
        }
        let h = self.mid.forward(&h)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

#[derive(Debug)]
struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let g = cfg.norm_num_groups;
        let conv_in = conv2d(vb.pp("conv_in"), cfg.latent_channels, ch[n - 1], 3, 1, 1)?;
        let mid = MidBlock::new(vb.pp("mid_block"), ch[n - 1], g, cfg.mid_block_add_attention)?;
        let mut up = Vec::with_capacity(n);
        let mut c_out = ch[n - 1];
        for i in 0..n {
            let c_in = c_out;
            c_out = ch[n - 1 - i];
            let vb = vb.pp(format!("up_blocks.{i}"));
            let res = (0..cfg.layers_per_block + 1)
                .map(|j| ResnetBlock2D::new(vb.pp(format!("resnets.{j}")), if j == 0 { c_in } else { c_out }, c_out, None, g, EPS, 1.0))
                .collect::<Result<Vec<_>>>()?;
            let us = if i + 1 < n { Some(Upsample2D::new(vb.pp("upsamplers.0"), c_out)?) } else { None };
            up.push((res, us));
        }
        let norm_out = GroupNorm::new(vb.pp("conv_norm_out"), g, ch[0], EPS)?;
        let conv_out = conv2d(vb.pp("conv_out"), ch[0], cfg.out_channels, 3, 1, 1)?;
        Ok(Self { conv_in, mid, up, norm_out, conv_out })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(xs)?)?;
        for (res, us) in &self.up {
            for r in res {
                h = r.forward(&h, None)?;
            }
            if let Some(u) = us {
                h = u.forward(&h, None)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// The diagonal Gaussian the encoder predicts for each latent pixel.
#[derive(Debug)]
pub struct LatentDistribution {
    /// Mean `[b, c, h, w]`.
    pub mean: Tensor,
    /// Standard deviation (log-variance clamped to [-30, 20], as diffusers does).
    pub std: Tensor,
}

impl LatentDistribution {
    /// `mean + std * noise` with caller-drawn unit noise (portable or replayed).
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        self.mean.clone() + (&self.std * noise)?
    }
}

/// The KL autoencoder.
#[derive(Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    /// The config it was built from.
    pub config: VaeConfig,
}

impl AutoencoderKL {
    /// Builds the autoencoder described by `cfg` from the weights under `vb`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let bad_block = |t: &String, ok: &str| t != ok;
        if cfg.block_out_channels.is_empty()
            || cfg.down_block_types.iter().any(|t| bad_block(t, "DownEncoderBlock2D"))
            || cfg.up_block_types.iter().any(|t| bad_block(t, "UpDecoderBlock2D"))
        {
            candle_core::bail!("vae config: only DownEncoderBlock2D / UpDecoderBlock2D autoencoders are supported");
        }
        let l = cfg.latent_channels;
        let quant_conv = if cfg.use_quant_conv { Some(conv2d(vb.pp("quant_conv"), 2 * l, 2 * l, 1, 0, 1)?) } else { None };
        let post_quant_conv = if cfg.use_post_quant_conv { Some(conv2d(vb.pp("post_quant_conv"), l, l, 1, 0, 1)?) } else { None };
        Ok(Self {
            encoder: Encoder::new(vb.pp("encoder"), cfg)?,
            decoder: Decoder::new(vb.pp("decoder"), cfg)?,
            quant_conv,
            post_quant_conv,
            config: cfg.clone(),
        })
    }

    /// Images `[b, 3, H, W]` in [-1, 1] -> the latent distribution (unscaled).
    pub fn encode(&self, images: &Tensor) -> Result<LatentDistribution> {
        let h = self.encoder.forward(images)?;
        let h = match &self.quant_conv {
            Some(q) => q.forward(&h)?,
            None => h,
        };
        let l = self.config.latent_channels;
        let mean = h.narrow(1, 0, l)?;
        let logvar = h.narrow(1, l, l)?.clamp(-30f32, 20f32)?;
        let std = (logvar * 0.5)?.exp()?;
        Ok(LatentDistribution { mean, std })
    }

    /// Unscaled latents -> images in (about) [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let h = match &self.post_quant_conv {
            Some(q) => q.forward(latents)?,
            None => latents.clone(),
        };
        self.decoder.forward(&h)
    }

    /// Encoder latents -> the scaled latents the UNet works on.
    pub fn scale_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        latents.affine(self.config.scaling_factor, -shift * self.config.scaling_factor)
    }

    /// The UNet's latents -> what the decoder takes.
    pub fn unscale_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        latents.affine(1.0 / self.config.scaling_factor, shift)
    }
}
