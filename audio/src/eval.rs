//! Does the prompt control the music? Clips generated for a grid of captions in the
//! training set's form (instrument x tempo) are measured with [`crate::analysis`]: the
//! estimated tempo against the prompted one, and the brightness (spectral centroid) per
//! instrument. Run on reference renders of the same captions, the same measurements give
//! the estimator's own ceiling.

use stipple_core::noise::PortableRng;
use stipple_core::progress::{CancelToken, NoProgress};

use crate::analysis::{spectral_centroid, tempo};
use crate::error::Result;
use crate::music_set::{GmRenderer, INSTRUMENTS, Pattern, Phrase};
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
    /// Seed of the first clip.
    pub seed: u64,
}

impl Default for MusicEvalOptions {
    fn default() -> Self {
        Self { instruments: ["bass", "piano", "flute", "violin"].map(String::from).to_vec(), tempos: vec![70, 110, 150], seconds: 4.0, steps: 20, guidance: 5.0, seed: 0 }
    }
}

/// One clip's measurements.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClipMeasure {
    /// The prompt.
    pub prompt: String,
    /// Prompted tempo.
    pub tempo: u32,
    /// Estimated tempo (beats per minute; `None` when the clip is too short).
    pub estimated_tempo: Option<f64>,
    /// Spectral centroid in Hz.
    pub centroid_hz: f64,
}

/// The summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MusicEvalReport {
    /// Every clip.
    pub clips: Vec<ClipMeasure>,
    /// Share of clips whose tempo reads within 6% of the prompt.
    pub tempo_within_6pct: f64,
    /// Spearman rank correlation of prompted and estimated tempo.
    pub tempo_rank_correlation: f64,
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
    let read: Vec<(f64, f64)> = clips.iter().filter_map(|c| c.estimated_tempo.map(|e| (c.tempo as f64, e))).collect();
    let within = read.iter().filter(|(t, e)| (e - t).abs() / t <= 0.06).count();
    let (t, e): (Vec<f64>, Vec<f64>) = read.iter().copied().unzip();
    let centroid_by_instrument = instruments
        .iter()
        .map(|i| {
            let mine: Vec<f64> = clips.iter().filter(|c| c.prompt.starts_with(&format!("{i} "))).map(|c| c.centroid_hz).collect();
            (i.clone(), mine.iter().sum::<f64>() / mine.len().max(1) as f64)
        })
        .collect();
    MusicEvalReport { tempo_within_6pct: within as f64 / clips.len().max(1) as f64, tempo_rank_correlation: if t.len() > 2 { spearman(&t, &e) } else { 0.0 }, centroid_by_instrument, clips }
}

fn measure(prompt: String, bpm: u32, audio: &[f32], rate: u32) -> ClipMeasure {
    ClipMeasure { prompt, tempo: bpm, estimated_tempo: tempo(audio, rate, 62.0, 165.0), centroid_hz: spectral_centroid(audio, rate) }
}

/// Generates and measures every (instrument, tempo) clip.
pub fn prompt_following(model: &Riffusion, opts: &MusicEvalOptions) -> Result<MusicEvalReport> {
    let mut clips = Vec::new();
    for (i, inst) in opts.instruments.iter().enumerate() {
        for (j, &bpm) in opts.tempos.iter().enumerate() {
            let prompt = caption(inst, bpm);
            let req = MusicRequest { prompt: prompt.clone(), seconds: Some(opts.seconds), steps: Some(opts.steps), guidance: Some(opts.guidance), seed: opts.seed + (i * opts.tempos.len() + j) as u64, ..MusicRequest::default() };
            let out = model.generate(&req, &mut NoProgress, &CancelToken::new())?;
            clips.push(measure(prompt, bpm, &out.audio, out.sample_rate));
        }
    }
    Ok(summarise(clips, &opts.instruments))
}

/// The same measurements on reference renders of the same captions.
pub fn reference(renderer: &GmRenderer, opts: &MusicEvalOptions, rate: u32) -> Result<MusicEvalReport> {
    let mut clips = Vec::new();
    for inst in &opts.instruments {
        let Some(instrument) = INSTRUMENTS.iter().position(|(n, _)| n == inst) else {
            return Err(crate::AudioError::Invalid(format!("unknown instrument {inst:?}")));
        };
        for &bpm in &opts.tempos {
            let p = Phrase { instrument, tempo: bpm, key: 0, minor: false, pattern: Pattern::Chords, drums: true };
            let audio = renderer.render(&p, opts.seconds, &mut PortableRng::new(opts.seed))?;
            clips.push(measure(p.caption(), bpm, &audio, rate));
        }
    }
    Ok(summarise(clips, &opts.instruments))
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
