//! Bidirectional scaled-dot-product attention, fused on the CPU.
//!
//! With candle ops, attention over a short canvas is a dozen small batched matmuls plus a
//! softmax and two layout copies, and it ran at ~40 GFLOP/s. Here each (batch, head) pair
//! is one rayon task that runs two single-threaded gemm calls (scores, then weighted
//! values) around an in-place softmax, reads grouped key/value heads without repeating
//! them, and writes its output straight into the merged-heads layout the output
//! projection wants.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// `softmax(q kᵀ * scale + key_bias) v` with heads merged: `q` `[b, hq, nq, d]`,
/// `k`, `v` `[b, hkv, nk, d]` (`hq` a multiple of `hkv`), `key_bias` `[b, nk]` added to
/// every query's scores (0 to attend, a large negative to ignore). Returns
/// `[b, nq, hq * d]` in `q`'s dtype.
///
/// CPU tensors run the fused kernel (f16 / bf16 inputs are computed in f32); other
/// devices use [`attention_unfused`] until the CUDA twin exists.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let (b, hq, nq, d) = q.dims4()?;
    let (bk, hkv, nk, dk) = k.dims4()?;
    if bk != b || dk != d || v.dims4()? != (b, hkv, nk, d) || hkv == 0 || hq % hkv != 0 {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} do not fit",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    if let Some(kb) = key_bias
        && kb.dims2()? != (b, nk)
    {
        candle_core::bail!("attention: key bias {:?}, expected [{b}, {nk}]", kb.shape());
    }
    if !q.device().is_cpu() {
        return attention_unfused(q, k, v, key_bias, scale);
    }
    let dtype = q.dtype();
    let f32s = |t: &Tensor| -> Result<Vec<f32>> {
        t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
    };
    let (qs, ks, vs) = (f32s(q)?, f32s(k)?, f32s(v)?);
    let bias = match key_bias {
        Some(kb) => Some(f32s(kb)?),
        None => None,
    };
    let groups = hq / hkv;
    let width = hq * d;
    let mut out = vec![0f32; b * nq * width];
    let out_ptr = SendPtr(out.as_mut_ptr());
    // Queries go in blocks whose score rows stay in cache (~512 KiB) between the two gemms:
    // with 4096 keys (a 64x64 latent) a whole score matrix is 64 MiB per head, and
    // softmax passes over it ran at memory speed.
    let sbf: usize = std::env::var("SBF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SCORE_BLOCK_FLOATS);
    let block = (sbf / nk.max(1)).clamp(1, nq.max(1));
    (0..b * hq).into_par_iter().for_each(|task| {
        let (bi, h) = (task / hq, task % hq);
        let kvh = h / groups;
        let qh = &qs[(bi * hq + h) * nq * d..][..nq * d];
        let kh = &ks[(bi * hkv + kvh) * nk * d..][..nk * d];
        let vh = &vs[(bi * hkv + kvh) * nk * d..][..nk * d];
        let kb = bias.as_ref().map(|bv| &bv[bi * nk..(bi + 1) * nk]);
        let mut scores = vec![0f32; block * nk];
        let mut inv_sums = vec![0f32; block];
        for q0 in (0..nq).step_by(block) {
            let rows = block.min(nq - q0);
            let scores = &mut scores[..rows * nk];
            // Safety: every pointer/stride pair stays inside its slice (row-major layouts
            // above); each task writes a disjoint column block of `out`.
            unsafe {
                gemm::gemm(
                    rows,
                    nk,
                    d,
                    scores.as_mut_ptr(),
                    1,
                    nk as isize,
                    false,
                    qh.as_ptr().add(q0 * d),
                    1,
                    d as isize,
                    kh.as_ptr(),
                    d as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
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
                let dst = dst.0.add(bi * nq * width + q0 * width + h * d);
                gemm::gemm(
                    rows,
                    d,
                    nk,
                    dst,
                    1,
                    width as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    nk as isize,
                    vh.as_ptr(),
                    1,
                    d as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
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
    });
    Tensor::from_vec(out, (b, nq, width), &Device::Cpu)?.to_dtype(dtype)
}

/// Score floats per query block (512 KiB of f32).
const SCORE_BLOCK_FLOATS: usize = 128 * 1024;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// Safety: tasks write disjoint regions (see `attention`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

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
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{b} {hq} {hkv} {nq} {nk} {d}: {diff}");
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
