//! stipple-gui: the stipple studio, an egui desktop app for text, image and music diffusion.
//!
//! Planned: guidance and step controls, live previews driven by the core's progress
//! events, cancellation, history. Nothing is implemented here yet; `stipple studio` says
//! so. (eframe is deliberately not a dependency until the studio exists, to keep builds fast.)
