//! Finding a pipeline's parts: a diffusers folder (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder[_2]/`, `tokenizer[_2]/`, `scheduler/`), with single or sharded
//! safetensors weights (and their `fp16` variants), on disk or fetched by hub id.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, model_err, read_json};

/// The local path of a pipeline given as a folder, a single-file checkpoint or a hub id
/// (`owner/name[@revision]`, fetched into the Hugging Face cache: configs, tokenizers and
/// safetensors weights only).
pub fn resolve_pipeline(source: &Path) -> Result<PathBuf> {
    let text = source.to_string_lossy();
    if source.exists() {
        return Ok(source.to_path_buf());
    }
    if !stipple_core::hub::is_hub_id(&text) {
        return Err(model_err(format!("{text}: no such folder or file, and not a hub id of the form owner/name")));
    }
    stipple_core::hub::snapshot(&text, "model_index.json", &diffusers_files).map_err(|e| model_err(e.to_string()))
}

/// The files of a diffusers pipeline repository worth fetching: every JSON and text file
/// (configs, tokenizers, scheduler) and, per component folder, its safetensors weights
/// (the plain ones, or a variant such as `fp16` when there are no plain ones). Root-level
/// single-file checkpoints, PyTorch `.bin` files and other variants are skipped.
pub fn diffusers_files(listing: &[String]) -> std::result::Result<Vec<String>, String> {
    use std::collections::BTreeMap;
    if let Some(bin) = listing.iter().find(|f| {
        f.ends_with(".bin") && f.rsplit_once('/').is_some_and(|(dir, _)| !listing.iter().any(|g| g.starts_with(&format!("{dir}/")) && g.ends_with(".safetensors")))
    }) {
        return Err(format!(
            "safetensors weights for {bin} (only PyTorch .bin files there; convert once with diffusers: \
             DiffusionPipeline.from_pretrained(ID).save_pretrained(DIR, safe_serialization=True), then pass DIR)"
        ));
    }
    let mut keep: Vec<String> = listing.iter().filter(|f| f.ends_with(".json") || f.ends_with(".txt")).cloned().collect();
    let mut by_folder: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for f in listing.iter().filter(|f| f.ends_with(".safetensors")) {
        if let Some((folder, _)) = f.rsplit_once('/') {
            by_folder.entry(folder).or_default().push(f);
        }
    }
    for files in by_folder.values() {
        // `x.safetensors` / `x-00001-of-00002.safetensors` are plain; `x.fp16.safetensors` a variant
        let is_plain = |f: &&String| f.rsplit('/').next().is_some_and(|n| n.matches('.').count() == 1);
        let plain: Vec<&&String> = files.iter().filter(|f| is_plain(f)).collect();
        if plain.is_empty() {
            keep.extend(files.iter().map(|f| f.to_string()));
        } else {
            keep.extend(plain.into_iter().map(|f| f.to_string()));
        }
    }
    Ok(keep)
}

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
        let pickled = dir.read_dir().ok().and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "bin"))));
        if let Some(bin) = pickled {
            // only PyTorch pickles there: refused with how to convert them
            return Err(stipple_core::weights::pickle_error(&bin).into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_configs_and_plain_or_variant_weights() {
        let listing: Vec<String> = [
            "model_index.json", "riffusion-model-v1.ckpt", "v1.safetensors", "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.bin", "vae/config.json", "safety_checker/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
            "tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model-00002-of-00002.safetensors",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut got = diffusers_files(&listing).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                "model_index.json", "safety_checker/config.json", "text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
                "tokenizer/merges.txt", "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
            ]
        );
        let bin_only: Vec<String> = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"].iter().map(|s| s.to_string()).collect();
        assert!(diffusers_files(&bin_only).unwrap_err().contains("unet/diffusion_pytorch_model.bin"));
    }
}
