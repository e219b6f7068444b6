//! Initial weights of a new network, by parameter name and shape, drawn from the portable
//! generator (the same model on every machine): PyTorch's default spread for linear and
//! convolution weights (std `1/sqrt(3 fan_in)`), std 0.02 for embeddings, unit gains for
//! norms and zero biases.

use candle_nn::VarMap;
use stipple_core::noise::PortableRng;

use crate::error::Result;

/// Sets every variable of `varmap` (visited in name order) from `seed`.
pub fn fan_in_normal(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| crate::error::invalid("parameter map lock poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = PortableRng::new(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let value = if dims.len() >= 2 {
            let std = if name.contains("embedding") { 0.02 } else { 1.0 / (3.0 * dims[1..].iter().product::<usize>() as f64).sqrt() };
            (rng.randn(var.shape().clone(), candle_core::DType::F32, var.device())? * std)?
        } else if name.ends_with(".weight") {
            var.as_tensor().ones_like()?
        } else {
            var.as_tensor().zeros_like()?
        };
        var.set(&value)?;
    }
    Ok(())
}
