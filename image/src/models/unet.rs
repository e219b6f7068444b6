//! `UNet2DConditionModel`, configured by a diffusers `unet/config.json`: SD 1.x / 2.x,
//! SDXL (`text_time` micro-conditioning, several transformer layers per block), LCM
//! (`time_cond_proj_dim`), 9-channel inpainting UNets, any block layout of
//! `CrossAttnDownBlock2D` / `DownBlock2D` / `CrossAttnUpBlock2D` / `UpBlock2D`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::attention::{Transformer2D, Transformer2DConfig};
use super::embeddings::{TimestepEmbedding, sinusoidal};
use super::resnet::{Conv2d, Downsample2D, GroupNorm, ResnetBlock2D, Upsample2D, conv2d};

/// A config value written either once for every block or once per block.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    /// The same value for every block.
    One(T),
    /// One value per down block.
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    pub(crate) fn expand(&self, n: usize, name: &str) -> Result<Vec<T>> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); n]),
            PerBlock::Each(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Each(v) => candle_core::bail!("unet config: {name} has {} entries for {n} blocks", v.len()),
        }
    }
}

fn one<T>(v: T) -> PerBlock<T> {
    PerBlock::One(v)
}

/// The keys of `unet/config.json` that shape the network (unknown keys are ignored;
/// options stipple does not implement are refused by [`UNetConfig::check`]).
#[derive(Clone, Debug, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in (4, or 9 for inpainting UNets).
    #[serde(default = "four")]
    pub in_channels: usize,
    /// Channels out.
    #[serde(default = "four")]
    pub out_channels: usize,
    /// Down block class names.
    pub down_block_types: Vec<String>,
    /// Up block class names.
    pub up_block_types: Vec<String>,
    /// Mid block class (`UNetMidBlock2DCrossAttn` or none).
    #[serde(default = "mid_default")]
    pub mid_block_type: Option<String>,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per down block.
    #[serde(default = "two")]
    pub layers_per_block: PerBlock<usize>,
    /// Padding of the downsampling convolutions.
    #[serde(default = "usize_one")]
    pub downsample_padding: usize,
    /// Output scale of the mid block's residual blocks.
    #[serde(default = "f64_one")]
    pub mid_block_scale_factor: f64,
    /// GroupNorm groups.
    #[serde(default = "groups_default")]
    pub norm_num_groups: usize,
    /// GroupNorm epsilon.
    #[serde(default = "eps_default")]
    pub norm_eps: f64,
    /// Width of the text context.
    pub cross_attention_dim: PerBlock<usize>,
    /// Transformer blocks per attention layer.
    #[serde(default = "one_depth")]
    pub transformer_layers_per_block: PerBlock<usize>,
    /// Attention heads per block (diffusers' historical name for the head count).
    #[serde(default = "heads_default")]
    pub attention_head_dim: PerBlock<usize>,
    /// Attention heads per block, when given under its proper name.
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    /// Linear (not 1x1 conv) transformer projections.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Cosine before sine in the timestep embedding.
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding.
    #[serde(default)]
    pub freq_shift: f64,
    /// LCM's guidance-embedding width.
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    /// `text_time` for SDXL.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Width of each SDXL size/crop embedding.
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Input width of SDXL's `add_embedding` (pooled text + 6 size/crop embeddings).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Overrides the time-embedding width (default 4 x the first block's channels).
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// Scale the input to [-1, 1] (unused by SD).
    #[serde(default)]
    pub center_input_sample: bool,
    /// Latent size the model was trained at.
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default)]
    class_embed_type: Option<String>,
    #[serde(default)]
    encoder_hid_dim: Option<usize>,
    #[serde(default)]
    dual_cross_attention: bool,
    #[serde(default)]
    only_cross_attention: serde_json::Value,
    #[serde(default)]
    resnet_time_scale_shift: Option<String>,
    #[serde(default)]
    time_embedding_type: Option<String>,
    #[serde(default)]
    act_fn: Option<String>,
    #[serde(default)]
    conv_in_kernel: Option<usize>,
    #[serde(default)]
    conv_out_kernel: Option<usize>,
    #[serde(default)]
    attention_type: Option<String>,
    #[serde(default)]
    timestep_post_act: Option<String>,
}

fn four() -> usize { 4 }
fn two() -> PerBlock<usize> { one(2) }
fn usize_one() -> usize { 1 }
fn f64_one() -> f64 { 1.0 }
fn groups_default() -> usize { 32 }
fn eps_default() -> f64 { 1e-5 }
fn one_depth() -> PerBlock<usize> { one(1) }
fn heads_default() -> PerBlock<usize> { one(8) }
fn yes() -> bool { true }
fn mid_default() -> Option<String> { Some("UNetMidBlock2DCrossAttn".into()) }

impl UNetConfig {
    /// Refuses the options this implementation does not cover, by name.
    pub fn check(&self) -> Result<()> {
        let refuse = |what: &str| -> Result<()> { candle_core::bail!("unet config: {what} is not supported") };
        if self.class_embed_type.is_some() {
            refuse("class_embed_type")?;
        }
        if self.encoder_hid_dim.is_some() {
            refuse("encoder_hid_dim")?;
        }
        if self.dual_cross_attention {
            refuse("dual_cross_attention")?;
        }
        if matches!(&self.only_cross_attention, serde_json::Value::Bool(true))
            || matches!(&self.only_cross_attention, serde_json::Value::Array(a) if a.iter().any(|v| v == &serde_json::Value::Bool(true)))
        {
            refuse("only_cross_attention")?;
        }
        let ok = |v: &Option<String>, allowed: &str| v.as_deref().is_none_or(|s| s == allowed);
        if !ok(&self.resnet_time_scale_shift, "default") {
            refuse("resnet_time_scale_shift other than default")?;
        }
        if !ok(&self.time_embedding_type, "positional") {
            refuse("time_embedding_type other than positional")?;
        }
        if !ok(&self.act_fn, "silu") {
            refuse("act_fn other than silu")?;
        }
        if !ok(&self.attention_type, "default") {
            refuse("attention_type other than default")?;
        }
        if self.timestep_post_act.is_some() {
            refuse("timestep_post_act")?;
        }
        if self.conv_in_kernel.unwrap_or(3) != 3 || self.conv_out_kernel.unwrap_or(3) != 3 {
            refuse("conv kernels other than 3")?;
        }
        match self.addition_embed_type.as_deref() {
            None | Some("text_time") => {}
            Some(other) => refuse(&format!("addition_embed_type {other}"))?,
        }
        if self.mid_block_type.as_deref().is_some_and(|m| m != "UNetMidBlock2DCrossAttn") {
            refuse(&format!("mid_block_type {}", self.mid_block_type.as_deref().unwrap_or_default()))?;
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            candle_core::bail!("unet config: block_out_channels, down_block_types and up_block_types must have the same length");
        }
        Ok(())
    }

    /// True for SDXL-style UNets that need pooled text embeddings and size conditioning.
    pub fn has_text_time(&self) -> bool {
        self.addition_embed_type.as_deref() == Some("text_time")
    }
}

/// One down block: residual blocks, each optionally followed by a transformer, then an
/// optional downsampler.
#[derive(Debug)]
struct DownBlock {
    layers: Vec<(ResnetBlock2D, Option<Transformer2D>)>,
    downsample: Option<Downsample2D>,
}

/// One up block: residual blocks over the concatenated skip connections, each optionally
/// followed by a transformer, then an optional upsampler.
#[derive(Debug)]
struct UpBlock {
    layers: Vec<(ResnetBlock2D, Option<Transformer2D>)>,
    upsample: Option<Upsample2D>,
}

/// SDXL's extra conditioning: the pooled text embedding and six size / crop numbers.
#[derive(Debug)]
struct TextTimeEmbedding {
    time_dim: usize,
    add_embedding: TimestepEmbedding,
}

/// What the UNet is conditioned on besides the noisy latents and the timestep.
pub struct UNetConditioning<'a> {
    /// Text context `[b, 77, cross_attention_dim]`.
    pub context: &'a Tensor,
    /// SDXL: pooled text embeddings `[b, projection_dim]`.
    pub text_embeds: Option<&'a Tensor>,
    /// SDXL: `[h, w, top, left, target_h, target_w]` per row, `[b, 6]` as values.
    pub time_ids: Option<&'a [[f64; 6]]>,
    /// LCM: the guidance-scale embedding `[b, time_cond_proj_dim]`.
    pub timestep_cond: Option<&'a Tensor>,
}

/// The conditional UNet.
#[derive(Debug)]
pub struct UNet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    text_time: Option<TextTimeEmbedding>,
    down: Vec<DownBlock>,
    mid: Option<(ResnetBlock2D, Transformer2D, ResnetBlock2D)>,
    up: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    /// The config it was built from.
    pub config: UNetConfig,
    dtype: DType,
}

impl UNet2DConditionModel {
    /// Builds the network described by `cfg` from the weights under `vb`.
    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        let n = cfg.block_out_channels.len();
        let ch = &cfg.block_out_channels;
        let layers = cfg.layers_per_block.expand(n, "layers_per_block")?;
        let heads = cfg.num_attention_heads.as_ref().unwrap_or(&cfg.attention_head_dim).expand(n, "attention heads")?;
        let context = cfg.cross_attention_dim.expand(n, "cross_attention_dim")?;
        let depth = cfg.transformer_layers_per_block.expand(n, "transformer_layers_per_block")?;
        let (groups, eps) = (cfg.norm_num_groups, cfg.norm_eps);
        let temb = cfg.time_embedding_dim.unwrap_or(4 * ch[0]);
        let tcfg = |channels, i: usize| Transformer2DConfig {
            channels,
            heads: heads[i],
            depth: depth[i],
            context_dim: context[i],
            groups,
            linear_projection: cfg.use_linear_projection,
        };
        let has_attn = |name: &str| -> Result<bool> {
            match name {
                "CrossAttnDownBlock2D" | "CrossAttnUpBlock2D" => Ok(true),
                "DownBlock2D" | "UpBlock2D" => Ok(false),
                other => candle_core::bail!("unet config: block type {other} is not supported"),
            }
        };

        let conv_in = conv2d(vb.pp("conv_in"), cfg.in_channels, ch[0], 3, 1, 1)?;
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), ch[0], temb, cfg.time_cond_proj_dim)?;
        let text_time = if cfg.has_text_time() {
            let (Some(time_dim), Some(input)) = (cfg.addition_time_embed_dim, cfg.projection_class_embeddings_input_dim) else {
                candle_core::bail!("unet config: text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim");
            };
            Some(TextTimeEmbedding { time_dim, add_embedding: TimestepEmbedding::new(vb.pp("add_embedding"), input, temb, None)? })
        } else {
            None
        };

        let mut down = Vec::with_capacity(n);
        let mut c_out = ch[0];
        for i in 0..n {
            let c_in = c_out;
            c_out = ch[i];
            let attn = has_attn(&cfg.down_block_types[i])?;
            let vb = vb.pp(format!("down_blocks.{i}"));
            let mut block = Vec::with_capacity(layers[i]);
            for j in 0..layers[i] {
                let r = ResnetBlock2D::new(vb.pp(format!("resnets.{j}")), if j == 0 { c_in } else { c_out }, c_out, Some(temb), groups, eps, 1.0)?;
                let t = if attn { Some(Transformer2D::new(vb.pp(format!("attentions.{j}")), tcfg(c_out, i))?) } else { None };
                block.push((r, t));
            }
            let downsample =
                if i + 1 < n { Some(Downsample2D::new(vb.pp("downsamplers.0"), c_out, cfg.downsample_padding)?) } else { None };
            down.push(DownBlock { layers: block, downsample });
        }

        let mid = if cfg.mid_block_type.is_some() {
            let vb = vb.pp("mid_block");
            let c = ch[n - 1];
            let s = cfg.mid_block_scale_factor;
            Some((
                ResnetBlock2D::new(vb.pp("resnets.0"), c, c, Some(temb), groups, eps, s)?,
                Transformer2D::new(vb.pp("attentions.0"), tcfg(c, n - 1))?,
                ResnetBlock2D::new(vb.pp("resnets.1"), c, c, Some(temb), groups, eps, s)?,
            ))
        } else {
            None
        };

        let mut up = Vec::with_capacity(n);
        let rev = |v: &[usize], i: usize| v[n - 1 - i];
        let mut c_out = rev(ch, 0);
        for i in 0..n {
            let c_prev = c_out;
            c_out = rev(ch, i);
            let c_in = rev(ch, (i + 1).min(n - 1));
            let attn = has_attn(&cfg.up_block_types[i])?;
            let vb = vb.pp(format!("up_blocks.{i}"));
            let num = rev(&layers, i) + 1;
            let tc = Transformer2DConfig { heads: rev(&heads, i), depth: rev(&depth, i), context_dim: rev(&context, i), ..tcfg(c_out, 0) };
            let mut block = Vec::with_capacity(num);
            for j in 0..num {
                let skip = if j == num - 1 { c_in } else { c_out };
                let res_in = if j == 0 { c_prev } else { c_out };
                let r = ResnetBlock2D::new(vb.pp(format!("resnets.{j}")), res_in + skip, c_out, Some(temb), groups, eps, 1.0)?;
                let t = if attn { Some(Transformer2D::new(vb.pp(format!("attentions.{j}")), tc)?) } else { None };
                block.push((r, t));
            }
            let upsample = if i + 1 < n { Some(Upsample2D::new(vb.pp("upsamplers.0"), c_out)?) } else { None };
            up.push(UpBlock { layers: block, upsample });
        }

        let conv_norm_out = GroupNorm::new(vb.pp("conv_norm_out"), groups, ch[0], eps)?;
        let conv_out = conv2d(vb.pp("conv_out"), ch[0], cfg.out_channels, 3, 1, 1)?;
        Ok(Self { conv_in, time_embedding, text_time, down, mid, up, conv_norm_out, conv_out, config: cfg.clone(), dtype: vb.dtype() })
    }

    /// One denoising evaluation: `sample` `[b, in_channels, h, w]` at `timestep` (may be
    /// fractional) -> the model output `[b, out_channels, h, w]`.
    pub fn forward(&self, sample: &Tensor, timestep: f64, cond: &UNetConditioning) -> Result<Tensor> {
        self.forward_timesteps(sample, &vec![timestep; sample.dim(0)?], cond)
    }

    /// The same with one timestep per batch row (training draws a level per image).
    pub fn forward_timesteps(&self, sample: &Tensor, timesteps: &[f64], cond: &UNetConditioning) -> Result<Tensor> {
        let (b, _, _, _) = sample.dims4()?;
        if timesteps.len() != b {
            candle_core::bail!("unet: {} timesteps for a batch of {b}", timesteps.len());
        }
        let dtype = sample.dtype();
        let dev = sample.device();
        let ch0 = self.config.block_out_channels[0];
        let t = sinusoidal(timesteps, ch0, self.config.flip_sin_to_cos, self.config.freq_shift, 1.0, dev)?.to_dtype(dtype)?;
        let mut emb = self.time_embedding.forward(&t, cond.timestep_cond)?;
        if let Some(tt) = &self.text_time {
            let (Some(text), Some(ids)) = (cond.text_embeds, cond.time_ids) else {
                candle_core::bail!("this SDXL-style UNet needs pooled text embeddings and size conditioning");
            };
            if ids.len() != b {
                candle_core::bail!("size conditioning has {} rows for a batch of {b}", ids.len());
            }
            let flat: Vec<f64> = ids.iter().flatten().copied().collect();
            let time = sinusoidal(&flat, tt.time_dim, self.config.flip_sin_to_cos, self.config.freq_shift, 1.0, dev)?
                .reshape((b, 6 * tt.time_dim))?
                .to_dtype(dtype)?;
            let add = Tensor::cat(&[&text.to_dtype(dtype)?, &time], 1)?;
            emb = (emb + tt.add_embedding.forward(&add, None)?)?;
        }
        let context = cond.context;
        let sample = if self.config.center_input_sample { sample.affine(2.0, -1.0)? } else { sample.clone() };

        let mut h = self.conv_in.forward(&sample)?;
        let mut skips = vec![h.clone()];
        for block in &self.down {
            for (res, attn) in &block.layers {
                h = res.forward(&h, Some(&emb))?;
                if let Some(a) = attn {
                    h = a.forward(&h, context)?;
                }
                skips.push(h.clone());
            }
            if let Some(d) = &block.downsample {
                h = d.forward(&h)?;
                skips.push(h.clone());
            }
        }
        if let Some((r1, attn, r2)) = &self.mid {
            h = r1.forward(&h, Some(&emb))?;
            h = attn.forward(&h, context)?;
            h = r2.forward(&h, Some(&emb))?;
        }
        for block in &self.up {
            for (res, attn) in &block.layers {
                let skip = skips.pop().ok_or_else(|| candle_core::Error::Msg("unet: skip connections ran out".into()))?;
                h = res.forward(&Tensor::cat(&[&h, &skip], 1)?, Some(&emb))?;
                if let Some(a) = attn {
                    h = a.forward(&h, context)?;
                }
            }
            if let Some(u) = &block.upsample {
                let size = skips.last().map(|s| (s.dim(2), s.dim(3)));
                let size = match size {
                    Some((Ok(sh), Ok(sw))) => Some((sh, sw)),
                    _ => None,
                };
                h = u.forward(&h, size)?;
            }
        }
        let h = self.conv_norm_out.forward_silu(&h)?;
        self.conv_out.forward(&h)
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}
