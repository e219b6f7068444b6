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
        latents: None,
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
        let pipe = &pipes[&pname];
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
