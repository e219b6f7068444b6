//! The bidirectional Llama-shaped transformer shared by LLaDA and Dream: pre-norm
//! blocks of RMSNorm -> rotary multi-head attention without a causal mask -> RMSNorm ->
//! SwiGLU MLP. The two families differ only in tensor names, biases and a few options,
//! which [`TransformerConfig`] and [`WeightNames`] carry.
//!
//! The forward pass takes a *span* of the canvas (a whole canvas, or one block of it) and
//! an optional [`KvCache`] holding every layer's keys and values for the whole canvas:
//! queries come from the span, keys from the span's fresh values plus the cached values
//! of every position outside it. This is Fast-dLLM's prefix cache (span = block..end) and
//! dual cache (span = block) in one mechanism.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, VarBuilder};
use stipple_kernels::packed_matmul::PackedMatrix;

use crate::error::{Result, invalid};

/// Shapes and options of the shared transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
    /// Hidden width.
    pub hidden: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when < heads).
    pub kv_heads: usize,
    /// MLP inner width.
    pub mlp_hidden: usize,
    /// Rows of the embedding (and the output head).
    pub vocab: usize,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Biases on q/k/v.
    pub qkv_bias: bool,
    /// Biases on every other linear layer too (attention out, MLP).
    pub other_bias: bool,
    /// The output head reuses the embedding matrix.
    pub tied_head: bool,
    /// Multiply embeddings by sqrt(hidden) (OLMo `input_emb_norm`).
    pub scale_embeddings: bool,
    /// Divide logits by sqrt(hidden) (OLMo `scale_logits`).
    pub scale_logits: bool,
}

impl TransformerConfig {
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.heads == 0 || self.hidden % self.heads != 0 {
            return Err(invalid(format!(
                "hidden size {} is not a multiple of the head count {}",
                self.hidden, self.heads
            )));
        }
        if self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            return Err(invalid(format!(
                "{} heads cannot be grouped over {} key/value heads",
                self.heads, self.kv_heads
            )));
        }
        if self.head_dim() % 2 != 0 {
            return Err(invalid("rotary embeddings need an even head size"));
        }
        Ok(())
    }
}

/// Where each tensor of the checkpoint lives (`{i}` is the block index).
#[derive(Clone, Copy, Debug)]
pub struct WeightNames {
    /// Token embedding.
    pub embed: &'static str,
    /// Prefix of block `i` (e.g. `model.layers.{i}`).
    pub block: &'static str,
    /// Within a block, in order: attention norm, q, k, v, attention out, MLP norm,
    /// gate, up, down.
    pub attn_norm: &'static str,
    /// Query projection.
    pub q: &'static str,
    /// Key projection.
    pub k: &'static str,
    /// Value projection.
    pub v: &'static str,
    /// Attention output projection.
    pub o: &'static str,
    /// MLP norm.
    pub mlp_norm: &'static str,
    /// SwiGLU gate (the activated branch).
    pub gate: &'static str,
    /// SwiGLU up.
    pub up: &'static str,
    /// MLP down projection.
    pub down: &'static str,
    /// Final norm.
    pub final_norm: &'static str,
    /// Output head (when not tied).
    pub head: &'static str,
}

/// Per-layer keys and values (after rotary) of a whole canvas, `[B, kv_heads, L, head_dim]`.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// An empty cache; the next forward with `store = true` fills it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Canvas length covered (0 when empty).
    pub fn len(&self) -> usize {
        self.layers.first().map(|(k, _)| k.dim(2).unwrap_or(0)).unwrap_or(0)
    }

    /// True before the first store.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// One forward request.
pub struct Span<'a> {
    /// Token ids `[B, n]` of the span.
    pub ids: &'a Tensor,
    /// Canvas position of the span's first token.
    pub start: usize,
    /// Rotary positions `[B, n]` (u32) when they differ from `start..start+n` (left padding).
    pub positions: Option<&'a Tensor>,
    /// Key mask over the whole canvas `[B, L]` (1 attend, 0 ignore: padding); `None` attends to all.
    pub key_mask: Option<&'a Tensor>,
    /// Rows of the span whose logits are wanted (all when `None`).
    pub logits_rows: Option<Range<usize>>,
}

/// The shared transformer.
pub struct Transformer {
    cfg: TransformerConfig,
    embed: TokenEmbedding,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    head: Proj,
    inv_freq: Vec<f32>,
    device: Device,
    dtype: DType,
}

/// A weight matrix `[out, in]` as the checkpoint stores it.
pub enum Matrix {
    /// Plain values, in the model's dtype.
    Dense(Tensor),
    /// GGUF block-quantized rows (Q8_0, k-quants, ...), multiplied without expanding them.
    Quantized(Arc<QTensor>),
}

/// Where the transformer's tensors come from, by full dotted name: a safetensors
/// checkpoint (through a [`VarBuilder`]) or a GGUF file ([`crate::gguf`]).
pub trait WeightSource {
    /// A 1-D tensor (norm weights, biases) in the model's dtype.
    fn vector(&self, name: &str, size: usize) -> Result<Tensor>;
    /// A `[out, in]` matrix.
    fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Matrix>;
    /// The dtype activations run in.
    fn dtype(&self) -> DType;
    /// The device the weights go to.
    fn device(&self) -> &Device;
}

impl WeightSource for VarBuilder<'_> {
    fn vector(&self, name: &str, size: usize) -> Result<Tensor> {
        Ok(self.get(size, name)?)
    }
    fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Matrix> {
        Ok(Matrix::Dense(self.get((out, inp), name)?))
    }
    fn dtype(&self) -> DType {
        VarBuilder::dtype(self)
    }
    fn device(&self) -> &Device {
        VarBuilder::device(self)
    }
}

/// The token embedding: a dense table, rows read back from the packed output head it is
/// tied to, or quantized rows expanded per looked-up token.
enum TokenEmbedding {
    Dense(Embedding),
    Packed(Arc<PackedMatrix>),
    Quantized(Arc<QTensor>),
}

impl TokenEmbedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            TokenEmbedding::Dense(e) => e.forward(ids)?,
            TokenEmbedding::Packed(p) => {
                let mut shape = ids.dims().to_vec();
                let ids = ids.flatten_all()?.to_vec1::<u32>()?;
                let rows = p.rows(&ids).ok_or_else(|| invalid(format!("a token id is outside the vocabulary of {}", p.out_dim())))?;
                shape.push(p.in_dim());
                Tensor::from_vec(rows, shape, &Device::Cpu)?
            }
            TokenEmbedding::Quantized(q) => q.embedding(ids)?,
        })
    }
}

struct Block {
    attn_norm: RmsNorm,
    /// q, k and v fused.
    qkv: Proj,
    o: Proj,
    mlp_norm: RmsNorm,
    /// gate and up fused (SwiGLU).
    gate_up: Proj,
    down: Proj,
}

/// Several linear layers reading the same input, fused along `out`.
///
/// Dense weights are kept as `W^T` (`[in, out]`, contiguous) and concatenated: one matmul
/// instead of several, in the layout gemm multiplies fastest on CPU (about 1.1-2x over
/// `x @ W.t()` for these shapes). Quantized weights stay in their blocks, one quantized
/// matmul per part (their rows cannot be concatenated across types).
struct Proj {
    weights: ProjWeights,
    bias: Option<Tensor>,
    out: usize,
}

enum ProjWeights {
    Dense(Tensor),
    /// f32 on an AVX2 / AVX-512 CPU: packed once into the register tiles' panels (shared
    /// with the embedding when tied); the bias, read out once, starts the tiles' sums.
    Packed(Arc<PackedMatrix>, Option<Vec<f32>>),
    Quantized(Vec<QMatMul>),
}

impl Proj {
    /// Load and fuse the `(name, out)` layers (names without `.weight`) reading `inp` features.
    fn load(src: &dyn WeightSource, parts: &[(String, usize)], inp: usize, bias: bool) -> Result<Self> {
        let mut matrices = Vec::with_capacity(parts.len());
        let mut bs = Vec::with_capacity(parts.len());
        for (name, out) in parts {
            matrices.push(src.matrix(&format!("{name}.weight"), *out, inp)?);
            if bias {
                bs.push(src.vector(&format!("{name}.bias"), *out)?);
            }
        }
        // packed only for inference: trained weights keep the differentiable matmul
        let packable = src.dtype() == DType::F32 && matrices.iter().all(|m| matches!(m, Matrix::Dense(w) if w.device().is_cpu() && !w.track_op()));
        let dense_parts = || matrices.iter().filter_map(|m| if let Matrix::Dense(w) = m { Some(w.clone()) } else { None }).collect::<Vec<_>>();
        let packed = if packable { PackedMatrix::from_tensors(&dense_parts())? } else { None };
        let mut bias = if bias { Some(Tensor::cat(&bs, 0)?) } else { None };
        let weights = if let Some(p) = packed {
            let values = bias.take().map(|b| b.to_vec1::<f32>()).transpose()?;
            ProjWeights::Packed(Arc::new(p), values)
        } else if matrices.iter().all(|m| matches!(m, Matrix::Dense(_))) {
            let mut dense = Vec::with_capacity(matrices.len());
            for m in matrices {
                let Matrix::Dense(w) = m else { unreachable!("all dense") };
                // transposed one by one, so each stored layout is freed before the next:
                // loading peaks at the weights plus one tensor, not twice them
                dense.push(stipple_kernels::cpu::transpose(&w)?);
            }
            ProjWeights::Dense(if dense.len() == 1 { dense.pop().expect("one part") } else { Tensor::cat(&dense, 1)? })
        } else {
            // a quantized file may keep some matrices plain: those multiply as `x @ W^T`
            let parts = merge_quantized(matrices)?
                .into_iter()
                .map(|m| match m {
                    Matrix::Dense(w) => Ok(QMatMul::Tensor(w)),
                    Matrix::Quantized(q) => QMatMul::from_arc(q),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            ProjWeights::Quantized(parts)
        };
        Ok(Self { weights, bias, out: parts.iter().map(|p| p.1).sum() })
    }

    /// The output head tied to the embedding table. A packed head takes the table's place
    /// as the embedding too (its rows are read back from the panels), so the table is not
    /// kept twice.
    fn tied(embed: &mut TokenEmbedding, vocab: usize) -> Result<Self> {
        let weights = match embed {
            TokenEmbedding::Dense(e) => {
                let table = e.embeddings();
                // a trained table (tracked for gradients) keeps the differentiable path
                let packed = if table.dtype() == DType::F32 && !table.track_op() { PackedMatrix::from_tensors(std::slice::from_ref(table))? } else { None };
                match packed {
                    Some(p) => {
                        let p = Arc::new(p);
                        *embed = TokenEmbedding::Packed(p.clone());
                        ProjWeights::Packed(p, None)
                    }
                    None => ProjWeights::Dense(stipple_kernels::cpu::transpose(table)?),
                }
            }
            TokenEmbedding::Packed(p) => ProjWeights::Packed(p.clone(), None),
            TokenEmbedding::Quantized(q) => ProjWeights::Quantized(vec![QMatMul::from_arc(q.clone())?]),
        };
        Ok(Self { weights, bias: None, out: vocab })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, k) = x.dims3()?;
        let x = x.reshape((b * n, k))?;
        let y = match &self.weights {
            ProjWeights::Packed(p, bias) => {
                let y = p.forward(&x, bias.as_deref())?;
                return Ok(y.reshape((b, n, self.out))?);
            }
            ProjWeights::Dense(wt) => x.matmul(wt)?,
            ProjWeights::Quantized(parts) => {
                let ys = parts.iter().map(|p| p.forward(&x)).collect::<candle_core::Result<Vec<_>>>()?;
                if ys.len() == 1 { ys.into_iter().next().expect("one part") } else { Tensor::cat(&ys, 1)? }
            }
        };
        let y = match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        Ok(y.reshape((b, n, self.out))?)
    }
}

/// Neighbouring quantized parts of one type stacked into one matrix (their rows are
/// independent runs of blocks): q|k (and v when it shares their type), gate|up. Each
/// quantized matmul quantizes its input to 8 bits first; one matrix does it once, and its
/// output needs no concatenation.
fn merge_quantized(matrices: Vec<Matrix>) -> Result<Vec<Matrix>> {
    let mut out: Vec<Matrix> = Vec::with_capacity(matrices.len());
    for m in matrices {
        if let (Some(Matrix::Quantized(prev)), Matrix::Quantized(q)) = (out.last(), &m) {
            let cpu = |t: &QTensor| t.device().is_cpu();
            if prev.dtype() == q.dtype() && cpu(prev) && cpu(q) {
                let (rows_a, k) = prev.shape().dims2()?;
                let (rows_b, kb) = q.shape().dims2()?;
                if k == kb {
                    let mut bytes = prev.data()?.into_owned();
                    bytes.extend_from_slice(&q.data()?);
                    let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, q.dtype())?;
                    let merged = QTensor::new(storage, (rows_a + rows_b, k))?;
                    *out.last_mut().expect("a previous part") = Matrix::Quantized(Arc::new(merged));
                    continue;
                }
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// RMSNorm on the kernels' trainable form (fused at inference).
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(stipple_kernels::norm::rms_norm(x, &self.weight, self.eps)?)
    }
}

fn rms(src: &dyn WeightSource, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
    Ok(RmsNorm { weight: src.vector(&format!("{name}.weight"), size)?, eps })
}

impl Transformer {
    /// Load from a var builder rooted at the checkpoint's top level.
    pub fn new(cfg: &TransformerConfig, names: &WeightNames, vb: VarBuilder) -> Result<Self> {
        Self::from_source(cfg, names, &vb)
    }

    /// Load from any [`WeightSource`] (safetensors or GGUF).
    pub fn from_source(cfg: &TransformerConfig, names: &WeightNames, src: &dyn WeightSource) -> Result<Self> {
        cfg.check()?;
        let hd = cfg.head_dim();
        let mut embed = match src.matrix(&format!("{}.weight", names.embed), cfg.vocab, cfg.hidden)? {
            Matrix::Dense(w) => TokenEmbedding::Dense(Embedding::new(w, cfg.hidden)),
            Matrix::Quantized(q) => TokenEmbedding::Quantized(q),
        };
        // the head (the largest matrix) is loaded first: the buffer its packing frees (or,
        // tied, the embedding table it replaces) is then reused by the blocks' weights
        // rather than left over at the end
        let head = if cfg.tied_head {
            Proj::tied(&mut embed, cfg.vocab)?
        } else {
            Proj::load(src, &[(names.head.to_string(), cfg.vocab)], cfg.hidden, cfg.other_bias)?
        };
        let mut blocks = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let block = names.block.replace("{i}", &i.to_string());
            let at = |name: &str| format!("{block}.{name}");
            let kv = cfg.kv_heads * hd;
            let qkv_bias = cfg.qkv_bias || cfg.other_bias;
            blocks.push(Block {
                attn_norm: rms(src, &at(names.attn_norm), cfg.hidden, cfg.norm_eps)?,
                qkv: Proj::load(src, &[(at(names.q), cfg.hidden), (at(names.k), kv), (at(names.v), kv)], cfg.hidden, qkv_bias)?,
                o: Proj::load(src, &[(at(names.o), cfg.hidden)], cfg.hidden, cfg.other_bias)?,
                mlp_norm: rms(src, &at(names.mlp_norm), cfg.hidden, cfg.norm_eps)?,
                gate_up: Proj::load(
                    src,
                    &[(at(names.gate), cfg.mlp_hidden), (at(names.up), cfg.mlp_hidden)],
                    cfg.hidden,
                    cfg.other_bias,
                )?,
                down: Proj::load(src, &[(at(names.down), cfg.hidden)], cfg.mlp_hidden, cfg.other_bias)?,
            });
        }
        let final_norm = rms(src, names.final_norm, cfg.hidden, cfg.norm_eps)?;
        // torch: 1 / theta ** (arange(0, d, 2).float() / d), in f32
        let inv_freq = (0..hd / 2)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / hd as f32))
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            final_norm,
            head,
            inv_freq,
            device: src.device().clone(),
            dtype: src.dtype(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Data type of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// cos/sin tables `[n, d/2]` (or `[B, n, d/2]` for explicit positions), in f32 then cast.
    fn rotary(&self, span: &Span, b: usize, n: usize) -> Result<(Tensor, Tensor)> {
        let dev = self.device();
        let pos: Tensor = match span.positions {
            Some(p) => p.to_dtype(DType::F32)?.reshape((b, n, 1))?,
            None => Tensor::arange(span.start as u32, (span.start + n) as u32, dev)?
                .to_dtype(DType::F32)?
                .reshape((n, 1))?,
        };
        let inv = Tensor::from_slice(&self.inv_freq, (1, self.inv_freq.len()), dev)?;
        let freqs = pos.broadcast_mul(&inv)?;
        let dt = self.dtype();
        Ok((freqs.cos()?.to_dtype(dt)?, freqs.sin()?.to_dtype(dt)?))
    }

    /// Logits `[B, rows, vocab]` (f32) for a span. With `cache`, keys outside the span
    /// come from it; with `store`, this pass's keys/values (which must then cover the
    /// whole canvas) replace the cache's.
    pub fn forward(&self, span: &Span, cache: Option<&mut KvCache>, store: bool) -> Result<Tensor> {
        self.logits(&self.hidden_states(span, cache, store)?)
    }

    /// The final hidden states `[B, rows, hidden]` (after the last norm) of a span, as
    /// [`Transformer::forward`] computes them before the output head.
    pub fn hidden_states(&self, span: &Span, mut cache: Option<&mut KvCache>, store: bool) -> Result<Tensor> {
        let (b, n) = span.ids.dims2()?;
        if store && span.start != 0 {
            return Err(invalid("a cache can only be stored from a full-canvas pass"));
        }
        let cached = cache.as_ref().is_some_and(|c| !c.is_empty()) && !store;
        let total = if cached { cache.as_ref().unwrap().len() } else { span.start + n };
        if cached && span.start + n > total {
            return Err(invalid(format!(
                "span {}..{} outside the cached canvas of {total}",
                span.start,
                span.start + n
            )));
        }
        let mut x = self.embed.forward(span.ids)?;
        if self.cfg.scale_embeddings {
            x = (x * (self.cfg.hidden as f64).sqrt())?;
        }
        let (cos, sin) = self.rotary(span, b, n)?;
        let bias = match span.key_mask {
            Some(m) => {
                if m.dims2()? != (b, total) {
                    return Err(invalid(format!("key mask must be [{b}, {total}]")));
                }
                // 0 where attended, a large negative where masked: [B, L] in f32
                let m = m.to_dtype(DType::F32)?;
                Some(((m.ones_like()? - m)? * -1e30)?)
            }
            None => None,
        };
        let mut fresh = Vec::with_capacity(if store { self.blocks.len() } else { 0 });
        let last = self.blocks.len().saturating_sub(1);
        for (li, blk) in self.blocks.iter().enumerate() {
            let past = if cached { cache.as_ref().map(|c| &c.layers[li]) } else { None };
            // the last block only needs the rows whose logits are wanted
            let rows = if li == last { span.logits_rows.clone() } else { None };
            let (y, kv) = blk.forward(&self.cfg, &x, &cos, &sin, bias.as_ref(), past, span.start, rows)?;
            x = y;
            if store {
                fresh.push(kv);
            }
        }
        if store {
            if let Some(c) = cache.as_deref_mut() {
                c.layers = fresh;
            }
        }
        self.final_norm.forward(&x)
    }

    /// Logits `[B, rows, vocab]` (f32) of final hidden states `[B, rows, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let mut logits = self.head.forward(hidden)?;
        if self.cfg.scale_logits {
            logits = (logits / (self.cfg.hidden as f64).sqrt())?;
        }
        Ok(logits.to_dtype(DType::F32)?)
    }
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        cfg: &TransformerConfig,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: Option<&Tensor>,
        past: Option<&(Tensor, Tensor)>,
        start: usize,
        rows: Option<Range<usize>>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, n, _) = x.dims3()?;
        let hd = cfg.head_dim();
        let (hq, hkv) = (cfg.heads * hd, cfg.kv_heads * hd);
        let h = self.attn_norm.forward(x)?;
        let qkv = self.qkv.forward(&h)?;
        let heads = |t: Tensor, nh: usize, len: usize| -> Result<Tensor> {
            Ok(t.reshape((b, len, nh, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let k = heads(qkv.narrow(2, hq, hkv)?, cfg.kv_heads, n)?;
        let v = heads(qkv.narrow(2, hq + hkv, hkv)?, cfg.kv_heads, n)?;
        let k = stipple_kernels::rotary::rope(&k, cos, sin)?;
        // queries (and everything after attention) only for the wanted rows
        let (x, q, qn, cos_q, sin_q) = match &rows {
            Some(r) if r.len() < n => {
                let narrow_cs = |t: &Tensor| -> Result<Tensor> {
                    let dim = t.rank() - 2;
                    Ok(t.narrow(dim, r.start, r.len())?.contiguous()?)
                };
                (
                    x.narrow(1, r.start, r.len())?,
                    qkv.narrow(1, r.start, r.len())?.narrow(2, 0, hq)?,
                    r.len(),
                    narrow_cs(cos)?,
                    narrow_cs(sin)?,
                )
            }
            _ => (x.clone(), qkv.narrow(2, 0, hq)?, n, cos.clone(), sin.clone()),
        };
        let q = stipple_kernels::rotary::rope(&heads(q, cfg.heads, qn)?, &cos_q, &sin_q)?;
        let (keys, values) = match past {
            Some((pk, pv)) => (splice(pk, &k, start)?, splice(pv, &v, start)?),
            None => (k.clone(), v.clone()),
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let out = stipple_kernels::attention::attention(&q, &keys, &values, bias, scale)?;
        let x = (x + self.o.forward(&out)?)?;
        let h = self.mlp_norm.forward(&x)?;
        let act = stipple_kernels::gated::silu_mul(&self.gate_up.forward(&h)?)?;
        let x = (x + self.down.forward(&act)?)?;
        Ok((x, (k, v)))
    }
}

/// `cached` with positions `start..start+fresh_len` replaced by `fresh` (dim 2).
fn splice(cached: &Tensor, fresh: &Tensor, start: usize) -> Result<Tensor> {
    let total = cached.dim(2)?;
    let n = fresh.dim(2)?;
    let mut parts = Vec::with_capacity(3);
    if start > 0 {
        parts.push(cached.narrow(2, 0, start)?);
    }
    parts.push(fresh.clone());
    if start + n < total {
        parts.push(cached.narrow(2, start + n, total - start - n)?);
    }
    Ok(Tensor::cat(&parts, 2)?)
}

