//! Music: `stipple train prepare-music` renders the captioned spectrogram set that
//! `stipple train vae` and `stipple train image` turn into a Riffusion-style model (the
//! trained folder carries the set's `spectrogram_params.json`, so `stipple audio` renders it).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use stipple_audio::SpectrogramParams;
use stipple_audio::train::eval::{MusicEvalOptions, TempoScore};
use stipple_audio::train::{music_set, recipe};

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
    let set = recipe::prepare_music(&a.soundfont, &params, &a.out, a.clips, a.width, g.seed.unwrap_or(0), a.samples.as_deref())?;
    if g.json {
        let kits = set.drum_samples.map(|(kicks, snares, hats)| json!({ "kicks": kicks, "snares": snares, "hats": hats }));
        println!("{}", json!({ "clips": set.clips, "width": a.width, "mel_bins": params.num_frequencies, "drum_samples": kits }));
    } else {
        println!("{} captioned spectrograms ({} mel bins x {} frames) in {}", set.clips, params.num_frequencies, a.width, a.out.display());
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
    let opts = MusicEvalOptions { instruments: a.instruments.clone(), tempos: a.tempos.clone(), seconds: a.seconds, steps: a.steps, guidance: a.guidance, seeds: a.seeds, seed: g.seed.unwrap_or(0), save_clips: a.save_clips.clone() };
    let r = recipe::eval_music(&a.model, a.soundfont.as_deref(), &opts, &g.device, g.dtype)?;
    if g.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let score = |s: &TempoScore| format!("{:.0}% within 6% ({:.0}% allowing half or double), rank correlation {:.2}", 100.0 * s.within_6pct, 100.0 * s.within_6pct_octave, s.rank_correlation);
    for (name, r) in [("generated", Some(&r.generated)), ("reference renders", r.reference.as_ref()), ("reference renders made audible from their spectrograms", r.reference_through_spectrogram.as_ref())] {
        let Some(r) = r else { continue };
        println!("{name} ({} clips):", r.clips.len());
        println!("  tempo drawn in the spectrogram: {}", score(&r.drawn));
        println!("  tempo heard in the audio:       {}", score(&r.heard));
        let c: Vec<String> = r.centroid_by_instrument.iter().map(|(i, hz)| format!("{i} {hz:.0} Hz")).collect();
        println!("  brightness (spectral centroid): {}", c.join(", "));
    }
    Ok(())
}
