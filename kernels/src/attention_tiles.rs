//! Register-tiled attention for one head on AVX-512, with the queries in the vector lanes.
//!
//! SD's self-attention has 40- or 80-wide heads over 4096 keys. Calling a general gemm for
//! `q kᵀ` (inner size 40) and `p v` (40 output columns) repacked the whole key and value
//! matrix for every block of 32 queries and ran at ~85 GFLOP/s. Here a block of 32 queries
//! is transposed once to `[d][32]`, so two vector registers hold one input dimension of all
//! 32 queries: the scores of 12 keys are 24 accumulators fed by broadcast key values, and
//! the output of 8 value columns is 16 accumulators fed by broadcast value entries. Keys
//! and values are re-laid once per head so every broadcast is at a fixed offset, and the
//! scores, stored key-major `[nk][32]`, get their softmax with plain vertical vector
//! operations.

// Every function here is an AVX-512 kernel whose whole body works on raw pointers under
// the contract stated on `head`.
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Queries per block: two 16-lane registers.
const QB: usize = 32;
/// Keys per score tile (24 accumulators).
const KT: usize = 12;
/// Value columns per output tile (16 accumulators).
const DT: usize = 8;
/// Keys per chunk of the online softmax: its scores (32 KiB) stay in L1.
const CHUNK: usize = KT * 21;

/// One (item, head) pair: `q` rows `q_rs` apart, `k` / `v` rows `kv_rs` apart, each row
/// `d` wide; the output rows are `out_rs` apart.
pub(crate) struct Head<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub q_rs: usize,
    pub kv_rs: usize,
    pub nq: usize,
    pub nk: usize,
    pub d: usize,
    pub key_bias: Option<&'a [f32]>,
    pub scale: f32,
}

/// Whether [`head`] can run here.
pub(crate) fn available() -> bool {
    crate::fastmath::has_avx512()
}

/// `softmax(q kᵀ * scale + key_bias) v` for one head, written to `out` (row `i` at
/// `out + i * out_rs`, `d` values).
///
/// # Safety
/// AVX-512F must be available ([`available`]); `out` must be valid for writes of `nq`
/// rows of `d` floats `out_rs` apart that no one else touches meanwhile; the slices in
/// `h` must hold their `n` rows (`(n - 1) * rs + d` floats).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn head(h: &Head, out: *mut f32, out_rs: usize) {
    let Head { q, k, v, q_rs, kv_rs, nq, nk, d, key_bias, scale } = *h;
    if nk == 0 {
        for i in 0..nq {
            std::ptr::write_bytes(out.add(i * out_rs), 0, d);
        }
        return;
    }
    let tiles = nk.div_ceil(KT);
    let dtiles = d.div_ceil(DT);
    // keys as [tile][j][i] (zero keys pad the last tile), values as [dtile][key][i]
    let mut kp = vec![0f32; tiles * KT * d];
    for key in 0..nk {
        let (t, i) = (key / KT, key % KT);
        for j in 0..d {
            kp[(t * d + j) * KT + i] = k[key * kv_rs + j];
        }
    }
    let mut vp = vec![0f32; dtiles * nk * DT];
    for key in 0..nk {
        for j in 0..d {
            vp[((j / DT) * nk + key) * DT + j % DT] = v[key * kv_rs + j];
        }
    }
    let mut qt = vec![0f32; d * QB];
    let mut scores = vec![0f32; CHUNK * QB];
    // running output sums `[dtile][DT][QB]`, rescaled whenever a chunk raises a column's max
    let mut acc = vec![0f32; dtiles * DT * QB];
    for q0 in (0..nq).step_by(QB) {
        let rows = QB.min(nq - q0);
        // rows outer: the query rows are often a whole model width apart, and walking down
        // a column of them thrashed one cache set
        for r in 0..QB {
            let row = (r < rows).then(|| &q[(q0 + r) * q_rs..][..d]);
            for j in 0..d {
                qt[j * QB + r] = row.map_or(0.0, |row| row[j] * scale);
            }
        }
        acc.fill(0.0);
        let mut max = [f32::NEG_INFINITY; QB];
        let mut sum = [0f32; QB];
        for c0 in (0..nk).step_by(CHUNK) {
            let n = CHUNK.min(nk - c0);
            for t in 0..n.div_ceil(KT) {
                let tile = c0 / KT + t;
                score_tile(qt.as_ptr(), kp.as_ptr().add(tile * KT * d), d, scores.as_mut_ptr().add(t * KT * QB));
            }
            let scores = &mut scores[..n * QB];
            if let Some(bias) = key_bias {
                for (row, &b) in scores.chunks_exact_mut(QB).zip(&bias[c0..c0 + n]) {
                    row.iter_mut().for_each(|s| *s += b);
                }
            }
            let rescale = softmax_chunk(scores, &mut max, &mut sum);
            for t in 0..dtiles {
                value_tile(scores.as_ptr(), vp.as_ptr().add((t * nk + c0) * DT), n, &rescale, acc.as_mut_ptr().add(t * DT * QB));
            }
        }
        let inv = sum.map(|s| 1.0 / s);
        for (r, &inv) in inv.iter().enumerate().take(rows) {
            let dst = std::slice::from_raw_parts_mut(out.add((q0 + r) * out_rs), d);
            for (j, o) in dst.iter_mut().enumerate() {
                *o = acc[j * QB + r] * inv;
            }
        }
    }
}

/// Scores of KT keys for the QB queries: `st[i][r] = sum_j kp[j][i] * qt[j][r]`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn score_tile(qt: *const f32, kp: *const f32, d: usize, st: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; KT];
    for j in 0..d {
        let q0 = _mm512_loadu_ps(qt.add(j * QB));
        let q1 = _mm512_loadu_ps(qt.add(j * QB + 16));
        let kj = kp.add(j * KT);
        for (i, a) in acc.iter_mut().enumerate() {
            let kv = _mm512_set1_ps(*kj.add(i));
            a[0] = _mm512_fmadd_ps(kv, q0, a[0]);
            a[1] = _mm512_fmadd_ps(kv, q1, a[1]);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(st.add(i * QB), a[0]);
        _mm512_storeu_ps(st.add(i * QB + 16), a[1]);
    }
}

/// DT running output columns for the QB queries, rescaled then accumulated over `n` keys:
/// `acc[i][r] = acc[i][r] * rescale[r] + sum_key p[key][r] * vp[key][i]`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn value_tile(p: *const f32, vp: *const f32, n: usize, rescale: &[f32; QB], acc_mem: *mut f32) {
    let (s0, s1) = (_mm512_loadu_ps(rescale.as_ptr()), _mm512_loadu_ps(rescale.as_ptr().add(16)));
    let mut acc = [[_mm512_setzero_ps(); 2]; DT];
    for (i, a) in acc.iter_mut().enumerate() {
        a[0] = _mm512_mul_ps(_mm512_loadu_ps(acc_mem.add(i * QB)), s0);
        a[1] = _mm512_mul_ps(_mm512_loadu_ps(acc_mem.add(i * QB + 16)), s1);
    }
    for key in 0..n {
        let p0 = _mm512_loadu_ps(p.add(key * QB));
        let p1 = _mm512_loadu_ps(p.add(key * QB + 16));
        let vk = vp.add(key * DT);
        for (i, a) in acc.iter_mut().enumerate() {
            let vv = _mm512_set1_ps(*vk.add(i));
            a[0] = _mm512_fmadd_ps(vv, p0, a[0]);
            a[1] = _mm512_fmadd_ps(vv, p1, a[1]);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(acc_mem.add(i * QB), a[0]);
        _mm512_storeu_ps(acc_mem.add(i * QB + 16), a[1]);
    }
}

/// Online softmax step down each of the QB columns of a chunk of key-major scores
/// `[n][QB]`: raises the running `max`, replaces the scores by `e^(s - max)`, updates the
/// running `sum`, and returns the factor `e^(old max - new max)` that earlier sums need.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_chunk(scores: &mut [f32], max: &mut [f32; QB], sum: &mut [f32; QB]) -> [f32; QB] {
    let mut new_max = *max;
    for row in scores.chunks_exact(QB) {
        for (m, &s) in new_max.iter_mut().zip(row) {
            *m = if s > *m { s } else { *m };
        }
    }
    let mut rescale = [0f32; QB];
    for r in 0..QB {
        // the first chunk: the old max is -inf and so are its (empty) sums
        rescale[r] = if max[r] == f32::NEG_INFINITY { 0.0 } else { crate::fastmath::exp(max[r] - new_max[r]) };
        sum[r] *= rescale[r];
    }
    for row in scores.chunks_exact_mut(QB) {
        for ((s, &m), acc) in row.iter_mut().zip(&new_max).zip(sum.iter_mut()) {
            *s = crate::fastmath::exp(*s - m);
            *acc += *s;
        }
    }
    *max = new_max;
    rescale
}
