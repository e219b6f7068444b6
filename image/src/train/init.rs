//! Initial weights of a new network, by parameter name and shape, drawn from the portable
//! generator (the same model on every machine): PyTorch's default spread for linear and
//! convolution weights (std `1/sqrt(3 fan_in)`), std 0.02 for embeddings, unit gains for
//! norms and zero biases. Or a trained model's weights, to train it further.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use stipple_core::noise::PortableRng;

use crate::error::{Error, Result};

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

/// Sets every variable of `varmap` from trained weights: each `(prefix, file)` names a
/// safetensors file whose tensors are the variables under `prefix.` (the whole map when
/// the prefix is empty). Every variable must be found there, with its shape.
pub fn load_trained(varmap: &VarMap, files: &[(&str, &Path)]) -> Result<()> {
    let mut trained = HashMap::new();
    for (prefix, path) in files {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        trained.extend(tensors.into_iter().map(|(k, t)| (if prefix.is_empty() { k } else { format!("{prefix}.{k}") }, t)));
    }
    let vars = varmap.data().lock().map_err(|_| Error::Model("parameter map lock poisoned".into()))?;
    let from = files.iter().map(|(_, p)| p.display().to_string()).collect::<Vec<_>>().join(", ");
    for (name, var) in vars.iter() {
        let t = trained.get(name).ok_or_else(|| Error::Model(format!("{from}: no weight {name}; was it trained with the same settings?")))?;
        if t.dims() != var.dims() {
            return Err(Error::Model(format!("{from}: {name} has shape {:?}, the model needs {:?}", t.dims(), var.dims())));
        }
        var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
    }
    Ok(())
}
