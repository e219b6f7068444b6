//! stipple-kernels: fused hot operations.
#![warn(missing_docs)]

pub mod attention;
pub mod confidence;
pub mod conv;
pub mod cpu;
pub mod fastmath;
pub mod gated;
pub mod group_norm;
pub mod guided_update;
pub mod linear;
