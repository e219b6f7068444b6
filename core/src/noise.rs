//! A portable, seeded noise generator.
//!
//! Noise is always drawn on the CPU from a ChaCha20 stream and then moved to the target
//! device, so the same seed gives bit-identical noise on every device, thread count and
//! platform. Normals use the Box-Muller transform written here (not a library sampler
//! whose algorithm could change between versions).

use candle_core::{DType, Device, Shape, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::Result;

/// Anything that can hand out Gaussian or uniform noise for a sampler.
///
/// The generator used in production is [`PortableRng`]; tests replay noise recorded from
/// the Python references through the same trait.
pub trait NoiseSource {
    /// Standard-normal noise with the shape, dtype and device of `like`.
    fn randn_like(&mut self, like: &Tensor) -> Result<Tensor>;
    /// One uniform draw in the open interval (0, 1).
    fn uniform(&mut self) -> f64;
    /// The seed that reproduces this noise, when one does (recorded in outputs' metadata).
    fn seed(&self) -> Option<u64> {
        None
    }
}

/// A seeded ChaCha20 stream producing uniforms and normals identically everywhere.
#[derive(Clone, Debug)]
pub struct PortableRng {
    rng: ChaCha20Rng,
    spare_normal: Option<f64>,
    /// The seed of [`PortableRng::new`] (a derived stream has none of its own).
    seed: Option<u64>,
}

impl PortableRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha20Rng::seed_from_u64(seed), spare_normal: None, seed: Some(seed) }
    }

    /// An independent stream derived from this seed and a stream number (e.g. one per batch item).
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self { rng, spare_normal: None, seed: None }
    }

    /// A uniform draw in the open interval (0, 1), with 53 random bits.
    pub fn next_uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard-normal draw (Box-Muller; pairs are generated together).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = self.next_uniform();
        let u2 = self.next_uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// A tensor of standard normals, drawn on the CPU then moved to `device`.
    pub fn randn(&mut self, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let values: Vec<f32> = (0..shape.elem_count()).map(|_| self.next_normal() as f32).collect();
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?)
    }

    /// A tensor of uniforms in (0, 1), drawn on the CPU then moved to `device`.
    pub fn rand(&mut self, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let values: Vec<f64> = (0..shape.elem_count()).map(|_| self.next_uniform()).collect();
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?)
    }
}

impl NoiseSource for PortableRng {
    fn randn_like(&mut self, like: &Tensor) -> Result<Tensor> {
        self.randn(like.shape().clone(), like.dtype(), like.device())
    }

    fn uniform(&mut self) -> f64 {
        self.next_uniform()
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }
}

/// Spherical interpolation between two noise streams: every draw is `slerp(t, a, b)` of
/// one draw from each, so a walk from `t = 0` to `1` morphs one seed's picture into the
/// other's while the noise keeps unit variance (Riffusion's interpolation; a linear mix
/// would shrink it). Uniform draws come from `a`.
#[derive(Clone, Debug)]
pub struct SlerpNoise<A, B> {
    /// The stream at `t = 0`.
    pub a: A,
    /// The stream at `t = 1`.
    pub b: B,
    /// The position between them, in [0, 1].
    pub t: f64,
}

/// `slerp(t, v0, v1)` over whole tensors (treated as flat vectors), falling back to a
/// linear mix when they are nearly parallel, as Riffusion's `torch_util.slerp` does.
pub fn slerp(t: f64, v0: &Tensor, v1: &Tensor) -> Result<Tensor> {
    let dtype = v0.dtype();
    let (a, b) = (v0.to_dtype(DType::F64)?, v1.to_dtype(DType::F64)?);
    let norm = |x: &Tensor| -> Result<f64> { Ok(x.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt()) };
    let dot = (a.mul(&b)?.sum_all()?.to_scalar::<f64>()? / (norm(&a)? * norm(&b)?)).clamp(-1.0, 1.0);
    let out = if dot.abs() > 0.9995 || !dot.is_finite() {
        ((&a * (1.0 - t))? + (&b * t)?)?
    } else {
        let theta0 = dot.acos();
        let (s0, s1) = (((1.0 - t) * theta0).sin() / theta0.sin(), (t * theta0).sin() / theta0.sin());
        ((&a * s0)? + (&b * s1)?)?
    };
    Ok(out.to_dtype(dtype)?)
}

impl<A: NoiseSource, B: NoiseSource> NoiseSource for SlerpNoise<A, B> {
    fn randn_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let (x, y) = (self.a.randn_like(like)?, self.b.randn_like(like)?);
        slerp(self.t, &x, &y)
    }

    fn uniform(&mut self) -> f64 {
        self.a.uniform()
    }
}

/// Noise replayed from a fixed list (used to reproduce reference runs whose noise was recorded).
#[derive(Clone, Debug, Default)]
pub struct ReplayNoise {
    normals: std::collections::VecDeque<Vec<f32>>,
    uniforms: std::collections::VecDeque<f64>,
}

impl ReplayNoise {
    /// Replays `normals` (one flat array per `randn_like` call) and `uniforms` in order.
    pub fn new(normals: Vec<Vec<f32>>, uniforms: Vec<f64>) -> Self {
        Self { normals: normals.into(), uniforms: uniforms.into() }
    }

    /// How many normal tensors are still queued.
    pub fn remaining_normals(&self) -> usize {
        self.normals.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn randn_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let values = self
            .normals
            .pop_front()
            .ok_or_else(|| crate::error::invalid("replayed noise exhausted"))?;
        if values.len() != like.elem_count() {
            return Err(crate::error::invalid(format!(
                "replayed noise has {} values, expected {}",
                values.len(),
                like.elem_count()
            )));
        }
        Ok(Tensor::from_vec(values, like.shape(), &Device::Cpu)?
            .to_dtype(like.dtype())?
            .to_device(like.device())?)
    }

    fn uniform(&mut self) -> f64 {
        self.uniforms.pop_front().expect("replayed uniforms exhausted")
    }
}

/// Noise for a batch whose rows each have their own source: a `[B, ...]` draw is row `i`
/// drawn from source `i` as a batch-of-one run with that source draws it, so jobs made
/// together as one batch get the noise, and so the result, each gets alone (ancestral
/// samplers included). Uniform draws (discrete samplers) come from the first source.
pub struct PerSample<S> {
    /// One source per batch row.
    pub sources: Vec<S>,
}

impl<S: NoiseSource> NoiseSource for PerSample<S> {
    fn randn_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let rows = like.dim(0)?;
        if rows != self.sources.len() {
            return Err(crate::Error::InvalidArgument(format!("a noise draw of {rows} rows from {} per-row sources", self.sources.len())));
        }
        let mut shape = like.dims().to_vec();
        shape[0] = 1;
        let row = Tensor::zeros(shape, like.dtype(), like.device())?;
        let draws = self.sources.iter_mut().map(|s| s.randn_like(&row)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&draws, 0)?)
    }

    fn uniform(&mut self) -> f64 {
        self.sources[0].uniform()
    }

    fn seed(&self) -> Option<u64> {
        self.sources.first().and_then(|s| s.seed())
    }
}

/// splitmix64's finaliser: a well-mixed 64-bit value from any input.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of the job named `label` in a batch seeded `base`: the same on every run,
/// shard and machine (FNV-1a of the label mixed with the base), below 2^53 like
/// [`random_seed`]. A resumed or sharded batch draws the same noise as an uninterrupted one.
pub fn derive_seed(base: u64, label: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(mix64(base) ^ h) >> 11
}

/// A fresh seed for runs the user did not seed: splitmix64 of the clock and the process id
/// (two runs in the same tick differ), below 2^53 so JSON readers see it exactly.
pub fn random_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    mix64((t as u64) ^ ((std::process::id() as u64) << 32)) >> 11
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_sample_rows_are_each_sources_own_draws() {
        let like = Tensor::zeros((3, 2, 4), DType::F32, &Device::Cpu).unwrap();
        let mut batch = PerSample { sources: (0..3).map(PortableRng::new).collect() };
        let twice = [batch.randn_like(&like).unwrap(), batch.randn_like(&like).unwrap()];
        for seed in 0..3u64 {
            let mut alone = PortableRng::new(seed);
            let row = Tensor::zeros((1, 2, 4), DType::F32, &Device::Cpu).unwrap();
            for draw in &twice {
                let want: Vec<f32> = alone.randn_like(&row).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let got: Vec<f32> = draw.get(seed as usize).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(got, want);
            }
        }
        assert_eq!(batch.seed(), Some(0));
        assert!(batch.randn_like(&Tensor::zeros((2, 1), DType::F32, &Device::Cpu).unwrap()).is_err());
    }

    #[test]
    fn derived_seeds_are_stable_and_distinct() {
        // pinned: a change would silently change every batch's outputs
        assert_eq!(derive_seed(0, "1"), derive_seed(0, "1"));
        assert_ne!(derive_seed(0, "1"), derive_seed(0, "2"));
        assert_ne!(derive_seed(0, "1"), derive_seed(1, "1"));
        assert_eq!(derive_seed(42, "cat"), 1_587_900_185_091_614);
        assert!((0..1000).all(|i| derive_seed(7, &i.to_string()) < 1 << 53));
    }

    #[test]
    fn slerp_ends_and_midpoint() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 0.0], &dev).unwrap();
        let b = Tensor::new(&[0f32, 1.0], &dev).unwrap();
        let v = |t: f64| slerp(t, &a, &b).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(0.0), vec![1.0, 0.0]);
        assert!((v(1.0)[1] - 1.0).abs() < 1e-6);
        // on the arc: unit length halfway, unlike a linear mix (0.707)
        let m = v(0.5);
        assert!(((m[0] * m[0] + m[1] * m[1]).sqrt() - 1.0).abs() < 1e-6 && (m[0] - m[1]).abs() < 1e-6);
        // parallel vectors mix linearly
        let c = Tensor::new(&[2f32, 0.0], &dev).unwrap();
        assert_eq!(slerp(0.5, &a, &c).unwrap().to_vec1::<f32>().unwrap(), vec![1.5, 0.0]);
        let mut s = SlerpNoise { a: PortableRng::new(1), b: PortableRng::new(2), t: 0.0 };
        let x = s.randn_like(&Tensor::zeros(8, DType::F32, &dev).unwrap()).unwrap();
        let want = PortableRng::new(1).randn(8, DType::F32, &dev).unwrap();
        assert_eq!(x.to_vec1::<f32>().unwrap(), want.to_vec1::<f32>().unwrap());
    }

    #[test]
    fn same_seed_same_noise_and_streams_differ() {
        let a = PortableRng::new(42).randn((2, 3), DType::F32, &Device::Cpu).unwrap();
        let b = PortableRng::new(42).randn((2, 3), DType::F32, &Device::Cpu).unwrap();
        let c = PortableRng::stream(42, 1).randn((2, 3), DType::F32, &Device::Cpu).unwrap();
        let (a, b, c): (Vec<f32>, Vec<f32>, Vec<f32>) =
            (a.flatten_all().unwrap().to_vec1().unwrap(), b.flatten_all().unwrap().to_vec1().unwrap(), c.flatten_all().unwrap().to_vec1().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut rng = PortableRng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.next_normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }

    // Pinned: changing these changes every user's seeds.
    const PINNED: [f64; 3] = [0.024366309518846496, 0.12214077176458961, -0.14619710788687465];

    #[test]
    fn known_values_do_not_drift() {
        // Pinned so that a change of algorithm (which would change every user's seeds) is caught.
        let mut rng = PortableRng::new(0);
        let values = [rng.next_uniform(), rng.next_normal(), rng.next_normal()];
        assert_eq!(values, PINNED);
    }
}

