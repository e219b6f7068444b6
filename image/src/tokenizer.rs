//! The CLIP tokenizer, built from the `vocab.json` + `merges.txt` that Stable Diffusion
//! folders ship (there is no `tokenizer.json`): byte-level BPE with `</w>` word ends,
//! NFC + whitespace collapsing + lowercasing, CLIP's word-splitting regex, and padding /
//! truncation to the text encoder's 77 positions with `<|startoftext|>` / `<|endoftext|>`.

use std::path::Path;

use serde::Deserialize;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result, read_json};

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
/// CLIP's pre-tokenization pattern (contractions, letter runs, single digits, symbol runs).
const WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A CLIP tokenizer that returns fixed-length id rows, as the SD pipelines feed them.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
    pad_token: Option<TokenField>,
}

/// A special token is written either as a string or as `{"content": ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenField {
    Plain(String),
    Added { content: String },
}

impl TokenField {
    fn content(&self) -> &str {
        match self {
            TokenField::Plain(s) | TokenField::Added { content: s } => s,
        }
    }
}

impl ClipTokenizer {
    /// Loads `vocab.json` and `merges.txt` from a diffusers `tokenizer/` folder; the pad
    /// token and length come from `special_tokens_map.json` / `tokenizer_config.json`
    /// (SD 1.x pads with `<|endoftext|>`, SD 2.x and SDXL's second tokenizer with `!`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        for f in [&vocab, &merges] {
            if !f.is_file() {
                return Err(Error::Tokenizer(format!("{} is missing", f.display())));
            }
        }
        let mut cfg = TokenizerConfig::default();
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = dir.join(name);
            if path.is_file() {
                let c: TokenizerConfig = read_json(&path)?;
                cfg.model_max_length = cfg.model_max_length.or(c.model_max_length);
                if c.pad_token.is_some() {
                    cfg.pad_token = c.pad_token;
                }
            }
        }
        let max_len = match cfg.model_max_length {
            Some(n) if n >= 2.0 && n <= 4096.0 => n as usize,
            _ => 77,
        };
        let pad = cfg.pad_token.as_ref().map(|t| t.content().to_string()).unwrap_or_else(|| EOS.into());
        Self::new(&vocab, &merges, &pad, max_len)
    }

    fn new(vocab: &Path, merges: &Path, pad: &str, max_len: usize) -> Result<Self> {
        let path_str = |p: &Path| p.to_str().map(str::to_string).ok_or_else(|| Error::Tokenizer(format!("{}: not UTF-8", p.display())));
        stipple_core::bpe_files::check(vocab, merges).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let bpe = BPE::from_file(&path_str(vocab)?, &path_str(merges)?)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(EOS.into())
            .fuse_unk(false)
            .build()
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", vocab.display())))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_normalizer(Some(NormSequence::new(vec![
            NFC.into(),
            Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")?.into(),
            Lowercase.into(),
        ])))?;
        inner.with_pre_tokenizer(Some(PreSequence::new(vec![
            Split::new(SplitPattern::Regex(WORDS.into()), SplitDelimiterBehavior::Removed, true)?.into(),
            ByteLevel::new(false, true, false).into(),
        ])));
        // transformers registers the pad token as a special token too: with SD 2.x's pad "!",
        // a literal "!" in a prompt becomes that token (id 0), not "!</w>".
        inner.add_special_tokens(vec![AddedToken::from(BOS, true), AddedToken::from(EOS, true), AddedToken::from(pad, true)])?;
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| Error::Tokenizer(format!("{} has no {t:?} token", vocab.display())));
        let (bos, eos, pad) = (id(BOS)?, id(EOS)?, id(pad)?);
        Ok(Self { inner, bos, eos, pad, max_len })
    }

    /// The number of positions of every row (77 for CLIP).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The end-of-text id (the pooled output is read at its first occurrence).
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// `<|startoftext|> tokens <|endoftext|> pad...`, truncated to the maximum length.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false)?;
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos);
        ids.extend(enc.get_ids().iter().take(self.max_len - 2));
        ids.push(self.eos);
        ids.resize(self.max_len, self.pad);
        Ok(ids)
    }
}
