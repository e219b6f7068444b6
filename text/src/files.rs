//! Finding a model's files: a local Hugging Face folder, or a hub id resolved through the
//! local hub cache first and a download second (hf-hub).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The files of a transformers-layout model folder.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// Every safetensors shard (one file, or those listed by `model.safetensors.index.json`).
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `tokenizer_config.json` (chat template, special tokens), when present.
    pub tokenizer_config: Option<PathBuf>,
    /// `generation_config.json`, when present.
    pub generation_config: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| Error::Model(format!("{}: {e}", index.display())))?;
    let idx: ShardIndex = serde_json::from_str(&text)
        .map_err(|e| Error::Model(format!("{}: {e}", index.display())))?;
    let mut names: Vec<String> = idx.weight_map.into_values().collect();
    names.sort();
    names.dedup();
    Ok(names)
}

impl ModelFiles {
    /// A local folder path if `spec` is one, else a hub id (`owner/name`, optionally
    /// `owner/name@revision`).
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.exists() {
            return Err(Error::Model(format!(
                "{spec} is a file; pass the model folder (with config.json, *.safetensors, tokenizer.json)"
            )));
        }
        let looks_like_id = spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.contains('\\');
        if !looks_like_id {
            return Err(Error::Model(format!(
                "{spec}: no such folder, and not a hub id of the form owner/name"
            )));
        }
        Self::from_hub(spec)
    }

    /// The files of a local folder; names the missing ones.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::Model(format!(
                    "{}: missing {name} (a model folder needs config.json, model.safetensors or model.safetensors.index.json + shards, tokenizer.json)",
                    dir.display()
                )))
            }
        };
        let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let weights = if dir.join(INDEX).is_file() {
            let shards: Vec<PathBuf> = shard_names(&dir.join(INDEX))?
                .into_iter()
                .map(|n| dir.join(n))
                .collect();
            if let Some(m) = shards.iter().find(|p| !p.is_file()) {
                return Err(Error::Model(format!(
                    "{}: shard {} listed in {INDEX} is missing",
                    dir.display(),
                    m.display()
                )));
            }
            shards
        } else {
            vec![need(SINGLE)?]
        };
        Ok(Self {
            config: need("config.json")?,
            weights,
            tokenizer: need("tokenizer.json")?,
            tokenizer_config: opt("tokenizer_config.json"),
            generation_config: opt("generation_config.json"),
        })
    }

    /// Resolve a hub id: the local hub cache first, then a download.
    pub fn from_hub(spec: &str) -> Result<Self> {
        use hf_hub::{Repo, RepoType};
        let (id, rev) = match spec.split_once('@') {
            Some((id, rev)) => (id.to_string(), rev.to_string()),
            None => (spec.to_string(), "main".to_string()),
        };
        let repo = Repo::with_revision(id.clone(), RepoType::Model, rev);
        let cache = hf_hub::Cache::from_env().repo(repo.clone());
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(true)
            .build()
            .map_err(|e| Error::Model(format!("hub client: {e}")))?
            .repo(repo);
        let get = |name: &str| -> Result<PathBuf> {
            if let Some(p) = cache.get(name) {
                return Ok(p);
            }
            api.get(name).map_err(|e| {
                Error::Model(format!(
                    "could not fetch {name} of {id} from the Hugging Face hub ({e}). \
                     Offline? Download the model folder (config.json, model.safetensors or \
                     model.safetensors.index.json + shards, tokenizer.json, tokenizer_config.json) \
                     and pass its path to --model"
                ))
            })
        };
        let try_get = |name: &str| get(name).ok();
        let config = get("config.json")?;
        let weights = match try_get(INDEX) {
            Some(index) => shard_names(&index)?
                .iter()
                .map(|n| get(n))
                .collect::<Result<Vec<_>>>()?,
            None => vec![get(SINGLE)?],
        };
        Ok(Self {
            config,
            weights,
            tokenizer: get("tokenizer.json")?,
            tokenizer_config: try_get("tokenizer_config.json"),
            generation_config: try_get("generation_config.json"),
        })
    }

    /// Read `config.json`.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        read_json(&self.config)
    }
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("stipple-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let err = ModelFiles::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        std::fs::write(dir.join(INDEX), r#"{"weight_map":{"a":"model-00001-of-00002.safetensors"}}"#).unwrap();
        let err = ModelFiles::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("model-00001-of-00002.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_a_folder_nor_an_id() {
        let err = ModelFiles::resolve("./no/such/dir/here").unwrap_err().to_string();
        assert!(err.contains("no such folder"), "{err}");
    }
}
