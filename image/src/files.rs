//! Finding a pipeline's parts on disk: a diffusers folder (`model_index.json`, `unet/`,
//! `vae/`, `text_encoder[_2]/`, `tokenizer[_2]/`, `scheduler/`), with single or sharded
//! safetensors weights (and their `fp16` variants).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, model_err, read_json};

/// `model_index.json`: the pipeline class and which components it has.
#[derive(Clone, Debug, Deserialize)]
pub struct ModelIndex {
    /// The diffusers pipeline class (`StableDiffusionPipeline`, `StableDiffusionXLPipeline`, ...).
    #[serde(rename = "_class_name")]
    pub class_name: String,
    /// The model id it was saved from, when recorded.
    #[serde(rename = "_name_or_path", default)]
    pub name_or_path: Option<String>,
    /// SDXL: a missing negative prompt means zero embeddings.
    #[serde(default)]
    pub force_zeros_for_empty_prompt: Option<bool>,
    /// Every other entry (components and flags).
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ModelIndex {
    /// Whether the index lists a component (a `[library, class]` pair that is not null).
    pub fn has(&self, component: &str) -> bool {
        matches!(self.other.get(component), Some(serde_json::Value::Array(v)) if v.iter().all(|x| !x.is_null()))
    }
}

/// A diffusers pipeline folder.
#[derive(Clone, Debug)]
pub struct PipelineFolder {
    /// The folder.
    pub root: PathBuf,
    /// Its `model_index.json`.
    pub index: ModelIndex,
}

impl PipelineFolder {
    /// Opens `root`, which must hold `model_index.json`.
    pub fn open(root: &Path) -> Result<Self> {
        let index_path = root.join("model_index.json");
        if !index_path.is_file() {
            return Err(model_err(format!(
                "{}: not a diffusers pipeline folder (no model_index.json); pass the folder that holds unet/, vae/, text_encoder/, or a single-file .safetensors checkpoint",
                root.display()
            )));
        }
        Ok(Self { root: root.to_path_buf(), index: read_json(&index_path)? })
    }

    /// A component's folder, which must exist.
    pub fn component(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(model_err(format!("{}: the pipeline has no {name}/ folder", self.root.display())));
        }
        Ok(dir)
    }

    /// A component's `config.json` (or `scheduler_config.json`).
    pub fn config(&self, name: &str) -> Result<PathBuf> {
        let dir = self.component(name)?;
        for f in ["config.json", "scheduler_config.json"] {
            if dir.join(f).is_file() {
                return Ok(dir.join(f));
            }
        }
        Err(model_err(format!("{}: no config.json", dir.display())))
    }

    /// A component's safetensors files: one file, or the shards an index lists; the full
    /// precision file is preferred over an `fp16` variant.
    pub fn weights(&self, name: &str) -> Result<Vec<PathBuf>> {
        let dir = self.component(name)?;
        for stem in ["diffusion_pytorch_model", "model"] {
            for variant in ["", ".fp16"] {
                let single = dir.join(format!("{stem}{variant}.safetensors"));
                if single.is_file() {
                    return Ok(vec![single]);
                }
                let index = dir.join(format!("{stem}.safetensors.index{variant}.json"));
                if index.is_file() {
                    return shards(&index);
                }
            }
        }
        if dir.read_dir().map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "bin")))).unwrap_or(false) {
            return Err(model_err(format!(
                "{}: only PyTorch .bin weights; stipple reads safetensors (convert with diffusers' save_pretrained(safe_serialization=True))",
                dir.display()
            )));
        }
        Err(model_err(format!("{}: no .safetensors weights", dir.display())))
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let idx: ShardIndex = read_json(index)?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names: Vec<String> = idx.weight_map.into_values().collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            let p = dir.join(&n);
            if p.is_file() { Ok(p) } else { Err(model_err(format!("{}: shard {n} is missing", index.display()))) }
        })
        .collect()
}
