//! Vectorisable `exp` for the activation and softmax kernels.
//!
//! libm's `expf` is a scalar call per element and was ~5% of a text forward pass. This is
//! the classic range reduction `e^x = 2^n * 2^f` with a degree-6 polynomial for `e^r`, `r` in
//! [-ln2/2, ln2/2] (relative error below 5e-7, well under f32 rounding of the results that use it),
//! written as straight-line code LLVM vectorises; [`map_in_place`] runs it in a copy
//! compiled for AVX2 + FMA when the CPU has them (checked at run time).

/// `e^x` for one value (inputs are clamped to [-87.3, 88.7]: the smallest normal and the largest finite results).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in few bits and the rest (Cody-Waite), so r stays exact
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.3, 88.7);
    // n = round(x log2 e) by the 1.5 * 2^23 trick (|x log2 e| < 2^22): `floor` is a libm
    // call per element on the baseline x86-64 target (no SSE4.1 rounding), which kept the
    // portable kernels from vectorising; rounding to nearest keeps r in [-ln2/2, ln2/2] too
    const ROUND: f32 = 12_582_912.0;
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO; // in [-ln2/2, ln2/2]
    // e^r: Taylor to degree 6 (truncation error (ln2 / 2)^7 / 7! ~ 1.2e-7)
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // Scale by 2^n through the exponent bits. The biased exponent (an integral float in
    // [0, 255]) is moved into the low mantissa bits by adding 2^23 instead of a float->int
    // cast: Rust's saturating `as` compiled to one scalar conversion per lane here.
    let biased = (n + 127.0).clamp(0.0, 255.0) + 8_388_608.0;
    p * f32::from_bits(biased.to_bits() << 23)
}

/// Whether the AVX2 + FMA copies of the kernels run here (the CPU has them and
/// `STIPPLE_CPU` does not cap them: [`crate::cpu_features`]).
#[inline]
pub fn has_avx2_fma() -> bool {
    crate::cpu_features::active() >= crate::cpu_features::CpuPath::Avx2
}

/// `xs[i] = f(xs[i])` with `f` built from [`exp`], vectorised for the running CPU.
#[inline(always)]
pub fn map_in_place(xs: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // Safety: the features were just checked.
            unsafe { map_avx2(xs, f) };
            return;
        }
    }
    for x in xs.iter_mut() {
        *x = f(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_avx2(xs: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    for x in xs.iter_mut() {
        *x = f(*x);
    }
}

/// Lanes of the reductions below: independent accumulators, so the compiler can keep
/// them in vector registers (a plain float fold is one serial chain: IEEE addition and
/// `f32::max` may not be reordered).
const LANES: usize = 16;

#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    let m = rest
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    acc.iter().fold(m, |a, &x| if x > a { x } else { a })
}

#[inline(always)]
fn exp_sub_sum_lanes(xs: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x = exp(*x - shift);
            *a += *x;
        }
    }
    let mut total: f32 = 0.0;
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        total += *x;
    }
    total + acc.iter().sum::<f32>()
}

/// Whether the AVX-512 copies of the kernels run here (see [`has_avx2_fma`]).
#[inline]
pub fn has_avx512() -> bool {
    crate::cpu_features::active() >= crate::cpu_features::CpuPath::Avx512
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn max_avx512(xs: &[f32]) -> f32 {
    max_lanes(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn exp_sub_sum_avx512(xs: &mut [f32], shift: f32) -> f32 {
    exp_sub_sum_lanes(xs, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn max_avx2(xs: &[f32]) -> f32 {
    max_lanes(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_sub_sum_avx2(xs: &mut [f32], shift: f32) -> f32 {
    exp_sub_sum_lanes(xs, shift)
}

/// The largest value (`-inf` for an empty slice; NaNs are skipped).
pub fn max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        // Safety: the features are checked first.
        if has_avx512() {
            return unsafe { max_avx512(xs) };
        }
        if has_avx2_fma() {
            return unsafe { max_avx2(xs) };
        }
    }
    max_lanes(xs)
}

/// `xs[i] = e^(xs[i] - shift)`, returning the sum of the results: a softmax numerator
/// and its normaliser in one pass.
pub fn exp_sub_sum(xs: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        // Safety: the features are checked first.
        if has_avx512() {
            return unsafe { exp_sub_sum_avx512(xs, shift) };
        }
        if has_avx2_fma() {
            return unsafe { exp_sub_sum_avx2(xs, shift) };
        }
    }
    exp_sub_sum_lanes(xs, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "{worst}");
        assert!(exp(-200.0) < 1e-37, "{}", exp(-200.0));
        assert!(exp(0.0) == 1.0 || (exp(0.0) - 1.0).abs() < 1e-7);
        let mut row: Vec<f32> = (0..1037)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        let m = max(&row);
        assert_eq!(m, row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let want: f64 = row.iter().map(|&x| ((x - m) as f64).exp()).sum();
        let got = exp_sub_sum(&mut row, m);
        assert!(((got as f64 - want) / want).abs() < 1e-5, "{got} vs {want}");
        assert!(
            (row[3] as f64 - (((3 * 7919) % 1000) as f64 / 100.0 - 5.0 - m as f64).exp()).abs()
                < 1e-6
        );
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32 / 100.0 - 5.0).collect();
        map_in_place(&mut v, exp);
        for (i, y) in v.iter().enumerate() {
            let x = i as f32 / 100.0 - 5.0;
            assert!(((y - x.exp()) / x.exp()).abs() < 5e-7);
        }
    }
}
