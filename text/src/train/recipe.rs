//! The text recipe of `stipple train`: preparing a corpus, training its tokenizer, and a
//! LLaDA-architecture model from scratch through the core's run driver, saved in the hub
//! layout (`config.json`, `model.safetensors`, tokenizer files) that `stipple text` loads;
//! and measuring a model on held-out text.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde_json::json;
use stipple_core::training::{RunEvent, RunPlan, RunSettings, TrainState, TrainingRun};

use super::corpus::{self, Corpus, SplitOptions};
use super::eval::{EvalOptions, EvalReport, evaluate};
use super::objective::{TrainOptions, TrainableLlada, save_model, train_masked_diffusion};
use crate::error::{Error, Result, invalid};
use crate::models::{DiffusionLm, llada};
use crate::tokenizer::TextTokenizer;

/// Cleans `sources` and writes `out/train.txt` and `out/heldout.txt` (replacing them only
/// with `overwrite`).
pub fn prepare_text(sources: &[PathBuf], out: &Path, opts: &SplitOptions, overwrite: bool) -> Result<Corpus> {
    let corpus = corpus::prepare(sources, opts)?;
    std::fs::create_dir_all(out).map_err(|e| Error::Model(format!("creating {}: {e}", out.display())))?;
    for (name, text) in [("train.txt", &corpus.train), ("heldout.txt", &corpus.heldout)] {
        stipple_core::output::write_file(&out.join(name), overwrite, |tmp| std::fs::write(tmp, text).map_err(|e| Error::Model(format!("{}: {e}", tmp.display()))))?;
    }
    Ok(corpus)
}

/// Trains a byte-level BPE tokenizer of `vocab_size` entries on `data/train.txt` into
/// the model folder `out`; returns its vocabulary size.
pub fn train_tokenizer(data: &Path, out: &Path, vocab_size: usize) -> Result<usize> {
    let train = data.join("train.txt");
    if !train.is_file() {
        return Err(Error::Model(format!("{} not found: run `stipple train prepare-text` first", train.display())));
    }
    let tok = corpus::train_tokenizer(&[train], vocab_size)?;
    corpus::save_tokenizer(&tok, out)?;
    Ok(tok.get_vocab_size(true))
}

/// The token stream of a prepared text file.
pub fn tokens_of(tok: &TextTokenizer, path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Model(format!("reading {} (made by `stipple train prepare-text`): {e}", path.display())))?;
    // encode paragraph groups separately: the tokenizer is much faster on short inputs
    let mut ids = Vec::new();
    for part in text.split_inclusive("\n\n") {
        ids.extend(tok.encode(part, false)?);
    }
    Ok(ids)
}

/// The shape of a text model trained from scratch.
#[derive(Clone, Debug)]
pub struct TextModelShape {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP inner width (`None`: 8/3 of hidden, rounded up to 64).
    pub mlp: Option<usize>,
    /// Tokens per training sequence (also the model's maximum length).
    pub seq_len: usize,
}

impl TextModelShape {
    /// The LLaDA `config.json` of a model of this shape over `vocab` tokens (end of text
    /// id 0, `[MASK]` id 1, as the tokenizers trained here number them).
    pub fn llada_config(&self, vocab: usize) -> Result<serde_json::Value> {
        if self.heads == 0 || self.hidden % self.heads != 0 || (self.hidden / self.heads) % 2 != 0 {
            return Err(invalid(format!("--hidden ({}) must split into --heads ({}) of even width", self.hidden, self.heads)));
        }
        let mlp = self.mlp.unwrap_or_else(|| (self.hidden * 8 / 3).div_ceil(64) * 64);
        Ok(json!({
            "architectures": ["LLaDAModelLM"],
            "model_type": "llada",
            "activation_type": "silu",
            "alibi": false,
            "attention_layer_norm": false,
            "block_group_size": 1,
            "block_type": "llama",
            "d_model": self.hidden,
            "embedding_size": vocab,
            "vocab_size": vocab,
            "eos_token_id": 0,
            "pad_token_id": 0,
            "mask_token_id": 1,
            "include_bias": false,
            "include_qkv_bias": false,
            "input_emb_norm": false,
            "layer_norm_type": "rms",
            "max_sequence_length": self.seq_len,
            "mlp_hidden_size": mlp,
            "mlp_ratio": 4,
            "n_heads": self.heads,
            "n_kv_heads": self.heads,
            "n_layers": self.layers,
            "rms_norm_eps": 1e-5,
            "rope": true,
            "rope_full_precision": true,
            "rope_theta": 10000.0,
            "scale_logits": false,
            "weight_tying": true,
            "torch_dtype": "float16",
        }))
    }
}

/// A `stipple train text` run.
#[derive(Clone, Debug)]
pub struct TextTrainJob {
    /// Folder made by [`prepare_text`].
    pub data: PathBuf,
    /// Model folder holding the tokenizer from [`train_tokenizer`]; receives the model,
    /// the loss curve, `train.json` and `checkpoint/`.
    pub out: PathBuf,
    /// The run's settings.
    pub run: RunSettings,
    /// The model's shape (a resumed run keeps its own).
    pub shape: TextModelShape,
    /// Sequences per step.
    pub batch: usize,
}

/// Trains (or resumes) a text model; returns the run's summary (also in `train.json`).
pub fn train_text(job: &TextTrainJob, device: &Device, events: &mut dyn FnMut(&RunEvent)) -> Result<serde_json::Value> {
    let tok_path = job.out.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(Error::Model(format!(
            "{} not found: train one first with `stipple train tokenizer --data {} --out {}`",
            tok_path.display(),
            job.data.display(),
            job.out.display()
        )));
    }
    let tok = TextTokenizer::from_files(&tok_path, None)?;
    for (t, want) in [(corpus::END_OF_TEXT, 0), (corpus::MASK, 1)] {
        if tok.token_id(t) != Some(want) {
            return Err(invalid(format!("{}: {t} must have id {want} (use a tokenizer made by `stipple train tokenizer`)", tok_path.display())));
        }
    }
    let run = TrainingRun::open(&job.out, job.run.resume)?;
    let vocab = tok.inner().get_vocab_size(true);
    let (config, opts) = match &run.record {
        Some(r) => (r.config.clone(), serde_json::from_value::<TrainOptions>(r.options.clone()).map_err(|e| Error::Model(format!("reading the checkpoint's training options: {e}")))?),
        None => {
            let config = job.shape.llada_config(vocab)?;
            let looped = job.run.loop_options(2e-3);
            let opts = TrainOptions {
                seq_len: job.shape.seq_len,
                batch: job.batch,
                steps: looped.steps,
                schedule: looped.schedule,
                weight_decay: job.run.weight_decay,
                clip: looped.clip,
                ema_decay: job.run.ema,
                mask_eps: 1e-3,
                seed: looped.seed,
            };
            (config, opts)
        }
    };
    let cfg: llada::Config = serde_json::from_value(config.clone()).map_err(|e| Error::Model(format!("the run's model configuration: {e}")))?;
    let model = TrainableLlada::new(&cfg, device, opts.seed)?;
    let mut state = TrainState::new(model.params()?, opts.weight_decay, opts.ema_decay)?;
    let started = std::time::Instant::now();
    let corpus_ids = tokens_of(&tok, &job.data.join("train.txt"))?;
    let parameters: usize = state.params.values().map(|v| v.elem_count()).sum();
    events(&RunEvent::Note(format!("{} training tokens ({:.1} s to tokenize); {parameters} parameters", corpus_ids.len(), started.elapsed().as_secs_f64())));
    let plan = RunPlan { steps: opts.steps, per_step: opts.batch * opts.seq_len, unit: "tokens", checkpoint_every: job.run.checkpoint_every, max_minutes: job.run.max_minutes };
    let options = serde_json::to_value(&opts).map_err(|e| Error::Model(e.to_string()))?;
    let mut summary = run.run(
        &mut state,
        config.clone(),
        options,
        &plan,
        events,
        |st, on_step| train_masked_diffusion(&model, &corpus_ids, 1, &opts, st, on_step),
        |st| save_model(&job.out, &config, st.ema.weights(), DType::F16),
    )?;
    summary["training_tokens"] = corpus_ids.len().into();
    Ok(summary)
}

/// Measures the model in `model_dir` on `data/heldout.txt`, against a unigram baseline
/// fitted on `data/train.txt`.
pub fn eval_text(model_dir: &Path, data: &Path, opts: &EvalOptions, device: &Device, dtype: DType) -> Result<EvalReport> {
    let lm = DiffusionLm::load_path(model_dir, device, dtype).map_err(|e| Error::Model(format!("loading {}: {e}", model_dir.display())))?;
    let tok = TextTokenizer::from_files(&model_dir.join("tokenizer.json"), None)?;
    let train = tokens_of(&tok, &data.join("train.txt"))?;
    let heldout = tokens_of(&tok, &data.join("heldout.txt"))?;
    evaluate(&lm, &train, &heldout, opts)
}
