//! Training text: gathering and cleaning plain-text sources into a training and a
//! held-out file, and training a byte-level BPE tokenizer on them (the `tokenizers`
//! crate's trainer, saved as the `tokenizer.json` every loader reads).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, invalid};

/// The separator written between documents; also the tokenizer's end-of-text token.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// The `[MASK]` token of tokenizers trained here.
pub const MASK: &str = "<|mdm_mask|>";

/// How sources are cut into a training and a held-out part.
#[derive(Clone, Debug)]
pub struct SplitOptions {
    /// Bytes per chunk (chunks end at the next line or sentence end after this many).
    pub chunk_bytes: usize,
    /// Every `heldout_every`-th chunk goes to the held-out part (0: none).
    pub heldout_every: usize,
    /// Files whose path contains any of these are skipped.
    pub skip: Vec<String>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self { chunk_bytes: 4000, heldout_every: 20, skip: Vec::new() }
    }
}

/// A prepared corpus.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    /// Training text, documents separated by [`END_OF_TEXT`] lines.
    pub train: String,
    /// Held-out text, in the same form.
    pub heldout: String,
    /// Files read.
    pub files: usize,
}

/// Every `.txt` file under `sources` (files or folders, walked in name order), minus skips.
pub fn text_files(sources: &[PathBuf], skip: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for src in sources {
        if src.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(src)
                .map_err(|e| Error::Model(format!("{}: {e}", src.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
            out.extend(text_files(&files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "txt")).collect::<Vec<_>>(), skip)?);
            out.extend(text_files(&dirs, skip)?);
        } else if src.is_file() {
            if !skip.iter().any(|s| src.to_string_lossy().contains(s.as_str())) {
                out.push(src.clone());
            }
        } else {
            return Err(invalid(format!("{}: no such file or folder", src.display())));
        }
    }
    Ok(out)
}

/// Cleans one document: Unix line ends, a Project Gutenberg header and licence cut off
/// when present, trailing spaces trimmed, runs of blank lines reduced to one.
pub fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut body: &str = &text;
    if let Some(i) = body.find("*** START OF") {
        body = body[i..].split_once('\n').map_or("", |(_, rest)| rest);
    }
    if let Some(i) = body.find("*** END OF") {
        body = &body[..i];
    }
    let mut out = String::with_capacity(body.len());
    let mut blank = 0;
    for line in body.lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// Cuts `text` into chunks of at least `min` bytes, each ending at a line end or after a
/// sentence's full stop (the last chunk may be shorter).
pub fn chunks(text: &str, min: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut cut = text.len();
        let mut i = (start + min).min(text.len());
        while !text.is_char_boundary(i) {
            i += 1;
        }
        if let Some(rel) = text[i..].find(['\n', '.']) {
            cut = i + rel + 1;
        }
        out.push(text[start..cut].trim());
        start = cut;
    }
    out.retain(|c| !c.is_empty());
    out
}

/// Reads and cleans every source file and splits its chunks between training and
/// held-out text (deterministically: every `heldout_every`-th chunk over the whole corpus).
pub fn prepare(sources: &[PathBuf], opts: &SplitOptions) -> Result<Corpus> {
    let files = text_files(sources, &opts.skip)?;
    if files.is_empty() {
        return Err(invalid("no .txt files found in the sources"));
    }
    let mut corpus = Corpus { files: files.len(), ..Corpus::default() };
    let mut n = 0usize;
    for f in &files {
        let raw = std::fs::read(f).map_err(|e| Error::Model(format!("{}: {e}", f.display())))?;
        let text = clean(&String::from_utf8_lossy(&raw));
        let (mut train, mut held) = (Vec::new(), Vec::new());
        for c in chunks(&text, opts.chunk_bytes.max(1)) {
            n += 1;
            if opts.heldout_every > 0 && n % opts.heldout_every == 0 { held.push(c) } else { train.push(c) }
        }
        for (part, out) in [(train, &mut corpus.train), (held, &mut corpus.heldout)] {
            if !part.is_empty() {
                out.push_str(&part.join("\n\n"));
                out.push('\n');
                out.push_str(END_OF_TEXT);
                out.push('\n');
            }
        }
    }
    Ok(corpus)
}

/// Trains a byte-level BPE tokenizer of `vocab_size` entries on `files`, with
/// [`END_OF_TEXT`] (id 0) and [`MASK`] (id 1) as special tokens.
pub fn train_tokenizer(files: &[PathBuf], vocab_size: usize) -> Result<tokenizers::Tokenizer> {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};
    if vocab_size < 300 {
        return Err(invalid(format!("vocabulary size {vocab_size} is too small: byte-level BPE needs 256 bytes plus merges")));
    }
    let specials = vec![AddedToken::from(END_OF_TEXT, true), AddedToken::from(MASK, true)];
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.add_special_tokens(specials).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let names: Vec<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    tok.train_from_files(&mut trainer, names).map_err(|e| Error::Tokenizer(format!("training the tokenizer: {e}")))?;
    Ok(tok)
}

/// Saves a trained tokenizer as `tokenizer.json` and `tokenizer_config.json` in `dir`.
pub fn save_tokenizer(tok: &tokenizers::Tokenizer, dir: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Tokenizer(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let json = tok.to_string(true).map_err(|e| err(&e))?;
    stipple_core::output::write_file(&dir.join("tokenizer.json"), true, |tmp| std::fs::write(tmp, &json).map_err(|e| err(&e)))?;
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": END_OF_TEXT,
        "pad_token": END_OF_TEXT,
        "mask_token": MASK,
    });
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| err(&e))?;
    stipple_core::output::write_file(&dir.join("tokenizer_config.json"), true, |tmp| std::fs::write(tmp, &text).map_err(|e| err(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_drops_gutenberg_frame_and_extra_blank_lines() {
        let raw = "The Project Gutenberg EBook\r\n*** START OF THIS EBOOK ***\r\nCall me  \r\nIshmael.\r\n\r\n\r\n\r\nSome years ago.\n*** END OF THIS EBOOK ***\nlicence";
        assert_eq!(clean(raw), "Call me\nIshmael.\n\nSome years ago.");
    }

    #[test]
    fn chunks_end_at_lines_or_sentences_and_cover_the_text() {
        let text = "One two three. Four five six. Seven\neight nine.";
        let c = chunks(text, 10);
        assert_eq!(c, vec!["One two three.", "Four five six.", "Seven\neight nine."]);
        assert_eq!(chunks("é".repeat(20).as_str(), 3).concat(), "é".repeat(20));
    }

    #[test]
    fn tokenizer_round_trips_and_knows_its_special_tokens() {
        let dir = std::env::temp_dir().join(format!("stipple-bpe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "the whale and the sea, the ship and the sea.\n".repeat(200) + END_OF_TEXT;
        let file = dir.join("train.txt");
        std::fs::write(&file, &text).unwrap();
        let tok = train_tokenizer(&[file], 320).unwrap();
        assert_eq!(tok.token_to_id(END_OF_TEXT), Some(0));
        assert_eq!(tok.token_to_id(MASK), Some(1));
        let enc = tok.encode("the whale and the sea", false).unwrap();
        assert!(enc.get_ids().len() < 10, "merges learned: {:?}", enc.get_tokens());
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), "the whale and the sea");
        save_tokenizer(&tok, &dir).unwrap();
        let back = crate::tokenizer::TextTokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json"))).unwrap();
        assert_eq!(back.encode("the ship", false).unwrap(), tok.encode("the ship", false).unwrap().get_ids());
        std::fs::remove_dir_all(&dir).ok();
    }
}
