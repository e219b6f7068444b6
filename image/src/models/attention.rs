//! Attention blocks (diffusers' `attention_processor.py`, `attention.py`,
//! `transformer_2d.py`): multi-head self / cross attention on the fused CPU kernel, the
//! `BasicTransformerBlock` (self-attention, cross-attention, GEGLU feed-forward), the
//! `Transformer2DModel` that wraps blocks between a GroupNorm and two projections, and the
//! VAE's single-head spatial self-attention.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layer_norm::LayerNorm;
use stipple_kernels::linear::Linear;

use super::resnet::{GroupNorm, linear, linear_no_bias};

/// diffusers' `Attention` with the default processor: `to_q`, `to_k`, `to_v` (no bias in
/// the UNet), `to_out.0`. Keys and values come from the context when one is given.
#[derive(Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `context_dim` is the cross-attention width (`None` for self-attention);
    /// `qkv_bias` is true in the VAE.
    pub fn new(vb: VarBuilder, dim: usize, context_dim: Option<usize>, heads: usize, head_dim: usize, qkv_bias: bool) -> Result<Self> {
        let inner = heads * head_dim;
        let kv_dim = context_dim.unwrap_or(dim);
        let lin = |i, o, name: &str| if qkv_bias { linear(vb.pp(name), i, o) } else { linear_no_bias(vb.pp(name), i, o) };
        Ok(Self {
            to_q: lin(dim, inner, "to_q")?,
            to_k: lin(kv_dim, inner, "to_k")?,
            to_v: lin(kv_dim, inner, "to_v")?,
            to_out: linear(vb.pp("to_out.0"), inner, dim)?,
            heads,
            head_dim,
        })
    }

    /// Loads a VAE attention block written with the pre-0.14 diffusers names
    /// (`query`, `key`, `value`, `proj_attn`), which older hub VAEs still use.
    pub fn new_legacy_vae(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            to_q: linear(vb.pp("query"), dim, dim)?,
            to_k: linear(vb.pp("key"), dim, dim)?,
            to_v: linear(vb.pp("value"), dim, dim)?,
            to_out: linear(vb.pp("proj_attn"), dim, dim)?,
            heads: 1,
            head_dim: dim,
        })
    }

    /// `xs` `[b, n, dim]`, `context` `[b, m, context_dim]` -> `[b, n, dim]`.
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let ctx = context.unwrap_or(xs);
        let (q, k, v) = (self.to_q.forward(xs)?, self.to_k.forward(ctx)?, self.to_v.forward(ctx)?);
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let out = stipple_kernels::attention::attention_merged(&q, &k, &v, self.heads, self.heads, None, scale)?;
        self.to_out.forward(&out)
    }
}

/// GEGLU feed-forward: `net.2(h * gelu(g))` with `[h, g] = net.0.proj(x)`.
#[derive(Debug)]
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj_in: linear(vb.pp("net.0.proj"), dim, 2 * inner)?,
            proj_out: linear(vb.pp("net.2"), inner, dim)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hg = self.proj_in.forward(xs)?;
        self.proj_out.forward(&stipple_kernels::gated::gelu_mul(&hg)?)
    }
}

/// `BasicTransformerBlock`: pre-norm self-attention, cross-attention and feed-forward, each residual.
#[derive(Debug)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn new(vb: VarBuilder, dim: usize, heads: usize, head_dim: usize, context_dim: usize) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(vb.pp("attn1"), dim, None, heads, head_dim, false)?,
            norm2: LayerNorm::new(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(vb.pp("attn2"), dim, Some(context_dim), heads, head_dim, false)?,
            norm3: LayerNorm::new(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::new(vb.pp("ff"), dim)?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self.attn2.forward(&self.norm2.forward(&xs)?, Some(context))? + &xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

/// The input / output projection of a `Transformer2DModel`: a 1x1 convolution (SD 1.x)
/// or a linear layer over flattened pixels (`use_linear_projection`, SD 2.x and SDXL).
#[derive(Debug)]
enum Projection {
    Conv(super::resnet::Conv2d),
    Linear(Linear),
}

impl Projection {
    fn new(vb: VarBuilder, c_in: usize, c_out: usize, linear_projection: bool) -> Result<Self> {
        Ok(if linear_projection {
            Projection::Linear(linear(vb, c_in, c_out)?)
        } else {
            Projection::Conv(super::resnet::conv2d(vb, c_in, c_out, 1, 0, 1)?)
        })
    }
}

/// `Transformer2DModel` for continuous inputs: GroupNorm, projection in, `depth`
/// transformer blocks over the `h*w` pixels, projection out, residual.
#[derive(Debug)]
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

/// The shape of one `Transformer2DModel`.
#[derive(Clone, Copy, Debug)]
pub struct Transformer2DConfig {
    /// Channels in and out.
    pub channels: usize,
    /// Attention heads.
    pub heads: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// Linear (not 1x1 conv) projections.
    pub linear_projection: bool,
}

impl Transformer2D {
    /// Loads `norm`, `proj_in`, `transformer_blocks.*`, `proj_out` under `vb`.
    pub fn new(vb: VarBuilder, c: Transformer2DConfig) -> Result<Self> {
        if c.heads == 0 || c.channels % c.heads != 0 {
            candle_core::bail!("{} channels cannot be split into {} attention heads", c.channels, c.heads);
        }
        let head_dim = c.channels / c.heads;
        let norm = GroupNorm::new(vb.pp("norm"), c.groups, c.channels, 1e-6)?;
        let proj_in = Projection::new(vb.pp("proj_in"), c.channels, c.channels, c.linear_projection)?;
        let blocks = (0..c.depth)
            .map(|i| BasicTransformerBlock::new(vb.pp(format!("transformer_blocks.{i}")), c.channels, c.heads, head_dim, c.context_dim))
            .collect::<Result<Vec<_>>>()?;
        let proj_out = Projection::new(vb.pp("proj_out"), c.channels, c.channels, c.linear_projection)?;
        Ok(Self { norm, proj_in, blocks, proj_out })
    }

    /// `xs` `[b, c, h, w]`, `context` `[b, m, context_dim]`.
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let normed = self.norm.forward(xs)?;
        let to_tokens = |t: &Tensor| t.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous();
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)?)?,
            Projection::Linear(lin) => lin.forward(&to_tokens(&normed)?)?,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let to_image = |t: &Tensor| t.transpose(1, 2)?.reshape((b, c, h, w));
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_image(&tokens)?.contiguous()?)?,
            Projection::Linear(lin) => to_image(&lin.forward(&tokens)?)?,
        };
        out + xs
    }
}

/// The VAE's mid-block attention: GroupNorm, one-head self-attention over pixels, residual.
#[derive(Debug)]
pub struct SpatialSelfAttention {
    group_norm: GroupNorm,
    attn: Attention,
}

impl SpatialSelfAttention {
    /// Reads either the current (`to_q`...) or the legacy (`query`...) weight names (a new
    /// model, built for training, gets the current ones).
    pub fn new(vb: VarBuilder, channels: usize, groups: usize, eps: f64) -> Result<Self> {
        let group_norm = GroupNorm::new(vb.pp("group_norm"), groups, channels, eps)?;
        let attn = if vb.contains_tensor("query.weight") {
            Attention::new_legacy_vae(vb.clone(), channels)?
        } else {
            Attention::new(vb.clone(), channels, None, 1, channels, true)?
        };
        Ok(Self { group_norm, attn })
    }

    /// `xs` `[b, c, h, w]`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let tokens = self.group_norm.forward(xs)?.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?;
        let out = self.attn.forward(&tokens, None)?;
        out.transpose(1, 2)?.reshape((b, c, h, w))? + xs
    }
}
