//! DDPM (diffusers' `DDPMScheduler`): the ancestral posterior step with fixed variances.

use candle_core::Tensor;

use super::ddim::{alpha_bar_noise, clip_range, integer_timesteps};
use super::{Scheduler, check_index};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// How the posterior variance is chosen (`variance_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variance {
    FixedSmall,
    FixedSmallLog,
    FixedLarge,
}

/// The DDPM sampler.
pub struct Ddpm {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    prediction: PredictionType,
    clip: Option<f32>,
    variance: Variance,
}

impl Ddpm {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults {
        beta_start: 0.0001,
        beta_end: 0.02,
        beta_schedule: "linear",
        spacing: TimestepSpacing::Leading,
        clip_sample: true,
        set_alpha_to_one: true,
    };

    /// Builds the sampler for `steps` steps.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let variance = match cfg.variance_type.as_deref().unwrap_or("fixed_small") {
            "fixed_small" => Variance::FixedSmall,
            "fixed_small_log" => Variance::FixedSmallLog,
            "fixed_large" => Variance::FixedLarge,
            other => return Err(Error::Config(format!("ddpm variance_type {other:?} is not supported"))),
        };
        Ok(Self {
            schedule: cfg.noise_schedule(&Self::DEFAULTS)?,
            timesteps: integer_timesteps(cfg, &Self::DEFAULTS, steps)?,
            prediction: cfg.prediction(),
            clip: clip_range(cfg, &Self::DEFAULTS),
            variance,
        })
    }
}

impl Scheduler for Ddpm {
    fn name(&self) -> &'static str {
        "ddpm"
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.timesteps.len(), "ddpm")?;
        let t = self.timesteps[i] as usize;
        let a_t = self.schedule.alphas_cumprod[t];
        let a_prev = match self.timesteps.get(i + 1) {
            Some(&p) => self.schedule.alphas_cumprod[p as usize],
            None => 1.0,
        };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let current_alpha = a_t / a_prev;
        let current_beta = 1.0 - current_alpha;
        let mut x0 = self.prediction.x0_from_alpha_bar(out, sample, a_t)?;
        if let Some(r) = self.clip {
            x0 = x0.clamp(-r, r)?;
        }
        let x0_coeff = a_prev.sqrt() * current_beta / b_t;
        let sample_coeff = current_alpha.sqrt() * b_prev / b_t;
        let prev = super::lin2(&x0, x0_coeff, sample, sample_coeff)?;
        if t == 0 {
            return Ok(prev);
        }
        let var = (b_prev / b_t * current_beta).max(1e-20);
        let std = match self.variance {
            Variance::FixedSmall => var.sqrt(),
            Variance::FixedSmallLog => (0.5 * var.ln()).exp(),
            Variance::FixedLarge => current_beta.sqrt(),
        };
        let z = noise.randn_like(out)?;
        Ok((prev + z.affine(std as f64, 0.0)?)?)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        alpha_bar_noise(&self.schedule, original, noise, self.timesteps[i])
    }
}
