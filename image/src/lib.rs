//! stipple-image: latent image diffusion (the Stable Diffusion family) on stipple's core.
//!
//! * [`files`]: diffusers pipeline folders (`model_index.json` and components).
//! * [`tokenizer`]: the CLIP BPE tokenizer from `vocab.json` + `merges.txt`.
//! * [`models`]: CLIP text encoders, the conditional UNet (SD 1.x/2.x, SDXL, LCM,
//!   inpainting), the KL autoencoder.
//! * [`pipeline`]: txt2img, img2img and inpainting with any core sampler.
//! * [`image_io`]: image / mask preprocessing and 8-bit output.
//! * `train` (the `train` feature): data preparation and training of small models
//!   (autoencoder, UNet, text encoder).
#![warn(missing_docs)]

pub mod error;
pub mod files;
pub mod image_io;
pub mod memory;
pub mod metadata;
pub mod models;
pub mod pipeline;
pub mod single_file;
pub mod single_file_config;
pub mod preview;
pub mod request;
pub mod tokenizer;
mod unet_denoiser;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
pub use pipeline::{ImageOutput, ImageRequest, PromptBlend, StableDiffusion};
