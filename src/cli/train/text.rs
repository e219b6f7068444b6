//! Text: `stipple train prepare-text`, `tokenizer`, `text` and `eval-text`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use stipple_core::training::TrainState;
use stipple_text::corpus::{self, SplitOptions};
use stipple_text::eval::{EvalOptions, evaluate};
use stipple_text::models::DiffusionLm;
use stipple_text::models::llada;
use stipple_text::tokenizer::TextTokenizer;
use stipple_text::train::{TrainOptions, TrainableLlada, named_params, save_model, train_masked_diffusion};

use super::super::Global;
use super::RunArgs;
use super::session::{Schedule, Session};

/// `stipple train prepare-text` arguments.
#[derive(Args, Debug)]
pub struct PrepareTextArgs {
    /// Text files or folders (every .txt file inside, in name order).
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Output folder for train.txt and heldout.txt.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip files whose path contains this (repeatable).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Bytes per chunk when splitting off held-out text.
    #[arg(long, default_value_t = 4000)]
    pub chunk_bytes: usize,
    /// Every N-th chunk is held out.
    #[arg(long, default_value_t = 20)]
    pub heldout_every: usize,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

/// `stipple train tokenizer` arguments.
#[derive(Args, Debug)]
pub struct TokenizerArgs {
    /// Folder made by `prepare-text`.
    #[arg(long)]
    pub data: PathBuf,
    /// Model folder to write tokenizer.json and tokenizer_config.json into.
    #[arg(long)]
    pub out: PathBuf,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
}

/// `stipple train text` arguments.
#[derive(Args, Debug)]
pub struct TextTrainArgs {
    /// Folder made by `prepare-text`.
    #[arg(long)]
    pub data: PathBuf,
    /// Model folder (holding the tokenizer from `stipple train tokenizer`); receives
    /// config.json, model.safetensors (EMA weights), loss.csv, loss.png, train.json and checkpoint/.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Hidden width.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// MLP inner width (default: 8/3 of hidden, rounded to 64).
    #[arg(long)]
    pub mlp: Option<usize>,
    /// Tokens per training sequence (also the model's maximum length).
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

/// `stipple train eval-text` arguments.
#[derive(Args, Debug)]
pub struct EvalTextArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Folder made by `prepare-text` (train.txt for the baseline, heldout.txt to score).
    #[arg(long)]
    pub data: PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Windows.
    #[arg(long, default_value_t = 128)]
    pub windows: usize,
    /// Mask ratio of the accuracy test.
    #[arg(long, default_value_t = 0.5)]
    pub mask_ratio: f64,
}

pub fn prepare_text(g: &Global, a: &PrepareTextArgs) -> Result<()> {
    let opts = SplitOptions { chunk_bytes: a.chunk_bytes, heldout_every: a.heldout_every, skip: a.skip.clone() };
    let corpus = corpus::prepare(&a.sources, &opts)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, text) in [("train.txt", &corpus.train), ("heldout.txt", &corpus.heldout)] {
        stipple_core::output::write_file(&a.out.join(name), a.overwrite, |tmp| Ok::<_, anyhow::Error>(std::fs::write(tmp, text)?))?;
    }
    if g.json {
        println!("{}", json!({ "files": corpus.files, "train_bytes": corpus.train.len(), "heldout_bytes": corpus.heldout.len() }));
    } else {
        println!("{} files: {} bytes of training text, {} held out, in {}", corpus.files, corpus.train.len(), corpus.heldout.len(), a.out.display());
    }
    Ok(())
}

pub fn tokenizer(g: &Global, a: &TokenizerArgs) -> Result<()> {
    let train = a.data.join("train.txt");
    if !train.is_file() {
        bail!("{} not found: run `stipple train prepare-text` first", train.display());
    }
    let start = Instant::now();
    let tok = corpus::train_tokenizer(&[train], a.vocab_size)?;
    corpus::save_tokenizer(&tok, &a.out)?;
    let secs = start.elapsed().as_secs_f64();
    if g.json {
        println!("{}", json!({ "vocab_size": tok.get_vocab_size(true), "seconds": secs }));
    } else {
        println!("tokenizer with {} entries written to {} ({secs:.1} s)", tok.get_vocab_size(true), a.out.display());
    }
    Ok(())
}

/// The token stream of a prepared text file.
fn tokens_of(tok: &TextTokenizer, path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {} (made by `stipple train prepare-text`)", path.display()))?;
    // encode paragraph groups separately: the tokenizer is much faster on short inputs
    let mut ids = Vec::new();
    for part in text.split_inclusive("\n\n") {
        ids.extend(tok.encode(part, false)?);
    }
    Ok(ids)
}

/// The LLaDA config.json of a model trained here.
fn llada_config(a: &TextTrainArgs, vocab: usize) -> serde_json::Value {
    let mlp = a.mlp.unwrap_or_else(|| (a.hidden * 8 / 3).div_ceil(64) * 64);
    json!({
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "activation_type": "silu",
        "alibi": false,
        "attention_layer_norm": false,
        "block_group_size": 1,
        "block_type": "llama",
        "d_model": a.hidden,
        "embedding_size": vocab,
        "vocab_size": vocab,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "mask_token_id": 1,
        "include_bias": false,
        "include_qkv_bias": false,
        "input_emb_norm": false,
        "layer_norm_type": "rms",
        "max_sequence_length": a.seq_len,
        "mlp_hidden_size": mlp,
        "mlp_ratio": 4,
        "n_heads": a.heads,
        "n_kv_heads": a.heads,
        "n_layers": a.layers,
        "rms_norm_eps": 1e-5,
        "rope": true,
        "rope_full_precision": true,
        "rope_theta": 10000.0,
        "scale_logits": false,
        "weight_tying": true,
        "torch_dtype": "float16",
    })
}

pub fn train_text(g: &Global, a: &TextTrainArgs) -> Result<()> {
    let tok_path = a.out.join("tokenizer.json");
    if !tok_path.is_file() {
        bail!("{} not found: train one first with `stipple train tokenizer --data {} --out {}`", tok_path.display(), a.data.display(), a.out.display());
    }
    let tok = TextTokenizer::from_files(&tok_path, None)?;
    for (t, want) in [(corpus::END_OF_TEXT, 0), (corpus::MASK, 1)] {
        if tok.token_id(t) != Some(want) {
            bail!("{}: {t} must have id {want} (use a tokenizer made by `stipple train tokenizer`)", tok_path.display());
        }
    }
    let session = Session::open(&a.out, a.run.resume)?;
    let vocab = tok.inner().get_vocab_size(true);
    let (config, opts) = match &session.record {
        Some(r) => (r.config.clone(), serde_json::from_value::<TrainOptions>(r.options.clone()).context("reading the checkpoint's training options")?),
        None => {
            if a.heads == 0 || a.hidden % a.heads != 0 || (a.hidden / a.heads) % 2 != 0 {
                bail!("--hidden ({}) must split into --heads ({}) of even width", a.hidden, a.heads);
            }
            let r = &a.run;
            let looped = r.looped(2e-3, g.seed.unwrap_or(0));
            let opts = TrainOptions {
                seq_len: a.seq_len,
                batch: a.batch,
                steps: looped.steps,
                schedule: looped.schedule,
                weight_decay: r.weight_decay,
                clip: looped.clip,
                ema_decay: r.ema,
                mask_eps: 1e-3,
                seed: looped.seed,
            };
            (llada_config(a, vocab), opts)
        }
    };
    let cfg: llada::Config = serde_json::from_value(config.clone())?;
    let model = TrainableLlada::new(&cfg, &g.device, opts.seed)?;
    let mut state = TrainState::new(named_params(&model)?, opts.weight_decay, opts.ema_decay)?;
    let t0 = Instant::now();
    let corpus_ids = tokens_of(&tok, &a.data.join("train.txt"))?;
    eprintln!("{} training tokens ({:.1} s to tokenize); {} parameters", corpus_ids.len(), t0.elapsed().as_secs_f64(), state.params.values().map(|v| v.elem_count()).sum::<usize>());
    let sched = Schedule { steps: opts.steps, per_step: opts.batch * opts.seq_len, unit: "tokens", every: a.run.checkpoint_every, max_minutes: a.run.max_minutes };
    let options = serde_json::to_value(&opts)?;
    let mut summary = session.run(
        g,
        &mut state,
        config.clone(),
        options,
        &sched,
        |st, on_step| Ok(train_masked_diffusion(&model, &corpus_ids, 1, &opts, st, on_step)?),
        |st| Ok(save_model(&a.out, &config, st.ema.weights(), candle_core::DType::F16)?),
    )?;
    summary["training_tokens"] = corpus_ids.len().into();
    if g.json {
        println!("{summary}");
    } else {
        println!("{}/{} steps in {:.1} min; model in {}, loss curve in {}", summary["steps"], opts.steps, summary["seconds"].as_f64().unwrap_or(0.0) / 60.0, a.out.display(), a.out.join("loss.png").display());
    }
    Ok(())
}

pub fn eval_text(g: &Global, a: &EvalTextArgs) -> Result<()> {
    let lm = DiffusionLm::load_path(&a.model, &g.device, g.dtype).with_context(|| format!("loading {}", a.model.display()))?;
    let tok = TextTokenizer::from_files(&a.model.join("tokenizer.json"), None)?;
    let train = tokens_of(&tok, &a.data.join("train.txt"))?;
    let heldout = tokens_of(&tok, &a.data.join("heldout.txt"))?;
    let opts = EvalOptions { seq_len: a.seq_len, windows: a.windows, mask_ratio: a.mask_ratio, seed: g.seed.unwrap_or(0), ..EvalOptions::default() };
    let r = evaluate(&lm, &train, &heldout, &opts)?;
    if g.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("held-out windows: {} x {} tokens ({} masked at ratio {})", r.windows, a.seq_len, r.masked_tokens, r.mask_ratio);
        println!("masked-token accuracy: model {:.1}%  unigram {:.1}%", 100.0 * r.masked_accuracy, 100.0 * r.unigram_accuracy);
        println!("NLL bound (nats/token): model {:.3}  unigram {:.3}", r.bound_nats_per_token, r.unigram_nats_per_token);
    }
    Ok(())
}
