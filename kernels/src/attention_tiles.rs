//! Register-tiled attention for one head, with the queries in the vector lanes: an
//! AVX-512 copy (32 queries per block, 12-key score tiles, 8-column value tiles: 24 and 16
//! of its 32 registers) and an AVX2 + FMA copy (16 queries, 6-key and 6-column tiles: 12
//! of its 16 registers), one generic body over the lane width.
//!
//! SD's self-attention has 40- or 80-wide heads over 4096 keys. Calling a general gemm for
//! `q kᵀ` (inner size 40) and `p v` (40 output columns) repacked the whole key and value
//! matrix for every block of 32 queries and ran at ~85 GFLOP/s. Here a block of queries
//! is transposed once to `[d][QB]`, so two vector registers hold one input dimension of
//! all of them: the scores of KT keys are 2·KT accumulators fed by broadcast key values,
//! and the output of DT value columns is 2·DT accumulators fed by broadcast value entries.
//! Keys and values are re-laid once per head so every broadcast is at a fixed offset, and
//! the scores, stored key-major `[nk][QB]`, get their softmax with plain vertical vector
//! operations.

// Every function here is a SIMD kernel whose whole body works on raw pointers under the
// contract stated on `head`.
#![allow(unsafe_op_in_unsafe_fn)]

use crate::simd::{Avx2, Avx512, Lanes};

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

/// Whether [`head`] can run here (AVX-512, or AVX2 + FMA).
pub(crate) fn available() -> bool {
    crate::fastmath::has_avx2_fma()
}

/// `softmax(q kᵀ * scale + key_bias) v` for one head, written to `out` (row `i` at
/// `out + i * out_rs`, `d` values), with the widest copy the CPU runs.
///
/// # Safety
/// [`available`] must be true; `out` must be valid for writes of `nq` rows of `d` floats
/// `out_rs` apart that no one else touches meanwhile; the slices in `h` must hold their
/// `n` rows (`(n - 1) * rs + d` floats).
pub(crate) unsafe fn head(h: &Head, out: *mut f32, out_rs: usize) {
    if crate::fastmath::has_avx512() {
        head_avx512(h, out, out_rs)
    } else {
        head_avx2(h, out, out_rs)
    }
}

/// 32 queries per block; a chunk of 252 keys keeps its scores (32 KiB) in L1.
#[target_feature(enable = "avx512f")]
unsafe fn head_avx512(h: &Head, out: *mut f32, out_rs: usize) {
    head_tiled::<Avx512, 32, 12, 8>(h, out, out_rs, 12 * 21)
}

/// 16 queries per block; a chunk of 504 keys keeps its scores (32 KiB) in L1.
#[target_feature(enable = "avx2,fma")]
unsafe fn head_avx2(h: &Head, out: *mut f32, out_rs: usize) {
    head_tiled::<Avx2, 16, 6, 6>(h, out, out_rs, 6 * 84)
}

/// The tiled head for `L`'s registers: QB queries per block (two registers), KT keys per
/// score tile, DT value columns per output tile, CHUNK keys per online-softmax chunk.
#[inline(always)]
unsafe fn head_tiled<L: Lanes, const QB: usize, const KT: usize, const DT: usize>(h: &Head, out: *mut f32, out_rs: usize, chunk: usize) {
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
    let mut scores = vec![0f32; chunk * QB];
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
        for c0 in (0..nk).step_by(chunk) {
            let n = chunk.min(nk - c0);
            for t in 0..n.div_ceil(KT) {
                let tile = c0 / KT + t;
                score_tile::<L, QB, KT>(qt.as_ptr(), kp.as_ptr().add(tile * KT * d), d, scores.as_mut_ptr().add(t * KT * QB));
            }
            let scores = &mut scores[..n * QB];
            if let Some(bias) = key_bias {
                for (row, &b) in scores.chunks_exact_mut(QB).zip(&bias[c0..c0 + n]) {
                    row.iter_mut().for_each(|s| *s += b);
                }
            }
            let rescale = softmax_chunk::<QB>(scores, &mut max, &mut sum);
            for t in 0..dtiles {
                value_tile::<L, QB, DT>(scores.as_ptr(), vp.as_ptr().add((t * nk + c0) * DT), n, &rescale, acc.as_mut_ptr().add(t * DT * QB));
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
#[inline(always)]
unsafe fn score_tile<L: Lanes, const QB: usize, const KT: usize>(qt: *const f32, kp: *const f32, d: usize, st: *mut f32) {
    let half = QB / 2;
    let mut acc = [[L::zero(); 2]; KT];
    for j in 0..d {
        let q0 = L::load(qt.add(j * QB));
        let q1 = L::load(qt.add(j * QB + half));
        let kj = kp.add(j * KT);
        for (i, a) in acc.iter_mut().enumerate() {
            let kv = L::splat(*kj.add(i));
            a[0] = L::fmadd(kv, q0, a[0]);
            a[1] = L::fmadd(kv, q1, a[1]);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        L::store(st.add(i * QB), a[0]);
        L::store(st.add(i * QB + half), a[1]);
    }
}

/// DT running output columns for the QB queries, rescaled then accumulated over `n` keys:
/// `acc[i][r] = acc[i][r] * rescale[r] + sum_key p[key][r] * vp[key][i]`.
#[inline(always)]
unsafe fn value_tile<L: Lanes, const QB: usize, const DT: usize>(p: *const f32, vp: *const f32, n: usize, rescale: &[f32; QB], acc_mem: *mut f32) {
    let half = QB / 2;
    let (s0, s1) = (L::load(rescale.as_ptr()), L::load(rescale.as_ptr().add(half)));
    let mut acc = [[L::zero(); 2]; DT];
    for (i, a) in acc.iter_mut().enumerate() {
        a[0] = L::mul(L::load(acc_mem.add(i * QB)), s0);
        a[1] = L::mul(L::load(acc_mem.add(i * QB + half)), s1);
    }
    for key in 0..n {
        let p0 = L::load(p.add(key * QB));
        let p1 = L::load(p.add(key * QB + half));
        let vk = vp.add(key * DT);
        for (i, a) in acc.iter_mut().enumerate() {
            let vv = L::splat(*vk.add(i));
            a[0] = L::fmadd(vv, p0, a[0]);
            a[1] = L::fmadd(vv, p1, a[1]);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        L::store(acc_mem.add(i * QB), a[0]);
        L::store(acc_mem.add(i * QB + half), a[1]);
    }
}

/// Online softmax step down each of the QB columns of a chunk of key-major scores
/// `[n][QB]`: raises the running `max`, replaces the scores by `e^(s - max)`, updates the
/// running `sum`, and returns the factor `e^(old max - new max)` that earlier sums need.
#[inline(always)]
unsafe fn softmax_chunk<const QB: usize>(scores: &mut [f32], max: &mut [f32; QB], sum: &mut [f32; QB]) -> [f32; QB] {
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
