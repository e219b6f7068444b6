//! Does the prompt control the picture? For prompts taken from the training captions,
//! generate a picture and find the training picture nearest to it (pixel distance on
//! 16 x 16 thumbnails): a model that follows its prompt lands on (or next to) the picture
//! of that caption far more often than chance (1 in N). Run with and without guidance,
//! the same check shows what the guidance scale adds.

use candle_core::Tensor;
use stipple_core::noise::PortableRng;
use stipple_core::progress::{CancelToken, NoProgress};

use super::dataset::ImageFolder;
use crate::error::Result;
use crate::pipeline::{ImageRequest, StableDiffusion};

/// Loads the pipeline in `model` and its training folder `data` (at the autoencoder's
/// picture size) and runs [`nearest_caption`].
pub fn eval_image(model: &std::path::Path, data: &std::path::Path, opts: &EvalOptions, device: &candle_core::Device, dtype: candle_core::DType) -> Result<EvalReport> {
    let pipe = StableDiffusion::load(model, device, dtype).map_err(|e| crate::Error::Model(format!("loading {}: {e}", model.display())))?;
    let vae_cfg: crate::models::vae::VaeConfig = crate::error::read_json(&model.join("vae/config.json"))?;
    let size = vae_cfg.sample_size.ok_or_else(|| crate::Error::Model("the autoencoder's config has no sample_size".into()))? as u32;
    let data = ImageFolder::load(data, size, device)?;
    nearest_caption(&pipe, &data, opts)
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Prompts (spread evenly over the captions).
    pub prompts: usize,
    /// Sampler steps.
    pub steps: usize,
    /// Guidance scales to compare (e.g. 1 = none, 5).
    pub guidance: Vec<f64>,
    /// Seed of the first prompt (prompt `i` uses `seed + i`).
    pub seed: u64,
}

/// One guidance scale's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GuidanceResult {
    /// The guidance scale.
    pub guidance: f64,
    /// Share of prompts whose nearest training picture has exactly the prompt's caption.
    pub top1: f64,
    /// Share whose caption is among the 5 nearest.
    pub top5: f64,
    /// Mean rank (1 = nearest) of the prompt's own picture.
    pub mean_rank: f64,
}

/// The report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    /// Training pictures compared against.
    pub pictures: usize,
    /// Prompts generated.
    pub prompts: Vec<String>,
    /// Chance level of `top1` (1 / pictures).
    pub chance_top1: f64,
    /// Per guidance scale.
    pub results: Vec<GuidanceResult>,
}

/// 16 x 16 thumbnails `[n, 3 * 256]` of pictures `[n, 3, h, w]`.
fn thumbnails(images: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = images.dims4()?;
    let (fh, fw) = ((h / 16).max(1), (w / 16).max(1));
    let t = images.reshape((n, c, h / fh, fh, w / fw, fw))?.mean(5)?.mean(3)?;
    Ok(t.flatten_from(1)?)
}

/// Runs the check of `pipe` against its training set `data`.
pub fn nearest_caption(pipe: &StableDiffusion, data: &ImageFolder, opts: &EvalOptions) -> Result<EvalReport> {
    let n = data.records.len();
    let picks: Vec<usize> = (0..opts.prompts.min(n)).map(|i| i * n / opts.prompts.min(n)).collect();
    let thumbs = thumbnails(&data.images)?;
    let (h, w) = (data.images.dim(2)?, data.images.dim(3)?);
    let mut results = Vec::new();
    for &g in &opts.guidance {
        let (mut top1, mut top5, mut ranks) = (0usize, 0usize, 0f64);
        for (k, &i) in picks.iter().enumerate() {
            let caption = &data.records[i].text;
            let req = ImageRequest { prompt: caption.clone(), steps: Some(opts.steps), guidance: Some(g), width: Some(w), height: Some(h), ..ImageRequest::default() };
            let out = pipe.generate(&req, &mut PortableRng::new(opts.seed + k as u64), &mut NoProgress, &CancelToken::new())?;
            // pixels [1, h, w, 3] in [0, 1] -> [1, 3, h, w] in [-1, 1], like the data
            let img = out.pixels.permute((0, 3, 1, 2))?.affine(2.0, -1.0)?.to_device(data.images.device())?;
            let d: Vec<f32> = thumbs.broadcast_sub(&thumbnails(&img)?)?.sqr()?.sum(1)?.to_vec1()?;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| d[a].total_cmp(&d[b]));
            let first_match = order.iter().position(|&j| data.records[j].text == *caption).unwrap_or(n);
            top1 += usize::from(first_match == 0);
            top5 += usize::from(first_match < 5);
            ranks += (first_match + 1) as f64;
        }
        let m = picks.len().max(1) as f64;
        results.push(GuidanceResult { guidance: g, top1: top1 as f64 / m, top5: top5 as f64 / m, mean_rank: ranks / m });
    }
    Ok(EvalReport { pictures: n, prompts: picks.iter().map(|&i| data.records[i].text.clone()).collect(), chance_top1: 1.0 / n as f64, results })
}
