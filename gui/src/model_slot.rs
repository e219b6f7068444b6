//! A model the studio loads in the background at start (or when the user picks another
//! folder), so the window opens at once and the controls work while weights load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::job::{Job, Outcome, Waker};

/// The state of one tab's model.
pub enum ModelSlot<M> {
    /// No model chosen; the text says what to do.
    Empty(String),
    /// Loading from this folder.
    Loading(PathBuf, Job<Arc<M>>),
    /// Loaded from this folder.
    Ready(PathBuf, Arc<M>),
    /// Loading failed: the folder and why.
    Failed(PathBuf, String),
}

impl<M: Send + Sync + 'static> ModelSlot<M> {
    /// Starts loading `path` with `load`.
    pub fn load(path: &Path, wake: Waker, load: impl FnOnce(&Path) -> anyhow::Result<M> + Send + 'static) -> Self {
        let p = path.to_path_buf();
        let job = Job::spawn(wake, move |r, _| {
            r.stage(format!("loading {}", p.display()));
            Ok(Arc::new(load(&p)?))
        });
        Self::Loading(path.to_path_buf(), job)
    }

    /// Moves a finished load to `Ready` or `Failed`.
    pub fn poll(&mut self) {
        if let Self::Loading(path, job) = self {
            if let Outcome::Done(result, _) = job.poll() {
                *self = match result {
                    Ok(m) => Self::Ready(path.clone(), m),
                    Err(e) => Self::Failed(path.clone(), format!("{e:#}")),
                };
            }
        }
    }

    /// The model, once loaded.
    pub fn ready(&self) -> Option<&Arc<M>> {
        match self {
            Self::Ready(_, m) => Some(m),
            _ => None,
        }
    }

    /// One line for the UI: which model, or why there is none.
    pub fn describe(&self) -> String {
        match self {
            Self::Empty(why) => why.clone(),
            Self::Loading(p, _) => format!("loading {} ...", p.display()),
            Self::Ready(p, _) => format!("model: {}", p.display()),
            Self::Failed(p, e) => format!("could not load {}: {e}", p.display()),
        }
    }
}
