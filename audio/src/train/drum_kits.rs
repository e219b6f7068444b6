//! Sampled drum kits for the music training set: the CC0 Sonic Pi one-shots (npm
//! `supersonic-scsynth-samples`, `package/samples/*.flac`) sorted by their file-name
//! prefix into kicks, snares and hi-hats, so a phrase's groove can be played on many
//! real kits rather than the soundfont's one.

use std::path::Path;

use stipple_core::noise::PortableRng;

use crate::error::{AudioError, Result, file_err};

/// File-name prefixes of each drum, in Sonic Pi's naming.
const KICKS: &[&str] = &["bd_", "drum_bass_hard", "drum_heavy_kick"];
const SNARES: &[&str] = &["sn_", "drum_snare_hard"];
const HATS: &[&str] = &["hat_", "drum_cymbal_closed"];

/// One sampled drum: its name (the file stem) and mono samples at the kit's rate.
#[derive(Clone, Debug)]
pub struct Drum {
    /// File stem, e.g. `bd_fat`.
    pub name: String,
    /// Mono samples, peak 1.
    pub samples: Vec<f32>,
}

/// A kick, a snare and a hi-hat to play a groove on.
#[derive(Clone, Copy, Debug)]
pub struct DrumKit<'a> {
    /// Played on General MIDI key 36.
    pub kick: &'a Drum,
    /// Played on key 38.
    pub snare: &'a Drum,
    /// Played on key 42.
    pub hat: &'a Drum,
}

impl<'a> DrumKit<'a> {
    /// The drum for a General MIDI percussion key, if the kit has one.
    pub fn drum(self, key: i32) -> Option<&'a Drum> {
        match key {
            36 => Some(self.kick),
            38 => Some(self.snare),
            42 => Some(self.hat),
            _ => None,
        }
    }
}

/// Every kick, snare and hi-hat found in a samples folder.
#[derive(Clone, Debug)]
pub struct DrumSamples {
    /// Bass drums.
    pub kicks: Vec<Drum>,
    /// Snares.
    pub snares: Vec<Drum>,
    /// Closed hi-hats and cymbals.
    pub hats: Vec<Drum>,
}

impl DrumSamples {
    /// Loads the FLAC files of `dir` whose names mark them as kicks, snares or hi-hats,
    /// resampled to `rate`; the others are left out.
    pub fn load(dir: &Path, rate: u32) -> Result<Self> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| file_err(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("flac")))
            .collect();
        paths.sort();
        let (mut kicks, mut snares, mut hats) = (Vec::new(), Vec::new(), Vec::new());
        for path in paths {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let class = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
            let list = if class(KICKS) {
                &mut kicks
            } else if class(SNARES) {
                &mut snares
            } else if class(HATS) {
                &mut hats
            } else {
                continue;
            };
            list.push(Drum { samples: read_flac(&path, rate)?, name });
        }
        if kicks.is_empty() || snares.is_empty() || hats.is_empty() {
            return Err(file_err(
                dir,
                format!(
                    "needs at least one kick (bd_*.flac), snare (sn_*.flac) and hi-hat (hat_*.flac), found {}, {} and {}: give the samples folder of npm supersonic-scsynth-samples",
                    kicks.len(),
                    snares.len(),
                    hats.len()
                ),
            ));
        }
        Ok(Self { kicks, snares, hats })
    }

    /// A kit of one random kick, snare and hi-hat.
    pub fn pick(&self, rng: &mut PortableRng) -> DrumKit<'_> {
        let one = |v: &'_ [Drum], rng: &mut PortableRng| ((rng.next_uniform() * v.len() as f64) as usize).min(v.len() - 1);
        let (k, s, h) = (one(&self.kicks, rng), one(&self.snares, rng), one(&self.hats, rng));
        DrumKit { kick: &self.kicks[k], snare: &self.snares[s], hat: &self.hats[h] }
    }
}

/// A FLAC file as mono samples at `rate`, peak-normalised to 1.
pub fn read_flac(path: &Path, rate: u32) -> Result<Vec<f32>> {
    let mut reader = claxon::FlacReader::open(path).map_err(|e| file_err(path, format!("not a readable FLAC file ({e})")))?;
    let info = reader.streaminfo();
    let (channels, scale) = (info.channels.max(1) as usize, 1.0 / (1u64 << (info.bits_per_sample.max(1) - 1)) as f32);
    let interleaved: Vec<f32> = reader.samples().map(|s| s.map(|v| v as f32 * scale)).collect::<std::result::Result<_, _>>().map_err(|e| file_err(path, format!("FLAC decoding failed ({e})")))?;
    if interleaved.is_empty() {
        return Err(file_err(path, "the FLAC file has no samples"));
    }
    let mono: Vec<f32> = interleaved.chunks(channels).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect();
    let mut samples = if info.sample_rate == rate { mono } else { crate::wav::resample(&mono, info.sample_rate, rate)? };
    let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    if peak <= 0.0 {
        return Err(AudioError::Invalid(format!("{}: the sample is silent", path.display())));
    }
    samples.iter_mut().for_each(|v| *v /= peak);
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drum-samples")
    }

    /// The committed Sonic Pi one-shots decode to the length their FLAC header gives,
    /// resampled, and sort into one kit.
    #[test]
    fn sonic_pi_one_shots_make_a_kit() {
        for name in ["bd_fat", "sn_dub", "hat_bdu"] {
            let path = fixtures().join(format!("{name}.flac"));
            let info = claxon::FlacReader::open(&path).unwrap().streaminfo();
            let frames = info.samples.unwrap() as f64;
            let got = read_flac(&path, 16000).unwrap();
            let want = frames * 16000.0 / info.sample_rate as f64;
            assert!((got.len() as f64 - want).abs() <= 2.0, "{name}: {} samples, want {want}", got.len());
            assert!((got.iter().fold(0f32, |m, v| m.max(v.abs())) - 1.0).abs() < 1e-6);
        }
        let kits = DrumSamples::load(&fixtures(), 16000).unwrap();
        let kit = kits.pick(&mut PortableRng::new(0));
        assert_eq!((kit.kick.name.as_str(), kit.snare.name.as_str(), kit.hat.name.as_str()), ("bd_fat", "sn_dub", "hat_bdu"));
        assert_eq!(kit.drum(38).map(|d| d.name.as_str()), Some("sn_dub"));
        assert!(kit.drum(49).is_none());
        let err = DrumSamples::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), 16000).unwrap_err().to_string();
        assert!(err.contains("supersonic-scsynth-samples"), "{err}");
    }
}
