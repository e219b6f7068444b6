//! Optimisation pieces every stipple trainer shares (text, latent images, spectrograms):
//! AdamW with its moments kept by parameter name (so checkpoints can resume it), a
//! warm-up + cosine learning-rate schedule, global gradient-norm clipping and an
//! exponential moving average of the weights, and [`TrainState`], which bundles them and
//! saves or resumes a run through a [`Checkpoint`] (one safetensors file plus a JSON
//! file, written safely).

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

/// Everything a run updates besides the data position: the parameters, the optimiser
/// and the EMA.
pub struct TrainState {
    /// The trained parameters by name.
    pub params: Params,
    /// The optimiser.
    pub opt: AdamW,
    /// The averaged weights.
    pub ema: Ema,
}

impl TrainState {
    /// A fresh run over `params`.
    pub fn new(params: Params, weight_decay: f64, ema_decay: f64) -> Result<Self> {
        let ema = Ema::new(&params, ema_decay)?;
        Ok(Self { params, opt: AdamW::new(weight_decay), ema })
    }

    /// One optimiser step and EMA update; returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: Option<f64>) -> Result<f64> {
        let norm = self.opt.step(&self.params, grads, lr, clip)?;
        self.ema.update(&self.params)?;
        Ok(norm)
    }

    /// A snapshot for resuming after `self.opt.step` steps, with the caller's `meta`.
    pub fn checkpoint(&self, meta: serde_json::Value) -> Checkpoint {
        let mut tensors = BTreeMap::new();
        for (name, v) in &self.params {
            tensors.insert(format!("param.{name}"), v.as_tensor().clone());
        }
        for (name, t) in self.opt.state() {
            tensors.insert(format!("adamw.{name}"), t);
        }
        for (name, t) in self.ema.weights() {
            tensors.insert(format!("ema.{name}"), t.clone());
        }
        Checkpoint { step: self.opt.step, tensors, meta }
    }

    /// Restores parameters, optimiser moments and EMA from `ckpt`; every parameter must be
    /// in it with its shape.
    pub fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        let part = |prefix: &str| -> BTreeMap<String, Tensor> {
            ckpt.tensors.iter().filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone()))).collect()
        };
        let params = part("param.");
        for (name, var) in &self.params {
            let saved = params.get(name).ok_or_else(|| crate::error::invalid(format!("the checkpoint has no parameter {name}")))?;
            if saved.dims() != var.dims() {
                return Err(crate::error::invalid(format!("checkpoint parameter {name} has shape {:?}, the model {:?}", saved.dims(), var.dims())));
            }
            var.set(&saved.to_device(var.device())?.to_dtype(var.dtype())?)?;
        }
        self.opt.load_state(&part("adamw."), ckpt.step);
        self.ema.restore(part("ema."));
        Ok(())
    }
}

/// The forward process of discrete-time diffusion for training: rows of `x0` noised to
/// `sqrt(abar) x0 + sqrt(1 - abar) noise` at each row's `alpha_bars`, and the regression
/// target for `prediction` (the noise, or `v = sqrt(abar) noise - sqrt(1 - abar) x0`, or
/// `x0`). Returns `(noisy, target)`.
pub fn noised_pair(x0: &Tensor, noise: &Tensor, alpha_bars: &[f32], prediction: crate::prediction::PredictionType) -> Result<(Tensor, Tensor)> {
    use crate::prediction::PredictionType;
    let b = x0.dim(0)?;
    if alpha_bars.len() != b {
        return Err(crate::error::invalid(format!("{} noise levels for a batch of {b}", alpha_bars.len())));
    }
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, x0.rank() - 1));
    let col = |f: &dyn Fn(f32) -> f32| Tensor::from_vec(alpha_bars.iter().map(|&a| f(a)).collect::<Vec<f32>>(), shape.as_slice(), x0.device())?.to_dtype(x0.dtype());
    let (sa, sb) = (col(&|a| a.sqrt())?, col(&|a| (1.0 - a).sqrt())?);
    let noisy = (x0.broadcast_mul(&sa)? + noise.broadcast_mul(&sb)?)?;
    let target = match prediction {
        PredictionType::Epsilon => noise.clone(),
        PredictionType::VPrediction => (noise.broadcast_mul(&sa)? - x0.broadcast_mul(&sb)?)?,
        PredictionType::Sample => x0.clone(),
        PredictionType::FlowPrediction => return Err(crate::error::invalid("flow-matching training is not supported; use epsilon or v_prediction")),
    };
    Ok((noisy, target))
}

/// The step loop every trainer shares.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// Optimiser steps in the whole run.
    pub steps: usize,
    /// Learning-rate schedule.
    pub schedule: WarmupCosine,
    /// Global gradient-norm clip (`None`: off).
    pub clip: Option<f64>,
    /// Seed: step `s` draws its batch and noise from stream `s` of this seed, so a resumed
    /// run repeats the uninterrupted one exactly.
    pub seed: u64,
}

/// What one step reports.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// 1-based step.
    pub step: usize,
    /// The objective on this batch.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Runs steps `state.opt.step .. opts.steps`: `loss` computes one batch's objective from
/// the step's random stream, then comes backprop, the optimiser and EMA; `on_step` sees
/// every step (progress, curves, checkpoints) and stops the run by returning `false`.
/// Errors of the caller's own type pass through unchanged.
pub fn train_loop<E: From<crate::Error> + From<candle_core::Error>>(
    state: &mut TrainState,
    opts: &LoopOptions,
    loss: &mut dyn FnMut(&mut crate::noise::PortableRng) -> std::result::Result<Tensor, E>,
    on_step: &mut dyn FnMut(&StepReport, &TrainState) -> bool,
) -> std::result::Result<(), E> {
    for step in state.opt.step..opts.steps {
        let mut rng = crate::noise::PortableRng::stream(opts.seed, step as u64);
        let value = loss(&mut rng)?;
        let grads = value.backward()?;
        let lr = opts.schedule.lr(step);
        let grad_norm = state.step(&grads, lr, opts.clip)?;
        let report = StepReport { step: step + 1, loss: value.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?, grad_norm, lr };
        if !on_step(&report, state) {
            break;
        }
    }
    Ok(())
}

/// A saved training run: named tensors (`param.*`, `adamw.*`, `ema.*`), the step it
/// reached and free-form metadata (options, loss history).
pub struct Checkpoint {
    /// Optimiser steps taken.
    pub step: usize,
    /// The tensors.
    pub tensors: BTreeMap<String, Tensor>,
    /// The trainer's own record.
    pub meta: serde_json::Value,
}

impl Checkpoint {
    /// Tensor file name inside a checkpoint folder.
    pub const TENSORS: &str = "checkpoint.safetensors";
    /// Metadata file name inside a checkpoint folder.
    pub const META: &str = "checkpoint.json";

    /// Writes the two files into `dir` (created if needed), each replaced atomically.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        let io = |path: &std::path::Path, e: std::io::Error| crate::Error::Io { path: path.display().to_string(), source: e };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let write = |name: &str, f: &dyn Fn(&std::path::Path) -> Result<()>| crate::output::write_file(&dir.join(name), true, f);
        let tensors: std::collections::HashMap<&str, Tensor> = self.tensors.iter().map(|(k, t)| (k.as_str(), t.clone())).collect();
        write(Self::TENSORS, &|tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
        let meta = serde_json::json!({ "step": self.step, "meta": self.meta });
        let text = serde_json::to_string_pretty(&meta).map_err(|e| crate::Error::Json { path: dir.display().to_string(), source: e })?;
        write(Self::META, &|tmp| std::fs::write(tmp, &text).map_err(|e| io(tmp, e)))
    }

    /// Reads a folder written by [`Checkpoint::save`] onto the CPU.
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let meta_path = dir.join(Self::META);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| crate::Error::Io { path: meta_path.display().to_string(), source: e })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| crate::Error::Json { path: meta_path.display().to_string(), source: e })?;
        let step = json.get("step").and_then(serde_json::Value::as_u64).ok_or_else(|| crate::error::invalid(format!("{}: no step", meta_path.display())))? as usize;
        let tensors = candle_core::safetensors::load(dir.join(Self::TENSORS), &candle_core::Device::Cpu)?.into_iter().collect();
        Ok(Self { step, tensors, meta: json.get("meta").cloned().unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
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

    fn quadratic() -> (Params, Var) {
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

    #[test]
    fn noised_pair_matches_the_prediction_formulas() {
        use crate::prediction::PredictionType;
        let x0 = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let eps = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.0]], &Device::Cpu).unwrap();
        let (noisy, target) = noised_pair(&x0, &eps, &[0.64, 0.36], PredictionType::VPrediction).unwrap();
        let n = noisy.to_vec2::<f32>().unwrap();
        assert!((n[0][0] - (0.8 * 1.0 + 0.6 * 0.5)).abs() < 1e-6 && (n[1][1] - 0.6 * 4.0).abs() < 1e-6, "{n:?}");
        let t = target.to_vec2::<f32>().unwrap();
        assert!((t[0][1] - (0.8 * -1.0 - 0.6 * 2.0)).abs() < 1e-6 && (t[1][0] - (0.6 * 2.0 - 0.8 * 3.0)).abs() < 1e-6, "{t:?}");
        // the clean-sample estimate of the sampler inverts it
        let back = PredictionType::VPrediction.x0_from_alpha_bar(&target.narrow(0, 0, 1).unwrap(), &noisy.narrow(0, 0, 1).unwrap(), 0.64).unwrap();
        assert!((back.to_vec2::<f32>().unwrap()[0][0] - 1.0).abs() < 1e-5);
        let (_, t) = noised_pair(&x0, &eps, &[0.5, 0.5], PredictionType::Epsilon).unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), eps.to_vec2::<f32>().unwrap());
        assert!(noised_pair(&x0, &eps, &[0.5], PredictionType::Epsilon).is_err());
    }

    /// Ten steps in one go equal five, a save, a load into fresh parameters, and five more.
    #[test]
    fn checkpoint_resumes_exactly() {
        let run = |state: &mut TrainState, from: usize, to: usize| {
            for i in from..to {
                let w = state.params["w"].as_tensor();
                let loss = (w.sqr().unwrap().sum_all().unwrap() * (1.0 + i as f64)).unwrap();
                state.step(&loss.backward().unwrap(), 0.05, Some(5.0)).unwrap();
            }
        };
        let (p, _) = quadratic();
        let mut straight = TrainState::new(p, 0.1, 0.9).unwrap();
        run(&mut straight, 0, 10);
        let (p, _) = quadratic();
        let mut first = TrainState::new(p, 0.1, 0.9).unwrap();
        run(&mut first, 0, 5);
        let dir = std::env::temp_dir().join(format!("stipple-ckpt-{}", std::process::id()));
        first.checkpoint(serde_json::json!({"note": "half"})).save(&dir).unwrap();
        let back = Checkpoint::load(&dir).unwrap();
        assert_eq!((back.step, back.meta["note"].as_str()), (5, Some("half")));
        let (p, _) = quadratic();
        let mut resumed = TrainState::new(p, 0.1, 0.9).unwrap();
        resumed.restore(&back).unwrap();
        run(&mut resumed, 5, 10);
        let get = |s: &TrainState| (s.params["w"].as_tensor().to_vec2::<f32>().unwrap(), s.ema.weights()["w"].to_vec2::<f32>().unwrap());
        assert_eq!(get(&straight), get(&resumed));
        // nothing the run keeps holds a computation graph (that would grow memory every step)
        assert!(straight.ema.weights().values().chain(straight.opt.state().values()).all(|t| !t.track_op()));
        // a model of another shape is refused
        let other = Var::from_tensor(&Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let mut wrong = TrainState::new(Params::from([("w".to_string(), other)]), 0.1, 0.9).unwrap();
        assert!(wrong.restore(&back).unwrap_err().to_string().contains("shape"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
