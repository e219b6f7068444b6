//! The fuzzed entry points: each writes the bytes where stipple would read them (a weights
//! file, a model folder's config, a tokenizer, a WAV or PNG file) and calls the loader a
//! user's command reaches. [`ALL`] lists them; `stipple batch` lines are fuzzed in the
//! binary's own tests (`src/cli/batch.rs`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::{Target, root};

/// Every target.
pub const ALL: &[Target] = &[
    SAFETENSORS,
    SHARD_INDEX,
    TEXT_CONFIG,
    IMAGE_CONFIG,
    SPECTROGRAM_PARAMS,
    TOKENIZER_JSON,
    BPE_FILES,
    CHAT_TEMPLATE,
    INFILL_TEMPLATE,
    WAV,
    PNG_METADATA,
    SPECTROGRAM_PNG,
    GGUF,
    NPY,
];

/// A folder of this thread's own under `target/fuzz-scratch`, emptied of nothing: targets
/// overwrite the files they use.
fn scratch(name: &str) -> PathBuf {
    let id = format!("{:?}", std::thread::current().id()).chars().filter(char::is_ascii_digit).collect::<String>();
    let dir = root().join("target/fuzz-scratch").join(format!("{}-{id}", std::process::id())).join(name);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn write(path: &Path, data: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, data).map_err(|e| e.to_string())
}

/// Copies a fixture folder into `dir` once (files only, recursively).
fn fixture_into(fixture: &str, dir: &Path) {
    fn copy(from: &Path, to: &Path) {
        let _ = std::fs::create_dir_all(to);
        for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if src.is_dir() {
                copy(&src, &dst);
            } else if !dst.exists() {
                let _ = std::fs::copy(&src, &dst);
            }
        }
    }
    copy(&root().join(fixture), dir);
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A safetensors file: the header checks, then every tensor read.
pub const SAFETENSORS: Target = Target {
    name: "safetensors",
    seeds: &[],
    dictionary: &[b"\"dtype\"", b"\"shape\"", b"\"data_offsets\"", b"\"F32\"", b"\"BF16\"", b"\"I64\"", b"\"__metadata__\"", b"[0,4]", b"[4294967296]", b"{", b"}"],
    run: |data| {
        let path = scratch("safetensors").join("w.safetensors");
        write(&path, data)?;
        let files = stipple_core::weights::SafetensorsFiles::open(&[&path]).map_err(err)?;
        let _ = files.bytes_as(DType::F16);
        let mut names: Vec<String> = files.names().map(str::to_string).collect();
        names.sort();
        for n in names.iter().take(16) {
            files.load(n, DType::F32, &Device::Cpu).map_err(err)?;
        }
        Ok(())
    },
};

/// A sharded model's `*.safetensors.index.json`, in a text model folder and a diffusers
/// component folder.
pub const SHARD_INDEX: Target = Target {
    name: "shard_index",
    seeds: &[],
    dictionary: &[b"null", b"1e999", b"[[[[[[[[", b"{\"a\":", b"\"weight_map\"", b"\"metadata\"", b"\"../../etc/passwd\"", b"\"/abs.safetensors\"", b"\"model-00001-of-00002.safetensors\""],
    run: |data| {
        let dir = scratch("shard_index");
        // the shards the seeds name exist: model.safetensors, vae/part-1.safetensors
        fixture_into("text/tests/fixtures/llada-tiny", &dir.join("text"));
        write(&dir.join("text/model.safetensors.index.json"), data)?;
        let text = stipple_text::files::ModelFiles::from_dir(&dir.join("text")).map(|_| ()).map_err(err);
        fixture_into("image/tests/fixtures/sd1-tiny", &dir.join("image"));
        let single = dir.join("image/vae/diffusion_pytorch_model.safetensors");
        if single.exists() {
            std::fs::rename(&single, dir.join("image/vae/part-1.safetensors")).map_err(err)?;
        }
        write(&dir.join("image/vae/diffusion_pytorch_model.safetensors.index.json"), data)?;
        let folder = stipple_image::files::PipelineFolder::open(&dir.join("image")).map_err(err)?;
        folder.weights("vae").map_err(err)?;
        text
    },
};

/// A text model's `config.json` (LLaDA, Dream, BERT...), loaded with real weights.
pub const TEXT_CONFIG: Target = Target {
    name: "text_config",
    seeds: &["text/tests/fixtures/llada-tiny/config.json", "text/tests/fixtures/dream-tiny/config.json", "text/tests/fixtures/bert-tiny/config.json", "text/tests/fixtures/modernbert-tiny/config.json"],
    dictionary: &[b"null", b"1e999", b"[[[[[[[[", b"{\"a\":", b"\"model_type\"", b"\"llada\"", b"\"Dream\"", b"\"bert\"", b"\"modernbert\"", b"\"n_heads\"", b"\"d_model\"", b"\"hidden_size\"", b"\"num_attention_heads\"", b"\"vocab_size\"", b"\"mask_token_id\"", b"0", b"-1"],
    run: |data| {
        let dir = scratch("text_config");
        fixture_into("text/tests/fixtures/llada-tiny", &dir);
        write(&dir.join("config.json"), data)?;
        stipple_text::TextModel::load(&dir.display().to_string(), &Device::Cpu, DType::F32).map(|_| ()).map_err(err)
    },
};

/// One config of a diffusers pipeline folder (the first byte picks which), loaded with the
/// tiny SD 1.x weights.
pub const IMAGE_CONFIG: Target = Target {
    name: "image_config",
    seeds: &[],
    dictionary: &[b"null", b"1e999", b"[[[[[[[[", b"{\"a\":", b"\"block_out_channels\"", b"\"layers_per_block\"", b"\"attention_head_dim\"", b"\"down_block_types\"", b"\"CrossAttnDownBlock2D\"", b"\"norm_num_groups\"", b"\"_class_name\"", b"\"num_train_timesteps\"", b"\"prediction_type\"", b"\"v_prediction\"", b"\"beta_schedule\""],
    run: |data| {
        const CONFIGS: [&str; 5] = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json"];
        let dir = scratch("image_config");
        fixture_into("image/tests/fixtures/sd1-tiny", &dir);
        let (which, body) = data.split_first().unwrap_or((&0, data));
        for c in CONFIGS {
            let _ = std::fs::copy(root().join("image/tests/fixtures/sd1-tiny").join(c), dir.join(c));
        }
        write(&dir.join(CONFIGS[*which as usize % CONFIGS.len()]), body)?;
        stipple_image::StableDiffusion::load(&dir, &Device::Cpu, DType::F32).map(|_| ()).map_err(err)
    },
};

/// `spectrogram_params.json` / `--params`.
pub const SPECTROGRAM_PARAMS: Target = Target {
    name: "spectrogram_params",
    seeds: &["models/stipple-mini/music/spectrogram_params.json"],
    dictionary: &[b"null", b"1e999", b"[[[[[[[[", b"{\"a\":", b"\"sample_rate\"", b"\"num_frequencies\"", b"\"padded_duration_ms\"", b"\"mel_scale\"", b"\"slaney\"", b"4294967295", b"0"],
    run: |data| {
        let path = scratch("spectrogram_params").join("params.json");
        write(&path, data)?;
        let params = stipple_audio::SpectrogramParams::from_file(&path).map_err(err)?;
        // planning the transforms allocates by the parameters: only modest ones
        if params.n_fft() <= 1 << 16 {
            let codec = stipple_audio::SpectrogramCodec::new(params).map_err(err)?;
            codec.mel_from_audio(&[0.1; 2048]).map_err(err)?;
        }
        Ok(())
    },
};

/// `tokenizer.json` (Hugging Face tokenizers), then encoding and decoding.
pub const TOKENIZER_JSON: Target = Target {
    name: "tokenizer_json",
    seeds: &["text/tests/fixtures/llada-tiny/tokenizer.json", "text/tests/fixtures/dream-slow-tok/expected_tokenizer.json"],
    dictionary: &[b"null", b"1e999", b"[[[[[[[[", b"{\"a\":", b"\"model\"", b"\"type\"", b"\"BPE\"", b"\"WordPiece\"", b"\"vocab\"", b"\"merges\"", b"\"added_tokens\"", b"\"pre_tokenizer\"", b"\"normalizer\"", b"\"Split\"", b"\"pattern\"", b"\"Regex\"", b"(?:"],
    run: |data| {
        let path = scratch("tokenizer_json").join("tokenizer.json");
        write(&path, data)?;
        let tok = stipple_text::tokenizer::TextTokenizer::from_files(&path, None).map_err(err)?;
        let ids = tok.encode("Hello, world! <|mask|> 123", true).map_err(err)?;
        tok.decode(&ids, false).map_err(err)?;
        Ok(())
    },
};

/// A slow tokenizer (`vocab.json` + `merges.txt`, split at the first NUL byte), as Dream's
/// repositories and CLIP's ship it.
pub const BPE_FILES: Target = Target {
    name: "bpe_files",
    seeds: &[],
    dictionary: &[b"\0", b"#version: 0.2\n", b"\xc4\xa0", b"</w>", b"\"<|endoftext|>\"", b": 0,"],
    run: |data| {
        let dir = scratch("bpe_files");
        let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        let (vocab, merges) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
        write(&dir.join("vocab.json"), vocab)?;
        write(&dir.join("merges.txt"), merges)?;
        let text_tok = stipple_text::slow_tokenizer::from_bpe_files(&dir.join("vocab.json"), &dir.join("merges.txt"), None, None).map_err(err);
        if let Ok(t) = &text_tok {
            let _ = t.encode("hello world", false);
        }
        let clip = stipple_image::tokenizer::ClipTokenizer::from_dir(&dir).map_err(err)?;
        clip.encode("a photo of a cat").map_err(err)?;
        text_tok.map(|_| ())
    },
};

/// A chat template (`tokenizer_config.json`'s Jinja), rendered for a conversation.
pub const CHAT_TEMPLATE: Target = Target {
    name: "chat_template",
    seeds: &[],
    dictionary: &[b"{{", b"}}", b"{%", b"%}", b" for m in messages ", b" endfor ", b"m['content']", b" if ", b" endif ", b"range(99999999)", b"|join", b"bos_token", b"add_generation_prompt", b"raise_exception('x')", b"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"],
    run: |data| {
        let dir = scratch("chat_template");
        let config = serde_json::json!({ "chat_template": text(data), "bos_token": "<s>", "eos_token": "</s>" });
        write(&dir.join("tokenizer_config.json"), config.to_string().as_bytes())?;
        let tok = stipple_text::tokenizer::TextTokenizer::from_files(&root().join("text/tests/fixtures/llada-tiny/tokenizer.json"), Some(&dir.join("tokenizer_config.json"))).map_err(err)?;
        tok.apply_chat_template(&[stipple_text::tokenizer::Message::user("hi")]).map(|_| ()).map_err(err)
    },
};

/// `stipple infill` templates: holes, lengths, word lists, character classes and regexes.
pub const INFILL_TEMPLATE: Target = Target {
    name: "infill_template",
    seeds: &[],
    dictionary: &[b"[", b"]", b"[4]", b"[1..3]", b"[2 /a+b*/]", b"[1 {cat,dog}]", b"[3 chars:[a-z]]", b"..", b"/", b"{", b"}", b"(?:", b"\\", b"999999999"],
    run: |data| {
        static VOCAB: std::sync::OnceLock<stipple_text::infill::TokenBytes> = std::sync::OnceLock::new();
        let vocab = VOCAB.get_or_init(|| {
            let tok = stipple_text::tokenizer::TextTokenizer::from_files(&root().join("text/tests/fixtures/llada-tiny/tokenizer.json"), None).expect("the fixture tokenizer");
            let n = tok.inner().get_vocab_size(true);
            stipple_text::infill::TokenBytes::new(&tok, n)
        });
        let t = stipple_text::infill::Template::parse(&text(data)).map_err(err)?;
        t.validate().map_err(err)?;
        // each hole's constraint compiled to its automaton over the tokens, as decoding does
        for h in t.holes() {
            stipple_text::infill::HoleAutomaton::new(h.constraint.pattern().as_deref(), None, h.min, h.max, vocab).map_err(err)?;
        }
        Ok(())
    },
};

/// A WAV file (any format hound reads), resampled to 16 kHz.
pub const WAV: Target = Target {
    name: "wav",
    seeds: &[],
    dictionary: &[b"RIFF", b"WAVE", b"fmt ", b"data", b"LIST", b"\x01\x00", b"\x03\x00", b"\xfe\xff"],
    run: |data| {
        let path = scratch("wav").join("in.wav");
        write(&path, data)?;
        stipple_audio::wav::read_mono(&path, 16_000).map(|_| ()).map_err(err)
    },
};

/// A PNG with text chunks (stipple's and AUTOMATIC1111's generation parameters), decoded.
pub const PNG_METADATA: Target = Target {
    name: "png_metadata",
    seeds: &["image/tests/fixtures/init.png"],
    dictionary: &[b"tEXt", b"iTXt", b"zTXt", b"IHDR", b"IDAT", b"IEND", b"parameters\0", b"Steps: ", b"stipple\0"],
    run: |data| {
        let path = scratch("png_metadata").join("in.png");
        write(&path, data)?;
        let chunks = stipple_image::metadata::read_text_chunks(&path).map_err(err);
        stipple_image::image_io::open(&path).map_err(err)?;
        chunks.map(|_| ())
    },
};

/// A Riffusion spectrogram PNG with its EXIF parameters, turned back into a mel spectrogram.
pub const SPECTROGRAM_PNG: Target = Target {
    name: "spectrogram_png",
    seeds: &[],
    dictionary: &[b"eXIf", b"MM\x00\x2a", b"II\x2a\x00", b"\xf8\x2a", b"\x03\x00", b"\x0c\x00"],
    run: |data| {
        let path = scratch("spectrogram_png").join("in.png");
        write(&path, data)?;
        let png = stipple_audio::spectrogram_image::read_png(&path).map_err(err)?;
        let params = png.params.unwrap_or_default();
        if params.n_fft() <= 1 << 16 {
            let codec = stipple_audio::SpectrogramCodec::new(params).map_err(err)?;
            codec.mel_from_image(&png.image, png.max_value.unwrap_or(1.0)).map_err(err)?;
        }
        Ok(())
    },
};

/// A GGUF file: header, metadata, the tokenizer in it, the model config, and the weights.
pub const GGUF: Target = Target {
    name: "gguf",
    seeds: &["text/tests/fixtures/gguf/llada-tiny-q4_k_m.gguf"],
    dictionary: &[b"GGUF", b"\x03\x00\x00\x00", b"general.architecture", b"llada", b"tokenizer.ggml.tokens", b"tokenizer.ggml.model", b"\xff\xff\xff\xff\xff\xff\xff\x7f"],
    run: |data| {
        let path = scratch("gguf").join("m.gguf");
        write(&path, data)?;
        stipple_text::TextModel::load_gguf(&path, &Device::Cpu, DType::F32, None).map(|_| ()).map_err(err)
    },
};

/// A `.npy` array (`stipple image --latents`).
pub const NPY: Target = Target {
    name: "npy",
    seeds: &[],
    dictionary: &[b"\x93NUMPY", b"'descr'", b"'<f4'", b"'<f8'", b"'|u1'", b"'shape'", b"(1000000000, 1000000000)", b"()", b"'fortran_order': True"],
    run: |data| {
        let path = scratch("npy").join("in.npy");
        write(&path, data)?;
        stipple_image::image_io::read_npy(&path).map(|_| ()).map_err(err)
    },
};
