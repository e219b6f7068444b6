//! UniPC (diffusers' `UniPCMultistepScheduler`, bh2, predict-x0, order up to 2): a unified
//! predictor-corrector; the corrector refines each new sample with the fresh model output.

use candle_core::Tensor;

use super::dpm_solver_multistep::{KarrasRounding, MultistepSchedule, alpha_sigma, lambda, multistep_schedule, x0_at_sigma};
use super::{Scheduler, check_index};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::{Error, Result};

/// The UniPC sampler.
pub struct UniPc {
    steps: MultistepSchedule,
    prediction: PredictionType,
    order: usize,
    lower_order_final: bool,
    bh2: bool,
    disable_corrector: Vec<usize>,
    outputs: Vec<Tensor>,
    lower_order_nums: usize,
    last_sample: Option<Tensor>,
    this_order: usize,
}

/// Solves the 2x2 system R x = b with partial pivoting (as LAPACK's sgesv does).
fn solve2(r: [[f32; 2]; 2], b: [f32; 2]) -> [f32; 2] {
    let (mut r, mut b) = (r, b);
    if r[1][0].abs() > r[0][0].abs() {
        r.swap(0, 1);
        b.swap(0, 1);
    }
    let l = r[1][0] / r[0][0];
    let r11 = r[1][1] - l * r[0][1];
    let b1 = b[1] - l * b[0];
    let x1 = b1 / r11;
    let x0 = (b[0] - r[0][1] * x1) / r[0][0];
    [x0, x1]
}

impl UniPc {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults::common(TimestepSpacing::Linspace);

    /// Builds the sampler for `steps` steps.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let order = cfg.solver_order.unwrap_or(2);
        if !(1..=2).contains(&order) {
            return Err(Error::Config(format!("UniPC order {order} is not supported (1 or 2)")));
        }
        if cfg.predict_x0 == Some(false) {
            return Err(Error::Config("UniPC with predict_x0 = false is not supported".into()));
        }
        let bh2 = match cfg.solver_type.as_deref() {
            None | Some("bh2") | Some("midpoint") | Some("heun") | Some("logrho") => true,
            Some("bh1") => false,
            Some(other) => return Err(Error::Config(format!("UniPC solver_type {other:?} is not supported"))),
        };
        if cfg.prediction() == PredictionType::FlowPrediction {
            return Err(Error::Config("UniPC with flow sigmas is not supported; use flow-euler".into()));
        }
        let disable_corrector = match cfg.other.get("disable_corrector") {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::Config(format!("disable_corrector: {e}")))?,
            None => Vec::new(),
        };
        let schedule = cfg.noise_schedule(&Self::DEFAULTS)?;
        Ok(Self {
            steps: multistep_schedule(cfg, &Self::DEFAULTS, &schedule, steps, KarrasRounding::Always)?,
            prediction: cfg.prediction(),
            order,
            lower_order_final: cfg.lower_order_final.unwrap_or(true),
            bh2,
            disable_corrector,
            outputs: Vec::new(),
            lower_order_nums: 0,
            last_sample: None,
            this_order: 1,
        })
    }

    /// B(h) of the bh1 / bh2 variants (hh = -h in predict-x0 form).
    fn b_h(&self, hh: f32) -> f32 {
        if self.bh2 { hh.exp_m1() } else { hh }
    }

    /// The UniP predictor from sigma index `i` to `i + 1`.
    fn predict(&self, x: &Tensor, i: usize, order: usize) -> Result<Tensor> {
        let sig = &self.steps.sigmas;
        let (alpha_t, sigma_t) = alpha_sigma(sig[i + 1]);
        let (_, sigma_s0) = alpha_sigma(sig[i]);
        let lambda_s0 = lambda(sig[i]);
        let h = lambda(sig[i + 1]) - lambda_s0;
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = self.b_h(hh);
        let m0 = &self.outputs[self.outputs.len() - 1];
        let x_t = super::lin2(x, sigma_t / sigma_s0, m0, -(alpha_t * h_phi_1))?;
        if order < 2 {
            return Ok(x_t);
        }
        let m1 = &self.outputs[self.outputs.len() - 2];
        let rk = (lambda(sig[i - 1]) - lambda_s0) / h;
        let d1 = super::div(&(m1 - m0)?, rk)?;
        let pred_res = d1.affine(0.5, 0.0)?;
        Ok((x_t - pred_res.affine((alpha_t * b_h) as f64, 0.0)?)?)
    }

    /// The UniC corrector of the sample at sigma index `i` (reached from `i - 1`).
    fn correct(&self, model_t: &Tensor, last: &Tensor, i: usize, order: usize) -> Result<Tensor> {
        let sig = &self.steps.sigmas;
        let (alpha_t, sigma_t) = alpha_sigma(sig[i]);
        let (_, sigma_s0) = alpha_sigma(sig[i - 1]);
        let lambda_s0 = lambda(sig[i - 1]);
        let h = lambda(sig[i]) - lambda_s0;
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = self.b_h(hh);
        let m0 = &self.outputs[self.outputs.len() - 1];
        let x_t = super::lin2(last, sigma_t / sigma_s0, m0, -(alpha_t * h_phi_1))?;
        let d1_t = (model_t - m0)?;
        let (corr_res, rho_last) = if order >= 2 {
            let m1 = &self.outputs[self.outputs.len() - 2];
            let rk = (lambda(sig[i - 2]) - lambda_s0) / h;
            let d1 = super::div(&(m1 - m0)?, rk)?;
            let mut h_phi_k = h_phi_1 / hh - 1.0;
            let mut factorial = 1.0f32;
            let mut b = [0f32; 2];
            for (k, bk) in b.iter_mut().enumerate() {
                *bk = h_phi_k * factorial / b_h;
                factorial *= (k + 2) as f32;
                h_phi_k = h_phi_k / hh - 1.0 / factorial;
            }
            let rhos = solve2([[1.0, 1.0], [rk, 1.0]], b);
            (Some(d1.affine(rhos[0] as f64, 0.0)?), rhos[1])
        } else {
            (None, 0.5)
        };
        let mut res = d1_t.affine(rho_last as f64, 0.0)?;
        if let Some(c) = corr_res {
            res = (c + res)?;
        }
        Ok((x_t - res.affine((alpha_t * b_h) as f64, 0.0)?)?)
    }
}

impl Scheduler for UniPc {
    fn name(&self) -> &'static str {
        "unipc"
    }
    fn timesteps(&self) -> &[f64] {
        &self.steps.timesteps
    }
    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.steps.sigmas)
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, _noise: &mut dyn NoiseSource) -> Result<Tensor> {
        let n = self.steps.timesteps.len();
        check_index(i, n, "unipc")?;
        let converted = x0_at_sigma(self.prediction, out, sample, self.steps.sigmas[i])?;
        let mut sample = sample.clone();
        if i > 0
            && !self.disable_corrector.contains(&(i - 1))
            && let Some(last) = &self.last_sample
        {
            sample = self.correct(&converted, last, i, self.this_order)?;
        }
        self.outputs.push(converted);
        if self.outputs.len() > self.order {
            self.outputs.remove(0);
        }
        let this_order = if self.lower_order_final { self.order.min(n - i) } else { self.order };
        self.this_order = this_order.min(self.lower_order_nums + 1);
        self.last_sample = Some(sample.clone());
        let prev = self.predict(&sample, i, self.this_order)?;
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        Ok(prev)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(self.steps.sigmas[i]);
        super::lin2(original, alpha_t, noise, sigma_t)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn solve2_pivots() {
        let x = super::solve2([[1.0, 1.0], [-1.5, 1.0]], [2.0, 0.5]);
        assert!((x[0] - 0.6).abs() < 1e-6 && (x[1] - 1.4).abs() < 1e-6, "{x:?}");
    }
}
