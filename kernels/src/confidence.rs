//! Fused per-row confidence statistics of logits: argmax, top-1 and top-2 probabilities,
//! negative entropy, all in one pass over the vocabulary.
//!
//! Masked-diffusion samplers (LLaDA, Dream, Fast-dLLM) need, for every masked position,
//! the most likely token and a confidence derived from `softmax(logits)`. Done with
//! separate tensor ops this reads a `[rows, vocab]` tensor four or five times and writes
//! a full probability tensor; here each row is read once with an *online softmax*: a
//! running maximum `m`, the rescaled sum `S = Σ exp(l - m)` and the rescaled
//! `T = Σ exp(l - m)(l - m)`, so that `Σ p log p = T / S - ln S` without materialising
//! `p`. Rows are processed in parallel (rayon).

use candle_core::{DType, Device, Error, Result, Storage, Tensor, WithDType};
use rayon::prelude::*;

/// Statistics of one row of logits, as if `p = softmax(row)` had been computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowStats {
    /// Index of the largest logit; the first one on ties (as `torch.argmax`).
    pub argmax: u32,
    /// The largest logit (`-inf` for an all `-inf` row).
    pub max_logit: f64,
    /// `Σ exp(l - max_logit)`, so that `p_i = exp(l_i - max_logit) / sum_exp`.
    pub sum_exp: f64,
    /// Largest probability (`1 / sum_exp`).
    pub p1: f64,
    /// Second largest probability, counting a tied maximum twice (as a descending sort does).
    pub p2: f64,
    /// `Σ p log p` (the negative entropy; 0 terms for `p = 0`).
    pub neg_entropy: f64,
}

impl RowStats {
    /// Probability of token `logit` given this row's statistics, in the accumulation
    /// precision the statistics were computed in.
    pub fn prob_of(&self, logit: f32, acc: Accumulate) -> f64 {
        match acc {
            Accumulate::F32 => {
                (((logit - self.max_logit as f32).exp()) / self.sum_exp as f32) as f64
            }
            Accumulate::F64 => ((logit as f64 - self.max_logit).exp()) / self.sum_exp,
        }
    }
}

/// Precision of the softmax accumulation. `F32` mirrors a softmax in the logits' own
/// float32 dtype (LLaDA's `generate.py`, Dream); `F64` mirrors Fast-dLLM's
/// `softmax(logits.to(float64))`. Inputs are read as f32 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accumulate {
    /// Accumulate in f32.
    #[default]
    F32,
    /// Accumulate in f64.
    F64,
}

/// The little float interface the scan needs, for f32 and f64 accumulators.
trait Acc:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
    fn from_f32(x: f32) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! impl_acc {
    ($t:ty) => {
        impl Acc for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INF: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
impl_acc!(f32);
impl_acc!(f64);

/// Elements read (and converted to f32) per block; a block's max is found first so the
/// running sums are rescaled at most once per block.
const BLOCK: usize = 64;

/// One pass over `row` (any candle float element type, read as f32).
fn scan<T: WithDType, A: Acc>(row: &[T]) -> RowStats {
    let mut buf = [0f32; BLOCK];
    // top-2 logits (v2 == v1 on a tied maximum) and the first argmax
    let (mut v1, mut v2, mut arg) = (f32::NEG_INFINITY, f32::NEG_INFINITY, 0usize);
    // online softmax state relative to m
    let (mut m, mut s, mut t) = (A::NEG_INF, A::ZERO, A::ZERO);
    for (bi, chunk) in row.chunks(BLOCK).enumerate() {
        let buf = &mut buf[..chunk.len()];
        for (b, x) in buf.iter_mut().zip(chunk) {
            *b = x.to_f64() as f32;
        }
        let mut bmax = f32::NEG_INFINITY;
        for (i, &l) in buf.iter().enumerate() {
            if l > v1 {
                v2 = v1;
                v1 = l;
                arg = bi * BLOCK + i;
            } else if l > v2 {
                v2 = l;
            }
            if l > bmax {
                bmax = l;
            }
        }
        if bmax == f32::NEG_INFINITY {
            continue; // the block adds exp(-inf) = 0 terms only
        }
        let bm = A::from_f32(bmax);
        if bm > m {
            if s > A::ZERO {
                // rescale: exp(l - m) = exp(l - bm) * exp(m - bm); T gains S * (m - bm)
                let d = m - bm;
                let scale = d.exp();
                t = (t + s * d) * scale;
                s = s * scale;
            }
            m = bm;
        }
        for &l in buf.iter() {
            if l == f32::NEG_INFINITY {
                continue;
            }
            let d = A::from_f32(l) - m;
            let e = d.exp();
            s = s + e;
            t = t + e * d;
        }
    }
    if m == A::NEG_INF {
        // all -inf: softmax is NaN in torch as well
        return RowStats {
            argmax: 0,
            max_logit: f64::NEG_INFINITY,
            sum_exp: 0.0,
            p1: f64::NAN,
            p2: f64::NAN,
            neg_entropy: f64::NAN,
        };
    }
    let p1 = A::ONE / s;
    let p2 = if v2 == f32::NEG_INFINITY {
        A::ZERO
    } else {
        (A::from_f32(v2) - m).exp() / s
    };
    let neg_entropy = t / s - s.ln();
    RowStats {
        argmax: arg as u32,
        max_logit: m.to_f64(),
        sum_exp: s.to_f64(),
        p1: p1.to_f64(),
        p2: p2.to_f64(),
        neg_entropy: neg_entropy.to_f64(),
    }
}

/// Statistics of one row given as an f32 slice (used on already filtered rows).
pub fn row_stats(row: &[f32], acc: Accumulate) -> RowStats {
    match acc {
        Accumulate::F32 => scan::<f32, f32>(row),
        Accumulate::F64 => scan::<f32, f64>(row),
    }
}

fn rows_cpu<T: WithDType>(data: &[T], vocab: usize, acc: Accumulate) -> Vec<RowStats> {
    // ~16k elements per task keeps rayon's overhead small on short rows
    let min_rows = (16384 / vocab.max(1)).max(1);
    let f = match acc {
        Accumulate::F32 => scan::<T, f32>,
        Accumulate::F64 => scan::<T, f64>,
    };
    data.par_chunks(vocab)
        .with_min_len(min_rows)
        .map(f)
        .collect()
}

/// Per-row statistics of `logits` (`[rows, vocab]`, or any rank >= 1 whose last dimension
/// is the vocabulary), in f32, f16 or bf16.
///
/// CPU tensors run the fused Rust kernel; CUDA tensors (with the `cuda` feature) its twin
/// in `kernels/cuda/confidence.cu`, one block per row.
pub fn confidence_stats(logits: &Tensor, acc: Accumulate) -> Result<Vec<RowStats>> {
    let vocab = *logits
        .dims()
        .last()
        .ok_or_else(|| Error::Msg("confidence_stats: scalar logits".into()))?;
    if vocab == 0 {
        return Err(Error::Msg("confidence_stats: empty vocabulary".into()));
    }
    match logits.device() {
        Device::Cpu => {
            let logits = logits.contiguous()?;
            let (storage, layout) = logits.storage_and_layout();
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| Error::Msg("confidence_stats: non-contiguous logits".into()))?;
            let Storage::Cpu(cpu) = &*storage else {
                return Err(Error::Msg("confidence_stats: expected CPU storage".into()));
            };
            match logits.dtype() {
                DType::F32 => Ok(rows_cpu(&cpu.as_slice::<f32>()?[start..end], vocab, acc)),
                DType::F16 => Ok(rows_cpu(
                    &cpu.as_slice::<half::f16>()?[start..end],
                    vocab,
                    acc,
                )),
                DType::BF16 => Ok(rows_cpu(
                    &cpu.as_slice::<half::bf16>()?[start..end],
                    vocab,
                    acc,
                )),
                dt => Err(Error::Msg(format!(
                    "confidence_stats: unsupported dtype {dt:?} (f32, f16, bf16)"
                ))),
            }
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => crate::cuda::confidence_stats(logits, vocab, acc),
        other => Err(Error::Msg(format!(
            "confidence_stats: no kernel for device {:?} yet; move the logits to the CPU",
            other.location()
        ))),
    }
}

/// Counter-based Gumbel noise for one step: the uniform for token `i` of canvas row `r`
/// is [`crate::counter_rng::uniform`]`(key, r, i)`, so every device draws the same noise
/// and no noise is drawn for rows that are not scored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GumbelNoise {
    /// This step's key (drawn once per step from the sampler's seeded stream).
    pub key: u64,
    /// Sampling temperature (> 0; temperature 0 is plain argmax, see [`confidence_stats`]).
    pub temperature: f64,
}

/// A Gumbel-max draw over one row of logits, with the row's statistics (LLaDA reads the
/// confidence from the un-noised softmax).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GumbelPick {
    /// The row's softmax statistics, as [`confidence_stats`] gives them.
    pub stats: RowStats,
    /// `argmax_i (l_i - T ln(-ln u_i))`, the first on ties (the Gumbel-max trick: a draw
    /// from `softmax(l / T)`).
    pub token: u32,
    /// The logit of `token`.
    pub logit: f32,
}

/// The Gumbel-max token of one row (`row_id` names it in the noise counter).
fn gumbel_argmax<T: WithDType>(row: &[T], row_id: u32, noise: GumbelNoise) -> (u32, f32) {
    let (mut best, mut best_score, mut best_logit) = (0u32, f64::NEG_INFINITY, row.first().map_or(f32::NAN, |x| x.to_f64() as f32));
    for (i, x) in row.iter().enumerate() {
        let l = x.to_f64() as f32;
        let u = crate::counter_rng::uniform(noise.key, row_id, i as u32);
        let score = l as f64 - noise.temperature * (-u.ln()).ln();
        if score > best_score {
            (best, best_score, best_logit) = (i as u32, score, l);
        }
    }
    (best, best_logit)
}

fn gumbel_rows_cpu<T: WithDType>(data: &[T], vocab: usize, row_ids: &[u32], noise: GumbelNoise, acc: Accumulate) -> Vec<GumbelPick> {
    let scan_row = match acc {
        Accumulate::F32 => scan::<T, f32>,
        Accumulate::F64 => scan::<T, f64>,
    };
    data.par_chunks(vocab)
        .zip(row_ids.par_iter())
        .map(|(row, &id)| {
            let (token, logit) = gumbel_argmax(row, id, noise);
            GumbelPick { stats: scan_row(row), token, logit }
        })
        .collect()
}

/// Per-row statistics and a Gumbel-max token for `logits` `[rows, vocab]` (f32, f16 or
/// bf16), row `j` drawing its noise as canvas row `row_ids[j]`.
///
/// CPU tensors run the Rust kernel (parallel over rows); CUDA tensors its twin in
/// `kernels/cuda/confidence.cu`, with the same Philox noise: the same tokens on both.
pub fn gumbel_pick(logits: &Tensor, row_ids: &[u32], noise: GumbelNoise, acc: Accumulate) -> Result<Vec<GumbelPick>> {
    let vocab = *logits.dims().last().ok_or_else(|| Error::Msg("gumbel_pick: scalar logits".into()))?;
    if vocab == 0 || logits.elem_count() / vocab != row_ids.len() {
        return Err(Error::Msg(format!("gumbel_pick: {} rows of logits {:?} for {} row ids", logits.elem_count() / vocab.max(1), logits.shape(), row_ids.len())));
    }
    if !(noise.temperature > 0.0 && noise.temperature.is_finite()) {
        return Err(Error::Msg(format!("gumbel_pick: temperature {} must be finite and > 0", noise.temperature)));
    }
    match logits.device() {
        Device::Cpu => {
            let logits = logits.contiguous()?;
            let (storage, layout) = logits.storage_and_layout();
            let (start, end) = layout.contiguous_offsets().ok_or_else(|| Error::Msg("gumbel_pick: non-contiguous logits".into()))?;
            let Storage::Cpu(cpu) = &*storage else {
                return Err(Error::Msg("gumbel_pick: expected CPU storage".into()));
            };
            match logits.dtype() {
                DType::F32 => Ok(gumbel_rows_cpu(&cpu.as_slice::<f32>()?[start..end], vocab, row_ids, noise, acc)),
                DType::F16 => Ok(gumbel_rows_cpu(&cpu.as_slice::<half::f16>()?[start..end], vocab, row_ids, noise, acc)),
                DType::BF16 => Ok(gumbel_rows_cpu(&cpu.as_slice::<half::bf16>()?[start..end], vocab, row_ids, noise, acc)),
                dt => Err(Error::Msg(format!("gumbel_pick: unsupported dtype {dt:?} (f32, f16, bf16)"))),
            }
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => crate::cuda::gumbel_pick(logits, vocab, row_ids, noise, acc),
        other => Err(Error::Msg(format!("gumbel_pick: no kernel for device {:?} yet; move the logits to the CPU", other.location()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Straightforward two-pass softmax in f64, the reference for the fused scan.
    fn naive(row: &[f32]) -> (u32, f64, f64, f64) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row.iter().map(|&l| (l as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let mut p: Vec<f64> = e.iter().map(|x| x / s).collect();
        let arg = row.iter().position(|&l| l as f64 == m).unwrap() as u32;
        let h: f64 = p.iter().filter(|&&x| x > 0.0).map(|&x| x * x.ln()).sum();
        p.sort_by(|a, b| b.partial_cmp(a).unwrap());
        (arg, p[0], p.get(1).copied().unwrap_or(0.0), h)
    }

    fn random_rows(rows: usize, vocab: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut v: Vec<f32> = (0..rows * vocab)
            .map(|_| rng.random_range(-8.0f32..8.0))
            .collect();
        for r in 0..rows {
            let row = &mut v[r * vocab..(r + 1) * vocab];
            match r % 5 {
                // some -inf entries (filtered or banned tokens), including the first
                1 if vocab >= 3 => {
                    for j in (0..vocab).step_by(3) {
                        row[j] = f32::NEG_INFINITY;
                    }
                }
                // an exact tie for the maximum: argmax must be the first
                2 if vocab >= 3 => {
                    row[vocab / 3] = 20.0;
                    row[vocab - 2] = 20.0;
                }
                // a peaked row (large logits, rescaling across blocks)
                3 if vocab >= 2 => row[vocab - 1] = 60.0,
                _ => {}
            }
        }
        v
    }

    fn check(t: &Tensor, values: &[f32], vocab: usize, acc: Accumulate, tol: f64) {
        let stats = confidence_stats(t, acc).unwrap();
        for (r, st) in stats.iter().enumerate() {
            let (arg, p1, p2, h) = naive(&values[r * vocab..(r + 1) * vocab]);
            assert_eq!(st.argmax, arg, "row {r}");
            assert!((st.p1 - p1).abs() <= tol, "row {r} p1 {} vs {p1}", st.p1);
            assert!((st.p2 - p2).abs() <= tol, "row {r} p2 {} vs {p2}", st.p2);
            assert!(
                (st.neg_entropy - h).abs() <= tol * 10.0,
                "row {r} H {} vs {h}",
                st.neg_entropy
            );
            let pm = st.prob_of(values[r * vocab + arg as usize], acc);
            assert!((pm - p1).abs() <= tol);
        }
    }

    #[test]
    fn matches_naive_softmax_f32() {
        for &(rows, vocab) in &[(10, 50), (7, 1000), (3, 64), (4, 65), (2, 1)] {
            let v = random_rows(rows, vocab, 7 + vocab as u64);
            let t = Tensor::from_vec(v.clone(), (rows, vocab), &Device::Cpu).unwrap();
            check(&t, &v, vocab, Accumulate::F32, 1e-5);
            check(&t, &v, vocab, Accumulate::F64, 1e-12);
        }
    }

    #[test]
    fn matches_naive_softmax_bf16_and_f16() {
        let (rows, vocab) = (12, 777);
        let v = random_rows(rows, vocab, 3);
        let t = Tensor::from_vec(v, (rows, vocab), &Device::Cpu).unwrap();
        for dt in [DType::BF16, DType::F16] {
            let tl = t.to_dtype(dt).unwrap();
            // the reference sees the same rounded values the kernel reads
            let rounded: Vec<f32> = tl
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            check(&tl, &rounded, vocab, Accumulate::F32, 1e-5);
            check(&tl, &rounded, vocab, Accumulate::F64, 1e-12);
        }
    }

    #[test]
    fn hand_made_rows() {
        // uniform row: p1 = p2 = 1/4, entropy -ln 4, argmax first
        let r = row_stats(&[1.0, 1.0, 1.0, 1.0], Accumulate::F64);
        assert_eq!(r.argmax, 0);
        assert!((r.p1 - 0.25).abs() < 1e-15 && (r.p2 - 0.25).abs() < 1e-15);
        assert!((r.neg_entropy + 4f64.ln()).abs() < 1e-15);
        // one finite entry among -inf: certain
        let r = row_stats(
            &[f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY],
            Accumulate::F32,
        );
        assert_eq!((r.argmax, r.p1, r.p2, r.neg_entropy), (1, 1.0, 0.0, 0.0));
        // all -inf: NaN like torch.softmax
        assert!(
            row_stats(&[f32::NEG_INFINITY; 3], Accumulate::F32)
                .p1
                .is_nan()
        );
        // 3-D input flattens leading dims; non-contiguous input is accepted
        let t = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        assert_eq!(confidence_stats(&t, Accumulate::F32).unwrap().len(), 6);
        let tt = t.reshape((6, 4)).unwrap().t().unwrap();
        let s = confidence_stats(&tt, Accumulate::F32).unwrap();
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|x| x.argmax == 5));
    }

    #[test]
    fn gumbel_pick_is_the_gumbel_max_of_the_counter_noise() {
        let (rows, vocab) = (6, 301);
        let v = random_rows(rows, vocab, 5);
        let t = Tensor::from_vec(v.clone(), (rows, vocab), &Device::Cpu).unwrap();
        let ids = [40, 3, 17, 9, 0, 1000];
        let noise = GumbelNoise { key: 0x1234_5678_9abc, temperature: 0.7 };
        let picks = gumbel_pick(&t, &ids, noise, Accumulate::F64).unwrap();
        let stats = confidence_stats(&t, Accumulate::F64).unwrap();
        for (r, p) in picks.iter().enumerate() {
            let row = &v[r * vocab..(r + 1) * vocab];
            let scores: Vec<f64> = row.iter().enumerate().map(|(i, &l)| l as f64 - 0.7 * (-crate::counter_rng::uniform(noise.key, ids[r], i as u32).ln()).ln()).collect();
            let best = (0..vocab).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
            assert_eq!(p.token as usize, best, "row {r}");
            assert_eq!(p.logit, row[best]);
            assert_eq!(p.stats, stats[r]);
        }
        // another key, another draw somewhere; the same key, the same draw
        let again = gumbel_pick(&t, &ids, noise, Accumulate::F64).unwrap();
        assert_eq!(again, picks);
        let other = gumbel_pick(&t, &ids, GumbelNoise { key: 99, ..noise }, Accumulate::F64).unwrap();
        assert_ne!(other.iter().map(|p| p.token).collect::<Vec<_>>(), picks.iter().map(|p| p.token).collect::<Vec<_>>());
    }

    #[test]
    fn gumbel_pick_samples_the_tempered_softmax() {
        // logits ln 1, ln 2, ln 3: p = 1/6, 2/6, 3/6 at T = 1; at T = 0.5, softmax(2l) = 1/14, 4/14, 9/14
        let row = Tensor::new(&[[0f32, 2f32.ln(), 3f32.ln()]], &Device::Cpu).unwrap();
        for (temperature, want) in [(1.0, [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]), (0.5, [1.0 / 14.0, 4.0 / 14.0, 9.0 / 14.0])] {
            let n = 30_000;
            let mut counts = [0usize; 3];
            for key in 0..n {
                counts[gumbel_pick(&row, &[3], GumbelNoise { key, temperature }, Accumulate::F32).unwrap()[0].token as usize] += 1;
            }
            for (c, w) in counts.iter().zip(want) {
                assert!((*c as f64 / n as f64 - w).abs() < 0.01, "T {temperature}: {counts:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn gumbel_pick_rejects_bad_requests() {
        let t = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let noise = GumbelNoise { key: 1, temperature: 1.0 };
        assert!(gumbel_pick(&t, &[0], noise, Accumulate::F32).is_err());
        assert!(gumbel_pick(&t, &[0, 1], GumbelNoise { temperature: 0.0, ..noise }, Accumulate::F32).is_err());
        assert!(gumbel_pick(&t, &[0, 1], noise, Accumulate::F32).is_ok());
    }

    /// The Gumbel kernel's CUDA twin: the same Philox noise, so the same tokens.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_twin_gumbel_pick_matches_the_cpu_kernel() {
        let Some(dev) = crate::test_util::cuda_device() else { return };
        for (rows, vocab) in [(1, 1), (3, 5), (4, 257), (3, 4099), (2, 126_464), (2, 152_064)] {
            let cpu = Tensor::from_vec(random_rows(rows, vocab, 21 + vocab as u64), (rows, vocab), &Device::Cpu).unwrap();
            let ids: Vec<u32> = (0..rows as u32).map(|r| 7 * r + 1).collect();
            for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-2), (DType::BF16, 1e-2)] {
                let x = cpu.to_dtype(dtype).unwrap();
                for (acc, temperature) in [(Accumulate::F32, 1.0), (Accumulate::F64, 0.3)] {
                    let noise = GumbelNoise { key: 0xfeed_0000 + vocab as u64, temperature };
                    let want = gumbel_pick(&x, &ids, noise, acc).unwrap();
                    let got = gumbel_pick(&x.to_device(&dev).unwrap(), &ids, noise, acc).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        let close = |a: f64, b: f64| (a - b).abs() <= tol * b.abs().max(1e-30) || (a.is_nan() && b.is_nan());
                        assert_eq!((g.token, g.logit.to_bits()), (w.token, w.logit.to_bits()), "{rows}x{vocab} {dtype:?} {acc:?}");
                        assert_eq!(g.stats.argmax, w.stats.argmax);
                        assert!(close(g.stats.p1, w.stats.p1) && close(g.stats.neg_entropy, w.stats.neg_entropy), "{g:?} vs {w:?}");
                    }
                }
            }
        }
    }

    /// The CUDA twin against the CPU kernel on fresh random rows of several shapes (odd
    /// vocabularies, one past a block, a Qwen-sized one), with ties and `-inf` entries.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_twin_matches_the_cpu_kernel() {
        let Some(dev) = crate::test_util::cuda_device() else { return };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (rows, vocab) in [(1, 1), (3, 5), (4, 257), (2, 4099), (2, 152_064)] {
            let mut data: Vec<f32> = (0..rows * vocab).map(|_| rng.random_range(-8.0f32..8.0)).collect();
            if vocab > 4 {
                data[1] = f32::NEG_INFINITY;
                data[3] = data[2]; // a tie
            }
            let cpu = Tensor::from_vec(data, (rows, vocab), &Device::Cpu).unwrap();
            for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-2), (DType::BF16, 1e-2)] {
                let x = cpu.to_dtype(dtype).unwrap();
                for acc in [Accumulate::F32, Accumulate::F64] {
                    let want = confidence_stats(&x, acc).unwrap();
                    let got = confidence_stats(&x.to_device(&dev).unwrap(), acc).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        let close = |a: f64, b: f64| (a - b).abs() <= tol * b.abs().max(1e-30) || (a.is_nan() && b.is_nan());
                        assert_eq!(g.argmax, w.argmax, "{rows}x{vocab} {dtype:?} {acc:?}");
                        assert!(close(g.p1, w.p1) && close(g.p2, w.p2) && close(g.sum_exp, w.sum_exp) && close(g.neg_entropy, w.neg_entropy), "{rows}x{vocab} {dtype:?} {acc:?}: {g:?} vs {w:?}");
                    }
                }
            }
        }
    }
}
