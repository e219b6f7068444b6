//! What a denoising model predicts, and how to turn that into a clean-sample estimate.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::Result;

/// The quantity a diffusion model outputs (diffusers' `prediction_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PredictionType {
    /// The added noise (Stable Diffusion 1.x, SDXL).
    #[default]
    #[serde(rename = "epsilon")]
    Epsilon,
    /// The velocity v = sqrt(abar) eps - sqrt(1 - abar) x0 (Stable Diffusion 2.x 768).
    #[serde(rename = "v_prediction")]
    VPrediction,
    /// The clean sample x0 itself.
    #[serde(rename = "sample", alias = "original_sample")]
    Sample,
    /// The flow-matching velocity noise - x0 (SD3, FLUX).
    #[serde(rename = "flow_prediction")]
    FlowPrediction,
}

impl PredictionType {
    /// x0 from a model output in the discrete-time (alpha-bar) parameterisation:
    /// epsilon: (x - sqrt(1-abar) out) / sqrt(abar); v: sqrt(abar) x - sqrt(1-abar) out.
    pub fn x0_from_alpha_bar(self, model_output: &Tensor, sample: &Tensor, alpha_bar: f32) -> Result<Tensor> {
        let (sa, sb) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        Ok(match self {
            Self::Epsilon => crate::tensor_math::div(&(sample - model_output.affine(sb as f64, 0.0)?)?, sa)?,
            Self::VPrediction => (sample.affine(sa as f64, 0.0)? - model_output.affine(sb as f64, 0.0)?)?,
            Self::Sample => model_output.clone(),
            Self::FlowPrediction => {
                return Err(crate::Error::Config("flow_prediction needs a flow-matching sampler".into()));
            }
        })
    }

    /// x0 from a model output in sigma space (the inputs were scaled by 1/sqrt(sigma^2+1)):
    /// epsilon: x - sigma out; v: out (-sigma/sqrt(sigma^2+1)) + x / (sigma^2+1).
    pub fn x0_from_sigma(self, model_output: &Tensor, sample: &Tensor, sigma: f32) -> Result<Tensor> {
        Ok(match self {
            Self::Epsilon => (sample - model_output.affine(sigma as f64, 0.0)?)?,
            Self::VPrediction => {
                let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
                (model_output.affine(c_out as f64, 0.0)? + crate::tensor_math::div(sample, sigma * sigma + 1.0)?)?
            }
            Self::Sample => model_output.clone(),
            Self::FlowPrediction => (sample - model_output.affine(sigma as f64, 0.0)?)?,
        })
    }
}
