//! `stipple image`: txt2img, img2img and inpainting with Stable Diffusion-family models,
//! PNG output with A1111-compatible metadata, live previews and a progress bar.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use clap::Args;
use serde_json::json;
use stipple_core::noise::PortableRng;
use stipple_core::params::Range;
use stipple_core::progress::{CancelToken, Progress, StepEvent};
use stipple_core::samplers::{SAMPLER_NAMES, SamplerSpec, SigmaSpacing};
use stipple_image::metadata::write_png;
use stipple_image::models::taesd::TaesdDecoder;
use stipple_image::preview::Previewer;
use stipple_image::{ImageRequest, image_io};

use super::Global;
use super::progress::BarProgress;

/// `stipple image` arguments.
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The prompt (or give it with --prompt).
    #[arg(value_name = "PROMPT", conflicts_with = "prompt")]
    pub prompt_arg: Option<String>,
    /// Model: a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/),
    /// a hub id (owner/name[@revision], fetched into the Hugging Face cache), or a single-file
    /// .safetensors checkpoint (A1111 / original layout: SD 1.x, 2.x, SDXL, recognised from its
    /// tensors). Default: the embedded stipple-mini emoji model (32 x 32).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// For a single-file checkpoint whose architecture is not recognised from its tensors: a
    /// diffusers folder of the same architecture that provides the configs, tokenizers and
    /// scheduler (its weights are not read).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The prompt.
    #[arg(long)]
    pub prompt: Option<String>,
    /// What to steer away from.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Denoising steps (default: 30; 1 for Turbo models, 4 for LCM).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale; guidance runs above 1 (default: 7.5; 0 for Turbo, 8.5 embedded for LCM).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Guidance rescale phi in [0, 1] (fixes over-exposure of v-prediction / zero-SNR models).
    #[arg(long, default_value_t = 0.0)]
    pub guidance_rescale: f64,
    /// Sampler (default: the model's scheduler_config.json).
    #[arg(long, help = format!("Sampler (default: the model's own): {}", SAMPLER_NAMES.join(", ")))]
    pub scheduler: Option<String>,
    /// Sigma spacing override for Euler / Heun / DPM++ / UniPC: karras or exponential.
    #[arg(long)]
    pub sigmas: Option<SigmaSpacing>,
    /// Width in pixels, a multiple of 8 (default: the init image's, else the model's native size).
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels, a multiple of 8.
    #[arg(long)]
    pub height: Option<usize>,
    /// Images per run (denoised together).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Runs, each with the next seed.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Initial noise as a .npy array [batch, 4, height/8, width/8] of unit normals (diffusers' `latents=`).
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Source image for img2img or inpainting.
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// How much of the init image to repaint, 0..1 (1: start from pure noise).
    #[arg(long, default_value_t = 0.8)]
    pub strength: f64,
    /// Inpainting mask (white: repaint, black: keep); needs --init-image.
    #[arg(long, requires = "init_image")]
    pub mask: Option<PathBuf>,
    /// Keep the pixels outside the mask exactly as in the init image (A1111's overlay).
    #[arg(long, requires = "mask")]
    pub keep_unmasked: bool,
    /// TAESD (a diffusers AutoencoderTiny folder or taesd_decoder.safetensors) for sharp per-step previews.
    #[arg(long)]
    pub taesd: Option<PathBuf>,
    /// Decode the final image with TAESD too (faster, slightly softer).
    #[arg(long, requires = "taesd")]
    pub taesd_decode: bool,
    /// Write a preview of the first image here after every step.
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Output PNG (several images: NAME-1.png, NAME-2.png, ...). Default: image-SEED.png.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub overwrite: bool,
    /// Leave the generation parameters out of the PNG.
    #[arg(long)]
    pub no_metadata: bool,
}

/// Progress bar plus optional preview file (also drives `stipple audio`'s spectrogram previews).
pub(crate) struct ImageProgress<'a> {
    pub(crate) bar: BarProgress,
    pub(crate) preview: Option<(Previewer<'a>, &'a Path)>,
    pub(crate) error: Option<String>,
}

impl Progress<Tensor> for ImageProgress<'_> {
    fn on_step(&mut self, event: &StepEvent<'_, Tensor>) {
        Progress::<Tensor>::on_step(&mut self.bar, event);
        if let (Some((previewer, path)), Some(latents)) = (&self.preview, event.preview) {
            let written = previewer.preview(latents).map_err(anyhow::Error::from).and_then(|img| {
                write_png(path, &img, None, true)?;
                Ok(())
            });
            if let Err(e) = written {
                self.error.get_or_insert_with(|| format!("preview: {e:#}"));
            }
        }
    }
}

/// Output paths for `n` images: the given name (numbered when n > 1), or image-SEED.png
/// numbered past existing files.
fn output_paths(g: &Global, out: Option<&Path>, seed: u64, n: usize, overwrite: bool) -> Result<Vec<PathBuf>> {
    Ok(match out {
        Some(p) if n == 1 => vec![g.output(p)?],
        Some(p) => {
            let p = g.output(p)?;
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
            let ext = p.extension().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "png".into());
            (1..=n).map(|i| p.with_file_name(format!("{stem}-{i}.{ext}"))).collect()
        }
        None => {
            let mut paths = Vec::with_capacity(n);
            let mut k = 0;
            while paths.len() < n {
                let name = if k == 0 { format!("image-{seed}.png") } else { format!("image-{seed}-{k}.png") };
                k += 1;
                let p = g.output(Path::new(&name))?;
                if overwrite || !p.exists() {
                    paths.push(p);
                }
            }
            paths
        }
    })
}

/// `--scheduler` with `--sigmas` applied.
fn sampler_choice(args: &ImageArgs) -> Result<Option<SamplerSpec>> {
    let sampler: Option<SamplerSpec> = args.scheduler.as_deref().map(str::parse).transpose()?;
    match (sampler, args.sigmas) {
        (Some(base), Some(sig)) => Ok(Some(SamplerSpec { sigmas: sig, ..base })),
        (None, Some(_)) => bail!("--sigmas needs --scheduler"),
        (s, None) => Ok(s),
    }
}

/// The request the arguments describe (init image, mask and fixed latents read from their files).
fn image_request(args: &ImageArgs, prompt: String, sampler: Option<SamplerSpec>) -> Result<ImageRequest> {
    let open = |p: &PathBuf| image_io::open(p);
    let init_image = args.init_image.as_ref().map(open).transpose()?;
    let mask = args.mask.as_ref().map(open).transpose()?;
    let latents = match &args.latents {
        Some(p) => Some(image_io::read_npy(p)?),
        None => None,
    };
    Ok(ImageRequest {
        prompt,
        negative_prompt: args.negative_prompt.clone(),
        steps: args.steps,
        guidance: args.guidance,
        guidance_rescale: args.guidance_rescale,
        sampler,
        width: args.width,
        height: args.height,
        batch: args.batch,
        init_image,
        strength: args.strength,
        mask,
        keep_unmasked: args.keep_unmasked,
        latents,
        prompt_blend: None,
        batch_prompts: Vec::new(),
    })
}

/// Runs per command (`--count`).
const COUNT: Range = Range::int(1, 10_000);

/// Run `stipple image`; returns the JSON summary.
pub fn run(g: &Global, args: &ImageArgs) -> Result<serde_json::Value> {
    let prompt = args.prompt.clone().or_else(|| args.prompt_arg.clone()).context("give a prompt (stipple image \"a red fox\" or --prompt)")?;
    let model_path = match &args.model {
        Some(m) => m.clone(),
        None => stipple::defaults::model("image")?,
    };
    if !COUNT.contains(args.count as f64) {
        bail!("count (--count) must be {}, got {}", COUNT.describe(), args.count);
    }
    if args.latents.is_some() && args.count > 1 {
        bail!("--latents fixes the noise of one run; use --count 1");
    }
    let sampler = sampler_choice(args)?;
    // Check the settings and outputs before any work, so mistakes cost nothing.
    let req = image_request(args, prompt.clone(), sampler)?;
    req.validate()?;
    let first_seed = g.seed.unwrap_or_else(stipple_core::noise::random_seed);
    let paths = output_paths(g, args.out.as_deref(), first_seed, args.batch * args.count, args.overwrite)?;
    let preview = args.preview.as_deref().map(|p| g.output(p)).transpose()?;
    if !args.overwrite {
        if let Some(p) = paths.iter().find(|p| p.exists()) {
            bail!("{} already exists (pass --overwrite to replace it, or choose another --out)", p.display());
        }
    }
    let load_start = Instant::now();
    // TAESD decodes the final images when asked (part of the pipeline); otherwise it only draws previews.
    let pipe = g.models.image(&model_path, args.config.as_deref(), args.taesd.as_deref().filter(|_| args.taesd_decode), &g.device, g.dtype)?;
    let preview_taesd = match (&args.taesd, args.taesd_decode) {
        (Some(p), false) => Some(TaesdDecoder::load(p, &g.device, g.dtype)?),
        _ => None,
    };
    let load_seconds = load_start.elapsed().as_secs_f64();
    let (width, height) = pipe.output_size(&req)?;
    let started = Instant::now();
    let mut written = Vec::new();
    let mut seeds = Vec::new();
    let (mut denoise_seconds, mut model_calls) = (0.0, 0usize);
    let mut last = None;
    for run in 0..args.count {
        let seed = first_seed.wrapping_add(run as u64);
        let previewer = preview.as_deref().map(|p| (Previewer::for_pipeline(&pipe, preview_taesd.as_ref()), p));
        let label = if args.count > 1 { format!("image {}/{}", run + 1, args.count) } else { "image".into() };
        let mut progress = ImageProgress { bar: g.step_bar(&label), preview: previewer, error: None };
        let mut rng = PortableRng::new(seed);
        let out = pipe.generate(&req, &mut rng, &mut progress, &CancelToken::new())?;
        progress.bar.finish();
        if let (Some(e), false) = (progress.error, g.quiet()) {
            eprintln!("warning: {e}");
        }
        denoise_seconds += out.denoise_seconds;
        model_calls += out.denoise_steps;
        for img in &out.images {
            let path = &paths[written.len()];
            write_png(path, img, (!args.no_metadata).then_some(&out.info), args.overwrite)?;
            if !g.quiet() {
                eprintln!("wrote {}", path.display());
            }
            written.push(path.clone());
            seeds.push(seed);
        }
        last = Some(out);
    }
    let out = last.context("no run")?;
    let elapsed = started.elapsed().as_secs_f64();
    let per_step = if model_calls > 0 { denoise_seconds / model_calls as f64 } else { 0.0 };
    if !g.quiet() {
        eprintln!(
            "{} image(s) {width}x{height}, {} steps of {}, seed {first_seed}: {:.2} s ({per_step:.3} s per model call)",
            written.len(),
            out.info.steps,
            out.info.sampler,
            elapsed
        );
    }
    Ok(json!({
        "paths": written,
        "seed": first_seed,
        "seeds": seeds,
        "steps": out.info.steps,
        "model_calls": model_calls,
        "scheduler": out.info.sampler,
        "guidance": out.info.guidance,
        "width": width,
        "height": height,
        "model": pipe.name(),
        "elapsed_ms": elapsed * 1e3,
        "load_ms": load_seconds * 1e3,
        "seconds_per_step": per_step,
    }))
}

/// What a job shares with the jobs it can be made together with as one model batch
/// (`stipple batch`): everything but its prompt, seed and output. `None` for a job that
/// runs alone (several images or runs of its own, an init image, a mask, fixed latents,
/// previews, TAESD).
pub fn batch_key(args: &ImageArgs) -> Option<String> {
    let alone = args.batch != 1 || args.count != 1 || args.init_image.is_some() || args.mask.is_some() || args.latents.is_some() || args.preview.is_some() || args.taesd.is_some();
    let has_prompt = args.prompt.is_some() || args.prompt_arg.is_some();
    (!alone && has_prompt).then(|| {
        format!(
            "{:?}",
            (&args.model, &args.config, &args.negative_prompt, args.steps, args.guidance, args.guidance_rescale, &args.scheduler, args.sigmas, args.width, args.height, args.no_metadata)
        )
    })
}

/// Makes jobs with the same [`batch_key`] as one model batch: each image from its own
/// prompt and its own seed's noise ([`stipple_core::noise::PerSample`]), written with its
/// own metadata, as its run alone would write it. Only the jobs marked in `write` are
/// written (the others were done before: a group is always made whole, so a resumed
/// batch computes what an uninterrupted one did). Returns each written job's summary.
pub fn run_batched(g: &Global, jobs: &[&ImageArgs], seeds: &[u64], write: &[bool]) -> Result<Vec<Option<serde_json::Value>>> {
    let first = jobs.first().context("no jobs")?;
    let prompts: Vec<String> = jobs.iter().map(|a| a.prompt.clone().or_else(|| a.prompt_arg.clone()).unwrap_or_default()).collect();
    let model_path = match &first.model {
        Some(m) => m.clone(),
        None => stipple::defaults::model("image")?,
    };
    let mut req = image_request(first, prompts[0].clone(), sampler_choice(first)?)?;
    (req.batch, req.batch_prompts) = (jobs.len(), prompts.clone());
    req.validate()?;
    let paths: Vec<PathBuf> = jobs.iter().zip(seeds).map(|(a, &seed)| g.output(&a.out.clone().unwrap_or_else(|| PathBuf::from(format!("image-{seed}.png"))))).collect::<Result<_>>()?;
    for ((a, p), &w) in jobs.iter().zip(&paths).zip(write) {
        if w && !a.overwrite && p.exists() {
            bail!("{} already exists (pass --overwrite to replace it, or choose another --out)", p.display());
        }
    }
    let pipe = g.models.image(&model_path, first.config.as_deref(), None, &g.device, g.dtype)?;
    let (width, height) = pipe.output_size(&req)?;
    let started = Instant::now();
    let mut progress = g.step_bar(&format!("{} images together", jobs.len()));
    let mut noise = stipple_core::noise::PerSample { sources: seeds.iter().map(|&s| PortableRng::new(s)).collect() };
    let out = pipe.generate(&req, &mut noise, &mut progress, &CancelToken::new())?;
    progress.finish();
    let each_ms = started.elapsed().as_secs_f64() * 1e3 / jobs.len() as f64;
    let mut summaries = Vec::new();
    for (i, a) in jobs.iter().enumerate() {
        if !write[i] {
            summaries.push(None);
            continue;
        }
        let mut info = out.info.clone();
        (info.prompt, info.seed) = (prompts[i].clone(), Some(seeds[i]));
        write_png(&paths[i], &out.images[i], (!a.no_metadata).then_some(&info), a.overwrite)?;
        summaries.push(Some(json!({
            "paths": [paths[i]],
            "seed": seeds[i],
            "seeds": [seeds[i]],
            "steps": info.steps,
            "model_calls": out.denoise_steps,
            "scheduler": info.sampler,
            "guidance": info.guidance,
            "width": width,
            "height": height,
            "model": pipe.name(),
            "elapsed_ms": each_ms,
            "batched_with": jobs.len(),
        })));
    }
    Ok(summaries)
}
