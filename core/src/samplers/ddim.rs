//! DDIM (diffusers' `DDIMScheduler`): deterministic for eta = 0, with fresh noise of
//! scale eta * sigma_t otherwise. Steps jump `T / N` training timesteps back.

use candle_core::Tensor;

use super::{Scheduler, check_index};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::schedule::NoiseSchedule;
use crate::timesteps::spaced_timesteps;
use crate::{Error, Result};

/// The DDIM sampler.
pub struct Ddim {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    stride: i64,
    final_alpha_cumprod: f32,
    prediction: PredictionType,
    clip: Option<f32>,
    eta: f32,
}

/// Discrete timesteps as integers for the alpha-bar samplers (DDPM, DDIM): `linspace` is rounded.
pub(crate) fn integer_timesteps(cfg: &SchedulerConfig, defaults: &ClassDefaults, steps: usize) -> Result<Vec<f64>> {
    let train = cfg.train_steps();
    if steps > train {
        return Err(Error::InvalidArgument(format!("{steps} steps exceed the {train} training timesteps")));
    }
    let spacing = cfg.timestep_spacing.unwrap_or(defaults.spacing);
    Ok(spaced_timesteps(spacing, train, steps, cfg.steps_offset.unwrap_or(0))
        .into_iter()
        .map(|t| t.round_ties_even())
        .collect())
}

/// The clipping range of x0 when the config asks for it.
pub(crate) fn clip_range(cfg: &SchedulerConfig, defaults: &ClassDefaults) -> Option<f32> {
    cfg.clip_sample.unwrap_or(defaults.clip_sample).then(|| cfg.clip_sample_range.unwrap_or(1.0) as f32)
}

/// Predicted noise from a model output, given x0 (DDIM needs both).
pub(crate) fn epsilon(prediction: PredictionType, out: &Tensor, sample: &Tensor, x0: &Tensor, alpha_bar: f32) -> Result<Tensor> {
    let (sa, sb) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    Ok(match prediction {
        PredictionType::Epsilon => out.clone(),
        PredictionType::VPrediction => super::lin2(out, sa, sample, sb)?,
        PredictionType::Sample => super::div(&(sample - x0.affine(sa as f64, 0.0)?)?, sb)?,
        PredictionType::FlowPrediction => return Err(Error::Config("flow_prediction needs flow-euler".into())),
    })
}

impl Ddim {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults {
        beta_start: 0.0001,
        beta_end: 0.02,
        beta_schedule: "linear",
        spacing: TimestepSpacing::Leading,
        clip_sample: true,
        set_alpha_to_one: true,
    };

    /// Builds the sampler for `steps` steps; eta comes from the config's `eta` (default 0).
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let schedule = cfg.noise_schedule(&Self::DEFAULTS)?;
        let final_alpha_cumprod =
            if cfg.set_alpha_to_one.unwrap_or(Self::DEFAULTS.set_alpha_to_one) { 1.0 } else { schedule.alphas_cumprod[0] };
        let eta = cfg.eta.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::InvalidArgument(format!("ddim eta must be in [0, 1], got {eta}")));
        }
        Ok(Self {
            timesteps: integer_timesteps(cfg, &Self::DEFAULTS, steps)?,
            stride: (cfg.train_steps() / steps) as i64,
            final_alpha_cumprod,
            prediction: cfg.prediction(),
            clip: clip_range(cfg, &Self::DEFAULTS),
            eta: eta as f32,
            schedule,
        })
    }
}

impl Scheduler for Ddim {
    fn name(&self) -> &'static str {
        "ddim"
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.timesteps.len(), "ddim")?;
        let t = self.timesteps[i] as i64;
        let prev_t = t - self.stride;
        let a_t = self.schedule.alphas_cumprod[t as usize];
        let a_prev = if prev_t >= 0 { self.schedule.alphas_cumprod[prev_t as usize] } else { self.final_alpha_cumprod };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let mut x0 = self.prediction.x0_from_alpha_bar(out, sample, a_t)?;
        let eps = epsilon(self.prediction, out, sample, &x0, a_t)?;
        if let Some(r) = self.clip {
            x0 = x0.clamp(-r, r)?;
        }
        let variance = b_prev / b_t * (1.0 - a_t / a_prev);
        let std = self.eta * variance.sqrt();
        let direction = (1.0 - a_prev - std * std).sqrt();
        let prev = super::lin2(&x0, a_prev.sqrt(), &eps, direction)?;
        if self.eta > 0.0 {
            let z = noise.randn_like(out)?;
            return Ok((prev + z.affine(std as f64, 0.0)?)?);
        }
        Ok(prev)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        alpha_bar_noise(&self.schedule, original, noise, self.timesteps[i])
    }
}

/// sqrt(abar_t) x0 + sqrt(1 - abar_t) noise at training timestep `t`.
pub(crate) fn alpha_bar_noise(schedule: &NoiseSchedule, original: &Tensor, noise: &Tensor, t: f64) -> Result<Tensor> {
    let a = schedule.alphas_cumprod[t as usize];
    super::lin2(original, a.sqrt(), noise, (1.0 - a).sqrt())
}
