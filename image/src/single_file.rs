//! Single-file checkpoints (A1111 / original LDM `.safetensors`): the UNet, VAE and text
//! encoders stored under the original Stable Diffusion key names, read in place through a
//! renaming weight backend (no conversion pass, no copy). Each network asks for its
//! diffusers / transformers names; this module translates them to the LDM ones:
//!
//! * UNet `model.diffusion_model.*`: `input_blocks` / `middle_block` / `output_blocks`,
//!   resnets as `in_layers` / `emb_layers` / `out_layers` / `skip_connection`, SDXL's
//!   `label_emb`;
//! * VAE `first_stage_model.*`: `down.i.block.j`, `up.(n-1-i).block.j`, `mid.attn_1` with
//!   1x1-convolution attention weights;
//! * CLIP-L `cond_stage_model.transformer.*` / `conditioner.embedders.0.transformer.*`
//!   (transformers names), OpenCLIP `cond_stage_model.model.*` /
//!   `conditioner.embedders.1.model.*` (fused `in_proj`, `ln_1`, `c_fc`, transposed
//!   `text_projection`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use stipple_core::weights::SafetensorsFiles;

use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;

/// Which model family a checkpoint holds, from its text-encoder keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFamily {
    /// SD 1.x: CLIP-L in transformers names.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H.
    Sd2,
    /// SDXL: CLIP-L + OpenCLIP bigG.
    Xl,
}

impl CheckpointFamily {
    /// The family from the checkpoint's keys (its text encoders): OpenCLIP bigG beside
    /// CLIP-L is SDXL, OpenCLIP alone SD 2.x, CLIP-L alone SD 1.x.
    pub fn detect(has: &dyn Fn(&str) -> bool) -> std::result::Result<Self, String> {
        if !has("model.diffusion_model.input_blocks.0.0.weight") {
            return Err("not an original-layout Stable Diffusion checkpoint (no model.diffusion_model.input_blocks.0.0.weight)".into());
        }
        Ok(if has("conditioner.embedders.1.model.token_embedding.weight") {
            CheckpointFamily::Xl
        } else if has("cond_stage_model.model.token_embedding.weight") {
            CheckpointFamily::Sd2
        } else {
            CheckpointFamily::Sd1
        })
    }
}

/// The population standard deviation of a tensor's values (torch's `std(unbiased=False)`).
pub fn population_std(t: &Tensor) -> Result<f64> {
    let v: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    Ok((v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt())
}

/// An open single-file checkpoint.
#[derive(Clone)]
pub struct LdmCheckpoint {
    st: Arc<SafetensorsFiles>,
    /// The family its keys say it is.
    pub family: CheckpointFamily,
}

/// Where a requested tensor lives in the checkpoint.
enum Source {
    /// A tensor under another name (reshaped when only the layout differs, as for
    /// 1x1-convolution attention weights).
    Renamed(String),
    /// Part `index` of 3 along dim 0 (OpenCLIP's fused q/k/v projection).
    Third(String, usize),
    /// The transpose (OpenCLIP's `text_projection` is applied as `x @ P`).
    Transposed(String),
}

type Translate = dyn Fn(&str) -> Option<Source> + Send + Sync;

struct Renamed {
    st: Arc<SafetensorsFiles>,
    translate: Box<Translate>,
}

impl Renamed {
    /// The tensor for diffusers' `name`, in the checkpoint's dtype, on the CPU.
    fn load(&self, name: &str) -> Result<Tensor> {
        let missing = || candle_core::Error::Msg(format!("checkpoint has no tensor for {name}"));
        let read = |k: &str| self.st.read(k).map_err(|e| candle_core::Error::Msg(e.to_string()));
        match (self.translate)(name).ok_or_else(missing)? {
            Source::Renamed(k) => read(&k),
            Source::Third(k, i) => {
                let t = read(&k)?;
                let n = t.dim(0)? / 3;
                t.narrow(0, i * n, n)?.contiguous()
            }
            Source::Transposed(k) => stipple_kernels::cpu::transpose(&read(&k)?),
        }
    }

    fn source_key(&self, name: &str) -> Option<String> {
        (self.translate)(name).map(|s| match s {
            Source::Renamed(k) | Source::Third(k, _) | Source::Transposed(k) => k,
        })
    }
}

impl SimpleBackend for Renamed {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let t = self.load(name)?;
        let t = if t.shape() != &s && t.elem_count() == s.elem_count() { t.reshape(s.clone())? } else { t };
        if t.shape() != &s {
            candle_core::bail!("checkpoint tensor for {name} has shape {:?}, expected {:?}", t.shape(), s);
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.load(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.source_key(name).is_some_and(|k| self.st.contains(&k))
    }
}

/// Replaces the longest matching prefix (followed by `.`) using `table`.
fn by_prefix(name: &str, table: &[(String, String)]) -> Option<(String, String, String)> {
    table
        .iter()
        .filter(|(from, _)| name.strip_prefix(from.as_str()).is_some_and(|r| r.starts_with('.')))
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| (from.clone(), to.clone(), name[from.len() + 1..].to_string()))
}

/// Residual-block names: diffusers -> LDM (UNet) or -> the VAE's.
fn resnet_rest(rest: &str, vae: bool) -> String {
    let pairs: &[(&str, &str)] = if vae {
        &[("conv_shortcut", "nin_shortcut")]
    } else {
        &[("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
    };
    for (a, b) in pairs {
        if let Some(r) = rest.strip_prefix(a).filter(|r| r.starts_with('.')) {
            return format!("{b}{r}");
        }
    }
    rest.to_string()
}

impl LdmCheckpoint {
    /// Opens a `.safetensors` checkpoint (its header only) and recognises its family.
    pub fn open(path: &Path) -> crate::Result<Self> {
        let st = SafetensorsFiles::open(&[path])?;
        let family = CheckpointFamily::detect(&|k: &str| st.contains(k)).map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
        Ok(Self { st: Arc::new(st), family })
    }

    /// Refuses to load when the networks' tensors (as `dtype`; EMA copies and other extras
    /// are not loaded) would not fit in memory.
    pub fn check_fits(&self, path: &Path, dtype: DType) -> crate::Result<()> {
        const LOADED: [&str; 4] = ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner."];
        let bytes = self.st.bytes_as_where(dtype, |n| LOADED.iter().any(|p| n.starts_with(p)));
        let need = stipple_core::memory::Estimate::new(format!("loading {}", path.display())).kept("weights", bytes);
        stipple_core::memory::check(&need)?;
        Ok(())
    }

    /// The configs this checkpoint runs with when no diffusers folder is given, derived
    /// from its tensor shapes (see [`crate::single_file_config`]).
    pub fn derive_pipeline(&self) -> crate::Result<crate::single_file_config::DerivedPipeline> {
        let shape = |k: &str| self.st.shape(k).map(<[usize]>::to_vec);
        let key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias";
        let norm_bias_std = match self.st.contains(key) {
            true => Some(population_std(&self.st.read(key)?)?),
            false => None,
        };
        let derived = crate::single_file_config::DerivedPipeline::derive(&shape, self.family, norm_bias_std)?;
        derived.check_groups()?;
        Ok(derived)
    }

    fn vb(&self, translate: Box<Translate>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Renamed { st: self.st.clone(), translate }), dtype, device.clone())
    }

    /// The UNet's weights under diffusers names.
    pub fn unet(&self, cfg: &UNetConfig, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        let n = cfg.block_out_channels.len();
        let layers = match &cfg.layers_per_block {
            crate::models::unet::PerBlock::One(l) => vec![*l; n],
            crate::models::unet::PerBlock::Each(v) => v.clone(),
        };
        let mut table: Vec<(String, String)> = [
            ("time_embedding.linear_1", "time_embed.0"),
            ("time_embedding.linear_2", "time_embed.2"),
            ("add_embedding.linear_1", "label_emb.0.0"),
            ("add_embedding.linear_2", "label_emb.0.2"),
            ("conv_in", "input_blocks.0.0"),
            ("conv_norm_out", "out.0"),
            ("conv_out", "out.2"),
            ("mid_block.resnets.0", "middle_block.0"),
            ("mid_block.attentions.0", "middle_block.1"),
            ("mid_block.resnets.1", "middle_block.2"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let mut resnets = vec!["mid_block.resnets.0".to_string(), "mid_block.resnets.1".to_string()];
        let mut idx = 1;
        for (i, &l) in layers.iter().enumerate() {
            for j in 0..l {
                table.push((format!("down_blocks.{i}.resnets.{j}"), format!("input_blocks.{idx}.0")));
                table.push((format!("down_blocks.{i}.attentions.{j}"), format!("input_blocks.{idx}.1")));
                resnets.push(format!("down_blocks.{i}.resnets.{j}"));
                idx += 1;
            }
            if i + 1 < n {
                table.push((format!("down_blocks.{i}.downsamplers.0.conv"), format!("input_blocks.{idx}.0.op")));
                idx += 1;
            }
        }
        let mut idx = 0;
        for i in 0..n {
            let num = layers[n - 1 - i] + 1;
            let attn = cfg.up_block_types.get(i).is_some_and(|t| t.starts_with("CrossAttn"));
            for j in 0..num {
                table.push((format!("up_blocks.{i}.resnets.{j}"), format!("output_blocks.{idx}.0")));
                table.push((format!("up_blocks.{i}.attentions.{j}"), format!("output_blocks.{idx}.1")));
                resnets.push(format!("up_blocks.{i}.resnets.{j}"));
                idx += 1;
            }
            table.push((format!("up_blocks.{i}.upsamplers.0.conv"), format!("output_blocks.{}.{}.conv", idx - 1, if attn { 2 } else { 1 })));
        }
        let translate = move |name: &str| {
            let (from, to, rest) = by_prefix(name, &table)?;
            let rest = if resnets.contains(&from) { resnet_rest(&rest, false) } else { rest };
            Some(Source::Renamed(format!("model.diffusion_model.{to}.{rest}")))
        };
        Ok(self.vb(Box::new(translate), dtype, device))
    }

    /// The VAE's weights under diffusers names.
    pub fn vae(&self, cfg: &VaeConfig, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        let n = cfg.block_out_channels.len();
        let mut table: Vec<(String, String)> = Vec::new();
        let mut resnets = Vec::new();
        for side in ["encoder", "decoder"] {
            for (j, k) in [(0, "block_1"), (1, "block_2")] {
                table.push((format!("{side}.mid_block.resnets.{j}"), format!("{side}.mid.{k}")));
                resnets.push(format!("{side}.mid_block.resnets.{j}"));
            }
            table.push((format!("{side}.mid_block.attentions.0"), format!("{side}.mid.attn_1")));
            table.push((format!("{side}.conv_norm_out"), format!("{side}.norm_out")));
        }
        for i in 0..n {
            for j in 0..=cfg.layers_per_block {
                table.push((format!("encoder.down_blocks.{i}.resnets.{j}"), format!("encoder.down.{i}.block.{j}")));
                table.push((format!("decoder.up_blocks.{i}.resnets.{j}"), format!("decoder.up.{}.block.{j}", n - 1 - i)));
                resnets.push(format!("encoder.down_blocks.{i}.resnets.{j}"));
                resnets.push(format!("decoder.up_blocks.{i}.resnets.{j}"));
            }
            table.push((format!("encoder.down_blocks.{i}.downsamplers.0.conv"), format!("encoder.down.{i}.downsample.conv")));
            table.push((format!("decoder.up_blocks.{i}.upsamplers.0.conv"), format!("decoder.up.{}.upsample.conv", n - 1 - i)));
        }
        let attn: [(&str, &str); 5] = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")];
        let translate = move |name: &str| {
            let Some((from, to, rest)) = by_prefix(name, &table) else {
                return Some(Source::Renamed(format!("first_stage_model.{name}")));
            };
            let rest = if to.ends_with("attn_1") {
                let (a, b) = attn.iter().find(|(a, _)| rest.strip_prefix(a).is_some_and(|r| r.starts_with('.')))?;
                format!("{b}{}", &rest[a.len()..])
            } else if resnets.contains(&from) {
                resnet_rest(&rest, true)
            } else {
                rest
            };
            Some(Source::Renamed(format!("first_stage_model.{to}.{rest}")))
        };
        Ok(self.vb(Box::new(translate), dtype, device))
    }

    /// A text encoder's weights under transformers names: `component` is `text_encoder`
    /// or `text_encoder_2`.
    pub fn text_encoder(&self, component: &str, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        let second = component == "text_encoder_2";
        let (prefix, open_clip) = match (self.family, second) {
            (CheckpointFamily::Sd1, false) => ("cond_stage_model.transformer.", false),
            (CheckpointFamily::Sd2, false) => ("cond_stage_model.model.", true),
            (CheckpointFamily::Xl, false) => ("conditioner.embedders.0.transformer.", false),
            (CheckpointFamily::Xl, true) => ("conditioner.embedders.1.model.", true),
            (_, true) => candle_core::bail!("this checkpoint has no second text encoder"),
        };
        let st = self.st.clone();
        let translate: Box<Translate> = if open_clip {
            Box::new(move |name: &str| open_clip_source(prefix, name))
        } else {
            // transformers 4 names (`text_model.*`); some old checkpoints lack `text_model.`
            Box::new(move |name: &str| {
                let full = format!("{prefix}{name}");
                if st.contains(&full) {
                    return Some(Source::Renamed(full));
                }
                name.strip_prefix("text_model.").map(|r| Source::Renamed(format!("{prefix}{r}")))
            })
        };
        Ok(self.vb(translate, dtype, device))
    }
}

/// transformers CLIP names -> OpenCLIP's.
fn open_clip_source(prefix: &str, name: &str) -> Option<Source> {
    let name = name.strip_prefix("text_model.").unwrap_or(name);
    let p = |s: &str| format!("{prefix}{s}");
    let fixed: HashMap<&str, Source> = HashMap::from([
        ("embeddings.token_embedding.weight", Source::Renamed(p("token_embedding.weight"))),
        ("embeddings.position_embedding.weight", Source::Renamed(p("positional_embedding"))),
        ("final_layer_norm.weight", Source::Renamed(p("ln_final.weight"))),
        ("final_layer_norm.bias", Source::Renamed(p("ln_final.bias"))),
        ("text_projection.weight", Source::Transposed(p("text_projection"))),
    ]);
    if let Some(s) = fixed.into_iter().find(|(k, _)| *k == name).map(|(_, s)| s) {
        return Some(s);
    }
    let rest = name.strip_prefix("encoder.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let block = p(&format!("transformer.resblocks.{layer}"));
    for (i, q) in ["self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."].iter().enumerate() {
        if let Some(kind) = rest.strip_prefix(q) {
            return Some(Source::Third(format!("{block}.attn.in_proj_{kind}"), i));
        }
    }
    let pairs = [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")];
    pairs
        .iter()
        .find_map(|(a, b)| rest.strip_prefix(a).filter(|r| r.starts_with('.')).map(|r| Source::Renamed(format!("{block}.{b}{r}"))))
}
