//! Models named by Hugging Face hub id (`owner/name`, optionally `@revision`) for every
//! modality: the repository's files come from the local hub cache, else are downloaded
//! (hf-hub), into the cache's snapshot folder, which then loads like any local folder.
//! Each backend says which files its layout needs (`stipple_text::files`,
//! `stipple_image::files`).

use std::path::{Path, PathBuf};

/// Why a hub model could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Neither a folder nor an `owner/name` id.
    #[error("{0}: no such folder, and not a hub id of the form owner/name")]
    NotAnId(String),
    /// The hub could not be reached (offline) and the cache does not hold the model.
    #[error("could not fetch {what} of {id} from the Hugging Face hub ({reason}). Offline? Download the model folder and pass its path to --model")]
    Fetch {
        /// The repository.
        id: String,
        /// The file or listing.
        what: String,
        /// The client's error.
        reason: String,
    },
    /// The repository has none of the files a model needs.
    #[error("{id} on the hub has no {need}")]
    Missing {
        /// The repository.
        id: String,
        /// What was looked for.
        need: String,
    },
}

/// Whether `source` names a hub repository rather than a local path.
pub fn is_hub_id(source: &str) -> bool {
    let id = source.split_once('@').map_or(source, |(id, _)| id);
    let mut parts = id.split('/');
    let ok = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none() && !source.starts_with('.') && !Path::new(source).exists()
}

/// The local snapshot folder of hub model `source` holding every file `wanted` picks from
/// the repository listing (`marker`, e.g. `model_index.json`, must be among them). Cached
/// files are not fetched again; offline, a snapshot already in the cache is used as is.
pub fn snapshot(source: &str, marker: &str, wanted: &dyn Fn(&[String]) -> Result<Vec<String>, String>) -> Result<PathBuf, HubError> {
    use hf_hub::{Repo, RepoType};
    if !is_hub_id(source) {
        return Err(HubError::NotAnId(source.to_string()));
    }
    let (id, rev) = match source.split_once('@') {
        Some((id, rev)) => (id.to_string(), rev.to_string()),
        None => (source.to_string(), "main".to_string()),
    };
    let repo = Repo::with_revision(id.clone(), RepoType::Model, rev);
    let cache = hf_hub::Cache::from_env().repo(repo.clone());
    let root_of = |marker_path: PathBuf| marker_path.parent().map(Path::to_path_buf).unwrap_or(marker_path);
    let fetch_err = |what: &str, e: &dyn std::fmt::Display| HubError::Fetch { id: id.clone(), what: what.to_string(), reason: e.to_string() };
    let api = hf_hub::api::sync::ApiBuilder::from_env().with_progress(true).build().map_err(|e| fetch_err("a hub client", &e))?.repo(repo);
    let listing = match api.info() {
        Ok(info) => info.siblings.into_iter().map(|s| s.rfilename).collect::<Vec<_>>(),
        // offline: a snapshot in the cache is the best there is
        Err(e) => return cache.get(marker).map(root_of).ok_or_else(|| fetch_err("the file list", &e)),
    };
    let files = wanted(&listing).map_err(|need| HubError::Missing { id: id.clone(), need })?;
    if !files.iter().any(|f| f == marker) {
        return Err(HubError::Missing { id, need: marker.to_string() });
    }
    let mut root = None;
    for name in &files {
        let path = match cache.get(name) {
            Some(p) => p,
            None => api.get(name).map_err(|e| fetch_err(name, &e))?,
        };
        if name == marker {
            root = Some(root_of(path));
        }
    }
    root.ok_or(HubError::Missing { id, need: marker.to_string() })
}

/// The local path of one file of hub repository `id` (`owner/name[@revision]`) that
/// `wanted` picks from the repository listing, with the other files it picks beside it
/// (the first picked is the one returned). For layouts whose main file is only known
/// from the listing (a GGUF repository holds one file per quantization). Offline, the
/// listing of the cached snapshot is used.
pub fn file(id: &str, wanted: &dyn Fn(&[String]) -> Result<Vec<String>, String>) -> Result<PathBuf, HubError> {
    use hf_hub::{Repo, RepoType};
    if !is_hub_id(id) {
        return Err(HubError::NotAnId(id.to_string()));
    }
    let (name, rev) = match id.split_once('@') {
        Some((name, rev)) => (name.to_string(), rev.to_string()),
        None => (id.to_string(), "main".to_string()),
    };
    let repo = Repo::with_revision(name.clone(), RepoType::Model, rev);
    let cache_root = hf_hub::Cache::from_env().path().clone();
    let cache = hf_hub::Cache::from_env().repo(repo.clone());
    let fetch_err = |what: &str, e: &dyn std::fmt::Display| HubError::Fetch { id: name.clone(), what: what.to_string(), reason: e.to_string() };
    let api = hf_hub::api::sync::ApiBuilder::from_env().with_progress(true).build().map_err(|e| fetch_err("a hub client", &e))?.repo(repo.clone());
    let (listing, online) = match api.info() {
        Ok(info) => (info.siblings.into_iter().map(|s| s.rfilename).collect::<Vec<_>>(), true),
        Err(e) => match cached_listing(&cache_root, &repo) {
            Some(listing) => (listing, false),
            None => return Err(fetch_err("the file list", &e)),
        },
    };
    let files = wanted(&listing).map_err(|need| HubError::Missing { id: name.clone(), need })?;
    let mut first = None;
    for f in &files {
        let path = match cache.get(f) {
            Some(p) => p,
            None if online => api.get(f).map_err(|e| fetch_err(f, &e))?,
            None => return Err(fetch_err(f, &"not in the local hub cache")),
        };
        first.get_or_insert(path);
    }
    first.ok_or(HubError::Missing { id: name, need: "a file to load".into() })
}

/// The files of the cached snapshot of `repo` (its revision's ref), relative to the
/// snapshot folder.
fn cached_listing(cache_root: &Path, repo: &hf_hub::Repo) -> Option<Vec<String>> {
    let dir = cache_root.join(repo.folder_name());
    let commit = std::fs::read_to_string(dir.join("refs").join(repo.revision())).ok()?;
    let snapshot = dir.join("snapshots").join(commit.trim());
    let mut out = Vec::new();
    let mut stack = vec![snapshot.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(&snapshot) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths() {
        assert!(is_hub_id("riffusion/riffusion-model-v1"));
        assert!(is_hub_id("stabilityai/sd-turbo@main"));
        assert!(!is_hub_id("./models/sd"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("justone"));
        assert!(!is_hub_id("/"));
    }

    #[test]
    fn offline_without_cache_is_a_clear_error() {
        // no network here and an empty cache: the error says what to do
        let dir = std::env::temp_dir().join(format!("stipple-hub-{}", std::process::id()));
        // Safety: set before any thread of this test reads the environment.
        unsafe { std::env::set_var("HF_HOME", &dir) };
        let err = snapshot("stipple-test/definitely-not-cached", "model_index.json", &|listing| Ok(listing.to_vec())).unwrap_err().to_string();
        assert!(err.contains("stipple-test/definitely-not-cached") && err.contains("--model"), "{err}");
    }
}
