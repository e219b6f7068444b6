//! stipple-image: latent image diffusion (the Stable Diffusion family) for stipple.
//!
//! Planned (issue #4): SD 1.x/2.x/XL/Turbo/LCM from diffusers folders and single-file
//! checkpoints, txt2img / img2img / inpainting on the samplers of `stipple_core::samplers`,
//! TAESD previews. Nothing is implemented here yet; `stipple image` says so.
