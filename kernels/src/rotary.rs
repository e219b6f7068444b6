//! Rotary position embedding that trains: candle's fused `rope` has no backward pass, so
//! when an input tracks gradients (training) the rotation runs as plain tensor ops;
//! inference keeps the fused kernel.

use candle_core::{D, Result, Tensor};

/// Rotary embedding on halves (`candle_nn::rotary_emb::rope`'s layout): for `x`
/// `[B, H, N, D]` and `cos`, `sin` `[N, D/2]` (or `[B, N, D/2]`, per-row positions),
/// `[x1 cos - x2 sin, x2 cos + x1 sin]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !crate::tracks_grad(&[x, cos, sin]) {
        return candle_nn::rotary_emb::rope(x, cos, sin);
    }
    let (cos, sin) = if cos.rank() == 3 { (cos.unsqueeze(1)?, sin.unsqueeze(1)?) } else { (cos.clone(), sin.clone()) };
    let d = x.dim(D::Minus1)?;
    let (x1, x2) = (x.narrow(D::Minus1, 0, d / 2)?, x.narrow(D::Minus1, d / 2, d / 2)?);
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[a, b], D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs_diff;
    use candle_core::{Device, Var};

    #[test]
    fn trained_form_matches_the_fused_kernel_and_passes_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap()).unwrap();
        for cs_shape in [vec![5, 4], vec![2, 5, 4]] {
            let cos = Tensor::randn(0f32, 1.0, cs_shape.as_slice(), &dev).unwrap();
            let sin = Tensor::randn(0f32, 1.0, cs_shape.as_slice(), &dev).unwrap();
            let y = rope(x.as_tensor(), &cos, &sin).unwrap();
            let want = rope(&x.as_tensor().detach(), &cos, &sin).unwrap();
            assert!(max_abs_diff(&y, &want) < 1e-5, "{cs_shape:?}");
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            assert!(grads.get(x.as_tensor()).is_some());
        }
    }
}
