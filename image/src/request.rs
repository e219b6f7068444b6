//! What a generation asks for ([`ImageRequest`]) and what it gives back ([`ImageOutput`]).

use candle_core::Tensor;
use image::{DynamicImage, RgbImage};
use stipple_core::samplers::SamplerSpec;

use crate::metadata::GenerationInfo;

/// What to generate.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt (`None`: none; SDXL then uses zero embeddings).
    pub negative_prompt: Option<String>,
    /// Inference steps (`None`: the model's default, see [`StableDiffusion::default_steps`](crate::StableDiffusion::default_steps)).
    pub steps: Option<usize>,
    /// Guidance scale (`None`: the model's default; CFG runs only above 1).
    pub guidance: Option<f64>,
    /// Guidance rescale phi (0 = off).
    pub guidance_rescale: f64,
    /// The sampler (`None`: the model's own scheduler config).
    pub sampler: Option<SamplerSpec>,
    /// Output width in pixels (`None`: the init image's, else the model's native size).
    pub width: Option<usize>,
    /// Output height in pixels.
    pub height: Option<usize>,
    /// Images per prompt.
    pub batch: usize,
    /// img2img / inpainting source image.
    pub init_image: Option<DynamicImage>,
    /// img2img / inpainting strength in [0, 1] (1 = start from pure noise).
    pub strength: f64,
    /// Inpainting mask (white = repaint).
    pub mask: Option<DynamicImage>,
    /// Unit-variance initial noise `[batch, 4, h/f, w/f]` (diffusers' `latents=`), used
    /// instead of the first noise draw.
    pub latents: Option<Tensor>,
    /// Conditioning moved towards a second prompt (Riffusion-style interpolation).
    pub prompt_blend: Option<PromptBlend>,
}

/// A second prompt whose text embeddings are mixed into the first's:
/// `e = e_prompt + weight * (e_other - e_prompt)`.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptBlend {
    /// The prompt blended towards.
    pub prompt: String,
    /// 0 keeps the request's prompt, 1 gives this one.
    pub weight: f64,
}

impl Default for ImageRequest {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            steps: None,
            guidance: None,
            guidance_rescale: 0.0,
            sampler: None,
            width: None,
            height: None,
            batch: 1,
            init_image: None,
            strength: 0.8,
            mask: None,
            latents: None,
            prompt_blend: None,
        }
    }
}

/// What a generation produced.
#[derive(Debug)]
pub struct ImageOutput {
    /// The images, `batch` of them.
    pub images: Vec<RgbImage>,
    /// The same as `[b, h, w, 3]` floats in [0, 1] (before 8-bit rounding).
    pub pixels: Tensor,
    /// What the generation used (prompt, sampler, steps, guidance, seed, size, model), as
    /// written into the pictures' metadata.
    pub info: GenerationInfo,
    /// The model calls made (steps actually run, times the sampler's order; img2img runs fewer).
    pub denoise_steps: usize,
    /// Seconds spent in the denoising loop.
    pub denoise_seconds: f64,
    /// Seconds for the whole call.
    pub total_seconds: f64,
}
