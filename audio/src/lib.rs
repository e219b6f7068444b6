//! stipple-audio: spectrogram music diffusion (Riffusion) and its audio codec for stipple.
//!
//! Planned (issue #5): mel spectrogram <-> audio with Riffusion's parameters, Griffin-Lim,
//! text-to-music with seamless continuation, audio-to-audio, interpolation and loops.
//! Nothing is implemented here yet; `stipple audio` says so.
