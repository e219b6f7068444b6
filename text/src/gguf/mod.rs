//! GGUF files as llama.cpp's `convert_hf_to_gguf.py` and `llama-quantize` write them, for
//! the LLaDA (`llada`) and Dream (`dream`) architectures.
//!
//! The model's shapes come from the file's metadata (`{arch}.block_count`, ...), its
//! tensors keep llama.cpp's names (`blk.{i}.attn_q.weight`, ...), and quantized matrices
//! (Q8_0, Q4_0, k-quants, ...) stay quantized: they are multiplied by candle's quantized
//! matmul without being expanded. f32/f16/bf16 tensors become plain tensors in the
//! requested dtype, so an f32 GGUF runs exactly the safetensors model.
//!
//! The converter reorders LLaDA's query and key rows for ggml's interleaved rotary
//! layout (`undo_permute`); they are put back here, row block by row block, so the same
//! rotary kernel serves both formats.
//!
//! [`tokenizer`] rebuilds the tokenizer from the file's metadata.

pub mod tokenizer;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::models::transformer::{Matrix, TransformerConfig, WeightNames, WeightSource};
use crate::models::Family;

/// llama.cpp's tensor names, shared by every architecture read here.
pub const NAMES: WeightNames = WeightNames {
    embed: "token_embd",
    block: "blk.{i}",
    attn_norm: "attn_norm",
    q: "attn_q",
    k: "attn_k",
    v: "attn_v",
    o: "attn_output",
    mlp_norm: "ffn_norm",
    gate: "ffn_gate",
    up: "ffn_up",
    down: "ffn_down",
    final_norm: "output_norm",
    head: "output",
};

/// True when `path` names a GGUF file (by its extension).
pub fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A GGUF file in a hub repository, as `owner/name[@revision]:FILE.gguf` or
/// `owner/name:QUANT` (the one `.gguf` whose name contains `QUANT`, case-insensitive:
/// `Q4_K_M`, `q8_0`, ...), the way llama.cpp's `-hf` names them. `None` when `source` is
/// not of that form.
pub fn hub_source(source: &str) -> Option<(&str, &str)> {
    let (id, spec) = source.rsplit_once(':')?;
    (stipple_core::hub::is_hub_id(id) && !spec.is_empty() && !Path::new(source).exists()).then_some((id, spec))
}

/// The `.gguf` file `spec` picks from a repository listing, then the tokenizer and
/// generation files at the repository's root (used beside the file when present).
pub fn pick_files(listing: &[String], spec: &str) -> std::result::Result<Vec<String>, String> {
    let ggufs: Vec<&String> = listing.iter().filter(|f| is_gguf(Path::new(f.as_str()))).collect();
    let chosen: Vec<&String> = if is_gguf(Path::new(spec)) {
        ggufs.iter().copied().filter(|f| f.as_str() == spec).collect()
    } else {
        let want = spec.to_ascii_lowercase();
        ggufs.iter().copied().filter(|f| f.rsplit('/').next().unwrap_or(f).to_ascii_lowercase().contains(&want)).collect()
    };
    let names = || ggufs.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(shard) = chosen.iter().find(|f| f.contains("-of-0")) {
        return Err(format!("unsharded GGUF file matching {spec:?} ({shard} is one shard; merge the shards with llama.cpp's gguf-split --merge)"));
    }
    let file = match chosen.as_slice() {
        [one] => (*one).clone(),
        [] if ggufs.is_empty() => return Err("GGUF file (.gguf)".into()),
        [] => return Err(format!("GGUF file matching {spec:?} (it has: {})", names())),
        many => return Err(format!("single GGUF file matching {spec:?} ({} match: {}; give the file name)", many.len(), many.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "))),
    };
    let dir = file.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
    let mut out = vec![file];
    for extra in ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "generation_config.json"] {
        let name = format!("{dir}{extra}");
        if listing.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// `source` with a hub GGUF source (`owner/name:SPEC`) replaced by its local path, so
/// callers that read the model more than once (weights, then generation defaults) look
/// it up on the hub once; any other source is returned as is.
pub fn localize(source: &str) -> Result<String> {
    match hub_source(source) {
        Some((id, spec)) => Ok(resolve_hub(id, spec)?.display().to_string()),
        None => Ok(source.to_string()),
    }
}

/// The local path of a `owner/name:SPEC` GGUF source (the hub cache first, then a
/// download; offline, the cached snapshot).
pub fn resolve_hub(id: &str, spec: &str) -> Result<PathBuf> {
    stipple_core::hub::file(id, &|listing| pick_files(listing, spec)).map_err(|e| Error::Model(e.to_string()))
}

/// An opened GGUF file: its metadata, and its tensors read on demand.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: Mutex<BufReader<File>>,
}

impl GgufFile {
    /// Read the header (metadata and the tensor table; no tensor data yet).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| Error::Model(format!("{}: not a readable GGUF file: {e}", path.display())))?;
        Ok(Self { path: path.to_path_buf(), content, reader: Mutex::new(reader) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::Model(format!("{}: {what}", self.path.display()))
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A metadata string.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key).and_then(|v| v.to_string().ok()).map(String::as_str)
    }

    /// A metadata integer of any width.
    pub fn meta_usize(&self, key: &str) -> Option<usize> {
        let v = self.meta(key)?;
        v.to_u64().ok().or_else(|| v.to_u32().map(u64::from).ok()).or_else(|| v.to_i32().ok().and_then(|i| u64::try_from(i).ok())).or_else(|| v.to_i64().ok().and_then(|i| u64::try_from(i).ok())).and_then(|v| usize::try_from(v).ok())
    }

    fn meta_f64(&self, key: &str) -> Option<f64> {
        let v = self.meta(key)?;
        v.to_f32().map(f64::from).ok().or_else(|| v.to_f64().ok())
    }

    fn need_usize(&self, key: &str) -> Result<usize> {
        self.meta_usize(key).ok_or_else(|| self.err(format!("metadata {key} is missing or not an integer")))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.meta_str("general.architecture").ok_or_else(|| self.err("no general.architecture in the metadata"))
    }

    /// The model family, from the architecture.
    pub fn family(&self) -> Result<Family> {
        match self.architecture()? {
            "llada" => Ok(Family::Llada),
            "dream" => Ok(Family::Dream),
            other => Err(self.err(format!("architecture {other:?} is not a diffusion language model stipple runs from GGUF (llada, dream)"))),
        }
    }

    /// Shape of a tensor, `[out, in]` order (candle's, not ggml's).
    pub fn tensor_shape(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|t| t.shape.dims())
    }

    /// The quantization of a tensor.
    pub fn tensor_type(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|t| t.ggml_dtype)
    }

    /// The shared transformer's configuration from the metadata.
    pub fn transformer_config(&self) -> Result<TransformerConfig> {
        let arch = self.architecture()?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = self.need_usize(&key("embedding_length"))?;
        let heads = self.need_usize(&key("attention.head_count"))?;
        let vocab = match self.tensor_shape("token_embd.weight") {
            Some(&[rows, cols]) if cols == hidden => rows,
            Some(s) => return Err(self.err(format!("token_embd.weight has shape {s:?}, expected [vocab, {hidden}]"))),
            None => return Err(self.err("no token_embd.weight tensor")),
        };
        Ok(TransformerConfig {
            hidden,
            layers: self.need_usize(&key("block_count"))?,
            heads,
            kv_heads: self.meta_usize(&key("attention.head_count_kv")).unwrap_or(heads),
            mlp_hidden: self.need_usize(&key("feed_forward_length"))?,
            vocab,
            norm_eps: self.meta_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            rope_theta: self.meta_f64(&key("rope.freq_base")).unwrap_or(10_000.0),
            qkv_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            other_bias: self.content.tensor_infos.contains_key("blk.0.attn_output.bias"),
            tied_head: !self.content.tensor_infos.contains_key("output.weight"),
            // LLaDA's input_emb_norm / scale_logits (off in every released checkpoint)
            // have no GGUF key; llama.cpp ignores them too
            scale_embeddings: false,
            scale_logits: false,
        })
    }

    /// The tokens of the vocabulary (`tokenizer.ggml.tokens`).
    pub fn tokens(&self) -> Result<Vec<&str>> {
        let list = self.meta("tokenizer.ggml.tokens").ok_or_else(|| self.err("no tokenizer.ggml.tokens in the metadata"))?;
        let list = list.to_vec().map_err(|_| self.err("tokenizer.ggml.tokens is not a list"))?;
        list.iter().map(|v| v.to_string().map(String::as_str).map_err(|_| self.err("tokenizer.ggml.tokens holds a non-string"))).collect()
    }

    /// The id of a token string, from `tokenizer.ggml.tokens`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokens().ok()?.iter().position(|t| *t == token).and_then(|i| u32::try_from(i).ok())
    }

    /// Tensors for the transformer, in `dtype` on `device` (see [`GgufWeights`]).
    pub fn weights(&self, dtype: DType, device: &Device) -> Result<GgufWeights<'_>> {
        let unpermute_heads = match self.family()? {
            Family::Llada => {
                let cfg = self.transformer_config()?;
                Some((cfg.heads, cfg.kv_heads, cfg.hidden / cfg.heads))
            }
            _ => None,
        };
        Ok(GgufWeights { file: self, dtype, device: device.clone(), unpermute_heads })
    }

    /// An f32 tensor's values read straight into one buffer (no block storage, no
    /// dequantized copy: the load's peak memory stays near the weights).
    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        use std::io::{Read, Seek, SeekFrom};
        let info = self.content.tensor_infos.get(name).ok_or_else(|| self.err(format!("no tensor {name}")))?;
        let n = info.shape.elem_count();
        let mut values = vec![0f32; n];
        let mut reader = self.reader.lock().map_err(|_| self.err("reader poisoned by an earlier panic"))?;
        // Safety: f32 has no invalid bit patterns; the byte view covers exactly `values`.
        let bytes = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), n * 4) };
        reader
            .seek(SeekFrom::Start(self.content.tensor_data_offset + info.offset))
            .and_then(|_| reader.read_exact(bytes))
            .map_err(|e| self.err(format!("tensor {name}: {e}")))?;
        if cfg!(target_endian = "big") {
            values.iter_mut().for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
        }
        Ok(values)
    }

    fn read(&self, name: &str, device: &Device) -> Result<QTensor> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| self.err(format!("no tensor {name}")))?;
        let mut reader = self.reader.lock().map_err(|_| self.err("reader poisoned by an earlier panic"))?;
        info.read(&mut *reader, self.content.tensor_data_offset, device).map_err(|e| self.err(format!("tensor {name}: {e}")))
    }
}

/// A GGUF file as a [`WeightSource`]: plain tensors converted to `dtype`, quantized
/// matrices kept in their blocks.
pub struct GgufWeights<'a> {
    file: &'a GgufFile,
    dtype: DType,
    device: Device,
    /// LLaDA: (heads, kv_heads, head_dim) for undoing the converter's q/k row order.
    unpermute_heads: Option<(usize, usize, usize)>,
}

impl GgufWeights<'_> {
    /// Heads whose rows the converter interleaved, for a tensor name.
    fn permuted_heads(&self, name: &str) -> Option<(usize, usize)> {
        let (heads, kv_heads, hd) = self.unpermute_heads?;
        if name.contains(".attn_q.") {
            Some((heads, hd))
        } else if name.contains(".attn_k.") {
            Some((kv_heads, hd))
        } else {
            None
        }
    }

    fn plain(&self, q: &QTensor) -> Result<Tensor> {
        Ok(q.dequantize(&self.device)?.to_dtype(self.dtype)?)
    }
}

/// Undo `convert_hf_to_gguf.py`'s LLaDA permutation on `rows` equal rows of `data` (bytes
/// of quantized rows, or values of a bias): the
/// file's row `h*hd + 2j + t` is the checkpoint's row `h*hd + t*hd/2 + j`.
fn unpermute_rows<T: Copy + Default>(data: &[T], rows: usize, heads: usize, hd: usize) -> Result<Vec<T>> {
    if rows != heads * hd || hd % 2 != 0 || data.len() % rows != 0 {
        return Err(Error::Model(format!("cannot undo the rotary row order of a {rows}-row tensor over {heads} heads of {hd}")));
    }
    let row_len = data.len() / rows;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for j in 0..hd / 2 {
            for t in 0..2 {
                let src = h * hd + 2 * j + t;
                let dst = h * hd + t * (hd / 2) + j;
                out[dst * row_len..(dst + 1) * row_len].copy_from_slice(&data[src * row_len..(src + 1) * row_len]);
            }
        }
    }
    Ok(out)
}

impl WeightSource for GgufWeights<'_> {
    fn vector(&self, name: &str, size: usize) -> Result<Tensor> {
        let q = self.file.read(name, &Device::Cpu)?;
        if q.shape().dims() != [size] {
            return Err(self.file.err(format!("tensor {name} has shape {:?}, expected [{size}]", q.shape().dims())));
        }
        let t = q.dequantize(&Device::Cpu)?;
        let t = match self.permuted_heads(name) {
            Some((heads, hd)) => {
                let v = t.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                Tensor::from_vec(unpermute_rows(&v, size, heads, hd)?, size, &Device::Cpu)?
            }
            None => t,
        };
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }

    fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Matrix> {
        // f32 into f32 on the CPU: one read, no intermediate copies
        let plain_f32 = self.file.tensor_type(name) == Some(GgmlDType::F32) && self.dtype == DType::F32 && self.device.is_cpu();
        if plain_f32 && self.file.tensor_shape(name) == Some(&[out, inp][..]) {
            let mut values = self.file.read_f32(name)?;
            if let Some((heads, hd)) = self.permuted_heads(name) {
                values = unpermute_rows(&values, out, heads, hd)?;
            }
            return Ok(Matrix::Dense(Tensor::from_vec(values, (out, inp), &Device::Cpu)?));
        }
        let q = self.file.read(name, &Device::Cpu)?;
        if q.shape().dims() != [out, inp] {
            return Err(self.file.err(format!("tensor {name} has shape {:?}, expected [{out}, {inp}]", q.shape().dims())));
        }
        let q = match self.permuted_heads(name) {
            Some((heads, hd)) => {
                let data = unpermute_rows(&q.data()?, out, heads, hd)?;
                QTensor::new(QStorage::from_data(std::borrow::Cow::Owned(data), &Device::Cpu, q.dtype())?, (out, inp))?
            }
            None => q,
        };
        match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => Ok(Matrix::Dense(self.plain(&q)?)),
            // candle's dot products for these types take blocks in pairs; a row of an odd
            // number of blocks (llama-quantize's fallback for narrow rows of small models)
            // is expanded instead
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 if (inp / q.dtype().block_size()) % 2 == 1 => {
                Ok(Matrix::Dense(self.plain(&q)?))
            }
            _ if self.device.is_cpu() => Ok(Matrix::Quantized(Arc::new(q))),
            _ => {
                let data = q.data()?;
                let on_device = QTensor::new(QStorage::from_data(data, &self.device, q.dtype())?, (out, inp))?;
                Ok(Matrix::Quantized(Arc::new(on_device)))
            }
        }
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// Whether any of the transformer's matrices is quantized (then activations run in f32).
pub fn has_quantized_matrices(file: &GgufFile) -> bool {
    file.content.tensor_infos.values().any(|t| !matches!(t.ggml_dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16))
}

/// Counts of each tensor type (for `stipple info`-style summaries and errors).
pub fn type_counts(file: &GgufFile) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for t in file.content.tensor_infos.values() {
        *counts.entry(format!("{:?}", t.ggml_dtype)).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_one_gguf_by_name_or_quantization() {
        let listing: Vec<String> = ["README.md", "LLaDA-8B-Instruct-Q4_K_M.gguf", "LLaDA-8B-Instruct-Q8_0.gguf", "LLaDA-8B-Instruct-Q4_K_S.gguf", "tokenizer.json", "big-Q6_K-00001-of-00002.gguf", "big-Q6_K-00002-of-00002.gguf"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pick_files(&listing, "q4_k_m").unwrap(), vec!["LLaDA-8B-Instruct-Q4_K_M.gguf", "tokenizer.json"]);
        assert_eq!(pick_files(&listing, "LLaDA-8B-Instruct-Q8_0.gguf").unwrap()[0], "LLaDA-8B-Instruct-Q8_0.gguf");
        let e = pick_files(&listing, "Q4_K").unwrap_err();
        assert!(e.contains("2 match") && e.contains("Q4_K_S"), "{e}");
        assert!(pick_files(&listing, "IQ2_XS").unwrap_err().contains("it has: "));
        assert!(pick_files(&listing, "Q6_K").unwrap_err().contains("gguf-split --merge"));
        assert!(pick_files(&["config.json".to_string()], "Q8_0").unwrap_err().contains(".gguf"));
        assert_eq!(hub_source("GSAI-ML/LLaDA-8B-Instruct-GGUF:Q4_K_M"), Some(("GSAI-ML/LLaDA-8B-Instruct-GGUF", "Q4_K_M")));
        assert_eq!(hub_source("owner/name@v1:x.gguf"), Some(("owner/name@v1", "x.gguf")));
        assert_eq!(hub_source("owner/name"), None);
        assert_eq!(hub_source("./dir:Q8_0"), None);
    }

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        // convert_hf_to_gguf.py: w.reshape(heads, 2, hd/2, ...).swapaxes(1, 2).reshape(w.shape)
        let (heads, hd) = (3, 6);
        let rows = heads * hd;
        let original: Vec<u8> = (0..rows as u8).collect();
        let mut permuted = vec![0u8; rows];
        for h in 0..heads {
            for t in 0..2 {
                for j in 0..hd / 2 {
                    // source index [h, t, j] lands at [h, j, t]
                    permuted[h * hd + j * 2 + t] = original[h * hd + t * (hd / 2) + j];
                }
            }
        }
        assert_ne!(permuted, original);
        assert_eq!(unpermute_rows(&permuted, rows, heads, hd).unwrap(), original);
        assert!(unpermute_rows(&permuted, rows, heads, 5).is_err());
    }
}
