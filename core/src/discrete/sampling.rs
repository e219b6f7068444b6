//! Token choice at one position: which token a masked position would become.
//!
//! Two families exist and their confidences differ, so both are kept:
//! * LLaDA: Gumbel-max on the raw logits in float64 (`add_gumbel_noise`); the confidence
//!   is then read from the *un-noised, un-tempered* softmax.
//! * Dream (`sample_tokens`): temperature, top-p, top-k on the logits, softmax, then the
//!   max (T = 0) or a categorical draw; the confidence is read from those probabilities.

use crate::Result;
use crate::error::invalid;
use crate::noise::NoiseSource;

/// Index of the largest value, the first one on ties (as `torch.argmax`).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// LLaDA's Gumbel-max sample: `argmax(exp(l) / (-ln u)^T)` in float64, one uniform per
/// vocabulary entry taken from `uniforms` in order (as `torch.rand_like(logits, float64)`).
/// `temperature == 0` is plain argmax and draws nothing.
pub fn gumbel_argmax_with(row: &[f32], temperature: f64, mut uniforms: impl FnMut() -> f64) -> u32 {
    if temperature == 0.0 {
        return argmax(row);
    }
    let (mut best, mut best_v) = (0usize, f64::NAN);
    for (i, &l) in row.iter().enumerate() {
        let u = uniforms();
        let v = (l as f64).exp() / (-(u.ln())).powf(temperature);
        // first maximum wins; NaN never wins (torch.argmax would propagate it)
        if i == 0 || v > best_v || best_v.is_nan() {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// [`gumbel_argmax_with`] drawing its uniforms from `noise`.
pub fn gumbel_argmax<N: NoiseSource + ?Sized>(row: &[f32], temperature: f64, noise: &mut N) -> u32 {
    gumbel_argmax_with(row, temperature, || noise.uniform())
}

/// Dream's `top_p_logits` in place: sort descending, cumulative softmax, drop entries
/// whose cumulative probability *before* them already exceeds `top_p` (the first is
/// always kept), filling with `f32::MIN` (torch's `finfo.min`, not `-inf`).
///
/// torch accumulates the f32 cumsum in f64 on the CPU and compares with `top_p` cast to
/// f32; both are mirrored. Ties in the sort are broken by lower index first.
pub fn top_p_filter(row: &mut [f32], top_p: f64) {
    if row.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    let m = row[order[0]] as f64;
    let e: Vec<f64> = order.iter().map(|&i| (row[i] as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    let p = top_p as f32;
    let mut cum = 0f64;
    let mut remove_next = false;
    let mut remove = vec![false; row.len()];
    for (rank, &i) in order.iter().enumerate() {
        // shifted right by one: entry `rank` is removed if the cumsum through rank-1 > p
        if rank > 0 && remove_next {
            remove[i] = true;
        }
        cum += (e[rank] / s) as f32 as f64;
        remove_next = (cum as f32) > p;
    }
    for (v, r) in row.iter_mut().zip(remove) {
        if r {
            *v = f32::MIN;
        }
    }
}

/// Dream's `top_k_logits` in place: entries below the k-th largest value become
/// `f32::MIN` (ties with the k-th are kept). `k` is clamped to the row length.
pub fn top_k_filter(row: &mut [f32], top_k: usize) -> Result<()> {
    if top_k == 0 {
        return Err(invalid("top_k must be > 0"));
    }
    if row.is_empty() {
        return Ok(());
    }
    let k = top_k.min(row.len());
    let mut sorted = row.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    for v in row.iter_mut() {
        if *v < kth {
            *v = f32::MIN;
        }
    }
    Ok(())
}

/// The logits Dream's `sample_tokens` takes the softmax of: divided by `temperature`
/// when it is > 0 (in f32), then top-p (when < 1), then top-k.
pub fn dream_logits(
    row: &[f32],
    temperature: f64,
    top_p: Option<f64>,
    top_k: Option<usize>,
) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = if temperature > 0.0 {
        let t = temperature as f32;
        row.iter().map(|&l| l / t).collect()
    } else {
        row.to_vec()
    };
    if let Some(p) = top_p.filter(|&p| p < 1.0) {
        top_p_filter(&mut out, p);
    }
    if let Some(k) = top_k {
        top_k_filter(&mut out, k)?;
    }
    Ok(out)
}

/// Inverse-CDF categorical draw from unnormalised weights with one uniform `u` in (0, 1):
/// the first index whose cumulative weight exceeds `u * total`.
///
/// This is the same distribution as `torch.distributions.Categorical(probs).sample()` /
/// `torch.multinomial`, but it cannot be bit-identical to them: torch consumes its
/// generator differently, so recorded runs with T > 0 replay only through this function.
pub fn sample_categorical(weights: &[f64], u: f64) -> usize {
    let total: f64 = weights.iter().sum();
    let target = u * total;
    let mut cum = 0.0;
    let mut last_positive = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last_positive = i;
            cum += w;
            if cum > target {
                return i;
            }
        }
    }
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn gumbel_zero_temperature_is_argmax_and_draws_nothing() {
        let mut calls = 0;
        assert_eq!(
            gumbel_argmax_with(&[0.0, 2.0, 1.0], 0.0, || {
                calls += 1;
                0.5
            }),
            1
        );
        assert_eq!(calls, 0);
        // u close to 1 makes -ln u tiny, so that entry wins despite a smaller logit
        let us = [0.5, 0.5, 0.999_999];
        let mut it = us.iter();
        assert_eq!(
            gumbel_argmax_with(&[0.0, 2.0, 1.0], 1.0, || *it.next().unwrap()),
            2
        );
    }

    #[test]
    fn top_p_keeps_first_and_shifts() {
        // probs ~ [0.6652, 0.2447, 0.0900]: cum 0.665 > 0.5, so only the first survives
        let mut r = vec![2.0, 1.0, 0.0];
        top_p_filter(&mut r, 0.5);
        assert_eq!(r, vec![2.0, f32::MIN, f32::MIN]);
        // p = 0.7: cum after two = 0.91 > 0.7, third removed
        let mut r = vec![0.0, 2.0, 1.0];
        top_p_filter(&mut r, 0.7);
        assert_eq!(r, vec![f32::MIN, 2.0, 1.0]);
    }

    #[test]
    fn top_k_keeps_ties() {
        let mut r = vec![1.0, 3.0, 2.0, 2.0, 0.0];
        top_k_filter(&mut r, 3).unwrap();
        assert_eq!(r, vec![f32::MIN, 3.0, 2.0, 2.0, f32::MIN]);
        assert!(top_k_filter(&mut r, 0).is_err());
    }

    #[test]
    fn categorical_inverse_cdf() {
        let w = [0.2, 0.0, 0.5, 0.3];
        assert_eq!(sample_categorical(&w, 0.1), 0);
        assert_eq!(sample_categorical(&w, 0.25), 2);
        assert_eq!(sample_categorical(&w, 0.69), 2);
        assert_eq!(sample_categorical(&w, 0.71), 3);
        assert_eq!(sample_categorical(&w, 0.999_999_9), 3);
    }
}
