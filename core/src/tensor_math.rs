//! The two tensor helpers the sampler updates and the prediction conversions share.

use candle_core::Tensor;

use crate::Result;

/// `a * x + b * y` with f32 coefficients (the shape of almost every sampler update).
pub(crate) fn lin2(x: &Tensor, a: f32, y: &Tensor, b: f32) -> Result<Tensor> {
    Ok((x.affine(a as f64, 0.0)? + y.affine(b as f64, 0.0)?)?)
}

/// `x / s` as a true division (not a multiplication by 1/s), so results round exactly like
/// torch's: near sigma = 4096 (zero-SNR) the difference is visible after cancellation.
pub(crate) fn div(x: &Tensor, s: f32) -> Result<Tensor> {
    let s = Tensor::new(s, x.device())?.to_dtype(x.dtype())?;
    Ok(x.broadcast_div(&s)?)
}
