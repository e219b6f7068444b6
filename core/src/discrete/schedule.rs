//! Commit schedules: how many masked tokens to reveal at each step, and the
//! semi-autoregressive block windows they apply to.
//!
//! Masked diffusion reveals a fixed budget of tokens over `steps` model calls. The
//! schedule decides the split; it matters for quality (cosine front-loads fewer tokens,
//! when the model knows least) and it must match the reference exactly for parity.

use crate::Result;
use crate::error::invalid;

/// LLaDA's `get_num_transfer_tokens`: `n / steps` tokens each step, the first
/// `n % steps` steps one more (the linear noise schedule's expected counts).
pub fn llada_counts(n: usize, steps: usize) -> Result<Vec<usize>> {
    if steps == 0 {
        return Err(invalid("llada_counts: steps must be > 0"));
    }
    let (base, rem) = (n / steps, n % steps);
    Ok((0..steps).map(|i| base + usize::from(i < rem)).collect())
}

/// Dream's timesteps `torch.linspace(1, eps, steps + 1)` in float32, bit-exact.
///
/// torch's CPU kernel computes `step = (end - start) / (n - 1)` in f32 and then each
/// value with one fused multiply-add: `start + step * i` for `i < n / 2`, and
/// `end - step * (n - 1 - i)` for the upper half (checked against torch 2.11 for
/// 1..=1100 steps and several `eps`).
pub fn dream_timesteps(steps: usize, eps: f64) -> Vec<f32> {
    let n = steps + 1;
    let (start, end) = (1f32, eps as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// Dream's per-step count at step `i` of `steps` given `n_masked` masks left:
/// `int(n_masked * (1 - s / t))` in float32 with `t, s = timesteps[i], timesteps[i+1]`,
/// and every remaining mask on the last step. It can be 0 (the reference then
/// commits nothing that step).
pub fn dream_count(n_masked: usize, i: usize, steps: usize, eps: f64) -> usize {
    if i + 1 >= steps {
        return n_masked;
    }
    let ts = dream_timesteps(steps, eps);
    dream_count_with(n_masked, ts[i], ts[i + 1])
}

/// [`dream_count`] with the timesteps already computed (`t` current, `s` next).
pub fn dream_count_with(n_masked: usize, t: f32, s: f32) -> usize {
    let frac = 1f32 - s / t;
    (n_masked as f32 * frac) as usize
}

/// Dream `origin`'s per-position unmasking probability `1 - s / t` (float32), 1 on the
/// last step.
pub fn dream_transfer_probability(i: usize, steps: usize, eps: f64) -> f64 {
    if i + 1 >= steps {
        return 1.0;
    }
    let ts = dream_timesteps(steps, eps);
    (1f32 - ts[i + 1] / ts[i]) as f64
}

/// Counts from a "fraction still masked after step i" curve: the committed total after
/// step i is `n - round(n * masked(i / steps))`, and counts are its differences, so they
/// always sum to `n`.
fn counts_from_curve(n: usize, steps: usize, masked: impl Fn(f64) -> f64) -> Result<Vec<usize>> {
    if steps == 0 {
        return Err(invalid("schedule: steps must be > 0"));
    }
    let done = |i: usize| -> usize {
        if i >= steps {
            return n;
        }
        let left = (n as f64 * masked(i as f64 / steps as f64)).round() as usize;
        n - left.min(n)
    };
    Ok((0..steps).map(|i| done(i + 1) - done(i)).collect())
}

/// Linear schedule: a fraction `1 - i/steps` of the tokens is still masked after step i.
pub fn linear_counts(n: usize, steps: usize) -> Result<Vec<usize>> {
    counts_from_curve(n, steps, |r| 1.0 - r)
}

/// Cosine schedule (MaskGIT): a fraction `cos(pi/2 * i/steps)` is still masked after
/// step i, so few tokens are committed early, when the canvas is mostly masks.
pub fn cosine_counts(n: usize, steps: usize) -> Result<Vec<usize>> {
    counts_from_curve(n, steps, |r| (std::f64::consts::FRAC_PI_2 * r).cos())
}

/// One semi-autoregressive block: canvas positions `start..end`, decoded in `steps` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// First canvas position of the block.
    pub start: usize,
    /// One past the last position.
    pub end: usize,
    /// Steps spent on this block.
    pub steps: usize,
}

impl Block {
    /// The positions of the block.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// LLaDA's own window: everything before the block's end. LLaDA only hides
    /// confidences *after* the block, so masks left in the prompt (infilling) are
    /// eligible too; identical to [`Block::range`] when nothing before is masked.
    pub fn llada_window(&self) -> std::ops::Range<usize> {
        0..self.end
    }
}

/// LLaDA's semi-autoregressive split: `gen_len / block_len` blocks after the prompt,
/// each with `steps / blocks` steps; both divisions must be exact (LLaDA asserts so).
pub fn semi_ar_blocks(
    prompt_len: usize,
    gen_len: usize,
    block_len: usize,
    steps: usize,
) -> Result<Vec<Block>> {
    if block_len == 0 || (gen_len / block_len) * block_len != gen_len {
        return Err(invalid(format!(
            "gen_len {gen_len} must be a positive multiple of block_len {block_len}"
        )));
    }
    let blocks = gen_len / block_len;
    if blocks == 0 || steps == 0 || (steps / blocks) * blocks != steps {
        return Err(invalid(format!(
            "steps {steps} must be a positive multiple of the number of blocks {blocks} (gen_len / block_len)"
        )));
    }
    let per = steps / blocks;
    Ok((0..blocks)
        .map(|b| Block {
            start: prompt_len + b * block_len,
            end: prompt_len + (b + 1) * block_len,
            steps: per,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llada_hand_computed() {
        assert_eq!(llada_counts(10, 4).unwrap(), vec![3, 3, 2, 2]);
        assert_eq!(llada_counts(3, 5).unwrap(), vec![1, 1, 1, 0, 0]);
        assert_eq!(llada_counts(8, 8).unwrap(), vec![1; 8]);
        assert!(llada_counts(1, 0).is_err());
    }

    #[test]
    fn curves_sum_to_n_and_cosine_starts_slow() {
        for n in 0..60 {
            for steps in 1..20 {
                assert_eq!(linear_counts(n, steps).unwrap().iter().sum::<usize>(), n);
                assert_eq!(cosine_counts(n, steps).unwrap().iter().sum::<usize>(), n);
            }
        }
        // 16 tokens, 4 steps: masked left 16, round(16 cos(pi/8))=15, 11, 6, 0
        assert_eq!(cosine_counts(16, 4).unwrap(), vec![1, 4, 5, 6]);
        // masked left 10, round(7.5)=8, 5, round(2.5)=3, 0
        assert_eq!(linear_counts(10, 4).unwrap(), vec![2, 3, 2, 3]);
    }

    #[test]
    fn dream_timesteps_endpoints_and_counts() {
        let ts = dream_timesteps(4, 1e-3);
        assert_eq!(ts.len(), 5);
        assert_eq!(ts[0], 1.0);
        assert_eq!(ts[4], 1e-3f32);
        // all remaining on the last step
        assert_eq!(dream_count(7, 3, 4, 1e-3), 7);
        // 1 - s/t at step 0 of 2: s = 0.5005 -> int(10 * 0.4995) = 4
        assert_eq!(dream_count(10, 0, 2, 1e-3), 4);
    }

    #[test]
    fn blocks_follow_llada_asserts() {
        let b = semi_ar_blocks(5, 16, 4, 8).unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(
            b[1],
            Block {
                start: 9,
                end: 13,
                steps: 2
            }
        );
        assert!(semi_ar_blocks(5, 16, 5, 8).is_err());
        assert!(semi_ar_blocks(5, 16, 4, 6).is_err());
    }
}
