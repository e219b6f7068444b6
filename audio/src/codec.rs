//! Audio <-> spectrogram image, with one set of [`SpectrogramParams`]: the STFT, the mel
//! filterbank and their inverses planned once and reused.

use crate::error::{AudioError, Result};
use crate::griffin_lim::{griffin_lim, PhaseInit};
use crate::mel::MelFilterbank;
use crate::params::SpectrogramParams;
use crate::spectrogram_image::{image_from_mel, mel_from_image};
use crate::stft::Stft;
use image::RgbImage;

/// Samples are scaled to 16-bit integer units before analysis, as Riffusion reads audio
/// through pydub's integer samples, so recorded maxima agree with its images.
const INT16_SCALE: f32 = 32768.0;

/// Peak level of rendered audio: Riffusion's filters normalise to 0.1 dB of headroom.
const PEAK: f32 = 0.988_553; // 10^(-0.1 / 20)

/// A mel spectrogram `[n_mels][frames]`.
#[derive(Clone, Debug)]
pub struct Mel {
    /// Bin-major amplitudes.
    pub data: Vec<f32>,
    /// Mel bins.
    pub n_mels: usize,
    /// Time frames (image columns).
    pub frames: usize,
}

/// The converter for one parameter set.
pub struct SpectrogramCodec {
    params: SpectrogramParams,
    stft: Stft,
    mel: MelFilterbank,
}

impl SpectrogramCodec {
    /// Plans the transforms for `params`.
    pub fn new(params: SpectrogramParams) -> Result<Self> {
        params.validate()?;
        if params.stereo {
            return Err(AudioError::Params("stereo spectrograms are not supported yet (Riffusion's models are mono)".into()));
        }
        let stft = Stft::new(params.n_fft(), params.hop_length(), params.win_length())?;
        let mel = MelFilterbank::new(&params)?;
        Ok(Self { params, stft, mel })
    }

    /// The parameters.
    pub fn params(&self) -> &SpectrogramParams {
        &self.params
    }

    /// The STFT in use (for quality measurements).
    pub fn stft(&self) -> &Stft {
        &self.stft
    }

    /// Memory rendering `frames` columns to audio holds at its peak: Griffin-Lim keeps the
    /// target magnitudes, the phases and the previous rebuilt spectrum (for momentum) while
    /// an inverse STFT holds the spectrum and its windowed frames (complex values: two f32
    /// each), plus the signal being summed. Reused at the same sizes every iteration, so the
    /// allocator factor does not apply.
    pub fn render_estimate(&self, frames: usize) -> stipple_core::memory::Estimate {
        let samples = frames.saturating_mul(self.stft.hop());
        stipple_core::memory::Estimate::new(format!("rendering {frames} spectrogram columns"))
            .kept_floats("Griffin-Lim spectra", &[9, frames, self.stft.bins()])
            .kept_floats("audio", &[4, samples])
            .kept_floats("mel spectrogram", &[2, frames, self.mel.n_mels()])
    }

    /// Linear STFT magnitudes `[frames][bins]` of mono samples in [-1, 1].
    pub fn magnitudes(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let frames = self.stft.frames_for(samples.len());
        let need = stipple_core::memory::Estimate::new(format!("the spectrogram of {} samples", samples.len()))
            .kept_floats("scaled and padded audio", &[3, samples.len()])
            .kept_floats("spectrum and magnitudes", &[3, frames, self.stft.bins()]);
        stipple_core::memory::check(&need)?;
        let scaled: Vec<f32> = samples.iter().map(|s| s * INT16_SCALE).collect();
        let spec = self.stft.forward(&scaled)?;
        let frames = spec.frames();
        Ok((spec.data.iter().map(|z| z.norm()).collect(), frames))
    }

    /// The mel spectrogram of mono samples in [-1, 1].
    pub fn mel_from_audio(&self, samples: &[f32]) -> Result<Mel> {
        let (mags, frames) = self.magnitudes(samples)?;
        Ok(Mel { data: self.mel.forward(&mags, frames), n_mels: self.mel.n_mels(), frames })
    }

    /// The spectrogram image of mono samples, and its maximum amplitude.
    pub fn image_from_audio(&self, samples: &[f32]) -> Result<(RgbImage, f32)> {
        let mel = self.mel_from_audio(samples)?;
        Ok(image_from_mel(&mel.data, mel.n_mels, mel.frames, self.params.power_for_image))
    }

    /// Mel amplitudes of an image (its height must be the parameters' mel bins).
    pub fn mel_from_image(&self, img: &RgbImage, max_value: f64) -> Result<Mel> {
        if img.height() as usize != self.mel.n_mels() {
            return Err(AudioError::Invalid(format!(
                "the spectrogram image is {} pixels high but the parameters have {} mel bins",
                img.height(),
                self.mel.n_mels()
            )));
        }
        Ok(Mel { data: mel_from_image(img, self.params.power_for_image, max_value), n_mels: self.mel.n_mels(), frames: img.width() as usize })
    }

    /// Linear magnitudes `[frames][bins]` from mel amplitudes (least squares, clamped at 0).
    pub fn linear_from_mel(&self, mel: &Mel) -> Vec<f32> {
        self.mel.inverse(&mel.data, mel.frames)
    }

    /// Audio for a mel spectrogram: inverse mel, Griffin-Lim, peak-normalised like
    /// Riffusion's output (silence stays silent).
    pub fn audio_from_mel(&self, mel: &Mel, init: PhaseInit) -> Result<Vec<f32>> {
        let linear = self.linear_from_mel(mel);
        let mut audio = griffin_lim(&self.stft, &linear, mel.frames, self.params.griffin_lim_iters, self.params.griffin_lim_momentum, init)?;
        normalize_peak(&mut audio);
        Ok(audio)
    }

    /// Audio for a spectrogram image.
    pub fn audio_from_image(&self, img: &RgbImage, max_value: f64, init: PhaseInit) -> Result<Vec<f32>> {
        self.audio_from_mel(&self.mel_from_image(img, max_value)?, init)
    }
}

/// Scales `audio` so its peak is at -0.1 dBFS.
pub fn normalize_peak(audio: &mut [f32]) {
    let peak = audio.iter().fold(0f32, |m, x| m.max(x.abs()));
    if peak > 0.0 {
        let g = PEAK / peak;
        audio.iter_mut().for_each(|x| *x *= g);
    }
}
