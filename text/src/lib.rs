//! stipple-text: masked-diffusion language models for stipple.
//!
//! Planned (issue #3): LLaDA, Dream and BERT-family models loaded from Hugging Face
//! layouts, the decoding loop (LLaDA / Dream / Fast-dLLM policies from
//! `stipple_core::discrete`, KV caching, early stop, streaming) and the constrained
//! infilling API. Nothing is implemented here yet; the `stipple text` and `stipple infill`
//! commands say so and exit with an error.
