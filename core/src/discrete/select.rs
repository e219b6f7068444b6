//! Position choice: which of the masked positions in the active window to commit this
//! step, given one confidence per candidate.
//!
//! Every rule takes the candidates as `(position, confidence)` pairs (only masked
//! positions inside the window: the references give all others `-inf`) and returns
//! indices into that slice, most confident first. Ordering is by descending confidence,
//! then lower position first: `torch.topk` gives no tie guarantee, but on the CPU it
//! agrees with this for distinct values, which is all the references rely on.

use std::cmp::Ordering;

/// Candidate indices sorted most confident first (ties: lower position first; NaN
/// counts as largest, as in `torch.topk`).
pub fn ranked(cands: &[(usize, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..cands.len()).collect();
    idx.sort_by(|&a, &b| desc(cands[a], cands[b]));
    idx
}

fn desc(a: (usize, f64), b: (usize, f64)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` most confident candidates (LLaDA, Dream: `torch.topk(confidence, k)`);
/// `k` is clamped to the number of candidates.
pub fn top_k(cands: &[(usize, f64)], k: usize) -> Vec<usize> {
    let mut r = ranked(cands);
    r.truncate(k.min(cands.len()));
    r
}

/// Fast-dLLM's threshold rule (`get_transfer_index` with `threshold`): the most
/// confident candidate always, every other one only if its confidence is `>= threshold`.
/// Confidences and threshold must already be in the precision the comparison should
/// use (see `policy`).
pub fn threshold(cands: &[(usize, f64)], threshold: f64) -> Vec<usize> {
    let r = ranked(cands);
    r.iter()
        .enumerate()
        .filter(|&(rank, &i)| rank == 0 || cands[i].1 >= threshold)
        .map(|(_, &i)| i)
        .collect()
}

/// Fast-dLLM's factor rule (Wu et al. 2025, "Fast-dLLM: Training-free Acceleration of
/// Diffusion LLM by Enabling KV Cache and Parallel Decoding", factor-based parallel
/// decoding): with confidences sorted descending `c_1 >= c_2 >= ...`, commit the largest
/// `n` such that `(n + 1) (1 - c_n) < f`, and at least one.
///
/// The bound comes from the paper's theorem: if `n` tokens each have confidence
/// `> 1 - eps` with `(n + 1) eps <= 1`, greedy parallel decoding equals sequential
/// decoding; `f` trades that guarantee for speed. `(n + 1)(1 - c_n)` grows with `n`,
/// so the rule is the longest satisfying prefix.
pub fn factor(cands: &[(usize, f64)], f: f64) -> Vec<usize> {
    let r = ranked(cands);
    let mut n = 0;
    for (j, &i) in r.iter().enumerate() {
        let count = (j + 1) as f64;
        if (count + 1.0) * (1.0 - cands[i].1) < f {
            n = j + 1;
        } else {
            break;
        }
    }
    let n = n.max(1).min(r.len());
    r[..n].to_vec()
}

/// Dream's `alg_temp`: draw `k` candidates without replacement from
/// `softmax(confidence / alg_temp)`, one uniform per candidate (`uniforms[i]` for
/// `cands[i]`).
///
/// torch's `multinomial(p, k, replacement=False)` uses the exponential race: the top-k of
/// `p_i / q_i` with `q_i ~ Exp(1)`; here `q_i = -ln(u_i)`. The distribution is the same;
/// bit-identity with torch's own generator is impossible (it draws its exponentials
/// itself), so recorded runs replay through this formula.
pub fn sample_without_replacement(
    cands: &[(usize, f64)],
    k: usize,
    alg_temp: f64,
    uniforms: &[f64],
) -> Vec<usize> {
    assert_eq!(uniforms.len(), cands.len(), "one uniform per candidate");
    if cands.is_empty() {
        return Vec::new();
    }
    let scaled: Vec<f64> = cands.iter().map(|c| c.1 / alg_temp).collect();
    let m = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scaled.iter().map(|s| (s - m).exp()).collect();
    let total: f64 = e.iter().sum();
    let keys: Vec<(usize, f64)> = cands
        .iter()
        .zip(e.iter().zip(uniforms))
        .map(|(c, (ei, u))| (c.0, (ei / total) / -(u.ln())))
        .collect();
    top_k(&keys, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: &[f64]) -> Vec<(usize, f64)> {
        v.iter().enumerate().map(|(i, &x)| (i * 2, x)).collect()
    }

    #[test]
    fn top_k_orders_by_confidence_then_position() {
        let cands = c(&[0.3, 0.9, 0.3, f64::NEG_INFINITY, 0.5]);
        assert_eq!(top_k(&cands, 3), vec![1, 4, 0]);
        assert_eq!(top_k(&cands, 10).len(), 5);
    }

    #[test]
    fn threshold_keeps_top1_even_below() {
        let cands = c(&[0.2, 0.4, 0.1]);
        assert_eq!(threshold(&cands, 0.9), vec![1]);
        let cands = c(&[0.95, 0.9, 0.89, 0.99]);
        assert_eq!(threshold(&cands, 0.9), vec![3, 0, 1]);
    }

    #[test]
    fn factor_rule_hand_made() {
        // sorted: 0.99, 0.95, 0.75, 0.5 -> (n+1)(1-c_n): 0.02, 0.15, 1.0 (exact), 2.5
        let cands = c(&[0.75, 0.99, 0.5, 0.95]);
        assert_eq!(factor(&cands, 1.5), vec![1, 3, 0]);
        assert_eq!(factor(&cands, 1.0), vec![1, 3]); // strict <
        assert_eq!(factor(&cands, 0.1), vec![1]);
        assert_eq!(factor(&cands, 3.0), vec![1, 3, 0, 2]);
        // nothing qualifies: still one
        assert_eq!(factor(&c(&[0.1, 0.2]), 0.5), vec![1]);
    }

    #[test]
    fn sampling_without_replacement_is_distinct_and_follows_weights() {
        let cands = c(&[0.0, 5.0, 0.1]);
        let got = sample_without_replacement(&cands, 2, 0.5, &[0.5, 0.5, 0.5]);
        assert_eq!(got, vec![1, 2]);
        let got = sample_without_replacement(&cands, 3, 1.0, &[0.9, 0.1, 0.2]);
        let mut s = got.clone();
        s.sort();
        assert_eq!(s, vec![0, 1, 2]);
    }
}
