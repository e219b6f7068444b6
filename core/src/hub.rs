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

/// Which files a layout needs, from a repository listing (`Err` names what is missing).
pub type PickFiles<'a> = dyn Fn(&[String]) -> Result<Vec<String>, String> + 'a;

/// One hub repository: its id, its local cache, and a client for the hub.
struct HubRepo {
    id: String,
    repo: hf_hub::Repo,
    cache: hf_hub::CacheRepo,
    api: hf_hub::api::sync::ApiRepo,
}

impl HubRepo {
    /// `owner/name[@revision]` (refused when it is not of that form).
    fn open(source: &str) -> Result<Self, HubError> {
        if !is_hub_id(source) {
            return Err(HubError::NotAnId(source.to_string()));
        }
        let (id, rev) = match source.split_once('@') {
            Some((id, rev)) => (id.to_string(), rev.to_string()),
            None => (source.to_string(), "main".to_string()),
        };
        let repo = hf_hub::Repo::with_revision(id.clone(), hf_hub::RepoType::Model, rev);
        let cache = hf_hub::Cache::from_env().repo(repo.clone());
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(true)
            .build()
            .map_err(|e| HubError::Fetch { id: id.clone(), what: "a hub client".into(), reason: e.to_string() })?
            .repo(repo.clone());
        Ok(Self { id, repo, cache, api })
    }

    fn fetch_err(&self, what: &str, e: &dyn std::fmt::Display) -> HubError {
        HubError::Fetch { id: self.id.clone(), what: what.to_string(), reason: e.to_string() }
    }

    fn missing(&self, need: String) -> HubError {
        HubError::Missing { id: self.id.clone(), need }
    }

    /// The repository's file names, from the hub.
    fn listing(&self) -> Result<Vec<String>, hf_hub::api::sync::ApiError> {
        Ok(self.api.info()?.siblings.into_iter().map(|s| s.rfilename).collect())
    }

    /// A file's local path: the cache's copy, else a download (when `online`).
    fn local(&self, name: &str, online: bool) -> Result<PathBuf, HubError> {
        match self.cache.get(name) {
            Some(p) => Ok(p),
            None if online => self.api.get(name).map_err(|e| self.fetch_err(name, &e)),
            None => Err(self.fetch_err(name, &"not in the local hub cache")),
        }
    }
}

/// The local snapshot folder of hub model `source` holding every file `wanted` picks from
/// the repository listing (`marker`, e.g. `model_index.json`, must be among them). Cached
/// files are not fetched again; offline, a snapshot already in the cache is used as is.
pub fn snapshot(source: &str, marker: &str, wanted: &PickFiles) -> Result<PathBuf, HubError> {
    let hub = HubRepo::open(source)?;
    let root_of = |marker_path: PathBuf| marker_path.parent().map(Path::to_path_buf).unwrap_or(marker_path);
    let listing = match hub.listing() {
        Ok(listing) => listing,
        // offline: a snapshot in the cache is the best there is
        Err(e) => return hub.cache.get(marker).map(root_of).ok_or_else(|| hub.fetch_err("the file list", &e)),
    };
    let files = wanted(&listing).map_err(|need| hub.missing(need))?;
    if !files.iter().any(|f| f == marker) {
        return Err(hub.missing(marker.to_string()));
    }
    let mut root = None;
    for name in &files {
        let path = hub.local(name, true)?;
        if name == marker {
            root = Some(root_of(path));
        }
    }
    root.ok_or_else(|| hub.missing(marker.to_string()))
}

/// The local path of one file of hub repository `id` (`owner/name[@revision]`) that
/// `wanted` picks from the repository listing, with the other files it picks beside it
/// (the first picked is the one returned). For layouts whose main file is only known
/// from the listing (a GGUF repository holds one file per quantization). Offline, the
/// listing of the cached snapshot is used.
pub fn file(id: &str, wanted: &PickFiles) -> Result<PathBuf, HubError> {
    let hub = HubRepo::open(id)?;
    let (listing, online) = match hub.listing() {
        Ok(listing) => (listing, true),
        Err(e) => match cached_listing(hf_hub::Cache::from_env().path(), &hub.repo) {
            Some(listing) => (listing, false),
            None => return Err(hub.fetch_err("the file list", &e)),
        },
    };
    let files = wanted(&listing).map_err(|need| hub.missing(need))?;
    let mut first = None;
    for f in &files {
        first.get_or_insert(hub.local(f, online)?);
    }
    first.ok_or_else(|| hub.missing("a file to load".into()))
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
