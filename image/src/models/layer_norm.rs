//! LayerNorm that trains: candle's fused `layer_norm` has no backward pass, so when the
//! input or the weights track gradients (training) the same normalisation runs as plain
//! tensor ops; inference keeps the fused kernel.

use candle_core::{D, Result, Tensor};
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

    /// Normalises `x` `[..., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !stipple_kernels::tracks_grad(&[x, &self.weight, &self.bias]) {
            return candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn trained_form_matches_the_fused_kernel_and_passes_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.1, 16, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.1, 16, &dev).unwrap()).unwrap();
        let trained = LayerNorm { weight: w.as_tensor().clone(), bias: b.as_tensor().clone(), eps: 1e-5 };
        let fixed = LayerNorm { weight: w.as_tensor().detach(), bias: b.as_tensor().detach(), eps: 1e-5 };
        let (y, want) = (trained.forward(&x).unwrap(), fixed.forward(&x).unwrap());
        let diff = (&y - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "{diff}");
        let grads = (y * x.to_dtype(DType::F32).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
    }
}
