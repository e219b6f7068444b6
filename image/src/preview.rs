//! Per-step previews of latents: TAESD when the user gives one (sharp, ~1M-parameter
//! decoder), otherwise a cheap linear latent-to-RGB map (the factors A1111 and ComfyUI use
//! for "approximate" previews), upscaled to the output size.

use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::error::Result;
use crate::image_io;
use crate::models::taesd::TaesdDecoder;
use crate::pipeline::ModelKind;

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
}

impl Previewer<'_> {
    /// The first image of a batch of (scaled) latents as a preview.
    pub fn preview(&self, latents: &Tensor) -> Result<RgbImage> {
        let first = latents.narrow(0, 0, 1)?.to_dtype(DType::F32)?;
        let rgb = match self {
            Previewer::Taesd(t) => t.decode(&first)?,
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
