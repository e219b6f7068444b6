//! Parity of `stipple_core::discrete` with the reference Python samplers (LLaDA
//! `generate.py`, Fast-dLLM `get_transfer_index`, Dream `_sample` / `sample_tokens`),
//! on goldens recorded by `tools/make_discrete_goldens.py` with a toy model that this
//! file recomputes bit for bit. Every canvas after every step must match exactly.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde_json::Value;
use stipple_core::discrete::schedule::{
    dream_count, dream_timesteps, dream_transfer_probability, llada_counts, semi_ar_blocks,
};
use stipple_core::discrete::{Accumulate, Commit, Policy, Remasking, sampling, step};
use stipple_core::noise::{NoiseSource, ReplayNoise};
use stipple_kernels::confidence::row_stats;

fn load(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/discrete")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| f32::from_bits(x.as_u64().unwrap() as u32))
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| f64::from_bits(x.as_u64().unwrap()))
        .collect()
}

fn toks(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// The toy model: `logits[b, j] = (base[j] + E[x[j-1]]) + E2[x[j+1]]`, boundary id = V.
struct Toy {
    v: usize,
    mask: u32,
    base: Vec<f32>,
    e: Vec<f32>,
    e2: Vec<f32>,
}

impl Toy {
    fn load() -> Self {
        let m = load("toy_model.json");
        Toy {
            v: m["vocab"].as_u64().unwrap() as usize,
            mask: m["mask_id"].as_u64().unwrap() as u32,
            base: f32s(&m["base_bits"]),
            e: f32s(&m["e_bits"]),
            e2: f32s(&m["e2_bits"]),
        }
    }

    fn row_logits(&self, x: &[u32]) -> Vec<f32> {
        let (l, v) = (x.len(), self.v);
        let mut out = Vec::with_capacity(l * v);
        for j in 0..l {
            let left = if j == 0 { v } else { x[j - 1] as usize };
            let right = if j + 1 == l { v } else { x[j + 1] as usize };
            for t in 0..v {
                out.push((self.base[j * v + t] + self.e[left * v + t]) + self.e2[right * v + t]);
            }
        }
        out
    }

    /// `[B, L, V]` logits; `cfg` combines with the prompt-masked input as LLaDA does.
    fn logits(&self, x: &[Vec<u32>], cfg: Option<(f32, usize)>, dream_shift: bool) -> Tensor {
        let (b, l) = (x.len(), x[0].len());
        let mut all = Vec::with_capacity(b * l * self.v);
        for row in x {
            let mut lg = self.row_logits(row);
            if let Some((scale, prompt_len)) = cfg {
                let un_x = stipple_core::discrete::mask_prompt(row, 0..prompt_len, self.mask);
                let un = self.row_logits(&un_x);
                let s = scale + 1.0;
                for (c, u) in lg.iter_mut().zip(un) {
                    *c = u + s * (*c - u);
                }
            }
            if dream_shift {
                // Dream predicts position j from the output at j - 1
                let v = self.v;
                let mut sh = lg[..v].to_vec();
                sh.extend_from_slice(&lg[..(l - 1) * v]);
                lg = sh;
            }
            all.extend(lg);
        }
        Tensor::from_vec(all, (b, l, self.v), &Device::Cpu).unwrap()
    }
}

/// Replays recorded uniforms and counts how many were used.
struct Counted {
    inner: ReplayNoise,
    total: usize,
    used: usize,
}

impl Counted {
    fn new(uniforms: Vec<f64>) -> Self {
        Counted {
            total: uniforms.len(),
            inner: ReplayNoise::new(vec![], uniforms),
            used: 0,
        }
    }

    fn uniform_left(&self) -> usize {
        self.total - self.used
    }
}

impl NoiseSource for Counted {
    fn randn_like(&mut self, like: &Tensor) -> stipple_core::Result<Tensor> {
        self.inner.randn_like(like)
    }

    fn uniform(&mut self) -> f64 {
        self.used += 1;
        self.inner.uniform()
    }
}

/// The fields every semi-autoregressive (LLaDA-style) case records.
struct Blocked<'a> {
    name: &'a str,
    prompt: Vec<Vec<u32>>,
    /// Prompt length.
    p: usize,
    gen_len: usize,
    block_len: usize,
    steps: usize,
    /// The canvas before every model call.
    history: Vec<Vec<Vec<u32>>>,
}

impl<'a> Blocked<'a> {
    fn of(case: &'a Value) -> Self {
        let prompt = toks(&case["prompt"]);
        let n = |k: &str| case[k].as_u64().unwrap() as usize;
        Self {
            name: case["name"].as_str().unwrap(),
            p: prompt[0].len(),
            prompt,
            gen_len: n("gen_length"),
            block_len: n("block_length"),
            steps: n("steps"),
            history: case["history"].as_array().unwrap().iter().map(toks).collect(),
        }
    }
}

fn canvas(prompt: &[Vec<u32>], gen_len: usize, mask: u32) -> Vec<Vec<u32>> {
    prompt
        .iter()
        .map(|p| {
            p.iter()
                .copied()
                .chain(std::iter::repeat_n(mask, gen_len))
                .collect()
        })
        .collect()
}

#[test]
fn llada_generate_parity() {
    let toy = Toy::load();
    for case in load("llada.json").as_array().unwrap() {
        let Blocked { name, prompt, p, gen_len, block_len, steps, history } = Blocked::of(case);
        let temperature = case["temperature"].as_f64().unwrap();
        let cfg = case["cfg_scale"].as_f64().unwrap();
        let remasking = match case["remasking"].as_str().unwrap() {
            "low_confidence" => Remasking::LowConfidence,
            "random" => Remasking::Random,
            r => panic!("{r}"),
        };
        let mut policy = Policy::llada(temperature, remasking);
        policy.at_least_one = false; // LLaDA commits nothing on a zero-count step
        let mut noise = Counted::new(f64s(&case["uniforms"]));
        let mut x = canvas(&prompt, gen_len, toy.mask);
        let mut call = 0;
        for block in semi_ar_blocks(p, gen_len, block_len, steps).unwrap() {
            let counts: Vec<Vec<usize>> = x
                .iter()
                .map(|r| {
                    llada_counts(
                        r[block.range()].iter().filter(|&&t| t == toy.mask).count(),
                        block.steps,
                    )
                    .unwrap()
                })
                .collect();
            for i in 0..block.steps {
                assert_eq!(x, history[call], "{name}: canvas before model call {call}");
                call += 1;
                let cfg_arg = (cfg > 0.0).then_some((cfg as f32, p));
                let logits = toy.logits(&x, cfg_arg, false);
                let k: Vec<usize> = counts.iter().map(|c| c[i]).collect();
                let rep = step(
                    &logits,
                    &mut x,
                    toy.mask,
                    block.llada_window(),
                    &policy,
                    &k,
                    &mut noise,
                )
                .unwrap();
                for (r, kk) in rep.iter().zip(&k) {
                    assert_eq!(r.committed.len(), *kk, "{name}: step {call}");
                    assert!(
                        r.committed
                            .windows(2)
                            .all(|w| w[0].confidence >= w[1].confidence)
                    );
                }
            }
        }
        assert_eq!(call, history.len(), "{name}: model calls");
        assert_eq!(x, toks(&case["final"]), "{name}: final canvas");
        let left = noise.uniform_left();
        assert_eq!(left, 0, "{name}: {left} recorded uniforms unused");
    }
}

#[test]
fn fast_dllm_threshold_parity() {
    let toy = Toy::load();
    for case in load("fastdllm.json").as_array().unwrap() {
        let Blocked { name, prompt, p, gen_len, block_len, steps, history } = Blocked::of(case);
        let policy = Policy::fast_dllm_threshold(0.0, case["threshold"].as_f64().unwrap());
        let mut noise = Counted::new(f64s(&case["uniforms"]));
        let mut x = canvas(&prompt, gen_len, toy.mask);
        let mut nfe = 0;
        for block in semi_ar_blocks(p, gen_len, block_len, steps).unwrap() {
            loop {
                assert_eq!(x, history[nfe], "{name}: canvas before model call {nfe}");
                nfe += 1;
                let logits = toy.logits(&x, None, false);
                let rep = step(
                    &logits,
                    &mut x,
                    toy.mask,
                    block.llada_window(),
                    &policy,
                    &[],
                    &mut noise,
                )
                .unwrap();
                assert!(!rep[0].committed.is_empty());
                if x[0][block.range()].iter().all(|&t| t != toy.mask) {
                    break;
                }
            }
        }
        assert_eq!(nfe as u64, case["nfe"].as_u64().unwrap(), "{name}: nfe");
        assert_eq!(x, toks(&case["final"]), "{name}: final canvas");
    }
}

#[test]
fn dream_sample_parity() {
    let toy = Toy::load();
    for case in load("dream.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = toks(&case["prompt"]);
        let gen_len = case["gen_length"].as_u64().unwrap() as usize;
        let steps = case["steps"].as_u64().unwrap() as usize;
        let eps = case["eps"].as_f64().unwrap();
        let temperature = case["temperature"].as_f64().unwrap();
        let top_p = case["top_p"].as_f64();
        let top_k = case["top_k"].as_u64().map(|k| k as usize);
        let alg_temp = case["alg_temp"].as_f64();
        let alg = case["alg"].as_str().unwrap();
        let mut noise = Counted::new(f64s(&case["uniforms"]));
        let history: Vec<Vec<Vec<u32>>> = case["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(toks)
            .collect();
        let mut x = canvas(&prompt, gen_len, toy.mask);
        let l = x[0].len();
        assert_eq!(history.len(), steps, "{name}: one canvas per step");
        for (i, want) in history.iter().enumerate().take(steps) {
            let logits = toy.logits(&x, None, true);
            let n_masked = x[0].iter().filter(|&&t| t == toy.mask).count();
            let mut policy = match alg {
                "origin" => Policy::dream_origin(
                    dream_transfer_probability(i, steps, eps),
                    temperature,
                    top_p,
                    top_k,
                ),
                "maskgit_plus" => Policy::dream(
                    Remasking::LowConfidence,
                    temperature,
                    top_p,
                    top_k,
                    alg_temp,
                ),
                "topk_margin" => {
                    Policy::dream(Remasking::Margin, temperature, top_p, top_k, alg_temp)
                }
                "entropy" => Policy::dream(Remasking::Entropy, temperature, top_p, top_k, alg_temp),
                a => panic!("{a}"),
            };
            policy.at_least_one = false; // Dream skips zero-count steps
            let k = dream_count(n_masked, i, steps, eps);
            step(&logits, &mut x, toy.mask, 0..l, &policy, &[k], &mut noise).unwrap();
            assert_eq!(&x, want, "{name}: canvas after step {i}");
        }
        assert_eq!(x, toks(&case["final"]), "{name}: final canvas");
        let left = noise.uniform_left();
        assert_eq!(left, 0, "{name}: {left} recorded uniforms unused");
    }
}

#[test]
fn dream_filters_and_sample_tokens_parity() {
    let f = load("filters.json");
    let (rows, v) = (
        f["rows"].as_u64().unwrap() as usize,
        f["vocab"].as_u64().unwrap() as usize,
    );
    let logits = f32s(&f["logits_bits"]);
    for case in f["cases"].as_array().unwrap() {
        let top_p = case["top_p"].as_f64();
        let top_k = case["top_k"].as_u64().map(|k| k as usize);
        let t = case["temperature"].as_f64().unwrap();
        let want = f32s(&case["filtered_bits"]);
        for r in 0..rows {
            let got = sampling::dream_logits(&logits[r * v..(r + 1) * v], t, top_p, top_k).unwrap();
            for (j, (g, w)) in got.iter().zip(&want[r * v..(r + 1) * v]).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{case}: row {r} col {j}: {g} vs {w}"
                );
            }
            if t == 0.0 {
                let st = row_stats(&got, Accumulate::F32);
                for (key, kind) in [
                    ("maskgit_plus", Remasking::LowConfidence),
                    ("topk_margin", Remasking::Margin),
                    ("entropy", Remasking::Entropy),
                ] {
                    let tok = case[key]["token"][r].as_u64().unwrap() as u32;
                    let conf = case[key]["confidence"][r].as_f64().unwrap();
                    assert_eq!(st.argmax, tok, "{key} token row {r}");
                    let c = stipple_core::discrete::confidence::from_stats(
                        kind,
                        &st,
                        tok,
                        got[tok as usize],
                        Accumulate::F32,
                    );
                    // entropy: Dream adds 1e-10 inside the log (<= V * 1e-10 apart)
                    let tol = if kind == Remasking::Entropy {
                        1e-6 + v as f64 * 1e-10
                    } else {
                        1e-6
                    };
                    assert!((c - conf).abs() <= tol, "{key} row {r}: {c} vs {conf}");
                }
            }
        }
    }
}

#[test]
fn commit_count_tables() {
    let c = load("counts.json");
    for row in c["llada"].as_array().unwrap() {
        let (n, steps) = (
            row["n"].as_u64().unwrap() as usize,
            row["steps"].as_u64().unwrap() as usize,
        );
        let want: Vec<usize> = row["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            llada_counts(n, steps).unwrap(),
            want,
            "llada n={n} steps={steps}"
        );
    }
    for row in c["linspace"].as_array().unwrap() {
        let (steps, eps) = (
            row["steps"].as_u64().unwrap() as usize,
            row["eps"].as_f64().unwrap(),
        );
        let got: Vec<u32> = dream_timesteps(steps, eps)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let want: Vec<u32> = row["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(got, want, "linspace steps={steps} eps={eps}");
    }
    for row in c["dream"].as_array().unwrap() {
        let (n, steps) = (
            row["n"].as_u64().unwrap() as usize,
            row["steps"].as_u64().unwrap() as usize,
        );
        let eps = row["eps"].as_f64().unwrap();
        let want: Vec<usize> = row["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let mut left = n;
        let got: Vec<usize> = (0..steps)
            .map(|i| {
                let k = dream_count(left, i, steps, eps);
                left -= k;
                k
            })
            .collect();
        assert_eq!(got, want, "dream n={n} steps={steps}");
    }
}

#[test]
fn policy_rejects_bad_input() {
    let toy = Toy::load();
    let mut x = vec![vec![toy.mask; 4]];
    let logits = toy.logits(&x, None, false);
    let mut noise = ReplayNoise::new(vec![], vec![]);
    let p = Policy::llada(0.0, Remasking::LowConfidence);
    // window outside the canvas, missing counts
    assert!(step(&logits, &mut x, toy.mask, 0..5, &p, &[1], &mut noise).is_err());
    assert!(step(&logits, &mut x, toy.mask, 0..4, &p, &[], &mut noise).is_err());
    let mut bad = p;
    bad.token.top_k = Some(3);
    assert!(step(&logits, &mut x, toy.mask, 0..4, &bad, &[1], &mut noise).is_err());
    let mut bad = p;
    bad.commit = Commit::SampledTopK { alg_temp: 0.0 };
    assert!(step(&logits, &mut x, toy.mask, 0..4, &bad, &[1], &mut noise).is_err());
    // at_least_one turns a zero count into one commit
    let rep = step(&logits, &mut x, toy.mask, 0..4, &p, &[0], &mut noise).unwrap();
    assert_eq!(rep[0].committed.len(), 1);
    assert_eq!(rep[0].candidates.len(), 4);
}
