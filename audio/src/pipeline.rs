//! Text-to-music, audio-to-audio, interpolation and loops with a Riffusion-style model: a
//! Stable Diffusion pipeline that paints mel spectrograms, driven through `stipple-image`
//! (and so through the shared core's samplers), with the spectrogram codec on either side.
//!
//! Clips longer than one window (512 columns = 5.12 s for Riffusion) are painted window by
//! window. Each window after the first starts from the previous window's tail, kept in
//! place by the core's inpainting blend while the rest is repainted from a noised copy of
//! that tail, so rhythm and timbre carry over; consecutive windows are crossfaded over
//! the shared columns, and the whole spectrogram is rendered at once so there are no
//! phase seams.

use crate::codec::SpectrogramCodec;
use crate::error::{AudioError, Result};
use crate::griffin_lim::PhaseInit;
use crate::params::SpectrogramParams;
use crate::spectrogram_image::DEFAULT_MAX_VALUE;
use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, GrayImage, RgbImage};
use std::path::Path;
use std::time::Instant;
use stipple_core::noise::{PortableRng, SlerpNoise};
use stipple_core::params::{Param, Range, Rule, Table};
use stipple_core::progress::{CancelToken, Progress, StepEvent};
use stipple_image::{ImageRequest, PromptBlend, StableDiffusion};

/// A spectrogram diffusion model and the codec for its spectrograms.
pub struct Riffusion {
    /// The image pipeline that paints spectrograms.
    pub pipeline: StableDiffusion,
    codec: SpectrogramCodec,
}

/// What to make.
#[derive(Clone, Debug)]
pub struct MusicRequest {
    /// The prompt.
    pub prompt: String,
    /// Negative prompt.
    pub negative_prompt: Option<String>,
    /// Clip length in seconds (`None`: one window, or the init audio's length).
    pub seconds: Option<f64>,
    /// Denoising steps (`None`: the model's default).
    pub steps: Option<usize>,
    /// Guidance scale (`None`: the model's default).
    pub guidance: Option<f64>,
    /// Sampler (`None`: the model's scheduler).
    pub sampler: Option<stipple_core::samplers::SamplerSpec>,
    /// Seed of the noise.
    pub seed: u64,
    /// Audio to transform (mono samples at the model's rate).
    pub init_audio: Option<Vec<f32>>,
    /// img2img strength for init audio, interpolation and continuation windows.
    pub strength: f64,
    /// Interpolate towards this prompt over the clip.
    pub to_prompt: Option<String>,
    /// Interpolate the noise towards this seed over the clip.
    pub to_seed: Option<u64>,
    /// Make the end flow into the start.
    pub looped: bool,
    /// A clip to continue (mono samples at the model's rate): the new music is painted on
    /// from its last quarter window, and the result is this clip with the continuation
    /// crossfaded onto its end (`seconds` is the length added).
    pub continue_from: Option<Vec<f32>>,
}

impl Default for MusicRequest {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            seconds: None,
            steps: None,
            guidance: None,
            sampler: None,
            seed: 0,
            init_audio: None,
            strength: 0.75,
            to_prompt: None,
            to_seed: None,
            looped: false,
            continue_from: None,
        }
    }
}

/// The longest clip a request may ask for, in seconds (also the longest init audio).
pub const MAX_SECONDS: f64 = 600.0;

/// `MusicRequest`'s parameters and rules, enforced by [`MusicRequest::validate`] for the
/// CLI, batch files, the studio, the server and the API alike.
pub static PARAMS: Table<MusicRequest> = Table {
    commands: "audio (MusicRequest)",
    params: &[
        Param { name: "seconds", flag: "--seconds", range: Range::open_closed(0.0, MAX_SECONDS), help: "clip length", get: |r| r.seconds, set: |r, v| r.seconds = Some(v) },
        Param { name: "steps", flag: "--steps", range: Range::int(1, 1000), help: "denoising steps per window", get: |r| r.steps.map(|s| s as f64), set: |r, v| r.steps = Some(v as usize) },
        Param { name: "guidance", flag: "--guidance", range: Range::closed(0.0, 100.0), help: "classifier-free guidance scale", get: |r| r.guidance, set: |r, v| r.guidance = Some(v) },
        Param { name: "strength", flag: "--strength", range: Range::open_closed(0.0, 1.0), help: "how much of the init audio (and of the seed window when interpolating) to repaint", get: |r| Some(r.strength), set: |r, v| r.strength = v },
    ],
    rules: &[
        Rule {
            params: "init_audio",
            help: "the init audio holds at least one sample",
            check: |r| if r.init_audio.as_ref().is_some_and(Vec::is_empty) { Err("the init audio is empty".into()) } else { Ok(()) },
            break_it: |r| r.init_audio = Some(Vec::new()),
        },
        Rule {
            params: "continue_from",
            help: "the clip to continue holds at least one sample",
            check: |r| if r.continue_from.as_ref().is_some_and(Vec::is_empty) { Err("the clip to continue is empty".into()) } else { Ok(()) },
            break_it: |r| r.continue_from = Some(Vec::new()),
        },
        Rule {
            params: "continue_from, init_audio, looped",
            help: "a continuation is neither a transformation of init audio nor a loop",
            check: |r| match (&r.continue_from, &r.init_audio, r.looped) {
                (Some(_), Some(_), _) => Err("continue a clip or transform init audio, not both".into()),
                (Some(_), _, true) => Err("a continuation cannot be looped (its start is the clip it continue_from)".into()),
                _ => Ok(()),
            },
            break_it: |r| {
                r.continue_from = Some(vec![0.0; 16]);
                r.looped = true;
            },
        },
    ],
};

impl MusicRequest {
    /// Checks every parameter against [`PARAMS`] (ranges and interactions); the init
    /// audio's length is checked against the model's sample rate when generation starts.
    pub fn validate(&self) -> Result<()> {
        PARAMS.validate(self).map_err(|e| AudioError::Invalid(e.to_string()))
    }
}

/// What a generation produced.
pub struct MusicOutput {
    /// Mono samples, peak-normalised.
    pub audio: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
    /// The whole clip's spectrogram image.
    pub spectrogram: RgbImage,
    /// Windows painted.
    pub windows: usize,
    /// Seconds spent painting (diffusion and VAE).
    pub diffusion_seconds: f64,
    /// Seconds spent rendering audio (inverse mel and Griffin-Lim).
    pub render_seconds: f64,
}

impl Riffusion {
    /// Loads a Riffusion-layout folder or hub id (a Stable Diffusion 1.x diffusers folder). Its
    /// spectrogram parameters come from `spectrogram_params.json` in the folder when there
    /// is one, else Riffusion's.
    pub fn load(model: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let model = &stipple_image::files::resolve_pipeline(model)?;
        let pipeline = StableDiffusion::load(model, device, dtype)?;
        let params = read_params(model)?;
        Self::new(pipeline, params)
    }

    /// A model from a loaded pipeline and spectrogram parameters.
    pub fn new(pipeline: StableDiffusion, params: SpectrogramParams) -> Result<Self> {
        let f = pipeline.vae_factor();
        if params.num_frequencies % f != 0 {
            return Err(AudioError::Params(format!("{} mel bins is not a multiple of the VAE's factor {f}", params.num_frequencies)));
        }
        Ok(Self { pipeline, codec: SpectrogramCodec::new(params)? })
    }

    /// The codec.
    pub fn codec(&self) -> &SpectrogramCodec {
        &self.codec
    }

    /// Columns of one painted window (the model's native width, e.g. 512).
    pub fn window_columns(&self) -> usize {
        self.pipeline.native_size()
    }

    /// Makes music for `req`; `progress` gets every denoising step of every window (step
    /// numbers run over the whole clip) with the latents; `cancel` stops between steps.
    pub fn generate(&self, req: &MusicRequest, progress: &mut dyn Progress<Tensor>, cancel: &CancelToken) -> Result<MusicOutput> {
        let p = self.codec.params().clone();
        let width = self.window_columns();
        let height = p.num_frequencies;
        req.validate()?;
        if let Some(a) = &req.continue_from
            && a.len() as f64 > MAX_SECONDS * p.sample_rate as f64
        {
            return Err(AudioError::Invalid(format!("the clip to continue lasts {:.0} s; at most {MAX_SECONDS} s can be continued", a.len() as f64 / p.sample_rate as f64)));
        }
        let init_columns = match &req.init_audio {
            Some(a) if a.len() as f64 > MAX_SECONDS * p.sample_rate as f64 => {
                return Err(AudioError::Invalid(format!("the init audio lasts {:.0} s; at most {MAX_SECONDS} s can be transformed", a.len() as f64 / p.sample_rate as f64)));
            }
            Some(a) => Some(p.columns_for_samples(a.len())),
            None => None,
        };
        let columns = match (req.seconds, init_columns) {
            // frames for the samples, as an STFT of that many samples would have
            (Some(s), _) => p.columns_for_samples((s * p.sample_rate as f64).ceil() as usize),
            (None, Some(c)) => c,
            (None, None) => width,
        };
        // a loop is made a little longer and its tail crossfaded into its start
        let fade_columns = if req.looped { (columns / 4).clamp(1, width / 4) } else { 0 };
        let overlap = width / 4;
        // a continuation's canvas starts with the last quarter window of the clip it continue_from
        let lead = if req.continue_from.is_some() { overlap } else { 0 };
        let total = lead + columns + fade_columns;
        let stride = width - overlap;
        let windows = if total <= width { 1 } else { 1 + (total - width).div_ceil(stride) };
        // windows after the first (and init audio, and interpolation) are repainted at
        // `strength`: at least one step must run, checked before the first window is painted
        let steps = req.steps.unwrap_or_else(|| self.pipeline.default_steps());
        let repaints = windows > 1 || req.init_audio.is_some() || req.to_prompt.is_some() || req.to_seed.is_some() || req.continue_from.is_some();
        if repaints && (steps as f64 * req.strength) < 1.0 {
            return Err(AudioError::Invalid(format!(
                "strength {} with {steps} steps runs no denoising step in the windows that are repainted (int(steps x strength) must be at least 1)",
                req.strength
            )));
        }
        // the clip's canvas, its rendering and one window's painting, refused up front
        // when they cannot fit (rather than after minutes of painting); the reservation
        // covers the windows' own checks
        let _reserved = if self.pipeline.device().is_cpu() {
            let render = self.codec.render_estimate(total);
            let img2img = (windows > 1 || req.init_audio.is_some() || req.continue_from.is_some()).then(|| DynamicImage::new_rgb8(1, 1));
            let window = self.pipeline.estimate(&ImageRequest { width: Some(width), height: Some(height), guidance: req.guidance, init_image: img2img, ..ImageRequest::default() })?;
            // painting and rendering come one after the other: the larger is the peak
            let factor = stipple_core::memory::allocator_factor();
            let phase = if render.resident(factor) >= window.resident(factor) { render } else { window };
            let mut need = stipple_core::memory::Estimate::new(format!("{:.1} s of music", self.codec.params().seconds_for_columns(total)));
            need.parts = phase.parts;
            need = need.kept("spectrogram canvas", (total * height * 3) as u64);
            Some(stipple_core::memory::check(&need)?)
        } else {
            None
        };
        let init_image = match &req.init_audio {
            Some(a) => Some(self.codec.image_from_audio(a)?.0),
            None => None,
        };
        let interpolate = req.to_prompt.is_some() || req.to_seed.is_some();
        let started = Instant::now();
        let mut steps_done = 0;
        let mut canvas = RgbImage::from_pixel(total as u32, height as u32, image::Rgb([255, 255, 255]));
        let continued = match &req.continue_from {
            Some(clip) => {
                let img = self.codec.image_from_audio(clip)?.0;
                let from = img.width().saturating_sub(lead as u32);
                image::imageops::replace(&mut canvas, &image::imageops::crop_imm(&img, from, 0, lead as u32, height as u32).to_image(), 0, 0);
                Some(img)
            }
            None => None,
        };
        let mut first_window: Option<RgbImage> = None;
        for k in 0..windows {
            cancel.check().map_err(|_| AudioError::Cancelled)?;
            let x0 = k * stride;
            let alpha = if windows > 1 { k as f64 / (windows - 1) as f64 } else { 0.0 };
            let mut image_req = ImageRequest {
                prompt: req.prompt.clone(),
                negative_prompt: req.negative_prompt.clone(),
                steps: req.steps,
                guidance: req.guidance,
                sampler: req.sampler,
                width: Some(width),
                height: Some(height),
                strength: req.strength,
                prompt_blend: req.to_prompt.as_ref().map(|to| PromptBlend { prompt: to.clone(), weight: alpha }),
                ..ImageRequest::default()
            };
            // the source of this window: the user's audio, else (interpolating) the first
            // window as the seed image, else the previous window's tail to continue from
            if let Some(init) = &init_image {
                image_req.init_image = Some(DynamicImage::ImageRgb8(crop_padded(init, x0, width)));
            } else if interpolate && k > 0 {
                image_req.init_image = first_window.clone().map(DynamicImage::ImageRgb8);
            } else if k > 0 || lead > 0 {
                let (init, mask) = continuation(&canvas, x0, overlap, width);
                image_req.init_image = Some(DynamicImage::ImageRgb8(init));
                image_req.mask = Some(DynamicImage::ImageLuma8(mask));
            }
            let seed = req.seed.wrapping_add(if interpolate { 0 } else { k as u64 });
            let mut noise = SlerpNoise { a: PortableRng::new(seed), b: PortableRng::new(req.to_seed.unwrap_or(seed)), t: if req.to_seed.is_some() { alpha } else { 0.0 } };
            // step numbers run over the whole clip; windows not started yet are assumed as
            // long as this one
            let mut window_steps = 0;
            let mut forward = |e: &StepEvent<'_, Tensor>| {
                window_steps = e.total;
                let total = steps_done + e.total * (windows - k);
                progress.on_step(&StepEvent { step: steps_done + e.step, total, elapsed: started.elapsed(), preview: e.preview });
            };
            let out = self.pipeline.generate(&image_req, &mut noise, &mut forward, cancel).map_err(|e| match e {
                stipple_image::Error::Core(stipple_core::Error::Cancelled) => AudioError::Cancelled,
                e => AudioError::Image(e),
            })?;
            steps_done += window_steps;
            let window = out.images.into_iter().next().ok_or_else(|| AudioError::Invalid("the pipeline returned no image".into()))?;
            if first_window.is_none() {
                first_window = Some(window.clone());
            }
            paste_crossfaded(&mut canvas, &window, x0, if k == 0 && lead == 0 { 0 } else { overlap });
        }
        let diffusion_seconds = started.elapsed().as_secs_f64();
        let render_start = Instant::now();
        let canvas = if req.looped { loop_canvas(&canvas, columns, fade_columns) } else { image::imageops::crop_imm(&canvas, 0, 0, (lead + columns) as u32, height as u32).to_image() };
        let audio = self.codec.audio_from_image(&canvas, DEFAULT_MAX_VALUE, PhaseInit::Random(req.seed))?;
        let lead_samples = (lead * p.hop_length()).min(audio.len());
        let samples = match req.seconds {
            Some(s) => (lead_samples + (s * p.sample_rate as f64).round() as usize).min(audio.len()),
            None => audio.len(),
        };
        let (audio, spectrogram) = match (&req.continue_from, continued) {
            (Some(clip), Some(clip_image)) => {
                // the clip as it was, then the new part, crossfaded over the re-rendered half
                // of the lead (the same music rendered twice, so the join does not jump)
                let fade = lead_samples / 2;
                let joined = crate::mix::crossfade(&[clip, &audio[lead_samples - fade..samples]], fade);
                let mut both = RgbImage::new(clip_image.width() + (canvas.width() - lead as u32), height as u32);
                image::imageops::replace(&mut both, &clip_image, 0, 0);
                image::imageops::replace(&mut both, &image::imageops::crop_imm(&canvas, lead as u32, 0, canvas.width() - lead as u32, height as u32).to_image(), clip_image.width() as i64, 0);
                (joined, both)
            }
            _ => (audio[..samples].to_vec(), canvas),
        };
        Ok(MusicOutput {
            audio,
            sample_rate: p.sample_rate,
            spectrogram,
            windows,
            diffusion_seconds,
            render_seconds: render_start.elapsed().as_secs_f64(),
        })
    }
}

/// `spectrogram_params.json` in `model`, else Riffusion's parameters.
pub fn read_params(model: &Path) -> Result<SpectrogramParams> {
    let path = model.join("spectrogram_params.json");
    if !path.is_file() {
        return Ok(SpectrogramParams::riffusion());
    }
    SpectrogramParams::from_file(&path)
}

/// Columns `x0 .. x0 + width` of `img`, padded with silence (white) past its end.
fn crop_padded(img: &RgbImage, x0: usize, width: usize) -> RgbImage {
    let mut out = RgbImage::from_pixel(width as u32, img.height(), image::Rgb([255, 255, 255]));
    for x in x0..(x0 + width).min(img.width() as usize) {
        for y in 0..img.height() {
            out.put_pixel((x - x0) as u32, y, *img.get_pixel(x as u32, y));
        }
    }
    out
}

/// The init image and mask for the window starting at `x0`: its first `overlap` columns
/// are the canvas's (kept: mask black), the rest repeats that tail (repainted: white), so
/// the new part starts from the same rhythm.
fn continuation(canvas: &RgbImage, x0: usize, overlap: usize, width: usize) -> (RgbImage, GrayImage) {
    let h = canvas.height();
    let mut init = RgbImage::new(width as u32, h);
    let mut mask = GrayImage::from_pixel(width as u32, h, image::Luma([255]));
    for x in 0..width {
        let src = x0 + x % overlap;
        for y in 0..h {
            init.put_pixel(x as u32, y, *canvas.get_pixel(src as u32, y));
        }
        if x < overlap {
            for y in 0..h {
                mask.put_pixel(x as u32, y, image::Luma([0]));
            }
        }
    }
    (init, mask)
}

/// Writes `window` into `canvas` at column `x0`, crossfading linearly over the first
/// `fade` columns with what is already there.
fn paste_crossfaded(canvas: &mut RgbImage, window: &RgbImage, x0: usize, fade: usize) {
    for x in 0..window.width() as usize {
        let cx = x0 + x;
        if cx >= canvas.width() as usize {
            break;
        }
        let a = if x < fade { (x as f32 + 0.5) / fade as f32 } else { 1.0 };
        for y in 0..window.height() {
            let old = canvas.get_pixel(cx as u32, y).0;
            let new = window.get_pixel(x as u32, y).0;
            let mix = |i: usize| (old[i] as f32 * (1.0 - a) + new[i] as f32 * a).round() as u8;
            canvas.put_pixel(cx as u32, y, image::Rgb([mix(0), mix(1), mix(2)]));
        }
    }
}

/// The first `columns` columns of `canvas`, with the `fade` columns after them crossfaded
/// into its start, so playing it on repeat has no seam.
fn loop_canvas(canvas: &RgbImage, columns: usize, fade: usize) -> RgbImage {
    let mut out = image::imageops::crop_imm(canvas, 0, 0, columns as u32, canvas.height()).to_image();
    for x in 0..fade.min(columns) {
        // at x = 0 the tail (which follows the clip's end) dominates; by `fade` the start does
        let a = (x as f32 + 0.5) / fade as f32;
        for y in 0..canvas.height() {
            let start = canvas.get_pixel(x as u32, y).0;
            let tail = canvas.get_pixel((columns + x) as u32, y).0;
            let mix = |i: usize| (tail[i] as f32 * (1.0 - a) + start[i] as f32 * a).round() as u8;
            out.put_pixel(x as u32, y, image::Rgb([mix(0), mix(1), mix(2)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_keeps_the_tail_and_repeats_it() {
        let mut canvas = RgbImage::new(12, 2);
        for x in 0..12 {
            for y in 0..2 {
                canvas.put_pixel(x, y, image::Rgb([x as u8 * 10, 0, 0]));
            }
        }
        let (init, mask) = continuation(&canvas, 6, 3, 8);
        let row: Vec<u8> = (0..8).map(|x| init.get_pixel(x, 0).0[0]).collect();
        assert_eq!(row, vec![60, 70, 80, 60, 70, 80, 60, 70]);
        let m: Vec<u8> = (0..8).map(|x| mask.get_pixel(x, 1).0[0]).collect();
        assert_eq!(m, vec![0, 0, 0, 255, 255, 255, 255, 255]);
    }

    #[test]
    fn crossfade_and_loop_join() {
        let mut canvas = RgbImage::from_pixel(8, 1, image::Rgb([0, 0, 0]));
        paste_crossfaded(&mut canvas, &RgbImage::from_pixel(4, 1, image::Rgb([200, 200, 200])), 4, 2);
        let row: Vec<u8> = (0..8).map(|x| canvas.get_pixel(x, 0).0[0]).collect();
        assert_eq!(row, vec![0, 0, 0, 0, 50, 150, 200, 200]);
        // the loop's first column is close to the column after its end
        let mut c = RgbImage::new(10, 1);
        for x in 0..10 {
            c.put_pixel(x, 0, image::Rgb([x as u8 * 20, 0, 0]));
        }
        let l = loop_canvas(&c, 8, 2);
        assert_eq!(l.width(), 8);
        assert_eq!(l.get_pixel(0, 0).0[0], 120); // 0.75 * 160 + 0.25 * 0
        assert_eq!(l.get_pixel(2, 0).0[0], 40);
    }
}
