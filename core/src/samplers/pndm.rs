//! PNDM (diffusers' `PNDMScheduler` with `skip_prk_steps`, i.e. PLMS), the default sampler
//! of Stable Diffusion 1.x. A linear multistep method over the noise prediction: the first
//! step is taken twice (the second time with the average of two predictions), then
//! Adams-Bashforth combinations of up to four past predictions. N steps cost N + 1 model
//! calls, as in diffusers.

use candle_core::Tensor;

use super::ddim::{alpha_bar_noise, integer_timesteps};
use super::{Scheduler, check_index};
use crate::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use crate::noise::NoiseSource;
use crate::prediction::PredictionType;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// The PLMS sampler.
pub struct Pndm {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    stride: i64,
    final_alpha_cumprod: f32,
    prediction: PredictionType,
    /// Past model outputs (at most four).
    ets: Vec<Tensor>,
    /// The sample the first step started from (re-used by the averaged second step).
    first_sample: Option<Tensor>,
    counter: usize,
}

impl Pndm {
    /// diffusers' class defaults.
    pub const DEFAULTS: ClassDefaults = ClassDefaults {
        beta_start: 0.0001,
        beta_end: 0.02,
        beta_schedule: "linear",
        spacing: TimestepSpacing::Leading,
        clip_sample: false,
        set_alpha_to_one: false,
    };

    /// Builds the sampler for `steps` steps. Configs without `skip_prk_steps: true` ask for
    /// PNDM's Runge-Kutta warm-up, which is refused rather than silently replaced.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        if cfg.other.get("skip_prk_steps").and_then(|v| v.as_bool()) != Some(true) {
            return Err(Error::Config(
                "pndm: only the PLMS form (skip_prk_steps: true, as in every Stable Diffusion config) is supported".into(),
            ));
        }
        match cfg.prediction() {
            PredictionType::Epsilon | PredictionType::VPrediction => {}
            other => return Err(Error::Config(format!("pndm supports epsilon and v_prediction, not {other:?}"))),
        }
        let schedule = cfg.noise_schedule(&Self::DEFAULTS)?;
        let final_alpha_cumprod =
            if cfg.set_alpha_to_one.unwrap_or(Self::DEFAULTS.set_alpha_to_one) { 1.0 } else { schedule.alphas_cumprod[0] };
        // diffusers: [t0, t1, t1, t2, ..., t_{N-1}] in descending order (the second entry repeated).
        let base = integer_timesteps(cfg, &Self::DEFAULTS, steps)?;
        let mut timesteps = Vec::with_capacity(steps + 1);
        timesteps.push(base[0]);
        if steps > 1 {
            timesteps.push(base[1]);
            timesteps.extend_from_slice(&base[1..]);
        }
        Ok(Self {
            timesteps,
            stride: (cfg.train_steps() / steps) as i64,
            final_alpha_cumprod,
            prediction: cfg.prediction(),
            ets: Vec::new(),
            first_sample: None,
            counter: 0,
            schedule,
        })
    }

    fn alpha_bar(&self, t: i64) -> f32 {
        if t >= 0 { self.schedule.alphas_cumprod[t as usize] } else { self.final_alpha_cumprod }
    }

    /// PNDM's formula (9): x_{t-d} from x_t and the combined noise prediction.
    fn prev_sample(&self, sample: &Tensor, t: i64, prev_t: i64, out: &Tensor) -> Result<Tensor> {
        let (a_t, a_prev) = (self.alpha_bar(t), self.alpha_bar(prev_t));
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps = match self.prediction {
            PredictionType::VPrediction => super::lin2(out, a_t.sqrt(), sample, b_t.sqrt())?,
            _ => out.clone(),
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        let scaled = super::div(&eps.affine((a_prev - a_t) as f64, 0.0)?, denom)?;
        Ok((sample.affine(sample_coeff as f64, 0.0)? - scaled)?)
    }
}

impl Scheduler for Pndm {
    fn name(&self) -> &'static str {
        "pndm"
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(&mut self, out: &Tensor, i: usize, sample: &Tensor, _noise: &mut dyn NoiseSource) -> Result<Tensor> {
        check_index(i, self.timesteps.len(), "pndm")?;
        let mut t = self.timesteps[i] as i64;
        let mut prev_t = t - self.stride;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(out.clone());
        } else {
            prev_t = t;
            t += self.stride;
        }
        let e = &self.ets;
        let n = e.len();
        let mut x = sample.clone();
        let combined = if n == 1 && self.counter == 0 {
            self.first_sample = Some(sample.clone());
            out.clone()
        } else if n == 1 && self.counter == 1 {
            x = self.first_sample.take().ok_or_else(|| Error::InvalidArgument("pndm: steps taken out of order".into()))?;
            ((out + &e[0])? / 2.0)?
        } else if n == 2 {
            ((e[1].affine(3.0, 0.0)? - &e[0])? / 2.0)?
        } else if n == 3 {
            ((e[2].affine(23.0, 0.0)? - e[1].affine(16.0, 0.0)?)? + e[0].affine(5.0, 0.0)?)?.affine(1.0 / 12.0, 0.0)?
        } else {
            let s = ((e[3].affine(55.0, 0.0)? - e[2].affine(59.0, 0.0)?)? + (e[1].affine(37.0, 0.0)? - e[0].affine(9.0, 0.0)?)?)?;
            s.affine(1.0 / 24.0, 0.0)?
        };
        let prev = self.prev_sample(&x, t, prev_t, &combined)?;
        self.counter += 1;
        Ok(prev)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        alpha_bar_noise(&self.schedule, original, noise, self.timesteps[i])
    }
}
