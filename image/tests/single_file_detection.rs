//! Single-file checkpoints that come alone: the family and the diffusers configs are
//! derived from the tensor names and shapes.
//! * At full size, on the tensor listings of SD 1.5, SD 2.1 (v) and SDXL base
//!   (`tools/make_single_file_listings.py`: the networks diffusers builds from the original
//!   LDM configs, renamed to the original keys), the derived UNet and VAE configs are the
//!   ones diffusers derives from those LDM configs, field for field, and the text encoders
//!   are CLIP ViT-L, OpenCLIP ViT-H (23 layers used) and ViT-bigG.
//! * On the tiny single-file fixtures (written from diffusers folders), everything the
//!   shapes carry matches the folders' configs.
//! * The built-in CLIP vocabulary tokenizes like open_clip's own tokenizer.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use stipple_image::single_file::{CheckpointFamily, LdmCheckpoint};
use stipple_image::single_file_config::{DerivedPipeline, write_clip_tokenizer};
use stipple_image::tokenizer::ClipTokenizer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn listings() -> Result<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixtures().join("single_file_listings.json.gz"))?).read_to_string(&mut text)?;
    Ok(serde_json::from_str(&text)?)
}

/// Every field of `want` equals the same field of `got` (numbers compared as numbers).
fn same_fields(what: &str, got: &Value, want: &Value) {
    for (k, w) in want.as_object().unwrap() {
        let g = got.get(k).unwrap_or(&Value::Null);
        let equal = match (g.as_f64(), w.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => g == w,
        };
        assert!(equal, "{what}.{k}: derived {g}, expected {w}");
    }
}

#[test]
fn derived_configs_match_diffusers_at_full_size() -> Result<()> {
    let all = listings()?;
    for (name, family, std) in [("sd1", CheckpointFamily::Sd1, None), ("sd2", CheckpointFamily::Sd2, Some(0.12)), ("sdxl", CheckpointFamily::Xl, None)] {
        let entry = &all[name];
        let keys = entry["keys"].as_object().context("keys")?;
        let shape = |k: &str| keys.get(k).map(|s| s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect::<Vec<_>>());
        assert_eq!(CheckpointFamily::detect(&|k: &str| keys.contains_key(k)).unwrap(), family, "{name}: family");
        let d = DerivedPipeline::derive(&shape, family, std)?;
        same_fields(&format!("{name} unet"), &d.unet, &entry["unet"]);
        same_fields(&format!("{name} vae"), &d.vae, &entry["vae"]);
        let encoders: Vec<&Value> = std::iter::once(&d.text_encoder).chain(d.text_encoder_2.as_ref()).collect();
        let want = entry["text_encoders"].as_array().unwrap();
        assert_eq!(encoders.len(), want.len(), "{name}: text encoders");
        for (i, (g, w)) in encoders.iter().zip(want).enumerate() {
            same_fields(&format!("{name} text encoder {i}"), g, w);
        }
        assert_eq!(d.v_prediction, name == "sd2", "{name}: prediction type");
        assert_eq!(d.scheduler["prediction_type"], if name == "sd2" { "v_prediction" } else { "epsilon" });
        assert!(!d.inpainting);
        eprintln!("{name}: {} tensors, configs as diffusers derives them", keys.len());
    }
    Ok(())
}

#[test]
fn sd2_prediction_type_follows_the_norm_bias_spread() -> Result<()> {
    let all = listings()?;
    let keys = all["sd2"]["keys"].as_object().context("keys")?.clone();
    let shape = |k: &str| keys.get(k).map(|s| s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect::<Vec<_>>());
    // ComfyUI's threshold: v-prediction SD 2.x models spread this bias wider than 0.09
    let eps = DerivedPipeline::derive(&shape, CheckpointFamily::Sd2, Some(0.05))?;
    assert!(!eps.v_prediction);
    assert_eq!(eps.unet["sample_size"], 64, "SD 2 base is a 512 px model");
    let v = DerivedPipeline::derive(&shape, CheckpointFamily::Sd2, Some(0.15))?;
    assert!(v.v_prediction);
    assert_eq!(v.unet["sample_size"], 96, "SD 2 v is a 768 px model");
    // a v_pred key marks any family's checkpoint as v-prediction
    let sd1 = all["sd1"]["keys"].as_object().context("keys")?.clone();
    let marked = |k: &str| if k == "v_pred" { Some(vec![]) } else { sd1.get(k).map(|s| s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()) };
    assert!(DerivedPipeline::derive(&marked, CheckpointFamily::Sd1, None)?.v_prediction);
    // inpainting: 9 input channels
    let inpaint = |k: &str| {
        let s = sd1.get(k).map(|s| s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect::<Vec<usize>>());
        if k == "model.diffusion_model.input_blocks.0.0.weight" { s.map(|mut v| { v[1] = 9; v }) } else { s }
    };
    let d = DerivedPipeline::derive(&inpaint, CheckpointFamily::Sd1, None)?;
    assert!(d.inpainting);
    assert_eq!(d.model_index["_class_name"], "StableDiffusionInpaintPipeline");
    Ok(())
}

#[test]
fn tiny_checkpoints_derive_their_folders_architecture() -> Result<()> {
    for (name, family) in [("sd1-tiny", CheckpointFamily::Sd1), ("sdxl-tiny", CheckpointFamily::Xl)] {
        let ckpt = LdmCheckpoint::open(&fixtures().join(format!("{name}.safetensors")))?;
        assert_eq!(ckpt.family, family);
        // the tiny models' 16-channel levels cannot take SD's 32 normalisation groups: the
        // whole derivation says so; the architecture itself is derived all the same
        let err = ckpt.derive_pipeline().err().context("16-channel levels must be refused")?;
        assert!(err.to_string().contains("32 normalisation groups") && err.to_string().contains("--config"), "{err}");
        let st = stipple_core::weights::SafetensorsFiles::open(&[fixtures().join(format!("{name}.safetensors"))])?;
        let shape = |k: &str| st.shape(k).map(<[usize]>::to_vec);
        let folder = fixtures().join(name);
        let read = |c: &str| -> Result<Value> { Ok(serde_json::from_str(&std::fs::read_to_string(folder.join(c).join("config.json"))?)?) };
        let unet = read("unet")?;
        let all = DerivedPipeline::derive(&shape, family, None)?;
        let derived = all.unet.clone();
        let vae = read("vae")?;
        for k in ["in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels", "down_block_types", "up_block_types"] {
            assert_eq!(all.vae[k], vae[k], "{name} vae.{k}");
        }
        let mut encoders = vec![(&all.text_encoder, read("text_encoder")?)];
        if let Some(t2) = &all.text_encoder_2 {
            encoders.push((t2, read("text_encoder_2")?));
        }
        for (i, (got, want)) in encoders.into_iter().enumerate() {
            for k in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "max_position_embeddings", "projection_dim"] {
                assert_eq!(got[k], want[k], "{name} text encoder {i}: {k}");
            }
        }
        for k in ["in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim", "use_linear_projection", "transformer_layers_per_block", "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim"] {
            let (g, w) = (&derived[k], unet.get(k).unwrap_or(&Value::Null));
            let w = if k == "cross_attention_dim" && w.is_array() { &w[0] } else { w };
            if k == "transformer_layers_per_block" {
                assert_eq!(attention_depths(&derived), attention_depths(&unet), "{name} unet.{k}");
            } else {
                assert_eq!(g, w, "{name} unet.{k}");
            }
        }
        eprintln!("{name}: family, UNet, VAE and text encoders derived from the shapes");
    }
    Ok(())
}

/// Transformer blocks per attention level (one number or a list mean the same then).
fn attention_depths(unet: &Value) -> Vec<u64> {
    let types = unet["down_block_types"].as_array().unwrap();
    let depth = |i: usize| match &unet["transformer_layers_per_block"] {
        Value::Array(a) => a[i].as_u64().unwrap(),
        v => v.as_u64().unwrap_or(1),
    };
    (0..types.len()).filter(|&i| types[i].as_str().unwrap().starts_with("CrossAttn")).map(depth).collect()
}

#[test]
fn builtin_clip_vocabulary_tokenizes_like_open_clip() -> Result<()> {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("clip_builtin_tokens.json"))?)?;
    let dir = std::env::temp_dir().join(format!("stipple-clip-builtin-{}", std::process::id()));
    write_clip_tokenizer(&dir, "<|endoftext|>")?;
    let tok = ClipTokenizer::from_dir(&dir)?;
    std::fs::remove_dir_all(&dir)?;
    for case in expected["cases"].as_array().unwrap() {
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let end = want.iter().position(|&t| t == 49407).context("end token")?;
        let got = tok.encode(case["prompt"].as_str().unwrap())?;
        assert_eq!(got.len(), 77);
        assert_eq!(&got[..=end], &want[..=end], "{:?}", case["prompt"]);
        assert!(got[end + 1..].iter().all(|&t| t == 49407), "SD 1.x pads with <|endoftext|>");
    }
    Ok(())
}
