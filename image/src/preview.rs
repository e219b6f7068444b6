//! Per-step previews of latents: TAESD when the user gives one (sharp, ~1M-parameter
//! decoder); the model's own VAE for small models (it costs little there, and their
//! latents need not be SD's four channels); otherwise a cheap linear latent-to-RGB map
//! (the factors A1111 and ComfyUI use for "approximate" previews), upscaled to the output size.

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::error::Result;
use crate::image_io;
use crate::models::taesd::TaesdDecoder;
use crate::pipeline::{ModelKind, StableDiffusion};

/// Models whose pictures are at most this many pixels a side preview through their VAE.
pub const VAE_PREVIEW_MAX_SIDE: usize = 128;

/// Latent channel -> RGB contributions for SD 1.x / 2.x latents.
const SD_FACTORS: [[f32; 3]; 4] = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];
/// The same for SDXL latents.
const XL_FACTORS: [[f32; 3]; 4] = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]];

/// How previews are made.
pub enum Previewer<'a> {
    /// The linear map, for this kind of latents, upscaled by `factor`.
    Linear {
        /// Model family (picks the factors).
        kind: ModelKind,
        /// Pixels per latent pixel.
        factor: usize,
    },
    /// TAESD.
    Taesd(&'a TaesdDecoder),
    /// The pipeline's own decoder (as at the end of a run).
    Vae(&'a StableDiffusion),
}

impl<'a> Previewer<'a> {
    /// The best cheap previewer for `pipe`: TAESD when given (or the pipeline's own fast
    /// decoder), the VAE for small models or latents the linear map does not know, else the
    /// linear map.
    pub fn for_pipeline(pipe: &'a StableDiffusion, taesd: Option<&'a TaesdDecoder>) -> Self {
        match pipe.fast_decoder.as_ref().or(taesd) {
            Some(t) => Previewer::Taesd(t),
            None if pipe.native_size() <= VAE_PREVIEW_MAX_SIDE || pipe.latent_channels() != 4 => Previewer::Vae(pipe),
            None => Previewer::Linear { kind: pipe.kind(), factor: pipe.vae_factor() },
        }
    }

    /// The first image of a batch of (scaled) latents as a preview.
    pub fn preview(&self, latents: &Tensor) -> Result<RgbImage> {
        let first = latents.narrow(0, 0, 1)?.to_dtype(DType::F32)?;
        let rgb = match self {
            Previewer::Taesd(t) => t.decode(&first)?,
            Previewer::Vae(pipe) => {
                let (_, mut images) = pipe.decode_latents(&first)?;
                return Ok(images.remove(0));
            }
            Previewer::Linear { kind, factor } => {
                let m = match kind {
                    ModelKind::StableDiffusion => SD_FACTORS,
                    ModelKind::Xl => XL_FACTORS,
                };
                let (_, c, h, w) = first.dims4()?;
                if c != 4 {
                    return Err(crate::error::invalid("linear previews need 4-channel latents"));
                }
                let flat: Vec<f32> = m.iter().flatten().copied().collect();
                let mat = Tensor::from_vec(flat, (4, 3), first.device())?;
                let px = first.reshape((4, h * w))?.t()?.matmul(&mat)?; // [hw, 3]
                let img = px.t()?.reshape((1, 3, h, w))?;
                img.upsample_nearest2d(h * factor, w * factor)?
            }
        };
        let mut images = image_io::to_rgb_images(&image_io::to_unit_hwc(&rgb)?)?;
        Ok(images.remove(0))
    }
}
