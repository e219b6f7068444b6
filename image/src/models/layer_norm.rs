//! LayerNorm with weight and bias, on the kernels' trainable [`stipple_kernels::norm::layer_norm`].

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// LayerNorm over the last dimension with weight and bias.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` (`dim` each) under `vb`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get(dim, "weight")?, bias: vb.get(dim, "bias")?, eps })
    }

    /// Normalises `x` `[..., dim]` (trainable when the weights track gradients).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        stipple_kernels::norm::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
