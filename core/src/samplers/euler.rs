//! Euler (diffusers' `EulerDiscreteScheduler`, k-diffusion's `sample_euler` without churn).

use candle_core::Tensor;

use super::{Scheduler, check_index, sigma_schedule};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::Result;

/// The deterministic Euler sampler in sigma space.
pub struct Euler {
    schedule: sigma_schedule::SigmaSchedule,
    prediction: PredictionType,
}

impl Euler {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults::common(TimestepSpacing::Linspace);

    /// Builds the sampler for `steps` steps.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        Ok(Self { schedule: sigma_schedule::build(cfg, &Self::DEFAULTS, steps, true, true)?, prediction: cfg.prediction() })
    }
}

impl Scheduler for Euler {
    fn name(&self) -> &'static str {
        "euler"
    }
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.schedule.sigmas)
    }
    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma()
    }
    fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        self.schedule.scale_model_input(sample, i)
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, _noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.schedule.timesteps.len(), "euler")?;
        let (sigma, next) = (self.schedule.sigmas[i], self.schedule.sigmas[i + 1]);
        let x0 = self.prediction.x0_from_sigma(out, sample, sigma)?;
        let derivative = super::div(&(sample - x0)?, sigma)?;
        Ok((sample + derivative.affine((next - sigma) as f64, 0.0)?)?)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        self.schedule.add_noise(original, noise, i)
    }
}
