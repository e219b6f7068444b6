//! Noise schedules: the betas of a discrete-time diffusion model and their cumulative alphas.
//!
//! Values are computed with the same float widths and operation order as diffusers
//! (torch f32 tensors, f64 accumulation in `cumprod`), so schedules match it bit for bit.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the betas of the training noise schedule are laid out (diffusers' `beta_schedule`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Evenly spaced betas from `beta_start` to `beta_end`.
    Linear,
    /// Evenly spaced square roots of beta, squared (Stable Diffusion's schedule).
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal (alpha-bar = cos^2), capped at 0.999.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

impl std::str::FromStr for BetaSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "scaled_linear" => Ok(Self::ScaledLinear),
            "squaredcos_cap_v2" => Ok(Self::SquaredCosCapV2),
            other => Err(Error::Config(format!(
                "unknown beta_schedule {other:?} (expected linear, scaled_linear or squaredcos_cap_v2)"
            ))),
        }
    }
}

/// `torch.linspace(start, end, steps, dtype=float32)`, reproducing torch's CPU kernel
/// (f32 step, the first half counted from the start and the second half from the end).
pub fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| if i < halfway { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 })
                .collect()
        }
    }
}

/// The betas of a schedule with `num_train_timesteps` entries.
pub fn betas(schedule: &BetaSchedule, beta_start: f64, beta_end: f64, num_train_timesteps: usize) -> Vec<f32> {
    match schedule {
        BetaSchedule::Linear => linspace_f32(beta_start as f32, beta_end as f32, num_train_timesteps),
        BetaSchedule::ScaledLinear => {
            linspace_f32(beta_start.sqrt() as f32, beta_end.sqrt() as f32, num_train_timesteps)
                .into_iter()
                .map(|b| b * b)
                .collect()
        }
        BetaSchedule::SquaredCosCapV2 => betas_for_cosine_alpha_bar(num_train_timesteps, 0.999),
    }
}

/// Betas that make alpha-bar follow cos^2((t + 0.008) / 1.008 * pi / 2), in f64 like diffusers,
/// then rounded to f32. (candle 0.11's version divides integers and must not be used.)
pub fn betas_for_cosine_alpha_bar(num_train_timesteps: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
    let n = num_train_timesteps as f64;
    (0..num_train_timesteps)
        .map(|i| {
            let t1 = i as f64 / n;
            let t2 = (i + 1) as f64 / n;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// Cumulative products of `1 - beta`, accumulated in f64 and stored as f32 as torch does.
pub fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

/// Rescales betas so the final step has zero signal-to-noise ratio (Lin et al. 2023, Algorithm 1),
/// as diffusers' `rescale_betas_zero_snr` does.
pub fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut sqrt_ab: Vec<f32> = alphas_cumprod(betas).iter().map(|a| a.sqrt()).collect();
    let (first, last) = (sqrt_ab[0], *sqrt_ab.last().unwrap_or(&0.0));
    let scale = first / (first - last);
    for s in sqrt_ab.iter_mut() {
        *s = (*s - last) * scale;
    }
    let alphas_bar: Vec<f32> = sqrt_ab.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(betas.len());
    for i in 0..alphas_bar.len() {
        let alpha = if i == 0 { alphas_bar[0] } else { alphas_bar[i] / alphas_bar[i - 1] };
        out.push(1.0 - alpha);
    }
    out
}

/// A discrete training schedule: betas and their cumulative alphas.
#[derive(Clone, Debug)]
pub struct NoiseSchedule {
    /// Per-timestep betas.
    pub betas: Vec<f32>,
    /// Cumulative products of `1 - beta` (alpha-bar).
    pub alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// Builds the schedule from betas.
    pub fn from_betas(betas: Vec<f32>) -> Self {
        let alphas_cumprod = alphas_cumprod(&betas);
        Self { betas, alphas_cumprod }
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Whether the schedule is empty (never for a valid config).
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// sigma(t) = sqrt((1 - abar) / abar) for every training timestep, in f32 as diffusers computes it.
    pub fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_linear_endpoints() {
        let b = betas(&BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000);
        assert_eq!(b.len(), 1000);
        assert!((b[0] - 0.00085).abs() < 1e-9);
        assert!((b[999] - 0.012).abs() < 1e-8);
    }

    #[test]
    fn cosine_betas_are_not_degenerate() {
        // candle 0.11 returns a single non-zero beta here because it divides integers.
        let b = betas(&BetaSchedule::SquaredCosCapV2, 0.0, 0.0, 1000);
        assert!(b.iter().filter(|&&x| x > 0.0).count() == 1000);
        assert!(b[0] < 1e-4 && b[999] == 0.999);
    }

    #[test]
    fn zero_snr_rescale_ends_at_zero_alpha_bar() {
        let b = rescale_zero_terminal_snr(&betas(&BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000));
        let ab = alphas_cumprod(&b);
        assert_eq!(*ab.last().unwrap(), 0.0);
        let orig = alphas_cumprod(&betas(&BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000));
        assert!((ab[0] - orig[0]).abs() < 1e-6);
    }
}
