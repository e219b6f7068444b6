//! The music recipes of `stipple train`: rendering the captioned spectrogram set that
//! `stipple train vae` and `stipple train image` turn into a Riffusion-style model, and
//! measuring whether a trained model follows its prompts.

use std::path::Path;

use super::drum_kits::DrumSamples;
use super::eval::{MusicEvalOptions, MusicEvalReport, prompt_following, reference};
use super::music_set::{self, GmRenderer};
use crate::error::{AudioError, Result};
use crate::SpectrogramParams;

/// What [`prepare_music`] made.
#[derive(Clone, Debug)]
pub struct MusicSet {
    /// Clips rendered.
    pub clips: usize,
    /// The drum samples' kit sizes (kicks, snares, hats), when samples were given.
    pub drum_samples: Option<(usize, usize, usize)>,
}

/// Renders `clips` captioned General MIDI phrases of `width` frames with the soundfont
/// `sf2` (and, with `samples`, Sonic Pi drum kits for half the grooves) into `out`:
/// `images/`, `metadata.jsonl` and `spectrogram_params.json`.
pub fn prepare_music(sf2: &Path, params: &SpectrogramParams, out: &Path, clips: usize, width: usize, seed: u64, samples: Option<&Path>) -> Result<MusicSet> {
    if clips == 0 || width == 0 {
        return Err(AudioError::Invalid("--clips and --width must be positive".into()));
    }
    let renderer = GmRenderer::new(sf2, params.sample_rate)?;
    let drums = samples.map(|dir| DrumSamples::load(dir, params.sample_rate)).transpose()?;
    let records = music_set::prepare(&renderer, params, out, clips, width, seed, drums.as_ref())?;
    stipple_image::train::dataset::write_metadata(out, &records)?;
    Ok(MusicSet { clips: records.len(), drum_samples: drums.as_ref().map(|d| (d.kicks.len(), d.snares.len(), d.hats.len())) })
}

/// The prompt-following measurements of a trained model, and of reference renders.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MusicEvaluation {
    /// The model's clips.
    pub generated: MusicEvalReport,
    /// Reference renders of the same captions, played directly (with a soundfont).
    pub reference: Option<MusicEvalReport>,
    /// The same renders made audible from their spectrograms: the ceiling of the codec.
    pub reference_through_spectrogram: Option<MusicEvalReport>,
}

/// Loads the Riffusion-layout model in `model` and measures it; with `sf2`, reference
/// renders of the same captions too.
pub fn eval_music(model: &Path, sf2: Option<&Path>, opts: &MusicEvalOptions, device: &candle_core::Device, dtype: candle_core::DType) -> Result<MusicEvaluation> {
    let known: Vec<&str> = music_set::INSTRUMENTS.iter().map(|(n, _)| *n).collect();
    if let Some(bad) = opts.instruments.iter().find(|i| !known.contains(&i.as_str())) {
        return Err(AudioError::Invalid(format!("unknown instrument {bad:?}: the training captions use {}", known.join(", "))));
    }
    let model = crate::Riffusion::load(model, device, dtype)?;
    let generated = prompt_following(&model, opts)?;
    let (reference, reference_through_spectrogram) = match sf2 {
        Some(sf2) => {
            let renderer = GmRenderer::new(sf2, model.codec().params().sample_rate)?;
            let (direct, through) = reference(&renderer, model.codec(), opts)?;
            (Some(direct), Some(through))
        }
        None => (None, None),
    };
    Ok(MusicEvaluation { generated, reference, reference_through_spectrogram })
}
