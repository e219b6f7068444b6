//! Errors of the audio codec and pipelines.

use std::path::PathBuf;

/// Everything that can go wrong in `stipple-audio`, with the path or value involved.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Spectrogram parameters that cannot be computed with.
    #[error("invalid spectrogram parameters: {0}")]
    Params(String),
    /// A file that could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// An input that does not fit (wrong size, empty audio, ...).
    #[error("{0}")]
    Invalid(String),
    /// An error from the image pipeline.
    #[error(transparent)]
    Image(#[from] stipple_image::Error),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An output file could not be put in place (exists, no folder, I/O).
    #[error(transparent)]
    Output(#[from] stipple_core::output::OutputError),
    /// Generation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Result with [`AudioError`].
pub type Result<T> = std::result::Result<T, AudioError>;

/// A file error for `path`.
pub(crate) fn file_err(path: &std::path::Path, message: impl std::fmt::Display) -> AudioError {
    AudioError::File { path: path.to_path_buf(), message: message.to_string() }
}

impl From<stipple_core::Error> for AudioError {
    fn from(e: stipple_core::Error) -> Self {
        match e {
            stipple_core::Error::Cancelled => AudioError::Cancelled,
            other => AudioError::Image(stipple_image::Error::Core(other)),
        }
    }
}
