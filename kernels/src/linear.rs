//! A linear layer over the last dimension with its weight stored transposed once
//! (`[in, out]`, row-major) and all leading dimensions flattened into one gemm.
//!
//! candle's `Linear` multiplies by a transposed view of `[out, in]` per batch item and
//! adds the bias in a second pass; on the SD transformer blocks (8192 x 320 activations)
//! that ran at ~155 GFLOP/s against ~215 for one flat gemm with the bias preloaded into
//! the output.

use candle_core::{DType, Device, Module, Result, Tensor};
use rayon::prelude::*;

/// `x W^T + b` for `x` `[..., in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[in, out]`, contiguous.
    wt: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From a weight `[out, in]` (the PyTorch layout) and an optional bias `[out]`.
    /// A trained weight is kept as a transposed view, so it follows the optimiser's updates.
    pub fn new(weight: &Tensor, bias: Option<Tensor>) -> Result<Self> {
        let wt = if crate::tracks_grad(&[weight]) { weight.t()? } else { crate::cpu::transpose(weight)? };
        Ok(Self { wt, bias })
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.wt.dims()[1]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (k, n) = self.wt.dims2()?;
        let mut out_shape = x.dims().to_vec();
        let Some(last) = out_shape.last_mut() else {
            candle_core::bail!("linear: a scalar input");
        };
        if *last != k {
            candle_core::bail!("linear: input {:?} does not end in {k}", x.shape());
        }
        *last = n;
        let tracked = crate::tracks_grad(&[x, &self.wt]) || self.bias.as_ref().is_some_and(|b| b.track_op());
        if !x.device().is_cpu() || x.dtype() != DType::F32 || self.wt.dtype() != DType::F32 || tracked {
            let y = x.broadcast_matmul(&self.wt)?;
            return match &self.bias {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            };
        }
        let m = x.elem_count() / k;
        let mut out = crate::cpu::par_zeroed(m * n);
        let with_bias = match &self.bias {
            Some(b) => {
                let b = b.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                out.par_chunks_mut(n).for_each(|row| row.copy_from_slice(&b));
                true
            }
            None => false,
        };
        let threads = rayon::current_num_threads();
        crate::cpu::with_f32(&x.contiguous()?, |xs| {
            crate::cpu::with_f32(&self.wt, |ws| {
                // Safety: [m, k] x [k, n] -> [m, n], all row-major and in bounds.
                unsafe {
                    gemm::gemm(
                        m, n, k,
                        out.as_mut_ptr(), 1, n as isize, with_bias,
                        xs.as_ptr(), 1, k as isize,
                        ws.as_ptr(), 1, n as isize,
                        1.0, 1.0,
                        false, false, false,
                        gemm::Parallelism::Rayon(threads),
                    );
                }
            })
        })??;
        Tensor::from_vec(out, out_shape, &Device::Cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_candle_linear() {
        let dev = Device::Cpu;
        for (shape, bias) in [(vec![2, 7, 5], true), (vec![3, 5], false), (vec![1, 2, 3, 5], true)] {
            let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (4, 5), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1.0, 4, &dev).unwrap());
            let got = Linear::new(&w, b.clone()).unwrap().forward(&x).unwrap();
            let want = candle_core::Module::forward(&candle_core_linear(w, b), &x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = crate::test_util::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "{shape:?}: {diff}");
        }
    }

    /// candle's own linear, written out (x W^T + b) as the reference.
    fn candle_core_linear(w: Tensor, b: Option<Tensor>) -> impl Module {
        move |x: &Tensor| -> Result<Tensor> {
            let y = x.broadcast_matmul(&w.t()?)?;
            match &b {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            }
        }
    }
}
