//! What decoding will hold in memory at its peak, predicted from the model's widths and the
//! canvas before the first model call ([`stipple_core::memory`] checks it).
//!
//! One forward pass over `rows x length` positions holds the residual stream and the
//! widest of its two halves: attention (normed copy, q|k|v, the attention output) or the
//! MLP (normed copy, gate|up, the activation); attention scores are computed in blocks that
//! stay in cache. The output head runs on the current block only, and classifier-free
//! guidance doubles the rows. A KV cache keeps keys and values of every layer and position.

use stipple_core::memory::Estimate;

use crate::generate::CacheMode;
use crate::models::ModelTraits;

/// The estimate for decoding `rows` canvases of `length` positions whose blocks are
/// `window` positions long (`passes` forwards per step: 2 under guidance).
pub fn decode(traits: &ModelTraits, rows: usize, length: usize, window: usize, passes: usize, cache: CacheMode) -> Estimate {
    let w = traits.widths;
    let r = rows * passes;
    let attention = 4 * w.hidden + 2 * w.kv;
    let mlp = 2 * w.hidden + 3 * w.mlp;
    let mut e = Estimate::new(format!("decoding {rows} canvas(es) of {length} tokens"))
        .floats("activations", &[r, length, attention.max(mlp)])
        // the head's logits for the block, and the guided mix of the two passes
        .floats("logits", &[r + rows, window, traits.vocab]);
    if cache != CacheMode::None {
        e = e.kept_floats("KV cache", &[w.layers, 2, r, length, w.kv]);
    }
    e
}
