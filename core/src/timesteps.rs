//! Inference timesteps and sigmas: spacing of discrete timesteps, Karras and exponential
//! sigmas, sigma-to-timestep interpolation and flow-matching shifts.
//!
//! The helpers reproduce numpy's semantics (`linspace`, `arange`, `interp`, round half to
//! even) because diffusers builds its schedules with numpy; tiny differences there change
//! which training timestep a step lands on.

use crate::config::TimestepSpacing;
use crate::{Error, Result};

/// `np.linspace(start, stop, num)` (with endpoint) in f64.
pub fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// `np.linspace(start, stop, num, endpoint=False)` in f64.
pub fn np_linspace_open(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return vec![];
    }
    let step = (stop - start) / num as f64;
    (0..num).map(|i| i as f64 * step + start).collect()
}

/// `np.arange(start, stop, step)` for floats: numpy fills `start + i * delta` with
/// `delta = (start + step) - start`.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return vec![];
    }
    let delta = (start + step) - start;
    (0..len as usize)
        .map(|i| match i {
            0 => start,
            1 => start + step,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// `np.interp(x, arange(len(fp)), fp)`: piecewise-linear interpolation on integer knots.
pub fn interp_on_index(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last as f64 {
        return fp[last] as f64;
    }
    let j = x.floor() as usize;
    if x == j as f64 {
        return fp[j] as f64;
    }
    let slope = fp[j + 1] as f64 - fp[j] as f64;
    slope * (x - j as f64) + fp[j] as f64
}

/// Discrete timesteps for `n` steps out of `num_train` (DDPM/DDIM/Euler family semantics):
/// `leading` (+offset), `trailing` (-1) or `linspace` (not rounded; callers round when
/// their diffusers class does).
pub fn spaced_timesteps(spacing: TimestepSpacing, num_train: usize, n: usize, steps_offset: usize) -> Vec<f64> {
    let t = num_train as f64;
    match spacing {
        TimestepSpacing::Linspace => {
            let mut v = np_linspace(0.0, t - 1.0, n);
            v.reverse();
            v
        }
        TimestepSpacing::Leading => {
            let ratio = num_train / n;
            (0..n).rev().map(|i| (i * ratio + steps_offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = t / n as f64;
            np_arange(t, 0.0, -ratio).into_iter().map(|x| x.round_ties_even() - 1.0).collect()
        }
    }
}

/// Multistep-solver timesteps (DPM-Solver, UniPC): `n + 1` points with the last dropped for
/// `linspace`/`leading`, rounded to integers; `last` is the last usable training step + 1.
pub fn multistep_timesteps(spacing: TimestepSpacing, num_train: usize, last: usize, n: usize, steps_offset: usize) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Linspace => {
            let v = np_linspace(0.0, last as f64 - 1.0, n + 1);
            v.iter().rev().take(n).map(|x| x.round_ties_even()).collect()
        }
        TimestepSpacing::Leading => {
            let ratio = last / (n + 1);
            (1..=n).rev().map(|i| (i * ratio + steps_offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            np_arange(last as f64, 0.0, -ratio).into_iter().map(|x| x.round_ties_even() - 1.0).collect()
        }
    }
}

/// Maps a sigma back to a (fractional) training timestep by linear interpolation in
/// log-sigma, as diffusers' `_sigma_to_t` does. `log_sigmas` ascends with the timestep.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let mut low_idx = 0;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls as f64 >= 0.0 {
            low_idx = i;
        }
    }
    let low_idx = low_idx.min(n - 2);
    let (low, high) = (log_sigmas[low_idx] as f64, log_sigmas[low_idx + 1] as f64);
    let w = ((low - log_sigma) / (low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * (low_idx + 1) as f64
}

/// Karras et al. (2022) sigmas: rho = 7 interpolation between `sigma_max` and `sigma_min`.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    np_linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// Sigmas evenly spaced in log space from `sigma_max` down to `sigma_min`.
pub fn exponential_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(sigma_max.ln(), sigma_min.ln(), n).into_iter().map(f64::exp).collect()
}

/// The static flow-matching shift: s sigma / (1 + (s - 1) sigma).
pub fn flow_shift(sigma: f64, shift: f64) -> f64 {
    shift * sigma / (1.0 + (shift - 1.0) * sigma)
}

/// The dynamic (resolution-dependent) flow shift: e^mu / (e^mu + 1/sigma - 1).
pub fn flow_time_shift(sigma: f64, mu: f64) -> f64 {
    mu.exp() / (mu.exp() + (1.0 / sigma - 1.0))
}

/// mu for the dynamic shift, linear in the number of image tokens (as FLUX pipelines compute it).
pub fn flow_mu(image_seq_len: usize, base_seq_len: usize, max_seq_len: usize, base_shift: f64, max_shift: f64) -> f64 {
    let m = (max_shift - base_shift) / (max_seq_len as f64 - base_seq_len as f64);
    let b = base_shift - m * base_seq_len as f64;
    image_seq_len as f64 * m + b
}

/// The first step index and remaining step count for img2img at `strength` (0..=1):
/// diffusers skips `N - min(int(N * strength), N)` steps (times the sampler's order).
pub fn img2img_start(num_inference_steps: usize, strength: f64, order: usize) -> Result<usize> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(Error::InvalidArgument(format!("strength must be between 0 and 1, got {strength}")));
    }
    let init = ((num_inference_steps as f64 * strength) as usize).min(num_inference_steps);
    Ok(num_inference_steps.saturating_sub(init) * order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacings_match_the_diffusers_docs() {
        assert_eq!(spaced_timesteps(TimestepSpacing::Leading, 1000, 4, 1), vec![751.0, 501.0, 251.0, 1.0]);
        assert_eq!(spaced_timesteps(TimestepSpacing::Trailing, 1000, 4, 0), vec![999.0, 749.0, 499.0, 249.0]);
        let lin: Vec<f64> = spaced_timesteps(TimestepSpacing::Linspace, 1000, 4, 0).iter().map(|x| x.round()).collect();
        assert_eq!(lin, vec![999.0, 666.0, 333.0, 0.0]);
    }

    #[test]
    fn karras_endpoints_and_sigma_to_t_round_trip() {
        let s = karras_sigmas(0.03, 14.6, 5);
        assert!((s[0] - 14.6).abs() < 1e-9 && (s[4] - 0.03).abs() < 1e-9);
        let log_sigmas: Vec<f32> = (0..10).map(|i| (i as f32 * 0.5).ln_1p()).collect();
        let t = sigma_to_t((log_sigmas[3] as f64).exp(), &log_sigmas);
        assert!((t - 3.0).abs() < 1e-6, "{t}");
    }

    #[test]
    fn img2img_start_step() {
        assert_eq!(img2img_start(10, 0.35, 1).unwrap(), 7);
        assert_eq!(img2img_start(7, 0.6, 2).unwrap(), 6);
        assert!(img2img_start(7, 1.5, 1).is_err());
    }
}
