//! `MbartConfig`: the Hugging Face `config.json` of an mBART model, with the reference's
//! `overwrite_cfg` overrides (dropouts).
//!
//! Unknown keys (`architectures`, `task_specific_params`, legacy `normalize_before`, …) are
//! accepted and kept, so that saving writes them back unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{MbartError, Result};
use crate::config::MbartOverrides;

/// Activation of the feed-forward blocks (`activation_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: exact (erf) GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl Activation {
    /// Parses a HF `activation_function` name.
    pub fn from_hf(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => {
                return Err(MbartError::ConfigValue {
                    key: "activation_function",
                    message: format!(
                        "unsupported activation `{other}` (expected gelu, gelu_new, relu or silu)"
                    ),
                })
            }
        })
    }

    /// Applies the activation.
    pub fn apply(self, xs: &tch::Tensor) -> tch::Tensor {
        match self {
            Activation::Gelu => xs.gelu("none"),
            Activation::GeluTanh => xs.gelu("tanh"),
            Activation::Relu => xs.relu(),
            Activation::Silu => xs.silu(),
        }
    }
}

fn d_vocab() -> i64 {
    50265
}
fn d_model() -> i64 {
    1024
}
fn d_layers() -> i64 {
    12
}
fn d_heads() -> i64 {
    16
}
fn d_ffn() -> i64 {
    4096
}
fn d_max_pos() -> i64 {
    1024
}
fn d_pad() -> i64 {
    1
}
fn d_bos() -> Option<i64> {
    Some(0)
}
fn d_eos() -> i64 {
    2
}
fn d_forced_eos() -> Option<i64> {
    Some(2)
}
fn d_dropout() -> f64 {
    0.1
}
fn d_gelu() -> String {
    "gelu".to_string()
}
fn d_init_std() -> f64 {
    0.02
}
fn d_true() -> bool {
    true
}

/// The mBART architecture and token ids, with HF `MBartConfig` names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MbartConfig {
    /// Vocabulary size V (rows of `model.shared.weight`).
    #[serde(default = "d_vocab")]
    pub vocab_size: i64,
    /// Hidden size.
    #[serde(default = "d_model")]
    pub d_model: i64,
    /// Number of encoder layers.
    #[serde(default = "d_layers")]
    pub encoder_layers: i64,
    /// Number of decoder layers.
    #[serde(default = "d_layers")]
    pub decoder_layers: i64,
    /// Attention heads per encoder layer.
    #[serde(default = "d_heads")]
    pub encoder_attention_heads: i64,
    /// Attention heads per decoder layer.
    #[serde(default = "d_heads")]
    pub decoder_attention_heads: i64,
    /// Encoder feed-forward width.
    #[serde(default = "d_ffn")]
    pub encoder_ffn_dim: i64,
    /// Decoder feed-forward width.
    #[serde(default = "d_ffn")]
    pub decoder_ffn_dim: i64,
    /// Learned positions (the tables have two more rows: offset 2).
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: i64,
    /// Multiply token embeddings by `sqrt(d_model)` (never applied to given `inputs_embeds`).
    #[serde(default)]
    pub scale_embedding: bool,
    /// Padding id (also the embedding's `padding_idx`).
    #[serde(default = "d_pad")]
    pub pad_token_id: i64,
    /// Begin-of-sequence id.
    #[serde(default = "d_bos")]
    pub bos_token_id: Option<i64>,
    /// End-of-sequence id.
    #[serde(default = "d_eos")]
    pub eos_token_id: i64,
    /// Decoder start id (`null` in mBART configs; the reference passes its own start token).
    #[serde(default)]
    pub decoder_start_token_id: Option<i64>,
    /// Token forced at `max_length - 1` during generation (MBartConfig default 2).
    #[serde(default = "d_forced_eos")]
    pub forced_eos_token_id: Option<i64>,
    /// Residual and embedding dropout.
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Dropout on attention probabilities.
    #[serde(default)]
    pub attention_dropout: f64,
    /// Dropout after the feed-forward activation.
    #[serde(default)]
    pub activation_dropout: f64,
    /// Feed-forward activation name (`gelu` = exact erf GELU).
    #[serde(default = "d_gelu")]
    pub activation_function: String,
    /// Probability of skipping a whole encoder layer in training.
    #[serde(default)]
    pub encoder_layerdrop: f64,
    /// Probability of skipping a whole decoder layer in training.
    #[serde(default)]
    pub decoder_layerdrop: f64,
    /// Standard deviation of the HF weight initialisation.
    #[serde(default = "d_init_std")]
    pub init_std: f64,
    /// Tie `lm_head` to the shared embedding (always done; `false` is rejected).
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    /// Every other key of the file, written back unchanged by [`MbartConfig::to_json`].
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MbartConfig {
    /// Parses a `config.json` text; `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: MbartConfig =
            serde_path_to_error::deserialize(de).map_err(|e| MbartError::Config {
                path: origin.to_path_buf(),
                message: format!("at `{}`: {}", e.path(), e.inner()),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `config.json` (a file, or a model directory containing one).
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| MbartError::Io {
            path: file.clone(),
            source,
        })?;
        Self::from_json_str(&text, &file)
    }

    /// The config as JSON (known keys plus the kept unknown ones), sorted by key like HF.
    pub fn to_json(&self) -> Result<String> {
        let value = serde_json::to_value(self).map_err(|e| MbartError::Config {
            path: "<memory>".into(),
            message: e.to_string(),
        })?;
        // serde_json's map is ordered by key (no `preserve_order`), as HF writes it.
        serde_json::to_string_pretty(&value).map_err(|e| MbartError::Config {
            path: "<memory>".into(),
            message: e.to_string(),
        })
    }

    /// Applies the reference's `overwrite_cfg` (dropouts given as keyword arguments to
    /// `from_pretrained`).
    pub fn apply_overrides(&mut self, overrides: &MbartOverrides) -> Result<()> {
        if let Some(p) = overrides.dropout {
            self.dropout = p;
        }
        if let Some(p) = overrides.attention_dropout {
            self.attention_dropout = p;
        }
        if let Some(p) = overrides.activation_dropout {
            self.activation_dropout = p;
        }
        self.validate()
    }

    /// The parsed activation.
    pub fn activation(&self) -> Result<Activation> {
        Activation::from_hf(&self.activation_function)
    }

    /// `sqrt(d_model)` when `scale_embedding`, else 1.
    pub fn embed_scale(&self) -> f64 {
        if self.scale_embedding {
            (self.d_model as f64).sqrt()
        } else {
            1.0
        }
    }

    /// Checks sizes, ids and probabilities.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in positive {
            if v <= 0 {
                return Err(MbartError::ConfigValue {
                    key,
                    message: format!("must be > 0, got {v}"),
                });
            }
        }
        for (key, v) in [
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
        ] {
            if v < 0 {
                return Err(MbartError::ConfigValue {
                    key,
                    message: format!("must be >= 0, got {v}"),
                });
            }
        }
        for (key, heads) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if self.d_model % heads != 0 {
                return Err(MbartError::ConfigValue {
                    key,
                    message: format!("d_model {} is not divisible by {heads} heads", self.d_model),
                });
            }
        }
        let ids = [
            ("pad_token_id", Some(self.pad_token_id)),
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", Some(self.eos_token_id)),
            ("decoder_start_token_id", self.decoder_start_token_id),
            ("forced_eos_token_id", self.forced_eos_token_id),
        ];
        for (key, id) in ids {
            if let Some(id) = id {
                if id < 0 || id >= self.vocab_size {
                    return Err(MbartError::ConfigValue {
                        key,
                        message: format!("id {id} outside the vocabulary 0..{}", self.vocab_size),
                    });
                }
            }
        }
        let probs = [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("activation_dropout", self.activation_dropout),
            ("encoder_layerdrop", self.encoder_layerdrop),
            ("decoder_layerdrop", self.decoder_layerdrop),
        ];
        for (key, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(MbartError::ConfigValue {
                    key,
                    message: format!("must be in [0, 1], got {p}"),
                });
            }
        }
        if !self.tie_word_embeddings {
            return Err(MbartError::ConfigValue {
                key: "tie_word_embeddings",
                message: "untied lm_head is not supported (mBART ties it to model.shared)".into(),
            });
        }
        self.activation()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_unknown_keys_and_nulls() {
        let text = r#"{"d_model": 64, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
            "vocab_size": 120, "decoder_start_token_id": null, "forced_eos_token_id": null,
            "architectures": ["MBartForConditionalGeneration"], "normalize_before": true}"#;
        let cfg = MbartConfig::from_json_str(text, Path::new("x.json")).unwrap();
        assert_eq!(cfg.encoder_layers, 12);
        assert_eq!(cfg.forced_eos_token_id, None);
        assert_eq!(cfg.decoder_start_token_id, None);
        assert_eq!(cfg.activation().unwrap(), Activation::Gelu);
        assert!(cfg.extra.contains_key("architectures"));
        let back = MbartConfig::from_json_str(&cfg.to_json().unwrap(), Path::new("y")).unwrap();
        assert_eq!(back, cfg);
        let missing = MbartConfig::from_json_str(
            r#"{"d_model": 64, "encoder_attention_heads": 4, "decoder_attention_heads": 4}"#,
            Path::new("z"),
        )
        .unwrap();
        assert_eq!(missing.forced_eos_token_id, Some(2));
    }

    #[test]
    fn overrides_and_validation() {
        let mut cfg = MbartConfig::from_json_str(
            r#"{"d_model": 64, "encoder_attention_heads": 4, "decoder_attention_heads": 4}"#,
            Path::new("c"),
        )
        .unwrap();
        cfg.apply_overrides(&MbartOverrides {
            dropout: Some(0.3),
            attention_dropout: Some(0.1),
            activation_dropout: None,
        })
        .unwrap();
        assert_eq!(
            (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout),
            (0.3, 0.1, 0.0)
        );
        let err = MbartConfig::from_json_str(r#"{"d_model": 65}"#, Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("encoder_attention_heads"), "{err}");
        let err =
            MbartConfig::from_json_str(r#"{"dropout": "x"}"#, Path::new("c.json")).unwrap_err();
        assert!(
            err.to_string().contains("dropout") && err.to_string().contains("c.json"),
            "{err}"
        );
    }
}
