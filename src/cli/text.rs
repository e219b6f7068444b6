//! `stipple text`: generate with a masked-diffusion language model.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use stipple_core::discrete::Remasking;
use stipple_core::progress::{CancelToken, Progress, StepEvent};
use stipple_text::generate::CanvasView;
use stipple_text::generation_defaults::{GenerationDefaults, Requested};
use stipple_text::{CacheMode, CommitRule, GenerateConfig, TextModel};

use super::Global;
use super::progress::BarProgress;

/// Confidence measure on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RemaskingArg {
    /// Probability of the proposed token (LLaDA low_confidence, Dream maskgit_plus).
    LowConfidence,
    /// Random order (LLaDA random).
    Random,
    /// Top-1 minus top-2 probability (Dream topk_margin).
    Margin,
    /// Negative entropy (Dream entropy).
    Entropy,
}

impl From<RemaskingArg> for Remasking {
    fn from(r: RemaskingArg) -> Self {
        match r {
            RemaskingArg::LowConfidence => Remasking::LowConfidence,
            RemaskingArg::Random => Remasking::Random,
            RemaskingArg::Margin => Remasking::Margin,
            RemaskingArg::Entropy => Remasking::Entropy,
        }
    }
}

/// KV cache mode on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CacheArg {
    /// No cache: every step runs the whole canvas.
    None,
    /// Fast-dLLM prefix cache.
    Prefix,
    /// Fast-dLLM dual cache.
    Dual,
}

impl From<CacheArg> for CacheMode {
    fn from(c: CacheArg) -> Self {
        match c {
            CacheArg::None => CacheMode::None,
            CacheArg::Prefix => CacheMode::Prefix,
            CacheArg::Dual => CacheMode::Dual,
        }
    }
}

/// Decoding options shared by `text` and `infill`.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Confidence measure deciding which proposals are committed first.
    #[arg(long, value_enum, default_value = "low-confidence")]
    pub remasking: RemaskingArg,
    /// Sampling temperature (0: greedy; default: the model's generation_config.json, else 0).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold (with --temperature > 0).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Top-k sampling (with --temperature > 0).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Fast-dLLM parallel decoding: commit every proposal at least this confident.
    #[arg(long, conflicts_with = "factor")]
    pub threshold: Option<f64>,
    /// Fast-dLLM factor-based parallel decoding.
    #[arg(long)]
    pub factor: Option<f64>,
    /// Dream's `origin` algorithm: reveal each masked position with probability 1 - s/t.
    #[arg(long, conflicts_with_all = ["threshold", "factor"])]
    pub origin: bool,
    /// Sample which positions to commit from softmax(confidence / T) instead of the top-k (Dream alg_temp).
    #[arg(long)]
    pub alg_temp: Option<f64>,
    /// KV cache (bidirectional models; approximate, refreshed every block).
    #[arg(long, value_enum, default_value = "none")]
    pub cache: CacheArg,
}

impl DecodeArgs {
    /// Fill the shared fields of a config.
    pub fn apply(&self, cfg: &mut GenerateConfig) {
        cfg.remasking = self.remasking.into();
        cfg.temperature = self.temperature.unwrap_or(0.0);
        cfg.top_p = self.top_p;
        cfg.top_k = self.top_k;
        cfg.cache = self.cache.into();
        cfg.alg_temp = self.alg_temp;
        cfg.commit = match (self.threshold, self.factor, self.origin) {
            (Some(t), _, _) => CommitRule::Threshold(t),
            (None, Some(f), _) => CommitRule::Factor(f),
            (None, None, true) => CommitRule::Origin,
            _ => CommitRule::Schedule,
        };
    }
}

/// `stipple text` arguments.
#[derive(Args, Debug)]
pub struct TextArgs {
    /// The prompt (or give one or more with --prompt).
    #[arg(value_name = "PROMPT")]
    pub prompt_arg: Option<String>,
    /// Model folder (config.json, *.safetensors, tokenizer.json), hub id owner/name, or a
    /// GGUF file (LLaDA/Dream as llama.cpp converts them; f32, f16, Q8_0, k-quants...)
    /// (default: the embedded stipple-mini text model).
    #[arg(long)]
    pub model: Option<String>,
    /// Quantize the weights as they load: q8_0, q6_k, q5_k, q5_0, q4_k or q4_0 (llama.cpp's
    /// types; activations stay f32). Smaller, and q8_0 runs llama.cpp's Q8_0 file exactly.
    #[arg(long, value_parser = parse_quantize)]
    pub quantize: Option<candle_core::quantized::GgmlDType>,
    /// Prompt; repeat for a batch (left-padded, decoded together).
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Skip the chat template (base models, or a prompt already formatted).
    #[arg(long)]
    pub raw: bool,
    /// Tokens to generate (default: 128, or what fits after the prompt in a model with a
    /// shorter maximum length).
    #[arg(long)]
    pub gen_len: Option<usize>,
    /// Denoising steps (default: gen-len).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Semi-autoregressive block length (default: gen-len).
    #[arg(long)]
    pub block_len: Option<usize>,
    /// LLaDA classifier-free guidance weight (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub cfg: f64,
    /// Stop after a block once every prompt has produced end-of-text.
    #[arg(long)]
    pub early_stop: bool,
    /// Print the canvas as it is decoded (stderr).
    #[arg(long)]
    pub stream: bool,
    /// Write the text to this file instead of stdout (several prompts: NAME-1.txt, NAME-2.txt, ...).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// The files `n` results go to: `out` itself for one, numbered beside it for several
/// (`story.txt` -> `story-1.txt`, `story-2.txt`).
pub fn numbered_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let ext = out.extension().map(|s| format!(".{}", s.to_string_lossy())).unwrap_or_default();
    (1..=n).map(|i| out.with_file_name(format!("{stem}-{i}{ext}"))).collect()
}

/// `--out` resolved inside `--out-dir`, numbered for `n` results, refused when a file
/// exists and `overwrite` is not given (checked before any work).
pub fn text_outputs(g: &Global, out: Option<&Path>, n: usize, overwrite: bool) -> Result<Vec<PathBuf>> {
    let Some(out) = out else { return Ok(Vec::new()) };
    let paths = numbered_paths(&g.output(out)?, n);
    if let (false, Some(p)) = (overwrite, paths.iter().find(|p| p.exists())) {
        bail!("{} already exists (pass --overwrite to replace it, or choose another --out)", p.display());
    }
    Ok(paths)
}

/// Writes `text` to `path` whole or not at all.
pub fn write_text(path: &Path, text: &str, overwrite: bool) -> Result<()> {
    Ok(stipple_core::output::write_bytes(path, text.as_bytes(), overwrite)?)
}

/// Progress bar plus optional live canvas.
struct TextProgress<'a> {
    bar: BarProgress,
    stream: Option<&'a TextModel>,
}

impl Progress<CanvasView> for TextProgress<'_> {
    fn on_step(&mut self, event: &StepEvent<'_, CanvasView>) {
        Progress::<CanvasView>::on_step(&mut self.bar, event);
        if let (Some(model), Some(view)) = (self.stream, event.preview) {
            for row in 0..view.rows.len() {
                eprintln!("[{:3}] {}", view.nfe, model.canvas_text(view, row, "_").replace('\n', "⏎"));
            }
        }
    }
}

/// `--quantize` values (llama.cpp's names).
pub fn parse_quantize(name: &str) -> std::result::Result<candle_core::quantized::GgmlDType, String> {
    stipple_text::quantize::parse(name).map_err(|e| e.to_string())
}

/// Run `stipple text`; returns the JSON summary.
pub fn run(g: &Global, args: &TextArgs) -> Result<serde_json::Value> {
    let prompts: Vec<String> = args.prompt_arg.iter().chain(&args.prompt).cloned().collect();
    if prompts.is_empty() {
        bail!("give a prompt (stipple text \"Call me\" or --prompt)");
    }
    let model_source = match &args.model {
        Some(m) => m.clone(),
        None => stipple::defaults::model("text")?.display().to_string(),
    };
    // the values given are checked before the model loads (the rules between them, once
    // the model's defaults have filled the rest)
    let mut given = GenerateConfig { guidance: args.cfg, ..GenerateConfig::default() };
    args.decode.apply(&mut given);
    given.steps = args.steps.unwrap_or(given.steps);
    given.block_len = args.block_len.unwrap_or(given.block_len);
    match args.gen_len {
        // the rest defaults as `settle` does it
        Some(n) => {
            given.gen_len = n;
            given.block_len = args.block_len.unwrap_or(n).min(n);
            given.steps = args.steps.unwrap_or(n);
            given.validate()?;
        }
        None => stipple_text::generate::params::PARAMS.check_ranges(&given)?,
    }
    let paths = text_outputs(g, args.out.as_deref(), prompts.len(), args.overwrite)?;
    // a hub GGUF is looked up once, for the weights and the generation defaults alike
    let model_source = stipple_text::gguf::localize(&model_source)?;
    let model = g.models.text(&model_source, &g.device, g.dtype, args.quantize)?;
    let asked = Requested { gen_len: args.gen_len, block_len: args.block_len, steps: args.steps, temperature: args.decode.temperature, top_p: args.decode.top_p, top_k: args.decode.top_k };
    let s = GenerationDefaults::of_model(&model_source)?.settle(&model, &prompts, args.raw, &asked)?;
    let gen_len = s.gen_len;
    let mut cfg = GenerateConfig { gen_len, steps: s.steps, block_len: s.block_len, guidance: args.cfg, early_stop: args.early_stop, seed: g.seed.unwrap_or(0), ..GenerateConfig::default() };
    args.decode.apply(&mut cfg);
    (cfg.temperature, cfg.top_p, cfg.top_k) = (s.temperature, s.top_p, s.top_k);
    let mut progress = TextProgress {
        bar: if args.stream && g.bars.is_none() { BarProgress::new("text", false) } else { g.step_bar("text") },
        stream: args.stream.then_some(&*model),
    };
    let (outs, run) = model.generate(&prompts, args.raw, &cfg, Some(&mut progress), CancelToken::new())?;
    progress.bar.finish();
    let secs = run.elapsed.as_secs_f64();
    let generated: usize = outs.iter().map(|o| o.generated_ids.len()).sum();
    let tps = if secs > 0.0 { generated as f64 / secs } else { 0.0 };
    for (path, o) in paths.iter().zip(&outs) {
        write_text(path, &o.text, args.overwrite)?;
    }
    let mut obj = if outs.len() == 1 {
        serde_json::to_value(&outs[0])?
    } else {
        json!({ "results": outs })
    };
    let m = obj.as_object_mut().expect("object");
    if !paths.is_empty() {
        m.insert("paths".into(), json!(paths));
    }
    m.insert("nfe".into(), json!(run.nfe));
    m.insert("elapsed_ms".into(), json!(secs * 1e3));
    m.insert("tokens_per_s".into(), json!(tps));
    m.insert("early_stopped".into(), json!(run.early_stopped));
    m.insert("model".into(), json!(format!("{:?}", model.lm.traits().family).to_lowercase()));
    m.insert("seed".into(), json!(cfg.seed));
    if !g.quiet() {
        if paths.is_empty() {
            for o in &outs {
                println!("{}", o.text);
            }
        }
        for p in &paths {
            eprintln!("wrote {}", p.display());
        }
        eprintln!("{} tokens, {} model calls, {:.2} s ({tps:.1} tokens/s)", generated, run.nfe, secs);
    }
    Ok(obj)
}
