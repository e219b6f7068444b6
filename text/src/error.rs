//! Errors of the text backend, with messages meant for users.

/// Everything that can go wrong loading or running a text model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from the shared core (bad argument, config, I/O, cancelled...).
    #[error(transparent)]
    Core(#[from] stipple_core::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model folder or hub repository lacks files, or they cannot be read.
    #[error("{0}")]
    Model(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// An infilling template or constraint is malformed or cannot be satisfied.
    #[error("infilling: {0}")]
    Infill(String),
    /// A caller-given argument cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The text backend's result type.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

impl From<stipple_core::output::OutputError> for Error {
    fn from(e: stipple_core::output::OutputError) -> Self {
        Error::Model(e.to_string())
    }
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Tokenizer(e.to_string())
    }
}
