//! The image networks train through the same code that infers: built from a `VarMap`
//! (trainable variables), the fused kernels hand over to their differentiable twins.
//! For the tiny SD1 fixture's UNet, VAE and CLIP text encoder this checks that the
//! trainable build gives the inference outputs with the same weights, and that **every**
//! parameter receives a non-zero, finite gradient (a fused op without a backward pass, or
//! a weight copied at construction, would leave some at none).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use stipple_image::models::clip::{ClipTextConfig, ClipTextModel};
use stipple_image::models::unet::{UNet2DConditionModel, UNetConditioning, UNetConfig};
use stipple_image::models::vae::{AutoencoderKL, VaeConfig};

fn fixture(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd1-tiny").join(part)
}

fn config<T: serde::de::DeserializeOwned>(part: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(fixture(part).join("config.json")).unwrap()).unwrap()
}

fn weights(part: &str) -> PathBuf {
    let dir = fixture(part);
    ["diffusion_pytorch_model.safetensors", "model.safetensors"].iter().map(|f| dir.join(f)).find(|p| p.is_file()).unwrap()
}

/// A model built twice from the fixture's weights: read-only (inference) and as variables.
fn both<M>(part: &str, build: impl Fn(VarBuilder) -> candle_core::Result<M>) -> (M, M, VarMap) {
    let dev = Device::Cpu;
    let fixed = build(unsafe { VarBuilder::from_mmaped_safetensors(&[weights(part)], DType::F32, &dev).unwrap() }).unwrap();
    let mut varmap = VarMap::new();
    let trained = build(VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    // the variables start at the builder's default; load the fixture's values into them
    varmap.load(weights(part)).unwrap();
    (fixed, trained, varmap)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Backpropagates `sum(out * r)` for a fixed random `r` and checks every variable.
fn every_variable_gets_a_gradient(out: &Tensor, varmap: &VarMap, what: &str) {
    let r = Tensor::randn(0f32, 1.0, out.shape(), out.device()).unwrap();
    let grads = (out * r).unwrap().sum_all().unwrap().backward().unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    assert!(vars.len() > 10, "{what}: only {} variables", vars.len());
    for (name, var) in vars {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{what}: {name} gets no gradient"));
        let size = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(size > 0.0 && size.is_finite(), "{what}: {name} gradient {size}");
    }
}

#[test]
fn unet_trains_through_the_inference_code() {
    let cfg: UNetConfig = config("unet");
    let (fixed, trained, varmap) = both("unet", |vb| UNet2DConditionModel::new(&cfg, vb));
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 4, 16, 16), &dev).unwrap();
    let ctx = Tensor::randn(0f32, 1.0, (2, 77, 16), &dev).unwrap();
    let cond = UNetConditioning { context: &ctx, text_embeds: None, time_ids: None, timestep_cond: None };
    let want = Tensor::cat(&[fixed.forward(&x.narrow(0, 0, 1).unwrap(), 10.0, &cond_row(&ctx, 0)).unwrap(), fixed.forward(&x.narrow(0, 1, 1).unwrap(), 700.0, &cond_row(&ctx, 1)).unwrap()], 0).unwrap();
    let got = trained.forward_timesteps(&x, &[10.0, 700.0], &cond).unwrap();
    assert!(max_diff(&got, &want) < 1e-4, "{}", max_diff(&got, &want));
    every_variable_gets_a_gradient(&got, &varmap, "unet");
}

fn cond_row(ctx: &Tensor, i: usize) -> UNetConditioning<'static> {
    let row: &'static Tensor = Box::leak(Box::new(ctx.narrow(0, i, 1).unwrap()));
    UNetConditioning { context: row, text_embeds: None, time_ids: None, timestep_cond: None }
}

#[test]
fn vae_trains_through_the_inference_code() {
    let cfg: VaeConfig = config("vae");
    let (fixed, trained, varmap) = both("vae", |vb| AutoencoderKL::new(&cfg, vb));
    let img = Tensor::randn(0f32, 0.5, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let (want, got) = (fixed.encode(&img).unwrap(), trained.encode(&img).unwrap());
    assert!(max_diff(&got.mean, &want.mean) < 1e-4);
    let rec = trained.decode(&got.sample(&got.mean.randn_like(0.0, 1.0).unwrap()).unwrap()).unwrap();
    assert!(max_diff(&fixed.decode(&want.mean).unwrap(), &trained.decode(&got.mean).unwrap()) < 1e-4);
    every_variable_gets_a_gradient(&rec, &varmap, "vae");
}

#[test]
fn text_encoder_trains_through_the_inference_code() {
    let cfg = ClipTextConfig::from_value(serde_json::from_str(&std::fs::read_to_string(fixture("text_encoder").join("config.json")).unwrap()).unwrap()).unwrap();
    let (fixed, trained, varmap) = both("text_encoder", |vb| ClipTextModel::new(&cfg, vb));
    let eos = cfg.eos_token_id;
    let ids = vec![vec![0u32, 5, 9, eos, eos, eos], vec![0u32, 7, 3, 11, 12, eos]];
    let (want, got) = (fixed.forward(&ids, &Device::Cpu).unwrap(), trained.forward(&ids, &Device::Cpu).unwrap());
    assert!(max_diff(&got.last_hidden, &want.last_hidden) < 1e-4);
    // every token's final state feeds the UNet's cross-attention
    let used = Tensor::cat(&[got.last_hidden.flatten_all().unwrap(), got.pooled.flatten_all().unwrap()], 0).unwrap();
    every_variable_gets_a_gradient(&used, &varmap, "text encoder");
}
