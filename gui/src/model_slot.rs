//! A tab's model: loaded in the background at start or when the user picks another
//! folder, so the window opens at once. A folder that fails to load leaves the model
//! that was loaded in place and says, in red, what is wrong with the folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dialogs::{Dialog, Pick};
use crate::job::{Job, Outcome, Waker};
use crate::widgets;

/// Loads a model from a folder (on a worker thread).
pub type Loader<M> = Arc<dyn Fn(&Path) -> anyhow::Result<M> + Send + Sync>;

/// One tab's model and its "Model folder" field.
pub struct ModelSlot<M> {
    current: Option<(PathBuf, Arc<M>)>,
    loading: Option<(PathBuf, Job<Arc<M>>)>,
    /// Why the last folder could not be loaded (the current model stays).
    pub error: Option<String>,
    /// The folder typed into "Model folder".
    pub folder: String,
    /// Models loaded so far (a tab adopts a new model's defaults when it grows).
    pub loads: usize,
    empty: String,
    marker: &'static str,
    loader: Loader<M>,
    wake: Waker,
    dialog: Dialog,
}

impl<M: Send + Sync + 'static> ModelSlot<M> {
    /// A slot that loads folders holding `marker` (`model_index.json`, `config.json`) with
    /// `loader`, starting with `initial` when given; `empty` says what to do without one.
    pub fn new(initial: Option<&Path>, empty: &str, marker: &'static str, wake: Waker, loader: Loader<M>) -> Self {
        let mut slot = Self {
            current: None,
            loading: None,
            error: None,
            folder: initial.map(|p| p.display().to_string()).unwrap_or_default(),
            loads: 0,
            empty: empty.into(),
            marker,
            loader,
            wake,
            dialog: Dialog::default(),
        };
        if let Some(p) = initial {
            slot.load(p);
        }
        slot
    }

    /// What is wrong with `path` before trying to load it: a missing folder, or a folder
    /// without the layout's marker file (hub ids and single files are left to the loader).
    pub fn check_folder(&self, path: &Path) -> Result<(), String> {
        let text = path.display().to_string();
        if text.trim().is_empty() {
            return Err("give a model folder".into());
        }
        if !path.exists() {
            if stipple_core::hub::is_hub_id(&text) {
                return Ok(());
            }
            return Err(format!("folder does not exist: {text}"));
        }
        if path.is_dir() && !path.join(self.marker).exists() {
            return Err(format!("no {} in {text}: this is not a model folder of this kind", self.marker));
        }
        Ok(())
    }

    /// Starts loading `path` (the model loaded so far stays until it succeeds).
    pub fn load(&mut self, path: &Path) {
        if let Err(e) = self.check_folder(path) {
            self.error = Some(e);
            return;
        }
        self.error = None;
        let p = path.to_path_buf();
        let loader = self.loader.clone();
        let job = Job::spawn(self.wake.clone(), move |r, _| {
            r.stage(format!("loading {}", p.display()));
            Ok(Arc::new(loader(&p)?))
        });
        self.loading = Some((path.to_path_buf(), job));
    }

    /// Loads the model a reused run was made with, when that is another folder that
    /// exists; true when a load started.
    pub fn follow(&mut self, model: &str) -> bool {
        let p = Path::new(model);
        if model.is_empty() || self.path() == Some(p) || !p.exists() {
            return false;
        }
        self.folder = model.to_string();
        self.load(p);
        self.loading.is_some()
    }

    /// Moves a finished load along; true when a new model became the current one.
    pub fn poll(&mut self) -> bool {
        if let Some(picked) = self.dialog.take() {
            self.folder = picked.display().to_string();
            self.load(&picked);
        }
        let Some((path, job)) = &mut self.loading else { return false };
        let Outcome::Done(result, _) = job.poll() else { return false };
        let path = path.clone();
        self.loading = None;
        match result {
            Ok(m) => {
                self.current = Some((path, m));
                self.loads += 1;
                true
            }
            Err(e) => {
                self.error = Some(format!("could not load {}: {e:#}", path.display()));
                false
            }
        }
    }

    /// The model, once loaded.
    pub fn ready(&self) -> Option<&Arc<M>> {
        self.current.as_ref().map(|(_, m)| m)
    }

    /// The folder of the loaded model.
    pub fn path(&self) -> Option<&Path> {
        self.current.as_ref().map(|(p, _)| p.as_path())
    }

    /// Whether a folder is loading.
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// One line: which model, what is loading, or what to do.
    pub fn describe(&self) -> String {
        let mut s = match &self.current {
            Some((p, _)) => format!("model: {}", p.display()),
            None => self.empty.clone(),
        };
        if let Some((p, _)) = &self.loading {
            s = if self.current.is_some() { format!("{s} (loading {} ...)", p.display()) } else { format!("loading {} ...", p.display()) };
        }
        s
    }

    /// The model line, the load error in red, and "Model folder" with Browse and Load.
    pub fn ui(&mut self, ui: &mut egui::Ui, enabled: bool) {
        widgets::model_line(ui, &self.describe());
        if let Some(e) = &self.error {
            widgets::error(ui, e);
        }
        ui.add_enabled_ui(enabled, |ui| {
            ui.horizontal(|ui| {
                let field = widgets::singleline(ui, "Model folder", &mut self.folder);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Browse…").on_hover_text("choose the model folder in a file dialog").clicked() {
                    self.dialog.start(Pick::Folder);
                }
                if ui.add_enabled(!self.folder.trim().is_empty(), egui::Button::new("Load")).clicked() || enter {
                    let p = PathBuf::from(self.folder.trim());
                    self.load(&p);
                }
            });
        });
    }
}
