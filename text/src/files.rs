//! Finding a model's files: a local Hugging Face folder, or a hub id resolved through the
//! local hub cache first and a download second (the core's [`stipple_core::hub`]).

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
    /// The tokenizer's files.
    pub tokenizer: TokenizerFiles,
    /// `tokenizer_config.json` (chat template, special tokens), when present.
    pub tokenizer_config: Option<PathBuf>,
    /// `generation_config.json`, when present.
    pub generation_config: Option<PathBuf>,
}

/// Where a model's tokenizer comes from.
#[derive(Clone, Debug)]
pub enum TokenizerFiles {
    /// `tokenizer.json` (the fast tokenizer, as transformers saves it).
    Json(PathBuf),
    /// Only the slow tokenizer's files (Dream and older Qwen2 repositories): rebuilt by
    /// [`crate::slow_tokenizer`].
    SlowBpe {
        /// `vocab.json`.
        vocab: PathBuf,
        /// `merges.txt`.
        merges: PathBuf,
        /// `added_tokens.json`, when present.
        added_tokens: Option<PathBuf>,
    },
}

impl TokenizerFiles {
    /// The tokenizer files in a folder, if any.
    pub fn in_dir(dir: &Path) -> Option<Self> {
        let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        match (opt("tokenizer.json"), opt("vocab.json"), opt("merges.txt")) {
            (Some(json), _, _) => Some(TokenizerFiles::Json(json)),
            (None, Some(vocab), Some(merges)) => Some(TokenizerFiles::SlowBpe { vocab, merges, added_tokens: opt("added_tokens.json") }),
            _ => None,
        }
    }
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
    /// A local folder path if `source` is one, else a hub id (`owner/name`, optionally
    /// `owner/name@revision`).
    pub fn resolve(source: &str) -> Result<Self> {
        let path = Path::new(source);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.exists() {
            stipple_core::weights::refuse_pickle(path)?;
            return Err(Error::Model(format!(
                "{source} is a file; pass the model folder (with config.json, *.safetensors, tokenizer.json or vocab.json + merges.txt)"
            )));
        }
        if !stipple_core::hub::is_hub_id(source) {
            return Err(Error::Model(format!(
                "{source}: no such folder, and not a hub id of the form owner/name"
            )));
        }
        Self::from_hub(source)
    }

    /// The files of a local folder; names the missing ones.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::Model(format!(
                    "{}: missing {name} (a model folder needs config.json, model.safetensors or model.safetensors.index.json + shards, tokenizer.json or vocab.json + merges.txt)",
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
        } else if !dir.join(SINGLE).is_file() && dir.join("pytorch_model.bin").is_file() {
            // the pickle alone: refused with how to convert it
            return Err(stipple_core::weights::pickle_error(&dir.join("pytorch_model.bin")).into());
        } else {
            vec![need(SINGLE)?]
        };
        Ok(Self {
            config: need("config.json")?,
            weights,
            tokenizer: match TokenizerFiles::in_dir(dir) {
                Some(tok) => tok,
                None => TokenizerFiles::Json(need("tokenizer.json")?),
            },
            tokenizer_config: opt("tokenizer_config.json"),
            generation_config: opt("generation_config.json"),
        })
    }

    /// Resolve a hub id through the core's hub resolver (the local hub cache first, then
    /// a download of the files [`transformers_files`] picks).
    pub fn from_hub(source: &str) -> Result<Self> {
        let root = stipple_core::hub::snapshot(source, "config.json", &transformers_files).map_err(|e| Error::Model(e.to_string()))?;
        Self::from_dir(&root)
    }

    /// Read `config.json`.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        read_json(&self.config)
    }
}

/// The files of a transformers model repository worth fetching: the JSON files at its
/// root (configs, tokenizer, shard index), `merges.txt` (a slow tokenizer's), and its
/// safetensors weights there (one file or shards); PyTorch `.bin` weights, remote code and
/// subfolders are skipped.
pub fn transformers_files(listing: &[String]) -> std::result::Result<Vec<String>, String> {
    let at_root = |f: &&String| !f.contains('/');
    let keep: Vec<String> = listing.iter().filter(at_root).filter(|f| f.ends_with(".json") || f.ends_with(".safetensors") || *f == "merges.txt").cloned().collect();
    if !keep.iter().any(|f| f.ends_with(".safetensors")) {
        return Err(format!("safetensors weights ({SINGLE} or {INDEX} with shards)"));
    }
    Ok(keep)
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
    fn picks_root_configs_and_safetensors() {
        let listing: Vec<String> = ["config.json", "modeling_llada.py", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", INDEX, "tokenizer.json", "pytorch_model.bin", "extra/x.safetensors"].iter().map(|s| s.to_string()).collect();
        let got = transformers_files(&listing).unwrap();
        assert_eq!(got, vec!["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", INDEX, "tokenizer.json"]);
        assert!(transformers_files(&["config.json".to_string(), "pytorch_model.bin".to_string()]).unwrap_err().contains("safetensors"));
        // Dream's layout: the slow tokenizer's files come along, remote code does not
        let dream: Vec<String> = ["config.json", "model.safetensors", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json", "tokenization_dream.py", "README.md"].iter().map(|s| s.to_string()).collect();
        assert_eq!(transformers_files(&dream).unwrap(), vec!["config.json", "model.safetensors", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"]);
    }

    #[test]
    fn not_a_folder_nor_an_id() {
        let err = ModelFiles::resolve("./no/such/dir/here").unwrap_err().to_string();
        assert!(err.contains("no such folder"), "{err}");
    }
}
