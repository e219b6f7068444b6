//! The error type shared by every part of the core.

/// Everything that can go wrong in the core, with messages meant for users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device error...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is missing, unknown or out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An argument given by the caller cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The run was cancelled through its [`crate::progress::CancelToken`].
    #[error("cancelled")]
    Cancelled,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A training run cannot start, resume or save (the message says what to do).
    #[error("{0}")]
    Training(String),
    /// A JSON document could not be parsed.
    #[error("{path}: {source}")]
    Json {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A run was refused before it started because it would not fit in memory (the
    /// message names the estimate by part and the room there is).
    #[error("{0}")]
    Memory(String),
    /// A weight file is unreadable, damaged, or lacks a tensor the model needs.
    #[error("{0}")]
    Weights(String),
}

impl From<crate::output::OutputError> for Error {
    fn from(e: crate::output::OutputError) -> Self {
        match e {
            crate::output::OutputError::Io { path, source } => Error::Io { path: path.display().to_string(), source },
            other => Error::InvalidArgument(other.to_string()),
        }
    }
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for an [`Error::InvalidArgument`].
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}
