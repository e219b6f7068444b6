//! Training stipple's own small latent-diffusion models: captioned image folders, the
//! emoji set, a caption tokenizer, the KL autoencoder, and the conditional UNet with its
//! text encoder. The networks are the inference ones built from trainable variables (the
//! kernels switch to differentiable twins), so a trained model is a diffusers folder the
//! pipeline loads like any other.

pub mod clip_vocab;
pub mod dataset;
pub mod emoji;
pub mod autoencoder;
pub mod init;
pub mod latent_diffusion;
pub mod eval;
