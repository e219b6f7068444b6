//! The forward process of masked diffusion, for training and evaluation: each token is
//! replaced by `[MASK]` independently with the sequence's masking level.

use crate::noise::NoiseSource;

/// LLaDA's masking level of one training sequence: `t ~ U(eps, 1)`, drawn as
/// `(1 - eps) u + eps` (one uniform).
pub fn mask_level<N: NoiseSource + ?Sized>(eps: f64, rng: &mut N) -> f64 {
    (1.0 - eps) * rng.uniform() + eps
}

/// Replaces each of `tokens` by `mask_id` with probability `p` (one uniform per token, in
/// order); returns the noisy tokens and which positions were masked.
pub fn mask_tokens<N: NoiseSource + ?Sized>(tokens: &[u32], p: f64, mask_id: u32, rng: &mut N) -> (Vec<u32>, Vec<bool>) {
    let masked: Vec<bool> = tokens.iter().map(|_| rng.uniform() < p).collect();
    let noisy = tokens.iter().zip(&masked).map(|(&t, &m)| if m { mask_id } else { t }).collect();
    (noisy, masked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::PortableRng;

    #[test]
    fn masks_about_p_of_the_tokens_and_only_those() {
        let tokens: Vec<u32> = (0..10_000).map(|i| i % 50 + 2).collect();
        let (noisy, masked) = mask_tokens(&tokens, 0.3, 1, &mut PortableRng::new(4));
        let n = masked.iter().filter(|&&m| m).count();
        assert!((2800..3200).contains(&n), "{n}");
        for ((&t, &x), &m) in tokens.iter().zip(&noisy).zip(&masked) {
            assert_eq!(x, if m { 1 } else { t });
        }
        let mut rng = PortableRng::new(5);
        let levels: Vec<f64> = (0..1000).map(|_| mask_level(0.1, &mut rng)).collect();
        assert!(levels.iter().all(|&p| (0.1..1.0).contains(&p)));
    }
}
