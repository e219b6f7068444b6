//! Held-out quality of a masked-diffusion LM, against a unigram baseline:
//! masked-token accuracy at a fixed mask ratio, and LLaDA's likelihood bound
//! `E_t [ (1/t) sum_{masked} -log p(x_i | x_t) ] / L` (nats per token), estimated with
//! mask levels stratified over the windows.

use candle_core::{D, Tensor};
use stipple_core::discrete::forward_process::mask_tokens;
use stipple_core::noise::PortableRng;

use crate::error::{Result, invalid};
use crate::models::DiffusionLm;
use crate::models::transformer::Span;

/// What to measure.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Tokens per window.
    pub seq_len: usize,
    /// Windows (taken evenly spread over the held-out tokens).
    pub windows: usize,
    /// Mask ratio of the accuracy test.
    pub mask_ratio: f64,
    /// Windows per forward pass.
    pub batch: usize,
    /// Seed of the masks.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { seq_len: 128, windows: 128, mask_ratio: 0.5, batch: 8, seed: 0 }
    }
}

/// Held-out measurements of the model and of the unigram baseline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    /// Fraction of masked tokens the model's top prediction gets right at `mask_ratio`.
    pub masked_accuracy: f64,
    /// The same for always guessing the most frequent training token.
    pub unigram_accuracy: f64,
    /// LLaDA's upper bound on the negative log-likelihood, nats per token.
    pub bound_nats_per_token: f64,
    /// The unigram model's cross-entropy (add-one smoothed), nats per token.
    pub unigram_nats_per_token: f64,
    /// Masked tokens scored in the accuracy test.
    pub masked_tokens: usize,
    /// Windows evaluated.
    pub windows: usize,
    /// Mask ratio used for the accuracy.
    pub mask_ratio: f64,
}

/// Unigram statistics of training tokens: add-one smoothed log-probabilities and the
/// most frequent token.
pub struct Unigram {
    log_p: Vec<f64>,
    top: u32,
}

impl Unigram {
    /// Counts `tokens` over a vocabulary of `vocab`.
    pub fn fit(tokens: &[u32], vocab: usize) -> Self {
        let mut counts = vec![1.0f64; vocab];
        for &t in tokens {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1.0;
            }
        }
        let total: f64 = counts.iter().sum();
        let top = (0..vocab).max_by(|&a, &b| counts[a].total_cmp(&counts[b])).unwrap_or(0) as u32;
        Self { log_p: counts.iter().map(|c| (c / total).ln()).collect(), top }
    }

    /// Cross-entropy on `tokens`, nats per token.
    pub fn nats(&self, tokens: &[u32]) -> f64 {
        -tokens.iter().map(|&t| self.log_p.get(t as usize).copied().unwrap_or(f64::NEG_INFINITY)).sum::<f64>() / tokens.len().max(1) as f64
    }
}

/// Log-probabilities `[B, L, V]` of a batch of noisy windows.
fn log_probs(lm: &DiffusionLm, rows: &[Vec<u32>]) -> Result<Vec<Vec<Vec<f32>>>> {
    let (b, n) = (rows.len(), rows[0].len());
    let ids = Tensor::from_vec(rows.concat(), (b, n), lm.device())?;
    let span = Span { ids: &ids, start: 0, positions: None, key_mask: None, logits_rows: None };
    let logits = lm.forward(&span, None, false)?;
    Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec3()?)
}

/// Evaluates `lm` on windows of `heldout` with the unigram baseline fitted on `train`.
pub fn evaluate(lm: &DiffusionLm, train: &[u32], heldout: &[u32], opts: &EvalOptions) -> Result<EvalReport> {
    let (l, w) = (opts.seq_len, opts.windows);
    if l == 0 || w == 0 || heldout.len() < l {
        return Err(invalid(format!("need at least one window of {l} held-out tokens (have {})", heldout.len())));
    }
    if let Some(max) = lm.traits().max_len.filter(|&m| m < l) {
        return Err(invalid(format!("windows of {l} tokens exceed the model's {max}")));
    }
    let mask_id = lm.traits().mask_id;
    let stride = if w > 1 { (heldout.len() - l) / (w - 1) } else { 0 };
    let windows: Vec<&[u32]> = (0..w).map(|i| &heldout[i * stride..i * stride + l]).collect();
    let unigram = Unigram::fit(train, lm.traits().vocab);
    let mut rng = PortableRng::new(opts.seed);
    let (mut correct, mut scored, mut unigram_correct) = (0usize, 0usize, 0usize);
    let mut bound = 0.0;
    for (chunk_index, chunk) in windows.chunks(opts.batch.max(1)).enumerate() {
        // accuracy at the fixed ratio
        let masks: Vec<(Vec<u32>, Vec<bool>)> = chunk.iter().map(|win| mask_tokens(win, opts.mask_ratio, mask_id, &mut rng)).collect();
        let lp = log_probs(lm, &masks.iter().map(|m| m.0.clone()).collect::<Vec<_>>())?;
        for ((win, (_, masked)), rows) in chunk.iter().zip(&masks).zip(&lp) {
            for i in (0..l).filter(|&i| masked[i]) {
                let best = rows[i].iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(j, _)| j as u32);
                correct += usize::from(best == win[i]);
                unigram_correct += usize::from(unigram.top == win[i]);
                scored += 1;
            }
        }
        // the bound: mask level t stratified over windows, (1/t) * masked CE / L
        let first = chunk_index * opts.batch.max(1);
        let levels: Vec<f64> = (0..chunk.len()).map(|j| (first + j) as f64 / w as f64 + rng.next_uniform() / w as f64).collect();
        let masks: Vec<(Vec<u32>, Vec<bool>)> = chunk.iter().zip(&levels).map(|(win, &t)| mask_tokens(win, t, mask_id, &mut rng)).collect();
        let lp = log_probs(lm, &masks.iter().map(|m| m.0.clone()).collect::<Vec<_>>())?;
        for (((win, (_, masked)), rows), t) in chunk.iter().zip(&masks).zip(&lp).zip(&levels) {
            let ce: f64 = (0..l).filter(|&i| masked[i]).map(|i| -(rows[i][win[i] as usize] as f64)).sum();
            bound += ce / t / l as f64;
        }
    }
    let all: Vec<u32> = windows.concat();
    Ok(EvalReport {
        masked_accuracy: correct as f64 / scored.max(1) as f64,
        unigram_accuracy: unigram_correct as f64 / scored.max(1) as f64,
        bound_nats_per_token: bound / w as f64,
        unigram_nats_per_token: unigram.nats(&all),
        masked_tokens: scored,
        windows: w,
        mask_ratio: opts.mask_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unigram_baseline_counts() {
        let u = Unigram::fit(&[2, 2, 2, 3], 4);
        assert_eq!(u.top, 2);
        // add-one: counts 1,1,4,2 of 8
        assert!((u.nats(&[2]) - (8f64 / 4.0).ln()).abs() < 1e-12);
        assert!((u.nats(&[0, 3]) - ((8f64).ln() + (4f64).ln()) / 2.0).abs() < 1e-12);
    }
}
