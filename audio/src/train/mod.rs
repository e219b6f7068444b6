//! Training data and measurements for music models (the `train` feature):
//! [`music_set`] renders captioned General MIDI phrases (rustysynth), [`drum_kits`] plays
//! grooves on CC0 Sonic Pi samples (FLAC, claxon), [`eval`] checks that generated clips
//! follow their prompts, and [`recipe`] ties them to `stipple train`. The models
//! themselves train as latent image models (`stipple_image::train`).

pub mod drum_kits;
pub mod eval;
pub mod music_set;
pub mod recipe;
