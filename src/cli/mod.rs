//! Pieces of the command-line front end that are worth testing on their own.

pub mod device;
pub mod progress;
