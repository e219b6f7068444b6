//! Euler ancestral, "Euler a" (diffusers' `EulerAncestralDiscreteScheduler`): an Euler step
//! down to sigma_down, then fresh noise of size sigma_up.

use candle_core::Tensor;

use super::{Scheduler, check_index, sigma_schedule};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::{Error, Result};

/// The ancestral Euler sampler.
pub struct EulerAncestral {
    schedule: sigma_schedule::SigmaSchedule,
    prediction: PredictionType,
}

impl EulerAncestral {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults::common(TimestepSpacing::Linspace);

    /// Builds the sampler for `steps` steps.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        if cfg.prediction() == PredictionType::Sample {
            return Err(Error::Config("euler-a does not support prediction_type \"sample\" (nor does diffusers)".into()));
        }
        Ok(Self { schedule: sigma_schedule::build(cfg, &Self::DEFAULTS, steps, false, false)?, prediction: cfg.prediction() })
    }
}

impl Scheduler for EulerAncestral {
    fn name(&self) -> &'static str {
        "euler-a"
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
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.schedule.timesteps.len(), "euler-a")?;
        let (from, to) = (self.schedule.sigmas[i], self.schedule.sigmas[i + 1]);
        let x0 = self.prediction.x0_from_sigma(out, sample, from)?;
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let derivative = super::div(&(sample - x0)?, from)?;
        let prev = (sample + derivative.affine((down - from) as f64, 0.0)?)?;
        let z = noise.randn_like(out)?;
        Ok((prev + z.affine(up as f64, 0.0)?)?)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        self.schedule.add_noise(original, noise, i)
    }
}
