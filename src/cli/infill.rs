//! `stipple infill`: fill a template's holes under constraints.

use anyhow::{Context, Result};
use clap::Args;
use stipple_core::progress::Progress;
use stipple_text::generate::CanvasView;
use stipple_text::infill::{InfillOptions, Template, infill};
use stipple_text::{GenerateConfig, TextModel};

use super::Global;
use super::progress::BarProgress;
use super::text::DecodeArgs;

/// `stipple infill` arguments.
#[derive(Args, Debug)]
pub struct InfillArgs {
    /// Model folder, hub id, or GGUF file (default: the embedded stipple-mini text model).
    #[arg(long)]
    pub model: Option<String>,
    /// Quantize the weights as they load: q8_0, q6_k, q5_k, q5_0, q4_k or q4_0 (llama.cpp's
    /// types; activations stay f32). Smaller, and q8_0 runs llama.cpp's Q8_0 file exactly.
    #[arg(long, value_parser = super::text::parse_quantize)]
    pub quantize: Option<candle_core::quantized::GgmlDType>,
    /// Template: fixed text with holes such as [4], [1..3], [4 /regex/], [1 {cat,dog}], [3 chars:[a-z]].
    #[arg(long)]
    pub template: String,
    /// Text the model sees before the template (not part of the result).
    #[arg(long)]
    pub context: Option<String>,
    /// Model calls (default: one per hole position).
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Run `stipple infill`.
pub fn run(g: &Global, args: &InfillArgs) -> Result<()> {
    let template = Template::parse(&args.template)?;
    let mut decode = GenerateConfig { seed: g.seed.unwrap_or(0), ..GenerateConfig::default() };
    args.decode.apply(&mut decode);
    let opts = InfillOptions { steps: args.steps, decode, context: args.context.clone() };
    let source = match &args.model {
        Some(m) => m.clone(),
        None => stipple::defaults::model("text")?.display().to_string(),
    };
    let model = TextModel::load_quantized(&source, &g.device, g.dtype, args.quantize).with_context(|| format!("loading {source}"))?;
    let mut bar = BarProgress::new("infill", g.json);
    let out = infill(&model, &template, &opts, Some(&mut bar as &mut dyn Progress<CanvasView>))?;
    bar.finish();
    if g.json {
        println!("{}", serde_json::to_value(&out)?);
    } else {
        println!("{}", out.text);
        for h in &out.holes {
            eprintln!("  hole {}: {:?}", h.name, h.text);
        }
        eprintln!("{} model calls, {:.1} ms", out.nfe, out.elapsed_ms);
    }
    Ok(())
}
