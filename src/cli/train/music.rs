//! Music: `stipple train prepare-music` renders the captioned spectrogram set that
//! `stipple train vae` and `stipple train image` turn into a Riffusion-style model (the
//! trained folder carries the set's `spectrogram_params.json`, so `stipple audio` renders it).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use stipple_audio::SpectrogramParams;
use stipple_audio::music_set::{self, GmRenderer};
use stipple_image::train::dataset;

use super::super::Global;

/// `stipple train prepare-music` arguments.
#[derive(Args, Debug)]
pub struct PrepareMusicArgs {
    /// An SF2 General MIDI soundfont (Debian fluid-soundfont-gm: /usr/share/sounds/sf2/FluidR3_GM.sf2).
    #[arg(long)]
    pub soundfont: PathBuf,
    /// Output folder (images/, metadata.jsonl, spectrogram_params.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Spectrogram parameters as JSON (default: 16 kHz, 64 mel bins, 32 ms hop).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Clips to render.
    #[arg(long, default_value_t = 2000)]
    pub clips: usize,
    /// Spectrogram frames per clip (the picture's width; its height is the mel bins).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// A folder of Sonic Pi drum samples (package/samples of npm supersonic-scsynth-samples,
    /// CC0): half the drum grooves then play on a random kit of its kicks (bd_*), snares
    /// (sn_*) and hi-hats (hat_*) instead of the soundfont's.
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

pub fn prepare_music(g: &Global, a: &PrepareMusicArgs) -> Result<()> {
    let params = match &a.params {
        Some(p) => SpectrogramParams::from_file(p)?,
        None => music_set::mini_params(),
    };
    if a.clips == 0 || a.width == 0 {
        bail!("--clips and --width must be positive");
    }
    let renderer = GmRenderer::new(&a.soundfont, params.sample_rate)?;
    let drums = match &a.samples {
        Some(dir) => Some(stipple_audio::drum_kits::DrumSamples::load(dir, params.sample_rate)?),
        None => None,
    };
    let records = music_set::prepare(&renderer, &params, &a.out, a.clips, a.width, g.seed.unwrap_or(0), drums.as_ref())?;
    dataset::write_metadata(&a.out, &records)?;
    if g.json {
        let kits = drums.as_ref().map(|d| json!({ "kicks": d.kicks.len(), "snares": d.snares.len(), "hats": d.hats.len() }));
        println!("{}", json!({ "clips": records.len(), "width": a.width, "mel_bins": params.num_frequencies, "drum_samples": kits }));
    } else {
        println!("{} captioned spectrograms ({} mel bins x {} frames) in {}", records.len(), params.num_frequencies, a.width, a.out.display());
    }
    Ok(())
}

/// `stipple train eval-music` arguments.
#[derive(Args, Debug)]
pub struct EvalMusicArgs {
    /// A trained Riffusion-style model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Also measure reference renders of the same captions with this SF2 soundfont.
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// Instruments to prompt.
    #[arg(long, value_delimiter = ',', default_value = "bass,piano,flute,violin")]
    pub instruments: Vec<String>,
    /// Tempi to prompt.
    #[arg(long, value_delimiter = ',', default_value = "70,110,150")]
    pub tempos: Vec<u32>,
    /// Seconds per clip.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Sampler steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Guidance scale.
    #[arg(long, default_value_t = 5.0)]
    pub guidance: f64,
    /// Clips per (instrument, tempo) cell, each from its own seed.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Also write every measured clip into this folder as a WAV, to listen to.
    #[arg(long)]
    pub save_clips: Option<PathBuf>,
}

pub fn eval_music(g: &Global, a: &EvalMusicArgs) -> Result<()> {
    use stipple_audio::eval::{MusicEvalOptions, prompt_following, reference};
    let known: Vec<&str> = music_set::INSTRUMENTS.iter().map(|(n, _)| *n).collect();
    if let Some(bad) = a.instruments.iter().find(|i| !known.contains(&i.as_str())) {
        bail!("unknown instrument {bad:?}: the training captions use {}", known.join(", "));
    }
    let model = stipple_audio::Riffusion::load(&a.model, &g.device, g.dtype)?;
    let opts = MusicEvalOptions { instruments: a.instruments.clone(), tempos: a.tempos.clone(), seconds: a.seconds, steps: a.steps, guidance: a.guidance, seeds: a.seeds, seed: g.seed.unwrap_or(0), save_clips: a.save_clips.clone() };
    let generated = prompt_following(&model, &opts)?;
    let (refs, through) = match &a.soundfont {
        Some(sf2) => {
            let renderer = GmRenderer::new(sf2, model.codec().params().sample_rate)?;
            let (direct, through) = reference(&renderer, model.codec(), &opts)?;
            (Some(direct), Some(through))
        }
        None => (None, None),
    };
    if g.json {
        println!("{}", json!({ "generated": generated, "reference": refs, "reference_through_spectrogram": through }));
        return Ok(());
    }
    let score = |s: &stipple_audio::eval::TempoScore| format!("{:.0}% within 6% ({:.0}% allowing half or double), rank correlation {:.2}", 100.0 * s.within_6pct, 100.0 * s.within_6pct_octave, s.rank_correlation);
    for (name, r) in [("generated", Some(&generated)), ("reference renders", refs.as_ref()), ("reference renders made audible from their spectrograms", through.as_ref())] {
        let Some(r) = r else { continue };
        println!("{name} ({} clips):", r.clips.len());
        println!("  tempo drawn in the spectrogram: {}", score(&r.drawn));
        println!("  tempo heard in the audio:       {}", score(&r.heard));
        let c: Vec<String> = r.centroid_by_instrument.iter().map(|(i, hz)| format!("{i} {hz:.0} Hz")).collect();
        println!("  brightness (spectral centroid): {}", c.join(", "));
    }
    Ok(())
}
