//! The command-line front end's pieces: global options, progress bars, and one module
//! per command.

pub mod audio;
pub mod bench;
pub mod device;
pub mod image;
pub mod infill;
pub mod progress;
pub mod text;

/// Global options, resolved.
pub struct Global {
    /// Compute device.
    pub device: candle_core::Device,
    /// Weight dtype.
    pub dtype: candle_core::DType,
    /// Seed (None: the command's default).
    pub seed: Option<u64>,
    /// One JSON object on stdout.
    pub json: bool,
}
