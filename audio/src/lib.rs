//! stipple-audio: music as spectrogram images (Riffusion) on the shared core.
//!
//! The codec is pure Rust: [`stft`] (torch-compatible STFT / inverse), [`mel`] (torchaudio's
//! mel filterbank and its least-squares inverse), [`griffin_lim`] (phase reconstruction),
//! [`spectrogram_image`] (Riffusion's image mapping and EXIF parameters), [`wav`] (WAV
//! in and out, resampling) and [`codec`], which ties them to one [`params::SpectrogramParams`].
//! [`mix`] repeats loops and crossfades clips. [`analysis`] measures tempo, key and
//! brightness; with the `train` feature, `train`
//! renders captioned General MIDI phrases for training small music models and uses the
//! analysis to check that generated clips follow their prompts.
#![warn(missing_docs)]

pub mod analysis;
pub mod codec;
pub mod error;
pub mod griffin_lim;
pub mod mel;
pub mod mix;
pub mod params;
pub mod pipeline;
pub mod spectrogram_image;
pub mod stft;
#[cfg(feature = "train")]
pub mod train;
pub mod wav;

pub use codec::{Mel, SpectrogramCodec};
pub use pipeline::{MusicOutput, MusicRequest, Riffusion};
pub use error::{AudioError, Result};
pub use params::SpectrogramParams;
