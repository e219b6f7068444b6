//! Which vector instruction set stipple's hand-written CPU kernels use: the widest the
//! processor has, capped by the `STIPPLE_CPU` environment variable (`avx512`, `avx2` or
//! `portable`), so that the narrower paths run, and are tested and timed, on a machine
//! that has the wider ones. (candle's own gemm picks its instructions itself.)

use std::sync::OnceLock;

/// A family of kernel copies, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuPath {
    /// Plain Rust, vectorised by the compiler for the build's baseline (any CPU).
    Portable,
    /// AVX2 + FMA copies (x86-64-v3: most desktops and laptops since 2013-2015).
    Avx2,
    /// AVX-512F copies (x86-64-v4: recent servers, AMD Zen 4 and later).
    Avx512,
}

impl CpuPath {
    /// The name `STIPPLE_CPU` takes and reports print.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Portable => "portable",
            CpuPath::Avx2 => "avx2",
            CpuPath::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "none" | "scalar" => Some(CpuPath::Portable),
            "avx2" => Some(CpuPath::Avx2),
            "avx512" | "avx-512" => Some(CpuPath::Avx512),
            _ => None,
        }
    }
}

/// The widest path this processor supports.
pub fn detected() -> CpuPath {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return CpuPath::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return CpuPath::Avx2;
        }
    }
    CpuPath::Portable
}

/// The path the kernels take: [`detected`], capped by `STIPPLE_CPU` (read once; an
/// unknown value is reported on stderr and ignored, a wider one than the CPU has cannot
/// raise it).
pub fn active() -> CpuPath {
    static ACTIVE: OnceLock<CpuPath> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let hw = detected();
        match std::env::var("STIPPLE_CPU") {
            Ok(v) => match CpuPath::parse(&v) {
                Some(cap) => cap.min(hw),
                None => {
                    eprintln!("warning: STIPPLE_CPU={v:?} is not one of avx512, avx2, portable; ignored");
                    hw
                }
            },
            Err(_) => hw,
        }
    })
}

/// One line for reports: the active path and, when capped, the processor's.
pub fn describe() -> String {
    let (on, hw) = (active(), detected());
    if on == hw { format!("{} kernels", on.name()) } else { format!("{} kernels (STIPPLE_CPU; this CPU has {})", on.name(), hw.name()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_cap_never_widens() {
        for p in [CpuPath::Portable, CpuPath::Avx2, CpuPath::Avx512] {
            assert_eq!(CpuPath::parse(p.name()), Some(p));
        }
        assert_eq!(CpuPath::parse("sse9"), None);
        assert!(active() <= detected());
        assert!(describe().contains(active().name()));
    }
}
