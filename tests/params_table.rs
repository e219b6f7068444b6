//! The parameter tables (`stipple_core::params`): every range probed just inside and just
//! outside through the request types' `validate`, every rule broken once, the generated
//! `docs/parameters.md` up to date, and the CLI refusing with the table's message before
//! it loads anything.

use std::process::Command;

#[test]
fn every_parameter_is_probed_just_inside_and_just_outside() {
    let mut probes = 0;
    for table in stipple::parameters::tables() {
        for r in table.walk() {
            probes += 1;
            match (&r.outcome, r.inside) {
                (Ok(()), true) => {}
                (Err(e), false) => {
                    // a range failure names the parameter
                    let msg = e.to_string();
                    assert!(r.rule || msg.contains(&format!(": {} ", r.what)), "{}: {} = {}: {msg}", table.commands(), r.what, r.value);
                }
                (outcome, inside) => panic!("{}: {} = {} (inside: {inside}) gave {outcome:?}", table.commands(), r.what, r.value),
            }
        }
    }
    eprintln!("{probes} probes");
    assert!(probes > 100, "only {probes} probes");
}

#[test]
fn docs_parameters_md_is_generated_from_the_tables() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/parameters.md");
    let written = std::fs::read_to_string(path).expect("docs/parameters.md");
    assert!(written == stipple::parameters::markdown(), "docs/parameters.md is stale: run `cargo run -- params > docs/parameters.md`");
}

fn refused(args: &[&str], message: &str) {
    let dir = std::env::temp_dir().join(format!("stipple-params-{}-{}", std::process::id(), args[0]));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).current_dir(&dir).output().expect("run stipple");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(err.contains(message), "{args:?}: {err}");
    // refused before any work: nothing written, no progress bar drawn
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{args:?} wrote files");
    assert!(!err.contains("loading"), "{args:?} loaded a model first: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cli_refuses_with_the_tables_message_before_loading() {
    refused(&["text", "hi", "--top-p", "2"], "top_p (--top-p) must be in (0, 1], got 2");
    refused(&["text", "hi", "--gen-len", "10", "--block-len", "3", "--model", "/nonexistent"], "gen_len 10 must be a multiple of block_len 3");
    refused(&["infill", "--template", "a [2] b", "--threshold", "1.5"], "threshold (--threshold) must be in [0, 1], got 1.5");
    refused(&["image", "x", "--width", "4104", "--guidance-rescale", "2"], "guidance_rescale (--guidance-rescale) must be in [0, 1], got 2");
    refused(&["image", "x", "--width", "100"], "width (--width) must be a multiple of 8, got 100");
    refused(&["image", "x", "--width", "16384"], "width (--width) must be a whole number in [8, 8192], got 16384");
    refused(&["image", "x", "--count", "0"], "count (--count) must be a whole number in [1, 10000], got 0");
    refused(&["audio", "x", "--seconds", "1e9"], "seconds (--seconds) must be in (0, 600], got 1000000000");
    refused(&["audio", "x", "--strength", "0"], "strength (--strength) must be in (0, 1], got 0");
}
