//! Training stipple's own small latent-diffusion models (the `train` feature): captioned
//! image folders ([`dataset`]), the emoji set ([`emoji`]), a caption tokenizer
//! ([`clip_vocab`]), the objectives of the KL autoencoder ([`autoencoder`]) and of the
//! conditional UNet with its text encoder ([`latent_diffusion`]), their recipes on the
//! core's run driver ([`vae_recipe`], [`image_recipe`]), saving in the diffusers layout
//! ([`hub_layout`]) and the prompt-following check ([`eval`]). The networks are the
//! inference ones built from trainable variables (the kernels switch to differentiable
//! twins), so a trained model is a diffusers folder the pipeline loads like any other.

pub mod autoencoder;
pub mod clip_vocab;
pub mod dataset;
pub mod emoji;
pub mod eval;
pub mod hub_layout;
pub mod image_recipe;
pub mod init;
pub mod latent_diffusion;
pub mod vae_recipe;
