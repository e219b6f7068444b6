//! Latent consistency model sampling (diffusers' `LCMScheduler`): each step predicts the
//! clean sample with the consistency boundary conditions, then re-noises it to the next timestep.

use candle_core::Tensor;

use super::ddim::{alpha_bar_noise, clip_range};
use super::{Scheduler, check_index};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::schedule::NoiseSchedule;
use crate::timesteps::np_linspace_open;
use crate::{Error, Result};

/// The LCM sampler.
pub struct Lcm {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    prediction: PredictionType,
    clip: Option<f32>,
    timestep_scaling: f32,
}

impl Lcm {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults {
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: "scaled_linear",
        spacing: TimestepSpacing::Leading,
        clip_sample: false,
        set_alpha_to_one: true,
    };

    /// Builds the sampler for `steps` steps, picked from the distillation schedule.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let train = cfg.train_steps();
        let original = cfg.original_inference_steps.unwrap_or(50);
        if original > train || original == 0 {
            return Err(Error::Config(format!("original_inference_steps {original} must be in 1..={train}")));
        }
        if steps > original {
            return Err(Error::InvalidArgument(format!(
                "lcm can take at most original_inference_steps = {original} steps, got {steps}"
            )));
        }
        let k = train / original;
        let mut origin: Vec<usize> = (1..=original).map(|i| i * k - 1).collect();
        origin.reverse();
        let timesteps = np_linspace_open(0.0, origin.len() as f64, steps)
            .into_iter()
            .map(|x| origin[x.floor() as usize] as f64)
            .collect();
        Ok(Self {
            schedule: cfg.noise_schedule(&Self::DEFAULTS)?,
            timesteps,
            prediction: cfg.prediction(),
            clip: clip_range(cfg, &Self::DEFAULTS),
            timestep_scaling: cfg.timestep_scaling.unwrap_or(10.0) as f32,
        })
    }
}

/// The consistency boundary conditions (c_skip, c_out) at timestep `t`: c_skip(0) = 1 and
/// c_out(0) = 0, so the model is the identity at t = 0 (sigma_data = 0.5).
pub(crate) fn boundary_scalings(t: f32, timestep_scaling: f32) -> (f32, f32) {
    let scaled = t * timestep_scaling;
    let sigma_data = 0.5f32;
    let c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
    let c_out = scaled / (scaled * scaled + sigma_data * sigma_data).sqrt();
    (c_skip, c_out)
}

impl Scheduler for Lcm {
    fn name(&self) -> &'static str {
        "lcm"
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.timesteps.len(), "lcm")?;
        let t = self.timesteps[i];
        let a_t = self.schedule.alphas_cumprod[t as usize];
        let (c_skip, c_out) = boundary_scalings(t as f32, self.timestep_scaling);
        let mut x0 = self.prediction.x0_from_alpha_bar(out, sample, a_t)?;
        if let Some(r) = self.clip {
            x0 = x0.clamp(-r, r)?;
        }
        let denoised = super::lin2(&x0, c_out, sample, c_skip)?;
        match self.timesteps.get(i + 1) {
            None => Ok(denoised),
            Some(&prev_t) => {
                let a_prev = self.schedule.alphas_cumprod[prev_t as usize];
                let z = noise.randn_like(out)?;
                super::lin2(&denoised, a_prev.sqrt(), &z, (1.0 - a_prev).sqrt())
            }
        }
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        alpha_bar_noise(&self.schedule, original, noise, self.timesteps[i])
    }
}

#[cfg(test)]
mod tests {
    use super::boundary_scalings;

    #[test]
    fn boundary_conditions_by_hand() {
        assert_eq!(boundary_scalings(0.0, 10.0), (1.0, 0.0));
        // t = 1, scaling 10: c_skip = 0.25 / 100.25, c_out = 10 / sqrt(100.25).
        let (skip, out) = boundary_scalings(1.0, 10.0);
        assert!((skip - 0.25 / 100.25).abs() < 1e-8 && (out - 10.0 / 100.25f32.sqrt()).abs() < 1e-6);
    }
}
