//! stipple-gui: the stipple studio, an egui desktop app for text, image and music
//! diffusion. Each tab drives one modality's pipeline with its guidance and step controls;
//! generation runs on a worker thread (progress, previews, cancel), so the window never
//! blocks. `stipple studio` opens it with the embedded stipple-mini models.
#![warn(missing_docs)]

pub mod app;
pub mod diffusion_controls;
pub mod diffusion_tab;
pub mod image_panel;
pub mod job;
pub mod model_slot;
pub mod music_panel;
pub mod playback;
pub mod run;
pub mod text_panel;
pub mod widgets;

pub use app::{Studio, StudioOptions, Tab, run};
