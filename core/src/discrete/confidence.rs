//! Confidence: how sure the model is at a masked position, which decides the order in
//! which positions are committed ("remasking" in LLaDA's terms: the least confident
//! proposals are masked again).

use stipple_kernels::confidence::{Accumulate, RowStats};

/// How a position's confidence is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Remasking {
    /// Probability of the chosen token (LLaDA `low_confidence`, Dream `maskgit_plus`).
    #[default]
    LowConfidence,
    /// A uniform draw per position (LLaDA `random`): order without looking at the model.
    Random,
    /// Top-1 minus top-2 probability (Dream `topk_margin`): low when two tokens compete.
    Margin,
    /// `Σ p log(p)` (Dream `entropy`, negative entropy): high when the distribution is peaked.
    Entropy,
}

/// Confidence of choosing `token` (whose logit is `token_logit`) from a row with
/// statistics `stats`; `Random` is not computed here (it needs a draw).
///
/// `Entropy` uses `Σ p log p` from the fused kernel; Dream computes
/// `Σ p log(p + 1e-10)`, which differs by at most `vocab × 1e-10` (a near-constant offset
/// that leaves the order of positions unchanged except for near-ties).
pub fn from_stats(
    kind: Remasking,
    stats: &RowStats,
    token: u32,
    token_logit: f32,
    acc: Accumulate,
) -> f64 {
    match kind {
        Remasking::LowConfidence => {
            if token == stats.argmax {
                stats.p1
            } else {
                stats.prob_of(token_logit, acc)
            }
        }
        Remasking::Margin => round_to(stats.p1 - stats.p2, acc),
        Remasking::Entropy => stats.neg_entropy,
        Remasking::Random => f64::NAN,
    }
}

/// Rounds to f32 when the statistics are f32 (so comparisons happen in that precision).
fn round_to(x: f64, acc: Accumulate) -> f64 {
    match acc {
        Accumulate::F32 => x as f32 as f64,
        Accumulate::F64 => x,
    }
}

/// A `Random` confidence from one uniform, stored as torch stores `torch.rand`: f32.
pub fn random_confidence(u: f64) -> f64 {
    u as f32 as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use stipple_kernels::confidence::row_stats;

    #[test]
    fn hand_computed_confidences() {
        // logits ln(0.5), ln(0.3), ln(0.2)
        let row = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let st = row_stats(&row, Accumulate::F64);
        assert!(
            (from_stats(Remasking::LowConfidence, &st, 0, row[0], Accumulate::F64) - 0.5).abs()
                < 1e-7
        );
        assert!(
            (from_stats(Remasking::LowConfidence, &st, 2, row[2], Accumulate::F64) - 0.2).abs()
                < 1e-7
        );
        assert!(
            (from_stats(Remasking::Margin, &st, 0, row[0], Accumulate::F64) - 0.2).abs() < 1e-7
        );
        let h = 0.5 * 0.5f64.ln() + 0.3 * 0.3f64.ln() + 0.2 * 0.2f64.ln();
        assert!((from_stats(Remasking::Entropy, &st, 0, row[0], Accumulate::F64) - h).abs() < 1e-7);
    }
}
