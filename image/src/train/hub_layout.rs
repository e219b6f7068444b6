//! Saving trained networks as diffusers folders: each component's `config.json` and
//! weights (f16, the trained ones as their EMA), `model_index.json`, the scheduler, the
//! tokenizer and the autoencoder, so `stipple image --model` loads a run's output like a
//! downloaded pipeline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::json;
use stipple_core::prediction::PredictionType;
use stipple_core::training::run::write_json;
use stipple_core::training::{Params, TrainState};

use crate::error::{Error, Result};

/// The parameters of `varmap` by name, for the optimiser and the EMA.
pub fn params_of(varmap: &candle_nn::VarMap) -> Result<Params> {
    let data = varmap.data().lock().map_err(|_| Error::Model("parameter map lock poisoned".into()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The EMA weights of the parameters under `prefix.` (all when empty), names without it.
pub fn ema_weights(state: &TrainState, prefix: &str) -> HashMap<String, Tensor> {
    state
        .ema
        .weights()
        .iter()
        .filter_map(|(k, t)| if prefix.is_empty() { Some((k.clone(), t.clone())) } else { k.strip_prefix(&format!("{prefix}.")).map(|n| (n.to_string(), t.clone())) })
        .collect()
}

/// Writes `config` as `config.json` and `weights` (in f16) as `file` into `dir`.
pub fn save_component(dir: &Path, config: &serde_json::Value, weights: &HashMap<String, Tensor>, file: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Model(format!("creating {}: {e}", dir.display())))?;
    let cast: HashMap<String, Tensor> = weights.iter().map(|(k, t)| Ok((k.clone(), t.to_dtype(DType::F16)?))).collect::<Result<_>>()?;
    stipple_core::output::write_file(&dir.join(file), true, |tmp| candle_core::safetensors::save(&cast, tmp).map_err(|e| Error::Model(format!("{}: {e}", tmp.display()))))?;
    Ok(write_json(&dir.join("config.json"), config)?)
}

/// The scheduler written with a trained pipeline: Stable Diffusion 1.x's training betas.
pub fn scheduler_config(prediction: PredictionType) -> serde_json::Value {
    json!({
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.42.1",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "prediction_type": prediction,
        "clip_sample": false,
        "set_alpha_to_one": false,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": null,
    })
}

/// Copies `src` to `dst`, replacing it atomically.
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    stipple_core::output::write_file(dst, true, |tmp| std::fs::copy(src, tmp).map(|_| ()).map_err(|e| Error::Model(format!("copying {}: {e}", src.display()))))
}

/// Copies a trained pipeline's tokenizer folder (the vocabulary its text encoder knows).
pub fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::Model(format!("creating {}: {e}", to.display())))?;
    let entries = std::fs::read_dir(from).map_err(|e| Error::Model(format!("{}: --init needs a pipeline trained by `stipple train image`: {e}", from.display())))?;
    for entry in entries {
        let src = entry.map_err(|e| Error::Model(format!("{}: {e}", from.display())))?.path();
        if let Some(name) = src.file_name().filter(|_| src.is_file()) {
            copy_file(&src, &to.join(name))?;
        }
    }
    Ok(())
}

/// `model_index.json`, the scheduler config, the autoencoder (copied when it lives
/// elsewhere) and, for spectrogram sets, the data's `spectrogram_params.json`.
pub fn write_pipeline_files(out: &Path, vae: &Path, data: &Path, scheduler: &serde_json::Value) -> Result<()> {
    let index = json!({
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "requires_safety_checker": false,
        "safety_checker": [null, null],
        "scheduler": ["diffusers", scheduler["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    });
    let create = |dir: PathBuf| std::fs::create_dir_all(&dir).map_err(|e| Error::Model(format!("creating {}: {e}", dir.display())));
    create(out.to_path_buf())?;
    write_json(&out.join("model_index.json"), &index)?;
    create(out.join("scheduler"))?;
    write_json(&out.join("scheduler/scheduler_config.json"), scheduler)?;
    let params = data.join("spectrogram_params.json");
    if params.is_file() {
        copy_file(&params, &out.join("spectrogram_params.json"))?;
    }
    let target = out.join("vae");
    let same = std::fs::canonicalize(vae).ok().zip(std::fs::canonicalize(&target).ok()).is_some_and(|(a, b)| a == b);
    if !same {
        create(target.clone())?;
        for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
            copy_file(&vae.join(f), &target.join(f))?;
        }
    }
    Ok(())
}
