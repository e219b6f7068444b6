//! Timestep embeddings (diffusers' `embeddings.py`): the sinusoidal projection of a
//! timestep (also used for SDXL's size/crop conditioning and LCM's guidance scale) and the
//! two-layer MLP that maps it to the UNet's embedding width.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// diffusers' `get_timestep_embedding`: `[n] -> [n, dim]`, sin then cos (or cos then sin
/// with `flip_sin_to_cos`), frequencies `exp(-ln(max_period) i / (dim/2 - shift))`.
pub fn sinusoidal(values: &[f64], dim: usize, flip_sin_to_cos: bool, shift: f64, scale: f64, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(values.len() * dim);
    for &t in values {
        let t = t as f32;
        let args: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = -(10000f32).ln() * i as f32 / (half as f32 - shift as f32);
                scale as f32 * (t * exponent.exp())
            })
            .collect();
        let (sin, cos): (Vec<f32>, Vec<f32>) = args.iter().map(|a| (a.sin(), a.cos())).unzip();
        if flip_sin_to_cos {
            out.extend(cos);
            out.extend(sin);
        } else {
            out.extend(sin);
            out.extend(cos);
        }
        if dim % 2 == 1 {
            out.push(0.0);
        }
    }
    Tensor::from_vec(out, (values.len(), dim), device)
}

/// diffusers' `TimestepEmbedding`: `linear_2(silu(linear_1(x + cond_proj(c))))`, where the
/// optional `cond_proj` carries LCM's guidance-scale embedding.
#[derive(Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    cond_proj: Option<Linear>,
}

impl TimestepEmbedding {
    /// `cond_dim` is the UNet's `time_cond_proj_dim`.
    pub fn new(vb: VarBuilder, c_in: usize, dim: usize, cond_dim: Option<usize>) -> Result<Self> {
        let linear_1 = candle_nn::linear(c_in, dim, vb.pp("linear_1"))?;
        let linear_2 = candle_nn::linear(dim, dim, vb.pp("linear_2"))?;
        let cond_proj = match cond_dim {
            Some(c) => Some(candle_nn::linear_no_bias(c, c_in, vb.pp("cond_proj"))?),
            None => None,
        };
        Ok(Self { linear_1, linear_2, cond_proj })
    }

    /// `cond` must be given exactly when the embedding has a `cond_proj`.
    pub fn forward(&self, xs: &Tensor, cond: Option<&Tensor>) -> Result<Tensor> {
        let xs = match (&self.cond_proj, cond) {
            (Some(p), Some(c)) => (xs + p.forward(c)?)?,
            (Some(_), None) => candle_core::bail!("this UNet needs a guidance embedding (time_cond_proj_dim)"),
            _ => xs.clone(),
        };
        self.linear_2.forward(&candle_nn::ops::silu(&self.linear_1.forward(&xs)?)?)
    }
}

/// LCM's guidance-scale embedding (`get_guidance_scale_embedding`): the sinusoid of
/// `1000 w` with sin first and the log-frequency spacing over `dim/2 - 1`.
pub fn guidance_embedding(w: f64, batch: usize, dim: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let row = sinusoidal(&[w * 1000.0], dim, false, 1.0, 1.0, device)?;
    row.to_dtype(dtype)?.broadcast_as((batch, dim))?.contiguous()
}
