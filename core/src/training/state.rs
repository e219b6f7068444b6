//! What a run updates and saves: [`TrainState`] (parameters, optimiser, EMA) and the
//! [`Checkpoint`] it resumes from (one safetensors file plus a JSON file, written safely).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use super::optim::{AdamW, Ema, Params};
use crate::Result;

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
    use super::super::optim::tests::quadratic;
    use candle_core::{DType, Device, Var};

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
