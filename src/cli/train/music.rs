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
    let records = music_set::prepare(&renderer, &params, &a.out, a.clips, a.width, g.seed.unwrap_or(0))?;
    dataset::write_metadata(&a.out, &records)?;
    if g.json {
        println!("{}", json!({ "clips": records.len(), "width": a.width, "mel_bins": params.num_frequencies }));
    } else {
        println!("{} captioned spectrograms ({} mel bins x {} frames) in {}", records.len(), params.num_frequencies, a.width, a.out.display());
    }
    Ok(())
}
