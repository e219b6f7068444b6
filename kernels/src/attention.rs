//! Bidirectional scaled-dot-product attention, fused on the CPU.
//!
//! With candle ops, attention over a short canvas is a dozen small batched matmuls plus a
//! softmax and two layout copies, and it ran at ~40 GFLOP/s. Here each (batch, head) pair
//! is one rayon task that runs two single-threaded gemm calls (scores, then weighted
//! values) around an in-place softmax, reads grouped key/value heads without repeating
//! them, and writes its output straight into the merged-heads layout the output
//! projection wants.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use crate::cpu::SendPtr;

/// `softmax(q kᵀ * scale + key_bias) v` with heads merged: `q` `[b, hq, nq, d]`,
/// `k`, `v` `[b, hkv, nk, d]` (`hq` a multiple of `hkv`), `key_bias` `[b, nk]` added to
/// every query's scores (0 to attend, a large negative to ignore). Returns
/// `[b, nq, hq * d]` in `q`'s dtype.
///
/// CPU tensors run the fused kernel (f16 / bf16 inputs are computed in f32); other
/// devices use [`attention_unfused`] until the CUDA twin exists.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, key_bias: Option<&Tensor>, scale: f32) -> Result<Tensor> {
    let (b, hq, nq, d) = q.dims4()?;
    let (bk, hkv, nk, dk) = k.dims4()?;
    if bk != b || dk != d || v.dims4()? != (b, hkv, nk, d) || hkv == 0 || hq % hkv != 0 {
        candle_core::bail!("attention: q {:?}, k {:?}, v {:?} do not fit", q.shape(), k.shape(), v.shape());
    }
    check_bias(key_bias, b, nk)?;
    if !q.device().is_cpu() || crate::tracks_grad(&[q, k, v]) {
        return attention_unfused(q, k, v, key_bias, scale);
    }
    let shape = Shape { b, hq, hkv, nq, nk, d };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    fused(&q, &k, &v, key_bias, scale, shape, Layout::HeadsFirst, Path::fastest(d, nq))
}

/// The same for projections still in their merged-heads layout: `q` `[b, nq, hq * d]`,
/// `k`, `v` `[b, nk, hkv * d]`; heads are read in place with strides, so the three
/// head-splitting transposes (and their copies) disappear.
pub fn attention_merged(q: &Tensor, k: &Tensor, v: &Tensor, hq: usize, hkv: usize, key_bias: Option<&Tensor>, scale: f32) -> Result<Tensor> {
    let (b, nq, wq) = q.dims3()?;
    let (bk, nk, wk) = k.dims3()?;
    if hq == 0 || hkv == 0 || wq % hq != 0 || hq % hkv != 0 || bk != b || wk != hkv * (wq / hq) || v.dims3()? != (b, nk, wk) {
        candle_core::bail!("attention: q {:?}, k {:?}, v {:?} do not fit {hq} / {hkv} heads", q.shape(), k.shape(), v.shape());
    }
    let d = wq / hq;
    check_bias(key_bias, b, nk)?;
    if !q.device().is_cpu() || crate::tracks_grad(&[q, k, v]) {
        let split = |t: &Tensor, h: usize, n: usize| t.reshape((b, n, h, d))?.transpose(1, 2)?.contiguous();
        return attention_unfused(&split(q, hq, nq)?, &split(k, hkv, nk)?, &split(v, hkv, nk)?, key_bias, scale);
    }
    let shape = Shape { b, hq, hkv, nq, nk, d };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    fused(&q, &k, &v, key_bias, scale, shape, Layout::Merged, Path::fastest(d, nq))
}

/// How one head is computed.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Path {
    /// Register tiles with the queries in the vector lanes (AVX-512).
    Tiles,
    /// Two gemm calls per block of queries (any CPU).
    Gemm,
}

impl Path {
    /// Tiles for narrow heads over many queries (SD's 40- and 64-wide heads: 1.8x the gemm
    /// path at 4096 tokens); gemm for wide heads (text models' 128) and short sequences,
    /// where repacking keys and values per head does not pay off.
    fn fastest(d: usize, nq: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if crate::attention_tiles::available() && d <= 64 && nq >= 128 {
            return Path::Tiles;
        }
        Path::Gemm
    }
}

fn check_bias(key_bias: Option<&Tensor>, b: usize, nk: usize) -> Result<()> {
    if let Some(kb) = key_bias
        && kb.dims2()? != (b, nk)
    {
        candle_core::bail!("attention: key bias {:?}, expected [{b}, {nk}]", kb.shape());
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    hq: usize,
    hkv: usize,
    nq: usize,
    nk: usize,
    d: usize,
}

/// Where row `i` of head `h` of item `bi` starts, and the stride between rows.
#[derive(Clone, Copy)]
enum Layout {
    /// `[b, h, n, d]`.
    HeadsFirst,
    /// `[b, n, h * d]`.
    Merged,
}

impl Layout {
    fn offset(self, bi: usize, h: usize, heads: usize, n: usize, d: usize) -> usize {
        match self {
            Layout::HeadsFirst => (bi * heads + h) * n * d,
            Layout::Merged => bi * n * heads * d + h * d,
        }
    }

    fn row_stride(self, heads: usize, d: usize) -> usize {
        match self {
            Layout::HeadsFirst => d,
            Layout::Merged => heads * d,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fused(q: &Tensor, k: &Tensor, v: &Tensor, key_bias: Option<&Tensor>, scale: f32, s: Shape, layout: Layout, path: Path) -> Result<Tensor> {
    let Shape { b, hq, hkv, nq, nk, d } = s;
    let dtype = q.dtype();
    let bias = match key_bias {
        Some(kb) => Some(kb.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    let groups = hq / hkv;
    let width = hq * d;
    let (q_rs, kv_rs) = (layout.row_stride(hq, d), layout.row_stride(hkv, d));
    let mut out = crate::cpu::par_zeroed(b * nq * width);
    let out_ptr = SendPtr(out.as_mut_ptr());
    // Queries go in blocks whose score rows stay in cache (~512 KiB) between the two gemms:
    // with 4096 keys (a 64x64 latent) a whole score matrix is 64 MiB per head, and
    // softmax passes over it ran at memory speed.
    let block = (SCORE_BLOCK_FLOATS / nk.max(1)).clamp(1, nq.max(1));
    crate::cpu::with_f32(q, |qs| {
        crate::cpu::with_f32(k, |ks| {
            crate::cpu::with_f32(v, |vs| {
                (0..b * hq).into_par_iter().for_each(|task| {
                    let (bi, h) = (task / hq, task % hq);
                    let kvh = h / groups;
                    let qh = &qs[layout.offset(bi, h, hq, nq, d)..];
                    let kh = &ks[layout.offset(bi, kvh, hkv, nk, d)..];
                    let vh = &vs[layout.offset(bi, kvh, hkv, nk, d)..];
                    let kb = bias.as_ref().map(|bv| &bv[bi * nk..(bi + 1) * nk]);
                    #[cfg(target_arch = "x86_64")]
                    if path == Path::Tiles {
                        let head = crate::attention_tiles::Head {
                            q: qh, k: kh, v: vh, q_rs, kv_rs, nq, nk, d, key_bias: kb, scale,
                        };
                        // Safety: `Tiles` is only chosen when the tiles can run (AVX-512 or AVX2 + FMA); each task
                        // writes its own head's columns of `out`.
                        unsafe {
                            crate::attention_tiles::head(&head, out_ptr.get().add(bi * nq * width + h * d), width);
                        }
                        return;
                    }
                    let mut scores = vec![0f32; block * nk];
                    let mut inv_sums = vec![0f32; block];
                    for q0 in (0..nq).step_by(block) {
                        let rows = block.min(nq - q0);
                        let scores = &mut scores[..rows * nk];
                        // Safety: every pointer/stride pair stays inside its slice (the
                        // layouts above: the last row of a head ends at offset
                        // (n - 1) * row_stride + d); each task writes a disjoint column
                        // block of `out`.
                        unsafe {
                            gemm::gemm(
                                rows, nk, d,
                                scores.as_mut_ptr(), 1, nk as isize, false,
                                qh.as_ptr().add(q0 * q_rs), 1, q_rs as isize,
                                kh.as_ptr(), kv_rs as isize, 1,
                                0.0, scale,
                                false, false, false,
                                gemm::Parallelism::None,
                            );
                        }
                        for (row, inv) in scores.chunks_mut(nk).zip(inv_sums.iter_mut()) {
                            if let Some(kb) = kb {
                                for (s, &x) in row.iter_mut().zip(kb) {
                                    *s += x;
                                }
                            }
                            let max = crate::fastmath::max(row);
                            *inv = 1.0 / crate::fastmath::exp_sub_sum(row, max);
                        }
                        let dst = out_ptr;
                        unsafe {
                            let dst = dst.get().add(bi * nq * width + q0 * width + h * d);
                            gemm::gemm(
                                rows, d, nk,
                                dst, 1, width as isize, false,
                                scores.as_ptr(), 1, nk as isize,
                                vh.as_ptr(), 1, kv_rs as isize,
                                0.0, 1.0,
                                false, false, false,
                                gemm::Parallelism::None,
                            );
                            // normalise the d outputs of each row instead of its nk probabilities
                            for (r, &inv) in inv_sums[..rows].iter().enumerate() {
                                for x in std::slice::from_raw_parts_mut(dst.add(r * width), d) {
                                    *x *= inv;
                                }
                            }
                        }
                    }
                })
            })
        })
    })???;
    crate::cpu::from_f32(out, &(b, nq, width).into(), dtype)
}

/// Score floats per query block (512 KiB of f32).
const SCORE_BLOCK_FLOATS: usize = 128 * 1024;

/// The same with candle ops (any device; the reference for the fused kernel).
pub fn attention_unfused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let (b, hq, nq, d) = q.dims4()?;
    let (_, hkv, nk, _) = k.dims4()?;
    let repeat = |x: &Tensor| -> Result<Tensor> {
        if hq == hkv {
            return Ok(x.clone());
        }
        x.unsqueeze(2)?
            .expand((b, hkv, hq / hkv, nk, d))?
            .reshape((b, hq, nk, d))
    };
    let (k, v) = (repeat(k)?, repeat(v)?);
    let mut att = (q.matmul(&k.t()?)? * scale as f64)?;
    if let Some(kb) = key_bias {
        att = att.broadcast_add(&kb.to_dtype(att.dtype())?.reshape((b, 1, 1, nk))?)?;
    }
    let att = candle_core::Tensor::exp(&att.broadcast_sub(&att.max_keepdim(3)?)?)?;
    let att = att.broadcast_div(&att.sum_keepdim(3)?)?;
    att.matmul(&v)?.transpose(1, 2)?.reshape((b, nq, hq * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn merged_layout_matches() {
        let dev = Device::Cpu;
        let (b, hq, hkv, nq, nk, d) = (2, 4, 2, 9, 300, 8);
        let q = Tensor::randn(0f32, 1.0, (b, nq, hq * d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, nk, hkv * d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, nk, hkv * d), &dev).unwrap();
        let got = attention_merged(&q, &k, &v, hq, hkv, None, 0.4).unwrap();
        let split = |t: &Tensor, h: usize, n: usize| t.reshape((b, n, h, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let want = attention_unfused(&split(&q, hq, nq), &split(&k, hkv, nk), &split(&v, hkv, nk), None, 0.4).unwrap();
        let diff = crate::test_util::max_abs_diff(&got, &want);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn fused_matches_unfused() {
        let dev = Device::Cpu;
        for (b, hq, hkv, nq, nk, d, masked) in [
            (1, 4, 4, 7, 7, 16, false),
            (2, 6, 2, 5, 9, 8, true),
            (1, 2, 1, 1, 33, 64, true),
            (1, 2, 2, 300, 1000, 8, true),
        ] {
            let q = Tensor::randn(0f32, 1.0, (b, hq, nq, d), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, hkv, nk, d), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, hkv, nk, d), &dev).unwrap();
            let bias = masked.then(|| {
                let m: Vec<f32> = (0..b * nk)
                    .map(|i| if i % 3 == 0 { -1e30 } else { 0.0 })
                    .collect();
                Tensor::from_vec(m, (b, nk), &dev).unwrap()
            });
            let got = attention(&q, &k, &v, bias.as_ref(), 0.3).unwrap();
            let want = attention_unfused(&q, &k, &v, bias.as_ref(), 0.3).unwrap();
            assert_eq!(got.dims(), &[b, nq, hq * d]);
            let diff = crate::test_util::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "{b} {hq} {hkv} {nq} {nk} {d}: {diff}");
        }
    }

    #[test]
    fn both_paths_match_unfused() {
        let dev = Device::Cpu;
        let mut paths = vec![Path::Gemm];
        if Path::fastest(40, 4096) == Path::Tiles {
            paths.push(Path::Tiles);
        }
        // SD's 40-wide heads, key counts across the online-softmax chunks and not a
        // multiple of the tiles, partial query blocks, widths not a multiple of 8
        for (b, hq, hkv, nq, nk, d, masked) in [
            (2, 2, 2, 70, 600, 40, false),
            (1, 4, 2, 33, 253, 40, true),
            (1, 1, 1, 5, 77, 12, true),
            (1, 2, 1, 40, 1, 80, false),
        ] {
            use crate::test_util::seeded_randn;
            let q = seeded_randn(&[b, nq, hq * d], 1);
            let k = (seeded_randn(&[b, nk, hkv * d], 2) * 3.0).unwrap();
            let v = seeded_randn(&[b, nk, hkv * d], 3);
            let bias = masked.then(|| {
                let m: Vec<f32> = (0..b * nk).map(|i| if i % 5 == 1 { -1e30 } else { (i % 7) as f32 * 0.1 }).collect();
                Tensor::from_vec(m, (b, nk), &dev).unwrap()
            });
            let split = |t: &Tensor, h: usize, n: usize| t.reshape((b, n, h, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let want = attention_unfused(&split(&q, hq, nq), &split(&k, hkv, nk), &split(&v, hkv, nk), bias.as_ref(), 0.3).unwrap();
            for &path in &paths {
                let shape = Shape { b, hq, hkv, nq, nk, d };
                let got = fused(&q, &k, &v, bias.as_ref(), 0.3, shape, Layout::Merged, path).unwrap();
                let diff = crate::test_util::max_abs_diff(&got, &want);
                assert!(diff < 1e-5, "{path:?} {b} {hq} {hkv} {nq} {nk} {d}: {diff}");
            }
        }
    }

    #[test]
    fn shape_errors() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 3, 4, 8), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 4, 8), DType::F32, &dev).unwrap();
        assert!(attention(&q, &k, &k, None, 1.0).is_err());
    }
}
