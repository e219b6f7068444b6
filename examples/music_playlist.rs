//! A playlist from prompts: one seamless loop per prompt written as a WAV, and a mix that
//! plays each loop twice and crossfades into the next.
//!
//! cargo run --release --example music_playlist -- OUT_DIR [PROMPT...]
//! (defaults: the embedded stipple-mini music model and four prompts)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use stipple::audio::mix::{crossfade, repeat};
use stipple::audio::wav::{WavFormat, write_mono};
use stipple::audio::{MusicRequest, Riffusion};
use stipple::core::progress::{CancelToken, NoProgress};

/// What the playlist made.
pub struct Playlist {
    /// One loop per prompt, in order.
    pub clips: Vec<PathBuf>,
    /// The crossfaded mix.
    pub mix: PathBuf,
    /// Samples per second.
    pub sample_rate: u32,
    /// The crossfade, in samples.
    pub fade: usize,
}

/// Times each loop plays in the mix.
pub const LOOPS: usize = 2;

/// Makes one loop per prompt (seed = its place in the list) and the mix, into `out_dir`,
/// with `steps` denoising steps and a `fade_seconds` crossfade.
pub fn playlist(riff: &Riffusion, prompts: &[String], out_dir: &Path, steps: Option<usize>, fade_seconds: f64) -> Result<Playlist> {
    if prompts.is_empty() {
        bail!("give at least one prompt");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut clips = Vec::new();
    let mut audio = Vec::new();
    let mut rate = 0;
    for (i, prompt) in prompts.iter().enumerate() {
        let req = MusicRequest { prompt: prompt.clone(), steps, seed: i as u64, looped: true, ..MusicRequest::default() };
        let music = riff.generate(&req, &mut NoProgress, &CancelToken::new())?;
        let slug: String = prompt.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(40).collect();
        let path = out_dir.join(format!("{:02}-{}.wav", i + 1, slug.trim_matches('-')));
        write_mono(&path, &music.audio, music.sample_rate, WavFormat::Pcm16, false)?;
        println!("{}: {:.2} s", path.display(), music.audio.len() as f64 / music.sample_rate as f64);
        clips.push(path);
        audio.push(repeat(&music.audio, LOOPS));
        rate = music.sample_rate;
    }
    let fade = (fade_seconds * rate as f64).round() as usize;
    let parts: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
    let mix = out_dir.join("mix.wav");
    let mixed = crossfade(&parts, fade);
    write_mono(&mix, &mixed, rate, WavFormat::Pcm16, false)?;
    println!("{}: {:.2} s, {} loops crossfaded over {fade_seconds} s", mix.display(), mixed.len() as f64 / rate as f64, clips.len());
    Ok(Playlist { clips, mix, sample_rate: rate, fade })
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out_dir = PathBuf::from(args.next().context("usage: music_playlist OUT_DIR [PROMPT...]")?);
    let mut prompts: Vec<String> = args.collect();
    if prompts.is_empty() {
        prompts = ["a slow piano melody", "drums and bass, upbeat", "a calm violin", "a bright marimba groove"].map(String::from).to_vec();
    }
    let model = stipple::defaults::model("music")?;
    let riff = Riffusion::load(&model, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    playlist(&riff, &prompts, &out_dir, None, 0.5)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (Vec<f32>, u32) {
        let mut r = hound::WavReader::open(path).unwrap();
        let rate = r.spec().sample_rate;
        (r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect(), rate)
    }

    #[test]
    fn loops_and_a_crossfaded_mix() {
        let dir = std::env::temp_dir().join(format!("stipple-playlist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let riff = Riffusion::load(&stipple::defaults::model("music").unwrap(), &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        let prompts = ["a slow piano melody".to_string(), "drums".to_string()];
        let list = playlist(&riff, &prompts, &dir, Some(4), 0.25).unwrap();
        assert_eq!(list.clips.len(), 2);
        let (a, rate) = read(&list.clips[0]);
        let (b, _) = read(&list.clips[1]);
        assert_eq!(rate, list.sample_rate);
        assert!(a.len() > rate as usize && a.iter().any(|&s| s.abs() > 0.01), "a clip of audio");
        let (mix, _) = read(&list.mix);
        assert_eq!(mix.len(), LOOPS * (a.len() + b.len()) - list.fade);
        // the mix opens with the first loop, twice, and ends with the second's
        assert!(mix[..a.len()].iter().zip(&a).all(|(m, s)| (m - s).abs() < 1e-3));
        assert!(mix[mix.len() - b.len()..].iter().zip(&b).all(|(m, s)| (m - s).abs() < 1e-3));
        // a second run does not overwrite the first one's files
        assert!(playlist(&riff, &prompts, &dir, Some(4), 0.25).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
