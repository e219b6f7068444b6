//! `stipple studio`: opens the desktop studio with the embedded stipple-mini models (or the
//! folders given). The studio (egui/eframe) is a cargo feature, so the command-line tool
//! builds without a windowing stack: `cargo run --release --features studio -- studio`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;

/// `stipple studio` arguments.
#[derive(Args, Debug)]
pub struct StudioArgs {
    /// Text model folder (default: the embedded stipple-mini text model).
    #[arg(long)]
    pub text_model: Option<PathBuf>,
    /// Image pipeline folder (default: the embedded stipple-mini image model).
    #[arg(long)]
    pub image_model: Option<PathBuf>,
    /// Music (Riffusion-layout) folder (default: the embedded stipple-mini music model, when present).
    #[arg(long)]
    pub music_model: Option<PathBuf>,
    /// Where every result is kept with its parameters (default: $STIPPLE_STUDIO_HISTORY,
    /// else $XDG_DATA_HOME/stipple/history, else ~/.local/share/stipple/history).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

/// The folder given, else the default model of `kind` (none when it is missing: the tab
/// then says how to choose one).
#[cfg_attr(not(feature = "studio"), allow(dead_code))]
fn model_or_default(given: &Option<PathBuf>, kind: &str) -> Option<PathBuf> {
    given.clone().or_else(|| stipple::defaults::model(kind).ok())
}

/// Run `stipple studio`.
#[cfg(feature = "studio")]
pub fn run(g: &Global, args: &StudioArgs) -> Result<()> {
    let opts = stipple_gui::StudioOptions {
        text: model_or_default(&args.text_model, "text"),
        image: model_or_default(&args.image_model, "image"),
        music: model_or_default(&args.music_model, "music"),
        device: g.device.clone(),
        history: args.history.clone(),
    };
    stipple_gui::run(opts)
}

/// Run `stipple studio` (this build has no studio: say how to get one).
#[cfg(not(feature = "studio"))]
pub fn run(_g: &Global, _args: &StudioArgs) -> Result<()> {
    anyhow::bail!(
        "this stipple was built without the studio; build it with the `studio` feature: \
         cargo run --release --features studio -- studio (on Debian/Ubuntu it needs libwayland-dev and libxkbcommon-dev)"
    )
}
