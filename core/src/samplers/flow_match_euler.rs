//! Flow-matching Euler (diffusers' `FlowMatchEulerDiscreteScheduler`, SD3 / FLUX):
//! x_t = sigma noise + (1 - sigma) x0, the model predicts the velocity, and each step is
//! x += (sigma_next - sigma) v. Sigmas are shifted statically (`shift`) or by `mu`.

use candle_core::Tensor;

use super::{Scheduler, check_index};
use crate::config::SchedulerConfig;
use crate::noise::NoiseSource;
use crate::timesteps::{flow_shift, flow_time_shift, np_linspace};
use crate::{Error, Result};

/// The flow-matching Euler sampler.
pub struct FlowMatchEuler {
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
}

impl FlowMatchEuler {
    /// Builds the sampler; `mu` is required when the config uses dynamic shifting.
    pub fn new(cfg: &SchedulerConfig, steps: usize, mu: Option<f64>) -> Result<Self> {
        let train = cfg.train_steps();
        let shift = cfg.shift.unwrap_or(1.0);
        let dynamic = cfg.use_dynamic_shifting.unwrap_or(false);
        if cfg.use_karras_sigmas == Some(true) || cfg.use_exponential_sigmas == Some(true) {
            return Err(Error::Config("flow-euler with Karras/exponential sigmas is not supported yet".into()));
        }
        // The training sigmas (f32), shifted at construction unless the shift is dynamic.
        let train_sigma = |t: f32| {
            let s = t / train as f32;
            if dynamic { s } else { shift as f32 * s / (1.0 + (shift as f32 - 1.0) * s) }
        };
        let (sigma_max, sigma_min) = (train_sigma(train as f32) as f64, train_sigma(1.0) as f64);
        let mu = match (dynamic, mu) {
            (true, Some(mu)) => Some(mu),
            (true, None) => {
                return Err(Error::InvalidArgument("this flow schedule uses dynamic shifting: give mu".into()));
            }
            (false, _) => None,
        };
        let sigmas: Vec<f32> = np_linspace(sigma_max * train as f64, sigma_min * train as f64, steps)
            .into_iter()
            .map(|t| {
                let s = t / train as f64;
                (match mu {
                    Some(mu) => flow_time_shift(s, mu),
                    None => flow_shift(s, shift),
                }) as f32
            })
            .collect();
        let timesteps = sigmas.iter().map(|&s| (s * train as f32) as f64).collect();
        let mut sigmas = sigmas;
        sigmas.push(0.0);
        Ok(Self { timesteps, sigmas })
    }
}

impl Scheduler for FlowMatchEuler {
    fn name(&self) -> &'static str {
        "flow-euler"
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, _noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.timesteps.len(), "flow-euler")?;
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        Ok((sample + out.affine(dt as f64, 0.0)?)?)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let s = self.sigmas[i];
        super::lin2(noise, s, original, 1.0 - s)
    }
}
