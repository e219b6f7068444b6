//! The forward process of continuous (discrete-time) diffusion, as training needs it.

use candle_core::Tensor;

use crate::Result;

/// The forward process of discrete-time diffusion for training: rows of `x0` noised to
/// `sqrt(abar) x0 + sqrt(1 - abar) noise` at each row's `alpha_bars`, and the regression
/// target for `prediction` (the noise, or `v = sqrt(abar) noise - sqrt(1 - abar) x0`, or
/// `x0`). Returns `(noisy, target)`.
pub fn noised_pair(x0: &Tensor, noise: &Tensor, alpha_bars: &[f32], prediction: crate::prediction::PredictionType) -> Result<(Tensor, Tensor)> {
    use crate::prediction::PredictionType;
    let b = x0.dim(0)?;
    if alpha_bars.len() != b {
        return Err(crate::error::invalid(format!("{} noise levels for a batch of {b}", alpha_bars.len())));
    }
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, x0.rank() - 1));
    let col = |f: &dyn Fn(f32) -> f32| Tensor::from_vec(alpha_bars.iter().map(|&a| f(a)).collect::<Vec<f32>>(), shape.as_slice(), x0.device())?.to_dtype(x0.dtype());
    let (sa, sb) = (col(&|a| a.sqrt())?, col(&|a| (1.0 - a).sqrt())?);
    let noisy = (x0.broadcast_mul(&sa)? + noise.broadcast_mul(&sb)?)?;
    let target = match prediction {
        PredictionType::Epsilon => noise.clone(),
        PredictionType::VPrediction => (noise.broadcast_mul(&sa)? - x0.broadcast_mul(&sb)?)?,
        PredictionType::Sample => x0.clone(),
        PredictionType::FlowPrediction => return Err(crate::error::invalid("flow-matching training is not supported; use epsilon or v_prediction")),
    };
    Ok((noisy, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn noised_pair_matches_the_prediction_formulas() {
        use crate::prediction::PredictionType;
        let x0 = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let eps = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.0]], &Device::Cpu).unwrap();
        let (noisy, target) = noised_pair(&x0, &eps, &[0.64, 0.36], PredictionType::VPrediction).unwrap();
        let n = noisy.to_vec2::<f32>().unwrap();
        assert!((n[0][0] - (0.8 * 1.0 + 0.6 * 0.5)).abs() < 1e-6 && (n[1][1] - 0.6 * 4.0).abs() < 1e-6, "{n:?}");
        let t = target.to_vec2::<f32>().unwrap();
        assert!((t[0][1] - (0.8 * -1.0 - 0.6 * 2.0)).abs() < 1e-6 && (t[1][0] - (0.6 * 2.0 - 0.8 * 3.0)).abs() < 1e-6, "{t:?}");
        // the clean-sample estimate of the sampler inverts it
        let back = PredictionType::VPrediction.x0_from_alpha_bar(&target.narrow(0, 0, 1).unwrap(), &noisy.narrow(0, 0, 1).unwrap(), 0.64).unwrap();
        assert!((back.to_vec2::<f32>().unwrap()[0][0] - 1.0).abs() < 1e-5);
        let (_, t) = noised_pair(&x0, &eps, &[0.5, 0.5], PredictionType::Epsilon).unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), eps.to_vec2::<f32>().unwrap());
        assert!(noised_pair(&x0, &eps, &[0.5], PredictionType::Epsilon).is_err());
    }
}
