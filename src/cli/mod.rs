//! The command-line front end's pieces: global options, progress bars, and one module
//! per command.

pub mod audio;
pub mod bench;
pub mod device;
pub mod image;
pub mod infill;
pub mod loss_curve;
pub mod progress;
pub mod studio;
pub mod text;
pub mod train;

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

/// A diffusers pipeline given to `--model`: a local folder or file as is, or a hub id
/// (`owner/name[@revision]`) fetched into the Hugging Face cache (configs, tokenizers and
/// safetensors weights only).
pub(crate) fn pipeline_path(spec: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let text = spec.to_string_lossy();
    if spec.exists() || !stipple_core::hub::is_hub_id(&text) {
        return Ok(spec.to_path_buf());
    }
    Ok(stipple_core::hub::snapshot(&text, "model_index.json", &stipple_core::hub::diffusers_files)?)
}
