//! `stipple audio`: music from text with a Riffusion-style spectrogram model (longer clips,
//! audio-to-audio, interpolation, loops), and the spectrogram codec on its own
//! (`stipple audio spectrogram IN.wav OUT.png`, `stipple audio render IN.png OUT.wav`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use stipple_audio::griffin_lim::PhaseInit;
use stipple_audio::spectrogram_image::{self, DEFAULT_MAX_VALUE};
use stipple_audio::wav::{self, WavFormat};
use stipple_audio::{MusicRequest, SpectrogramCodec, SpectrogramParams};
use stipple_core::progress::CancelToken;
use stipple_core::samplers::{SAMPLER_NAMES, SamplerSpec};
use stipple_image::preview::Previewer;

use super::Global;
use super::image::ImageProgress;

/// `stipple audio` arguments: generation, or one of the codec subcommands.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AudioArgs {
    #[command(subcommand)]
    pub convert: Option<Convert>,
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// The codec alone.
#[derive(Subcommand, Debug)]
pub enum Convert {
    /// Draw a WAV file's mel spectrogram as a Riffusion-style PNG (parameters in its EXIF).
    Spectrogram(SpectrogramArgs),
    /// Render a spectrogram PNG back to a WAV file (inverse mel + Griffin-Lim).
    Render(RenderArgs),
}

/// `stipple audio spectrogram` arguments.
#[derive(Args, Debug)]
pub struct SpectrogramArgs {
    /// Input WAV (any rate, channels averaged).
    pub input: PathBuf,
    /// Output PNG.
    pub output: PathBuf,
    /// Spectrogram parameters as JSON (default: Riffusion's).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
}

/// `stipple audio render` arguments.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Input spectrogram PNG.
    pub input: PathBuf,
    /// Output WAV.
    pub output: PathBuf,
    /// Spectrogram parameters as JSON (default: the PNG's EXIF tags, else Riffusion's).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Griffin-Lim iterations (default: the parameters', 32).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Write 32-bit float samples instead of 16-bit PCM.
    #[arg(long)]
    pub float: bool,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
}

/// `stipple audio PROMPT ...` arguments.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The prompt (or give it with --prompt).
    #[arg(value_name = "PROMPT", conflicts_with = "prompt")]
    pub prompt_arg: Option<String>,
    /// The prompt.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Model: a Riffusion-layout diffusers folder, or a hub id such as riffusion/riffusion-model-v1
    /// (fetched into the Hugging Face cache); its spectrogram_params.json, if any, sets the
    /// spectrogram parameters. Default: the embedded stipple-mini music model (16 kHz, 2.05 s
    /// windows).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// What to steer away from.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Clip length in seconds (default: one window, 5.12 s for Riffusion, or the init audio's length).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Denoising steps per window (default: the model's, 30).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (default: the model's, 7.5).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Sampler (default: the model's scheduler_config.json).
    #[arg(long, help = format!("Sampler (default: the model's own): {}", SAMPLER_NAMES.join(", ")))]
    pub scheduler: Option<String>,
    /// Audio to transform (style transfer / variations): a WAV file.
    #[arg(long)]
    pub init_audio: Option<PathBuf>,
    /// How much to repaint: of the init audio, and of the seed window when interpolating (0..1].
    #[arg(long, default_value_t = 0.75)]
    pub strength: f64,
    /// Interpolate the prompt towards this one over the clip.
    #[arg(long)]
    pub to_prompt: Option<String>,
    /// Interpolate the noise towards this seed over the clip.
    #[arg(long)]
    pub to_seed: Option<u64>,
    /// Make a seamless loop (the end flows into the start).
    #[arg(long = "loop")]
    pub looped: bool,
    /// Continue this WAV: the output is the clip with --seconds of new music crossfaded
    /// onto its end, painted on from its last quarter window.
    #[arg(long, conflicts_with_all = ["init_audio", "looped"])]
    pub continue_from: Option<PathBuf>,
    /// Write the current window's spectrogram preview to this PNG after every step.
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Output WAV (default: music-SEED.wav); the spectrogram goes next to it as .png.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write 32-bit float samples instead of 16-bit PCM.
    #[arg(long)]
    pub float: bool,
    /// Replace existing files.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `stipple audio`; returns the JSON summary.
pub fn run(g: &Global, args: &AudioArgs) -> Result<serde_json::Value> {
    match &args.convert {
        Some(Convert::Spectrogram(a)) => spectrogram(g, a),
        Some(Convert::Render(a)) => render(g, a),
        None => generate(g, &args.generate),
    }
}

fn spectrogram(g: &Global, a: &SpectrogramArgs) -> Result<serde_json::Value> {
    let output = g.output(&a.output)?;
    let params = match &a.params {
        Some(p) => SpectrogramParams::from_file(p)?,
        None => SpectrogramParams::riffusion(),
    };
    if !a.overwrite && output.exists() {
        bail!("{} already exists (pass --overwrite to replace it)", output.display());
    }
    let started = Instant::now();
    let codec = SpectrogramCodec::new(params.clone())?;
    let audio = wav::read_mono(&a.input, params.sample_rate)?;
    let (img, max) = codec.image_from_audio(&audio.samples)?;
    spectrogram_image::write_png(&output, &img, &params, max as f64, a.overwrite)?;
    let seconds = audio.samples.len() as f64 / params.sample_rate as f64;
    if !g.quiet() {
        eprintln!("wrote {} ({}x{}, {seconds:.2} s of audio)", output.display(), img.width(), img.height());
    }
    Ok(json!({ "path": output, "paths": [output], "width": img.width(), "height": img.height(), "seconds": seconds, "max_value": max, "elapsed_ms": started.elapsed().as_secs_f64() * 1e3 }))
}

fn render(g: &Global, a: &RenderArgs) -> Result<serde_json::Value> {
    let output = g.output(&a.output)?;
    let png = spectrogram_image::read_png(&a.input)?;
    let mut params = match (&a.params, png.params) {
        (Some(p), _) => SpectrogramParams::from_file(p)?,
        (None, Some(p)) => p,
        (None, None) => SpectrogramParams::riffusion(),
    };
    if let Some(n) = a.iterations {
        params.griffin_lim_iters = n;
        params.validate()?;
    }
    if !a.overwrite && output.exists() {
        bail!("{} already exists (pass --overwrite to replace it)", output.display());
    }
    let started = Instant::now();
    let codec = SpectrogramCodec::new(params.clone())?;
    let audio = codec.audio_from_image(&png.image, png.max_value.unwrap_or(DEFAULT_MAX_VALUE), PhaseInit::Random(g.seed.unwrap_or(0)))?;
    let format = if a.float { WavFormat::Float32 } else { WavFormat::Pcm16 };
    wav::write_mono(&output, &audio, params.sample_rate, format, a.overwrite)?;
    let seconds = audio.len() as f64 / params.sample_rate as f64;
    let elapsed = started.elapsed().as_secs_f64();
    if !g.quiet() {
        eprintln!("wrote {} ({seconds:.2} s at {} Hz) in {elapsed:.2} s", output.display(), params.sample_rate);
    }
    Ok(json!({ "path": output, "paths": [output], "seconds": seconds, "sample_rate": params.sample_rate, "elapsed_ms": elapsed * 1e3 }))
}

fn generate(g: &Global, a: &GenerateArgs) -> Result<serde_json::Value> {
    let prompt = match (&a.prompt_arg, &a.prompt) {
        (Some(p), _) | (None, Some(p)) => p.clone(),
        (None, None) => bail!("give a prompt: stipple audio \"PROMPT\" [--model DIR]"),
    };
    let model = match &a.model {
        Some(m) => m.clone(),
        None => stipple::defaults::model("music")?,
    };
    let sampler: Option<SamplerSpec> = a.scheduler.as_deref().map(str::parse).transpose()?;
    let seed = g.seed.unwrap_or_else(stipple_core::noise::random_seed);
    let out = g.output(&a.out.clone().unwrap_or_else(|| PathBuf::from(format!("music-{seed}.wav"))))?;
    let preview = a.preview.as_deref().map(|p| g.output(p)).transpose()?;
    let png_out = out.with_extension("png");
    if !a.overwrite {
        for p in [&out, &png_out] {
            if p.exists() {
                bail!("{} already exists (pass --overwrite to replace it, or choose another --out)", p.display());
            }
        }
    }
    // the settings are checked before any work (the init audio once the model's rate is known)
    let mut req = MusicRequest {
        prompt: prompt.clone(),
        negative_prompt: a.negative_prompt.clone(),
        seconds: a.seconds,
        steps: a.steps,
        guidance: a.guidance,
        sampler,
        seed,
        init_audio: None,
        strength: a.strength,
        to_prompt: a.to_prompt.clone(),
        to_seed: a.to_seed,
        looped: a.looped,
        continue_from: None,
    };
    req.validate()?;
    let load_start = Instant::now();
    let riff = g.models.music(&model, &g.device, g.dtype)?;
    let load_seconds = load_start.elapsed().as_secs_f64();
    let params = riff.codec().params().clone();
    if let Some(p) = &a.init_audio {
        req.init_audio = Some(wav::read_mono(p, params.sample_rate)?.samples);
    }
    if let Some(p) = &a.continue_from {
        req.continue_from = Some(wav::read_mono(p, params.sample_rate)?.samples);
        req.validate()?;
    }
    let previewer = preview.as_deref().map(|p| (Previewer::for_pipeline(&riff.pipeline, None), p));
    let mut progress = ImageProgress { bar: g.step_bar("music"), preview: previewer, error: None };
    let started = Instant::now();
    let music = riff.generate(&req, &mut progress, &CancelToken::new())?;
    progress.bar.finish();
    if let (Some(e), false) = (progress.error, g.quiet()) {
        eprintln!("warning: {e}");
    }
    let format = if a.float { WavFormat::Float32 } else { WavFormat::Pcm16 };
    wav::write_mono(&out, &music.audio, music.sample_rate, format, a.overwrite)?;
    spectrogram_image::write_png(&png_out, &music.spectrogram, &params, DEFAULT_MAX_VALUE, a.overwrite)?;
    let elapsed = started.elapsed().as_secs_f64();
    let seconds = music.audio.len() as f64 / music.sample_rate as f64;
    if !g.quiet() {
        eprintln!(
            "wrote {} and {} ({seconds:.2} s, {} window(s), seed {seed}) in {elapsed:.1} s",
            out.display(),
            png_out.display(),
            music.windows
        );
    }
    Ok(json!({
        "paths": [out],
        "spectrogram": png_out,
        "seconds": seconds,
        "sample_rate": music.sample_rate,
        "seed": seed,
        "windows": music.windows,
        "elapsed_ms": elapsed * 1e3,
        "load_ms": load_seconds * 1e3,
        "diffusion_ms": music.diffusion_seconds * 1e3,
        "render_ms": music.render_seconds * 1e3,
        "realtime_factor": elapsed / seconds.max(1e-9),
        "model": model,
    }))
}
