//! One denoising step of masked diffusion: propose a token and a confidence for every
//! masked position in the window, pick which to commit, write them into the canvas.
//!
//! A [`Policy`] names the three independent choices (token choice, confidence, commit
//! rule); presets reproduce LLaDA, Fast-dLLM and Dream. Noise is drawn in the
//! references' order so recorded torch runs replay exactly through
//! [`crate::noise::ReplayNoise`]: Bernoulli commit draws, then token draws, then random
//! confidences, then position draws, each phase over the whole batch, row by row.

use std::ops::Range;

use candle_core::Tensor;
use stipple_kernels::confidence::Accumulate;

use super::confidence::{Remasking, random_confidence};
use super::proposal::propose;
use super::select;
use crate::Result;
use crate::error::invalid;
use crate::noise::NoiseSource;

/// How the token at a position is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenChoice {
    /// Sampling temperature; 0 is greedy (argmax) and draws no noise.
    pub temperature: f64,
    /// Dream's nucleus filter (ignored when >= 1); not with `gumbel`.
    pub top_p: Option<f64>,
    /// Dream's top-k filter; not with `gumbel`.
    pub top_k: Option<usize>,
    /// LLaDA's Gumbel-max in float64 (confidence from the raw softmax) instead of
    /// Dream's filtered categorical (confidence from the filtered, tempered softmax).
    pub gumbel: bool,
}

impl Default for TokenChoice {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            gumbel: true,
        }
    }
}

impl TokenChoice {
    /// True when the fused kernel on the raw logits gives the token and confidence.
    pub(super) fn deterministic_raw(&self) -> bool {
        self.temperature == 0.0
            && (self.gumbel || (self.top_p.is_none_or(|p| p >= 1.0) && self.top_k.is_none()))
    }
}

/// Which positions are committed among the candidates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Commit {
    /// The `k` most confident, `k` given per row to [`step`] (from a schedule).
    TopK,
    /// `k` drawn without replacement from `softmax(confidence / alg_temp)` (Dream `alg_temp`).
    SampledTopK {
        /// Temperature of the position distribution.
        alg_temp: f64,
    },
    /// Fast-dLLM: the most confident always, the others if confidence >= this.
    Threshold(f64),
    /// Fast-dLLM factor rule with this `f` (see [`select::factor`]).
    Factor(f64),
    /// Dream `origin`: each candidate independently with this probability (`1 - s/t`),
    /// decided before any token is chosen; tokens are only proposed for those.
    Bernoulli(f64),
}

impl Commit {
    /// Whether the rule takes a commit count per row (from a schedule).
    fn needs_counts(self) -> bool {
        matches!(self, Commit::TopK | Commit::SampledTopK { .. })
    }
}

/// Which positions draw noise. The references draw for *every* canvas position
/// (`torch.rand_like(logits)` is `[B, L, V]`), which replay needs; drawing only for the
/// candidates gives the same distribution for far fewer draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NoiseScope {
    /// Draw as the references do (needed to replay recorded torch noise).
    #[default]
    Canvas,
    /// Draw only for masked positions in the window.
    Masked,
    /// As `Masked`, but LLaDA's Gumbel noise comes from a counter-based stream: one key per
    /// step, then the uniform of token `i` at canvas row `r` is Philox(key, r, i)
    /// (`stipple_kernels::counter_rng`). Every device draws the same noise, rows are drawn
    /// in parallel, and the noise stays next to the logits (the CUDA kernel makes it).
    Counter,
}

/// The full step policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Token choice.
    pub token: TokenChoice,
    /// Confidence measure.
    pub remasking: Remasking,
    /// Commit rule.
    pub commit: Commit,
    /// Softmax accumulation precision for confidences (f32: LLaDA, Dream; f64: Fast-dLLM).
    pub accumulate: Accumulate,
    /// Which positions draw noise.
    pub noise_scope: NoiseScope,
    /// Commit at least one token whenever a candidate exists, even if the schedule says 0
    /// (the references then skip the step; turn off to reproduce them exactly).
    pub at_least_one: bool,
}

impl Policy {
    /// LLaDA `generate.py`: Gumbel-max tokens, top-k commit with a schedule, f32 softmax.
    pub fn llada(temperature: f64, remasking: Remasking) -> Self {
        Self {
            token: TokenChoice {
                temperature,
                top_p: None,
                top_k: None,
                gumbel: true,
            },
            remasking,
            commit: Commit::TopK,
            accumulate: Accumulate::F32,
            noise_scope: NoiseScope::Canvas,
            at_least_one: true,
        }
    }

    /// Fast-dLLM threshold decoding (f64 softmax as in its `get_transfer_index`).
    pub fn fast_dllm_threshold(temperature: f64, threshold: f64) -> Self {
        Self {
            commit: Commit::Threshold(threshold),
            accumulate: Accumulate::F64,
            ..Self::llada(temperature, Remasking::LowConfidence)
        }
    }

    /// Fast-dLLM factor decoding.
    pub fn fast_dllm_factor(temperature: f64, f: f64) -> Self {
        Self {
            commit: Commit::Factor(f),
            ..Self::fast_dllm_threshold(temperature, 0.0)
        }
    }

    /// Dream `_sample` with `maskgit_plus` (LowConfidence), `topk_margin` (Margin) or
    /// `entropy` (Entropy); `alg_temp` > 0 samples positions instead of top-k.
    pub fn dream(
        remasking: Remasking,
        temperature: f64,
        top_p: Option<f64>,
        top_k: Option<usize>,
        alg_temp: Option<f64>,
    ) -> Self {
        let commit = match alg_temp {
            Some(t) if t > 0.0 => Commit::SampledTopK { alg_temp: t },
            _ => Commit::TopK,
        };
        Self {
            token: TokenChoice {
                temperature,
                top_p,
                top_k,
                gumbel: false,
            },
            remasking,
            commit,
            accumulate: Accumulate::F32,
            noise_scope: NoiseScope::Canvas,
            at_least_one: true,
        }
    }

    /// Dream `origin` at step probability `p` (see `schedule::dream_transfer_probability`).
    pub fn dream_origin(
        p: f64,
        temperature: f64,
        top_p: Option<f64>,
        top_k: Option<usize>,
    ) -> Self {
        Self {
            commit: Commit::Bernoulli(p),
            ..Self::dream(Remasking::LowConfidence, temperature, top_p, top_k, None)
        }
    }

    fn validate(&self) -> Result<()> {
        if self.token.gumbel
            && (self.token.top_p.is_some_and(|p| p < 1.0) || self.token.top_k.is_some())
        {
            return Err(invalid(
                "top_p / top_k filters need gumbel = false (Dream token choice)",
            ));
        }
        if self.token.temperature < 0.0 || !self.token.temperature.is_finite() {
            return Err(invalid("temperature must be finite and >= 0"));
        }
        if matches!(self.commit, Commit::SampledTopK { alg_temp } if alg_temp <= 0.0 || alg_temp.is_nan())
        {
            return Err(invalid("alg_temp must be > 0"));
        }
        if self.remasking == Remasking::Random && matches!(self.commit, Commit::Bernoulli(_)) {
            return Err(invalid(
                "random remasking has no meaning with Bernoulli commits",
            ));
        }
        Ok(())
    }

    /// Precision the confidences (and thresholds) are compared in: torch.rand is f32.
    fn confidence_precision(&self) -> Accumulate {
        if self.remasking == Remasking::Random {
            Accumulate::F32
        } else {
            self.accumulate
        }
    }
}

/// One committed (or proposed) token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Committed {
    /// Canvas position.
    pub position: usize,
    /// Token id.
    pub token: u32,
    /// Its confidence under the policy's measure (for display and ordering).
    pub confidence: f64,
}

/// What one step did to one canvas row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowStep {
    /// Committed tokens, most confident first (in the rule's order).
    pub committed: Vec<Committed>,
    /// Every proposal this step (by position): the masked positions in the window, or
    /// only the Bernoulli-chosen ones under [`Commit::Bernoulli`].
    pub candidates: Vec<Committed>,
}

/// LLaDA's unconditional input for classifier-free guidance: the prompt positions
/// (`prompt`) set to `mask_id`.
pub fn mask_prompt(canvas: &[u32], prompt: Range<usize>, mask_id: u32) -> Vec<u32> {
    let mut out = canvas.to_vec();
    for p in prompt {
        if let Some(t) = out.get_mut(p) {
            *t = mask_id;
        }
    }
    out
}

/// [`step`] for a single row: `logits` `[L, V]`, `k` from a schedule (ignored by the
/// threshold, factor and Bernoulli rules).
pub fn step_row<N: NoiseSource + ?Sized>(
    logits: &Tensor,
    canvas: &mut [u32],
    mask_id: u32,
    window: Range<usize>,
    policy: &Policy,
    k: usize,
    noise: &mut N,
) -> Result<RowStep> {
    let mut rows = [canvas];
    Ok(step_impl(logits, &mut rows, mask_id, window, policy, &[k], noise)?.remove(0))
}

/// One step over a batch: `logits` `[B, L, V]` (or `[L, V]` with one row), `canvas` B
/// rows of L token ids, `window` the positions eligible this step (the same for all
/// rows), `k` one count per row (for [`Commit::TopK`] / [`Commit::SampledTopK`]).
/// Commits into `canvas` and reports per row.
pub fn step<N: NoiseSource + ?Sized>(
    logits: &Tensor,
    canvas: &mut [Vec<u32>],
    mask_id: u32,
    window: Range<usize>,
    policy: &Policy,
    k: &[usize],
    noise: &mut N,
) -> Result<Vec<RowStep>> {
    let mut rows: Vec<&mut [u32]> = canvas.iter_mut().map(|r| r.as_mut_slice()).collect();
    step_impl(logits, &mut rows, mask_id, window, policy, k, noise)
}

fn step_impl<N: NoiseSource + ?Sized>(
    logits: &Tensor,
    canvas: &mut [&mut [u32]],
    mask_id: u32,
    window: Range<usize>,
    policy: &Policy,
    k: &[usize],
    noise: &mut N,
) -> Result<Vec<RowStep>> {
    let (b, l, v) = checked_shape(logits, canvas, &window, policy, k)?;
    // candidates: masked positions inside the window
    let cands: Vec<Vec<usize>> = canvas.iter().map(|row| window.clone().filter(|&p| row[p] == mask_id).collect()).collect();
    // phase 1 (Bernoulli only): which candidates get a token at all
    let active = match policy.commit {
        Commit::Bernoulli(p) => cands.iter().map(|c| bernoulli_active(c, p, policy.at_least_one, noise)).collect(),
        _ => cands,
    };
    // phase 2: token and confidence per active position
    let mut props = propose(logits, &active, (b, l, v), policy, noise)?;
    // phase 3: random confidences
    if policy.remasking == Remasking::Random {
        randomise_confidences(&mut props, l, policy.noise_scope, noise);
    }
    // phase 4: choose positions, commit
    let mut reports = Vec::with_capacity(b);
    for (bi, row) in props.into_iter().enumerate() {
        let chosen = choose(&row, k.get(bi).copied().unwrap_or(0), l, policy, noise);
        let committed: Vec<Committed> = chosen.iter().map(|&i| row[i]).collect();
        for c in &committed {
            canvas[bi][c.position] = c.token;
        }
        reports.push(RowStep { committed, candidates: row });
    }
    Ok(reports)
}

/// `(B, L, V)` of the logits, after checking them, the canvas, the window and the counts
/// against each other and the policy.
fn checked_shape(logits: &Tensor, canvas: &[&mut [u32]], window: &Range<usize>, policy: &Policy, k: &[usize]) -> Result<(usize, usize, usize)> {
    policy.validate()?;
    let (b, l, v) = match logits.dims() {
        &[l, v] => (1, l, v),
        &[b, l, v] => (b, l, v),
        d => return Err(invalid(format!("logits must be [L, V] or [B, L, V], got {d:?}"))),
    };
    if canvas.len() != b || canvas.iter().any(|r| r.len() != l) {
        return Err(invalid(format!("canvas must be {b} rows of {l} tokens")));
    }
    if window.start > window.end || window.end > l {
        return Err(invalid(format!("window {window:?} outside the canvas of {l}")));
    }
    if policy.commit.needs_counts() && k.len() != b {
        return Err(invalid(format!("need one commit count per row ({b}), got {}", k.len())));
    }
    Ok((b, l, v))
}

/// Dream `origin`'s phase 1: each candidate independently with probability `p` (one
/// uniform each); with `at_least_one`, the smallest draw when none passed.
fn bernoulli_active<N: NoiseSource + ?Sized>(cands: &[usize], p: f64, at_least_one: bool, noise: &mut N) -> Vec<usize> {
    let us: Vec<f64> = cands.iter().map(|_| noise.uniform()).collect();
    let mut chosen: Vec<usize> = cands.iter().zip(&us).filter(|(_, u)| **u < p).map(|(&q, _)| q).collect();
    if chosen.is_empty() && at_least_one && !cands.is_empty() {
        // the most likely to have been chosen: the smallest draw
        if let Some(best) = (0..cands.len()).min_by(|&x, &y| us[x].total_cmp(&us[y]).then(x.cmp(&y))) {
            chosen.push(cands[best]);
        }
    }
    chosen
}

/// Random remasking: every proposal's confidence is a uniform draw (one per canvas
/// position in the references' scope, one per proposal otherwise).
fn randomise_confidences<N: NoiseSource + ?Sized>(props: &mut [Vec<Committed>], l: usize, scope: NoiseScope, noise: &mut N) {
    for row in props.iter_mut() {
        match scope {
            NoiseScope::Canvas => {
                let us: Vec<f64> = (0..l).map(|_| noise.uniform()).collect();
                for c in row.iter_mut() {
                    c.confidence = random_confidence(us[c.position]);
                }
            }
            NoiseScope::Masked | NoiseScope::Counter => {
                for c in row.iter_mut() {
                    c.confidence = random_confidence(noise.uniform());
                }
            }
        }
    }
}

/// Phase 4: the indices of `row`'s proposals to commit under the policy's rule, `k` from
/// the schedule (top-k rules).
fn choose<N: NoiseSource + ?Sized>(row: &[Committed], k: usize, l: usize, policy: &Policy, noise: &mut N) -> Vec<usize> {
    let pairs: Vec<(usize, f64)> = row.iter().map(|c| (c.position, c.confidence)).collect();
    let k = if policy.commit.needs_counts() && k == 0 && policy.at_least_one && !pairs.is_empty() { 1 } else { k };
    match policy.commit {
        Commit::TopK => select::top_k(&pairs, k),
        Commit::SampledTopK { alg_temp } => {
            let us: Vec<f64> = match policy.noise_scope {
                NoiseScope::Canvas => {
                    let all: Vec<f64> = (0..l).map(|_| noise.uniform()).collect();
                    pairs.iter().map(|p| all[p.0]).collect()
                }
                NoiseScope::Masked | NoiseScope::Counter => pairs.iter().map(|_| noise.uniform()).collect(),
            };
            if k == 0 { Vec::new() } else { select::sample_without_replacement(&pairs, k, alg_temp, &us) }
        }
        Commit::Threshold(t) => {
            let t = match policy.confidence_precision() {
                Accumulate::F32 => t as f32 as f64,
                Accumulate::F64 => t,
            };
            if pairs.is_empty() { Vec::new() } else { select::threshold(&pairs, t) }
        }
        Commit::Factor(f) => {
            if pairs.is_empty() { Vec::new() } else { select::factor(&pairs, f) }
        }
        Commit::Bernoulli(_) => select::ranked(&pairs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use crate::noise::ReplayNoise;

    /// 5 positions, vocab 3: position p prefers token p % 3 with growing certainty.
    fn logits() -> Tensor {
        let v: Vec<f32> = (0..5)
            .flat_map(|p| (0..3).map(move |t| if t == p % 3 { p as f32 } else { 0.0 }))
            .collect();
        Tensor::from_vec(v, (5, 3), &Device::Cpu).unwrap()
    }

    #[test]
    fn masked_scope_draws_per_candidate_and_reports() {
        let mut canvas = [9, 9, 1, 9, 9];
        let mut p = Policy::llada(0.0, Remasking::Random);
        p.noise_scope = NoiseScope::Masked;
        // 4 candidates -> exactly 4 uniforms; the largest (0.9 at position 3) wins
        let mut noise = ReplayNoise::new(vec![], vec![0.1, 0.2, 0.9, 0.3]);
        let r = step_row(&logits(), &mut canvas, 9, 0..5, &p, 1, &mut noise).unwrap();
        assert_eq!(r.candidates.len(), 4);
        assert_eq!(r.committed.len(), 1);
        assert_eq!((r.committed[0].position, r.committed[0].token), (3, 0));
        assert_eq!(canvas, [9, 9, 1, 0, 9]);
    }

    #[test]
    fn counter_scope_draws_one_key_and_tokens_do_not_depend_on_other_positions() {
        use stipple_kernels::confidence::{GumbelNoise, gumbel_pick};
        let mut p = Policy::llada(1.0, Remasking::LowConfidence);
        p.noise_scope = NoiseScope::Counter;
        let u = 0.375; // the step's key: u * 2^53
        let key = (u * (1u64 << 53) as f64) as u64;
        // all five positions masked, then only positions 1 and 4: the same tokens there
        let full = {
            let mut canvas = [9; 5];
            let mut noise = ReplayNoise::new(vec![], vec![u]);
            step_row(&logits(), &mut canvas, 9, 0..5, &p, 5, &mut noise).unwrap()
        };
        assert_eq!(full.candidates.len(), 5);
        let mut canvas = [0, 9, 0, 0, 9];
        let mut noise = ReplayNoise::new(vec![], vec![u]); // exactly one draw, or this panics
        let part = step_row(&logits(), &mut canvas, 9, 0..5, &p, 2, &mut noise).unwrap();
        let tok = |r: &RowStep, pos| r.candidates.iter().find(|c| c.position == pos).unwrap().token;
        assert_eq!((tok(&part, 1), tok(&part, 4)), (tok(&full, 1), tok(&full, 4)));
        // and they are the kernel's Gumbel-max picks for canvas rows 1 and 4 under that key
        let rows = logits().index_select(&Tensor::new(&[1u32, 4], &Device::Cpu).unwrap(), 0).unwrap();
        let picks = gumbel_pick(&rows, &[1, 4], GumbelNoise { key, temperature: 1.0 }, Accumulate::F32).unwrap();
        assert_eq!((tok(&part, 1), tok(&part, 4)), (picks[0].token, picks[1].token));
    }

    #[test]
    fn bernoulli_at_least_one_takes_smallest_draw() {
        let mut canvas = [9; 5];
        let p = Policy::dream_origin(0.01, 0.0, None, None);
        let mut noise = ReplayNoise::new(vec![], vec![0.5, 0.4, 0.3, 0.2, 0.6]);
        let r = step_row(&logits(), &mut canvas, 9, 0..5, &p, 0, &mut noise).unwrap();
        assert_eq!(r.committed.len(), 1);
        assert_eq!(r.committed[0].position, 3);
        let mut strict = p;
        strict.at_least_one = false;
        let mut canvas = [9; 5];
        let mut noise = ReplayNoise::new(vec![], vec![0.5, 0.4, 0.3, 0.2, 0.6]);
        let r = step_row(&logits(), &mut canvas, 9, 0..5, &strict, 0, &mut noise).unwrap();
        assert!(r.committed.is_empty());
    }

    #[test]
    fn factor_and_window() {
        // window 2..5: positions 2, 3, 4 with confidences rising with p
        let mut canvas = [9; 5];
        let p = Policy::fast_dllm_factor(0.0, 1.0);
        let mut noise = ReplayNoise::new(vec![], vec![]);
        let r = step_row(&logits(), &mut canvas, 9, 2..5, &p, 0, &mut noise).unwrap();
        assert_eq!(r.candidates.len(), 3);
        // p(4) = e^4/(e^4+2) ~ 0.965, p(3) = e^3/(e^3+2) ~ 0.909: 2*0.035 < 1, 3*0.091 < 1,
        // p(2) ~ 0.787: 4*0.213 = 0.85 < 1 -> all three
        assert_eq!(
            r.committed.iter().map(|c| c.position).collect::<Vec<_>>(),
            vec![4, 3, 2]
        );
        assert_eq!(&canvas[..2], &[9, 9]);
    }
}
