//! Tokenizer (tokenizer.json, through the `tokenizers` crate) and chat template
//! (tokenizer_config.json's `chat_template`, rendered with minijinja as transformers'
//! `apply_chat_template` does).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::files::{ModelFiles, TokenizerFiles, read_json};

/// A model's tokenizer with its chat template and special tokens.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos: Option<String>,
    eos: Option<String>,
}

/// A chat message.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A special token in tokenizer_config.json: a string or an AddedToken object.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// Load tokenizer.json and, when present, tokenizer_config.json.
    pub fn load(files: &ModelFiles) -> Result<Self> {
        Self::load_parts(&files.tokenizer, files.tokenizer_config.as_deref())
    }

    /// Load tokenizer files with an optional tokenizer_config.json.
    pub fn load_parts(tokenizer: &TokenizerFiles, config: Option<&Path>) -> Result<Self> {
        match tokenizer {
            TokenizerFiles::Json(json) => Self::from_files(json, config),
            TokenizerFiles::SlowBpe { vocab, merges, added_tokens } => {
                let inner = crate::slow_tokenizer::from_bpe_files(vocab, merges, added_tokens.as_deref(), config)?;
                Self::with_config(inner, config)
            }
        }
    }

    /// Load from explicit paths.
    pub fn from_files(tokenizer_json: &Path, tokenizer_config: Option<&Path>) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::Tokenizer(format!("{}: {e}", tokenizer_json.display()));
        let bytes = std::fs::read(tokenizer_json).map_err(|e| bad(&e))?;
        // The JSON's syntax is checked first: the tokenizers crate (0.23) panics on a syntax
        // error inside a `decoder` object instead of returning it (found by fuzzing).
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| bad(&format!("not valid JSON: {e}")))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| bad(&e))?;
        Self::with_config(inner, tokenizer_config)
    }

    /// A tokenizer with the chat template and special tokens of tokenizer_config.json.
    fn with_config(inner: tokenizers::Tokenizer, tokenizer_config: Option<&Path>) -> Result<Self> {
        let cfg = match tokenizer_config {
            Some(p) => read_json(p)?,
            None => Value::Null,
        };
        let chat_template = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // a list of named templates: take "default"
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        Ok(Self {
            inner,
            chat_template,
            bos: token_text(cfg.get("bos_token")),
            eos: token_text(cfg.get("eos_token")),
        })
    }

    /// A tokenizer from parts already read (a GGUF file's metadata).
    pub fn from_parts(inner: tokenizers::Tokenizer, chat_template: Option<String>, bos: Option<String>, eos: Option<String>) -> Self {
        Self { inner, chat_template, bos, eos }
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// True when tokenizer_config.json has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Id of a token string (special tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encode text; `special` adds the tokenizer's post-processor tokens (BOS...).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, special)?.get_ids().to_vec())
    }

    /// Decode ids, leaving out special tokens when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        Ok(self.inner.decode(ids, skip_special)?)
    }

    /// Render the chat template for `messages` with a generation prompt.
    pub fn apply_chat_template(&self, messages: &[Message]) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::Template("this model has no chat template; use --raw".into()))?;
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", template)
            .map_err(|e| Error::Template(e.to_string()))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos.clone().unwrap_or_default(),
            eos_token => self.eos.clone().unwrap_or_default(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::Template(e.to_string()))
    }

    /// Prompt ids as the model expects them: through the chat template (no extra special
    /// tokens; the template writes them) unless `raw` or the model has none, else with the
    /// tokenizer's own special tokens.
    pub fn prompt_ids(&self, prompt: &str, raw: bool) -> Result<Vec<u32>> {
        if raw || !self.has_chat_template() {
            self.encode(prompt, true)
        } else {
            let text = self.apply_chat_template(&[Message::user(prompt)])?;
            self.encode(&text, false)
        }
    }
}
