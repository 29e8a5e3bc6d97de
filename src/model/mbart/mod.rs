//! mBART (`MBartForConditionalGeneration`) in tch: the translation network core.
//!
//! Parameters live in the caller's `VarStore` under a caller-given prefix with Hugging Face's
//! names (`model.shared.weight`, `model.encoder.layers.0.self_attn.q_proj.weight`, …,
//! `final_logits_bias`), so HF model directories and the reference's checkpoints
//! (`translation_network.model.` + HF name) load by name ([`MbartForConditionalGeneration::load_tensors`]).
//! The token table is tied: `model.shared`, `model.{encoder,decoder}.embed_tokens` and
//! `lm_head` are one tensor, stored once as `model.shared.weight`.
//!
//! Files: [`config`] (HF `config.json`), [`attention`], [`encoder`], [`decoder`] (with the
//! generation cache), [`io`] (load/save HF directories: `model.safetensors`, or
//! `pytorch_model.bin` through [`crate::model::import`]), [`generate`] (greedy and beam search
//! with transformers 4.11.3 semantics, the reference's, or 5.x with [`BeamCompat::Hf5`]; the
//! hypothesis bookkeeping is in `beam.rs`), [`loss`] (the reference's label-smoothed KL loss).
//!
//! Checked by `tests/mbart_parity.rs` (the reference's fixture) and `tests/mbart_hf.rs`
//! (transformers on random tiny models).
//!
//! ```no_run
//! use slt::model::mbart::{GenerateOptions, MbartForConditionalGeneration, EncoderInput};
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let dir = std::path::Path::new("pretrained_models/mBart_de");
//! let (model, report) = MbartForConditionalGeneration::from_pretrained(&vs.root(), dir, None)?;
//! assert!(report.is_clean());
//! let embeds = tch::Tensor::zeros([1, 5, model.config().d_model], (tch::Kind::Float, tch::Device::Cpu));
//! let mask = tch::Tensor::ones([1, 5], (tch::Kind::Int64, tch::Device::Cpu));
//! let start = tch::Tensor::from_slice(&[6i64]).view([1, 1]);
//! let opts = GenerateOptions { num_beams: 5, max_length: 100, ..GenerateOptions::default() };
//! let out = model.generate(EncoderInput::Embeds(&embeds), Some(&mask), &start, &opts)?;
//! # Ok::<(), slt::model::mbart::MbartError>(())
//! ```

pub mod attention;
mod beam;
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod generate;
pub mod io;
pub mod loss;

use tch::{nn, Tensor};

pub use config::{Activation, MbartConfig};
pub use decoder::DecoderCache;
pub use encoder::EncoderInput;
pub use error::{MbartError, Result};
pub use generate::{unsupported_generation_settings, BeamCompat, GenerateOptions, GenerateOutput};
pub use io::LoadReport;
pub use loss::label_smoothed_loss;

use decoder::MbartDecoder;
use encoder::MbartEncoder;
use error::arg_err;

/// HF names of the tied copies of `model.shared.weight` found in full state dicts.
pub const TIED_ALIASES: [&str; 3] = [
    "model.encoder.embed_tokens.weight",
    "model.decoder.embed_tokens.weight",
    "lm_head.weight",
];

/// Name of the shared token table.
pub const SHARED_WEIGHT: &str = "model.shared.weight";

/// Output of a teacher-forced forward pass.
#[derive(Debug)]
pub struct Seq2SeqOutput {
    /// `[B, T, V]` = decoder states · sharedᵀ + `final_logits_bias`.
    pub logits: Tensor,
    /// `[B, S, d_model]`.
    pub encoder_last_hidden_state: Tensor,
}

/// `MBartForConditionalGeneration`.
#[derive(Debug)]
pub struct MbartForConditionalGeneration {
    cfg: MbartConfig,
    prefix: String,
    shared: Tensor,
    final_logits_bias: Tensor,
    encoder: MbartEncoder,
    decoder: MbartDecoder,
}

impl MbartForConditionalGeneration {
    /// Creates a randomly initialised model (HF `_init_weights`: normal(0, `init_std`) for
    /// linear weights, embeddings and positions, pad row zero, zero biases, unit LayerNorms,
    /// zero `final_logits_bias`) with its parameters under `p`.
    pub fn new(p: &nn::Path, cfg: &MbartConfig) -> Result<Self> {
        cfg.validate()?;
        let model = p / "model";
        let shared = (&model / "shared").var(
            "weight",
            &[cfg.vocab_size, cfg.d_model],
            nn::Init::Randn {
                mean: 0.0,
                stdev: cfg.init_std,
            },
        );
        let _ = tch::no_grad(|| shared.get(cfg.pad_token_id).fill_(0.0));
        let final_logits_bias = p.zeros_no_train("final_logits_bias", &[1, cfg.vocab_size]);
        let encoder = MbartEncoder::new(&(&model / "encoder"), cfg, &shared)?;
        let decoder = MbartDecoder::new(&(&model / "decoder"), cfg, &shared)?;
        Ok(MbartForConditionalGeneration {
            cfg: cfg.clone(),
            prefix: p.components().collect::<Vec<_>>().join("."),
            shared,
            final_logits_bias,
            encoder,
            decoder,
        })
    }

    /// The config the model was built with.
    pub fn config(&self) -> &MbartConfig {
        &self.cfg
    }

    /// The VarStore prefix of the parameters (`""` at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The tied token table `model.shared.weight` `[V, D]`.
    pub fn shared(&self) -> &Tensor {
        &self.shared
    }

    /// The `final_logits_bias` buffer `[1, V]` (not trainable).
    pub fn final_logits_bias(&self) -> &Tensor {
        &self.final_logits_bias
    }

    /// The encoder.
    pub fn encoder(&self) -> &MbartEncoder {
        &self.encoder
    }

    /// The decoder.
    pub fn decoder(&self) -> &MbartDecoder {
        &self.decoder
    }

    /// Runs the encoder: `attention_mask` `[B, S]` with 1 for valid positions (none = all).
    pub fn encode(
        &self,
        input: EncoderInput<'_>,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        self.encoder.forward(input, attention_mask, train)
    }

    /// Decoder states `[.., D]` → logits `[.., V]` (tied `lm_head` + `final_logits_bias`).
    pub fn lm_logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear(&self.shared, None::<&Tensor>) + &self.final_logits_bias
    }

    /// Teacher-forced decoding over given encoder states; returns logits `[B, T, V]`.
    pub fn decode(
        &self,
        decoder_input_ids: &Tensor,
        encoder_hidden: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let h = self
            .decoder
            .forward(decoder_input_ids, encoder_hidden, attention_mask, train)?;
        Ok(self.lm_logits(&h))
    }

    /// `model(inputs_embeds=…|input_ids=…, attention_mask=…, decoder_input_ids=…)`; `train`
    /// switches dropout (and LayerDrop) on.
    pub fn forward(
        &self,
        input: EncoderInput<'_>,
        attention_mask: Option<&Tensor>,
        decoder_input_ids: &Tensor,
        train: bool,
    ) -> Result<Seq2SeqOutput> {
        let enc = self.encode(input, attention_mask, train)?;
        if enc.size()[0] != decoder_input_ids.size().first().copied().unwrap_or(-1) {
            return Err(arg_err(
                "decoder_input_ids",
                format!(
                    "expected [{}, T] like the encoder input, got {:?}",
                    enc.size()[0],
                    decoder_input_ids.size()
                ),
            ));
        }
        let logits = self.decode(decoder_input_ids, &enc, attention_mask, train)?;
        Ok(Seq2SeqOutput {
            logits,
            encoder_last_hidden_state: enc,
        })
    }

    /// Every parameter and buffer once, with HF names (no prefix), in `state_dict` order:
    /// `final_logits_bias`, `model.shared.weight`, encoder, decoder. Tied copies are not
    /// listed (see [`TIED_ALIASES`]).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "final_logits_bias".to_string(),
                self.final_logits_bias.shallow_clone(),
            ),
            (SHARED_WEIGHT.to_string(), self.shared.shallow_clone()),
        ];
        self.encoder.named_parameters("model.encoder", &mut out);
        self.decoder.named_parameters("model.decoder", &mut out);
        out
    }

    /// [`Self::named_parameters`] with the VarStore prefix (the names `VarStore::variables`
    /// uses).
    pub fn var_store_names(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
            .into_iter()
            .map(|(n, t)| {
                let full = if self.prefix.is_empty() {
                    n
                } else {
                    format!("{}.{n}", self.prefix)
                };
                (full, t)
            })
            .collect()
    }
}
