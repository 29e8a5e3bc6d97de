//! mBART encoder (`MBartEncoder`): (scaled token embeddings | given `inputs_embeds`) + learned
//! positions (offset 2) → `layernorm_embedding` → dropout → pre-LN layers → `layer_norm`.

use tch::{nn, Tensor};

use super::attention::{
    additive_padding_mask, hf_layer_norm, hf_linear, push_layer_norm, push_linear, Attention,
};
use super::config::{Activation, MbartConfig};
use super::error::{arg_err, Result};

/// What the encoder reads.
#[derive(Debug, Clone, Copy)]
pub enum EncoderInput<'a> {
    /// Token ids `[B, S]` (int64), embedded with the shared table and scaled by `embed_scale`.
    Ids(&'a Tensor),
    /// Ready embeddings `[B, S, d_model]`, used as they are (HF does not rescale them).
    Embeds(&'a Tensor),
}

/// Learned positional embedding with HF mBART's offset of 2 rows.
#[derive(Debug)]
pub struct LearnedPositions {
    weight: Tensor,
    max_positions: i64,
}

impl LearnedPositions {
    /// Table `embed_positions.weight` of `max_positions + 2` rows under `p`.
    pub fn new(p: nn::Path, max_positions: i64, dim: i64, init_std: f64) -> Self {
        let weight = p.var(
            "weight",
            &[max_positions + 2, dim],
            nn::Init::Randn {
                mean: 0.0,
                stdev: init_std,
            },
        );
        LearnedPositions {
            weight,
            max_positions,
        }
    }

    /// Rows for positions `past .. past + len` (`[len, dim]`).
    pub fn forward(&self, past: i64, len: i64) -> Result<Tensor> {
        if past + len > self.max_positions {
            return Err(arg_err(
                "sequence length",
                format!(
                    "positions up to {} exceed max_position_embeddings {}",
                    past + len,
                    self.max_positions
                ),
            ));
        }
        Ok(self.weight.narrow(0, past + 2, len))
    }

    /// The table.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// Pre-LN feed-forward block shared by encoder and decoder layers.
#[derive(Debug)]
pub(crate) struct FeedForward {
    pub(crate) fc1: nn::Linear,
    pub(crate) fc2: nn::Linear,
    pub(crate) final_layer_norm: nn::LayerNorm,
    activation: Activation,
    activation_dropout: f64,
    dropout: f64,
}

impl FeedForward {
    pub(crate) fn new(p: &nn::Path, cfg: &MbartConfig, ffn_dim: i64) -> Result<Self> {
        Ok(FeedForward {
            fc1: hf_linear(p / "fc1", cfg.d_model, ffn_dim, cfg.init_std),
            fc2: hf_linear(p / "fc2", ffn_dim, cfg.d_model, cfg.init_std),
            final_layer_norm: hf_layer_norm(p / "final_layer_norm", cfg.d_model),
            activation: cfg.activation()?,
            activation_dropout: cfg.activation_dropout,
            dropout: cfg.dropout,
        })
    }

    /// `x + dropout(fc2(dropout_act(act(fc1(LN(x))))))`.
    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = xs.apply(&self.final_layer_norm).apply(&self.fc1);
        let h = self
            .activation
            .apply(&h)
            .dropout(self.activation_dropout, train);
        let h = h.apply(&self.fc2).dropout(self.dropout, train);
        xs + h
    }

    pub(crate) fn named_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        push_linear(out, &format!("{prefix}.fc1"), &self.fc1);
        push_linear(out, &format!("{prefix}.fc2"), &self.fc2);
        push_layer_norm(
            out,
            &format!("{prefix}.final_layer_norm"),
            &self.final_layer_norm,
        );
    }
}

/// `MBartEncoderLayer`.
#[derive(Debug)]
pub struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: nn::LayerNorm,
    ffn: FeedForward,
    dropout: f64,
}

impl EncoderLayer {
    /// Creates the layer's parameters under `p` (`self_attn`, `self_attn_layer_norm`, `fc1`,
    /// `fc2`, `final_layer_norm`).
    pub fn new(p: &nn::Path, cfg: &MbartConfig) -> Result<Self> {
        Ok(EncoderLayer {
            self_attn: Attention::new(
                p / "self_attn",
                cfg.d_model,
                cfg.encoder_attention_heads,
                cfg.attention_dropout,
                cfg.init_std,
            ),
            self_attn_layer_norm: hf_layer_norm(p / "self_attn_layer_norm", cfg.d_model),
            ffn: FeedForward::new(p, cfg, cfg.encoder_ffn_dim)?,
            dropout: cfg.dropout,
        })
    }

    /// One pre-LN layer; `mask` is the additive padding mask.
    pub fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let h = xs.apply(&self.self_attn_layer_norm);
        let h = self
            .self_attn
            .self_attend(&h, mask, train)
            .dropout(self.dropout, train);
        self.ffn.forward(&(xs + h), train)
    }

    fn named_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        self.self_attn
            .named_parameters(&format!("{prefix}.self_attn"), out);
        push_layer_norm(
            out,
            &format!("{prefix}.self_attn_layer_norm"),
            &self.self_attn_layer_norm,
        );
        self.ffn.named_parameters(prefix, out);
    }
}

/// `MBartEncoder`.
#[derive(Debug)]
pub struct MbartEncoder {
    embed_tokens: Tensor,
    embed_scale: f64,
    pad_token_id: i64,
    vocab_size: i64,
    d_model: i64,
    embed_positions: LearnedPositions,
    layernorm_embedding: nn::LayerNorm,
    layers: Vec<EncoderLayer>,
    layer_norm: nn::LayerNorm,
    dropout: f64,
    layerdrop: f64,
}

impl MbartEncoder {
    /// Creates the encoder under `p` (`model.encoder`); `shared` is the tied token table.
    pub fn new(p: &nn::Path, cfg: &MbartConfig, shared: &Tensor) -> Result<Self> {
        let layers = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(&(p / "layers" / i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(MbartEncoder {
            embed_tokens: shared.shallow_clone(),
            embed_scale: cfg.embed_scale(),
            pad_token_id: cfg.pad_token_id,
            vocab_size: cfg.vocab_size,
            d_model: cfg.d_model,
            embed_positions: LearnedPositions::new(
                p / "embed_positions",
                cfg.max_position_embeddings,
                cfg.d_model,
                cfg.init_std,
            ),
            layernorm_embedding: hf_layer_norm(p / "layernorm_embedding", cfg.d_model),
            layers,
            layer_norm: hf_layer_norm(p / "layer_norm", cfg.d_model),
            dropout: cfg.dropout,
            layerdrop: cfg.encoder_layerdrop,
        })
    }

    /// Encodes `input` with the `[B, S]` 1/0 `attention_mask` (none = all valid); returns the
    /// last hidden state `[B, S, d_model]`.
    pub fn forward(
        &self,
        input: EncoderInput<'_>,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let embeds = match input {
            EncoderInput::Ids(ids) => {
                embed_ids(
                    "input_ids",
                    &self.embed_tokens,
                    ids,
                    self.pad_token_id,
                    self.vocab_size,
                )? * self.embed_scale
            }
            EncoderInput::Embeds(e) => {
                let size = e.size();
                if size.len() != 3 || size[2] != self.d_model {
                    return Err(arg_err(
                        "inputs_embeds",
                        format!("expected [B, S, {}], got {size:?}", self.d_model),
                    ));
                }
                let (kind, device) = (self.embed_tokens.kind(), self.embed_tokens.device());
                if e.kind() != kind || e.device() != device {
                    return Err(arg_err(
                        "inputs_embeds",
                        format!(
                            "expected {kind:?} on {device:?} like the model, got {:?} on {:?}",
                            e.kind(),
                            e.device()
                        ),
                    ));
                }
                e.shallow_clone()
            }
        };
        let (b, s) = (embeds.size()[0], embeds.size()[1]);
        let mask = match attention_mask {
            Some(m) => {
                if m.size() != [b, s] {
                    return Err(arg_err(
                        "attention_mask",
                        format!("expected [{b}, {s}], got {:?}", m.size()),
                    ));
                }
                Some(additive_padding_mask(m, embeds.kind(), embeds.device()))
            }
            None => None,
        };
        let positions = self.embed_positions.forward(0, s)?;
        let mut h = (embeds + positions)
            .apply(&self.layernorm_embedding)
            .dropout(self.dropout, train);
        for layer in &self.layers {
            if skip_layer(self.layerdrop, train) {
                continue;
            }
            h = layer.forward(&h, mask.as_ref(), train);
        }
        Ok(h.apply(&self.layer_norm))
    }

    /// Parameters with HF names under `prefix` (e.g. `model.encoder`), without the tied
    /// `embed_tokens`.
    pub fn named_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((
            format!("{prefix}.embed_positions.weight"),
            self.embed_positions.weight().shallow_clone(),
        ));
        push_layer_norm(
            out,
            &format!("{prefix}.layernorm_embedding"),
            &self.layernorm_embedding,
        );
        for (i, layer) in self.layers.iter().enumerate() {
            layer.named_parameters(&format!("{prefix}.layers.{i}"), out);
        }
        push_layer_norm(out, &format!("{prefix}.layer_norm"), &self.layer_norm);
    }
}

/// LayerDrop: in training, skip a layer with probability `p` (drawn from libtorch's generator).
pub(crate) fn skip_layer(p: f64, train: bool) -> bool {
    train
        && p > 0.0
        && Tensor::rand([1], (tch::Kind::Double, tch::Device::Cpu)).double_value(&[0]) < p
}

/// Looks up `ids` (int64 `[B, T]`, values in `0..vocab`) in the token table; the pad row gets
/// no gradient (`padding_idx`), like HF's `nn.Embedding(V, D, padding_idx)`.
pub(crate) fn embed_ids(
    name: &'static str,
    table: &Tensor,
    ids: &Tensor,
    pad: i64,
    vocab: i64,
) -> Result<Tensor> {
    if ids.dim() != 2 || ids.kind() != tch::Kind::Int64 {
        return Err(arg_err(
            name,
            format!(
                "expected int64 [B, T], got {:?} {:?}",
                ids.kind(),
                ids.size()
            ),
        ));
    }
    if ids.numel() > 0 {
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= vocab {
            return Err(arg_err(
                name,
                format!("ids must be in 0..{vocab}, found {lo}..={hi}"),
            ));
        }
    }
    Ok(Tensor::f_embedding(table, ids, pad, false, false)?)
}
