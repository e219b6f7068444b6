//! stipple-kernels: fused hot operations.
#![warn(missing_docs)]

pub mod attention;
pub mod confidence;
pub mod conv;
pub mod fastmath;
pub mod guided_update;
pub mod gated;
