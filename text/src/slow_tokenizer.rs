//! The fast tokenizer of a model that ships only its slow tokenizer's files.
//!
//! Dream's hub repositories (like Qwen2's older ones) have `vocab.json`, `merges.txt`,
//! `added_tokens.json` and a `tokenizer_config.json` naming a Python tokenizer class, but
//! no `tokenizer.json`. transformers rebuilds the fast tokenizer from them; so does this
//! module, for the classes whose rules it knows (Qwen2's byte-level BPE, which Dream's
//! `DreamTokenizer` copies): NFC normalisation, Qwen2's pre-tokenizing regex, byte-level
//! BPE with no prefix space, and the added tokens at the ids the files give them.
//! Parity with the Python class is checked on a fixture in exactly the hub's layout.

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};
use crate::files::read_json;

/// Qwen2's `PRETOKENIZE_REGEX` (transformers' `tokenization_qwen2.py`, Dream's copy).
pub(crate) const QWEN2_PRETOKENIZE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The slow tokenizer classes rebuilt here.
const QWEN2_CLASSES: &[&str] = &["Qwen2Tokenizer", "Qwen2TokenizerFast", "DreamTokenizer"];

/// The tokenizer for `vocab.json` + `merges.txt`, with the added tokens of
/// `tokenizer_config.json` (`added_tokens_decoder`) and `added_tokens.json`.
pub fn from_bpe_files(vocab: &Path, merges: &Path, added_tokens: Option<&Path>, tokenizer_config: Option<&Path>) -> Result<Tokenizer> {
    let cfg = match tokenizer_config {
        Some(p) => read_json(p)?,
        None => Value::Null,
    };
    let class = cfg.get("tokenizer_class").and_then(Value::as_str).unwrap_or("");
    if !QWEN2_CLASSES.contains(&class) {
        return Err(Error::Tokenizer(format!(
            "{}: no tokenizer.json, and the slow tokenizer class {} is not one stipple can rebuild ({}); \
             save the tokenizer with transformers (`AutoTokenizer.from_pretrained(...).save_pretrained(...)`) to get a tokenizer.json",
            vocab.parent().unwrap_or(vocab).display(),
            if class.is_empty() { "(none named in tokenizer_config.json)" } else { class },
            QWEN2_CLASSES.join(", ")
        )));
    }
    let path_str = |p: &Path| p.to_str().map(str::to_string).ok_or_else(|| Error::Tokenizer(format!("{}: not UTF-8", p.display())));
    stipple_core::bpe_files::check(vocab, merges).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let bpe = BPE::from_file(&path_str(vocab)?, &path_str(merges)?)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{} / {}: {e}", vocab.display(), merges.display())))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_normalizer(Some(NFC)).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let split = Split::new(SplitPattern::Regex(QWEN2_PRETOKENIZE.into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| Error::Tokenizer(format!("the Qwen2 pre-tokenizer: {e}")))?;
    tok.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()])));
    tok.with_decoder(Some(ByteLevelDecoder::default()));

    // added tokens by id: tokenizer_config.json's decoder (with the special flag), then
    // added_tokens.json for any it lacks (all special, as transformers treats them)
    let mut added: std::collections::BTreeMap<u32, (String, bool)> = Default::default();
    if let Some(Value::Object(dec)) = cfg.get("added_tokens_decoder") {
        for (id, t) in dec {
            let id: u32 = id.parse().map_err(|_| Error::Tokenizer(format!("added_tokens_decoder: id {id:?} is not a number")))?;
            let content = t.get("content").and_then(Value::as_str).ok_or_else(|| Error::Tokenizer(format!("added_tokens_decoder: token {id} has no content")))?;
            added.insert(id, (content.to_string(), t.get("special").and_then(Value::as_bool).unwrap_or(true)));
        }
    }
    if let Some(p) = added_tokens {
        let Value::Object(map) = read_json(p)? else {
            return Err(Error::Tokenizer(format!("{}: not a JSON object of token -> id", p.display())));
        };
        for (content, id) in map {
            let id = id.as_u64().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| Error::Tokenizer(format!("{}: id of {content:?} is not a number", p.display())))?;
            added.entry(id).or_insert((content, true));
        }
    }
    // in id order, so each lands where the files put it; checked below
    for (id, (content, special)) in &added {
        let token = AddedToken::from(content.clone(), *special).normalized(false);
        let added = if *special { tok.add_special_tokens([token]) } else { tok.add_tokens([token]) };
        added.map_err(|e| Error::Tokenizer(format!("added token {content:?}: {e}")))?;
        if tok.token_to_id(content) != Some(*id) {
            return Err(Error::Tokenizer(format!(
                "added token {content:?} should have id {id} but the vocabulary gives it {:?} (ids must follow the vocabulary without gaps)",
                tok.token_to_id(content)
            )));
        }
    }
    Ok(tok)
}
