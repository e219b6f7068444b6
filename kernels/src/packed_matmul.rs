//! `x Wᵀ` for a weight fixed at load time: `W` (`[out, in]`, the PyTorch layout, or several
//! such matrices stacked along `out`) is packed once into column panels laid out exactly
//! as the register tiles read them, so a call packs nothing.
//!
//! Why: a general gemm packs both operands on every call. For a transformer's projections
//! at a few hundred positions (the 134M LLaDA benchmark: 256 x 768 times 768 x 2304) or a
//! block of 32 (the output head), that packing and its fork/join cost 1.1-2x against this
//! (`stipple bench kernels --only matmul`), and llama.cpp, whose llamafile sgemm does not
//! pack either, decoded the same f32 model 1.6x faster.
//!
//! Layout: panel `p` holds output columns `p·NR .. p·NR + NR` as `[in][NR]` (zeros past
//! `out`), 64-byte aligned. A tile of `MR` input rows times one panel keeps its `MR·NR`
//! sums in registers, reading `NR / lanes` vectors of the panel and broadcasting `MR` input
//! values per step of `in`; the panel is walked in blocks of `KC` steps that stay in cache
//! while every row tile of the input passes over them. Threads split the panels.
//!
//! Runs with AVX-512 (6 x 64 tiles: 24 of 32 registers) or AVX2 + FMA (6 x 16: 12 of 16);
//! [`PackedMatrix::pack`] returns `None` elsewhere, and callers keep their general matmul.

// SIMD kernels over raw pointers, under the contracts stated on each.
#![allow(unsafe_op_in_unsafe_fn)]

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use crate::cpu::SendPtr;

/// One cache line of f32, so panels start on line boundaries.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

/// The register-tile family the panels were packed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tiles {
    Avx512,
    Avx2,
}

impl Tiles {
    fn active() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::fastmath::has_avx512() {
                return Some(Tiles::Avx512);
            }
            if crate::fastmath::has_avx2_fma() {
                return Some(Tiles::Avx2);
            }
        }
        None
    }

    /// Output columns per panel.
    fn nr(self) -> usize {
        match self {
            Tiles::Avx512 => 64,
            Tiles::Avx2 => 16,
        }
    }

    /// Steps of `in` per block of a panel: 64 KiB of it (of 32, 64 and 128 KiB blocks,
    /// 64 and 128 ran fastest; 32 lost ~15% on 4096-wide inputs).
    fn kc(self) -> usize {
        16384 / self.nr()
    }
}

/// Input rows per register tile (both paths).
const MR: usize = 6;

/// Inputs taller than this (an image's pixels) are cut into blocks of rows, run in
/// parallel, so a block of the input stays in cache while every panel passes over it.
const ROW_BLOCK: usize = 384;

/// A weight matrix packed for [`PackedMatrix::matmul`].
pub struct PackedMatrix {
    lines: Vec<Line>,
    /// Input features (`in`).
    k: usize,
    /// Output features (`out`).
    n: usize,
    tiles: Tiles,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({} x {}, {:?})", self.n, self.k, self.tiles)
    }
}


impl PackedMatrix {
    /// Whether packed matmul runs on this CPU (AVX-512, or AVX2 + FMA, as
    /// [`crate::cpu_features::active`] allows).
    pub fn available() -> bool {
        Tiles::active().is_some()
    }

    /// Packs the matrices `parts`, each `[out_i, k]` row-major, stacked along `out` (so a
    /// fused q|k|v projection is one matrix). `None` where [`PackedMatrix::available`] is
    /// false.
    pub fn pack(parts: &[&[f32]], k: usize) -> Option<Self> {
        let tiles = Tiles::active()?;
        Some(Self::pack_for(tiles, parts, k))
    }

    fn pack_for(tiles: Tiles, parts: &[&[f32]], k: usize) -> Self {
        let nr = tiles.nr();
        // (first output row, rows) of each part
        let mut starts = Vec::with_capacity(parts.len());
        let mut n = 0;
        for p in parts {
            assert_eq!(p.len() % k.max(1), 0, "a part is not a whole number of {k}-wide rows");
            let rows = p.len().checked_div(k).unwrap_or(0);
            starts.push((n, rows));
            n += rows;
        }
        let panels = n.div_ceil(nr);
        let panel_lines = k * nr / 16;
        let mut lines = vec![Line([0.0; 16]); panels * panel_lines];
        if panel_lines > 0 {
            lines.par_chunks_mut(panel_lines).enumerate().for_each(|(p, panel)| {
                // Safety: `Line` is 16 f32 with no padding.
                let dst = unsafe { std::slice::from_raw_parts_mut(panel.as_mut_ptr().cast::<f32>(), panel.len() * 16) };
                for j in 0..nr.min(n - p * nr) {
                    let row = p * nr + j;
                    let part = starts.partition_point(|&(s, _)| s <= row) - 1;
                    let (s, _) = starts[part];
                    let src = &parts[part][(row - s) * k..(row - s + 1) * k];
                    for (kk, &v) in src.iter().enumerate() {
                        dst[kk * nr + j] = v;
                    }
                }
            });
        }
        Self { lines, k, n, tiles }
    }

    /// Packs CPU tensors `[out_i, k]` (any float dtype, widened to f32) stacked along
    /// `out`; `None` where [`PackedMatrix::available`] is false or a tensor is not on the CPU.
    pub fn from_tensors(parts: &[Tensor]) -> Result<Option<Self>> {
        let Some(tiles) = Tiles::active() else { return Ok(None) };
        if parts.iter().any(|t| !t.device().is_cpu()) {
            return Ok(None);
        }
        let mut k = None;
        for t in parts {
            let (_, cols) = t.dims2()?;
            if *k.get_or_insert(cols) != cols {
                candle_core::bail!("packed matmul: parts of different widths ({cols} and {})", k.unwrap_or(0));
            }
        }
        let k = k.unwrap_or(0);
        // borrow contiguous f32 storage; widen anything else into a copy
        let owned = parts
            .iter()
            .map(|t| {
                if t.dtype() == candle_core::DType::F32 && t.is_contiguous() {
                    Ok(None)
                } else {
                    Ok(Some(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let guards: Vec<_> = parts.iter().map(|t| t.storage_and_layout()).collect();
        let slices = guards
            .iter()
            .zip(&owned)
            .map(|((storage, layout), own)| match (own, &**storage, layout.contiguous_offsets()) {
                (Some(v), _, _) => Ok(&v[..]),
                (None, candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((s, e))) => Ok(&v[s..e]),
                _ => candle_core::bail!("packed matmul: expected contiguous f32 CPU storage"),
            })
            .collect::<Result<Vec<&[f32]>>>()?;
        Ok(Some(Self::pack_for(tiles, &slices, k)))
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.k
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.n
    }

    /// Rows `ids` of `W` (`[ids.len(), k]`), read back from the panels: a tied embedding
    /// table then needs no second copy beside the output head. `None` when an id is not
    /// below `out`.
    pub fn rows(&self, ids: &[u32]) -> Option<Vec<f32>> {
        if ids.iter().any(|&t| t as usize >= self.n) {
            return None;
        }
        let (k, nr) = (self.k, self.tiles.nr());
        // Safety: `Line` is 16 f32 with no padding.
        let data = unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.lines.len() * 16) };
        let mut out = vec![0f32; ids.len() * k];
        if k > 0 {
            out.par_chunks_mut(k).zip(ids.par_iter()).for_each(|(row, &t)| {
                let (p, j) = (t as usize / nr, t as usize % nr);
                let panel = &data[p * k * nr..(p + 1) * k * nr];
                for (kk, v) in row.iter_mut().enumerate() {
                    *v = panel[kk * nr + j];
                }
            });
        }
        Some(out)
    }

    /// `x Wᵀ (+ bias)` for `x` `[m, k]` row-major: `[m, n]` row-major. An error when `x`
    /// holds fewer than `m * k` values or `bias` fewer than `n`.
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        if x.len() < m * self.k {
            candle_core::bail!("packed matmul: {} input values, expected {m} rows of {}", x.len(), self.k);
        }
        if bias.is_some_and(|b| b.len() < self.n) {
            candle_core::bail!("packed matmul: a bias shorter than {} outputs", self.n);
        }
        let len = m * self.n;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let blocks = m.div_ceil(ROW_BLOCK);
        // Safety: matmul_into writes every element before anything reads them; the row
        // blocks write disjoint rows.
        unsafe {
            if blocks <= 1 {
                self.matmul_into(x, m, bias, out.as_mut_ptr());
            } else {
                let dst = SendPtr(out.as_mut_ptr());
                (0..blocks).into_par_iter().for_each(|b| {
                    let (r0, rows) = (b * ROW_BLOCK, ROW_BLOCK.min(m - b * ROW_BLOCK));
                    self.matmul_into(&x[r0 * self.k..], rows, bias, dst.get().add(r0 * self.n));
                });
            }
            out.set_len(len);
        }
        Ok(out)
    }

    /// `x Wᵀ (+ bias)` for `x` `[..., k]` (f32 on the CPU, or converted): `[..., n]` f32.
    pub fn forward(&self, x: &Tensor, bias: Option<&[f32]>) -> Result<Tensor> {
        let mut shape = x.dims().to_vec();
        match shape.last_mut() {
            Some(last) if *last == self.k => *last = self.n,
            _ => candle_core::bail!("packed matmul: input {:?} does not end in {}", x.shape(), self.k),
        }
        let m = x.elem_count() / self.k.max(1);
        let y = crate::cpu::with_f32(&x.contiguous()?, |xs| self.matmul(xs, m, bias))??;
        Tensor::from_vec(y, shape, &Device::Cpu)
    }

    /// Writes `[m, n]` at `out`.
    ///
    /// # Safety
    /// `out` must be valid for `m * n` writes; `x` must hold `m * k` values; `bias`, when
    /// given, `n`.
    unsafe fn matmul_into(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: *mut f32) {
        debug_assert!(x.len() >= m * self.k && bias.is_none_or(|b| b.len() >= self.n));
        if m == 0 || self.n == 0 {
            return;
        }
        let nr = self.tiles.nr();
        let panels = self.n.div_ceil(nr);
        let threads = rayon::current_num_threads().clamp(1, panels);
        let per = panels.div_ceil(threads);
        let out = SendPtr(out);
        // panels in groups whose output block (all m rows) stays in L2 across the blocks of k
        let group = ((512 << 10) / 4 / (m * nr)).max(1);
        let job = |t: usize| {
            let mine = t * per..((t + 1) * per).min(panels);
            for g in mine.clone().step_by(group) {
                // Safety: these panels' columns are this thread's alone; bounds as asserted.
                unsafe { self.panels(g..(g + group).min(mine.end), x, m, bias, out.get()) };
            }
        };
        if threads == 1 {
            job(0);
        } else {
            (0..threads).into_par_iter().for_each(job);
        }
    }

    /// Output columns of panels `ps` for all `m` rows, block of `k` by block.
    unsafe fn panels(&self, ps: std::ops::Range<usize>, x: &[f32], m: usize, bias: Option<&[f32]>, out: *mut f32) {
        let (k, n, nr) = (self.k, self.n, self.tiles.nr());
        let mut bias_panels = vec![[0f32; 64]; ps.len()];
        // the last panel may be partial: whole tiles into a scratch block, then its columns
        let last_cols = nr.min(n - (ps.end - 1) * nr);
        let mut scratch = if last_cols < nr { vec![0f32; m * nr] } else { Vec::new() };
        let mut jobs = Vec::with_capacity(ps.len());
        for (i, p) in ps.clone().enumerate() {
            let cols = nr.min(n - p * nr);
            let bias = bias.map(|b| {
                bias_panels[i][..cols].copy_from_slice(&b[p * nr..p * nr + cols]);
                bias_panels[i].as_ptr()
            });
            let w = self.lines.as_ptr().cast::<f32>().add(p * k * nr);
            let (c, ldc) = if cols == nr { (out.add(p * nr), n) } else { (scratch.as_mut_ptr(), nr) };
            jobs.push(PanelJob { w, bias, c, ldc });
        }
        #[cfg(target_arch = "x86_64")]
        match self.tiles {
            Tiles::Avx512 => x86::panels_avx512(x.as_ptr(), k, m, &jobs),
            Tiles::Avx2 => x86::panels_avx2(x.as_ptr(), k, m, &jobs),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("packed matmul is only built for x86-64 tiles: {jobs:?}");
        if last_cols < nr {
            let p = ps.end - 1;
            for r in 0..m {
                std::ptr::copy_nonoverlapping(scratch.as_ptr().add(r * nr), out.add(r * n + p * nr), last_cols);
            }
        }
    }
}

/// One panel's part of a call: its packed block, bias (padded to the panel) and output.
#[derive(Debug)]
struct PanelJob {
    w: *const f32,
    bias: Option<*const f32>,
    c: *mut f32,
    ldc: usize,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, PanelJob, Tiles};
    use crate::simd::{Avx2, Avx512, Lanes};
    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};

    /// How a tile's sums start.
    #[derive(Clone, Copy)]
    enum Init {
        Zero,
        /// The bias of the panel's columns.
        Bias(*const f32),
        /// The partial sums already in the output (a later block of `k`).
        Load,
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panels_avx512(x: *const f32, k: usize, m: usize, jobs: &[PanelJob]) {
        panels::<Avx512, 4>(x, k, m, jobs, Tiles::Avx512.kc())
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn panels_avx2(x: *const f32, k: usize, m: usize, jobs: &[PanelJob]) {
        panels::<Avx2, 2>(x, k, m, jobs, Tiles::Avx2.kc())
    }

    /// Every row tile of each panel (`NV` registers wide), block of `kc` steps of `k` by
    /// block: a block of the input (`m x kc`) is reused from L2 by all the panels, a panel's
    /// block (`kc x NR`) from L1 by all the row tiles.
    #[inline(always)]
    unsafe fn panels<L: Lanes, const NV: usize>(x: *const f32, k: usize, m: usize, jobs: &[PanelJob], kc: usize) {
        let nr = NV * L::N;
        let mut k0 = 0;
        loop {
            let steps = kc.min(k - k0);
            let next_k0 = k0 + steps;
            for (j, job) in jobs.iter().enumerate() {
                let init = if k0 > 0 { Init::Load } else { job.bias.map_or(Init::Zero, Init::Bias) };
                let wk = job.w.add(k0 * nr);
                // the block the next panel (or the next k block) reads, brought into L2
                // a share per row tile, so its first tile does not wait on memory
                let next: Option<(*const f32, usize)> = match jobs.get(j + 1) {
                    Some(nj) => Some((nj.w.add(k0 * nr), steps)),
                    None if next_k0 < k => Some((jobs[0].w.add(next_k0 * nr), kc.min(k - next_k0))),
                    None => None,
                };
                let lines = next.map_or(0, |(_, st)| st * nr / 16);
                let per_tile = lines.div_ceil(m.div_ceil(MR)).max(1);
                let mut fetched = 0;
                let mut m0 = 0;
                while m0 < m {
                    if let Some((pf, _)) = next {
                        let end = (fetched + per_tile).min(lines);
                        for l in fetched..end {
                            _mm_prefetch::<_MM_HINT_T1>(pf.add(l * 16).cast());
                        }
                        fetched = end;
                    }
                    let (xt, ct, ldc) = (x.add(m0 * k + k0), job.c.add(m0 * job.ldc), job.ldc);
                    match m - m0 {
                        1 => tile::<L, 1, NV>(xt, k, wk, steps, ct, ldc, init),
                        2 => tile::<L, 2, NV>(xt, k, wk, steps, ct, ldc, init),
                        3 => tile::<L, 3, NV>(xt, k, wk, steps, ct, ldc, init),
                        4 => tile::<L, 4, NV>(xt, k, wk, steps, ct, ldc, init),
                        5 => tile::<L, 5, NV>(xt, k, wk, steps, ct, ldc, init),
                        _ => tile::<L, MR, NV>(xt, k, wk, steps, ct, ldc, init),
                    }
                    m0 += MR;
                }
            }
            k0 += steps;
            if k0 >= k {
                break;
            }
        }
    }

    /// `R` rows times `NV` registers of columns over `steps` values of `k`: `x` at the
    /// tile's first row (rows `ldx` apart), `w` the panel block `[steps][NV·lanes]`, `c`
    /// the output tile (rows `ldc` apart).
    #[inline(always)]
    unsafe fn tile<L: Lanes, const R: usize, const NV: usize>(x: *const f32, ldx: usize, w: *const f32, steps: usize, c: *mut f32, ldc: usize, init: Init) {
        let mut acc = [[L::zero(); NV]; R];
        match init {
            Init::Zero => {}
            Init::Bias(b) => {
                for v in 0..NV {
                    let bv = L::load(b.add(v * L::N));
                    for row in acc.iter_mut() {
                        row[v] = bv;
                    }
                }
            }
            Init::Load => {
                for (i, row) in acc.iter_mut().enumerate() {
                    for (v, a) in row.iter_mut().enumerate() {
                        *a = L::load(c.add(i * ldc + v * L::N));
                    }
                }
            }
        }
        let nr = NV * L::N;
        for s in 0..steps {
            let ws = w.add(s * nr);
            let mut wv = [L::zero(); NV];
            for (v, r) in wv.iter_mut().enumerate() {
                *r = L::load(ws.add(v * L::N));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let a = L::splat(*x.add(i * ldx + s));
                for (v, r) in row.iter_mut().enumerate() {
                    *r = L::fmadd(a, wv[v], *r);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, r) in row.iter().enumerate() {
                L::store(c.add(i * ldc + v * L::N), *r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x Wᵀ + b` in f64, row by row.
    fn reference(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
                y[i * n + j] = (s + b.map_or(0.0, |b| b[j] as f64)) as f32;
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::test_util::seeded_randn(&[n], seed).to_vec1::<f32>().unwrap()
    }

    #[test]
    fn every_tile_family_matches_the_reference() {
        let mut families = Vec::new();
        if crate::fastmath::has_avx2_fma() {
            families.push(Tiles::Avx2);
        }
        if crate::fastmath::has_avx512() {
            families.push(Tiles::Avx512);
        }
        if families.is_empty() {
            eprintln!("skipped: this CPU has neither AVX2 + FMA nor AVX-512 (gemm serves it)");
            return;
        }
        // shapes around the tile and block edges: rows not a multiple of 6 (and more than
        // one row block), outputs not of 64 or 16, inputs longer than one panel block
        // (256 / 1024 steps) and not a multiple
        for &(m, k, parts) in &[(1, 1, &[1][..]), (7, 5, &[3, 17][..]), (13, 130, &[64, 64][..]), (6, 600, &[100][..]), (32, 1030, &[16, 70, 2][..]), (777, 33, &[70][..])] {
            let n: usize = parts.iter().sum();
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let b = values(n, 3);
            let mut slices = Vec::new();
            let mut at = 0;
            for &rows in parts {
                slices.push(&w[at * k..(at + rows) * k]);
                at += rows;
            }
            for &tiles in &families {
                let packed = PackedMatrix::pack_for(tiles, &slices, k);
                assert_eq!((packed.in_dim(), packed.out_dim()), (k, n));
                for bias in [None, Some(&b[..])] {
                    let want = reference(&x, &w, bias, m, k, n);
                    let got = packed.matmul(&x, m, bias).unwrap();
                    let tol = 1e-4 * (k as f32).sqrt();
                    for (g, e) in got.iter().zip(&want) {
                        assert!((g - e).abs() <= tol * (1.0 + e.abs()), "{tiles:?} m={m} k={k} n={n}: {g} vs {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn forward_keeps_leading_dims_and_rejects_a_wrong_width() {
        if !PackedMatrix::available() {
            eprintln!("skipped: no AVX2 + FMA here");
            return;
        }
        let w = crate::test_util::seeded_randn(&[10, 8], 4);
        let x = crate::test_util::seeded_randn(&[2, 3, 8], 5);
        let packed = PackedMatrix::from_tensors(&[w.clone()]).unwrap().unwrap();
        let got = packed.forward(&x, None).unwrap();
        assert_eq!(got.dims(), &[2, 3, 10]);
        let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        assert!(crate::test_util::max_abs_diff(&got, &want) < 1e-5);
        assert!(packed.forward(&crate::test_util::seeded_randn(&[2, 7], 6), None).is_err());
        assert!(packed.matmul(&[0.0; 15], 2, None).is_err(), "two rows of 8 need 16 values");
        assert!(packed.forward(&x, Some(&[0.0; 9])).is_err(), "a bias of 9 for 10 outputs");
        // rows read back from the panels are the matrix's rows
        let rows = packed.rows(&[9, 0, 3, 9]).unwrap();
        let table = w.to_vec2::<f32>().unwrap();
        for (got, &t) in rows.chunks(8).zip(&[9usize, 0, 3, 9]) {
            assert_eq!(got, &table[t][..]);
        }
        assert!(packed.rows(&[10]).is_none());
    }
}
