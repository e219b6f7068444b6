//! Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"), the
//! counter-based generator of cuRAND, JAX and NumPy's `Philox`.
//!
//! A counter-based generator maps (key, counter) to random bits with no state in between,
//! so the uniform for "token `i` at canvas position `p` in this step" can be computed by
//! whichever thread or device needs it, in any order: the CPU kernel (rayon over rows) and
//! its CUDA twin (`kernels/cuda/confidence.cu`, the same rounds) draw identical noise.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: four random words for `counter` under `key`.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The uniform in the open interval (0, 1) (53 random bits) for `(row, index)` under the
/// 64-bit `key`: counter `[index, row, 0, 0]`, the first two output words.
#[inline]
pub fn uniform(key: u64, row: u32, index: u32) -> f64 {
    let w = philox4x32_10([index, row, 0, 0], [key as u32, (key >> 32) as u32]);
    let bits = ((w[0] as u64) << 32) | w[1] as u64;
    ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer tests shipped with Random123 (kat_vectors, philox4x32 10).
    #[test]
    fn random123_known_answers() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
        assert_eq!(
            philox4x32_10([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniforms_are_open_and_spread() {
        let us: Vec<f64> = (0..20_000).map(|i| uniform(42, 7, i)).collect();
        assert!(us.iter().all(|&u| u > 0.0 && u < 1.0));
        let mean = us.iter().sum::<f64>() / us.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        // a different row, index or key gives a different draw
        assert_ne!(uniform(42, 7, 0), uniform(42, 8, 0));
        assert_ne!(uniform(42, 7, 0), uniform(43, 7, 0));
        assert_ne!(uniform(42, 7, 0), uniform(42, 7, 1));
    }
}
