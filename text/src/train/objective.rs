//! LLaDA's masked-diffusion objective, trained on the inference network itself: the
//! [`Transformer`] is built from trainable variables in a [`VarMap`], and its fused
//! kernels (attention, SwiGLU, RMSNorm, rotary) switch to their differentiable twins
//! while gradients are tracked. Parameters carry the hub checkpoint's names, so a
//! trained model saves straight into the folder layout `stipple text` loads.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use stipple_core::discrete::forward_process::{mask_level, mask_tokens};
use stipple_core::noise::NoiseSource;
use stipple_core::training::{Params, TrainState, TrainStep};

use crate::error::{Error, Result, invalid};
use crate::models::llada::{self, NAMES};
use crate::models::transformer::{Span, Transformer};

/// A LLaDA model's trainable parameters, from which the inference network is built.
pub struct TrainableLlada {
    cfg: llada::Config,
    varmap: VarMap,
    device: Device,
}

/// Names of one block's tensors, in the hub layout.
fn block_name(i: usize, part: &str) -> String {
    format!("{}.{part}.weight", NAMES.block.replace("{i}", &i.to_string()))
}

impl TrainableLlada {
    /// A freshly initialised model for `cfg` on `device`: normal(0, 0.02) matrices drawn
    /// from the portable generator seeded with `seed` (the same model on every machine),
    /// unit norm gains.
    pub fn new(cfg: &llada::Config, device: &Device, seed: u64) -> Result<Self> {
        let t = cfg.transformer()?;
        if t.kv_heads != t.heads {
            return Err(invalid("training supports multi-head attention only (n_kv_heads = n_heads)"));
        }
        if t.qkv_bias || t.other_bias {
            return Err(invalid("training supports bias-free LLaDA blocks only"));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let w = Init::Const(0.0);
        let (h, m) = (t.hidden, t.mlp_hidden);
        vb.get_with_hints((t.vocab, h), &format!("{}.weight", NAMES.embed), w)?;
        for i in 0..t.layers {
            let n = &NAMES;
            for (part, shape) in [(n.q, (h, h)), (n.k, (h, h)), (n.v, (h, h)), (n.o, (h, h)), (n.gate, (m, h)), (n.up, (m, h)), (n.down, (h, m))] {
                vb.get_with_hints(shape, &block_name(i, part), w)?;
            }
            for part in [n.attn_norm, n.mlp_norm] {
                vb.get_with_hints(h, &block_name(i, part), Init::Const(1.0))?;
            }
        }
        vb.get_with_hints(h, &format!("{}.weight", NAMES.final_norm), Init::Const(1.0))?;
        if !t.tied_head {
            vb.get_with_hints((t.vocab, h), &format!("{}.weight", NAMES.head), w)?;
        }
        let model = Self { cfg: cfg.clone(), varmap, device: device.clone() };
        let mut rng = stipple_core::noise::PortableRng::new(seed);
        for var in model.params()?.values().filter(|v| v.rank() == 2) {
            var.set(&(rng.randn(var.shape().clone(), DType::F32, device)? * 0.02)?)?;
        }
        Ok(model)
    }

    /// The parameters by name, for the optimiser and the EMA.
    pub fn params(&self) -> Result<Params> {
        let data = self.varmap.data().lock().map_err(|_| invalid("parameter map lock poisoned"))?;
        Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// The inference network over the current parameter values (build it again after an
    /// optimiser step: it fuses the projections into new tensors).
    pub fn network(&self) -> Result<Transformer> {
        llada::new(&self.cfg, VarBuilder::from_varmap(&self.varmap, DType::F32, &self.device))
    }

    /// Logits `[B, L, vocab]` of token ids `[B, L]` (bidirectional attention, every position).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.network()?.forward(&whole(ids), None, false)
    }

    /// Writes `model.safetensors` and `config.json` (from `config`) into `dir`, the layout
    /// `stipple text --model DIR` loads (with a tokenizer beside them).
    pub fn save(&self, dir: &Path, config: &serde_json::Value) -> Result<()> {
        let weights = self.params()?.into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
        save_model(dir, config, &weights, DType::F32)
    }
}

/// A span covering the whole of `ids`.
fn whole(ids: &Tensor) -> Span<'_> {
    Span { ids, start: 0, positions: None, key_mask: None, logits_rows: None }
}

/// Writes `weights` (e.g. a run's EMA) as `model.safetensors` in `dtype`, and `config`
/// as `config.json`, into `dir`; each file is replaced atomically.
pub fn save_model(dir: &Path, config: &serde_json::Value, weights: &std::collections::BTreeMap<String, Tensor>, dtype: DType) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Model(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let cast = weights.iter().map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?))).collect::<Result<std::collections::HashMap<_, _>>>()?;
    stipple_core::output::write_file(&dir.join("model.safetensors"), true, |tmp| candle_core::safetensors::save(&cast, tmp).map_err(|e| err(&e)))?;
    let text = serde_json::to_string_pretty(config).map_err(|e| err(&e))?;
    stipple_core::output::write_file(&dir.join("config.json"), true, |tmp| std::fs::write(tmp, &text).map_err(|e| err(&e)))
}

/// One batch of LLaDA's pre-training objective: every sequence gets a masking level
/// `t ~ U(eps, 1)`, each token is replaced by `[MASK]` with probability `t` (the core's
/// masked forward process), and the loss is the cross-entropy on the masked tokens
/// divided by `t`, summed and averaged over all `B * L` positions (an upper bound on the
/// negative log-likelihood). Returns the loss and how many tokens were masked.
pub fn masked_diffusion_loss(net: &Transformer, ids: &Tensor, mask_id: u32, eps: f64, rng: &mut dyn NoiseSource) -> Result<(Tensor, usize)> {
    let (b, n) = ids.dims2()?;
    let tokens: Vec<u32> = ids.flatten_all()?.to_vec1()?;
    let mut noisy = Vec::with_capacity(b * n);
    let mut weights = vec![0f32; b * n];
    for (row, seq) in tokens.chunks(n).enumerate() {
        let p = mask_level(eps, rng);
        let (masked_seq, masked) = mask_tokens(seq, p, mask_id, rng);
        noisy.extend(masked_seq);
        for (i, _) in masked.iter().enumerate().filter(|(_, m)| **m) {
            weights[row * n + i] = (1.0 / p) as f32;
        }
    }
    let rows: Vec<u32> = (0..b * n).filter(|&i| weights[i] > 0.0).map(|i| i as u32).collect();
    let masked = rows.len();
    let dev = ids.device();
    if masked == 0 {
        // nothing to predict: a zero loss that still depends on the parameters
        return Ok(((net.forward(&whole(ids), None, false)?.sum_all()? * 0.0)?, 0));
    }
    // only masked positions enter the loss: run the output head on those rows alone
    let rows = Tensor::from_vec(rows, masked, dev)?;
    let noisy = Tensor::from_vec(noisy, (b, n), dev)?;
    let hidden = net.hidden_states(&whole(&noisy), None, false)?;
    let hidden = hidden.reshape((b * n, hidden.dim(2)?))?.index_select(&rows, 0)?.unsqueeze(0)?;
    let logp = candle_nn::ops::log_softmax(&net.logits(&hidden)?.squeeze(0)?, D::Minus1)?;
    let targets = ids.flatten_all()?.index_select(&rows, 0)?;
    let picked = logp.gather(&targets.unsqueeze(1)?.contiguous()?, 1)?.squeeze(1)?;
    let w = Tensor::from_vec(weights, b * n, dev)?.index_select(&rows, 0)?;
    let loss = (picked.mul(&w)?.sum_all()?.neg()? / (b * n) as f64)?;
    Ok((loss, masked))
}

/// Settings of a masked-diffusion training run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Learning-rate schedule.
    pub schedule: stipple_core::training::WarmupCosine,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (`None`: off).
    pub clip: Option<f64>,
    /// EMA decay of the weights.
    pub ema_decay: f64,
    /// Smallest masking level (LLaDA's eps).
    pub mask_eps: f64,
    /// Seed of the batch sampling and masking.
    pub seed: u64,
}

/// Trains `model` on random windows of the token stream `corpus` with LLaDA's objective,
/// continuing from `state`'s step (fresh, or restored from a checkpoint) through the
/// core's [`train_loop`](stipple_core::training::train_loop).
pub fn train_masked_diffusion(
    model: &TrainableLlada,
    corpus: &[u32],
    mask_id: u32,
    opts: &TrainOptions,
    state: &mut TrainState,
    on_step: &mut dyn FnMut(&TrainStep, &TrainState) -> bool,
) -> Result<()> {
    if corpus.len() <= opts.seq_len || opts.seq_len == 0 || opts.batch == 0 {
        return Err(invalid(format!("the corpus ({} tokens) must be longer than one sequence ({})", corpus.len(), opts.seq_len)));
    }
    let dev = model.device.clone();
    let looped = stipple_core::training::LoopOptions { steps: opts.steps, schedule: opts.schedule, clip: opts.clip, seed: opts.seed };
    let mut loss = |rng: &mut stipple_core::noise::PortableRng| -> Result<Tensor> {
        let mut ids = Vec::with_capacity(opts.batch * opts.seq_len);
        for _ in 0..opts.batch {
            let start = (rng.uniform() * (corpus.len() - opts.seq_len) as f64) as usize;
            ids.extend_from_slice(&corpus[start..start + opts.seq_len]);
        }
        let ids = Tensor::from_vec(ids, (opts.batch, opts.seq_len), &dev)?;
        Ok(masked_diffusion_loss(&model.network()?, &ids, mask_id, opts.mask_eps, rng)?.0)
    };
    stipple_core::training::train_loop(state, &looped, &mut loss, on_step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stipple_core::noise::PortableRng;

    fn tiny_config() -> (llada::Config, serde_json::Value) {
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llada-tiny/config.json")).unwrap(),
        )
        .unwrap();
        (serde_json::from_value(json.clone()).unwrap(), json)
    }

    #[test]
    fn every_parameter_gets_a_gradient() {
        let (cfg, _) = tiny_config();
        let model = TrainableLlada::new(&cfg, &Device::Cpu, 7).unwrap();
        let ids = Tensor::from_vec((0..2 * 24).map(|i| (i * 7 % 300) as u32 + 10).collect::<Vec<u32>>(), (2, 24), &Device::Cpu).unwrap();
        let (loss, masked) = masked_diffusion_loss(&model.network().unwrap(), &ids, cfg.mask_token_id, 1e-3, &mut PortableRng::new(3)).unwrap();
        assert!(masked > 0);
        let grads = loss.backward().unwrap();
        let vars = model.params().unwrap();
        assert!(vars.len() >= 2 * 9 + 3);
        for (name, var) in vars {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} gets no gradient"));
            let size = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(size > 0.0 && size.is_finite(), "{name}: gradient {size}");
        }
    }

    #[test]
    fn training_lowers_the_loss_on_a_repetitive_corpus() {
        let (cfg, _) = tiny_config();
        let model = TrainableLlada::new(&cfg, &Device::Cpu, 7).unwrap();
        // a short phrase repeated: a model that learns anything predicts it well
        let corpus: Vec<u32> = (0..2000).map(|i| [11u32, 42, 97, 42, 150, 7, 300, 12][i % 8]).collect();
        let opts = TrainOptions {
            seq_len: 16,
            batch: 8,
            steps: 60,
            schedule: stipple_core::training::WarmupCosine { peak: 3e-3, warmup: 5, total: 60, floor: 3e-4 },
            weight_decay: 0.0,
            clip: Some(1.0),
            ema_decay: 0.9,
            mask_eps: 1e-3,
            seed: 1,
        };
        let mut losses = Vec::new();
        let mut state = TrainState::new(model.params().unwrap(), opts.weight_decay, opts.ema_decay).unwrap();
        train_masked_diffusion(&model, &corpus, cfg.mask_token_id, &opts, &mut state, &mut |r, _| {
            losses.push(r.loss);
            true
        })
        .unwrap();
        let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
        let last: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
        assert!(last < 0.5 * first, "{first} -> {last}");
    }

    #[test]
    fn trainable_and_inference_models_agree() {
        let (cfg, json) = tiny_config();
        let model = TrainableLlada::new(&cfg, &Device::Cpu, 7).unwrap();
        let dir = std::env::temp_dir().join(format!("stipple-train-{}", std::process::id()));
        model.save(&dir, &json).unwrap();
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llada-tiny/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        let lm = crate::models::DiffusionLm::load_path(&dir, &Device::Cpu, DType::F32).unwrap();
        let ids = Tensor::from_vec((0..30).map(|i| (i * 13 % 390) as u32).collect::<Vec<u32>>(), (1, 30), &Device::Cpu).unwrap();
        let want = lm.forward(&whole(&ids), None, false).unwrap();
        let got = model.forward(&ids).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "{diff}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
