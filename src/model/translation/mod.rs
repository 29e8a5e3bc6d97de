//! The reference's `TranslationNetwork` (Gloss2Text): gloss embeddings → mBART (spec §4).
//!
//! Built under the VarStore path the caller passes (normally `vs.root() / "translation_network"`),
//! the variables carry the reference's names (spec §4.8):
//!
//! ```text
//! translation_network.gloss_embedding.weight                  [G, d_model]  (pad row starts at 0)
//! translation_network.model.final_logits_bias                 [1, V]        (buffer)
//! translation_network.model.model.shared.weight               [V, d_model]  (tied: embed_tokens, lm_head)
//! translation_network.model.model.{encoder,decoder}.…         HF mBART names
//!
//! glosses ─GlossTokenizer─▶ ids + [</s>, src_lang] ─gloss_embedding × input_embed_scale─▶ inputs_embeds
//!         ─mBART(inputs_embeds, attention_mask, decoder_input_ids)─▶ logits ─▶ label-smoothed KL / B
//!                                                              └ generate (beam, HF 4.11 rules) ─▶ text
//! ```
//!
//! * **Vocabularies** ([`TranslationNetwork::build`]): the text tokenizer is mBART's pretrained
//!   one (`TextTokenizer.level: sentencepiece` + prune map) or trained on the training
//!   sentences (`word`, `char`, `bpe`, *slt extension*); the gloss vocabulary is
//!   `GlossTokenizer.gloss2id_file` or built from the training glosses (*slt extension*). Built
//!   vocabularies live under `{model_dir}/translation` ([`artifacts_dir`]) and are read back by
//!   every later build (resume, evaluation, other workers).
//! * **mBART**: the pretrained directory's architecture, or the inline `architecture` of a
//!   from-scratch model (*slt extension*); `overwrite_cfg` sets the dropouts.
//! * **Weights** ([`TranslationNetwork::load_initial_weights`]): pretrained mBART unless
//!   `from_scratch`, gloss rows from `gloss2embed_file` unless `GlossEmbedding.from_scratch`,
//!   then `load_ckpt`.
//! * **Freezing**: `GlossEmbedding.freeze` and `freeze_txt_embed` (the tied text embedding and
//!   LM head) set `requires_grad = false`, so the optimizer skips those parameters.
//! * **Input scale**: `input_embed_scale`, default `sqrt(d_model)` (the reference applies it
//!   whatever `scale_embedding` says; mBART does not rescale given `inputs_embeds`).
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test translation
//! ```

mod architecture;
mod artifacts;
mod error;
mod weights;

#[cfg(test)]
mod tests;

use tch::{nn, Device, Kind, Tensor};

pub use architecture::mbart_config;
pub use artifacts::{
    artifacts_dir, token_level, TranslationSetup, ARTIFACTS_SUBDIR, GLOSS_VOCAB_FILE,
    TEXT_TOKENIZER_DIR,
};
pub use error::{Result, TranslationError};
pub use weights::{GlossRowsReport, WeightInitReport};

use crate::config::{GlsEos, TranslationDecodeConfig, TranslationNetworkConfig};
use crate::data::g2t_gloss::G2TGlossTokenizer;
use crate::data::text_tokenizer::TextTokenizer;
use crate::model::mbart::{
    label_smoothed_loss, EncoderInput, GenerateOptions, GenerateOutput,
    MbartForConditionalGeneration,
};
use error::{arg_err, config_err};

/// VarStore path of the network in the task model (`vs.root() / NETWORK_PATH`).
pub const NETWORK_PATH: &str = "translation_network";
/// Key prefix of the network's tensors in checkpoints.
pub const NETWORK_PREFIX: &str = "translation_network.";
/// Name of the gloss table below the network's path.
pub const GLOSS_EMBEDDING_WEIGHT: &str = "gloss_embedding.weight";

/// Gloss embedding + mBART + both tokenizers.
#[derive(Debug)]
pub struct TranslationNetwork {
    cfg: TranslationNetworkConfig,
    model: MbartForConditionalGeneration,
    gloss_embedding: Tensor,
    gloss_tokenizer: G2TGlossTokenizer,
    text_tokenizer: TextTokenizer,
    input_embed_scale: f64,
    device: Device,
}

impl TranslationNetwork {
    /// Builds the network under `p` (normally `vs.root() / NETWORK_PATH`) with random weights:
    /// tokenizers from the config or from `setup` (see the module docs), mBART under
    /// `p / "model"`, the gloss table `p / "gloss_embedding" / "weight"` drawn from
    /// N(0, `GlossEmbedding.init_std`, default 1) with a zero `<pad>` row, and the frozen
    /// parameters marked. Call [`Self::load_initial_weights`] afterwards.
    pub fn build(
        p: &nn::Path,
        cfg: &TranslationNetworkConfig,
        setup: &TranslationSetup<'_>,
    ) -> Result<Self> {
        let text_tokenizer = artifacts::text_tokenizer(cfg, setup)?;
        let gloss_tokenizer = artifacts::gloss_tokenizer(cfg, setup)?;
        let mbart_cfg = mbart_config(cfg, &text_tokenizer)?;
        let model = MbartForConditionalGeneration::new(&(p / "model"), &mbart_cfg)?;
        let d_model = mbart_cfg.d_model;
        let rows = gloss_tokenizer.len() as i64;
        let gloss_embedding = (p / "gloss_embedding").var(
            "weight",
            &[rows, d_model],
            nn::Init::Randn {
                mean: 0.0,
                stdev: cfg.gloss_embedding.init_std.unwrap_or(1.0),
            },
        );
        tch::no_grad(|| {
            gloss_embedding
                .get(gloss_tokenizer.pad_id())
                .f_fill_(0.0)
                .map(|_| ())
        })?;
        if cfg.gloss_embedding.freeze {
            let _ = gloss_embedding.f_set_requires_grad(false)?;
        }
        if cfg.freeze_txt_embed {
            let _ = model.shared().f_set_requires_grad(false)?;
        }
        let input_embed_scale = cfg
            .input_embed_scale
            .unwrap_or_else(|| (d_model as f64).sqrt());
        Ok(TranslationNetwork {
            cfg: cfg.clone(),
            model,
            gloss_embedding,
            gloss_tokenizer,
            text_tokenizer,
            input_embed_scale,
            device: p.device(),
        })
    }

    /// The config the network was built from.
    pub fn config(&self) -> &TranslationNetworkConfig {
        &self.cfg
    }

    /// The mBART.
    pub fn model(&self) -> &MbartForConditionalGeneration {
        &self.model
    }

    /// The gloss table `[G, d_model]`.
    pub fn gloss_embedding(&self) -> &Tensor {
        &self.gloss_embedding
    }

    /// The text tokenizer (targets and decoding).
    pub fn text_tokenizer(&self) -> &TextTokenizer {
        &self.text_tokenizer
    }

    /// The gloss tokenizer (encoder input ids).
    pub fn gloss_tokenizer(&self) -> &G2TGlossTokenizer {
        &self.gloss_tokenizer
    }

    /// The factor on input embeddings.
    pub fn input_embed_scale(&self) -> f64 {
        self.input_embed_scale
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.device
    }

    /// G2T encoder input: `(inputs_embeds [B, S, d_model], attention_mask [B, S])` =
    /// `gloss_embedding(ids) × input_embed_scale` of the tokenised glosses (the `<pad>` row
    /// gets no gradient, like `nn.Embedding(padding_idx)`).
    pub fn embed_glosses(&self, glosses: &[&str]) -> Result<(Tensor, Tensor)> {
        if glosses.is_empty() {
            return Err(arg_err("glosses", "empty batch"));
        }
        let (ids, mask) = self
            .gloss_tokenizer
            .encode_batch(glosses)
            .to_tensors(self.device);
        let embeds = Tensor::f_embedding(
            &self.gloss_embedding,
            &ids,
            self.gloss_tokenizer.pad_id(),
            false,
            false,
        )?;
        Ok((embeds * self.input_embed_scale, mask))
    }

    /// S2T encoder input (spec §4.4): for sample `i`, the first `lengths[i]` rows of
    /// `features` `[B, T, d_model]` followed by the gloss-embedding rows of `</s>` and the
    /// source language, zero-padded to `max(lengths) + 2`, all × `input_embed_scale`; the mask
    /// is 1 on those `lengths[i] + 2` positions. Only `gls_eos: gls` is supported.
    pub fn prepare_feature_inputs(
        &self,
        features: &Tensor,
        lengths: &[i64],
    ) -> Result<(Tensor, Tensor)> {
        if self.cfg.gls_eos != GlsEos::Gls {
            return Err(config_err(
                "gls_eos",
                "only `gls` is supported (the reference's `txt` relies on mBart_de's original ids)",
            ));
        }
        let size = features.size();
        let d_model = self.model.config().d_model;
        if size.len() != 3 || size[2] != d_model || size[0] != lengths.len() as i64 {
            return Err(arg_err(
                "features",
                format!(
                    "expected [{}, T, {d_model}] for {} lengths, got {size:?}",
                    lengths.len(),
                    lengths.len()
                ),
            ));
        }
        if let Some(&bad) = lengths.iter().find(|&&l| l < 0 || l > size[1]) {
            return Err(arg_err(
                "lengths",
                format!("every length must be in 0..={}, got {bad}", size[1]),
            ));
        }
        let eos = self.gloss_embedding.get(self.gloss_tokenizer.eos_id());
        let lang = self.gloss_embedding.get(self.gloss_tokenizer.lang_id());
        let suffix = Tensor::f_stack(&[eos, lang], 0)?.to_kind(features.kind());
        let max_len = lengths.iter().copied().max().unwrap_or(0) + 2;
        let mut rows = Vec::with_capacity(lengths.len());
        let mut mask = vec![0i64; lengths.len() * max_len as usize];
        for (i, &len) in lengths.iter().enumerate() {
            let valid = features.get(i as i64).narrow(0, 0, len);
            let mut parts = vec![valid, suffix.shallow_clone()];
            if max_len > len + 2 {
                parts.push(Tensor::zeros(
                    [max_len - len - 2, d_model],
                    (features.kind(), features.device()),
                ));
            }
            rows.push(Tensor::f_cat(&parts, 0)?);
            let start = i * max_len as usize;
            mask[start..start + len as usize + 2].fill(1);
        }
        let embeds = Tensor::f_stack(&rows, 0)? * self.input_embed_scale;
        let mask = Tensor::from_slice(&mask)
            .view([lengths.len() as i64, max_len])
            .to_device(features.device());
        Ok((embeds, mask))
    }

    /// Label-smoothed translation loss (sum over tokens / B, spec §4.5) of a batch of gloss
    /// strings and their target sentences; `train` switches dropout on.
    pub fn loss(&self, glosses: &[&str], texts: &[&str], train: bool) -> Result<Tensor> {
        if glosses.len() != texts.len() {
            return Err(arg_err(
                "texts",
                format!(
                    "{} sentences for {} gloss sequences",
                    texts.len(),
                    glosses.len()
                ),
            ));
        }
        let (embeds, mask) = self.embed_glosses(glosses)?;
        self.loss_from_embeds(&embeds, &mask, texts, train)
    }

    /// [`Self::loss`] for ready encoder inputs (e.g. [`Self::prepare_feature_inputs`]).
    pub fn loss_from_embeds(
        &self,
        inputs_embeds: &Tensor,
        attention_mask: &Tensor,
        texts: &[&str],
        train: bool,
    ) -> Result<Tensor> {
        let batch = inputs_embeds.size().first().copied().unwrap_or(0);
        if texts.is_empty() || batch != texts.len() as i64 {
            return Err(arg_err(
                "texts",
                format!(
                    "expected {batch} sentences (one per input row), got {}",
                    texts.len()
                ),
            ));
        }
        let targets = self.text_tokenizer.encode_targets(texts)?;
        let (labels, decoder_input_ids) = targets.to_tensors(self.device);
        let out = self.model.forward(
            EncoderInput::Embeds(inputs_embeds),
            Some(attention_mask),
            &decoder_input_ids,
            train,
        )?;
        Ok(label_smoothed_loss(
            &out.logits,
            &labels,
            self.text_tokenizer.pad_id(),
            self.cfg.label_smoothing,
        )?)
    }

    /// The generation settings of a decoding config (the reference's `generate` call:
    /// transformers 4.11 beam rules, forced EOS at `max_length - 1`, no early stopping).
    pub fn generate_options(opts: &TranslationDecodeConfig) -> GenerateOptions {
        GenerateOptions {
            num_beams: opts.num_beams,
            max_length: opts.max_length,
            length_penalty: opts.length_penalty,
            ..GenerateOptions::default()
        }
    }

    /// Sentences for a batch of gloss strings (decoded with the tokenizer's post-processing).
    pub fn translate(
        &self,
        glosses: &[&str],
        opts: &TranslationDecodeConfig,
    ) -> Result<Vec<String>> {
        self.translate_with(glosses, &Self::generate_options(opts))
    }

    /// [`Self::translate`] with explicit generation settings.
    pub fn translate_with(&self, glosses: &[&str], opts: &GenerateOptions) -> Result<Vec<String>> {
        if glosses.is_empty() {
            return Ok(Vec::new());
        }
        let (embeds, mask) = tch::no_grad(|| self.embed_glosses(glosses))?;
        let out = self.generate_from_embeds(&embeds, &mask, opts)?;
        self.decode(&out.sequences)
    }

    /// Generates from ready encoder inputs, starting every row with the target-language token
    /// (the reference's `sos_index`); eval mode, no gradients.
    pub fn generate_from_embeds(
        &self,
        inputs_embeds: &Tensor,
        attention_mask: &Tensor,
        opts: &GenerateOptions,
    ) -> Result<GenerateOutput> {
        let batch = inputs_embeds.size().first().copied().unwrap_or(0);
        let start = Tensor::full(
            [batch, 1],
            self.text_tokenizer.lang_id(),
            (Kind::Int64, inputs_embeds.device()),
        );
        Ok(self.model.generate(
            EncoderInput::Embeds(inputs_embeds),
            Some(attention_mask),
            &start,
            opts,
        )?)
    }

    /// Sentences of generated sequences `[B, L]` (first token dropped, special tokens skipped,
    /// the tokenizer's post-processing applied).
    pub fn decode(&self, sequences: &Tensor) -> Result<Vec<String>> {
        let sequences = sequences.to_device(Device::Cpu).to_kind(Kind::Int64);
        let rows = (0..sequences.size().first().copied().unwrap_or(0))
            .map(|i| Vec::<i64>::try_from(sequences.get(i)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(self.text_tokenizer.decode(&rows))
    }
}
