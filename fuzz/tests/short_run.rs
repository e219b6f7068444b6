//! The short fuzz run of `cargo test`: every target for [`stipple_fuzz::DEFAULT_EXECS`]
//! inputs (or `STIPPLE_FUZZ_SECONDS` / `STIPPLE_FUZZ_EXECS`; `tools/fuzz.sh` runs the long
//! ones). Any panic or hang fails the test with the saved input.

use stipple_fuzz::targets;

fn check(target: &stipple_fuzz::Target) {
    let r = stipple_fuzz::fuzz(target);
    eprintln!("fuzz {}: {} inputs in {:.1} s, {} distinct errors, {} findings", r.target, r.execs, r.seconds, r.distinct_errors, r.findings.len());
    assert!(r.findings.is_empty(), "{}: {:#?}", r.target, r.findings);
}

macro_rules! fuzz_tests {
    ($($name:ident => $target:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(&targets::$target);
            }
        )*

        /// Every target in `targets::ALL` has a test here.
        #[test]
        fn every_target_has_a_test() {
            let tested = [$(targets::$target.name),*];
            for t in targets::ALL {
                assert!(tested.contains(&t.name), "{} has no test", t.name);
            }
        }
    };
}

fuzz_tests! {
    safetensors => SAFETENSORS,
    shard_index => SHARD_INDEX,
    text_config => TEXT_CONFIG,
    image_config => IMAGE_CONFIG,
    spectrogram_params => SPECTROGRAM_PARAMS,
    tokenizer_json => TOKENIZER_JSON,
    bpe_files => BPE_FILES,
    chat_template => CHAT_TEMPLATE,
    infill_template => INFILL_TEMPLATE,
    wav => WAV,
    png_metadata => PNG_METADATA,
    spectrogram_png => SPECTROGRAM_PNG,
    gguf => GGUF,
    npy => NPY,
}
