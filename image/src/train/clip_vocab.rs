//! A CLIP-format tokenizer (`vocab.json` + `merges.txt`) for a caption set, laid out the
//! way OpenAI's CLIP builds its vocabulary: the 256 byte characters, the same with the
//! `</w>` word end, one entry per merge, then `<|startoftext|>` and `<|endoftext|>`. The
//! merges are learned on the captions with the `tokenizers` BPE trainer, using CLIP's own
//! normalisation and word splitting, so [`crate::tokenizer::ClipTokenizer`] (and
//! transformers' `CLIPTokenizer`) read the result like any SD tokenizer.

use std::path::Path;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

/// CLIP's pre-tokenization pattern (the same as the loader's).
const WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

fn err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("caption tokenizer: {e}"))
}

/// Learns up to `max_merges` merges (pairs seen at least twice) on `captions`.
pub fn learn_merges(captions: &[String], max_merges: usize) -> Result<Vec<(String, String)>> {
    let mut tok = Tokenizer::new(BPE::builder().end_of_word_suffix("</w>".into()).build().map_err(err)?);
    tok.with_normalizer(Some(NormSequence::new(vec![NFC.into(), Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ").map_err(err)?.into(), Lowercase.into()]))).map_err(err)?;
    tok.with_pre_tokenizer(Some(PreSequence::new(vec![
        Split::new(SplitPattern::Regex(WORDS.into()), SplitDelimiterBehavior::Removed, true).map_err(err)?.into(),
        ByteLevel::new(false, false, false).into(),
    ])));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(100_000)
        .min_frequency(2)
        .end_of_word_suffix("</w>".into())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    tok.train(&mut trainer, captions.iter().cloned()).map_err(err)?;
    let json: serde_json::Value = serde_json::from_str(&tok.to_string(false).map_err(err)?).map_err(err)?;
    let merges = json["model"]["merges"].as_array().cloned().unwrap_or_default();
    Ok(merges
        .iter()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
            serde_json::Value::Array(p) => Some((p.first()?.as_str()?.to_string(), p.get(1)?.as_str()?.to_string())),
            _ => None,
        })
        .take(max_merges)
        .collect())
}

/// CLIP's byte-to-character table (printable bytes as themselves, the rest from U+0100).
fn byte_chars() -> Vec<char> {
    let mut bytes: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    chars.into_iter().filter_map(char::from_u32).collect()
}

/// Writes `vocab.json`, `merges.txt`, `special_tokens_map.json` and
/// `tokenizer_config.json` (`max_len` positions) into `dir`; returns the vocabulary size.
pub fn write(dir: &Path, merges: &[(String, String)], max_len: usize) -> Result<usize> {
    let chars = byte_chars();
    let mut vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    vocab.extend(chars.iter().map(|c| format!("{c}</w>")));
    let mut seen: std::collections::HashSet<String> = vocab.iter().cloned().collect();
    for (a, b) in merges {
        let piece = format!("{a}{b}");
        if seen.insert(piece.clone()) {
            vocab.push(piece);
        }
    }
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    let map: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::Value::from(i))).collect();
    let merges_txt = std::iter::once("#version: 0.2".to_string()).chain(merges.iter().map(|(a, b)| format!("{a} {b}"))).collect::<Vec<_>>().join("\n") + "\n";
    let special = serde_json::json!({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"});
    let mut config = special.clone();
    config["model_max_length"] = max_len.into();
    config["do_lower_case"] = true.into();
    config["tokenizer_class"] = "CLIPTokenizer".into();
    std::fs::create_dir_all(dir).map_err(err)?;
    for (name, text) in [
        ("vocab.json", serde_json::to_string(&map).map_err(err)?),
        ("merges.txt", merges_txt),
        ("special_tokens_map.json", serde_json::to_string_pretty(&special).map_err(err)?),
        ("tokenizer_config.json", serde_json::to_string_pretty(&config).map_err(err)?),
    ] {
        let path = dir.join(name);
        stipple_core::output::write_file(&path, true, |tmp| std::fs::write(tmp, &text).map_err(err))?;
    }
    Ok(vocab.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ClipTokenizer;

    #[test]
    fn caption_words_become_single_tokens_in_a_clip_folder() {
        let captions: Vec<String> = ["red apple", "green apple", "red heart", "blue heart", "Red Car"].iter().map(|s| s.to_string()).collect();
        let merges = learn_merges(&captions, 1000).unwrap();
        let dir = std::env::temp_dir().join(format!("stipple-clipvocab-{}", std::process::id()));
        let n = write(&dir, &merges, 16).unwrap();
        assert!(n >= 514 && n <= 514 + merges.len());
        let tok = ClipTokenizer::from_dir(&dir).unwrap();
        let ids = vec![tok.encode("Red  APPLE").unwrap()];
        assert_eq!(ids[0].len(), 16, "padded to model_max_length");
        // start, "red</w>", "apple</w>", end, padding
        let vocab: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("vocab.json")).unwrap()).unwrap();
        let id = |t: &str| vocab[t].as_u64().unwrap() as u32;
        assert_eq!(&ids[0][..4], &[id("<|startoftext|>"), id("red</w>"), id("apple</w>"), id("<|endoftext|>")]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
