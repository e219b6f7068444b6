//! The music training set: short General MIDI phrases (melodies, chords, arpeggios, with
//! or without a drum kit) in a given instrument, key and tempo, rendered with `rustysynth`
//! from an SF2 soundfont (Debian's MIT `fluid-soundfont-gm`), each captioned with what was
//! played ("flute melody in d minor, 110 bpm, with drums"). Written as spectrogram PNGs
//! with a `metadata.jsonl`, the image folder the latent-diffusion trainer reads.

use std::sync::Arc;

use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};
use stipple_core::noise::PortableRng;

use super::drum_kits::{DrumKit, DrumSamples};
use crate::error::{AudioError, Result, file_err};

/// Mixed into the seed of the sampled-kit draws, to keep them apart from the phrases'.
const KIT_STREAM: u64 = 0x6b69_7473;

/// Instruments by caption word and General MIDI program.
pub const INSTRUMENTS: &[(&str, u8)] = &[
    ("piano", 0),
    ("electric piano", 4),
    ("marimba", 12),
    ("organ", 19),
    ("acoustic guitar", 24),
    ("electric guitar", 27),
    ("bass", 33),
    ("violin", 40),
    ("cello", 42),
    ("harp", 46),
    ("strings", 48),
    ("choir", 52),
    ("trumpet", 56),
    ("saxophone", 65),
    ("flute", 73),
    ("synth lead", 80),
];

/// Tempi drawn from, in beats per minute.
pub const TEMPOS: &[u32] = &[70, 90, 110, 130, 150];

/// Key names by pitch class (0 = C).
pub const KEYS: [&str; 12] = ["c", "c sharp", "d", "e flat", "e", "f", "f sharp", "g", "a flat", "a", "b flat", "b"];

/// What is played.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Pattern {
    /// A stepwise tune, one note per eighth or quarter.
    Melody,
    /// Block triads, one per beat.
    Chords,
    /// Broken triads on eighths.
    Arpeggio,
}

/// One phrase's description (the caption is made from it).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Phrase {
    /// Index into [`INSTRUMENTS`].
    pub instrument: usize,
    /// Beats per minute.
    pub tempo: u32,
    /// Tonic pitch class.
    pub key: u8,
    /// Minor (natural) or major scale.
    pub minor: bool,
    /// Melody, chords or arpeggio.
    pub pattern: Pattern,
    /// With a kick / snare / hi-hat groove.
    pub drums: bool,
}

impl Phrase {
    /// A random phrase.
    pub fn random(rng: &mut PortableRng) -> Self {
        let pick = |rng: &mut PortableRng, n: usize| ((rng.next_uniform() * n as f64) as usize).min(n - 1);
        Self {
            instrument: pick(rng, INSTRUMENTS.len()),
            tempo: TEMPOS[pick(rng, TEMPOS.len())],
            key: pick(rng, 12) as u8,
            minor: rng.next_uniform() < 0.4,
            pattern: [Pattern::Melody, Pattern::Chords, Pattern::Arpeggio][pick(rng, 3)],
            drums: rng.next_uniform() < 0.5,
        }
    }

    /// "flute melody in d minor, 110 bpm, with drums".
    pub fn caption(&self) -> String {
        let pattern = match self.pattern {
            Pattern::Melody => "melody",
            Pattern::Chords => "chords",
            Pattern::Arpeggio => "arpeggio",
        };
        let mode = if self.minor { "minor" } else { "major" };
        let drums = if self.drums { ", with drums" } else { "" };
        format!("{} {pattern} in {} {mode}, {} bpm{drums}", INSTRUMENTS[self.instrument].0, KEYS[self.key as usize], self.tempo)
    }
}

/// A note event at a sample position.
struct Event {
    at: usize,
    on: bool,
    channel: i32,
    key: i32,
    velocity: i32,
}

/// The scale degrees' semitone offsets.
fn scale(minor: bool) -> [i32; 7] {
    if minor { [0, 2, 3, 5, 7, 8, 10] } else { [0, 2, 4, 5, 7, 9, 11] }
}

/// MIDI key of scale degree `degree` (any integer) above the tonic in `octave`.
fn degree_key(p: &Phrase, degree: i32, octave: i32) -> i32 {
    let s = scale(p.minor);
    let (oct, idx) = (degree.div_euclid(7), degree.rem_euclid(7) as usize);
    12 * (octave + oct + 1) + p.key as i32 + s[idx]
}

/// The note events of `p` over `samples` samples at `rate`.
fn events(p: &Phrase, samples: usize, rate: u32, rng: &mut PortableRng) -> Vec<Event> {
    let beat = (60.0 / p.tempo as f64 * rate as f64) as usize;
    let eighth = beat / 2;
    let octave = if INSTRUMENTS[p.instrument].0 == "bass" || INSTRUMENTS[p.instrument].0 == "cello" { 2 } else { 4 };
    let mut ev = Vec::new();
    let note = |ev: &mut Vec<Event>, at: usize, len: usize, channel: i32, key: i32, velocity: i32| {
        if at < samples {
            ev.push(Event { at, on: true, channel, key, velocity });
            ev.push(Event { at: (at + len).min(samples), on: false, channel, key, velocity: 0 });
        }
    };
    // I - vi - IV - V (major) or i - VI - iv - v (minor), a chord per beat
    let progression = [0, 5, 3, 4];
    match p.pattern {
        Pattern::Melody => {
            let (mut t, mut degree) = (0usize, 0i32);
            while t < samples {
                let len = if rng.next_uniform() < 0.7 { eighth } else { beat };
                note(&mut ev, t, len * 9 / 10, 0, degree_key(p, degree, octave), 90 + (rng.next_uniform() * 20.0) as i32);
                let step = [-2, -1, -1, 1, 1, 2, 0][((rng.next_uniform() * 7.0) as usize).min(6)];
                degree = (degree + step).clamp(-3, 9);
                t += len;
            }
        }
        Pattern::Chords => {
            for (i, t) in (0..samples).step_by(beat.max(1)).enumerate() {
                let root = progression[(i / 2) % 4];
                for third in [0, 2, 4] {
                    note(&mut ev, t, beat * 9 / 10, 0, degree_key(p, root + third, octave - 1), 80);
                }
            }
        }
        Pattern::Arpeggio => {
            for (i, t) in (0..samples).step_by(eighth.max(1)).enumerate() {
                let root = progression[(i / 4) % 4];
                let third = [0, 2, 4, 2][i % 4];
                note(&mut ev, t, eighth * 9 / 10, 0, degree_key(p, root + third, octave), 85);
            }
        }
    }
    if p.drums {
        for (i, t) in (0..samples).step_by(eighth.max(1)).enumerate() {
            note(&mut ev, t, eighth / 2, 9, 42, 60); // closed hi-hat
            if i % 4 == 0 {
                note(&mut ev, t, eighth, 9, 36, 110); // kick on beats 1 and 3
            }
            if i % 4 == 2 {
                note(&mut ev, t, eighth, 9, 38, 100); // snare on 2 and 4
            }
        }
    }
    ev.sort_by_key(|e| (e.at, e.on));
    ev
}

/// A soundfont loaded once for many renders.
pub struct GmRenderer {
    font: Arc<SoundFont>,
    rate: u32,
}

impl GmRenderer {
    /// Loads an SF2 file (SF3, compressed, is not supported by rustysynth).
    pub fn new(sf2: &std::path::Path, rate: u32) -> Result<Self> {
        let mut file = std::fs::File::open(sf2).map_err(|e| file_err(sf2, e))?;
        let font = SoundFont::new(&mut file).map_err(|e| file_err(sf2, format!("not a usable SF2 soundfont ({e})")))?;
        Ok(Self { font: Arc::new(font), rate })
    }

    /// `seconds` of `p`, mono, peak-normalised to 0.9.
    pub fn render(&self, p: &Phrase, seconds: f64, rng: &mut PortableRng) -> Result<Vec<f32>> {
        self.render_with_kit(p, seconds, rng, None)
    }

    /// [`GmRenderer::render`], the groove's kick, snare and hi-hat played on `kit`'s
    /// samples (when given) instead of the soundfont's drums.
    pub fn render_with_kit(&self, p: &Phrase, seconds: f64, rng: &mut PortableRng, kit: Option<DrumKit<'_>>) -> Result<Vec<f32>> {
        let Some(&(_, program)) = INSTRUMENTS.get(p.instrument) else {
            return Err(AudioError::Invalid(format!("instrument {} is not one of the {} known", p.instrument, INSTRUMENTS.len())));
        };
        let settings = SynthesizerSettings::new(self.rate as i32);
        let mut synth = Synthesizer::new(&self.font, &settings).map_err(|e| AudioError::Invalid(format!("synthesizer: {e}")))?;
        synth.process_midi_message(0, 0xC0, program as i32, 0);
        let samples = (seconds * self.rate as f64) as usize;
        let (mut left, mut right) = (vec![0f32; samples], vec![0f32; samples]);
        let mut pos = 0;
        let mut hits = Vec::new();
        for e in events(p, samples, self.rate, rng) {
            if let Some(drum) = kit.and_then(|k| if e.channel == 9 { k.drum(e.key) } else { None }) {
                if e.on {
                    hits.push((e.at, drum, e.velocity));
                }
                continue;
            }
            if e.at > pos {
                synth.render(&mut left[pos..e.at], &mut right[pos..e.at]);
                pos = e.at;
            }
            if e.on { synth.note_on(e.channel, e.key, e.velocity) } else { synth.note_off(e.channel, e.key) }
        }
        if pos < samples {
            synth.render(&mut left[pos..], &mut right[pos..]);
        }
        let mut mono: Vec<f32> = left.iter().zip(&right).map(|(l, r)| 0.5 * (l + r)).collect();
        // sampled drums sit a little under the instrument's peak, as the soundfont's do
        let level = 0.6 * mono.iter().fold(0f32, |m, v| m.max(v.abs())).max(0.05);
        for (at, drum, velocity) in hits {
            let gain = level * velocity as f32 / 127.0;
            for (out, s) in mono[at..].iter_mut().zip(&drum.samples) {
                *out += gain * s;
            }
        }
        let peak = mono.iter().fold(0f32, |m, v| m.max(v.abs()));
        if peak > 0.0 {
            mono.iter_mut().for_each(|v| *v *= 0.9 / peak);
        }
        Ok(mono)
    }
}

/// Spectrogram parameters for small music models: 16 kHz, 64 mel bins up to 8 kHz, a
/// 32 ms hop, so a 64 x 64 picture holds 2.05 s.
pub fn mini_params() -> crate::SpectrogramParams {
    crate::SpectrogramParams {
        sample_rate: 16000,
        stereo: false,
        step_size_ms: 32,
        window_duration_ms: 64,
        padded_duration_ms: 64,
        num_frequencies: 64,
        min_frequency: 0.0,
        max_frequency: 8000.0,
        ..crate::SpectrogramParams::riffusion()
    }
}

/// Renders `clips` random phrases (seeded) as `width`-frame spectrogram PNGs into
/// `out/images/`, with `out/spectrogram_params.json`; returns the caption records for
/// `metadata.jsonl`. With `drums`, half the grooves (drawn from a stream of their own,
/// so the phrases stay those of the same seed without) play on a random sampled kit.
pub fn prepare(renderer: &GmRenderer, params: &crate::SpectrogramParams, out: &std::path::Path, clips: usize, width: usize, seed: u64, drums: Option<&DrumSamples>) -> Result<Vec<stipple_image::train::dataset::Record>> {
    let codec = crate::SpectrogramCodec::new(params.clone())?;
    if renderer.rate != params.sample_rate {
        return Err(AudioError::Params(format!("the renderer runs at {} Hz, the parameters at {}", renderer.rate, params.sample_rate)));
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| file_err(&images, e))?;
    let hop = params.sample_rate as usize * params.step_size_ms as usize / 1000;
    let seconds = (width * hop) as f64 / params.sample_rate as f64;
    let mut records = Vec::with_capacity(clips);
    for i in 0..clips {
        let mut rng = PortableRng::stream(seed, i as u64);
        let phrase = Phrase::random(&mut rng);
        let mut kit_rng = PortableRng::stream(seed ^ KIT_STREAM, i as u64);
        let kit = drums.filter(|_| phrase.drums && kit_rng.next_uniform() < 0.5).map(|d| d.pick(&mut kit_rng));
        let audio = renderer.render_with_kit(&phrase, seconds, &mut rng, kit)?;
        let (img, max) = codec.image_from_audio(&audio)?;
        let img = image::imageops::crop_imm(&img, 0, 0, width as u32, img.height()).to_image();
        let file = format!("images/{i:05}.png");
        crate::spectrogram_image::write_png(&out.join(&file), &img, params, max as f64, true)?;
        records.push(stipple_image::train::dataset::Record { file_name: file, text: phrase.caption(), category: Some(INSTRUMENTS[phrase.instrument].0.to_string()) });
    }
    let json = serde_json::to_string_pretty(params).map_err(|e| AudioError::Invalid(e.to_string()))?;
    let path = out.join("spectrogram_params.json");
    stipple_core::output::write_file(&path, true, |tmp| std::fs::write(tmp, &json).map_err(|e| file_err(tmp, e)))?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_name_what_is_played_and_keys_follow_the_scale() {
        let p = Phrase { instrument: 14, tempo: 110, key: 2, minor: true, pattern: Pattern::Melody, drums: true };
        assert_eq!(p.caption(), "flute melody in d minor, 110 bpm, with drums");
        // D minor: D4 = 62, F4 = 65 (a minor third), C5 = 72 (degree 6 is the minor seventh)
        assert_eq!((degree_key(&p, 0, 4), degree_key(&p, 2, 4), degree_key(&p, 6, 4), degree_key(&p, -1, 4)), (62, 65, 72, 60));
    }

    /// Renders with Debian's FluidR3 GM soundfont (installed by .ci/run): sound comes out,
    /// the seed fixes it, and the kick drum shows up as energy at each beat.
    #[test]
    fn renders_phrases_from_the_gm_soundfont() {
        let sf2 = std::path::Path::new("/usr/share/sounds/sf2/FluidR3_GM.sf2");
        assert!(sf2.is_file(), "install Debian's fluid-soundfont-gm (see .ci/run)");
        let r = GmRenderer::new(sf2, 16000).unwrap();
        let p = Phrase { instrument: 0, tempo: 120, key: 0, minor: false, pattern: Pattern::Chords, drums: true };
        let a = r.render(&p, 2.0, &mut PortableRng::new(3)).unwrap();
        assert_eq!(a.len(), 32000);
        let peak = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.9).abs() < 1e-4, "{peak}");
        assert_eq!(a, r.render(&p, 2.0, &mut PortableRng::new(3)).unwrap());
        // more energy just after a beat (0.5 s apart) than just before the next one
        let energy = |s: usize| a[s..s + 800].iter().map(|v| v * v).sum::<f32>();
        assert!(energy(8000) > 2.0 * energy(15000), "{} vs {}", energy(8000), energy(15000));
        let e = GmRenderer::new(std::path::Path::new("/nonexistent.sf2"), 16000).err().unwrap().to_string();
        assert!(e.contains("/nonexistent.sf2"), "{e}");
    }

    #[test]
    fn drum_groove_falls_on_the_beat() {
        let p = Phrase { instrument: 0, tempo: 120, key: 0, minor: false, pattern: Pattern::Chords, drums: true };
        let ev = events(&p, 16000 * 2, 16000, &mut PortableRng::new(1));
        let kicks: Vec<usize> = ev.iter().filter(|e| e.on && e.channel == 9 && e.key == 36).map(|e| e.at).collect();
        // 120 bpm: a beat every 8000 samples, kicks on beats 1 and 3
        assert_eq!(kicks, vec![0, 16000]);
        let chords = ev.iter().filter(|e| e.on && e.channel == 0).count();
        assert_eq!(chords, 4 * 3, "a triad per beat");
    }
}
