//! `stipple image` reproduces diffusers' images from the same initial noise (`--latents`)
//! on the tiny fixture pipelines (image/tests/fixtures, made by
//! tools/make_image_fixtures.py), writes PNGs with A1111-compatible metadata, never
//! overwrites without `--overwrite`, and rejects bad input with clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Tensor;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("image/tests/fixtures")
}

fn stipple(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).output().expect("run stipple")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stipple-image-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn case(name: &str) -> Value {
    let all: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    all["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

/// The first noise draw of a case (the initial latents) as a .npy file.
fn latents_file(name: &str, dir: &Path) -> PathBuf {
    let mut arrays = Tensor::read_npz(fixtures().join(format!("noise/{name}.npz"))).unwrap();
    arrays.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join(format!("{name}.npy"));
    arrays[0].1.write_npy(&path).unwrap();
    path
}

fn max_error_255(png: &Path, expected: &Tensor) -> f32 {
    let img = image::open(png).unwrap().to_rgb8();
    let want = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    img.as_raw().iter().zip(&want).map(|(&got, &w)| (got as f32 - w * 255.0).abs()).fold(0f32, f32::max)
}

#[test]
fn cli_matches_diffusers_from_the_same_latents() {
    let dir = scratch("parity");
    // deterministic samplers (stochastic ones are checked through the library with replayed noise)
    for name in ["sd1-default", "sd1-euler", "sd1-dpmpp-karras", "sd1-unipc-rescale", "sd1-wide", "sd2v-ddim", "sdxl-euler", "sdxl-negative", "lcm-1", "turbo-1"] {
        let c = case(name);
        let out_png = dir.join(format!("{name}.png"));
        let latents = latents_file(name, &dir);
        let model = fixtures().join(c["pipeline"].as_str().unwrap());
        let mut args: Vec<String> = vec![
            "--json".into(), "image".into(),
            "--model".into(), model.to_string_lossy().into(),
            "--prompt".into(), c["prompt"].as_str().unwrap().into(),
            "--steps".into(), c["steps"].to_string(),
            "--guidance".into(), c["guidance"].to_string(),
            "--scheduler".into(), c["scheduler"].as_str().unwrap().into(),
            "--width".into(), c["width"].to_string(),
            "--height".into(), c["height"].to_string(),
            "--latents".into(), latents.to_string_lossy().into(),
            "--out".into(), out_png.to_string_lossy().into(),
        ];
        if let Some(n) = c["negative_prompt"].as_str().filter(|n| !n.is_empty()) {
            args.extend(["--negative-prompt".into(), n.into()]);
        }
        if c["guidance_rescale"].as_f64().unwrap_or(0.0) > 0.0 {
            args.extend(["--guidance-rescale".into(), c["guidance_rescale"].to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = stipple(&refs);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        for key in ["paths", "seed", "steps", "scheduler", "elapsed_ms", "seconds_per_step"] {
            assert!(v.get(key).is_some(), "{name}: no {key} in {v}");
        }
        assert_eq!(v["paths"][0].as_str().unwrap(), out_png.to_string_lossy());
        let expected = Tensor::read_npy(fixtures().join(format!("expected/{name}.npy"))).unwrap();
        let err = max_error_255(&out_png, &expected);
        assert!(err <= 2.0, "{name}: max error {err}/255");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defaults_come_from_the_model() {
    let dir = scratch("defaults");
    let run = |model: &str| -> Value {
        let out = stipple(&["--json", "--seed", "3", "image", "a red cat", "--model", &fixtures().join(model).to_string_lossy(), "--out", &dir.join(format!("{model}.png")).to_string_lossy()]);
        assert!(out.status.success(), "{model}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let sd1 = run("sd1-tiny");
    assert_eq!((sd1["scheduler"].as_str(), sd1["steps"].as_u64(), sd1["guidance"].as_f64()), (Some("pndm"), Some(30), Some(7.5)));
    assert_eq!((sd1["width"].as_u64(), sd1["height"].as_u64()), (Some(32), Some(32)), "native size from sample_size x vae factor");
    let turbo = run("sd-turbo-tiny");
    assert_eq!((turbo["scheduler"].as_str(), turbo["steps"].as_u64(), turbo["guidance"].as_f64()), (Some("euler"), Some(1), Some(0.0)));
    let xl = run("sdxl-tiny");
    assert_eq!(xl["scheduler"].as_str(), Some("euler"));
    let lcm = run("lcm-tiny");
    assert_eq!((lcm["scheduler"].as_str(), lcm["steps"].as_u64()), (Some("lcm"), Some(4)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn metadata_overwrite_and_batches() {
    let dir = scratch("meta");
    let model = fixtures().join("sd1-tiny");
    let model = model.to_string_lossy();
    let out_png = dir.join("cat.png");
    let out_s = out_png.to_string_lossy();
    let base = ["--json", "--seed", "11", "image", "--model", &model, "--prompt", "a red cat", "--negative-prompt", "blurry", "--steps", "3", "--scheduler", "euler-a"];
    let first = stipple(&[&base[..], &["--out", &out_s]].concat());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let chunks = stipple_image::metadata::read_text_chunks(&out_png).unwrap();
    let params = &chunks["parameters"];
    assert!(params.starts_with("a red cat\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7.5, Seed: 11, Size: 32x32"), "{params}");
    let json: Value = serde_json::from_str(&chunks["stipple"]).unwrap();
    assert_eq!(json["seed"], 11);
    let before = std::fs::read(&out_png).unwrap();

    // an existing file is kept, with a clear error
    let again = stipple(&[&base[..], &["--out", &out_s]].concat());
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
    assert_eq!(std::fs::read(&out_png).unwrap(), before);

    // same seed, same image; --overwrite and --no-metadata
    let same = stipple(&[&base[..], &["--out", &out_s, "--overwrite", "--no-metadata"]].concat());
    assert!(same.status.success());
    assert!(stipple_image::metadata::read_text_chunks(&out_png).unwrap().is_empty());
    assert_eq!(image::open(&out_png).unwrap().to_rgb8(), image::load_from_memory(&before).unwrap().to_rgb8());

    // batch x count: numbered files, consecutive seeds per run
    let many = stipple(&[&base[..], &["--out", &dir.join("many.png").to_string_lossy(), "--batch", "2", "--count", "2"]].concat());
    assert!(many.status.success(), "{}", String::from_utf8_lossy(&many.stderr));
    let v: Value = serde_json::from_slice(&many.stdout).unwrap();
    assert_eq!(v["paths"].as_array().unwrap().len(), 4);
    assert_eq!(v["seeds"], serde_json::json!([11, 11, 12, 12]));
    for i in 1..=4 {
        assert!(dir.join(format!("many-{i}.png")).is_file());
    }
    let leftovers = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp")).count();
    assert_eq!(leftovers, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = scratch("bad");
    let sd1 = fixtures().join("sd1-tiny");
    let sd1 = sd1.to_string_lossy();
    let inpaint = fixtures().join("sd1-inpaint-tiny");
    let inpaint = inpaint.to_string_lossy();
    let init = fixtures().join("init.png");
    let init = init.to_string_lossy();
    let single = fixtures().join("sd1-tiny.safetensors");
    let single = single.to_string_lossy();
    let bad_npy = dir.join("bad.npy");
    Tensor::zeros((1, 4, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().write_npy(&bad_npy).unwrap();
    let bad_npy = bad_npy.to_string_lossy();
    let out = dir.join("x.png");
    let out = out.to_string_lossy();
    let cases: &[(&[&str], &str)] = &[
        (&["image", "a cat", "--model", &sd1, "--width", "30", "--out", &out], "multiple of 8"),
        (&["image", "a cat", "--model", "/nonexistent/model", "--out", &out], "no such folder"),
        (&["image", "a cat", "--model", &sd1, "--init-image", "/nonexistent.png", "--out", &out], "nonexistent.png"),
        (&["image", "a cat", "--model", &sd1, "--init-image", &init, "--strength", "0.01", "--steps", "4", "--out", &out], "runs no denoising step"),
        (&["image", "a cat", "--model", &sd1, "--init-image", &init, "--strength", "1.5", "--out", &out], "strength"),
        (&["image", "a cat", "--model", &sd1, "--latents", &bad_npy, "--out", &out], "--latents has shape"),
        (&["image", "a cat", "--model", &sd1, "--scheduler", "euler-z", "--out", &out], "unknown sampler"),
        (&["image", "a cat", "--model", &sd1, "--steps", "0", "--out", &out], "steps (--steps) must be a whole number in [1, 1000], got 0"),
        (&["image", "a cat", "--model", &inpaint, "--out", &out], "inpainting model"),
        (&["image", "a cat", "--model", &sd1, "--guidance=-1", "--out", &out], "guidance (--guidance) must be in [0, 100], got -1"),
        (&["image", "--model", &sd1], "give a prompt"),
        (&["image", "a cat", "--model", &single, "--out", &out], "--config"),
        (&["--dtype", "bf16", "image", "a cat", "--model", &sd1, "--out", &out], "bf16"),
    ];
    for (args, needle) in cases {
        let o = stipple(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(o.status.code(), Some(2), "{args:?} should fail: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!dir.join("x.png").exists(), "nothing written on errors");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn single_file_checkpoint_gives_the_folder_image() {
    let dir = scratch("single");
    let args = |model: &str, out: &str, config: Option<&str>| {
        let mut a = vec!["--seed".to_string(), "9".into(), "image".into(), "a red cat".into(), "--steps".into(), "3".into(), "--model".into(), model.into(), "--out".into(), out.into()];
        if let Some(c) = config {
            a.extend(["--config".into(), c.into()]);
        }
        a
    };
    let folder = fixtures().join("sdxl-tiny");
    let file = fixtures().join("sdxl-tiny.safetensors");
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    for (model, out, config) in [(&folder, &a, None), (&file, &b, Some(folder.to_string_lossy().to_string()))] {
        let argv = args(&model.to_string_lossy(), &out.to_string_lossy(), config.as_deref());
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = stipple(&refs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(image::open(&a).unwrap().to_rgb8(), image::open(&b).unwrap().to_rgb8());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn img2img_inpaint_and_previews_run() {
    let dir = scratch("i2i");
    let init = fixtures().join("init.png");
    let mask = fixtures().join("mask.png");
    let preview = dir.join("preview.png");
    let out = dir.join("out.png");
    let o = stipple(&[
        "--json", "--seed", "5", "image", "a yellow sun",
        "--model", &fixtures().join("sd1-inpaint-tiny").to_string_lossy(),
        "--init-image", &init.to_string_lossy(), "--mask", &mask.to_string_lossy(),
        "--steps", "4", "--preview", &preview.to_string_lossy(), "--out", &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(preview.is_file() && out.is_file());
    // --keep-unmasked: the pixels the mask keeps are the init image's exactly
    let kept = dir.join("kept.png");
    let o = stipple(&[
        "--seed", "5", "image", "a yellow sun",
        "--model", &fixtures().join("sd1-tiny").to_string_lossy(),
        "--init-image", &init.to_string_lossy(), "--mask", &mask.to_string_lossy(), "--keep-unmasked",
        "--steps", "4", "--out", &kept.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (out_img, init_img) = (image::open(&kept).unwrap().to_rgb8(), image::open(&init).unwrap().to_rgb8());
    let m = image::imageops::resize(&image::open(&mask).unwrap().to_luma8(), out_img.width(), out_img.height(), image::imageops::FilterType::Lanczos3);
    let init_img = image::imageops::resize(&init_img, out_img.width(), out_img.height(), image::imageops::FilterType::Lanczos3);
    let keep: Vec<_> = m.enumerate_pixels().filter(|(_, _, p)| p.0[0] < 128).map(|(x, y, _)| (x, y)).collect();
    assert!(!keep.is_empty());
    for (x, y) in keep {
        assert_eq!(out_img.get_pixel(x, y), init_img.get_pixel(x, y), "kept pixel ({x}, {y}) changed");
    }
    // a 4-channel model keeps the unmasked region close to the original
    let out2 = dir.join("out2.png");
    let o = stipple(&[
        "--seed", "5", "image", "a yellow sun",
        "--model", &fixtures().join("sd1-tiny").to_string_lossy(),
        "--init-image", &init.to_string_lossy(), "--strength", "0.5", "--steps", "4", "--out", &out2.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let chunks = stipple_image::metadata::read_text_chunks(&out2).unwrap();
    assert!(chunks["parameters"].contains("Denoising strength: 0.5"), "{}", chunks["parameters"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
