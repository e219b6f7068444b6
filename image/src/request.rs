//! What a generation asks for ([`ImageRequest`]) and what it gives back ([`ImageOutput`]).

use candle_core::Tensor;
use image::{DynamicImage, RgbImage};
use stipple_core::params::{Param, Range, Rule, Table};
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
    /// After inpainting, put the init image's pixels back outside the mask, so what was
    /// not masked stays exactly as it was (A1111's overlay; diffusers leaves the VAE's
    /// round trip there, slightly changed).
    pub keep_unmasked: bool,
    /// Unit-variance initial noise `[batch, 4, h/f, w/f]` (diffusers' `latents=`), used
    /// instead of the first noise draw.
    pub latents: Option<Tensor>,
    /// Conditioning moved towards a second prompt (Riffusion-style interpolation).
    pub prompt_blend: Option<PromptBlend>,
    /// One prompt per image of the batch (empty: every image gets `prompt`): different
    /// requests made as one batch (`stipple batch` joins consecutive jobs this way, with
    /// [`stipple_core::noise::PerSample`] noise so each image is what it would be alone).
    pub batch_prompts: Vec<String>,
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
            keep_unmasked: false,
            latents: None,
            prompt_blend: None,
            batch_prompts: Vec::new(),
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

/// The largest width or height, in pixels.
pub const MAX_SIDE: u64 = 8192;

/// The most images denoised together.
pub const MAX_BATCH: u64 = 64;

/// `ImageRequest`'s parameters and rules, enforced by [`ImageRequest::validate`] for the
/// CLI, batch files, the studio, the server and the API alike. What depends on the model
/// (its VAE factor, its default steps for the strength rule) is checked when generation
/// starts.
pub static PARAMS: Table<ImageRequest> = Table {
    commands: "image (ImageRequest)",
    params: &[
        Param { name: "steps", flag: "--steps", range: Range::int(1, 1000), help: "denoising steps (at most the 1000 training timesteps)", get: |r| r.steps.map(|s| s as f64), set: |r, v| r.steps = Some(v as usize) },
        Param { name: "guidance", flag: "--guidance", range: Range::closed(0.0, 100.0), help: "classifier-free guidance scale (runs above 1)", get: |r| r.guidance, set: |r, v| r.guidance = Some(v) },
        Param { name: "guidance_rescale", flag: "--guidance-rescale", range: Range::closed(0.0, 1.0), help: "guidance rescale phi", get: |r| Some(r.guidance_rescale), set: |r, v| r.guidance_rescale = v },
        Param { name: "width", flag: "--width", range: Range::int(8, MAX_SIDE), help: "width in pixels, a multiple of 8", get: |r| r.width.map(|w| w as f64), set: |r, v| r.width = Some(v as usize) },
        Param { name: "height", flag: "--height", range: Range::int(8, MAX_SIDE), help: "height in pixels, a multiple of 8", get: |r| r.height.map(|h| h as f64), set: |r, v| r.height = Some(v as usize) },
        Param { name: "batch", flag: "--batch", range: Range::int(1, MAX_BATCH), help: "images denoised together", get: |r| Some(r.batch as f64), set: |r, v| r.batch = v as usize },
        Param { name: "strength", flag: "--strength", range: Range::closed(0.0, 1.0), help: "img2img / inpainting: how much to repaint (1: from pure noise)", get: |r| Some(r.strength), set: |r, v| r.strength = v },
        Param { name: "blend_weight", flag: "", range: Range::closed(0.0, 1.0), help: "how far the conditioning moves towards the blended prompt", get: |r| r.prompt_blend.as_ref().map(|b| b.weight), set: |r, v| r.prompt_blend = Some(PromptBlend { prompt: String::new(), weight: v }) },
    ],
    rules: &[
        Rule {
            params: "width, height",
            help: "multiples of 8 (the VAE's factor; a model with a larger factor asks for multiples of it)",
            check: |r| {
                for (name, v) in [("width", r.width), ("height", r.height)] {
                    if let Some(v) = v.filter(|v| v % 8 != 0) {
                        return Err(format!("{name} (--{name}) must be a multiple of 8, got {v}"));
                    }
                }
                Ok(())
            },
            break_it: |r| r.width = Some(100),
        },
        Rule {
            params: "batch_prompts, batch",
            help: "one prompt per image of the batch, when prompts are given per image",
            check: |r| match r.batch_prompts.len() {
                0 => Ok(()),
                n if n == r.batch => Ok(()),
                n => Err(format!("{n} per-image prompts for a batch of {}", r.batch)),
            },
            break_it: |r| r.batch_prompts = vec!["a".into(), "b".into(), "c".into()],
        },
        Rule {
            params: "mask, init_image",
            help: "a mask (inpainting) needs an init image",
            check: |r| if r.mask.is_some() && r.init_image.is_none() { Err("inpainting needs an init image (--init-image) as well as a mask".into()) } else { Ok(()) },
            break_it: |r| r.mask = Some(DynamicImage::new_luma8(8, 8)),
        },
        Rule {
            params: "keep_unmasked, mask",
            help: "keeping the unmasked pixels needs a mask",
            check: |r| if r.keep_unmasked && r.mask.is_none() { Err("keep_unmasked needs a mask (--mask)".into()) } else { Ok(()) },
            break_it: |r| {
                r.keep_unmasked = true;
                r.mask = None;
            },
        },
        Rule {
            params: "strength, steps, init_image",
            help: "with an init image, int(steps x strength) >= 1: at least one step runs",
            check: |r| match (r.init_image.is_some(), r.steps) {
                (true, Some(steps)) if (steps as f64 * r.strength) < 1.0 => {
                    Err(format!("strength {} with {steps} steps runs no denoising step (int(steps x strength) must be at least 1)", r.strength))
                }
                _ => Ok(()),
            },
            break_it: |r| (r.init_image, r.steps, r.strength) = (Some(DynamicImage::new_rgb8(8, 8)), Some(4), 0.2),
        },
    ],
};

impl ImageRequest {
    /// Checks every parameter against [`PARAMS`] (ranges and interactions).
    pub fn validate(&self) -> crate::Result<()> {
        PARAMS.validate(self)?;
        Ok(())
    }
}
