//! stipple: diffusion generation of text, images and music in Rust.
//!
//! This facade re-exports the workspace crates so applications depend on one crate:
//! [`core`] (the shared denoising-scheduler core), [`kernels`] (fused hot ops),
//! [`text`], [`image`], [`audio`] (modality backends) and, with the `studio` feature,
//! `gui` (the desktop studio).
//! The `stipple` binary is the command-line front end (see `stipple --help`); it is not
//! part of this library, so depending on `stipple` compiles no argument parser.
#![warn(missing_docs)]

pub use stipple_audio as audio;
pub use stipple_core as core;
#[cfg(feature = "studio")]
pub use stipple_gui as gui;
pub use stipple_image as image;
pub use stipple_kernels as kernels;
pub use stipple_text as text;

pub mod defaults;
pub mod parameters;
