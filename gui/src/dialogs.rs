//! Native file dialogs (rfd: the desktop's portal on Linux, the system dialogs on macOS
//! and Windows), run on their own thread so the window keeps repainting while one is open.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

/// What to ask the user for.
#[derive(Clone, Debug)]
pub enum Pick {
    /// A folder (a model).
    Folder,
    /// An existing file with one of these extensions.
    Open(&'static str, &'static [&'static str]),
    /// A file to write, suggested name first.
    Save(String, &'static str, &'static [&'static str]),
}

/// A dialog that may be open; [`Dialog::take`] returns the choice once made.
#[derive(Debug, Default)]
pub struct Dialog {
    pending: Option<Receiver<Option<PathBuf>>>,
    /// Why no dialog could be shown (no portal, no display).
    pub error: Option<String>,
}

impl Dialog {
    /// Opens a dialog (one at a time: a second request while one is open is ignored).
    pub fn start(&mut self, pick: Pick) {
        if self.pending.is_some() {
            return;
        }
        let (tx, rx) = channel();
        self.pending = Some(rx);
        self.error = None;
        // the async dialog, waited for on a thread: rfd hands it to the main thread where a
        // platform needs that (macOS), and the window's event loop keeps running meanwhile
        std::thread::spawn(move || {
            let dialog = rfd::AsyncFileDialog::new();
            let chosen = pollster::block_on(async move {
                match pick {
                    Pick::Folder => dialog.set_title("Model folder").pick_folder().await,
                    Pick::Open(what, exts) => dialog.set_title(format!("Open {what}")).add_filter(what, exts).pick_file().await,
                    Pick::Save(name, what, exts) => dialog.set_title("Save as").set_file_name(name).add_filter(what, exts).save_file().await,
                }
            });
            let _ = tx.send(chosen.map(|h| h.path().to_path_buf()));
        });
    }

    /// The path chosen, once (none while open, cancelled, or not started).
    pub fn take(&mut self) -> Option<PathBuf> {
        let rx = self.pending.as_ref()?;
        match rx.try_recv() {
            Ok(choice) => {
                self.pending = None;
                choice
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.pending = None;
                self.error = Some("the file dialog could not be shown (no desktop portal?): type the path instead".into());
                None
            }
        }
    }
}
