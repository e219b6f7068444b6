//! A byte-pair-encoding tokenizer's `vocab.json` + `merges.txt` (the slow tokenizers of
//! Dream's repositories and CLIP's diffusers folders), checked before the tokenizers crate
//! builds them: its builder (0.23) slices a buffer as long as the longest vocabulary entry
//! with each merged pair, and panics when a pair's concatenation is longer than every
//! entry rather than reporting the merge as out of vocabulary (found by fuzzing).

use std::collections::HashSet;
use std::path::Path;

use crate::{Error, Result};

/// Checks that every merge `a b` in `merges` (after its `#version` line) names two
/// vocabulary entries whose concatenation is one too, as the builder requires.
pub fn check(vocab: &Path, merges: &Path) -> Result<()> {
    let bad = |p: &Path, what: String| Error::Config(format!("{}: {what}", p.display()));
    let text = std::fs::read_to_string(vocab).map_err(|e| bad(vocab, e.to_string()))?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| bad(vocab, format!("not a JSON object of token -> id: {e}")))?;
    let tokens: HashSet<&str> = map.keys().map(String::as_str).collect();
    let text = std::fs::read_to_string(merges).map_err(|e| bad(merges, e.to_string()))?;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(merges, format!("line {} is not a pair of tokens: {line:?}", n + 1)));
        };
        for t in [a, b, &format!("{a}{b}")] {
            if !tokens.contains(t) {
                return Err(bad(merges, format!("line {}: {t:?} is not in {}", n + 1, vocab.display())));
            }
        }
    }
    Ok(())
}
