//! An exact denoiser for Gaussian data, to check samplers end to end without a network.
//!
//! If the data are x0 ~ N(mu, std^2) elementwise, the optimal model output at every noise
//! level has a closed form. Any correct sampler driven by it must return samples whose
//! mean and standard deviation approach mu and std as the step count grows.

use candle_core::Tensor;

use crate::config::SchedulerConfig;
use crate::prediction::PredictionType;
use crate::samplers::Denoiser;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// The exact denoiser for N(mu, std^2) data under a config's noise process.
pub struct GaussianData {
    /// Data mean.
    pub mu: f64,
    /// Data standard deviation.
    pub std: f64,
    prediction: PredictionType,
    /// log sigma per training timestep (VP processes); `None` for flow matching.
    log_sigmas: Option<Vec<f64>>,
    train_steps: f64,
}

impl GaussianData {
    /// A denoiser predicting what `cfg`'s model would (epsilon, v or flow velocity).
    pub fn new(mu: f64, std: f64, cfg: &SchedulerConfig) -> Result<Self> {
        let flow = cfg.is_flow();
        let log_sigmas = if flow {
            None
        } else {
            let schedule: NoiseSchedule = cfg.noise_schedule(&crate::samplers::Euler::DEFAULTS)?;
            Some(schedule.sigmas().iter().map(|&s| (s as f64).ln()).collect())
        };
        let prediction = if flow { PredictionType::FlowPrediction } else { cfg.prediction() };
        Ok(Self { mu, std, prediction, log_sigmas, train_steps: cfg.train_steps() as f64 })
    }

    /// Signal and noise scales (a, s) with x_t = a x0 + s n at model timestep `t`.
    fn scales(&self, t: f64) -> (f64, f64) {
        match &self.log_sigmas {
            None => {
                let s = t / self.train_steps;
                (1.0 - s, s)
            }
            Some(ls) => {
                // Linear interpolation in log sigma between training steps (the inverse of sigma_to_t).
                let t = t.clamp(0.0, (ls.len() - 1) as f64);
                let j = (t.floor() as usize).min(ls.len() - 2);
                let w = t - j as f64;
                let sigma = ((1.0 - w) * ls[j] + w * ls[j + 1]).exp();
                let a = 1.0 / (sigma * sigma + 1.0).sqrt();
                (a, sigma * a)
            }
        }
    }
}

impl Denoiser for GaussianData {
    fn denoise(&mut self, x: &Tensor, t: f64) -> Result<Tensor> {
        let (a, s) = self.scales(t);
        let v = self.std * self.std;
        // E[x0 | x_t] = mu + a v (x_t - a mu) / (a^2 v + s^2)
        let k = a * v / (a * a * v + s * s);
        let x0 = x.affine(k, self.mu - k * a * self.mu)?;
        Ok(match self.prediction {
            PredictionType::Epsilon => ((x - x0.affine(a, 0.0)?)? / s)?,
            PredictionType::VPrediction => {
                let eps = ((x - x0.affine(a, 0.0)?)? / s)?;
                (eps.affine(a, 0.0)? - x0.affine(s, 0.0)?)?
            }
            PredictionType::Sample => x0,
            PredictionType::FlowPrediction => {
                if s == 0.0 {
                    return Err(Error::InvalidArgument("flow timestep 0 has no velocity".into()));
                }
                let noise = ((x - x0.affine(a, 0.0)?)? / s)?;
                (noise - x0)?
            }
        })
    }
}
