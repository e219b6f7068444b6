//! Errors of the image backend, with messages meant for users.

/// Everything that can go wrong loading or running an image pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from the shared core (bad argument, scheduler config, cancelled...).
    #[error(transparent)]
    Core(#[from] stipple_core::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The pipeline folder or checkpoint lacks files, or they cannot be read.
    #[error("{0}")]
    Model(String),
    /// The tokenizer files are missing or malformed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An input or output image cannot be read or written.
    #[error("{0}")]
    Image(String),
    /// A caller-given argument cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<stipple_core::output::OutputError> for Error {
    fn from(e: stipple_core::output::OutputError) -> Self {
        Error::Image(e.to_string())
    }
}

/// The image backend's result type.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

pub(crate) fn model_err(msg: impl Into<String>) -> Error {
    Error::Model(msg.into())
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Tokenizer(e.to_string())
    }
}

/// Reads and parses a JSON file, naming the file in any error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| model_err(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| model_err(format!("{}: {e}", path.display())))
}
