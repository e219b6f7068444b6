//! Every result the studio makes, kept in a folder across restarts: each entry is its
//! output files (`000012.png`, `000012.wav`, `000012.txt` ...) plus `000012.json` with the
//! full parameters. The JSON is written last, atomically, so an entry exists only once all
//! its files do; a crash mid-way leaves stray outputs, never a broken entry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::params::Params;

/// One recorded result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its number (file names start with it, zero-padded).
    pub id: u64,
    /// When it was made (seconds since the Unix epoch).
    pub created: u64,
    /// How it was made.
    pub params: Params,
    /// Its files in the history folder: the outputs first (pictures, the clip, the text),
    /// then extras (a clip's spectrogram).
    pub outputs: Vec<String>,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// One line of statistics ("48 tokens, 48 model calls").
    pub summary: String,
}

/// The history folder and its entries, oldest first.
pub struct History {
    dir: PathBuf,
    entries: Vec<Entry>,
    /// Why the folder could not be read or written, when it could not.
    pub error: Option<String>,
}

impl History {
    /// The default folder: `$STIPPLE_STUDIO_HISTORY`, else `$XDG_DATA_HOME/stipple/history`,
    /// else `~/.local/share/stipple/history` (`%APPDATA%\stipple\history` on Windows).
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("STIPPLE_STUDIO_HISTORY") {
            return PathBuf::from(d);
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("APPDATA").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(std::env::temp_dir);
        data.join("stipple").join("history")
    }

    /// Opens (creating it if needed) a history folder. Entries whose JSON cannot be read
    /// are skipped and counted in [`History::error`]; the studio works without a
    /// history (the error says why) rather than not opening.
    pub fn open(dir: &Path) -> Self {
        let mut h = Self { dir: dir.to_path_buf(), entries: Vec::new(), error: None };
        if let Err(e) = std::fs::create_dir_all(dir) {
            h.error = Some(format!("no history: could not create {}: {e}", dir.display()));
            return h;
        }
        let listing = match std::fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) => {
                h.error = Some(format!("no history: could not read {}: {e}", dir.display()));
                return h;
            }
        };
        let mut unreadable = Vec::new();
        for item in listing.flatten() {
            let path = item.path();
            let name = item.file_name().to_string_lossy().to_string();
            if !name.ends_with(".json") || !name.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str::<Entry>(&t).map_err(|e| e.to_string())) {
                Ok(e) => h.entries.push(e),
                Err(e) => unreadable.push(format!("{name} ({e})")),
            }
        }
        h.entries.sort_by_key(|e| e.id);
        if !unreadable.is_empty() {
            h.error = Some(format!("skipped {} history entries that could not be read: {}", unreadable.len(), unreadable.join(", ")));
        }
        h
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the history folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry numbered `id`.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Records a result: `write` puts its files in the folder, named from the given stem
    /// (and may note saved inputs in the parameters), and returns their names. Returns the
    /// new entry's number.
    pub fn add(&mut self, mut params: Params, seconds: f64, summary: String, write: impl FnOnce(&Path, &str, &mut Params) -> anyhow::Result<Vec<String>>) -> anyhow::Result<u64> {
        std::fs::create_dir_all(&self.dir).map_err(|e| anyhow::anyhow!("could not create the history folder {}: {e}", self.dir.display()))?;
        // numbers continue after the largest in use, also one a crash left without JSON
        let id = self.next_id();
        let stem = format!("{id:06}");
        let outputs = write(&self.dir, &stem, &mut params)?;
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let entry = Entry { id, created, params, outputs, seconds, summary };
        let json = serde_json::to_vec_pretty(&entry)?;
        stipple_core::output::write_bytes(&self.path(&format!("{stem}.json")), &json, false)?;
        self.entries.push(entry);
        Ok(id)
    }

    fn next_id(&self) -> u64 {
        let on_disk = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        on_disk.max(self.entries.last().map_or(0, |e| e.id)) + 1
    }

    /// Deletes an entry and its files.
    pub fn remove(&mut self, id: u64) -> anyhow::Result<()> {
        let Some(i) = self.entries.iter().position(|e| e.id == id) else { return Ok(()) };
        let e = &self.entries[i];
        // the JSON first: a failure part-way leaves stray files, not an entry missing files
        std::fs::remove_file(self.path(&format!("{:06}.json", e.id)))?;
        let mut names = e.outputs.clone();
        names.extend(inputs_of(&e.params));
        for name in names {
            let _ = std::fs::remove_file(self.path(&name));
        }
        self.entries.remove(i);
        Ok(())
    }
}

/// The input files an entry's parameters name (init image, mask, source audio).
fn inputs_of(p: &Params) -> Vec<String> {
    match p {
        Params::Image(p) => p.init_image.iter().chain(&p.mask).cloned().collect(),
        Params::Music(p) => p.init_audio.iter().chain(&p.continue_from).cloned().collect(),
        Params::Text(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{TextMode, TextParams};

    fn text(prompt: &str) -> Params {
        Params::Text(TextParams {
            model: "m".into(),
            mode: TextMode::Generate,
            prompt: prompt.into(),
            chat: false,
            gen_len: 8,
            block_len: 8,
            steps: 8,
            temperature: 0.0,
            top_p: 1.0,
            guidance: 0.0,
            remasking: "low-confidence".into(),
            threshold: None,
            cache: "none".into(),
            seed: 3,
        })
    }

    #[test]
    fn entries_persist_across_reopening_and_number_on() {
        let dir = std::env::temp_dir().join(format!("stipple-history-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut h = History::open(&dir);
        assert!(h.error.is_none() && h.entries().is_empty());
        let write = |body: &'static str| {
            move |dir: &Path, stem: &str, _: &mut Params| -> anyhow::Result<Vec<String>> {
                let name = format!("{stem}.txt");
                std::fs::write(dir.join(&name), body)?;
                Ok(vec![name])
            }
        };
        let a = h.add(text("one"), 0.5, "8 tokens".into(), write("first")).unwrap();
        let b = h.add(text("two"), 0.7, "8 tokens".into(), write("second")).unwrap();
        assert_eq!((a, b), (1, 2));
        // a crash left outputs without JSON: not an entry, but its number is not reused
        std::fs::write(dir.join("000003.txt"), "orphan").unwrap();
        std::fs::write(dir.join("000009.json"), "{ not json").unwrap();
        let mut again = History::open(&dir);
        assert_eq!(again.entries().iter().map(|e| e.params.prompt().to_string()).collect::<Vec<_>>(), vec!["one", "two"]);
        assert!(again.error.as_deref().unwrap().contains("000009.json"));
        assert_eq!(std::fs::read_to_string(again.path(&again.get(2).unwrap().outputs[0])).unwrap(), "second");
        std::fs::remove_file(dir.join("000009.json")).unwrap();
        let c = again.add(text("three"), 0.1, String::new(), write("third")).unwrap();
        assert_eq!(c, 4);
        again.remove(1).unwrap();
        assert!(!dir.join("000001.txt").exists() && !dir.join("000001.json").exists());
        assert_eq!(History::open(&dir).entries().len(), 2);
        // a failing writer records nothing
        assert!(again.add(text("x"), 0.0, String::new(), |_, _, _| anyhow::bail!("disk full")).is_err());
        assert_eq!(History::open(&dir).entries().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
