//! The optimiser pieces: AdamW with its moments kept by parameter name (so checkpoints
//! can resume it), a warm-up + cosine learning-rate schedule, global gradient-norm
//! clipping and an exponential moving average of the weights.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::Result;

/// Linear warm-up to `peak` over `warmup` steps, then a cosine decay to `floor` at `total`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarmupCosine {
    /// Learning rate at the end of the warm-up.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total steps (the rate stays at `floor` after them).
    pub total: usize,
    /// Final learning rate.
    pub floor: f64,
}

impl WarmupCosine {
    /// The rate for 0-based `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let done = ((step - self.warmup) as f64 / span as f64).min(1.0);
        self.floor + 0.5 * (self.peak - self.floor) * (1.0 + (std::f64::consts::PI * done).cos())
    }
}

/// Named parameters, in a fixed (sorted) order.
pub type Params = BTreeMap<String, Var>;

/// The global L2 norm of the gradients of `params` (missing gradients count as zero).
pub fn grad_norm(params: &Params, grads: &GradStore) -> Result<f64> {
    let mut sq = 0f64;
    for v in params.values() {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// AdamW (decoupled weight decay, bias-corrected moments) whose state is keyed by
/// parameter name, so it can be saved with a checkpoint and resumed.
pub struct AdamW {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Steps taken.
    pub step: usize,
    moments: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    /// The usual settings for transformers: β = (0.9, 0.95), ε = 1e-8, decay 0.1.
    pub fn new(weight_decay: f64) -> Self {
        Self { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay, step: 0, moments: BTreeMap::new() }
    }

    /// One update of every parameter with a gradient at learning rate `lr`, after scaling
    /// the gradients so their global norm is at most `max_norm` (clipping; `None`: off).
    /// Returns the norm before clipping. Parameters of rank < 2 (norm gains, biases) get
    /// no weight decay.
    pub fn step(&mut self, params: &Params, grads: &GradStore, lr: f64, max_norm: Option<f64>) -> Result<f64> {
        let norm = grad_norm(params, grads)?;
        let clip = match max_norm {
            Some(m) if norm > m && norm.is_finite() => m / norm,
            _ => 1.0,
        };
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powi(self.step as i32), 1.0 - b2.powi(self.step as i32));
        for (name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            // detached: the moments must not keep this step's graph alive
            let g = (g.detach() * clip)?;
            let (m, v) = match self.moments.remove(name) {
                Some((m, v)) => (((m * b1)? + (&g * (1.0 - b1))?)?, ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?),
                None => ((&g * (1.0 - b1))?, (g.sqr()? * (1.0 - b2))?),
            };
            let (m, v) = (m.detach(), v.detach());
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            let decay = if var.rank() >= 2 { self.weight_decay } else { 0.0 };
            let w = var.as_tensor();
            let next = ((w.detach() * (1.0 - lr * decay))? - (update * lr)?)?;
            var.set(&next)?;
            self.moments.insert(name.clone(), (m, v));
        }
        Ok(norm)
    }

    /// The moments as named tensors (`NAME.exp_avg`, `NAME.exp_avg_sq`) for a checkpoint.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (name, (m, v)) in &self.moments {
            out.insert(format!("{name}.exp_avg"), m.clone());
            out.insert(format!("{name}.exp_avg_sq"), v.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] and the step count.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>, step: usize) {
        self.moments.clear();
        for (key, m) in state {
            if let Some(name) = key.strip_suffix(".exp_avg")
                && let Some(v) = state.get(&format!("{name}.exp_avg_sq"))
            {
                self.moments.insert(name.to_string(), (m.clone(), v.clone()));
            }
        }
        self.step = step;
    }
}

/// An exponential moving average of the weights (`shadow = d * shadow + (1 - d) * w`),
/// which samples better than the raw weights of a short run.
pub struct Ema {
    /// Decay per update.
    pub decay: f64,
    shadow: BTreeMap<String, Tensor>,
}

impl Ema {
    /// Starts from the current weights.
    pub fn new(params: &Params, decay: f64) -> Result<Self> {
        let shadow = params.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?))).collect::<Result<_>>()?;
        Ok(Self { decay, shadow })
    }

    /// Moves the average towards the current weights.
    pub fn update(&mut self, params: &Params) -> Result<()> {
        for (name, v) in params {
            if let Some(s) = self.shadow.get_mut(name) {
                // detached, or every average would hold the previous one through the graph
                *s = ((&*s * self.decay)? + (v.as_tensor().detach() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }

    /// The averaged weights by name.
    pub fn weights(&self) -> &BTreeMap<String, Tensor> {
        &self.shadow
    }
}

impl Ema {
    /// Replaces the averaged weights (when resuming a run).
    pub fn restore(&mut self, weights: BTreeMap<String, Tensor>) {
        self.shadow = weights;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn schedule_warms_up_then_decays() {
        let s = WarmupCosine { peak: 1e-3, warmup: 10, total: 110, floor: 1e-4 };
        assert!((s.lr(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr(60) - 5.5e-4).abs() < 1e-9);
        assert!((s.lr(110) - 1e-4).abs() < 1e-12);
        assert!((s.lr(500) - 1e-4).abs() < 1e-12);
        assert!((10..110).all(|i| s.lr(i + 1) <= s.lr(i)));
    }

    pub(crate) fn quadratic() -> (Params, Var) {
        let w = Var::from_tensor(&Tensor::new(&[[3f32, -2.0], [1.0, 4.0]], &Device::Cpu).unwrap()).unwrap();
        let mut p = Params::new();
        p.insert("w".into(), w.clone());
        (p, w)
    }

    #[test]
    fn adamw_minimises_and_clips() {
        let (p, w) = quadratic();
        let mut opt = AdamW::new(0.0);
        let mut first = 0.0;
        for i in 0..300 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let norm = opt.step(&p, &grads, 0.05, Some(1.0)).unwrap();
            if i == 0 {
                first = norm;
            }
        }
        // d/dw sum w^2 = 2w: |2w| = 2 sqrt(30) at the start
        assert!((first - 2.0 * 30f64.sqrt()).abs() < 1e-4, "{first}");
        let left = w.as_tensor().abs().unwrap().max_keepdim(1).unwrap().max_keepdim(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!(left < 0.05, "{left}");
        // state round trip
        let state = opt.state();
        assert_eq!(state.len(), 2);
        let mut again = AdamW::new(0.0);
        again.load_state(&state, opt.step);
        assert_eq!(again.state().len(), 2);
        assert_eq!(again.step, 300);
    }

    #[test]
    fn weight_decay_skips_vectors_and_ema_follows() {
        let g = Var::from_tensor(&Tensor::ones(3, DType::F32, &Device::Cpu).unwrap()).unwrap();
        let (mut p, w) = quadratic();
        p.insert("gain".into(), g.clone());
        let mut ema = Ema::new(&p, 0.5).unwrap();
        let mut opt = AdamW::new(0.5);
        // a loss that touches only w: the gain has no gradient and must not move
        let grads = w.as_tensor().sum_all().unwrap().backward().unwrap();
        opt.step(&p, &grads, 0.1, None).unwrap();
        assert_eq!(g.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0; 3]);
        let w00 = w.as_tensor().to_vec2::<f32>().unwrap()[0][0];
        // decay 3 * (1 - 0.05) then the Adam step of -0.1 (first step: m / sqrt(v) = 1)
        assert!((w00 - (3.0 * 0.95 - 0.1)).abs() < 1e-5, "{w00}");
        ema.update(&p).unwrap();
        let e00 = ema.weights()["w"].to_vec2::<f32>().unwrap()[0][0];
        assert!((e00 - (0.5 * 3.0 + 0.5 * w00)).abs() < 1e-5, "{e00}");
    }
}
