//! The Stable Diffusion pipelines on the shared core: txt2img, img2img and inpainting
//! (9-channel inpainting UNets and the 4-channel blend) for SD 1.x / 2.x, SDXL, Turbo and
//! LCM models, with the exact semantics of the diffusers pipelines (prompt encoding, CFG
//! and guidance rescale, noise order, img2img start, mask handling, VAE scaling).
//! Every sampler is a `stipple_core` scheduler; noise comes from a `NoiseSource`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use stipple_core::config::SchedulerConfig;
use stipple_core::guidance::Guidance;
use stipple_core::noise::NoiseSource;
use stipple_core::progress::{CancelToken, Progress};
use stipple_core::samplers::{self, SamplerSpec, Scheduler};
use stipple_core::timesteps::img2img_start;

use crate::error::{Result, invalid, model_err, read_json};
use crate::files::PipelineFolder;
use crate::image_io;
use crate::metadata::GenerationInfo;
use crate::models::clip::{ClipTextConfig, ClipTextModel};
use crate::models::embeddings::guidance_embedding;
use crate::models::taesd::TaesdDecoder;
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::single_file::{CheckpointFamily, LdmCheckpoint};
use crate::tokenizer::ClipTokenizer;
pub use crate::request::{ImageOutput, ImageRequest, PromptBlend};
use crate::unet_denoiser::{Conditioning, KnownRegion, StartLatents, UNetDenoiser};

/// A text encoder with its tokenizer.
struct TextStack {
    tokenizer: ClipTokenizer,
    encoder: ClipTextModel,
}

/// Which family of model a pipeline is, for defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// SD 1.x / 2.x (one CLIP encoder).
    StableDiffusion,
    /// SDXL (two encoders, size conditioning).
    Xl,
}

/// A loaded pipeline.
pub struct StableDiffusion {
    text: Option<TextStack>,
    text_2: Option<TextStack>,
    /// The denoising network.
    pub unet: UNet2DConditionModel,
    /// The autoencoder.
    pub vae: AutoencoderKL,
    /// When set, the final images are decoded with TAESD instead of the VAE (much faster,
    /// slightly softer).
    pub fast_decoder: Option<TaesdDecoder>,
    scheduler_config: SchedulerConfig,
    scheduler_class: String,
    force_zeros_for_empty_prompt: bool,
    name: String,
    turbo: bool,
    device: Device,
}

fn load_vb(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    // each tensor read straight into its own buffer (no mapped copy held alongside), once
    // the memory for them is known to be there
    let files = stipple_core::weights::SafetensorsFiles::open(paths)?;
    if device.is_cpu() {
        let what = paths.first().map(|p| p.display().to_string()).unwrap_or_default();
        files.check_fits(&what, dtype)?;
    }
    Ok(files.into_var_builder(dtype, device))
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| model_err(format!("{}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config_value(path: &Path) -> Result<serde_json::Value> {
    read_json(path)
}

impl StableDiffusion {
    /// Loads a diffusers pipeline folder. `dtype` is the weights' compute type (f32 or f16
    /// on CPU; f16 / bf16 on CUDA).
    pub fn load(root: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_config(root, None, device, dtype)
    }

    /// Loads a pipeline folder (or hub id), or a single-file checkpoint (`.safetensors` with the
    /// original LDM key names) whose configs, tokenizers and scheduler come from
    /// `config`, a diffusers folder of the same architecture (its weights are not read).
    pub fn load_with_config(model: &Path, config: Option<&Path>, device: &Device, dtype: DType) -> Result<Self> {
        let model = &crate::files::resolve_pipeline(model)?;
        if device.is_cpu() && dtype == DType::BF16 {
            return Err(invalid("bf16 convolutions are not supported on the CPU; use f32 or f16"));
        }
        // a single file alone: its configs and tokenizers, derived from its shapes, are
        // written to a temporary pipeline folder that is removed once loading is done
        let mut derived_dir = None;
        let (folder, ckpt) = if model.is_file() {
            // (opening refuses a pickle checkpoint)
            let ckpt = LdmCheckpoint::open(model)?;
            let config = match config {
                Some(config) => config.to_path_buf(),
                None => {
                    let dir = TempDir::new("stipple-single-file")?;
                    ckpt.derive_pipeline()?.write_folder(&dir.0)?;
                    derived_dir.insert(dir).0.clone()
                }
            };
            (PipelineFolder::open(&config)?, Some(ckpt))
        } else {
            if config.is_some() {
                return Err(invalid("--config is for single-file checkpoints; a pipeline folder has its own configs"));
            }
            (PipelineFolder::open(model)?, None)
        };
        let root = &folder.root;
        if let Some(c) = &ckpt {
            let xl_config = folder.index.has("text_encoder_2");
            if (c.family == CheckpointFamily::Xl) != xl_config {
                return Err(model_err(format!(
                    "{} is {} checkpoint but {} is {} pipeline",
                    model.display(),
                    if c.family == CheckpointFamily::Xl { "an SDXL" } else { "an SD 1.x/2.x" },
                    root.display(),
                    if xl_config { "an SDXL" } else { "an SD 1.x/2.x" }
                )));
            }
        }
        if let (Some(c), true) = (&ckpt, device.is_cpu()) {
            c.check_fits(model, dtype)?;
        }
        let weights = |component: &str, from_ckpt: &dyn Fn(&LdmCheckpoint) -> candle_core::Result<VarBuilder<'static>>| -> Result<VarBuilder<'static>> {
            match &ckpt {
                Some(c) => Ok(from_ckpt(c)?),
                None => load_vb(&folder.weights(component)?, dtype, device),
            }
        };
        let mut text_stacks = [None, None];
        for (slot, suffix) in text_stacks.iter_mut().zip(["", "_2"]) {
            let enc = format!("text_encoder{suffix}");
            if folder.index.has(&enc) {
                let tokenizer = ClipTokenizer::from_dir(&folder.component(&format!("tokenizer{suffix}"))?)?;
                let cfg = ClipTextConfig::from_value(config_value(&folder.config(&enc)?)?)
                    .map_err(|e| model_err(format!("{}/{enc}/config.json: {e}", root.display())))?;
                let vb = weights(&enc, &|c| c.text_encoder(&enc, dtype, device))?;
                let encoder = ClipTextModel::new(&cfg, vb).map_err(|e| model_err(format!("{}: {enc}: {e}", model.display())))?;
                *slot = Some(TextStack { tokenizer, encoder });
            }
        }
        let [text, text_2] = text_stacks;
        if text.is_none() && text_2.is_none() {
            return Err(model_err(format!("{}: the pipeline has no text encoder", root.display())));
        }
        let unet_cfg: UNetConfig = serde_json::from_value(config_value(&folder.config("unet")?)?)
            .map_err(|e| model_err(format!("{}/unet/config.json: {e}", root.display())))?;
        let vb = weights("unet", &|c| c.unet(&unet_cfg, dtype, device))?;
        let unet = UNet2DConditionModel::new(&unet_cfg, vb).map_err(|e| model_err(format!("{}: unet: {e}", model.display())))?;
        let vae_cfg: VaeConfig = serde_json::from_value(config_value(&folder.config("vae")?)?)
            .map_err(|e| model_err(format!("{}/vae/config.json: {e}", root.display())))?;
        let vb = weights("vae", &|c| c.vae(&vae_cfg, dtype, device))?;
        let vae = AutoencoderKL::new(&vae_cfg, vb).map_err(|e| model_err(format!("{}: vae: {e}", model.display())))?;
        let scheduler_config = SchedulerConfig::from_file(folder.config("scheduler")?)?;
        let scheduler_class = scheduler_config.class_name.clone().unwrap_or_else(|| "EulerDiscreteScheduler".into());
        let name = match &ckpt {
            Some(_) => model.file_stem(),
            None => model.file_name(),
        }
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
        let turbo = name.to_ascii_lowercase().contains("turbo")
            || folder.index.name_or_path.as_deref().is_some_and(|n| n.to_ascii_lowercase().contains("turbo"));
        Ok(Self {
            text,
            text_2,
            unet,
            vae,
            fast_decoder: None,
            scheduler_config,
            scheduler_class,
            force_zeros_for_empty_prompt: folder.index.force_zeros_for_empty_prompt.unwrap_or(false),
            name,
            turbo,
            device: device.clone(),
        })
    }

    /// SD 1.x/2.x or SDXL.
    pub fn kind(&self) -> ModelKind {
        if self.unet.config.has_text_time() { ModelKind::Xl } else { ModelKind::StableDiffusion }
    }

    /// The folder name (used in metadata).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the UNet is LCM-distilled (guidance goes in as an embedding, no CFG).
    pub fn is_lcm(&self) -> bool {
        self.unet.config.time_cond_proj_dim.is_some()
    }

    /// Whether this is a Turbo (adversarially distilled, 1-step) model: its folder or
    /// recorded hub name says `turbo`.
    pub fn is_turbo(&self) -> bool {
        self.turbo
    }

    /// Default steps: 1 for Turbo models, 4 for LCM, else 30.
    pub fn default_steps(&self) -> usize {
        if self.turbo {
            1
        } else if self.is_lcm() || self.scheduler_class == "LCMScheduler" {
            4
        } else {
            30
        }
    }

    /// Default guidance: 0 (off) for Turbo and LCM-scheduler models, 8.5 for LCM-distilled
    /// UNets (whose guidance is an embedding, diffusers' default), else 7.5.
    pub fn default_guidance(&self) -> f64 {
        if self.turbo {
            0.0
        } else if self.is_lcm() {
            8.5
        } else if self.scheduler_class == "LCMScheduler" {
            0.0
        } else {
            7.5
        }
    }

    /// The model's own sampler (from `scheduler_config.json`).
    pub fn default_sampler(&self) -> Result<SamplerSpec> {
        Ok(SamplerSpec::for_class(&self.scheduler_class, &self.scheduler_config)?)
    }

    /// Pixels per latent pixel.
    pub fn vae_factor(&self) -> usize {
        self.vae.config.spatial_factor()
    }

    /// Channels of the latents (4 for SD 1.x / 2.x / XL).
    pub fn latent_channels(&self) -> usize {
        self.vae.config.latent_channels
    }

    /// The model's native output size.
    pub fn native_size(&self) -> usize {
        self.unet.config.sample_size.unwrap_or(64) * self.vae_factor()
    }

    /// The device the pipeline runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Text context (and SDXL's pooled embedding) for one prompt, repeated `batch` times.
    fn encode_prompt(&self, prompt: &str, batch: usize) -> Result<(Tensor, Option<Tensor>)> {
        let one = match (&self.text, &self.text_2, self.kind()) {
            (Some(t), None, ModelKind::StableDiffusion) | (Some(t), Some(_), ModelKind::StableDiffusion) => {
                let ids = t.tokenizer.encode(prompt)?;
                (t.encoder.forward(&[ids], &self.device)?.last_hidden, None)
            }
            (_, _, ModelKind::Xl) => {
                let mut parts = Vec::new();
                let mut pooled = None;
                for t in [&self.text, &self.text_2].into_iter().flatten() {
                    let ids = t.tokenizer.encode(prompt)?;
                    let out = t.encoder.forward(&[ids], &self.device)?;
                    parts.push(out.penultimate);
                    pooled = Some(out.pooled);
                }
                (Tensor::cat(&parts, 2)?, pooled)
            }
            (None, _, ModelKind::StableDiffusion) => return Err(model_err("SD 1.x/2.x pipelines need text_encoder/")),
        };
        let rep = |t: Tensor| -> Result<Tensor> {
            let mut shape = vec![batch];
            shape.extend(&t.dims()[1..]);
            Ok(t.broadcast_as(shape)?.contiguous()?)
        };
        Ok((rep(one.0)?, one.1.map(rep).transpose()?))
    }

    /// Generates images. `noise` supplies every random draw in diffusers' order (initial
    /// noise, VAE posterior samples, ancestral noise); `progress` receives the latents after
    /// each step; `cancel` stops the run between steps.
    pub fn generate(
        &self,
        req: &ImageRequest,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress<Tensor>,
        cancel: &CancelToken,
    ) -> Result<ImageOutput> {
        let started = Instant::now();
        req.validate()?;
        let (width, height) = self.output_size(req)?;
        let steps = req.steps.unwrap_or_else(|| self.default_steps());
        let guidance_scale = req.guidance.unwrap_or_else(|| self.default_guidance());
        let spec = match req.sampler {
            Some(s) => s,
            None => self.default_sampler()?,
        };
        let mut scheduler = spec.build(&self.scheduler_config, steps, None)?;
        let guidance = Guidance { scale: guidance_scale, rescale: req.guidance_rescale };
        let guided = guidance.is_active() && !self.is_lcm();
        // refused before anything large is allocated when it cannot fit
        if self.device.is_cpu() {
            stipple_core::memory::check(&self.estimate(req)?)?;
        }
        let lc = self.latent_channels();
        let inpainting = self.unet.config.in_channels == 2 * lc + 1;
        if inpainting && req.mask.is_none() {
            return Err(invalid(format!("this is an inpainting model ({}-channel UNet): give --init-image and --mask", 2 * lc + 1)));
        }
        if !inpainting && self.unet.config.in_channels != lc {
            return Err(model_err(format!("the UNet takes {} input channels but the VAE's latents have {lc}", self.unet.config.in_channels)));
        }
        let conditioning = self.conditioning(req, guided, guidance_scale, (width, height))?;
        let start_latents = self.prepare_latents(req, (width, height), steps, scheduler.as_ref(), guided, inpainting, noise)?;
        let start = start_latents.start;
        let mut denoiser = UNetDenoiser { unet: &self.unet, conditioning, guidance, guided, mask_channels: start_latents.mask_channels, known_region: start_latents.known_region };
        let loop_start = Instant::now();
        let latents = samplers::sample(scheduler.as_mut(), start_latents.latents, start, &mut denoiser, noise, progress, cancel)?;
        let denoise_seconds = loop_start.elapsed().as_secs_f64();
        let (pixels, mut images) = self.decode_latents(&latents)?;
        if let (true, Some(init), Some(mask)) = (req.keep_unmasked, &req.init_image, &req.mask) {
            for img in &mut images {
                image_io::keep_unmasked(img, init, mask);
            }
        }
        let info = GenerationInfo {
            prompt: req.prompt.clone(),
            negative_prompt: req.negative_prompt.clone(),
            steps,
            sampler: spec.to_string(),
            guidance: guidance_scale,
            guidance_rescale: req.guidance_rescale,
            seed: noise.seed(),
            width,
            height,
            model: self.name().to_string(),
            strength: req.init_image.as_ref().map(|_| req.strength),
        };
        Ok(ImageOutput {
            images,
            pixels,
            info,
            denoise_steps: scheduler.timesteps().len() - start,
            denoise_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The UNet's conditioning for a request: text embeddings (blended towards a second
    /// prompt when asked; `[uncond; cond]` when `guided`), SDXL's pooled embeddings and
    /// size ids, LCM's guidance embedding.
    fn conditioning(&self, req: &ImageRequest, guided: bool, guidance_scale: f64, (width, height): (usize, usize)) -> Result<Conditioning> {
        let b = req.batch;
        let (mut cond, mut pooled) = if req.batch_prompts.is_empty() {
            self.encode_prompt(&req.prompt, b)?
        } else {
            // each image its own prompt, encoded alone (as its own run would encode it)
            let each = req.batch_prompts.iter().map(|p| self.encode_prompt(p, 1)).collect::<Result<Vec<_>>>()?;
            let conds: Vec<Tensor> = each.iter().map(|(c, _)| c.clone()).collect();
            let pooled: Option<Vec<Tensor>> = each.iter().map(|(_, p)| p.clone()).collect();
            (Tensor::cat(&conds, 0)?, pooled.map(|p| Tensor::cat(&p, 0)).transpose()?)
        };
        if let Some(blend) = &req.prompt_blend {
            let (other, other_pooled) = self.encode_prompt(&blend.prompt, b)?;
            let lerp = |a: &Tensor, b: &Tensor| -> Result<Tensor> { Ok((a + ((b - a)? * blend.weight)?)?) };
            cond = lerp(&cond, &other)?;
            pooled = match (pooled, other_pooled) {
                (Some(p), Some(o)) => Some(lerp(&p, &o)?),
                (p, _) => p,
            };
        }
        let (context, text_embeds) = if guided {
            let zero_negative = self.kind() == ModelKind::Xl && req.negative_prompt.is_none() && self.force_zeros_for_empty_prompt;
            let (neg, neg_pooled) = if zero_negative {
                (cond.zeros_like()?, pooled.as_ref().map(|p| p.zeros_like()).transpose()?)
            } else {
                self.encode_prompt(req.negative_prompt.as_deref().unwrap_or(""), b)?
            };
            let pooled = match (neg_pooled, pooled) {
                (Some(n), Some(p)) => Some(Tensor::cat(&[n, p], 0)?),
                _ => None,
            };
            (Tensor::cat(&[neg, cond], 0)?, pooled)
        } else {
            (cond, pooled)
        };
        let rows = if guided { 2 * b } else { b };
        let time_ids = vec![[height as f64, width as f64, 0.0, 0.0, height as f64, width as f64]; rows];
        let timestep_cond = if self.is_lcm() {
            let dim = self.unet.config.time_cond_proj_dim.unwrap_or(0);
            Some(guidance_embedding(guidance_scale - 1.0, b, dim, &self.device, self.unet.dtype())?)
        } else {
            None
        };
        Ok(Conditioning { context, text_embeds, time_ids, timestep_cond })
    }

    /// The latents the loop starts from, in diffusers' order of random draws: pure noise
    /// (txt2img), the init image noised to the start step (img2img), or for inpainting also
    /// the known region to blend back (4-channel UNets) or the mask channels (9-channel).
    #[allow(clippy::too_many_arguments)]
    fn prepare_latents(
        &self,
        req: &ImageRequest,
        (width, height): (usize, usize),
        steps: usize,
        scheduler: &dyn Scheduler,
        guided: bool,
        inpainting: bool,
        noise: &mut dyn NoiseSource,
    ) -> Result<StartLatents> {
        let (dev, f, b) = (&self.device, self.vae_factor(), req.batch);
        let lat_shape = (b, self.latent_channels(), height / f, width / f);
        let init = match &req.init_image {
            Some(img) => Some(image_io::image_to_tensor(img, width, height, dev)?),
            None => None,
        };
        let mut first_noise = req.latents.clone();
        let mut draw = |noise: &mut dyn NoiseSource, like: &Tensor| -> Result<Tensor> {
            match first_noise.take() {
                Some(l) => {
                    if l.dims() != like.dims() {
                        return Err(invalid(format!("--latents has shape {:?}, expected {:?}", l.dims(), like.dims())));
                    }
                    Ok(l.to_dtype(DType::F32)?.to_device(dev)?)
                }
                None => Ok(noise.randn_like(like)?),
            }
        };
        let template = Tensor::zeros(lat_shape, DType::F32, dev)?;
        let strength = if init.is_some() { req.strength } else { 1.0 };
        let strength_max = strength >= 1.0;
        let mut out = StartLatents { latents: template.clone(), start: 0, mask_channels: None, known_region: None };
        out.latents = match (&init, &req.mask) {
            (None, _) => (draw(noise, &template)? * scheduler.init_noise_sigma())?,
            (Some(image), None) => {
                out.start = img2img_start(steps, strength, scheduler.order())?;
                self.check_start(steps, strength, out.start, scheduler)?;
                let image_latents = self.encode_image(image, b, noise)?;
                let eps = draw(noise, &template)?;
                scheduler.add_noise(&image_latents, &eps, out.start)?
            }
            (Some(image), Some(mask_img)) => {
                out.start = img2img_start(steps, strength, scheduler.order())?;
                self.check_start(steps, strength, out.start, scheduler)?;
                let mask = image_io::mask_to_tensor(mask_img, width, height, dev)?;
                // diffusers' prepare_latents: the image is encoded when the blend needs it or
                // when denoising does not start from pure noise.
                let image_latents = if !inpainting || !strength_max { Some(self.encode_image(image, b, noise)?) } else { None };
                let eps = draw(noise, &template)?;
                let latents = match (&image_latents, strength_max) {
                    (Some(il), false) => scheduler.add_noise(il, &eps, out.start)?,
                    _ => (&eps * scheduler.init_noise_sigma())?,
                };
                // prepare_mask_latents: the masked image is always encoded (one more draw).
                let keep = mask.affine(-1.0, 1.0)?;
                let masked = image.broadcast_mul(&keep)?;
                let masked_latents = self.encode_image(&masked, b, noise)?;
                let small_mask = mask.upsample_nearest2d(height / f, width / f)?.broadcast_as((b, 1, height / f, width / f))?.contiguous()?;
                if inpainting {
                    let e = Tensor::cat(&[&small_mask, &masked_latents], 1)?;
                    out.mask_channels = Some(if guided { Tensor::cat(&[&e, &e], 0)? } else { e });
                } else if let Some(il) = image_latents {
                    out.known_region = Some(KnownRegion { original: il, noise: eps, mask: small_mask });
                }
                latents
            }
        };
        Ok(out)
    }

    /// Pictures of latents `[b, c, h/f, w/f]` (through the fast decoder when one is set):
    /// `[b, h, w, 3]` floats in [0, 1] and 8-bit images. The studio's step previews of small
    /// models use it too.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<(Tensor, Vec<RgbImage>)> {
        let latents = latents.to_dtype(self.unet.dtype())?;
        let decoded = match &self.fast_decoder {
            Some(taesd) => taesd.decode(&latents)?,
            None => self.vae.decode(&self.vae.unscale_latents(&latents)?)?,
        };
        let pixels = image_io::to_unit_hwc(&decoded)?;
        let images = image_io::to_rgb_images(&pixels)?;
        Ok((pixels, images))
    }

    /// The memory `req` will need at its peak (see [`crate::memory`]), known before anything
    /// is allocated; [`StableDiffusion::generate`] refuses requests that do not fit.
    pub fn estimate(&self, req: &ImageRequest) -> Result<stipple_core::memory::Estimate> {
        let (width, height) = self.output_size(req)?;
        let scale = req.guidance.unwrap_or_else(|| self.default_guidance());
        let guided = Guidance { scale, rescale: req.guidance_rescale }.is_active() && !self.is_lcm();
        let unet_batch = req.batch * if guided { 2 } else { 1 };
        Ok(crate::memory::generation(&self.unet.config, &self.vae.config, self.vae_factor(), req.batch, unet_batch, (width, height), req.init_image.is_some()))
    }

    /// The output size: the request's, else the init image's (rounded down to a multiple of
    /// 8), else the model's native size; both must be positive multiples of 8.
    pub fn output_size(&self, req: &ImageRequest) -> Result<(usize, usize)> {
        let (iw, ih) = match &req.init_image {
            Some(img) => ((img.width() as usize) / 8 * 8, (img.height() as usize) / 8 * 8),
            None => (self.native_size(), self.native_size()),
        };
        let (w, h) = (req.width.unwrap_or(iw), req.height.unwrap_or(ih));
        for (name, v) in [("width", w), ("height", h)] {
            if v == 0 || v % 8 != 0 || v % self.vae_factor() != 0 {
                return Err(invalid(format!("{name} must be a positive multiple of 8, got {v}")));
            }
            if v > 8192 {
                return Err(invalid(format!("{name} {v} is larger than 8192 pixels")));
            }
        }
        Ok((w, h))
    }

    /// diffusers runs `int(steps * strength)` steps of img2img: none is an error here.
    fn check_start(&self, steps: usize, strength: f64, start: usize, scheduler: &dyn Scheduler) -> Result<()> {
        if (steps as f64 * strength) as usize == 0 || start >= scheduler.timesteps().len() {
            return Err(invalid(format!("strength {strength} with {steps} steps runs no denoising step (int(steps x strength) must be at least 1)")));
        }
        Ok(())
    }

    /// `[1, 3, H, W]` in [-1, 1] -> scaled latents sampled from the posterior (one noise
    /// draw), repeated to the batch.
    fn encode_image(&self, image: &Tensor, batch: usize, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        let dist = self.vae.encode(&image.to_dtype(self.unet.dtype())?)?;
        let mean = dist.mean.to_dtype(DType::F32)?;
        let eps = noise.randn_like(&mean)?;
        let sample = (mean + (dist.std.to_dtype(DType::F32)? * eps)?)?;
        let scaled = self.vae.scale_latents(&sample)?;
        let mut shape = scaled.dims().to_vec();
        shape[0] = batch;
        Ok(scaled.broadcast_as(shape)?.contiguous()?)
    }
}
