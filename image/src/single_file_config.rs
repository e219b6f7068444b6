//! The pipeline a single-file checkpoint needs when it comes alone (no `--config`): its
//! diffusers configs derived from the checkpoint's own tensor names and shapes, the way
//! diffusers' `create_unet_diffusers_config_from_ldm` / `create_vae_diffusers_config_from_ldm`
//! derive them from the original LDM yaml and ComfyUI's model detection from the weights.
//!
//! Shapes give the architecture: channels per level, residual blocks per level, where the
//! attention blocks are and how deep, the cross-attention width, linear or 1x1-convolution
//! projections, SDXL's size/crop embedding, inpainting's 9 input channels, the VAE's levels
//! and the text encoders' widths and depths. What shapes cannot tell comes from the family,
//! as the original configs set it: SD 1.x runs 8 heads per attention, SD 2.x and SDXL 64
//! channels per head; 32 normalisation groups; the latent scale (0.18215, SDXL 0.13025);
//! OpenAI CLIP's quick-GELU vs OpenCLIP's GELU; SD 2.x reads OpenCLIP's penultimate layer;
//! the training noise schedule (scaled-linear betas 0.00085..0.012 over 1000 steps).
//!
//! SD 2.x comes as epsilon (512 px) or v-prediction (768 px) models with the same tensors:
//! as ComfyUI does, the spread of one LayerNorm bias late in the UNet tells them apart
//! (v-prediction models have a standard deviation above 0.09), and a `v_pred` key marks a
//! v-prediction model of any family. The CLIP BPE vocabulary ships with stipple
//! (`image/assets/clip/`, from the open_clip package, MIT: see its NOTICE).

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::single_file::CheckpointFamily;

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";

/// CLIP's BPE merges (the 48,894 that its 49,408-token vocabulary uses), gzip-compressed.
const CLIP_MERGES_GZ: &[u8] = include_bytes!("../assets/clip/merges.txt.gz");

/// What the checkpoint is, and the configs it runs with.
#[derive(Clone, Debug)]
pub struct DerivedPipeline {
    /// SD 1.x, SD 2.x or SDXL.
    pub family: CheckpointFamily,
    /// Trained to predict v rather than the noise.
    pub v_prediction: bool,
    /// An inpainting UNet (9 input channels: latents, mask, masked image).
    pub inpainting: bool,
    /// `model_index.json`.
    pub model_index: Value,
    /// `unet/config.json`.
    pub unet: Value,
    /// `vae/config.json`.
    pub vae: Value,
    /// `text_encoder/config.json`.
    pub text_encoder: Value,
    /// `text_encoder_2/config.json` (SDXL).
    pub text_encoder_2: Option<Value>,
    /// `scheduler/scheduler_config.json`.
    pub scheduler: Value,
}

/// A tensor's shape by checkpoint key, when present.
pub type ShapeOf<'a> = dyn Fn(&str) -> Option<Vec<usize>> + 'a;

fn err(what: impl std::fmt::Display) -> Error {
    Error::Model(format!("cannot tell this single-file checkpoint's architecture: {what}; give --config with a diffusers folder of its architecture"))
}

fn need(shape: &ShapeOf, key: &str) -> Result<Vec<usize>> {
    shape(key).ok_or_else(|| err(format!("no tensor {key}")))
}

fn count(shape: &ShapeOf, key: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|&i| shape(&key(i)).is_some()).count()
}

/// One resolution level of the UNet's down path.
struct Level {
    channels: usize,
    resnets: usize,
    /// Transformer blocks per attention (0: no attention at this level).
    depth: usize,
}

/// The UNet's `config.json` from the shapes (diffusers' field names and conventions).
pub fn unet_config(shape: &ShapeOf, family: CheckpointFamily, sample_size: usize) -> Result<Value> {
    let s = |k: &str| shape(&format!("{UNET}{k}"));
    let conv_in = need(shape, &format!("{UNET}input_blocks.0.0.weight"))?;
    let (model_channels, in_channels) = (conv_in[0], conv_in[1]);
    let out_channels = need(shape, &format!("{UNET}out.2.weight"))?[0];
    let mut levels = vec![Level { channels: model_channels, resnets: 0, depth: 0 }];
    let (mut linear, mut context) = (None, None);
    for i in 1.. {
        if s(&format!("input_blocks.{i}.0.op.weight")).is_some() {
            levels.push(Level { channels: 0, resnets: 0, depth: 0 });
            continue;
        }
        let Some(out) = s(&format!("input_blocks.{i}.0.out_layers.3.weight")) else { break };
        let level = levels.last_mut().expect("a level");
        level.channels = out[0];
        level.resnets += 1;
        if let Some(proj_in) = s(&format!("input_blocks.{i}.1.proj_in.weight")) {
            level.depth = count(shape, |d| format!("{UNET}input_blocks.{i}.1.transformer_blocks.{d}.attn1.to_q.weight"));
            linear.get_or_insert(proj_in.len() == 2);
            if let Some(k) = s(&format!("input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight")) {
                context.get_or_insert(k[1]);
            }
        }
    }
    if levels.iter().any(|l| l.resnets == 0 || l.resnets != levels[0].resnets) {
        return Err(err("its down blocks do not have the same number of residual blocks at every level"));
    }
    let (Some(linear), Some(context)) = (linear, context) else {
        return Err(err("no cross-attention block in its UNet"));
    };
    let n = levels.len();
    let per_level = levels[0].resnets;
    // the up path, deepest level first: per_level + 1 blocks each
    let up_attn: Vec<bool> = (0..n).map(|u| s(&format!("output_blocks.{}.1.proj_in.weight", u * (per_level + 1))).is_some()).collect();
    let depths: Vec<usize> = levels.iter().filter(|l| l.depth > 0).map(|l| l.depth).collect();
    let transformer_layers = if depths.windows(2).all(|w| w[0] == w[1]) {
        json!(depths[0])
    } else {
        json!(levels.iter().map(|l| l.depth.max(1)).collect::<Vec<_>>())
    };
    let heads = if linear {
        // num_head_channels 64: heads per level, as diffusers writes "attention_head_dim"
        json!(levels.iter().map(|l| l.channels / 64).collect::<Vec<_>>())
    } else {
        json!(8)
    };
    let (mut add_embed, mut add_time, mut proj_dim) = (Value::Null, Value::Null, Value::Null);
    if let Some(label) = s("label_emb.0.0.weight") {
        if family != CheckpointFamily::Xl {
            return Err(err("a class-embedding UNet (unCLIP / upscaler) outside SDXL"));
        }
        // the size/crop embedding reads the pooled text embedding and six sinusoidal
        // embeddings of the image sizes: adm_in = pooled + 6 * time_dim
        let pooled = shape("conditioner.embedders.1.model.text_projection").map(|p| p[1]);
        let time_dim = match pooled {
            Some(p) if label[1] > p && (label[1] - p) % 6 == 0 => (label[1] - p) / 6,
            _ => return Err(err(format!("its size embedding reads {} features, not the pooled text embedding plus six size embeddings", label[1]))),
        };
        add_embed = json!("text_time");
        add_time = json!(time_dim);
        proj_dim = json!(label[1]);
    }
    Ok(json!({
        "_class_name": "UNet2DConditionModel",
        "sample_size": sample_size,
        "in_channels": in_channels,
        "down_block_types": levels.iter().map(|l| if l.depth > 0 { "CrossAttnDownBlock2D" } else { "DownBlock2D" }).collect::<Vec<_>>(),
        "block_out_channels": levels.iter().map(|l| l.channels).collect::<Vec<_>>(),
        "layers_per_block": per_level,
        "cross_attention_dim": context,
        "attention_head_dim": heads,
        "use_linear_projection": linear,
        "class_embed_type": Value::Null,
        "addition_embed_type": add_embed,
        "addition_time_embed_dim": add_time,
        "projection_class_embeddings_input_dim": proj_dim,
        "transformer_layers_per_block": transformer_layers,
        "out_channels": out_channels,
        "up_block_types": up_attn.iter().map(|&a| if a { "CrossAttnUpBlock2D" } else { "UpBlock2D" }).collect::<Vec<_>>(),
    }))
}

/// The VAE's `config.json` from the shapes.
pub fn vae_config(shape: &ShapeOf, scaling_factor: f64, sample_size: usize) -> Result<Value> {
    let conv_in = need(shape, &format!("{VAE}encoder.conv_in.weight"))?;
    let levels = count(shape, |i| format!("{VAE}encoder.down.{i}.block.0.conv1.weight"));
    if levels == 0 {
        return Err(err("no VAE encoder blocks (first_stage_model.encoder.down.*)"));
    }
    let channels: Vec<usize> = (0..levels).map(|i| need(shape, &format!("{VAE}encoder.down.{i}.block.0.conv2.weight")).map(|s| s[0])).collect::<Result<_>>()?;
    Ok(json!({
        "_class_name": "AutoencoderKL",
        "sample_size": sample_size,
        "in_channels": conv_in[1],
        "out_channels": need(shape, &format!("{VAE}decoder.conv_out.weight"))?[0],
        "down_block_types": vec!["DownEncoderBlock2D"; levels],
        "up_block_types": vec!["UpDecoderBlock2D"; levels],
        "block_out_channels": channels,
        "latent_channels": need(shape, &format!("{VAE}decoder.conv_in.weight"))?[1],
        "layers_per_block": count(shape, |j| format!("{VAE}encoder.down.0.block.{j}.conv1.weight")),
        "scaling_factor": scaling_factor,
    }))
}

/// A CLIP text encoder's `config.json`: OpenAI CLIP in transformers names under `prefix`.
fn clip_config(shape: &ShapeOf, prefix: &str) -> Result<Value> {
    let at = |k: &str| {
        let full = format!("{prefix}text_model.{k}");
        if shape(&full).is_some() { full } else { format!("{prefix}{k}") }
    };
    let embed = need(shape, &at("embeddings.token_embedding.weight"))?;
    let layers = count(shape, |i| at(&format!("encoder.layers.{i}.self_attn.q_proj.weight")));
    Ok(json!({
        "architectures": ["CLIPTextModel"],
        "vocab_size": embed[0],
        "hidden_size": embed[1],
        "intermediate_size": need(shape, &at("encoder.layers.0.mlp.fc1.weight"))?[0],
        "num_hidden_layers": layers,
        "num_attention_heads": embed[1] / 64,
        "max_position_embeddings": need(shape, &at("embeddings.position_embedding.weight"))?[0],
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": embed[1],
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 1,
    }))
}

/// An OpenCLIP text tower's `config.json` (transformers CLIP names are mapped onto it when
/// loading). `drop_last`: SD 2.x conditions on the penultimate layer, so diffusers' config
/// keeps one layer fewer.
fn open_clip_config(shape: &ShapeOf, prefix: &str, drop_last: bool, with_projection: bool) -> Result<Value> {
    let embed = need(shape, &format!("{prefix}token_embedding.weight"))?;
    let layers = count(shape, |i| format!("{prefix}transformer.resblocks.{i}.attn.in_proj_weight"));
    let projection = shape(&format!("{prefix}text_projection")).map(|p| p[1]).unwrap_or(embed[1]);
    Ok(json!({
        "architectures": [if with_projection { "CLIPTextModelWithProjection" } else { "CLIPTextModel" }],
        "vocab_size": embed[0],
        "hidden_size": embed[1],
        "intermediate_size": need(shape, &format!("{prefix}transformer.resblocks.0.mlp.c_fc.weight"))?[0],
        "num_hidden_layers": if drop_last { layers.saturating_sub(1) } else { layers },
        "num_attention_heads": embed[1] / 64,
        "max_position_embeddings": need(shape, &format!("{prefix}positional_embedding"))?[0],
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": projection,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 1,
    }))
}

/// diffusers' default scheduler settings for single-file checkpoints (its
/// `SCHEDULER_DEFAULT_CONFIG`), under the scheduler class each family's hub pipeline uses.
fn scheduler_config(family: CheckpointFamily, v_prediction: bool) -> Value {
    let class = match family {
        CheckpointFamily::Sd1 => "PNDMScheduler",
        CheckpointFamily::Sd2 => "DDIMScheduler",
        CheckpointFamily::Xl => "EulerDiscreteScheduler",
    };
    json!({
        "_class_name": class,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": if v_prediction { "v_prediction" } else { "epsilon" },
        "sample_max_value": 1.0,
        "set_alpha_to_one": false,
        "skip_prk_steps": true,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "clip_sample": false,
    })
}

impl DerivedPipeline {
    /// Derive everything from a checkpoint's shapes; `norm_bias_std` is the standard
    /// deviation of the UNet's `output_blocks.11.1.transformer_blocks.0.norm1.bias` (SD 2.x's
    /// v-prediction test), when the checkpoint has that tensor.
    pub fn derive(shape: &ShapeOf, family: CheckpointFamily, norm_bias_std: Option<f64>) -> Result<Self> {
        let in_channels = need(shape, &format!("{UNET}input_blocks.0.0.weight"))?[1];
        let inpainting = in_channels == 9;
        let marked_v = shape("v_pred").is_some();
        let v_prediction = marked_v || (family == CheckpointFamily::Sd2 && !inpainting && norm_bias_std.is_some_and(|s| s > 0.09));
        let image_size = match family {
            CheckpointFamily::Sd1 => 512,
            CheckpointFamily::Sd2 if v_prediction => 768,
            CheckpointFamily::Sd2 => 512,
            CheckpointFamily::Xl => 1024,
        };
        let scale = if family == CheckpointFamily::Xl { 0.13025 } else { 0.18215 };
        let unet = unet_config(shape, family, image_size / 8)?;
        let vae = vae_config(shape, scale, image_size)?;

        let (text_encoder, text_encoder_2) = match family {
            CheckpointFamily::Sd1 => (clip_config(shape, "cond_stage_model.transformer.")?, None),
            CheckpointFamily::Sd2 => (open_clip_config(shape, "cond_stage_model.model.", true, false)?, None),
            CheckpointFamily::Xl => (
                clip_config(shape, "conditioner.embedders.0.transformer.")?,
                Some(open_clip_config(shape, "conditioner.embedders.1.model.", false, true)?),
            ),
        };
        let class = match (family, inpainting) {
            (CheckpointFamily::Xl, false) => "StableDiffusionXLPipeline",
            (CheckpointFamily::Xl, true) => "StableDiffusionXLInpaintPipeline",
            (_, false) => "StableDiffusionPipeline",
            (_, true) => "StableDiffusionInpaintPipeline",
        };
        let mut index = json!({
            "_class_name": class,
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        });
        if family == CheckpointFamily::Xl {
            index["text_encoder_2"] = json!(["transformers", "CLIPTextModelWithProjection"]);
            index["tokenizer_2"] = json!(["transformers", "CLIPTokenizer"]);
            index["force_zeros_for_empty_prompt"] = json!(true);
        }
        Ok(Self { family, v_prediction, inpainting, model_index: index, unet, vae, text_encoder, text_encoder_2, scheduler: scheduler_config(family, v_prediction) })
    }

    /// Refuses architectures the family's fixed settings cannot run: every level's
    /// channels must split into Stable Diffusion's 32 normalisation groups.
    pub fn check_groups(&self) -> Result<()> {
        for (what, cfg) in [("UNet", &self.unet), ("VAE", &self.vae)] {
            let channels = cfg["block_out_channels"].as_array().into_iter().flatten().filter_map(Value::as_u64);
            if let Some(c) = channels.into_iter().find(|c| c % 32 != 0) {
                return Err(err(format!("its {what} has {c} channels at one level, not a multiple of Stable Diffusion's 32 normalisation groups")));
            }
        }
        Ok(())
    }

    /// Writes the pipeline folder these configs describe (configs and tokenizers, no
    /// weights) under `dir`, for the folder loader to read.
    pub fn write_folder(&self, dir: &Path) -> Result<()> {
        let write = |rel: &str, value: &Value| -> Result<()> {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::Model(format!("{}: {e}", parent.display())))?;
            }
            let text = serde_json::to_string_pretty(value).map_err(|e| Error::Model(e.to_string()))?;
            std::fs::write(&path, text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
        };
        write("model_index.json", &self.model_index)?;
        write("unet/config.json", &self.unet)?;
        write("vae/config.json", &self.vae)?;
        write("scheduler/scheduler_config.json", &self.scheduler)?;
        write("text_encoder/config.json", &self.text_encoder)?;
        // SD 2.x pads with "!", as does SDXL's second tokenizer (OpenCLIP's convention)
        let first_pad = if self.family == CheckpointFamily::Sd2 { "!" } else { "<|endoftext|>" };
        write_clip_tokenizer(&dir.join("tokenizer"), first_pad)?;
        if let Some(t2) = &self.text_encoder_2 {
            write("text_encoder_2/config.json", t2)?;
            write_clip_tokenizer(&dir.join("tokenizer_2"), "!")?;
        }
        Ok(())
    }
}

/// `bytes_to_unicode()` of GPT-2 / CLIP: printable bytes stand for themselves, the rest
/// map to code points from 256 up, in byte order.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    // CLIP's vocabulary lists them in the order of `printable` (the byte list above)
    chars.into_iter().map(|c| char::from_u32(c).expect("a valid code point")).collect()
}

/// CLIP's `vocab.json` and `merges.txt` (as OpenAI's tokenizer builds its vocabulary: the
/// 256 byte characters, the same with `</w>`, one token per merge, then the two specials).
pub fn clip_vocab_and_merges() -> Result<(Value, String)> {
    use std::io::Read;
    let mut merges = String::new();
    flate2::read::GzDecoder::new(CLIP_MERGES_GZ).read_to_string(&mut merges).map_err(|e| Error::Tokenizer(format!("the built-in CLIP merges: {e}")))?;
    let mut vocab = serde_json::Map::new();
    let mut push = |token: String| {
        let id = vocab.len();
        vocab.insert(token, json!(id));
    };
    let bytes = byte_chars();
    for c in &bytes {
        push(c.to_string());
    }
    for c in &bytes {
        push(format!("{c}</w>"));
    }
    for line in merges.lines().filter(|l| !l.is_empty()) {
        push(line.replace(' ', ""));
    }
    push("<|startoftext|>".into());
    push("<|endoftext|>".into());
    Ok((Value::Object(vocab), format!("#version: 0.2\n{merges}")))
}

/// Writes CLIP's tokenizer files (`vocab.json`, `merges.txt`, `tokenizer_config.json` with
/// the pad token) to `dir`.
pub fn write_clip_tokenizer(dir: &Path, pad: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Model(format!("{}: {e}", dir.display())))?;
    let (vocab, merges) = clip_vocab_and_merges()?;
    let io = |p: &Path, e: std::io::Error| Error::Model(format!("{}: {e}", p.display()));
    let path = dir.join("vocab.json");
    std::fs::write(&path, serde_json::to_string(&vocab).map_err(|e| Error::Model(e.to_string()))?).map_err(|e| io(&path, e))?;
    let path = dir.join("merges.txt");
    std::fs::write(&path, merges).map_err(|e| io(&path, e))?;
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, json!({"model_max_length": 77, "pad_token": pad}).to_string()).map_err(|e| io(&path, e))?;
    Ok(())
}
