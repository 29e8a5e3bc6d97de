//! The mBART config of a translation network: the pretrained directory's `config.json`, or the
//! inline `architecture` of a from-scratch model (*slt extension*), with the `overwrite_cfg`
//! dropouts, checked against the tokenizers' special ids.

use std::path::Path;

use serde_json::json;

use super::error::{config_err, Result};
use crate::config::{MbartArchitectureConfig, TranslationNetworkConfig};
use crate::data::text_tokenizer::TextTokenizer;
use crate::model::mbart::MbartConfig;

/// The mBART config for `cfg` and its text tokenizer.
///
/// - pretrained directory: its `config.json`; a trained text tokenizer (only allowed with
///   `from_scratch`) replaces `vocab_size`; otherwise the tokenizer's ids must fit the
///   model's vocabulary;
/// - inline architecture: mBART's token ids (`<s>` 0, `<pad>` 1, `</s>` 2, forced EOS = `</s>`)
///   taken from the tokenizer, `vocab_size` = the tokenizer's.
///
/// The tokenizer's `<pad>` and `</s>` must be the model's `pad_token_id` / `eos_token_id`
/// (the loss ignores the tokenizer's pad; generation stops at the model's EOS).
pub fn mbart_config(cfg: &TranslationNetworkConfig, text: &TextTokenizer) -> Result<MbartConfig> {
    let vocab = text.vocab_size() as i64;
    let trained = cfg.text_tokenizer.level.is_trained();
    let mut mbart = match (&cfg.pretrained_model_name_or_path, &cfg.architecture) {
        (Some(dir), None) => {
            let mut mbart = MbartConfig::from_file(&dir.join("config.json"))?;
            if trained {
                if !cfg.from_scratch {
                    return Err(config_err(
                        "from_scratch",
                        "must be true with a trained text tokenizer: the pretrained weights \
                         have another vocabulary",
                    ));
                }
                mbart.vocab_size = vocab;
            } else if vocab > mbart.vocab_size {
                return Err(config_err(
                    "TextTokenizer",
                    format!(
                        "the tokenizer has {vocab} ids but {} has vocab_size {}",
                        dir.join("config.json").display(),
                        mbart.vocab_size
                    ),
                ));
            }
            mbart
        }
        (None, Some(arch)) => {
            if !cfg.from_scratch {
                return Err(config_err(
                    "from_scratch",
                    "must be true when the architecture is given inline",
                ));
            }
            inline_config(arch, text)?
        }
        (None, None) => {
            return Err(config_err(
                "pretrained_model_name_or_path",
                "required (or, for a model trained from scratch, `architecture`)",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(config_err(
                "architecture",
                "give either pretrained_model_name_or_path or architecture, not both",
            ))
        }
    };
    mbart.apply_overrides(&cfg.overwrite_cfg)?;
    let ids = [
        ("<pad>", text.pad_id(), mbart.pad_token_id),
        ("</s>", text.eos_id(), mbart.eos_token_id),
    ];
    for (token, tokenizer_id, model_id) in ids {
        if tokenizer_id != model_id {
            return Err(config_err(
                "TextTokenizer",
                format!("'{token}' is id {tokenizer_id} in the tokenizer but {model_id} in mBART"),
            ));
        }
    }
    Ok(mbart)
}

/// `MBartConfig(**architecture, vocab_size=…, token ids=…)`, through the JSON schema so that
/// every key the architecture does not set keeps mBART's default.
fn inline_config(arch: &MbartArchitectureConfig, text: &TextTokenizer) -> Result<MbartConfig> {
    let value = json!({
        "vocab_size": text.vocab_size(),
        "d_model": arch.d_model,
        "encoder_layers": arch.encoder_layers,
        "decoder_layers": arch.decoder_layers,
        "encoder_attention_heads": arch.encoder_attention_heads,
        "decoder_attention_heads": arch.decoder_attention_heads,
        "encoder_ffn_dim": arch.encoder_ffn_dim,
        "decoder_ffn_dim": arch.decoder_ffn_dim,
        "max_position_embeddings": arch.max_position_embeddings,
        "scale_embedding": arch.scale_embedding,
        "activation_function": arch.activation_function,
        "init_std": arch.init_std,
        "encoder_layerdrop": arch.encoder_layerdrop,
        "decoder_layerdrop": arch.decoder_layerdrop,
        "pad_token_id": text.pad_id(),
        "bos_token_id": 0,
        "eos_token_id": text.eos_id(),
        "forced_eos_token_id": text.eos_id(),
        "decoder_start_token_id": text.lang_id(),
        "architectures": ["MBartForConditionalGeneration"],
        "model_type": "mbart",
    });
    Ok(MbartConfig::from_json_str(
        &value.to_string(),
        Path::new("model.TranslationNetwork.architecture"),
    )?)
}
