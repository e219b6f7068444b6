//! Does the prompt control the music? Clips generated for a grid of captions in the
//! training set's form (instrument x tempo) are measured with [`crate::analysis`]: the
//! estimated tempo against the prompted one, and the brightness (spectral centroid) per
//! instrument. Run on reference renders of the same captions, the same measurements give
//! the estimator's own ceiling; run on those renders after a trip through the model's
//! spectrogram (mel image, then Griffin-Lim, as every generated clip is made audible),
//! the ceiling a perfect model could reach.

use stipple_core::noise::PortableRng;
use stipple_core::progress::{CancelToken, NoProgress};

use image::RgbImage;

use crate::analysis::{spectral_centroid, tempo_of_mel};
use crate::codec::SpectrogramCodec;
use crate::griffin_lim::PhaseInit;
use crate::error::Result;
use super::music_set::{GmRenderer, INSTRUMENTS, Pattern, Phrase};
use crate::pipeline::{MusicRequest, Riffusion};

/// What to generate.
#[derive(Clone, Debug)]
pub struct MusicEvalOptions {
    /// Instruments (caption words of [`INSTRUMENTS`]).
    pub instruments: Vec<String>,
    /// Tempi to prompt.
    pub tempos: Vec<u32>,
    /// Seconds per clip.
    pub seconds: f64,
    /// Sampler steps.
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f64,
    /// Clips per (instrument, tempo) cell, each from its own seed.
    pub seeds: usize,
    /// Seed of the first clip.
    pub seed: u64,
    /// Also write every measured clip here as a WAV, to listen to.
    pub save_clips: Option<std::path::PathBuf>,
}

impl Default for MusicEvalOptions {
    fn default() -> Self {
        Self { instruments: ["bass", "piano", "flute", "violin"].map(String::from).to_vec(), tempos: vec![70, 110, 150], seconds: 4.0, steps: 20, guidance: 5.0, seeds: 3, seed: 0, save_clips: None }
    }
}

/// One clip's measurements.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClipMeasure {
    /// The prompt.
    pub prompt: String,
    /// Prompted tempo.
    pub tempo: u32,
    /// Tempo heard in the audio: read from its mel spectrogram, analysed afresh (beats
    /// per minute; `None` when the clip is too short).
    pub heard_tempo: Option<f64>,
    /// Tempo read from the mel spectrogram: what a model drew, before Griffin-Lim.
    pub drawn_tempo: Option<f64>,
    /// Spectral centroid in Hz.
    pub centroid_hz: f64,
}

/// How well estimated tempi match the prompted ones.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TempoScore {
    /// Share of clips whose tempo reads within 6% of the prompt.
    pub within_6pct: f64,
    /// Share within 6% of the prompt, or of half or twice it (a pulse of kicks on beats
    /// 1 and 3, or of eighths, is as periodic as the beat: the usual octave-tolerant
    /// tempo accuracy).
    pub within_6pct_octave: f64,
    /// Spearman rank correlation of prompted and estimated tempo.
    pub rank_correlation: f64,
}

impl TempoScore {
    /// Scores (prompted, estimated) pairs out of `clips` clips (unread ones count as misses).
    pub fn of(pairs: &[(f64, f64)], clips: usize) -> Self {
        let close = |t: f64, e: f64| (e - t).abs() / t <= 0.06;
        let within = pairs.iter().filter(|&&(t, e)| close(t, e)).count();
        let within_octave = pairs.iter().filter(|&&(t, e)| [t, t / 2.0, t * 2.0].iter().any(|&m| close(m, e))).count();
        let (t, e): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let share = |n: usize| n as f64 / clips.max(1) as f64;
        Self { within_6pct: share(within), within_6pct_octave: share(within_octave), rank_correlation: if t.len() > 2 { spearman(&t, &e) } else { 0.0 } }
    }
}

/// The summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MusicEvalReport {
    /// Every clip.
    pub clips: Vec<ClipMeasure>,
    /// The tempo heard in the audio against the prompt.
    pub heard: TempoScore,
    /// The tempo read from the spectrogram against the prompt.
    pub drawn: TempoScore,
    /// Mean centroid per instrument, in the order asked.
    pub centroid_by_instrument: Vec<(String, f64)>,
}

/// The caption of a drum-backed chord phrase in C major at `bpm`.
pub fn caption(instrument: &str, bpm: u32) -> String {
    format!("{instrument} chords in c major, {bpm} bpm, with drums")
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for k in i..=j {
            r[idx[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (ties get mean ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (ra.iter().map(|x| (x - ma).powi(2)).sum(), rb.iter().map(|y| (y - mb).powi(2)).sum());
    cov / (va * vb).sqrt().max(1e-12)
}

/// Summarises measured clips.
pub fn summarise(clips: Vec<ClipMeasure>, instruments: &[String]) -> MusicEvalReport {
    let pairs = |read: fn(&ClipMeasure) -> Option<f64>| -> Vec<(f64, f64)> { clips.iter().filter_map(|c| read(c).map(|e| (c.tempo as f64, e))).collect() };
    let heard = TempoScore::of(&pairs(|c| c.heard_tempo), clips.len());
    let drawn = TempoScore::of(&pairs(|c| c.drawn_tempo), clips.len());
    let centroid_by_instrument = instruments
        .iter()
        .map(|i| {
            let mine: Vec<f64> = clips.iter().filter(|c| c.prompt.starts_with(&format!("{i} "))).map(|c| c.centroid_hz).collect();
            (i.clone(), mine.iter().sum::<f64>() / mine.len().max(1) as f64)
        })
        .collect();
    MusicEvalReport { heard, drawn, centroid_by_instrument, clips }
}

/// The tempo range read: under two octaves around the prompted 70-150 bpm.
const TEMPO_RANGE: (f64, f64) = (62.0, 165.0);

/// Measures a clip and its spectrogram, first writing the clip as
/// `{kind}-{prompt}-{seed}.wav` when asked to.
fn measure(opts: &MusicEvalOptions, codec: &SpectrogramCodec, kind: &str, seed: u64, prompt: String, bpm: u32, audio: &[f32], spectrogram: &RgbImage) -> Result<ClipMeasure> {
    let rate = codec.params().sample_rate;
    if let Some(dir) = &opts.save_clips {
        std::fs::create_dir_all(dir).map_err(|e| crate::error::file_err(dir, e))?;
        let name: String = prompt.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        crate::wav::write_mono(&dir.join(format!("{kind}-{name}-{seed}.wav")), audio, rate, crate::wav::WavFormat::Pcm16, true)?;
    }
    let frames_per_second = rate as f64 / codec.params().hop_length() as f64;
    let read = |mel: &crate::Mel| tempo_of_mel(&mel.data, mel.n_mels, frames_per_second, TEMPO_RANGE.0, TEMPO_RANGE.1);
    Ok(ClipMeasure {
        prompt,
        tempo: bpm,
        heard_tempo: read(&codec.mel_from_audio(audio)?),
        // the image's amplitude scale does not matter to the onset envelope
        drawn_tempo: read(&codec.mel_from_image(spectrogram, 1.0)?),
        centroid_hz: spectral_centroid(audio, rate),
    })
}

/// The seed of clip `k` of cell (`i`, `j`): every clip of the grid has its own.
fn clip_seed(opts: &MusicEvalOptions, i: usize, j: usize, k: usize) -> u64 {
    opts.seed + ((i * opts.tempos.len() + j) * opts.seeds.max(1) + k) as u64
}

/// Generates and measures every (instrument, tempo, seed) clip.
pub fn prompt_following(model: &Riffusion, opts: &MusicEvalOptions) -> Result<MusicEvalReport> {
    let mut clips = Vec::new();
    for (i, inst) in opts.instruments.iter().enumerate() {
        for (j, &bpm) in opts.tempos.iter().enumerate() {
            for k in 0..opts.seeds.max(1) {
                let prompt = caption(inst, bpm);
                let seed = clip_seed(opts, i, j, k);
                let req = MusicRequest { prompt: prompt.clone(), seconds: Some(opts.seconds), steps: Some(opts.steps), guidance: Some(opts.guidance), seed, ..MusicRequest::default() };
                let out = model.generate(&req, &mut NoProgress, &CancelToken::new())?;
                clips.push(measure(opts, model.codec(), "generated", seed, prompt, bpm, &out.audio, &out.spectrogram)?);
            }
        }
    }
    Ok(summarise(clips, &opts.instruments))
}

/// The same measurements on reference renders of the same captions (one phrase per
/// seed, rendered at `codec`'s rate and drawn as its spectrograms), and on those renders
/// made audible from their spectrograms, as a model's clips are: (direct, through).
pub fn reference(renderer: &GmRenderer, codec: &SpectrogramCodec, opts: &MusicEvalOptions) -> Result<(MusicEvalReport, MusicEvalReport)> {
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for (i, inst) in opts.instruments.iter().enumerate() {
        let Some(instrument) = INSTRUMENTS.iter().position(|(n, _)| n == inst) else {
            return Err(crate::AudioError::Invalid(format!("unknown instrument {inst:?}")));
        };
        for (j, &bpm) in opts.tempos.iter().enumerate() {
            for k in 0..opts.seeds.max(1) {
                let seed = clip_seed(opts, i, j, k);
                let p = Phrase { instrument, tempo: bpm, key: 0, minor: false, pattern: Pattern::Chords, drums: true };
                let audio = renderer.render(&p, opts.seconds, &mut PortableRng::new(seed))?;
                let (image, max_value) = codec.image_from_audio(&audio)?;
                direct.push(measure(opts, codec, "reference", seed, p.caption(), bpm, &audio, &image)?);
                let heard = codec.audio_from_image(&image, max_value as f64, PhaseInit::Random(seed))?;
                through.push(measure(opts, codec, "through-spectrogram", seed, p.caption(), bpm, &heard, &image)?);
            }
        }
    }
    Ok((summarise(direct, &opts.instruments), summarise(through, &opts.instruments)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_and_captions() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        let p = Phrase { instrument: 0, tempo: 110, key: 0, minor: false, pattern: Pattern::Chords, drums: true };
        assert_eq!(caption("piano", 110), p.caption(), "the grid prompts are training captions");
    }
}
