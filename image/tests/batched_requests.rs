//! Requests made together as one batch (per-image prompts, per-image noise sources) give
//! every image what its own run gives, up to float rounding: matrix products over a batch
//! are blocked differently from one image's, so a pixel can round the other way (which is
//! why `stipple batch` fixes its groups from the job file, so that a resumed or sharded
//! batch makes the same groups and the same bytes).

use std::path::Path;

use candle_core::{DType, Device};
use stipple_core::noise::{PerSample, PortableRng};
use stipple_core::progress::{CancelToken, NoProgress};
use stipple_image::{ImageRequest, StableDiffusion};

#[test]
fn a_batch_of_prompts_and_seeds_equals_its_runs_alone() {
    let prompts = ["a red heart", "a smiling fox face", "a green tree"];
    let seeds = [3u64, 11, 12];
    for (fixture, sampler) in [("sd1-tiny", None), ("sd1-tiny", Some("euler-a")), ("sdxl-tiny", Some("dpm++2m-sde"))] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
        let pipe = StableDiffusion::load(&dir, &Device::Cpu, DType::F32).unwrap();
        let base = ImageRequest { steps: Some(4), guidance: Some(5.0), sampler: sampler.map(|s| s.parse().unwrap()), negative_prompt: Some("blurry".into()), ..ImageRequest::default() };
        let together = ImageRequest { prompt: prompts[0].into(), batch: 3, batch_prompts: prompts.map(String::from).to_vec(), ..base.clone() };
        let mut noise = PerSample { sources: seeds.map(PortableRng::new).to_vec() };
        let batch = pipe.generate(&together, &mut noise, &mut NoProgress, &CancelToken::new()).unwrap();
        assert_eq!(batch.images.len(), 3);
        for (i, (prompt, seed)) in prompts.iter().zip(seeds).enumerate() {
            let alone = ImageRequest { prompt: prompt.to_string(), ..base.clone() };
            let one = pipe.generate(&alone, &mut PortableRng::new(seed), &mut NoProgress, &CancelToken::new()).unwrap();
            let (a, b): (Vec<f32>, Vec<f32>) = (
                batch.pixels.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap(),
                one.pixels.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap(),
            );
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{fixture} {sampler:?} image {i}: differs from its own run by up to {worst}");
            let bytes = batch.images[i].as_raw().iter().zip(one.images[0].as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
            assert!(bytes <= 1, "{fixture} {sampler:?} image {i}: {bytes}/255 from its own run");
        }
        // the images differ from each other: the prompts and seeds reached their rows
        assert_ne!(batch.images[0], batch.images[1]);
    }
    // one prompt per image, or none
    let bad = ImageRequest { prompt: "x".into(), batch: 2, batch_prompts: vec!["x".into()], ..ImageRequest::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("1 per-image prompts for a batch of 2"));
}
