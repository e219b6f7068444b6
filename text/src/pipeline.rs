//! A model with its tokenizer: the one-call entry point for generating text.

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use stipple_core::progress::{CancelToken, Progress};

use crate::error::{Result, invalid};
use crate::files::ModelFiles;
use crate::generate::{CanvasView, GenerateConfig, Generation, generate};
use crate::models::DiffusionLm;
use crate::tokenizer::TextTokenizer;

/// A loaded diffusion language model and its tokenizer.
pub struct TextModel {
    /// The network.
    pub lm: DiffusionLm,
    /// Its tokenizer and chat template.
    pub tokenizer: TextTokenizer,
}

/// One prompt's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TextOutput {
    /// Generated text up to the first end-of-text token, special tokens left out.
    pub text: String,
    /// Every generated id (gen_len of them), untrimmed.
    pub generated_ids: Vec<u32>,
    /// The prompt's ids (after the chat template).
    pub prompt_ids: Vec<u32>,
}

impl TextModel {
    /// The generated part of row `row` of a canvas as text, each run of undecided tokens'
    /// places shown as one `hole` per token (the CLI's stream, the studio's live canvas).
    pub fn canvas_text(&self, view: &CanvasView, row: usize, hole: &str) -> String {
        let (Some(tokens), Some(&start)) = (view.rows.get(row), view.gen_start.get(row)) else { return String::new() };
        let mut out = String::new();
        let mut decided: Vec<u32> = Vec::new();
        let flush = |decided: &mut Vec<u32>, out: &mut String| {
            if !decided.is_empty() {
                out.push_str(&self.tokenizer.decode(decided, true).unwrap_or_default());
                decided.clear();
            }
        };
        for &t in &tokens[start..] {
            if t == view.mask_id {
                flush(&mut decided, &mut out);
                out.push_str(hole);
            } else {
                decided.push(t);
            }
        }
        flush(&mut decided, &mut out);
        out
    }

    /// Each token's own text, so that the pieces join into the decoded text (a live view
    /// shading tokens one by one). A piece is read in the context of the token before it,
    /// which keeps the spaces tokenizers attach to word starts.
    pub fn token_pieces(&self, ids: &[u32]) -> Vec<String> {
        let decode = |t: &[u32]| self.tokenizer.decode(t, true).unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for (i, &t) in ids.iter().enumerate() {
            let alone = decode(&[t]);
            let piece = match i.checked_sub(1).map(|j| ids[j]) {
                Some(prev) => {
                    let (before, both) = (decode(&[prev]), decode(&[prev, t]));
                    both.strip_prefix(&before).map(str::to_string).unwrap_or(alone)
                }
                None => alone,
            };
            out.push(piece);
        }
        out
    }

    /// Load a local folder, a hub id, a `.gguf` file (see [`TextModel::load_gguf`]), or a
    /// GGUF file of a hub repository (`owner/name:Q4_K_M`, `owner/name:FILE.gguf`).
    pub fn load(source: &str, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_quantized(source, device, dtype, None)
    }

    /// [`TextModel::load`], quantizing the plain matrices to `quantize` as they are read
    /// (see [`crate::quantize`]).
    pub fn load_quantized(source: &str, device: &Device, dtype: DType, quantize: Option<GgmlDType>) -> Result<Self> {
        let path = std::path::Path::new(source);
        if let Some((id, spec)) = crate::gguf::hub_source(source) {
            return Self::load_gguf(&crate::gguf::resolve_hub(id, spec)?, device, dtype, quantize);
        }
        if crate::gguf::is_gguf(path) {
            return Self::load_gguf(path, device, dtype, quantize);
        }
        let files = ModelFiles::resolve(source)?;
        let tokenizer = TextTokenizer::load(&files)?;
        let lm = DiffusionLm::load_quantized(&files, device, dtype, quantize, &|t| tokenizer.token_id(t))?;
        Ok(Self { lm, tokenizer })
    }

    /// Load a GGUF file. The tokenizer is the `tokenizer.json` (with its
    /// `tokenizer_config.json`) or `vocab.json` + `merges.txt` beside the file when there is
    /// one (what the converter read), else the one in the file's metadata.
    pub fn load_gguf(path: &std::path::Path, device: &Device, dtype: DType, quantize: Option<GgmlDType>) -> Result<Self> {
        if !path.is_file() {
            return Err(crate::error::Error::Model(format!("{}: no such GGUF file", path.display())));
        }
        let file = crate::gguf::GgufFile::open(path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let tokenizer = match crate::files::TokenizerFiles::in_dir(dir) {
            Some(tok) => TextTokenizer::load_parts(&tok, Some(dir.join("tokenizer_config.json")).filter(|p| p.is_file()).as_deref())?,
            None => crate::gguf::tokenizer::load(&file)?,
        };
        let lm = DiffusionLm::load_gguf(&file, device, dtype, quantize)?;
        Ok(Self { lm, tokenizer })
    }

    /// Prompt ids: through the chat template unless `raw` (or the model has none).
    pub fn prompt_ids(&self, prompt: &str, raw: bool) -> Result<Vec<u32>> {
        let ids = self.tokenizer.prompt_ids(prompt, raw)?;
        self.check_vocab(&ids)?;
        Ok(ids)
    }

    /// Text of generated ids: cut at the first end-of-text, special tokens dropped.
    pub fn text_of(&self, generated: &[u32]) -> Result<String> {
        let eos = &self.lm.traits().eos_ids;
        let end = generated.iter().position(|t| eos.contains(t)).unwrap_or(generated.len());
        let mask = self.lm.traits().mask_id;
        let kept: Vec<u32> = generated[..end].iter().copied().filter(|&t| t != mask).collect();
        self.tokenizer.decode(&kept, true)
    }

    /// Prompt ids of a conversation: `messages` through the chat template (which writes
    /// the special tokens), or, for a model without one, their contents joined by
    /// newlines as a plain prompt.
    pub fn chat_ids(&self, messages: &[crate::tokenizer::Message]) -> Result<Vec<u32>> {
        let ids = if self.tokenizer.has_chat_template() {
            self.tokenizer.encode(&self.tokenizer.apply_chat_template(messages)?, false)?
        } else {
            let joined: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            self.tokenizer.prompt_ids(&joined.join("\n"), true)?
        };
        self.check_vocab(&ids)?;
        Ok(ids)
    }

    fn check_vocab(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&t| t as usize >= self.lm.traits().vocab) {
            Some(bad) => Err(invalid(format!("prompt token {bad} is outside the model's vocabulary"))),
            None => Ok(()),
        }
    }

    /// Generate after each prompt (a batch when several).
    pub fn generate(
        &self,
        prompts: &[String],
        raw: bool,
        cfg: &GenerateConfig,
        progress: Option<&mut dyn Progress<CanvasView>>,
        cancel: CancelToken,
    ) -> Result<(Vec<TextOutput>, Generation)> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| self.prompt_ids(p, raw)).collect::<Result<_>>()?;
        self.generate_ids(&ids, cfg, progress, cancel)
    }

    /// Generate after each prompt given as ids (from [`Self::prompt_ids`] or
    /// [`Self::chat_ids`]); a batch when several.
    pub fn generate_ids(
        &self,
        ids: &[Vec<u32>],
        cfg: &GenerateConfig,
        progress: Option<&mut dyn Progress<CanvasView>>,
        cancel: CancelToken,
    ) -> Result<(Vec<TextOutput>, Generation)> {
        let run = generate(&self.lm, ids, cfg, progress, cancel)?;
        let outs = (0..ids.len())
            .map(|i| {
                let gen_ids = run.generated(i).to_vec();
                Ok(TextOutput {
                    text: self.text_of(&gen_ids)?,
                    generated_ids: gen_ids,
                    prompt_ids: ids[i].clone(),
                })
            })
            .collect::<Result<_>>()?;
        Ok((outs, run))
    }
}
