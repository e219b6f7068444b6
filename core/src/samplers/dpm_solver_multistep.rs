//! DPM-Solver++ 2M and 2M SDE (diffusers' `DPMSolverMultistepScheduler` with
//! `algorithm_type` `dpmsolver++` / `sde-dpmsolver++`, order 2, midpoint or heun solver).
//! Works in data-prediction (x0) form with log-SNR steps h = lambda_t - lambda_s.

use candle_core::Tensor;

use super::{Scheduler, check_index};
use crate::config::{ClassDefaults, FinalSigmas, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::schedule::{BetaSchedule, NoiseSchedule};
use crate::timesteps::{exponential_sigmas, interp_on_index, karras_sigmas, multistep_timesteps, sigma_to_t};
use crate::{Error, Result};

/// The timesteps and sigmas of the multistep solvers (DPM-Solver, UniPC).
pub(crate) struct MultistepSchedule {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
}

/// How a multistep solver rounds timesteps mapped back from Karras sigmas.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KarrasRounding {
    /// DPM-Solver: round, except for the cosine schedule.
    UnlessCosine,
    /// UniPC: always round.
    Always,
}

/// alpha_t, sigma_t of the VP process at sigma (f32, as diffusers computes them).
pub(crate) fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// The data prediction x0 of the multistep solvers, from the VP scales at `sigma`
/// (diffusers' `convert_model_output` with `predict_x0` / `dpmsolver++`).
pub(crate) fn x0_at_sigma(prediction: PredictionType, out: &Tensor, sample: &Tensor, sigma: f32) -> Result<Tensor> {
    let (alpha_t, sigma_t) = alpha_sigma(sigma);
    Ok(match prediction {
        PredictionType::Epsilon => super::div(&(sample - out.affine(sigma_t as f64, 0.0)?)?, alpha_t)?,
        PredictionType::VPrediction => super::lin2(sample, alpha_t, out, -sigma_t)?,
        PredictionType::Sample => out.clone(),
        PredictionType::FlowPrediction => {
            return Err(Error::Config("flow_prediction needs a flow-matching sampler; use flow-euler".into()));
        }
    })
}

/// lambda = log(alpha) - log(sigma): the half log-SNR.
pub(crate) fn lambda(sigma: f32) -> f32 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

/// Builds the multistep timesteps/sigmas from a config.
pub(crate) fn multistep_schedule(
    cfg: &SchedulerConfig,
    defaults: &ClassDefaults,
    schedule: &NoiseSchedule,
    steps: usize,
    rounding: KarrasRounding,
) -> Result<MultistepSchedule> {
    let train = cfg.train_steps();
    let mut ac = schedule.alphas_cumprod.clone();
    if cfg.zero_snr()
        && let Some(last) = ac.last_mut()
    {
        *last = 2f32.powi(-24);
    }
    let table: Vec<f32> = ac.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect();
    let log_sigmas: Vec<f32> = table.iter().map(|s| s.ln()).collect();
    // lambda_min_clipped: drop the noisiest training steps whose lambda is below the clip.
    let clipped = match cfg.lambda_min_clipped {
        Some(clip) if clip.is_finite() => {
            let lambdas: Vec<f32> = ac.iter().map(|&a| a.sqrt().ln() - (1.0 - a).sqrt().ln()).rev().collect();
            lambdas.iter().filter(|&&l| (l as f64) < clip).count()
        }
        _ => 0,
    };
    let last = train - clipped;
    let spacing = cfg.timestep_spacing.unwrap_or(defaults.spacing);
    let mut timesteps = multistep_timesteps(spacing, train, last, steps, cfg.steps_offset.unwrap_or(0));
    let (sigma_min, sigma_max) = (cfg.sigma_min.unwrap_or(table[0] as f64), cfg.sigma_max.unwrap_or(table[train - 1] as f64));
    let mut sigmas: Vec<f64>;
    if cfg.use_karras_sigmas == Some(true) {
        sigmas = karras_sigmas(sigma_min, sigma_max, steps);
        let round = match rounding {
            KarrasRounding::Always => true,
            KarrasRounding::UnlessCosine => cfg.beta_schedule != Some(BetaSchedule::SquaredCosCapV2),
        };
        timesteps = sigmas
            .iter()
            .map(|&s| {
                let t = sigma_to_t(s, &log_sigmas);
                if round { t.round_ties_even() } else { t }
            })
            .collect();
    } else if cfg.use_exponential_sigmas == Some(true) {
        sigmas = exponential_sigmas(sigma_min, sigma_max, steps);
        timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
    } else {
        sigmas = timesteps.iter().map(|&t| interp_on_index(t, &table)).collect();
    }
    let final_sigma = match cfg.final_sigmas_type.unwrap_or_default() {
        FinalSigmas::Zero => 0.0,
        FinalSigmas::SigmaMin if rounding == KarrasRounding::Always && cfg.use_karras_sigmas == Some(true) => {
            *sigmas.last().unwrap_or(&0.0)
        }
        FinalSigmas::SigmaMin => ((1.0 - ac[0]) / ac[0]).sqrt() as f64,
    };
    sigmas.push(final_sigma);
    Ok(MultistepSchedule {
        // The model sees int64 timesteps: numpy's astype truncates toward zero.
        timesteps: timesteps.into_iter().map(|t| t.trunc()).collect(),
        sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
    })
}

/// DPM-Solver++ (2M, optionally SDE).
pub struct DpmSolverMultistep {
    schedule: NoiseSchedule,
    steps: MultistepSchedule,
    prediction: PredictionType,
    sde: bool,
    heun: bool,
    order: usize,
    lower_order_final: bool,
    euler_at_final: bool,
    final_zero: bool,
    outputs: Vec<Tensor>,
    lower_order_nums: usize,
}

impl DpmSolverMultistep {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults::common(TimestepSpacing::Linspace);

    /// Builds the solver; `sde` selects `sde-dpmsolver++`.
    pub fn new(cfg: &SchedulerConfig, steps: usize, sde: bool) -> Result<Self> {
        match cfg.algorithm_type.as_deref() {
            None | Some("dpmsolver++") | Some("sde-dpmsolver++") | Some("deis") => {}
            Some(other) => {
                return Err(Error::Config(format!("DPM-Solver algorithm_type {other:?} is not supported (dpmsolver++ only)")));
            }
        }
        let order = cfg.solver_order.unwrap_or(2);
        if !(1..=2).contains(&order) {
            return Err(Error::Config(format!("DPM-Solver order {order} is not supported (1 or 2)")));
        }
        let heun = match cfg.solver_type.as_deref() {
            None | Some("midpoint") | Some("logrho") | Some("bh1") | Some("bh2") => false,
            Some("heun") => true,
            Some(other) => return Err(Error::Config(format!("DPM-Solver solver_type {other:?} is not supported"))),
        };
        if cfg.prediction() == PredictionType::FlowPrediction {
            return Err(Error::Config("DPM-Solver with flow sigmas is not supported; use flow-euler".into()));
        }
        let schedule = cfg.noise_schedule(&Self::DEFAULTS)?;
        let steps = multistep_schedule(cfg, &Self::DEFAULTS, &schedule, steps, KarrasRounding::UnlessCosine)?;
        Ok(Self {
            schedule,
            steps,
            prediction: cfg.prediction(),
            sde,
            heun,
            order,
            lower_order_final: cfg.lower_order_final.unwrap_or(true),
            euler_at_final: cfg.euler_at_final.unwrap_or(false),
            final_zero: cfg.final_sigmas_type.unwrap_or_default() == FinalSigmas::Zero,
            outputs: Vec::new(),
            lower_order_nums: 0,
        })
    }

}

impl Scheduler for DpmSolverMultistep {
    fn name(&self) -> &'static str {
        if self.sde { "dpm++2m-sde" } else { "dpm++2m" }
    }
    fn timesteps(&self) -> &[f64] {
        &self.steps.timesteps
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.steps.sigmas)
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        let n = self.steps.timesteps.len();
        check_index(i, n, self.name())?;
        let lower_order_final =
            i == n - 1 && (self.euler_at_final || (self.lower_order_final && n < 15) || self.final_zero);
        let x0 = x0_at_sigma(self.prediction, out, sample, self.steps.sigmas[i])?;
        self.outputs.push(x0);
        if self.outputs.len() > self.order {
            self.outputs.remove(0);
        }
        let z = if self.sde { Some(noise.randn_like(out)?) } else { None };
        let (alpha_t, sigma_t) = alpha_sigma(self.steps.sigmas[i + 1]);
        let (_, sigma_s0) = alpha_sigma(self.steps.sigmas[i]);
        let h = lambda(self.steps.sigmas[i + 1]) - lambda(self.steps.sigmas[i]);
        let m0 = &self.outputs[self.outputs.len() - 1];
        let first = self.order == 1 || self.lower_order_nums < 1 || lower_order_final;
        let prev = if first {
            if let Some(z) = &z {
                let x = super::lin2(sample, sigma_t / sigma_s0 * (-h).exp(), m0, alpha_t * (1.0 - (-2.0 * h).exp()))?;
                (x + z.affine((sigma_t * (1.0 - (-2.0 * h).exp()).sqrt()) as f64, 0.0)?)?
            } else {
                super::lin2(sample, sigma_t / sigma_s0, m0, -(alpha_t * ((-h).exp() - 1.0)))?
            }
        } else {
            let m1 = &self.outputs[self.outputs.len() - 2];
            let lambda_s1 = lambda(self.steps.sigmas[i - 1]);
            let h0 = lambda(self.steps.sigmas[i]) - lambda_s1;
            let r0 = h0 / h;
            let d1 = (m0 - m1)?.affine((1.0 / r0) as f64, 0.0)?;
            if let Some(z) = &z {
                let e = 1.0 - (-2.0 * h).exp();
                let c1 = if self.heun { alpha_t * (e / (-2.0 * h) + 1.0) } else { 0.5 * (alpha_t * e) };
                let x = super::lin2(sample, sigma_t / sigma_s0 * (-h).exp(), m0, alpha_t * e)?;
                let x = (x + d1.affine(c1 as f64, 0.0)?)?;
                (x + z.affine((sigma_t * e.sqrt()) as f64, 0.0)?)?
            } else {
                let e = (-h).exp() - 1.0;
                let c1 = if self.heun { alpha_t * (e / h + 1.0) } else { -(0.5 * (alpha_t * e)) };
                let x = super::lin2(sample, sigma_t / sigma_s0, m0, -(alpha_t * e))?;
                (x + d1.affine(c1 as f64, 0.0)?)?
            }
        };
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        Ok(prev)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let _ = &self.schedule;
        let (alpha_t, sigma_t) = alpha_sigma(self.steps.sigmas[i]);
        super::lin2(original, alpha_t, noise, sigma_t)
    }
}
