//! The networks of the Stable Diffusion family, each configured by its diffusers /
//! transformers `config.json` (`new(cfg, vb)` + `forward`, in candle-transformers' style).

pub mod attention;
pub mod clip;
pub mod embeddings;
pub mod layer_norm;
pub mod resnet;
pub mod taesd;
pub mod unet;
pub mod vae;
