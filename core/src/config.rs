//! diffusers' `scheduler_config.json`, read as published on the hub, plus user overrides.
//!
//! Keys a sampler does not use are ignored (as diffusers does); keys that ask for a
//! feature stipple does not implement give a clear error instead of a silently wrong run.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::prediction::PredictionType;
use crate::schedule::{BetaSchedule, NoiseSchedule};
use crate::{Error, Result};

/// How inference timesteps are spread over the training timesteps (diffusers' `timestep_spacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// Evenly spaced from the last training step down to 0.
    Linspace,
    /// Multiples of `T / N` starting at 0, plus `steps_offset` (SD 1.x/2.x).
    Leading,
    /// Counting back from `T` in strides of `T / N`, minus one (SD-Turbo; needed for zero-SNR).
    Trailing,
}

/// What the last sigma of a sigma schedule is (diffusers' `final_sigmas_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmas {
    /// End at sigma 0 (a fully denoised sample).
    #[default]
    Zero,
    /// End at the smallest training sigma.
    SigmaMin,
}

/// A scheduler configuration as found in a diffusers folder's `scheduler/scheduler_config.json`.
///
/// Every field is optional: a missing key takes the default of the sampler that reads
/// the file, exactly as `SchedulerClass.from_config` does in diffusers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// The diffusers class that wrote the file (informative; any sampler may read it).
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Number of training timesteps T.
    pub num_train_timesteps: Option<usize>,
    /// First beta of the training schedule.
    pub beta_start: Option<f64>,
    /// Last beta of the training schedule.
    pub beta_end: Option<f64>,
    /// Layout of the betas.
    pub beta_schedule: Option<BetaSchedule>,
    /// Explicit betas, overriding `beta_schedule`.
    pub trained_betas: Option<Vec<f64>>,
    /// What the model predicts.
    pub prediction_type: Option<PredictionType>,
    /// Spacing of inference timesteps.
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Offset added to `leading` timesteps.
    pub steps_offset: Option<usize>,
    /// DDIM/LCM: whether the step after the last one uses alpha-bar = 1.
    pub set_alpha_to_one: Option<bool>,
    /// Whether the predicted x0 is clipped to `clip_sample_range`.
    pub clip_sample: Option<bool>,
    /// Clipping range of x0.
    pub clip_sample_range: Option<f64>,
    /// Rescale betas to zero terminal SNR.
    pub rescale_betas_zero_snr: Option<bool>,
    /// Use Karras sigmas.
    pub use_karras_sigmas: Option<bool>,
    /// Use exponentially spaced sigmas.
    pub use_exponential_sigmas: Option<bool>,
    /// Use beta-distributed sigmas (not supported).
    pub use_beta_sigmas: Option<bool>,
    /// Use uniform-lambda steps (not supported).
    pub use_lu_lambdas: Option<bool>,
    /// Overrides the smallest sigma of Karras/exponential schedules.
    pub sigma_min: Option<f64>,
    /// Overrides the largest sigma of Karras/exponential schedules.
    pub sigma_max: Option<f64>,
    /// Last sigma of the schedule.
    pub final_sigmas_type: Option<FinalSigmas>,
    /// Interpolation of sigmas between training steps (only `linear` is supported).
    pub interpolation_type: Option<String>,
    /// Euler: `discrete` or `continuous` timesteps (only `discrete` is supported).
    pub timestep_type: Option<String>,
    /// Multistep solvers: order (1 or 2).
    pub solver_order: Option<usize>,
    /// DPM-Solver: `dpmsolver++` or `sde-dpmsolver++`.
    pub algorithm_type: Option<String>,
    /// DPM-Solver: `midpoint` or `heun`; UniPC: `bh1` or `bh2`.
    pub solver_type: Option<String>,
    /// Multistep solvers: lower the order on the last steps when there are fewer than 15.
    pub lower_order_final: Option<bool>,
    /// DPM-Solver: use a first-order step at the very end.
    pub euler_at_final: Option<bool>,
    /// DPM-Solver: clip lambda from below (for cosine schedules).
    pub lambda_min_clipped: Option<f64>,
    /// DDPM: variance type (`fixed_small`, `fixed_small_log`, `fixed_large`, `fixed_large_log`).
    pub variance_type: Option<String>,
    /// Dynamic thresholding (not supported).
    pub thresholding: Option<bool>,
    /// UniPC: whether to predict x0 (default true).
    pub predict_x0: Option<bool>,
    /// LCM: the number of steps of the schedule it was distilled on.
    pub original_inference_steps: Option<usize>,
    /// LCM: scaling of the timestep in the boundary conditions.
    pub timestep_scaling: Option<f64>,
    /// Flow matching: static shift of the sigmas.
    pub shift: Option<f64>,
    /// Flow matching: shift computed from the image size (`mu`).
    pub use_dynamic_shifting: Option<bool>,
    /// Flow matching: mu at `base_image_seq_len`.
    pub base_shift: Option<f64>,
    /// Flow matching: mu at `max_image_seq_len`.
    pub max_shift: Option<f64>,
    /// Flow matching: sequence length for `base_shift`.
    pub base_image_seq_len: Option<usize>,
    /// Flow matching: sequence length for `max_shift`.
    pub max_image_seq_len: Option<usize>,
    /// Flow matching: stretch so the last sigma equals this (not supported).
    pub shift_terminal: Option<f64>,
    /// Flow matching: stochastic sampling (not supported).
    pub stochastic_sampling: Option<bool>,
    /// Flow matching: invert sigmas (not supported).
    pub invert_sigmas: Option<bool>,
    /// DDIM: eta, the amount of fresh noise per step (a stipple extension; diffusers passes it to `step`).
    pub eta: Option<f64>,
    /// Keys this version does not read.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Per-sampler defaults for keys missing from a config (the diffusers class defaults).
#[derive(Clone, Copy, Debug)]
pub struct ClassDefaults {
    /// Default `beta_start`.
    pub beta_start: f64,
    /// Default `beta_end`.
    pub beta_end: f64,
    /// Default `beta_schedule`.
    pub beta_schedule: &'static str,
    /// Default `timestep_spacing`.
    pub spacing: TimestepSpacing,
    /// Default `clip_sample`.
    pub clip_sample: bool,
    /// Default `set_alpha_to_one`.
    pub set_alpha_to_one: bool,
}

impl ClassDefaults {
    /// The defaults most diffusers schedulers share.
    pub const fn common(spacing: TimestepSpacing) -> Self {
        Self { beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear", spacing, clip_sample: false, set_alpha_to_one: true }
    }
}

impl SchedulerConfig {
    /// Parses a `scheduler_config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.display().to_string(), source })
    }

    /// Parses a config from a JSON string.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|source| Error::Json { path: "<json>".into(), source })
    }

    /// Applies `key=value` overrides given as a JSON object (e.g. `{"timestep_spacing": "trailing"}`).
    pub fn with_overrides(&self, overrides: &serde_json::Value) -> Result<Self> {
        let mut merged = serde_json::to_value(self).map_err(|e| Error::Config(e.to_string()))?;
        if let (Some(base), Some(extra)) = (merged.as_object_mut(), overrides.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        } else {
            return Err(Error::Config("overrides must be a JSON object".into()));
        }
        serde_json::from_value(merged).map_err(|e| Error::Config(e.to_string()))
    }

    /// Number of training timesteps (default 1000).
    pub fn train_steps(&self) -> usize {
        self.num_train_timesteps.unwrap_or(1000)
    }

    /// The prediction type (default epsilon).
    pub fn prediction(&self) -> PredictionType {
        self.prediction_type.unwrap_or_default()
    }

    /// Whether this config describes a flow-matching model (SD3, FLUX) rather than a
    /// discrete-time diffusion model.
    pub fn is_flow(&self) -> bool {
        self.class_name.as_deref().is_some_and(|c| c.starts_with("FlowMatch"))
            || self.shift.is_some()
            || self.use_dynamic_shifting == Some(true)
    }

    /// Whether zero-terminal-SNR rescaling is asked for.
    pub fn zero_snr(&self) -> bool {
        self.rescale_betas_zero_snr.unwrap_or(false)
    }

    /// The training noise schedule, with `defaults` for missing keys.
    pub fn noise_schedule(&self, defaults: &ClassDefaults) -> Result<NoiseSchedule> {
        let n = self.train_steps();
        if n < 2 {
            return Err(Error::Config(format!("num_train_timesteps must be at least 2, got {n}")));
        }
        let mut betas = match &self.trained_betas {
            Some(b) if b.len() != n => {
                return Err(Error::Config(format!("trained_betas has {} values, num_train_timesteps is {n}", b.len())));
            }
            Some(b) => b.iter().map(|&x| x as f32).collect(),
            None => {
                let schedule = match &self.beta_schedule {
                    Some(s) => s.clone(),
                    None => defaults.beta_schedule.parse()?,
                };
                crate::schedule::betas(
                    &schedule,
                    self.beta_start.unwrap_or(defaults.beta_start),
                    self.beta_end.unwrap_or(defaults.beta_end),
                    n,
                )
            }
        };
        if self.zero_snr() {
            betas = crate::schedule::rescale_zero_terminal_snr(&betas);
        }
        Ok(NoiseSchedule::from_betas(betas))
    }

    /// Rejects options that would change the result but that stipple does not implement.
    pub fn reject_unsupported(&self) -> Result<()> {
        let flags = [
            ("thresholding", self.thresholding),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("use_lu_lambdas", self.use_lu_lambdas),
            ("stochastic_sampling", self.stochastic_sampling),
            ("invert_sigmas", self.invert_sigmas),
        ];
        for (name, value) in flags {
            if value == Some(true) {
                return Err(Error::Config(format!("{name} = true is not supported yet")));
            }
        }
        if let Some(t) = &self.interpolation_type
            && t != "linear"
        {
            return Err(Error::Config(format!("interpolation_type {t:?} is not supported (only \"linear\")")));
        }
        if let Some(t) = &self.timestep_type
            && t != "discrete"
        {
            return Err(Error::Config(format!("timestep_type {t:?} is not supported (only \"discrete\")")));
        }
        if self.shift_terminal.is_some_and(|s| s != 0.0) {
            return Err(Error::Config("shift_terminal is not supported yet".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_hub_config_and_ignores_unknown_keys() {
        let cfg = SchedulerConfig::from_json(
            r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
                "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#,
        )
        .unwrap();
        assert_eq!(cfg.steps_offset, Some(1));
        assert_eq!(cfg.beta_schedule, Some(BetaSchedule::ScaledLinear));
        assert!(cfg.other.contains_key("skip_prk_steps"));
        let o = cfg.with_overrides(&serde_json::json!({"timestep_spacing": "trailing"})).unwrap();
        assert_eq!(o.timestep_spacing, Some(TimestepSpacing::Trailing));
        assert_eq!(o.steps_offset, Some(1));
    }

    #[test]
    fn unsupported_options_are_refused() {
        let cfg = SchedulerConfig::from_json(r#"{"thresholding": true}"#).unwrap();
        assert!(cfg.reject_unsupported().unwrap_err().to_string().contains("thresholding"));
        assert!(SchedulerConfig::from_json(r#"{"beta_schedule": "nope"}"#).is_err());
    }
}

/// The `scheduler_config.json` files of well-known hub models, for tools and tests.
pub mod presets {
    /// runwayml/stable-diffusion-v1-5 (PNDM; epsilon; `leading` with `steps_offset` 1).
    pub const SD15: &str = r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#;
    /// stabilityai/stable-diffusion-2-1 (DDIM; v-prediction).
    pub const SD21V: &str = r#"{"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}"#;
    /// stabilityai/sd-turbo (Euler; `trailing`).
    pub const SD_TURBO: &str = r#"{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": null, "use_karras_sigmas": false}"#;
    /// stabilityai/stable-diffusion-3-medium (flow matching, shift 3).
    pub const SD3: &str = r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}"#;

    /// A preset by its short name (`sd15`, `sd21v`, `sd-turbo`, `sd3`).
    pub fn by_name(name: &str) -> Option<&'static str> {
        match name {
            "sd15" => Some(SD15),
            "sd21v" | "sd21" => Some(SD21V),
            "sd-turbo" | "sdturbo" => Some(SD_TURBO),
            "sd3" => Some(SD3),
            _ => None,
        }
    }
}
