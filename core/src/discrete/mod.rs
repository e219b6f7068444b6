//! Discrete masked diffusion (LLaDA, Dream, Fast-dLLM): the canvas starts as mask tokens
//! and each step commits some of the model's proposals.
//!
//! * [`schedule`]: how many tokens per step (LLaDA, Dream, linear, cosine) and
//!   semi-autoregressive blocks.
//! * [`sampling`]: the token proposed at a position (argmax, Gumbel-max, Dream's
//!   temperature / top-p / top-k categorical).
//! * [`confidence`]: how sure the model is (probability, margin, entropy, random).
//! * [`select`]: which positions to commit (top-k, threshold, factor, sampled).
//! * [`policy`]: the three tied together in one [`step`].
//! * [`sampler`]: the sampler built from a [`DiscreteSamplerSpec`] (reference algorithm,
//!   commit rule, filters) that decoding loops drive, as continuous loops drive a scheduler.
//! * [`forward_process`]: masking clean text (training and evaluation objectives).
//!
//! The deterministic paths use the fused kernel
//! [`stipple_kernels::confidence::confidence_stats`]. Parity with the Python references
//! is checked by `core/tests/discrete_golden.rs` on goldens made by
//! `tools/make_discrete_goldens.py`.

pub mod confidence;
pub mod forward_process;
pub mod policy;
mod proposal;
pub mod sampling;
pub mod sampler;
pub mod schedule;
pub mod select;

pub use confidence::Remasking;
pub use policy::{
    Commit, Committed, NoiseScope, Policy, RowStep, TokenChoice, mask_prompt, step, step_row,
};
pub use sampler::{Algorithm, BlockBudget, CommitRule, DiscreteSampler, DiscreteSamplerSpec};
pub use schedule::{Block, semi_ar_blocks};
pub use stipple_kernels::confidence::Accumulate;
