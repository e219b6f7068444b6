//! stipple-kernels: fused hot operations.
#![warn(missing_docs)]

pub mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_tiles;
pub mod confidence;
pub mod conv;
pub mod counter_rng;
pub mod cpu_features;
pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod fastmath;
pub mod gated;
pub mod group_norm;
pub mod linear;
pub mod norm;
pub mod packed_matmul;
pub mod rotary;
#[cfg(target_arch = "x86_64")]
mod simd;
mod winograd;

/// Whether any of `tensors` is being tracked for gradients (a trainable variable, or a
/// result computed from one). The fused kernels have no backward pass: when this holds,
/// every entry point runs its candle-op twin instead, so the same model code trains and
/// infers (training builds models from a `VarMap`, inference from read-only weights).
pub fn tracks_grad(tensors: &[&candle_core::Tensor]) -> bool {
    tensors.iter().any(|t| t.track_op())
}

/// Helpers shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::Tensor;

    /// Standard-normal f32 noise of `shape` from a seeded generator (candle's CPU `randn`
    /// cannot be seeded, so tests on it would check different inputs on every run).
    pub fn seeded_randn(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        Tensor::from_vec(data, shape, &candle_core::Device::Cpu).unwrap()
    }

    /// The first CUDA device, or `None` after printing why the CUDA twin tests skip.
    #[cfg(feature = "cuda")]
    pub fn cuda_device() -> Option<candle_core::Device> {
        candle_core::Device::new_cuda(0).map_err(|e| eprintln!("skipped: no usable CUDA device ({e})")).ok()
    }

    /// The largest absolute difference between two tensors of the same shape.
    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }
}
