//! The embedded default models (stipple-mini), found without a `--model`: in
//! `$STIPPLE_MODELS`, in `models/` beside the executable or above it (a cargo build in a
//! clone: `target/release/stipple` finds the clone's `models/`), or in the source tree
//! this binary was built from.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Folder of the stipple-mini models inside a `models/` folder.
pub const MINI: &str = "stipple-mini";

/// Places searched for `models/stipple-mini/<kind>`, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os("STIPPLE_MODELS") {
        roots.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            roots.push(dir.join("models"));
        }
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    roots
}

/// The default model of `kind` (`text`, `image` or `music`).
pub fn model(kind: &str) -> Result<PathBuf> {
    let roots = search_path();
    for root in &roots {
        let dir = root.join(MINI).join(kind);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    let tried: Vec<String> = roots.iter().map(|r| r.join(MINI).join(kind).display().to_string()).collect();
    bail!("no --model given and the default {MINI} {kind} model was not found (looked in {}); pass --model, or set STIPPLE_MODELS to a folder holding {MINI}/{kind}", tried.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_names_the_places_searched() {
        let e = model("no-such-kind").unwrap_err().to_string();
        assert!(e.contains("stipple-mini no-such-kind") && e.contains("STIPPLE_MODELS") && e.contains("models"), "{e}");
    }
}
