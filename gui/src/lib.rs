//! stipple-gui: the stipple studio, an egui desktop app for text, image and music
//! diffusion. Each tab drives one modality's pipeline through the library's request types
//! (the same validation as the CLI); one queue runs the jobs of every tab on a worker
//! thread (progress, previews, cancel), so the window never blocks; every result goes into
//! a history folder with its parameters. `stipple studio` opens it with the embedded
//! stipple-mini models.
#![warn(missing_docs)]

pub mod app;
pub mod dialogs;
pub mod diffusion_controls;
pub mod diffusion_tab;
pub mod gallery;
pub mod history;
pub mod image_panel;
pub mod job;
pub mod mask_editor;
pub mod model_slot;
pub mod music_panel;
pub mod music_views;
pub mod params;
pub mod playback;
pub mod queue;
pub mod run;
pub mod text_panel;
pub mod widgets;
pub mod work;

pub use app::{Studio, StudioOptions, Tab, run};
