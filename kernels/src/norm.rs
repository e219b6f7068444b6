//! Normalisations that train: candle's fused `rms_norm` and `layer_norm` have no backward
//! pass, so when the input or the weights track gradients (training) the same
//! normalisation runs as plain tensor ops; inference keeps the fused kernels.

use candle_core::{D, Module, Result, Tensor};

/// RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if !crate::tracks_grad(&[x, weight]) {
        return candle_nn::RmsNorm::new(weight.clone(), eps).forward(x);
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(weight)
}

/// LayerNorm over the last dimension with weight and bias.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if !crate::tracks_grad(&[x, weight, bias]) {
        return candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps as f32);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(weight)?.broadcast_add(bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs_diff;
    use candle_core::{DType, Device, Var};

    #[test]
    fn trained_forms_match_the_fused_kernels_and_pass_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.1, 16, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.1, 16, &dev).unwrap()).unwrap();
        let (wt, bt) = (w.as_tensor(), b.as_tensor());
        let (wd, bd) = (wt.detach(), bt.detach());
        let y = rms_norm(&x, wt, 1e-5).unwrap();
        assert!(max_abs_diff(&y, &rms_norm(&x, &wd, 1e-5).unwrap()) < 1e-5);
        let z = layer_norm(&x, wt, bt, 1e-5).unwrap();
        assert!(max_abs_diff(&z, &layer_norm(&x, &wd, &bd, 1e-5).unwrap()) < 1e-5);
        let grads = ((y + z).unwrap() * x.to_dtype(DType::F32).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(wt).is_some() && grads.get(bt).is_some());
    }
}
