//! The canvases being decoded: rows left-padded to one length, which positions were given,
//! the confidence each generated token was committed with, and the region decoded in
//! semi-autoregressive blocks.

use std::ops::Range;

use candle_core::{Device, Tensor};
use stipple_core::discrete::{Committed, RowStep};

use super::{CanvasView, Generation, TokenFilter};
use crate::error::{Result, invalid};
use crate::models::ModelTraits;

pub(super) struct Canvas {
    /// Left-padded rows.
    pub rows: Vec<Vec<u32>>,
    /// Padding before each row.
    pad: Vec<usize>,
    /// Positions holding given (not generated) tokens.
    pub given: Vec<Vec<bool>>,
    confidence: Vec<Vec<Option<f64>>>,
    /// Where each unpadded row's generated part starts.
    gen_start: Vec<usize>,
    /// The region decoded in blocks: the last `gen_len` positions (common to all rows
    /// after left padding), or the whole canvas when `gen_len` covers it.
    pub region: Range<usize>,
    mask: u32,
}

impl Canvas {
    /// Checks `canvases` against the model and pads them. Masks must lie in the last
    /// `gen_len` positions of each row.
    pub fn new(traits: &ModelTraits, canvases: Vec<Vec<u32>>, gen_len: usize) -> Result<Self> {
        let mask = traits.mask_id;
        if canvases.is_empty() {
            return Err(invalid("no canvases"));
        }
        let lens: Vec<usize> = canvases.iter().map(Vec::len).collect();
        let l = lens.iter().copied().max().unwrap_or(0);
        if let Some(max) = traits.max_len
            && l > max
        {
            return Err(invalid(format!("canvas of {l} tokens exceeds the model's {max}")));
        }
        if canvases.iter().flatten().any(|&t| t as usize >= traits.vocab) {
            return Err(invalid("a token id is outside the model's vocabulary"));
        }
        let gen_len = gen_len.min(l);
        let region = (l - gen_len)..l;
        let pad: Vec<usize> = lens.iter().map(|&n| l - n).collect();
        let rows: Vec<Vec<u32>> = canvases
            .iter()
            .zip(&pad)
            .map(|(c, &p)| {
                let mut r = vec![traits.pad_id; p];
                r.extend_from_slice(c);
                r
            })
            .collect();
        if rows.iter().any(|r| r[..region.start].contains(&mask)) {
            return Err(invalid("[MASK] tokens outside the generated region; give gen_len covering them"));
        }
        let gen_start = lens.iter().map(|&n| n - gen_len.min(n)).collect();
        let given = rows.iter().map(|r| r.iter().map(|&t| t != mask).collect()).collect();
        let confidence = vec![vec![None; l]; rows.len()];
        Ok(Self { rows, pad, given, confidence, gen_start, region, mask })
    }

    /// The attention mask and per-row rotary positions of left padding, for `passes`
    /// copies of the batch (none without padding).
    pub fn padding_inputs(&self, passes: usize, dev: &Device) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.pad.iter().all(|&p| p == 0) {
            return Ok((None, None));
        }
        let (b, l) = (self.rows.len(), self.rows[0].len());
        let mut km = Vec::with_capacity(passes * b * l);
        let mut pos = Vec::with_capacity(passes * b * l);
        for _ in 0..passes {
            for &p in &self.pad {
                km.extend((0..l).map(|j| u32::from(j >= p)));
                pos.extend((0..l).map(|j| j.saturating_sub(p) as u32));
            }
        }
        Ok((Some(Tensor::from_vec(km, (passes * b, l), dev)?), Some(Tensor::from_vec(pos, (passes * b, l), dev)?)))
    }

    /// Masks left in `window`, per row.
    pub fn masks_in(&self, window: &Range<usize>) -> Vec<usize> {
        self.rows.iter().map(|r| r[window.clone()].iter().filter(|&&t| t == self.mask).count()).collect()
    }

    /// Each row's window, for the sampler to commit into.
    pub fn window_rows(&self, window: &Range<usize>) -> Vec<Vec<u32>> {
        self.rows.iter().map(|r| r[window.clone()].to_vec()).collect()
    }

    /// Writes a step's commits (window positions in `reports`) into the rows, except those
    /// the filter refuses (they stay masked); returns the kept ones per row.
    pub fn commit<F: TokenFilter + ?Sized>(&mut self, reports: Vec<RowStep>, window: &Range<usize>, mut filter: Option<&mut F>) -> Vec<Vec<Committed>> {
        let mut committed = Vec::with_capacity(reports.len());
        for (r, rep) in reports.into_iter().enumerate() {
            let commits: Vec<Committed> = rep.committed.iter().map(|c| Committed { position: c.position + window.start, ..*c }).collect();
            let keep = match filter.as_deref_mut() {
                Some(f) => f.review(r, &self.rows[r], &commits),
                None => vec![true; commits.len()],
            };
            let kept: Vec<Committed> = commits.into_iter().zip(keep).filter(|(_, ok)| *ok).map(|(c, _)| c).collect();
            for c in &kept {
                self.rows[r][c.position] = c.token;
                self.confidence[r][c.position] = Some(c.confidence);
            }
            committed.push(kept);
        }
        committed
    }

    /// The rows without their padding.
    fn unpadded<T: Clone>(rows: &[Vec<T>], pad: &[usize]) -> Vec<Vec<T>> {
        rows.iter().zip(pad).map(|(r, &p)| r[p..].to_vec()).collect()
    }

    /// What a progress sink sees after a step.
    pub fn view(&self, committed: Vec<Vec<Committed>>, nfe: usize, block: usize) -> CanvasView {
        CanvasView { rows: Self::unpadded(&self.rows, &self.pad), committed, mask_id: self.mask, nfe, block, gen_start: self.gen_start.clone() }
    }

    /// Early stop: when every row holds an end-of-text token before `end`, the masks after
    /// it become end-of-text and `true` is returned.
    pub fn stop_early(&mut self, eos_ids: &[u32], end: usize) -> bool {
        let start = self.region.start;
        if !self.rows.iter().all(|r| r[start..end].iter().any(|t| eos_ids.contains(t))) {
            return false;
        }
        let eos = eos_ids[0];
        for r in self.rows.iter_mut() {
            for t in r[end..].iter_mut() {
                if *t == self.mask {
                    *t = eos;
                }
            }
        }
        true
    }

    /// The result.
    pub fn finish(self, nfe: usize, elapsed: std::time::Duration, early_stopped: bool) -> Generation {
        Generation {
            rows: Self::unpadded(&self.rows, &self.pad),
            gen_start: self.gen_start,
            confidence: Self::unpadded(&self.confidence, &self.pad),
            nfe,
            elapsed,
            early_stopped,
        }
    }
}
