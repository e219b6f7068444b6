//! 3x3 convolution by Winograd's minimal filtering F(2x2, 3x3).
//!
//! Each 2x2 block of output pixels comes from a 4x4 input tile through 16 element-wise
//! products in a transformed space instead of 36 multiplies, so the convolution becomes 16
//! gemms `U_ξ [c_out, c_in] x V_ξ [c_in, tiles]` with 2.25x fewer FLOPs than the nine
//! shifted taps (Lavin & Gray 2015). The filter transform `U = G g Gᵀ` is computed per
//! call from the layer's tap-major weights, as linear combinations of the nine contiguous
//! tap planes; the input (`V = Bᵀ d B`) and output (`Y = Aᵀ M A`) transforms run a row of
//! tiles at a time so they vectorise. Worth it from 16x16 maps up (8x8 maps lose: the
//! filter transform's memory traffic outweighs their small gemms).

use rayon::prelude::*;

use crate::cpu::SendPtr;

/// Tiles per pass: bounds the transformed input and product buffers (a 512x512 VAE level
/// would otherwise need ~0.5 GB each) while keeping the gemms wide.
const MAX_BLOCK_TILES: usize = 2048;

/// `out[b, c_out, h, w] = conv3x3(x) + adds` for even `h` and `w`; `taps` is the weight
/// tap-major `[9][c_out][c_in]`.
pub(crate) fn conv3x3(xs: &[f32], dims: (usize, usize, usize, usize), taps: &[f32], c_out: usize, adds: &crate::conv::Adds, out: &mut [f32]) {
    let (b, c_in, h, w) = dims;
    debug_assert!(h % 2 == 0 && w % 2 == 0);
    let (th, tw) = (h / 2, w / 2);
    // tile rows of all items in one sequence: row g is item g / th's tile row g % th
    let total_rows = b * th;
    let rows_per_block = (MAX_BLOCK_TILES / tw).clamp(1, total_rows);
    let u = filter_transform(taps, c_out * c_in);
    let mut v = vec![0f32; 16 * c_in * rows_per_block * tw];
    let mut m = vec![0f32; 16 * c_out * rows_per_block * tw];
    for r0 in (0..total_rows).step_by(rows_per_block) {
        let rows = rows_per_block.min(total_rows - r0);
        let n = rows * tw;
        let (v, m) = (&mut v[..16 * c_in * n], &mut m[..16 * c_out * n]);
        input_transform(xs, dims, r0..r0 + rows, v);
        m.par_chunks_mut(c_out * n).enumerate().for_each(|(xi, mx)| {
            // Safety: [c_out, c_in] x [c_in, n] -> [c_out, n], all row-major and in bounds.
            unsafe {
                gemm::gemm(
                    c_out, n, c_in,
                    mx.as_mut_ptr(), 1, n as isize, false,
                    u.as_ptr().add(xi * c_out * c_in), 1, c_in as isize,
                    v.as_ptr().add(xi * c_in * n), 1, n as isize,
                    0.0, 1.0,
                    false, false, false,
                    gemm::Parallelism::None,
                );
            }
        });
        output_transform(m, (b, c_out, h, w), r0..r0 + rows, adds, out);
    }
}

/// `U_ab = sum_yx G[a][y] G[b][x] W_(3y+x)` for `G = [[1,0,0], [½,½,½], [½,-½,½], [0,0,1]]`,
/// as 16 planes of `plane` floats.
fn filter_transform(taps: &[f32], plane: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * plane];
    const CHUNK: usize = 4096;
    let u_ptr = SendPtr(u.as_mut_ptr());
    (0..plane.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
        let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(plane));
        let tap = |t: usize| &taps[t * plane + start..t * plane + end];
        // rows: r[a][x] = sum_y G[a][y] W_(3y+x)
        let len = end - start;
        let mut r = vec![0f32; 12 * len];
        for x in 0..3 {
            let (w0, w1, w2) = (tap(x), tap(3 + x), tap(6 + x));
            let (ra, rest) = r[x * len..].split_at_mut(3 * len);
            let (rb, rest) = rest.split_at_mut(3 * len);
            let (rc, rd) = rest.split_at_mut(3 * len);
            for e in 0..len {
                ra[e] = w0[e];
                rb[e] = 0.5 * (w0[e] + w1[e] + w2[e]);
                rc[e] = 0.5 * (w0[e] - w1[e] + w2[e]);
                rd[e] = w2[e];
            }
        }
        for a in 0..4 {
            let row = |x: usize| &r[(3 * a + x) * len..][..len];
            let (r0, r1, r2) = (row(0), row(1), row(2));
            // Safety: chunk `c` writes elements start..end of each of the 16 planes only.
            let dst = |bcol: usize| unsafe { std::slice::from_raw_parts_mut(u_ptr.get().add((4 * a + bcol) * plane + start), len) };
            let (d0, d1, d2, d3) = (dst(0), dst(1), dst(2), dst(3));
            for e in 0..len {
                d0[e] = r0[e];
                d1[e] = 0.5 * (r0[e] + r1[e] + r2[e]);
                d2[e] = 0.5 * (r0[e] - r1[e] + r2[e]);
                d3[e] = r2[e];
            }
        }
    });
    u
}

/// `V = Bᵀ d B` of every 4x4 input tile (stride 2, zero padding 1) in the tile rows
/// `rows`, for `Bᵀ = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]]`: 16 planes
/// `[c_in][n]` in `v`, tile `tx` of row `g` at column `(g - rows.start) * tw + tx`.
fn input_transform(xs: &[f32], (_, c_in, h, w): (usize, usize, usize, usize), rows: std::ops::Range<usize>, v: &mut [f32]) {
    let (th, tw) = (h / 2, w / 2);
    let n = rows.len() * tw;
    let v_ptr = SendPtr(v.as_mut_ptr());
    (0..c_in).into_par_iter().for_each(|c| {
        // one padded input row, then its four column-transformed rows per tile column
        let mut padded = vec![0f32; w + 4];
        let mut t = vec![0f32; 16 * tw]; // [row r][b][tx]
        for g in rows.clone() {
            let (it, ty) = (g / th, g % th);
            let plane = &xs[(it * c_in + c) * h * w..][..h * w];
            for r in 0..4 {
                let y = (2 * ty + r) as isize - 1;
                if y < 0 || y >= h as isize {
                    t[r * 4 * tw..][..4 * tw].fill(0.0);
                    continue;
                }
                // padded[j + 1] = x[y][j]
                padded[1..=w].copy_from_slice(&plane[y as usize * w..][..w]);
                let trow = &mut t[r * 4 * tw..][..4 * tw];
                let (t0, rest) = trow.split_at_mut(tw);
                let (t1, rest) = rest.split_at_mut(tw);
                let (t2, t3) = rest.split_at_mut(tw);
                for tx in 0..tw {
                    let p = &padded[2 * tx..2 * tx + 4];
                    t0[tx] = p[0] - p[2];
                    t1[tx] = p[1] + p[2];
                    t2[tx] = p[2] - p[1];
                    t3[tx] = p[1] - p[3];
                }
            }
            let col = (g - rows.start) * tw;
            for bcol in 0..4 {
                let row = |r: usize| &t[(r * 4 + bcol) * tw..][..tw];
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                // Safety: channel `c`'s task alone writes row `c` of each plane.
                let dst = |a: usize| unsafe { std::slice::from_raw_parts_mut(v_ptr.get().add(((4 * a + bcol) * c_in + c) * n + col), tw) };
                let (d0, d1, d2, d3) = (dst(0), dst(1), dst(2), dst(3));
                for tx in 0..tw {
                    d0[tx] = r0[tx] - r2[tx];
                    d1[tx] = r1[tx] + r2[tx];
                    d2[tx] = r2[tx] - r1[tx];
                    d3[tx] = r1[tx] - r3[tx];
                }
            }
        }
    });
}

/// `Y = Aᵀ M A` for `Aᵀ = [[1,1,1,0], [0,1,-1,-1]]`: the 2x2 output pixels of every tile
/// in the tile rows `rows` (laid out as [`input_transform`]'s), plus the epilogue's
/// additions, written in place.
fn output_transform(m: &[f32], (_, c_out, h, w): (usize, usize, usize, usize), rows: std::ops::Range<usize>, adds: &crate::conv::Adds, out: &mut [f32]) {
    let (th, tw) = (h / 2, w / 2);
    let n = rows.len() * tw;
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..c_out).into_par_iter().for_each(|o| {
        let mut s = vec![0f32; 8 * tw]; // [row 0/1][b][tx]
        for g in rows.clone() {
            let (it, ty) = (g / th, g % th);
            let add = adds.channel(it, o);
            let plane = (it * c_out + o) * h * w;
            let col = (g - rows.start) * tw;
            let mrow = |a: usize, bcol: usize| &m[((4 * a + bcol) * c_out + o) * n + col..][..tw];
            for bcol in 0..4 {
                let (m0, m1, m2, m3) = (mrow(0, bcol), mrow(1, bcol), mrow(2, bcol), mrow(3, bcol));
                let (s0, s1) = s.split_at_mut(4 * tw);
                let (s0, s1) = (&mut s0[bcol * tw..][..tw], &mut s1[bcol * tw..][..tw]);
                for tx in 0..tw {
                    s0[tx] = m0[tx] + m1[tx] + m2[tx];
                    s1[tx] = m1[tx] - m2[tx] - m3[tx];
                }
            }
            for dy in 0..2 {
                let sr = |bcol: usize| &s[(dy * 4 + bcol) * tw..][..tw];
                let (a0, a1, a2, a3) = (sr(0), sr(1), sr(2), sr(3));
                let y = 2 * ty + dy;
                // Safety: channel `o`'s task alone writes the planes of channel `o`.
                let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(plane + y * w), w) };
                for tx in 0..tw {
                    dst[2 * tx] = a0[tx] + a1[tx] + a2[tx] + add;
                    dst[2 * tx + 1] = a1[tx] - a2[tx] - a3[tx] + add;
                }
                if let Some(r) = adds.residual {
                    for (d, &r) in dst.iter_mut().zip(&r[plane + y * w..][..w]) {
                        *d += r;
                    }
                }
            }
        }
    });
}

