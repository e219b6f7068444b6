//! The tokenizer stored in a GGUF file's metadata (`tokenizer.ggml.*`), rebuilt as a
//! Hugging Face tokenizer, so a lone `.gguf` file is enough to generate.
//!
//! llama.cpp stores byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) as the
//! token strings, the merges, each token's type (normal, control, user-defined, unused)
//! and the name of the pre-tokenizer (`tokenizer.ggml.pre`), whose splitting rules it
//! hard-codes. The pre-tokenizers rebuilt here are those of the models stipple runs:
//! GPT-2's (`gpt-2`), Qwen2's (`qwen2`, Dream) and Llama 3's (`llama-bpe`). For any other,
//! the error says to put the model's `tokenizer.json` beside the `.gguf` file.

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::GgufFile;
use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;

/// llama.cpp's token types (`llama_token_type`).
const NORMAL: i64 = 1;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNUSED: i64 = 5;

/// Llama 3's pre-tokenizing regex (its tokenizer.json).
const LLAMA3_PRETOKENIZE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn int(v: &Value) -> Option<i64> {
    v.to_i32().map(i64::from).ok().or_else(|| v.to_u32().map(i64::from).ok()).or_else(|| v.to_i64().ok()).or_else(|| v.to_u8().map(i64::from).ok())
}

/// The tokenizer, chat template and special tokens of a GGUF file's metadata.
pub fn load(file: &GgufFile) -> Result<TextTokenizer> {
    let err = |what: String| Error::Tokenizer(format!("{}: {what}", file.path().display()));
    let model = file.meta_str("tokenizer.ggml.model").unwrap_or("");
    if model != "gpt2" {
        return Err(err(format!(
            "the GGUF tokenizer model {model:?} is not rebuilt by stipple (only byte-level BPE, \"gpt2\"); put the model's tokenizer.json beside the .gguf file"
        )));
    }
    let pre = file.meta_str("tokenizer.ggml.pre").unwrap_or("default");
    let tokens = file.tokens()?;
    let types: Vec<i64> = match file.meta("tokenizer.ggml.token_type") {
        Some(v) => v.to_vec().map_err(|_| err("tokenizer.ggml.token_type is not a list".into()))?.iter().map(|v| int(v).unwrap_or(NORMAL)).collect(),
        None => vec![NORMAL; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(err(format!("{} token types for {} tokens", types.len(), tokens.len())));
    }
    let merges: Merges = match file.meta("tokenizer.ggml.merges") {
        Some(v) => v
            .to_vec()
            .map_err(|_| err("tokenizer.ggml.merges is not a list".into()))?
            .iter()
            .map(|m| {
                let m = m.to_string().map_err(|_| err("tokenizer.ggml.merges holds a non-string".into()))?;
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| err(format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    // every token in the BPE vocabulary (control tokens too, at their ids), the
    // placeholders of unused ids left out; then control/user tokens marked as added
    let vocab: Vocab = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty != UNUSED)
        .map(|(id, (t, _))| (t.to_string(), id as u32))
        .collect();
    let llama3 = matches!(pre, "llama3" | "llama-v3" | "llama-bpe");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(llama3)
        .build()
        .map_err(|e| err(format!("the BPE vocabulary: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let split = |regex: &str| -> Result<Split> {
        Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(|e| err(format!("the {pre} pre-tokenizer: {e}")))
    };
    match pre {
        "gpt-2" | "gpt2" => {
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        "qwen2" => {
            tok.with_normalizer(Some(NFC)).map_err(|e| err(e.to_string()))?;
            let seq = Sequence::new(vec![split(crate::slow_tokenizer::QWEN2_PRETOKENIZE)?.into(), ByteLevel::new(false, false, false).into()]);
            tok.with_pre_tokenizer(Some(seq));
        }
        _ if llama3 => {
            let seq = Sequence::new(vec![split(LLAMA3_PRETOKENIZE)?.into(), ByteLevel::new(false, true, false).into()]);
            tok.with_pre_tokenizer(Some(seq));
        }
        other => {
            return Err(err(format!(
                "the GGUF pre-tokenizer {other:?} is not one stipple rebuilds (gpt-2, qwen2, llama-bpe); put the model's tokenizer.json (and tokenizer_config.json) beside the .gguf file"
            )));
        }
    }
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    for (id, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        let special = match *ty {
            CONTROL => true,
            USER_DEFINED => false,
            _ => continue,
        };
        let token = AddedToken::from(t.to_string(), special).normalized(false);
        if special {
            tok.add_special_tokens([token])
        } else {
            tok.add_tokens([token])
        }
        .map_err(|e| err(format!("added token {t:?}: {e}")))?;
        if tok.token_to_id(t) != Some(id as u32) {
            return Err(err(format!("added token {t:?} should have id {id} but gets {:?}", tok.token_to_id(t))));
        }
    }
    // llama.cpp prepends BOS when add_bos_token is set (LLaDA's converter sets it), as the
    // Hugging Face tokenizer's post-processor does
    let add_bos = file.meta("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
    if let (true, Some(bos_id)) = (add_bos, file.meta_usize("tokenizer.ggml.bos_token_id")) {
        let bos = tokens.get(bos_id).ok_or_else(|| err(format!("bos_token_id {bos_id} is outside the vocabulary")))?.to_string();
        let post = TemplateProcessing::builder()
            .try_single(format!("{bos} $A"))
            .map_err(|e| err(format!("BOS template: {e}")))?
            .special_tokens(vec![(bos.clone(), bos_id as u32)])
            .build()
            .map_err(|e| err(format!("BOS template: {e}")))?;
        tok.with_post_processor(Some(post));
    }
    let token_of = |key: &str| file.meta_usize(key).and_then(|i| tokens.get(i)).map(|t| t.to_string());
    Ok(TextTokenizer::from_parts(
        tok,
        file.meta_str("tokenizer.chat_template").map(str::to_string),
        token_of("tokenizer.ggml.bos_token_id"),
        token_of("tokenizer.ggml.eos_token_id"),
    ))
}
