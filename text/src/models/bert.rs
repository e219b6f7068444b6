//! BERT and ModernBERT masked language models (`*ForMaskedLM`), run as one-shot
//! masked-diffusion models: every step re-predicts all masked positions with full
//! bidirectional attention. The networks come from candle-transformers.

use candle_nn::VarBuilder;
use candle_transformers::models::{bert, modernbert};

use super::{Family, ModelTraits, Net};
use crate::error::{Error, Result};

pub(super) fn load(
    family: Family,
    config: &serde_json::Value,
    vb: VarBuilder,
    special: &dyn Fn(&str) -> Option<u32>,
) -> Result<(Net, ModelTraits)> {
    let mask_id = special("[MASK]")
        .or_else(|| special("<mask>"))
        .ok_or_else(|| Error::Model("the tokenizer has no [MASK] token".into()))?;
    let sep = special("[SEP]").or_else(|| special("</s>")).unwrap_or(mask_id);
    let pad = special("[PAD]").or_else(|| special("<pad>")).unwrap_or(0);
    let bad = |e: serde_json::Error| Error::Model(format!("BERT config.json: {e}"));
    let (net, vocab, max_len) = match family {
        Family::Bert => {
            let cfg: bert::Config = serde_json::from_value(config.clone()).map_err(bad)?;
            (
                Net::Bert(bert::BertForMaskedLM::load(vb, &cfg)?),
                cfg.vocab_size,
                cfg.max_position_embeddings,
            )
        }
        _ => {
            // the hub files say `norm_eps`; candle's struct wants `layer_norm_eps`
            let mut config = config.clone();
            if let Some(obj) = config.as_object_mut()
                && !obj.contains_key("layer_norm_eps")
            {
                let eps = obj.get("norm_eps").cloned().unwrap_or(serde_json::json!(1e-5));
                obj.insert("layer_norm_eps".into(), eps);
            }
            let cfg: modernbert::Config = serde_json::from_value(config).map_err(bad)?;
            (
                Net::ModernBert(modernbert::ModernBertForMaskedLM::load(vb, &cfg)?),
                cfg.vocab_size,
                cfg.max_position_embeddings,
            )
        }
    };
    Ok((
        net,
        ModelTraits {
            family,
            mask_id,
            eos_ids: vec![sep],
            pad_id: pad,
            vocab,
            shift_logits: false,
            supports_cache: false,
            max_len: Some(max_len),
            widths: {
                let n = |k: &str| config.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
                let hidden = n("hidden_size");
                super::Widths { hidden, mlp: n("intermediate_size"), layers: n("num_hidden_layers"), kv: hidden }
            },
        },
    ))
}
