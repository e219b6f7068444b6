//! Text: `stipple train prepare-text`, `tokenizer`, `text` and `eval-text`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use stipple_text::train::corpus::SplitOptions;
use stipple_text::train::eval::EvalOptions;
use stipple_text::train::recipe::{self, TextModelShape, TextTrainJob};

use super::super::Global;
use super::{RunArgs, RunBar};

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
    let corpus = recipe::prepare_text(&a.sources, &a.out, &opts, a.overwrite)?;
    if g.json {
        println!("{}", json!({ "files": corpus.files, "train_bytes": corpus.train.len(), "heldout_bytes": corpus.heldout.len() }));
    } else {
        println!("{} files: {} bytes of training text, {} held out, in {}", corpus.files, corpus.train.len(), corpus.heldout.len(), a.out.display());
    }
    Ok(())
}

pub fn tokenizer(g: &Global, a: &TokenizerArgs) -> Result<()> {
    let start = Instant::now();
    let vocab = recipe::train_tokenizer(&a.data, &a.out, a.vocab_size)?;
    let secs = start.elapsed().as_secs_f64();
    if g.json {
        println!("{}", json!({ "vocab_size": vocab, "seconds": secs }));
    } else {
        println!("tokenizer with {vocab} entries written to {} ({secs:.1} s)", a.out.display());
    }
    Ok(())
}

pub fn train_text(g: &Global, a: &TextTrainArgs) -> Result<()> {
    let job = TextTrainJob {
        data: a.data.clone(),
        out: a.out.clone(),
        run: a.run.settings(g),
        shape: TextModelShape { layers: a.layers, hidden: a.hidden, heads: a.heads, mlp: a.mlp, seq_len: a.seq_len },
        batch: a.batch,
    };
    RunBar::drive(g, &a.out, |events| recipe::train_text(&job, &g.device, events))
}

pub fn eval_text(g: &Global, a: &EvalTextArgs) -> Result<()> {
    let opts = EvalOptions { seq_len: a.seq_len, windows: a.windows, mask_ratio: a.mask_ratio, seed: g.seed.unwrap_or(0), ..EvalOptions::default() };
    let r = recipe::eval_text(&a.model, &a.data, &opts, &g.device, g.dtype)?;
    if g.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("held-out windows: {} x {} tokens ({} masked at ratio {})", r.windows, a.seq_len, r.masked_tokens, r.mask_ratio);
        println!("masked-token accuracy: model {:.1}%  unigram {:.1}%", 100.0 * r.masked_accuracy, 100.0 * r.unigram_accuracy);
        println!("NLL bound (nats/token): model {:.3}  unigram {:.3}", r.bound_nats_per_token, r.unigram_nats_per_token);
    }
    Ok(())
}
