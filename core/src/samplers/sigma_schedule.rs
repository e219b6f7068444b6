//! The sigma schedule shared by the Euler, Euler-ancestral and Heun samplers: discrete
//! timesteps mapped to sigmas by interpolation, optionally re-spaced (Karras / exponential).

use candle_core::Tensor;

use crate::config::{ClassDefaults, FinalSigmas, SchedulerConfig, TimestepSpacing};
use crate::schedule::NoiseSchedule;
use crate::timesteps::{exponential_sigmas, interp_on_index, karras_sigmas, sigma_to_t, spaced_timesteps};
use crate::Result;

/// Timesteps (as the f32 values diffusers passes to the model) and sigmas (one extra, final entry).
pub(crate) struct SigmaSchedule {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
    pub spacing: TimestepSpacing,
}

/// sample / sqrt(sigmas[i]^2 + 1) (shared with Heun's interleaved sigmas).
pub(crate) fn scale_by_sigma(sigmas: &[f32], sample: &Tensor, i: usize) -> Result<Tensor> {
    let s = sigmas[i];
    super::div(sample, (s * s + 1.0).sqrt())
}

/// original + sigmas[i] noise.
pub(crate) fn add_sigma_noise(sigmas: &[f32], original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
    Ok((original + noise.affine(sigmas[i] as f64, 0.0)?)?)
}

/// Training sigmas sqrt((1 - abar) / abar) in f32; zero-SNR schedules clamp the last abar to 2^-24.
pub(crate) fn training_sigmas(cfg: &SchedulerConfig, schedule: &NoiseSchedule) -> Vec<f32> {
    let mut ac = schedule.alphas_cumprod.clone();
    if cfg.zero_snr()
        && let Some(last) = ac.last_mut()
    {
        *last = 2f32.powi(-24);
    }
    ac.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
}

/// Builds the schedule; `respace` allows Karras / exponential sigmas (not for Euler ancestral),
/// `final_sigmas` chooses the last sigma (Euler reads it from the config; the others use zero).
pub(crate) fn build(
    cfg: &SchedulerConfig,
    defaults: &ClassDefaults,
    steps: usize,
    respace: bool,
    read_final_sigmas: bool,
) -> Result<SigmaSchedule> {
    let schedule = cfg.noise_schedule(defaults)?;
    let spacing = cfg.timestep_spacing.unwrap_or(defaults.spacing);
    let train = cfg.train_steps();
    let timesteps: Vec<f64> = spaced_timesteps(spacing, train, steps, cfg.steps_offset.unwrap_or(0))
        .into_iter()
        .map(|t| t as f32 as f64)
        .collect();
    let train_sigmas = training_sigmas(cfg, &schedule);
    let log_sigmas: Vec<f32> = train_sigmas.iter().map(|s| s.ln()).collect();
    let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp_on_index(t, &train_sigmas)).collect();
    let mut timesteps = timesteps;
    let karras = respace && cfg.use_karras_sigmas == Some(true);
    let exponential = respace && cfg.use_exponential_sigmas == Some(true);
    if karras || exponential {
        let sigma_min = cfg.sigma_min.unwrap_or(*sigmas.last().unwrap_or(&0.0));
        let sigma_max = cfg.sigma_max.unwrap_or(sigmas[0]);
        sigmas = if karras {
            karras_sigmas(sigma_min, sigma_max, steps)
        } else {
            exponential_sigmas(sigma_min, sigma_max, steps)
        };
        timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas) as f32 as f64).collect();
    }
    let last = match (read_final_sigmas, cfg.final_sigmas_type.unwrap_or_default()) {
        (true, FinalSigmas::SigmaMin) => {
            let a0 = schedule.alphas_cumprod[0];
            ((1.0 - a0) / a0).sqrt() as f64
        }
        _ => 0.0,
    };
    sigmas.push(last);
    Ok(SigmaSchedule { timesteps, sigmas: sigmas.into_iter().map(|s| s as f32).collect(), spacing })
}

impl SigmaSchedule {
    /// sample / sqrt(sigma_i^2 + 1): the model sees a unit-variance input.
    pub fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        scale_by_sigma(&self.sigmas, sample, i)
    }

    /// x0 + sigma_i noise.
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        add_sigma_noise(&self.sigmas, original, noise, i)
    }

    /// diffusers' `init_noise_sigma`: the largest sigma, or sqrt(max^2 + 1) for `leading` spacing.
    pub fn init_noise_sigma(&self) -> f64 {
        let max = self.sigmas.iter().cloned().fold(f32::MIN, f32::max);
        match self.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        }
    }
}
