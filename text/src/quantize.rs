//! Quantizing a model's matrices while it loads (`--quantize q8_0`): a safetensors
//! checkpoint, or a plain GGUF file, then runs like a quantized GGUF file (candle's
//! quantized matmul, activations in f32) without a conversion step, in a fraction of its
//! memory. Each matrix is quantized as it is read, so loading never holds more than the
//! quantized model plus one plain matrix. Matrices whose rows do not split into the
//! type's blocks (32 values, 256 for k-quants) stay plain, as llama.cpp's quantizer falls
//! back for them. candle's Q8_0 gives the same bytes as llama.cpp's converter
//! (`text/tests/gguf.rs`), so `--quantize q8_0` runs exactly the converter's Q8_0 file.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Result, invalid};
use crate::models::transformer::{Matrix, WeightSource};

/// The quantization types `--quantize` accepts, by llama.cpp's names.
pub const TYPES: &[(&str, GgmlDType)] = &[
    ("q8_0", GgmlDType::Q8_0),
    ("q6_k", GgmlDType::Q6K),
    ("q5_k", GgmlDType::Q5K),
    ("q5_0", GgmlDType::Q5_0),
    ("q4_k", GgmlDType::Q4K),
    ("q4_0", GgmlDType::Q4_0),
];

/// Parses a quantization type name (case-insensitive).
pub fn parse(name: &str) -> Result<GgmlDType> {
    let lower = name.to_ascii_lowercase();
    TYPES.iter().find(|(n, _)| *n == lower).map(|(_, t)| *t).ok_or_else(|| {
        invalid(format!("unknown quantization {name:?}; choose one of {}", TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")))
    })
}

/// A [`WeightSource`] whose plain matrices come out quantized.
pub struct Quantizing<'a> {
    inner: &'a dyn WeightSource,
    ty: GgmlDType,
}

impl<'a> Quantizing<'a> {
    /// Quantize `inner`'s matrices to `ty` (its vectors pass through, in f32).
    pub fn new(inner: &'a dyn WeightSource, ty: GgmlDType) -> Self {
        Self { inner, ty }
    }
}

impl WeightSource for Quantizing<'_> {
    fn vector(&self, name: &str, size: usize) -> Result<Tensor> {
        Ok(self.inner.vector(name, size)?.to_dtype(DType::F32)?)
    }

    fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Matrix> {
        match self.inner.matrix(name, out, inp)? {
            Matrix::Dense(w) if inp % self.ty.block_size() == 0 => {
                let w = w.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                let device = self.inner.device();
                let q = if device.is_cpu() { QTensor::quantize(&w, self.ty)? } else { QTensor::quantize_onto(&w, self.ty, device)? };
                Ok(Matrix::Quantized(Arc::new(q)))
            }
            Matrix::Dense(w) => Ok(Matrix::Dense(w.to_dtype(DType::F32)?)),
            quantized => Ok(quantized),
        }
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn device(&self) -> &Device {
        self.inner.device()
    }
}
