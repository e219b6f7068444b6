//! The decoding loop: drives a [`DiffusionLm`] over a canvas of tokens and `[MASK]`s with
//! the commit policies of `stipple_core::discrete`.
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

use std::ops::Range;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use stipple_core::discrete::schedule::{dream_count, dream_transfer_probability, llada_counts};
use stipple_core::discrete::{Accumulate, Commit, Committed, NoiseScope, Policy, Remasking, step};
use stipple_core::guidance::Guidance;
use stipple_core::noise::PortableRng;
use stipple_core::progress::{CancelToken, NoProgress, Progress, StepReporter};

use crate::error::{Error, Result, invalid};
use crate::models::{DiffusionLm, Family, KvCache, Span};

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

/// How many tokens each step commits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Parallel {
    /// A fixed budget per step from the family's schedule (LLaDA linear counts per block,
    /// Dream's `1 - s/t` of the remaining masks).
    Schedule,
    /// Fast-dLLM: the most confident token, plus every other whose confidence >= this.
    Threshold(f64),
    /// Fast-dLLM factor rule.
    Factor(f64),
    /// Dream `origin`: every masked position is revealed independently with probability
    /// `1 - s/t` (all on the last step).
    Origin,
}

/// Decoding settings. [`GenerateConfig::default`] is LLaDA's `generate.py` default.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Tokens generated after the prompt.
    pub gen_len: usize,
    /// Model calls budget under [`Parallel::Schedule`] (split evenly across blocks).
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
    pub cfg: f64,
    /// Commit rule.
    pub parallel: Parallel,
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
            cfg: 0.0,
            parallel: Parallel::Schedule,
            cache: CacheMode::None,
            early_stop: false,
            seed: 0,
            eps: 1e-3,
        }
    }
}

impl GenerateConfig {
    /// The step policy for a model family.
    pub fn policy(&self, family: Family) -> Result<Policy> {
        let sampled = self.top_p.is_some_and(|p| p < 1.0) || self.top_k.is_some();
        // Dream's token choice (filtered categorical) also serves top-p / top-k / alg_temp
        // requests on other families; LLaDA's Gumbel-max otherwise
        let mut p = if family == Family::Dream || sampled || self.alg_temp.is_some() {
            Policy::dream(self.remasking, self.temperature, self.top_p, self.top_k, self.alg_temp)
        } else {
            Policy::llada(self.temperature, self.remasking)
        };
        p.commit = match self.parallel {
            Parallel::Schedule => p.commit,
            Parallel::Threshold(t) => Commit::Threshold(t),
            Parallel::Factor(f) => Commit::Factor(f),
            // the probability is set per step in the loop
            Parallel::Origin => Commit::Bernoulli(1.0),
        };
        // Fast-dLLM (threshold, factor, caches) takes its softmax in float64; LLaDA and
        // Dream in the logits' float32
        if self.parallel != Parallel::Schedule || self.cache != CacheMode::None {
            p.accumulate = Accumulate::F64;
        }
        p.noise_scope = NoiseScope::Masked;
        // the references commit nothing when the schedule says 0
        p.at_least_one = !matches!(self.parallel, Parallel::Schedule | Parallel::Origin);
        Ok(p)
    }

    fn validate(&self, spec_cache: bool) -> Result<()> {
        if self.gen_len == 0 {
            return Err(invalid("gen_len must be > 0"));
        }
        if self.steps == 0 {
            return Err(invalid("steps must be > 0"));
        }
        if !self.cfg.is_finite() || self.cfg < 0.0 {
            return Err(invalid("cfg must be >= 0"));
        }
        if let Parallel::Threshold(t) = self.parallel
            && !(0.0..=1.0).contains(&t)
        {
            return Err(invalid("threshold must be in [0, 1]"));
        }
        if let Parallel::Factor(f) = self.parallel
            && !(f > 0.0)
        {
            return Err(invalid("factor must be > 0"));
        }
        if self.parallel == Parallel::Origin && self.remasking == Remasking::Random {
            return Err(invalid("origin reveals positions at random already; use low-confidence remasking"));
        }
        if self.cache != CacheMode::None && !spec_cache {
            return Err(invalid("this model has no KV cache support; use cache none"));
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
    let mask = model.spec().mask_id;
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
    let spec = model.spec().clone();
    cfg.validate(spec.supports_cache)?;
    let mut policy = cfg.policy(spec.family)?;
    let mask = spec.mask_id;
    let started = Instant::now();
    let b = canvases.len();
    if b == 0 {
        return Err(invalid("no canvases"));
    }
    let lens: Vec<usize> = canvases.iter().map(Vec::len).collect();
    let l = *lens.iter().max().unwrap();
    if let Some(max) = spec.max_len
        && l > max
    {
        return Err(invalid(format!("canvas of {l} tokens exceeds the model's {max}")));
    }
    if canvases.iter().flatten().any(|&t| t as usize >= spec.vocab) {
        return Err(invalid("a token id is outside the model's vocabulary"));
    }
    // the region decoded in blocks: the last gen_len positions (common to all rows after
    // left padding), or the whole canvas when gen_len covers it
    let gen_len = cfg.gen_len.min(l);
    let region = (l - gen_len)..l;
    let pad: Vec<usize> = lens.iter().map(|&n| l - n).collect();
    let mut rows: Vec<Vec<u32>> = canvases
        .iter()
        .zip(&pad)
        .map(|(c, &p)| {
            let mut r = vec![spec.pad_id; p];
            r.extend_from_slice(c);
            r
        })
        .collect();
    if rows.iter().any(|r| r[..region.start].contains(&mask)) {
        return Err(invalid("[MASK] tokens outside the generated region; give gen_len covering them"));
    }
    let gen_start: Vec<usize> = lens.iter().map(|&n| n - gen_len.min(n)).collect();
    let given: Vec<Vec<bool>> = rows.iter().map(|r| r.iter().map(|&t| t != mask).collect()).collect();
    let mut confidence: Vec<Vec<Option<f64>>> = vec![vec![None; l]; b];

    // attention mask and rotary positions for left padding
    let dev = model.device().clone();
    let padded = pad.iter().any(|&p| p > 0);
    let guidance = (cfg.cfg > 0.0).then(|| Guidance::from_llada_cfg(cfg.cfg));
    let passes = if guidance.is_some() { 2 } else { 1 };
    let (key_mask, positions) = if padded {
        let mut km = Vec::with_capacity(passes * b * l);
        let mut pos = Vec::with_capacity(passes * b * l);
        for _ in 0..passes {
            for &p in &pad {
                km.extend((0..l).map(|j| u32::from(j >= p)));
                pos.extend((0..l).map(|j| j.saturating_sub(p) as u32));
            }
        }
        (
            Some(Tensor::from_vec(km, (passes * b, l), &dev)?),
            Some(Tensor::from_vec(pos, (passes * b, l), &dev)?),
        )
    } else {
        (None, None)
    };

    let block_len = cfg.block_len.min(gen_len).max(1);
    let blocks = stipple_core::discrete::semi_ar_blocks(region.start, gen_len, block_len, cfg.steps)
        .map_err(Error::Core)?;
    let mut noise = PortableRng::new(cfg.seed);
    let mut cache = (cfg.cache != CacheMode::None).then(KvCache::new);
    let mut nfe = 0;
    let mut early_stopped = false;
    let mut no_progress = NoProgress;
    let sink: &mut dyn Progress<CanvasView> = match progress {
        Some(p) => p,
        None => &mut no_progress,
    };
    let mut reporter = StepReporter::new(sink, cancel, cfg.steps);
    let mut step_no = 0;
    let shift = spec.shift_logits;
    let vocab = spec.vocab;

    for (bi, block) in blocks.iter().enumerate() {
        let window = block.range();
        let masks_in = |rows: &[Vec<u32>]| -> Vec<usize> {
            rows.iter().map(|r| r[window.clone()].iter().filter(|&&t| t == mask).count()).collect()
        };
        let counts: Vec<Vec<usize>> = masks_in(&rows)
            .iter()
            .map(|&n| llada_counts(n, block.steps).map_err(Error::Core))
            .collect::<Result<_>>()?;
        let mut i = 0;
        let mut fresh_block = true;
        loop {
            reporter.check().map_err(Error::Core)?;
            let left = masks_in(&rows);
            if left.iter().all(|&n| n == 0) {
                break;
            }
            let k: Vec<usize> = left
                .iter()
                .enumerate()
                .map(|(r, &n)| {
                    if i + 1 >= block.steps {
                        n // past the budget (or reverted commits): everything left
                    } else if spec.family == Family::Dream {
                        dream_count(n, i, block.steps, cfg.eps)
                    } else {
                        counts[r][i].min(n)
                    }
                })
                .collect();
            if cfg.parallel == Parallel::Schedule && k.iter().all(|&n| n == 0) {
                // nothing to commit: the reference spends a model call on an unchanged
                // canvas; the result is the same without it
                i += 1;
                continue;
            }

            // --- model call
            let logits = window_logits(
                model,
                &rows,
                &given,
                &window,
                shift,
                guidance.as_ref(),
                key_mask.as_ref(),
                positions.as_ref(),
                cfg.cache,
                cache.as_mut(),
                fresh_block,
                mask,
            )?;
            nfe += passes;
            fresh_block = false;

            // --- constraints
            let logits = match filter.as_deref_mut() {
                Some(f) => restrict(f, logits, &rows, &window, mask, vocab)?,
                None => logits,
            };

            // --- commit
            if cfg.parallel == Parallel::Origin {
                policy.commit = Commit::Bernoulli(dream_transfer_probability(i, block.steps, cfg.eps));
            }
            let mut sub: Vec<Vec<u32>> = rows.iter().map(|r| r[window.clone()].to_vec()).collect();
            let before = sub.clone();
            let reports = step(&logits, &mut sub, mask, 0..window.len(), &policy, &k, &mut noise)
                .map_err(Error::Core)?;
            let mut committed = Vec::with_capacity(b);
            for (r, rep) in reports.into_iter().enumerate() {
                let commits: Vec<Committed> = rep
                    .committed
                    .iter()
                    .map(|c| Committed { position: c.position + window.start, ..*c })
                    .collect();
                let keep = match filter.as_deref_mut() {
                    Some(f) => f.review(r, &rows[r], &commits),
                    None => vec![true; commits.len()],
                };
                let mut kept = Vec::with_capacity(commits.len());
                for (c, ok) in commits.into_iter().zip(keep) {
                    let local = c.position - window.start;
                    if ok {
                        rows[r][c.position] = c.token;
                        confidence[r][c.position] = Some(c.confidence);
                        kept.push(c);
                    } else {
                        sub[r][local] = before[r][local];
                    }
                }
                committed.push(kept);
            }
            step_no += 1;
            let view = CanvasView {
                rows: rows.iter().zip(&pad).map(|(r, &p)| r[p..].to_vec()).collect(),
                committed,
                mask_id: mask,
                nfe,
                block: bi,
                gen_start: gen_start.clone(),
            };
            reporter.step(step_no.min(cfg.steps), Some(&view)).map_err(Error::Core)?;
            i += 1;
            if i > 4 * window.len().max(block.steps) + 8 {
                return Err(Error::Infill(
                    "decoding made no progress (the constraints reject every proposal)".into(),
                ));
            }
        }
        if cfg.early_stop
            && bi + 1 < blocks.len()
            && rows.iter().all(|r| r[region.start..window.end].iter().any(|t| spec.eos_ids.contains(t)))
        {
            let eos = spec.eos_ids[0];
            for r in rows.iter_mut() {
                for t in r[window.end..].iter_mut() {
                    if *t == mask {
                        *t = eos;
                    }
                }
            }
            early_stopped = true;
            break;
        }
    }

    Ok(Generation {
        rows: rows.iter().zip(&pad).map(|(r, &p)| r[p..].to_vec()).collect(),
        gen_start,
        confidence: confidence.into_iter().zip(&pad).map(|(c, &p)| c[p..].to_vec()).collect(),
        nfe,
        elapsed: started.elapsed(),
        early_stopped,
    })
}

/// Canvas output row that predicts position `p`.
fn source_row(p: usize, shift: bool) -> usize {
    if shift && p > 0 { p - 1 } else { p }
}

/// Logits `[B, window, V]` for the window positions, from one (or a CFG pair of) model
/// call(s), through the cache as configured.
#[allow(clippy::too_many_arguments)]
fn window_logits(
    model: &DiffusionLm,
    rows: &[Vec<u32>],
    given: &[Vec<bool>],
    window: &Range<usize>,
    shift: bool,
    guidance: Option<&Guidance>,
    key_mask: Option<&Tensor>,
    positions: Option<&Tensor>,
    mode: CacheMode,
    cache: Option<&mut KvCache>,
    fresh_block: bool,
    mask: u32,
) -> Result<Tensor> {
    let dev = model.device();
    let (b, l) = (rows.len(), rows[0].len());
    let mut flat: Vec<u32> = rows.iter().flatten().copied().collect();
    if guidance.is_some() {
        // unconditional rows: every given (non-generated) token masked
        for (r, g) in rows.iter().zip(given) {
            flat.extend(r.iter().zip(g).map(|(&t, &gv)| if gv { mask } else { t }));
        }
    }
    let nb = flat.len() / l;
    let ids = Tensor::from_vec(flat, (nb, l), dev)?;
    let lo = source_row(window.start, shift);
    let hi = source_row(window.end - 1, shift) + 1;
    // the span run this call
    let (span_start, span_end, store) = match mode {
        CacheMode::None => (0, l, false),
        _ if fresh_block => (0, l, true),
        CacheMode::Prefix => (lo.min(window.start), l, false),
        CacheMode::Dual => (lo.min(window.start), window.end, false),
    };
    let span_ids = ids.narrow(1, span_start, span_end - span_start)?;
    let span_pos = match positions {
        Some(p) => Some(p.narrow(1, span_start, span_end - span_start)?.contiguous()?),
        None => None,
    };
    let span = Span {
        ids: &span_ids,
        start: span_start,
        positions: span_pos.as_ref(),
        key_mask,
        logits_rows: Some((lo - span_start)..(hi - span_start)),
    };
    let cache_ref = if mode == CacheMode::None { None } else { cache };
    let out = model.forward(&span, cache_ref, store)?; // [nb, hi - lo, V]
    // align rows with window positions
    let idx: Vec<u32> = window.clone().map(|p| (source_row(p, shift) - lo) as u32).collect();
    let identity = idx.iter().enumerate().all(|(i, &j)| i as u32 == j);
    let out = if identity {
        out
    } else {
        out.index_select(&Tensor::from_vec(idx, window.len(), out.device())?, 1)?
    };
    let out = match guidance {
        Some(g) => {
            let cond = out.narrow(0, 0, b)?;
            let un = out.narrow(0, b, nb - b)?;
            g.combine(&cond, &un).map_err(Error::Core)?
        }
        None => out,
    };
    // never propose [MASK] itself: committing it would leave the position undecided (the
    // references allow it and can end with a [MASK] in the output; trained models never
    // pick it)
    let v = out.dim(2)?;
    let mut ban = vec![0f32; v];
    if let Some(x) = ban.get_mut(mask as usize) {
        *x = f32::NEG_INFINITY;
    }
    let out = out.to_dtype(DType::F32)?.broadcast_add(&Tensor::from_vec(ban, v, out.device())?)?;
    Ok(out)
}

/// Apply a [`TokenFilter`] to the window logits (on the CPU).
fn restrict(
    filter: &mut dyn TokenFilter,
    logits: Tensor,
    rows: &[Vec<u32>],
    window: &Range<usize>,
    mask: u32,
    vocab: usize,
) -> Result<Tensor> {
    let dev = logits.device().clone();
    let (b, w, v) = logits.dims3()?;
    let mut data = logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    for (r, row) in rows.iter().enumerate() {
        let positions: Vec<usize> = window.clone().filter(|&p| row[p] == mask).collect();
        if positions.is_empty() {
            continue;
        }
        let mut sel = Vec::with_capacity(positions.len() * v);
        for &p in &positions {
            let off = (r * w + p - window.start) * v;
            sel.extend_from_slice(&data[off..off + v]);
        }
        filter.restrict(r, row, &positions, &mut sel, vocab.min(v))?;
        for (i, &p) in positions.iter().enumerate() {
            let off = (r * w + p - window.start) * v;
            data[off..off + v].copy_from_slice(&sel[i * v..(i + 1) * v]);
        }
    }
    Ok(Tensor::from_vec(data, (b, w, v), &dev)?)
}
