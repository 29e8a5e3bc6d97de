//! mBART decoder (`MBartDecoder`) with an incremental key/value cache for generation.
//!
//! Token embeddings × `embed_scale` + learned positions (offset 2, counted from the cache
//! length) → `layernorm_embedding` → dropout → pre-LN layers (causal self-attention,
//! cross-attention over the encoder states, feed-forward) → `layer_norm`.

use tch::{nn, Tensor};

use super::attention::{
    additive_padding_mask, causal_mask, hf_layer_norm, push_layer_norm, Attention, KvState,
};
use super::config::MbartConfig;
use super::encoder::{embed_ids, skip_layer, FeedForward, LearnedPositions};
use super::error::{arg_err, Result};

/// Cached states of one decoder layer.
#[derive(Debug)]
pub struct LayerCache {
    /// Past self-attention keys/values (`None` before the first step).
    pub self_kv: Option<KvState>,
    /// Projected encoder states of the cross-attention, computed once.
    pub cross_kv: KvState,
}

/// Incremental decoding state: per-layer caches, the number of decoded positions and the
/// encoder padding mask (additive, `[B, 1, 1, S]`).
#[derive(Debug)]
pub struct DecoderCache {
    /// One entry per decoder layer.
    pub layers: Vec<LayerCache>,
    /// Positions already decoded.
    pub past_len: i64,
    /// Additive cross-attention mask.
    pub encoder_mask: Option<Tensor>,
}

impl DecoderCache {
    /// Keeps/duplicates batch rows: row `i` of the result is row `index[i]` (beam reordering,
    /// or expansion of the encoder states per beam).
    pub fn index_select(&mut self, index: &Tensor) {
        for layer in &mut self.layers {
            layer.self_kv = layer.self_kv.as_ref().map(|kv| kv.index_select(index));
            layer.cross_kv = layer.cross_kv.index_select(index);
        }
        self.encoder_mask = self.encoder_mask.as_ref().map(|m| m.index_select(0, index));
    }

    /// Selects rows of the cross-attention states and the encoder mask only (dropping
    /// finished batch entries; the self-attention states are selected by
    /// [`Self::reorder_self`]).
    pub fn select_cross(&mut self, index: &Tensor) {
        for layer in &mut self.layers {
            layer.cross_kv = layer.cross_kv.index_select(index);
        }
        self.encoder_mask = self.encoder_mask.as_ref().map(|m| m.index_select(0, index));
    }

    /// Reorders only the self-attention states, like HF's `_reorder_cache`: enough for beam
    /// search, where `index` only moves rows between the beams of one batch entry, whose
    /// cross-attention states are identical.
    pub fn reorder_self(&mut self, index: &Tensor) {
        for layer in &mut self.layers {
            layer.self_kv = layer.self_kv.as_ref().map(|kv| kv.index_select(index));
        }
    }
}

/// `MBartDecoderLayer`.
#[derive(Debug)]
pub struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: nn::LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: nn::LayerNorm,
    ffn: FeedForward,
    dropout: f64,
}

/// Where a decoder layer finds its cross-attention keys/values.
enum Cross<'a> {
    /// Project the encoder states now (training / full forward).
    Encoder(&'a Tensor),
    /// Use cached projections.
    Cached(&'a KvState),
}

impl DecoderLayer {
    /// Creates the layer's parameters under `p`.
    pub fn new(p: &nn::Path, cfg: &MbartConfig) -> Result<Self> {
        let attn = |name: &str| {
            Attention::new(
                p / name,
                cfg.d_model,
                cfg.decoder_attention_heads,
                cfg.attention_dropout,
                cfg.init_std,
            )
        };
        Ok(DecoderLayer {
            self_attn: attn("self_attn"),
            self_attn_layer_norm: hf_layer_norm(p / "self_attn_layer_norm", cfg.d_model),
            encoder_attn: attn("encoder_attn"),
            encoder_attn_layer_norm: hf_layer_norm(p / "encoder_attn_layer_norm", cfg.d_model),
            ffn: FeedForward::new(p, cfg, cfg.decoder_ffn_dim)?,
            dropout: cfg.dropout,
        })
    }

    /// One layer. With `past`, the new self-attention states are appended to it.
    fn forward(
        &self,
        xs: &Tensor,
        self_mask: Option<&Tensor>,
        past: Option<&mut Option<KvState>>,
        cross: Cross<'_>,
        cross_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let h = xs.apply(&self.self_attn_layer_norm);
        let new_kv = self.self_attn.project_kv(&h);
        let h = match past {
            Some(slot) => {
                let kv = match slot.as_ref() {
                    Some(old) => old.append(&new_kv),
                    None => new_kv,
                };
                let out = self.self_attn.attend(&h, &kv, self_mask, train);
                *slot = Some(kv);
                out
            }
            None => self.self_attn.attend(&h, &new_kv, self_mask, train),
        };
        let xs = xs + h.dropout(self.dropout, train);

        let h = xs.apply(&self.encoder_attn_layer_norm);
        let h = match cross {
            Cross::Encoder(enc) => {
                let kv = self.encoder_attn.project_kv(enc);
                self.encoder_attn.attend(&h, &kv, cross_mask, train)
            }
            Cross::Cached(kv) => self.encoder_attn.attend(&h, kv, cross_mask, train),
        };
        let xs = xs + h.dropout(self.dropout, train);
        self.ffn.forward(&xs, train)
    }

    fn named_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        self.self_attn
            .named_parameters(&format!("{prefix}.self_attn"), out);
        push_layer_norm(
            out,
            &format!("{prefix}.self_attn_layer_norm"),
            &self.self_attn_layer_norm,
        );
        self.encoder_attn
            .named_parameters(&format!("{prefix}.encoder_attn"), out);
        push_layer_norm(
            out,
            &format!("{prefix}.encoder_attn_layer_norm"),
            &self.encoder_attn_layer_norm,
        );
        self.ffn.named_parameters(prefix, out);
    }
}

/// `MBartDecoder`.
#[derive(Debug)]
pub struct MbartDecoder {
    embed_tokens: Tensor,
    embed_scale: f64,
    pad_token_id: i64,
    vocab_size: i64,
    embed_positions: LearnedPositions,
    layernorm_embedding: nn::LayerNorm,
    layers: Vec<DecoderLayer>,
    layer_norm: nn::LayerNorm,
    dropout: f64,
    layerdrop: f64,
}

impl MbartDecoder {
    /// Creates the decoder under `p` (`model.decoder`); `shared` is the tied token table.
    pub fn new(p: &nn::Path, cfg: &MbartConfig, shared: &Tensor) -> Result<Self> {
        let layers = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(&(p / "layers" / i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(MbartDecoder {
            embed_tokens: shared.shallow_clone(),
            embed_scale: cfg.embed_scale(),
            pad_token_id: cfg.pad_token_id,
            vocab_size: cfg.vocab_size,
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
            layerdrop: cfg.decoder_layerdrop,
        })
    }

    fn embed(&self, ids: &Tensor, past: i64) -> Result<Tensor> {
        let tokens = embed_ids(
            "decoder_input_ids",
            &self.embed_tokens,
            ids,
            self.pad_token_id,
            self.vocab_size,
        )? * self.embed_scale;
        let positions = self.embed_positions.forward(past, ids.size()[1])?;
        Ok((tokens + positions).apply(&self.layernorm_embedding))
    }

    /// Full (teacher-forced) pass: `ids` `[B, T]`, encoder states `[B, S, D]` with their 1/0
    /// mask `[B, S]`. No decoder padding mask (the reference passes none). Returns the last
    /// hidden state `[B, T, D]`.
    pub fn forward(
        &self,
        ids: &Tensor,
        encoder_hidden: &Tensor,
        encoder_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let mut h = self.embed(ids, 0)?.dropout(self.dropout, train);
        if encoder_hidden.size()[0] != ids.size()[0] {
            return Err(arg_err(
                "decoder_input_ids",
                format!(
                    "batch {} differs from the encoder batch {}",
                    ids.size()[0],
                    encoder_hidden.size()[0]
                ),
            ));
        }
        let t = ids.size()[1];
        let self_mask = (t > 1).then(|| causal_mask(t, 0, h.kind(), h.device()));
        let cross_mask = encoder_mask.map(|m| additive_padding_mask(m, h.kind(), h.device()));
        for layer in &self.layers {
            if skip_layer(self.layerdrop, train) {
                continue;
            }
            h = layer.forward(
                &h,
                self_mask.as_ref(),
                None,
                Cross::Encoder(encoder_hidden),
                cross_mask.as_ref(),
                train,
            );
        }
        Ok(h.apply(&self.layer_norm))
    }

    /// Starts incremental decoding: projects the encoder states for every layer's
    /// cross-attention once.
    pub fn init_cache(
        &self,
        encoder_hidden: &Tensor,
        encoder_mask: Option<&Tensor>,
    ) -> DecoderCache {
        DecoderCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerCache {
                    self_kv: None,
                    cross_kv: l.encoder_attn.project_kv(encoder_hidden),
                })
                .collect(),
            past_len: 0,
            encoder_mask: encoder_mask
                .map(|m| additive_padding_mask(m, encoder_hidden.kind(), encoder_hidden.device())),
        }
    }

    /// Incremental pass (eval mode): decodes the new tokens `ids` `[B, t]` after the cached
    /// positions, appends their self-attention states to `cache`, returns `[B, t, D]`.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut DecoderCache) -> Result<Tensor> {
        if cache.layers.len() != self.layers.len() {
            return Err(arg_err("cache", "cache was not made by this decoder"));
        }
        let past = cache.past_len;
        let mut h = self.embed(ids, past)?;
        let t = ids.size()[1];
        let self_mask = (t > 1).then(|| causal_mask(t, past, h.kind(), h.device()));
        for (layer, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
            h = layer.forward(
                &h,
                self_mask.as_ref(),
                Some(&mut lc.self_kv),
                Cross::Cached(&lc.cross_kv),
                cache.encoder_mask.as_ref(),
                false,
            );
        }
        cache.past_len += t;
        Ok(h.apply(&self.layer_norm))
    }

    /// Parameters with HF names under `prefix` (e.g. `model.decoder`), without the tied
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
