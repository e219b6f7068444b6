//! Parity with diffusers: tiny random pipelines in the hub layout, made and run by
//! `tools/make_image_fixtures.py` (diffusers 0.42.1, transformers 5.17), must give the same
//! images here, within 2/255 per pixel, from the same noise (replayed draw by draw).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use stipple_core::noise::ReplayNoise;
use stipple_core::progress::{CancelToken, NoProgress};
use stipple_image::models::taesd::TaesdDecoder;
use stipple_image::tokenizer::ClipTokenizer;
use stipple_image::{ImageRequest, StableDiffusion};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json"))?)?)
}

/// The noise draws diffusers made, in order (`arr_0`, `arr_1`, ...).
fn draws(case: &str) -> Result<Vec<Vec<f32>>> {
    let mut arrays = Tensor::read_npz(fixtures().join(format!("noise/{case}.npz")))?;
    arrays.sort_by_key(|(name, _)| name.trim_start_matches("arr_").parse::<usize>().unwrap_or(usize::MAX));
    arrays.into_iter().map(|(_, t)| Ok(t.flatten_all()?.to_vec1::<f32>()?)).collect()
}

pub fn request(case: &Value, fixtures: &Path) -> Result<ImageRequest> {
    let s = |k: &str| case[k].as_str().unwrap_or_default().to_string();
    let kind = s("kind");
    let negative = s("negative_prompt");
    let open = |name: &str| image::open(fixtures.join(name)).with_context(|| name.to_string());
    Ok(ImageRequest {
        prompt: s("prompt"),
        negative_prompt: (!negative.is_empty()).then_some(negative),
        steps: case["steps"].as_u64().map(|v| v as usize),
        guidance: case["guidance"].as_f64(),
        guidance_rescale: case["guidance_rescale"].as_f64().unwrap_or(0.0),
        sampler: Some(s("scheduler").parse()?),
        width: case["width"].as_u64().map(|v| v as usize),
        height: case["height"].as_u64().map(|v| v as usize),
        batch: case["batch"].as_u64().unwrap_or(1) as usize,
        init_image: if kind == "txt2img" { None } else { Some(open("init.png")?) },
        strength: case["strength"].as_f64().unwrap_or(1.0),
        mask: if kind == "inpaint" { Some(open("mask.png")?) } else { None },
        keep_unmasked: false,
        latents: None,
        prompt_blend: None,
        batch_prompts: Vec::new(),
    })
}

#[test]
fn images_match_diffusers() -> Result<()> {
    let all = cases()?;
    let mut pipes: HashMap<String, StableDiffusion> = HashMap::new();
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for case in all["cases"].as_array().context("cases")? {
        let name = case["name"].as_str().context("name")?;
        let pname = case["pipeline"].as_str().context("pipeline")?.to_string();
        if !pipes.contains_key(&pname) {
            pipes.insert(pname.clone(), StableDiffusion::load(&fixtures().join(&pname), &Device::Cpu, DType::F32)?);
        }
        let pipe = pipes.get_mut(&pname).context("pipeline")?;
        pipe.fast_decoder = match case["taesd"].as_str() {
            Some(t) => Some(TaesdDecoder::load(&fixtures().join(t), &Device::Cpu, DType::F32)?),
            None => None,
        };
        let req = request(case, &fixtures())?;
        let mut noise = ReplayNoise::new(draws(name)?, vec![]);
        let out = pipe.generate(&req, &mut noise, &mut NoProgress, &CancelToken::new()).with_context(|| name.to_string())?;
        let expected = Tensor::read_npy(fixtures().join(format!("expected/{name}.npy")))?;
        assert_eq!(out.pixels.dims(), expected.dims(), "{name}: shape");
        let diff = (out.pixels.clone() - &expected)?.abs()?.flatten_all()?.to_vec1::<f32>()?;
        let max = diff.iter().copied().fold(0f32, f32::max) * 255.0;
        let mean = diff.iter().sum::<f32>() / diff.len() as f32 * 255.0;
        println!("{name:24} max {max:.4}/255 mean {mean:.5}/255 ({} model calls, {} draws left)", out.denoise_steps, noise.remaining_normals());
        worst = worst.max(max);
        if max > 2.0 || noise.remaining_normals() != 0 {
            failures.push(format!("{name}: max {max:.3}/255, {} unused draws", noise.remaining_normals()));
        }
    }
    println!("worst max error: {worst:.4}/255");
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

#[test]
fn clip_tokenizer_matches_transformers() -> Result<()> {
    let all = cases()?;
    let eos = ClipTokenizer::from_dir(&fixtures().join("sd1-tiny/tokenizer"))?;
    let bang = ClipTokenizer::from_dir(&fixtures().join("sd2v-tiny/tokenizer"))?;
    for t in all["tokenizer"].as_array().context("tokenizer cases")? {
        let text = t["text"].as_str().context("text")?;
        let want = |k: &str| -> Vec<u32> { t[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
        assert_eq!(eos.encode(text)?, want("eos"), "{text:?} (pad = eos)");
        assert_eq!(bang.encode(text)?, want("bang"), "{text:?} (pad = !)");
    }
    for case in all["cases"].as_array().context("cases")? {
        let want: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let tok = ClipTokenizer::from_dir(&fixtures().join(case["pipeline"].as_str().unwrap()).join("tokenizer"))?;
        assert_eq!(tok.encode(case["prompt"].as_str().unwrap())?, want);
    }
    Ok(())
}

/// A single-file checkpoint (original LDM key names, written by the fixture script and
/// checked there with diffusers' own `from_single_file`) gives the same images as the
/// diffusers folder it was made from.
#[test]
fn single_file_checkpoints_equal_their_folders() -> Result<()> {
    let all = cases()?;
    for (pname, names) in [("sd1-tiny", ["sd1-euler", "sd1-img2img"]), ("sdxl-tiny", ["sdxl-euler", "sdxl-img2img"])] {
        let folder = StableDiffusion::load(&fixtures().join(pname), &Device::Cpu, DType::F32)?;
        let single = StableDiffusion::load_with_config(
            &fixtures().join(format!("{pname}.safetensors")),
            Some(&fixtures().join(pname)),
            &Device::Cpu,
            DType::F32,
        )?;
        for name in names {
            let case = all["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).context("case")?;
            let req = request(case, &fixtures())?;
            let a = folder.generate(&req, &mut ReplayNoise::new(draws(name)?, vec![]), &mut NoProgress, &CancelToken::new())?;
            let b = single.generate(&req, &mut ReplayNoise::new(draws(name)?, vec![]), &mut NoProgress, &CancelToken::new())?;
            let diff = (a.pixels - b.pixels)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            println!("{pname}: {name} single-file vs folder max difference {diff}");
            assert_eq!(diff, 0.0, "{name}");
        }
    }
    // the wrong architecture, or no config folder, is a clear error
    let err = StableDiffusion::load_with_config(&fixtures().join("sdxl-tiny.safetensors"), Some(&fixtures().join("sd1-tiny")), &Device::Cpu, DType::F32)
        .err()
        .context("SDXL checkpoint with an SD1 config must fail")?;
    assert!(err.to_string().contains("SDXL checkpoint"), "{err}");
    let err = StableDiffusion::load(&fixtures().join("sd1-tiny.safetensors"), &Device::Cpu, DType::F32).err().context("needs config")?;
    assert!(err.to_string().contains("--config"), "{err}");
    Ok(())
}

/// TAESD in the original madebyollin layout decodes exactly like the diffusers layout.
#[test]
fn taesd_layouts_agree() -> Result<()> {
    let a = TaesdDecoder::load(&fixtures().join("taesd-tiny"), &Device::Cpu, DType::F32)?;
    let b = TaesdDecoder::load(&fixtures().join("taesd-tiny-original"), &Device::Cpu, DType::F32)?;
    let latents = Tensor::randn(0f32, 1f32, (1, 4, 8, 8), &Device::Cpu)?;
    let (x, y) = (a.decode(&latents)?, b.decode(&latents)?);
    assert_eq!(x.dims(), &[1, 3, 16, 16]);
    assert_eq!((x - y)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?, 0.0);
    Ok(())
}
