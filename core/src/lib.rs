//! stipple-core: the one denoising-scheduler core that every stipple modality drives.
//!
//! * Continuous diffusion (latent images, spectrograms): [`schedule`] (betas and
//!   cumulative alphas), [`timesteps`] (spacing, Karras / exponential / flow sigmas),
//!   [`prediction`] (epsilon, v, sample, flow), [`config`] (diffusers'
//!   `scheduler_config.json`), and one file per sampler under [`samplers`], each with
//!   the exact semantics of its diffusers namesake.
//! * Discrete masked diffusion (text): [`discrete`] (commit schedules, confidence,
//!   position choice, token sampling).
//! * Shared plumbing: [`bpe_files`] (a BPE tokenizer's files checked before they are
//!   built), [`guidance`] (classifier-free guidance), [`noise`] (portable seeded
//!   noise), [`progress`] (progress events and cancellation), [`output`] (writing users'
//!   files without half-written or clobbered results), [`params`] (every request parameter's
//!   range and interactions, one table per request type), [`memory`] (what a run will need,
//!   checked before it starts), [`hub`] (models by hub id), [`training`]
//!   (AdamW with resumable state, warm-up + cosine schedule, clipping, EMA).
#![warn(missing_docs)]

pub mod bpe_files;
pub mod config;
pub mod discrete;
pub mod error;
pub mod guidance;
pub mod hub;
pub mod memory;
pub mod noise;
pub mod output;
pub mod params;
pub mod prediction;
pub mod progress;
pub mod samplers;
pub mod schedule;
mod tensor_math;
pub mod timesteps;
pub mod training;
pub mod weights;

pub use error::{Error, Result};
