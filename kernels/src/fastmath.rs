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
    let n = (x * LOG2E + 0.5).floor();
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

/// Whether the AVX2 + FMA copies of the kernels can run here.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32 / 100.0 - 5.0).collect();
        map_in_place(&mut v, exp);
        for (i, y) in v.iter().enumerate() {
            let x = i as f32 / 100.0 - 5.0;
            assert!(((y - x.exp()) / x.exp()).abs() < 5e-7);
        }
    }
}
