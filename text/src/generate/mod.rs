//! The decoding loop: drives a [`DiffusionLm`] over a canvas of tokens and `[MASK]`s with
//! the discrete sampler of `stipple_core::discrete` (its spec from
//! [`GenerateConfig::sampler_spec`]); set-up and commits in `canvas`, the model call in
//! `model_call`.
//!
//! One engine covers every reference algorithm:
//! * LLaDA `generate.py`: semi-autoregressive blocks, `llada_counts` per block,
//!   low-confidence / random remasking, Gumbel-max temperature, CFG with the prompt
//!   masked (`un + (w + 1)(cond - un)`).
//! * Dream `diffusion_generate`: `dream_count` commits, maskgit_plus / topk_margin /
//!   entropy confidences, top-p / top-k / temperature, `alg_temp`, shifted logits.
//! * Fast-dLLM: threshold and factor parallel decoding, prefix and dual KV caches
//!   refreshed at the first step of every block.
//!
//! Batches of prompts are left-padded with an attention mask and per-row rotary
//! positions, so a row decodes as it would alone. A [`TokenFilter`] can restrict the
//! tokens allowed at each position (the infilling constraints use it), and a
//! [`Progress`] sink receives a [`CanvasView`] after every model call (the studio
//! animates it).

mod canvas;
mod model_call;
pub mod params;

use std::time::Instant;

pub use stipple_core::discrete::CommitRule;
use stipple_core::discrete::{Algorithm, Committed, DiscreteSamplerSpec, Remasking};
use stipple_core::guidance::Guidance;
use stipple_core::noise::PortableRng;
use stipple_core::progress::{CancelToken, NoProgress, Progress, StepReporter};

use crate::error::{Error, Result, invalid};
use crate::models::{DiffusionLm, Family, KvCache};
use canvas::Canvas;
use model_call::{ModelCall, restrict};

/// KV caching for bidirectional models (Fast-dLLM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Every step runs the whole canvas (exact).
    #[default]
    None,
    /// Keys/values before the current block are cached at the block's first step; later
    /// steps run the block and everything after it.
    Prefix,
    /// Keys/values of every position outside the block are cached; later steps run the
    /// block only.
    Dual,
}

/// Decoding settings. [`GenerateConfig::default`] is LLaDA's `generate.py` default.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Tokens generated after the prompt.
    pub gen_len: usize,
    /// Model calls budget under [`CommitRule::Schedule`] (split evenly across blocks).
    pub steps: usize,
    /// Semi-autoregressive block length (`gen_len`: one block).
    pub block_len: usize,
    /// Confidence measure.
    pub remasking: Remasking,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus filter (Dream-style sampling).
    pub top_p: Option<f64>,
    /// Top-k filter (Dream-style sampling).
    pub top_k: Option<usize>,
    /// Sample positions from `softmax(confidence / alg_temp)` instead of top-k (Dream).
    pub alg_temp: Option<f64>,
    /// LLaDA's unsupervised classifier-free guidance weight `w` (0: off).
    pub guidance: f64,
    /// Commit rule.
    pub commit: CommitRule,
    /// KV caching.
    pub cache: CacheMode,
    /// Stop after the first block in which every row has produced an end-of-text token;
    /// the rest of the canvas is filled with end-of-text.
    pub early_stop: bool,
    /// Seed of the portable noise.
    pub seed: u64,
    /// Dream's schedule epsilon (`linspace(1, eps, steps + 1)`).
    pub eps: f64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            gen_len: 128,
            steps: 128,
            block_len: 128,
            remasking: Remasking::LowConfidence,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            alg_temp: None,
            guidance: 0.0,
            commit: CommitRule::Schedule,
            cache: CacheMode::None,
            early_stop: false,
            seed: 0,
            eps: 1e-3,
        }
    }
}

impl GenerateConfig {
    /// The discrete sampler these settings ask for on a model of `family` (Dream models
    /// decode with Dream's algorithm, the others with LLaDA's).
    pub fn sampler_spec(&self, family: Family) -> DiscreteSamplerSpec {
        DiscreteSamplerSpec {
            algorithm: if family == Family::Dream { Algorithm::Dream } else { Algorithm::Llada },
            remasking: self.remasking,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            alg_temp: self.alg_temp,
            commit: self.commit,
            eps: self.eps,
            // Fast-dLLM (threshold, factor, caches) takes its softmax in float64
            f64_confidence: self.commit != CommitRule::Schedule || self.cache != CacheMode::None,
        }
    }

    /// Checks every setting against [`params::PARAMS`] (ranges and interactions); what
    /// depends on a model (context length, vocabulary, cache support) is checked when
    /// decoding starts.
    pub fn validate(&self) -> Result<()> {
        params::PARAMS.validate(self)?;
        Ok(())
    }

    fn validate_for(&self, traits: &crate::models::ModelTraits) -> Result<()> {
        self.validate()?;
        if self.cache != CacheMode::None && !traits.supports_cache {
            return Err(invalid("this model has no KV cache support; use cache none"));
        }
        if let Some(k) = self.top_k.filter(|&k| k > traits.vocab) {
            return Err(invalid(format!("top_k (--top-k) {k} is larger than the model's vocabulary ({})", traits.vocab)));
        }
        Ok(())
    }
}

/// Restricts the tokens allowed at masked positions (constrained decoding).
pub trait TokenFilter {
    /// Before a step: ban tokens at `positions` of row `row` by setting their logits to
    /// `-inf`. `logits` holds one row of `vocab` values per position, in order.
    fn restrict(&mut self, row: usize, canvas: &[u32], positions: &[usize], logits: &mut [f32], vocab: usize) -> Result<()>;
    /// After a step: `commits` (most confident first) were proposed for row `row`, whose
    /// canvas before the step is `canvas`. Return which to keep; the others stay masked.
    fn review(&mut self, row: usize, canvas: &[u32], commits: &[Committed]) -> Vec<bool>;
}

/// What a progress sink sees after each model call.
#[derive(Clone, Debug)]
pub struct CanvasView {
    /// Current canvases (one per row; prompt included).
    pub rows: Vec<Vec<u32>>,
    /// Tokens committed by this step, per row.
    pub committed: Vec<Vec<Committed>>,
    /// The `[MASK]` id (positions still holding it are undecided).
    pub mask_id: u32,
    /// Model calls so far.
    pub nfe: usize,
    /// Index of the current semi-autoregressive block.
    pub block: usize,
    /// Where each row's generated part starts (its prompt length).
    pub gen_start: Vec<usize>,
}

/// A decoding result.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Final canvases (prompt + generated), one per row, without left padding.
    pub rows: Vec<Vec<u32>>,
    /// Where the generated part starts in each row (the prompt length).
    pub gen_start: Vec<usize>,
    /// The confidence each position was committed with (`None`: given, not generated).
    pub confidence: Vec<Vec<Option<f64>>>,
    /// Model calls (a CFG pair counts as two, as in the references).
    pub nfe: usize,
    /// Wall time.
    pub elapsed: std::time::Duration,
    /// Stopped before the last block (see [`GenerateConfig::early_stop`]).
    pub early_stopped: bool,
}

impl Generation {
    /// Generated ids of row `i` (everything after the prompt).
    pub fn generated(&self, i: usize) -> &[u32] {
        &self.rows[i][self.gen_start[i]..]
    }
}

/// Generate `cfg.gen_len` tokens after each prompt.
pub fn generate(
    model: &DiffusionLm,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    progress: Option<&mut dyn Progress<CanvasView>>,
    cancel: CancelToken,
) -> Result<Generation> {
    if prompts.is_empty() {
        return Err(invalid("no prompts"));
    }
    let mask = model.traits().mask_id;
    let canvases: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut c = p.clone();
            c.extend(std::iter::repeat_n(mask, cfg.gen_len));
            c
        })
        .collect();
    decode(model, canvases, cfg, None, progress, cancel)
}

/// Decode arbitrary canvases: every `[MASK]` is filled, every other token is pinned.
/// Masks must lie in the last `cfg.gen_len` positions of each row (the region split into
/// blocks); with `gen_len` >= the row length they may be anywhere (infilling). Rows may
/// differ in length: they are left-padded.
pub fn decode(
    model: &DiffusionLm,
    canvases: Vec<Vec<u32>>,
    cfg: &GenerateConfig,
    mut filter: Option<&mut dyn TokenFilter>,
    progress: Option<&mut dyn Progress<CanvasView>>,
    cancel: CancelToken,
) -> Result<Generation> {
    let traits = model.traits().clone();
    cfg.validate_for(&traits)?;
    let mut sampler = cfg.sampler_spec(traits.family).build()?;
    let started = Instant::now();
    let mut canvas = Canvas::new(&traits, canvases, cfg.gen_len)?;
    let guidance = (cfg.guidance > 0.0).then(|| Guidance::from_llada_cfg(cfg.guidance));
    let passes = if guidance.is_some() { 2 } else { 1 };
    if model.device().is_cpu() {
        let length = canvas.rows.first().map_or(0, Vec::len);
        let window = cfg.block_len.min(canvas.region.len()).max(1);
        stipple_core::memory::check(&crate::memory::decode(&traits, canvas.rows.len(), length, window, passes, cfg.cache))?;
    }
    let (key_mask, positions) = canvas.padding_inputs(passes, model.device())?;
    let call = ModelCall { model, shift: traits.shift_logits, guidance, key_mask, positions, mode: cfg.cache, mask: traits.mask_id };
    let gen_len = canvas.region.len();
    let blocks = stipple_core::discrete::semi_ar_blocks(canvas.region.start, gen_len, cfg.block_len.min(gen_len).max(1), cfg.steps)?;
    let mut noise = PortableRng::new(cfg.seed);
    let mut cache = (cfg.cache != CacheMode::None).then(KvCache::new);
    let (mut nfe, mut step_no, mut early_stopped) = (0, 0, false);
    let mut no_progress = NoProgress;
    let sink: &mut dyn Progress<CanvasView> = match progress {
        Some(p) => p,
        None => &mut no_progress,
    };
    let mut reporter = StepReporter::new(sink, cancel, cfg.steps);
    for (bi, block) in blocks.iter().enumerate() {
        let window = block.range();
        let budget = sampler.block_budget(&canvas.masks_in(&window), block.steps)?;
        let (mut i, mut fresh_block) = (0, true);
        loop {
            reporter.check()?;
            let left = canvas.masks_in(&window);
            if left.iter().all(|&n| n == 0) {
                break;
            }
            let k = sampler.commit_counts(&budget, i, &left);
            if sampler.commits_nothing(&k) {
                i += 1;
                continue;
            }
            let logits = call.logits(&canvas.rows, &canvas.given, &window, cache.as_mut(), fresh_block)?;
            nfe += passes;
            fresh_block = false;
            let logits = match filter.as_deref_mut() {
                Some(f) => restrict(f, logits, &canvas.rows, &window, traits.mask_id, traits.vocab)?,
                None => logits,
            };
            let reports = sampler.step(&logits, &mut canvas.window_rows(&window), traits.mask_id, 0..window.len(), &k, &budget, i, &mut noise)?;
            let committed = canvas.commit(reports, &window, filter.as_deref_mut());
            step_no += 1;
            reporter.step(step_no.min(cfg.steps), Some(&canvas.view(committed, nfe, bi)))?;
            i += 1;
            if i > 4 * window.len().max(block.steps) + 8 {
                return Err(Error::Infill("decoding made no progress (the constraints reject every proposal)".into()));
            }
        }
        if cfg.early_stop && bi + 1 < blocks.len() && canvas.stop_early(&traits.eos_ids, window.end) {
            early_stopped = true;
            break;
        }
    }
    Ok(canvas.finish(nfe, started.elapsed(), early_stopped))
}
