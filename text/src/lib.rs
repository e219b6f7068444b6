//! stipple-text: masked-diffusion language models and constrained infilling.
//!
//! * [`files`]: find a model's files in a local folder or on the Hugging Face hub.
//! * [`models`]: LLaDA, Dream and BERT-family networks behind one [`models::DiffusionLm`].
//! * [`tokenizer`]: tokenizer.json + chat templates (minijinja); [`slow_tokenizer`]: the same
//!   rebuilt from a slow tokenizer's vocab.json + merges.txt (Dream on the hub).
//! * [`infill`]: templates of fixed text and constrained holes (regex, words, characters).
//! * [`score`]: how likely a model finds a text (pseudo-log-likelihood), to compare decodings.
//! * `train` (the `train` feature): preparing text, training tokenizers and models with
//!   LLaDA's objective, and measuring them on held-out text.
//! * [`generate`]: the decoding loop (LLaDA / Dream / Fast-dLLM policies from
//!   `stipple_core::discrete`, semi-autoregressive blocks, CFG, KV caching, early stop,
//!   batches, streaming).
#![warn(missing_docs)]

pub mod error;
pub mod files;
pub mod generate;
pub mod generation_defaults;
pub mod gguf;
pub mod infill;
pub mod memory;
pub mod models;
pub mod pipeline;
pub mod quantize;
pub mod score;
pub mod slow_tokenizer;
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
pub use generate::{CacheMode, CommitRule, GenerateConfig, Generation};
pub use pipeline::{TextModel, TextOutput};
