//! Heun (diffusers' `HeunDiscreteScheduler`): a second-order predictor-corrector that makes
//! two model calls per step. Its timestep list repeats every inner timestep, and the
//! sampler alternates between the Euler predictor and the trapezoidal corrector.

use candle_core::Tensor;

use super::{Scheduler, check_index, sigma_schedule};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::Result;

/// The Heun sampler.
pub struct Heun {
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    init_noise_sigma: f64,
    prediction: PredictionType,
    clip: Option<f32>,
    /// Predictor state: (derivative, dt, sample) between the two calls of a step.
    pending: Option<(Tensor, f32, Tensor)>,
}

impl Heun {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults {
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: "linear",
        spacing: TimestepSpacing::Linspace,
        clip_sample: false,
        set_alpha_to_one: true,
    };

    /// Builds the sampler for `steps` steps (2 * steps - 1 model calls).
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        // diffusers' Heun has no `rescale_betas_zero_snr` option and ignores the key.
        let cfg = &SchedulerConfig { rescale_betas_zero_snr: None, ..cfg.clone() };
        let s = sigma_schedule::build(cfg, &Self::DEFAULTS, steps, true, false)?;
        let init_noise_sigma = s.init_noise_sigma();
        let n = s.sigmas.len();
        let mut sigmas = vec![s.sigmas[0]];
        for &x in &s.sigmas[1..n - 1] {
            sigmas.extend([x, x]);
        }
        sigmas.push(s.sigmas[n - 1]);
        let mut timesteps = vec![s.timesteps[0]];
        for &t in &s.timesteps[1..] {
            timesteps.extend([t, t]);
        }
        let clip = cfg.clip_sample.unwrap_or(false).then(|| cfg.clip_sample_range.unwrap_or(1.0) as f32);
        Ok(Self { timesteps, sigmas, init_noise_sigma, prediction: cfg.prediction(), clip, pending: None })
    }
}

impl Scheduler for Heun {
    fn name(&self) -> &'static str {
        "heun"
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }
    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }
    fn order(&self) -> usize {
        2
    }
    fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        sigma_schedule::scale_by_sigma(&self.sigmas, sample, i)
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, _noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.timesteps.len(), "heun")?;
        let first_order = self.pending.is_none();
        let (sigma, next) = if first_order { (self.sigmas[i], self.sigmas[i + 1]) } else { (self.sigmas[i - 1], self.sigmas[i]) };
        let sigma_input = if first_order { sigma } else { next };
        let mut x0 = self.prediction.x0_from_sigma(out, sample, sigma_input)?;
        if let Some(r) = self.clip {
            x0 = x0.clamp(-r, r)?;
        }
        match self.pending.take() {
            None => {
                let derivative = super::div(&(sample - x0)?, sigma)?;
                let dt = next - sigma;
                let prev = (sample + derivative.affine(dt as f64, 0.0)?)?;
                self.pending = Some((derivative, dt, sample.clone()));
                Ok(prev)
            }
            Some((prev_derivative, dt, start)) => {
                let derivative = super::div(&(sample - x0)?, next)?;
                let derivative = ((prev_derivative + derivative)? / 2.0)?;
                Ok((start + derivative.affine(dt as f64, 0.0)?)?)
            }
        }
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        sigma_schedule::add_sigma_noise(&self.sigmas, original, noise, i)
    }
}
