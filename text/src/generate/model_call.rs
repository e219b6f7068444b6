//! One model call of the decoding loop (the canvas, or the span a KV cache leaves, with
//! its CFG pair), and the constraints applied to its logits.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};
use stipple_core::guidance::Guidance;

use super::{CacheMode, TokenFilter};
use crate::error::{Error, Result};
use crate::models::{DiffusionLm, KvCache, Span};

/// Canvas output row that predicts position `p`.
fn source_row(p: usize, shift: bool) -> usize {
    if shift && p > 0 { p - 1 } else { p }
}

/// What every model call of a decoding run shares.
pub(super) struct ModelCall<'a> {
    pub model: &'a DiffusionLm,
    /// Dream predicts position `i` at output row `i - 1`.
    pub shift: bool,
    /// LLaDA's CFG: a second, unconditional pass with the given tokens masked.
    pub guidance: Option<Guidance>,
    pub key_mask: Option<Tensor>,
    pub positions: Option<Tensor>,
    pub mode: CacheMode,
    pub mask: u32,
}

impl ModelCall<'_> {
    /// Logits `[B, window, V]` (f32) for the window positions, from one (or a CFG pair of)
    /// model call(s), through the cache as configured (refreshed at a block's first step).
    pub fn logits(&self, rows: &[Vec<u32>], given: &[Vec<bool>], window: &Range<usize>, cache: Option<&mut KvCache>, fresh_block: bool) -> Result<Tensor> {
        let (model, shift, mode, mask) = (self.model, self.shift, self.mode, self.mask);
        let (guidance, key_mask, positions) = (self.guidance.as_ref(), self.key_mask.as_ref(), self.positions.as_ref());
        let dev = model.device();
        let (b, l) = (rows.len(), rows[0].len());
        let mut flat: Vec<u32> = rows.iter().flatten().copied().collect();
        if guidance.is_some() {
            // unconditional rows: every given (non-generated) token masked
            for (r, g) in rows.iter().zip(given) {
                flat.extend(r.iter().zip(g).map(|(&t, &gv)| if gv { mask } else { t }));
            }
        }
        let nb = flat.len() / l;
        let ids = Tensor::from_vec(flat, (nb, l), dev)?;
        let lo = source_row(window.start, shift);
        let hi = source_row(window.end - 1, shift) + 1;
        // the span run this call
        let (span_start, span_end, store) = match mode {
            CacheMode::None => (0, l, false),
            _ if fresh_block => (0, l, true),
            CacheMode::Prefix => (lo.min(window.start), l, false),
            CacheMode::Dual => (lo.min(window.start), window.end, false),
        };
        let span_ids = ids.narrow(1, span_start, span_end - span_start)?;
        let span_pos = match positions {
            Some(p) => Some(p.narrow(1, span_start, span_end - span_start)?.contiguous()?),
            None => None,
        };
        let span = Span {
            ids: &span_ids,
            start: span_start,
            positions: span_pos.as_ref(),
            key_mask,
            logits_rows: Some((lo - span_start)..(hi - span_start)),
        };
        let cache_ref = if mode == CacheMode::None { None } else { cache };
        let out = model.forward(&span, cache_ref, store)?; // [nb, hi - lo, V]
        // align rows with window positions
        let idx: Vec<u32> = window.clone().map(|p| (source_row(p, shift) - lo) as u32).collect();
        let identity = idx.iter().enumerate().all(|(i, &j)| i as u32 == j);
        let out = if identity {
            out
        } else {
            out.index_select(&Tensor::from_vec(idx, window.len(), out.device())?, 1)?
        };
        let out = match guidance {
            Some(g) => {
                let cond = out.narrow(0, 0, b)?;
                let un = out.narrow(0, b, nb - b)?;
                g.combine(&cond, &un).map_err(Error::Core)?
            }
            None => out,
        };
        // never propose [MASK] itself: committing it would leave the position undecided (the
        // references allow it and can end with a [MASK] in the output; trained models never
        // pick it)
        let v = out.dim(2)?;
        let mut ban = vec![0f32; v];
        if let Some(x) = ban.get_mut(mask as usize) {
            *x = f32::NEG_INFINITY;
        }
        let out = out.to_dtype(DType::F32)?.broadcast_add(&Tensor::from_vec(ban, v, out.device())?)?;
        Ok(out)
    }
}

/// Apply a [`TokenFilter`] to the window logits (on the CPU).
pub(super) fn restrict(
    filter: &mut dyn TokenFilter,
    logits: Tensor,
    rows: &[Vec<u32>],
    window: &Range<usize>,
    mask: u32,
    vocab: usize,
) -> Result<Tensor> {
    let dev = logits.device().clone();
    let (b, w, v) = logits.dims3()?;
    let mut data = logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    for (r, row) in rows.iter().enumerate() {
        let positions: Vec<usize> = window.clone().filter(|&p| row[p] == mask).collect();
        if positions.is_empty() {
            continue;
        }
        let mut sel = Vec::with_capacity(positions.len() * v);
        for &p in &positions {
            let off = (r * w + p - window.start) * v;
            sel.extend_from_slice(&data[off..off + v]);
        }
        filter.restrict(r, row, &positions, &mut sel, vocab.min(v))?;
        for (i, &p) in positions.iter().enumerate() {
            let off = (r * w + p - window.start) * v;
            data[off..off + v].copy_from_slice(&sel[i * v..(i + 1) * v]);
        }
    }
    Ok(Tensor::from_vec(data, (b, w, v), &dev)?)
}
