//! The infilling API on the tiny fixtures: pinned spans never change, every constrained
//! hole satisfies its constraint, length ranges are honoured, impossible constraints are
//! refused before decoding, and results are deterministic for a seed.

use std::path::Path;

use candle_core::{DType, Device};
use regex_automata::meta::Regex;
use stipple_text::TextModel;
use stipple_text::infill::{Hole, InfillOptions, Template, infill};

fn model(name: &str) -> TextModel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    TextModel::load(p.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

fn full_match(re: &str, text: &str) -> bool {
    Regex::new(&format!("^(?:{re})$")).unwrap().is_match(text)
}

fn sampled(seed: u64) -> InfillOptions {
    let mut o = InfillOptions::default();
    o.decode.temperature = 1.0;
    o.decode.seed = seed;
    o
}

#[test]
fn constraints_hold_and_spans_stay_pinned() {
    for name in ["llada-tiny", "dream-tiny"] {
        let m = model(name);
        let t = Template::parse("The [1 {cat,dog,bird}] sat on the [1..3]. In [2..4 /(19|20)[0-9]{2}/] she wrote [3 chars:[a-z]] letters.").unwrap();
        for seed in 0..4 {
            let opts = if seed == 0 { InfillOptions::default() } else { sampled(seed) };
            let out = infill(&m, &t, &opts, None).unwrap();
            let h = &out.holes;
            assert!(["cat", "dog", "bird"].contains(&h[0].text.as_str()), "{name}/{seed}: {:?}", h[0].text);
            assert!((1..=3).contains(&h[1].ids.len()), "{name}/{seed}: {:?}", h[1]);
            assert!(full_match("(19|20)[0-9]{2}", &h[2].text), "{name}/{seed}: {:?}", h[2].text);
            assert!((2..=4).contains(&h[2].ids.len()));
            assert_eq!(h[3].ids.len(), 3);
            assert!(full_match("[a-z]*", &h[3].text), "{name}/{seed}: {:?}", h[3].text);
            // the fixed text survives verbatim around the holes
            let expect = format!(
                "The {} sat on the {}. In {} she wrote {} letters.",
                h[0].text, h[1].text, h[2].text, h[3].text
            );
            assert_eq!(out.text, expect, "{name}/{seed}");
            assert_eq!(h[0].confidences.len(), h[0].ids.len());
        }
    }
}

#[test]
fn pinned_ids_never_change() {
    let m = model("llada-tiny");
    let t = Template::new().text("A small bird").hole(Hole::new(5)).text(" in the morning").hole(Hole::range(0, 4)).text(" light.");
    let out = infill(&m, &t, &sampled(7), None).unwrap();
    let bos = m.tokenizer.encode("", true).unwrap();
    let mut fixed = bos.clone();
    fixed.extend(m.tokenizer.encode("A small bird", false).unwrap());
    assert_eq!(&out.ids[..fixed.len()], fixed.as_slice());
    let mid = m.tokenizer.encode(" in the morning", false).unwrap();
    let at = fixed.len() + 5;
    assert_eq!(&out.ids[at..at + mid.len()], mid.as_slice());
    let tail = m.tokenizer.encode(" light.", false).unwrap();
    assert_eq!(&out.ids[out.ids.len() - tail.len()..], tail.as_slice());
    assert!(out.holes[1].ids.len() <= 4);
}

#[test]
fn deterministic_for_a_seed() {
    let m = model("llada-tiny");
    let t = Template::parse("The [3] ran after the [2..4] in the park.").unwrap();
    let a = infill(&m, &t, &sampled(11), None).unwrap();
    let b = infill(&m, &t, &sampled(11), None).unwrap();
    assert_eq!(a.ids, b.ids);
    let differs = (12..20).any(|s| infill(&m, &t, &sampled(s), None).unwrap().ids != a.ids);
    assert!(differs, "the seed has no effect");
}

#[test]
fn impossible_constraints_fail_before_decoding() {
    let m = model("llada-tiny");
    for (tpl, needle) in [
        ("Year [1 /[0-9]{30}/].", "can never be filled"),
        ("Pet [2 {hippopotamus}].", "can never be filled"),
        ("Bad [2 /(unclosed/].", "regular expression"),
        ("No holes at all.", "no holes"),
    ] {
        let err = Template::parse(tpl).and_then(|t| infill(&m, &t, &InfillOptions::default(), None));
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(needle), "{tpl}: {msg}");
    }
}

#[test]
fn oversized_holes_are_refused_quickly() {
    let m = model("llada-tiny");
    for tpl in ["x [100000] y", "x [250..300] y"] {
        let t = std::time::Instant::now();
        // beyond any canvas (65536 positions) the template itself is refused
        let err = match Template::parse(tpl) {
            Ok(t) => infill(&m, &t, &InfillOptions::default(), None).unwrap_err(),
            Err(e) => e,
        };
        assert!(err.to_string().contains("positions") || err.to_string().contains("too large"), "{tpl}: {err}");
        assert!(t.elapsed().as_secs() < 5);
    }
}
