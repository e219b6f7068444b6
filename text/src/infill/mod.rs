//! Constrained text infilling: a [`Template`] of fixed text and holes, filled by a
//! masked-diffusion model in one bidirectional decode.
//!
//! Fixed spans are never masked, so they stay pinned at every step. Each hole is a run
//! of `[MASK]` positions; its constraint (regex, word list, character class, token set)
//! becomes a token-level automaton ([`automaton::HoleAutomaton`]) that bans, before each
//! step, every token that would make the hole impossible to complete, and re-checks
//! commits made together in one step. Holes with a length range may use end-of-text at
//! spare positions, which is deleted from the text ("EOS as delete"). Impossible
//! constraints are reported before decoding starts.
//!
//! ```no_run
//! # use stipple_text::{TextModel, infill::{Template, Hole, InfillOptions, infill}};
//! # fn main() -> stipple_text::Result<()> {
//! let model = TextModel::load("GSAI-ML/LLaDA-8B-Base", &candle_core::Device::Cpu, candle_core::DType::BF16)?;
//! let t = Template::new().text("The ").hole(Hole::new(1).one_of(&["cat", "dog"])).text(" sat on the ")
//!     .hole(Hole::range(1, 3)).text(".");
//! let out = infill(&model, &t, &InfillOptions::default(), None)?;
//! println!("{} / {}", out.text, out.holes[0].text);
//! # Ok(()) }
//! ```

pub mod automaton;
pub mod template;
pub mod token_bytes;

use std::ops::Range;

use stipple_core::discrete::Committed;
use stipple_core::progress::{CancelToken, Progress};

pub use automaton::{Allowed, Cell, HoleAutomaton};
pub use template::{Constraint, Hole, Part, Template};
pub use token_bytes::TokenBytes;

use crate::error::{Error, Result};
use crate::generate::{CanvasView, GenerateConfig, TokenFilter, decode};
use crate::pipeline::TextModel;

/// Decoding settings for infilling (steps default to one per hole position).
#[derive(Clone, Debug, Default)]
pub struct InfillOptions {
    /// Model calls (default: the number of hole positions).
    pub steps: Option<usize>,
    /// Everything else (gen_len, block_len and steps are set from the template).
    pub decode: GenerateConfig,
    /// Text before the template (context the model sees, not part of the result).
    pub context: Option<String>,
    /// Stops the decode between steps (the studio's Cancel).
    pub cancel: CancelToken,
}

/// One filled hole.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HoleFill {
    /// The hole's name (or its index).
    pub name: String,
    /// Its text (without the space absorbed from before the hole).
    pub text: String,
    /// Its token ids (deleted positions left out).
    pub ids: Vec<u32>,
    /// The confidence each of those tokens was committed with.
    pub confidences: Vec<f64>,
}

/// The filled template.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InfillResult {
    /// The whole text with the holes filled.
    pub text: String,
    /// Each hole, in order.
    pub holes: Vec<HoleFill>,
    /// The final canvas ids (context and template; deleted positions included).
    pub ids: Vec<u32>,
    /// Model calls.
    pub nfe: usize,
    /// Wall time in milliseconds.
    pub elapsed_ms: f64,
}

struct PlacedHole {
    span: Range<usize>,
    automaton: HoleAutomaton,
    lead_space: bool,
    name: String,
    describe: String,
}

/// Applies every hole's automaton during decoding.
struct HoleFilter<'a> {
    holes: &'a [PlacedHole],
    delete_id: u32,
    eos_ids: Vec<u32>,
}

impl HoleFilter<'_> {
    fn cells(&self, hole: &PlacedHole, canvas: &[u32], mask: u32) -> Vec<Cell> {
        canvas[hole.span.clone()]
            .iter()
            .map(|&t| {
                if t == mask {
                    Cell::Masked
                } else if self.eos_ids.contains(&t) {
                    Cell::Eos
                } else {
                    Cell::Token(t)
                }
            })
            .collect()
    }
}

/// The mask id is needed to read cells; it is passed through the canvas convention.
struct FilterWithMask<'a> {
    inner: HoleFilter<'a>,
    mask: u32,
}

impl TokenFilter for FilterWithMask<'_> {
    fn restrict(&mut self, _row: usize, canvas: &[u32], positions: &[usize], logits: &mut [f32], vocab: usize) -> Result<()> {
        let stride = logits.len() / positions.len().max(1);
        for hole in self.inner.holes {
            let local: Vec<(usize, usize)> = positions
                .iter()
                .enumerate()
                .filter(|(_, p)| hole.span.contains(p))
                .map(|(i, &p)| (i, p - hole.span.start))
                .collect();
            if local.is_empty() {
                continue;
            }
            let cells = self.inner.cells(hole, canvas, self.mask);
            let allowed = hole.automaton.allowed(&cells);
            for (i, j) in local {
                let row = &mut logits[i * stride..(i + 1) * stride];
                let keep: Vec<(u32, f32)> = match &allowed[j] {
                    Some(a) => {
                        let mut k: Vec<(u32, f32)> = a
                            .tokens
                            .iter()
                            .filter(|&&t| (t as usize) < vocab)
                            .map(|&t| (t, row[t as usize]))
                            .collect();
                        if a.eos {
                            k.push((self.inner.delete_id, row[self.inner.delete_id as usize]));
                        }
                        k
                    }
                    None => Vec::new(),
                };
                row.fill(f32::NEG_INFINITY);
                for (t, v) in keep {
                    row[t as usize] = v;
                }
            }
        }
        Ok(())
    }

    fn review(&mut self, _row: usize, canvas: &[u32], commits: &[Committed]) -> Vec<bool> {
        let mut tentative = canvas.to_vec();
        commits
            .iter()
            .map(|c| {
                let old = tentative[c.position];
                tentative[c.position] = c.token;
                let ok = self
                    .inner
                    .holes
                    .iter()
                    .find(|h| h.span.contains(&c.position))
                    .is_none_or(|h| h.automaton.feasible(&self.inner.cells(h, &tentative, self.mask)));
                if !ok {
                    tentative[c.position] = old;
                }
                ok
            })
            .collect()
    }
}

fn describe(h: &Hole) -> String {
    let len = if h.min == h.max { format!("{} tokens", h.max) } else { format!("{} to {} tokens", h.min, h.max) };
    match &h.constraint {
        Constraint::Free => len,
        Constraint::Regex(r) => format!("/{r}/, {len}"),
        Constraint::OneOf(w) => format!("one of {w:?}, {len}"),
        Constraint::Chars(c) => format!("chars {c}, {len}"),
        Constraint::Tokens(t) => format!("{} allowed token ids, {len}", t.len()),
    }
}

/// Fill `template` with `model`.
pub fn infill(
    model: &TextModel,
    template: &Template,
    opts: &InfillOptions,
    progress: Option<&mut dyn Progress<CanvasView>>,
) -> Result<InfillResult> {
    template.validate()?;
    let traits = model.lm.traits().clone();
    let tok = &model.tokenizer;
    let vocab = TokenBytes::new(tok, traits.vocab);
    // the tokenizer's own prefix (BOS) then the context
    let mut canvas = tok.encode("", true)?;
    if let Some(ctx) = &opts.context {
        canvas.extend(tok.encode(ctx, false)?);
    }
    let parts = template.parts();
    let mut holes = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Text(t) => {
                let before_hole = matches!(parts.get(i + 1), Some(Part::Hole(_)));
                let t = if before_hole { t.strip_suffix(' ').unwrap_or(t) } else { t.as_str() };
                canvas.extend(tok.encode(t, false)?);
            }
            Part::Hole(h) => {
                let lead_space = i > 0 && matches!(&parts[i - 1], Part::Text(t) if t.ends_with(' '));
                let base = h.constraint.pattern().unwrap_or_else(|| "(?s:.*)".into());
                let pattern = if lead_space {
                    // the absorbed space starts the text (an entirely deleted hole is empty)
                    if h.min == 0 { format!("(?: (?:{base}))?") } else { format!(" (?:{base})") }
                } else {
                    base
                };
                let allowed = match &h.constraint {
                    Constraint::Tokens(t) => Some(t.as_slice()),
                    _ => None,
                };
                if let Some(limit) = traits.max_len
                    && canvas.len().saturating_add(h.max) > limit
                {
                    return Err(Error::Infill(format!(
                        "the template needs more than the model's {limit} positions"
                    )));
                }
                let automaton = HoleAutomaton::new(Some(&pattern), allowed, h.min, h.max, &vocab)?;
                let start = canvas.len();
                canvas.extend(std::iter::repeat_n(traits.mask_id, h.max));
                let index = holes.len();
                let placed = PlacedHole {
                    span: start..start + h.max,
                    automaton,
                    lead_space,
                    name: h.name.clone().unwrap_or_else(|| index.to_string()),
                    describe: describe(h),
                };
                if !placed.automaton.feasible(&vec![Cell::Masked; h.max]) {
                    return Err(Error::Infill(format!(
                        "hole {} ({}) can never be filled: no sequence of tokens of this model's vocabulary satisfies it",
                        placed.name, placed.describe
                    )));
                }
                holes.push(placed);
            }
        }
    }
    let positions: usize = holes.iter().map(|h| h.span.len()).sum();
    let mut cfg = opts.decode.clone();
    cfg.gen_len = canvas.len();
    cfg.block_len = canvas.len();
    cfg.steps = opts.steps.unwrap_or(positions).max(1);
    if cfg.guidance > 0.0 {
        return Err(Error::InvalidArgument("classifier-free guidance is not available for infilling".into()));
    }
    let mut filter = FilterWithMask {
        inner: HoleFilter {
            holes: &holes,
            delete_id: traits.eos_ids[0],
            eos_ids: traits.eos_ids.clone(),
        },
        mask: traits.mask_id,
    };
    let run = decode(&model.lm, vec![canvas], &cfg, Some(&mut filter), progress, opts.cancel.clone())?;
    let ids = run.rows[0].clone();
    let fills = holes
        .iter()
        .map(|h| {
            let (mut kept, mut confs) = (Vec::new(), Vec::new());
            for p in h.span.clone() {
                if !traits.eos_ids.contains(&ids[p]) {
                    kept.push(ids[p]);
                    confs.push(run.confidence[0][p].unwrap_or(f64::NAN));
                }
            }
            let text = tok.decode(&kept, false)?;
            let text = if h.lead_space { text.strip_prefix(' ').map(str::to_string).unwrap_or(text) } else { text };
            Ok(HoleFill {
                name: h.name.clone(),
                text,
                ids: kept,
                confidences: confs,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let visible: Vec<u32> = ids.iter().copied().filter(|t| !traits.eos_ids.contains(t)).collect();
    Ok(InfillResult {
        text: tok.decode(&visible, true)?,
        holes: fills,
        ids,
        nfe: run.nfe,
        elapsed_ms: run.elapsed.as_secs_f64() * 1e3,
    })
}
