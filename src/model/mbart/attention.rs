//! Multi-head attention of mBART (`MBartAttention`): `q_proj`, `k_proj`, `v_proj`, `out_proj`,
//! queries scaled by `head_dim^-0.5` before the product, additive masks, dropout on the
//! attention probabilities in training.

use tch::{nn, Kind, Tensor};

/// Keys and values of one attention layer, `[B, heads, S, head_dim]` each: the projected encoder
/// states for cross-attention, or the past decoder states for self-attention.
#[derive(Debug)]
pub struct KvState {
    /// Keys `[B, H, S, Dh]`.
    pub key: Tensor,
    /// Values `[B, H, S, Dh]`.
    pub value: Tensor,
}

impl KvState {
    /// Appends `new` along the sequence axis.
    pub fn append(&self, new: &KvState) -> KvState {
        KvState {
            key: Tensor::cat(&[&self.key, &new.key], 2),
            value: Tensor::cat(&[&self.value, &new.value], 2),
        }
    }

    /// Selects rows of the batch axis (beam reordering / expansion).
    pub fn index_select(&self, index: &Tensor) -> KvState {
        KvState {
            key: self.key.index_select(0, index),
            value: self.value.index_select(0, index),
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.key.size()[2]
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A linear layer with HF initialisation (normal(0, init_std) weight, zero bias).
pub(crate) fn hf_linear(p: nn::Path, input: i64, output: i64, init_std: f64) -> nn::Linear {
    nn::linear(
        p,
        input,
        output,
        nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: init_std,
            },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        },
    )
}

/// A LayerNorm with eps 1e-5 (weight 1, bias 0).
pub(crate) fn hf_layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig::default())
}

/// Pushes `weight` and `bias` of a linear layer under `name`.
pub(crate) fn push_linear(out: &mut Vec<(String, Tensor)>, name: &str, l: &nn::Linear) {
    out.push((format!("{name}.weight"), l.ws.shallow_clone()));
    if let Some(b) = &l.bs {
        out.push((format!("{name}.bias"), b.shallow_clone()));
    }
}

/// Pushes `weight` and `bias` of a LayerNorm under `name`.
pub(crate) fn push_layer_norm(out: &mut Vec<(String, Tensor)>, name: &str, l: &nn::LayerNorm) {
    if let Some(w) = &l.ws {
        out.push((format!("{name}.weight"), w.shallow_clone()));
    }
    if let Some(b) = &l.bs {
        out.push((format!("{name}.bias"), b.shallow_clone()));
    }
}

/// The most negative finite value of a float kind (HF's `torch.finfo(dtype).min` mask value).
pub(crate) fn finfo_min(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// Turns a `[B, S]` 1/0 padding mask (any kind, any device) into the additive `[B, 1, 1, S]`
/// mask of HF's `_expand_mask` on `device`: 0 where attended, `finfo(kind).min` where masked.
pub fn additive_padding_mask(mask: &Tensor, kind: Kind, device: tch::Device) -> Tensor {
    let m = mask.to_device(device).to_kind(kind);
    let inverted = m.ones_like() - m;
    let fill = finfo_min(kind);
    inverted
        .masked_fill(&inverted.ne(0.0), fill)
        .unsqueeze(1)
        .unsqueeze(1)
}

/// Additive causal mask `[1, 1, T, past + T]`: `-inf` where a query would see a later position.
pub fn causal_mask(tgt_len: i64, past_len: i64, kind: Kind, device: tch::Device) -> Tensor {
    let q = Tensor::arange(tgt_len, (Kind::Int64, device)).unsqueeze(1) + past_len;
    let k = Tensor::arange(past_len + tgt_len, (Kind::Int64, device)).unsqueeze(0);
    Tensor::zeros([tgt_len, past_len + tgt_len], (kind, device))
        .masked_fill(&k.gt_tensor(&q), f64::NEG_INFINITY)
        .unsqueeze(0)
        .unsqueeze(0)
}

/// `MBartAttention` (self- or cross-attention).
#[derive(Debug)]
pub struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    num_heads: i64,
    head_dim: i64,
    scaling: f64,
    dropout: f64,
}

impl Attention {
    /// Creates the four projections under `p` (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
    /// `embed_dim` must be divisible by `num_heads` (checked by the config).
    pub fn new(p: nn::Path, embed_dim: i64, num_heads: i64, dropout: f64, init_std: f64) -> Self {
        let head_dim = embed_dim / num_heads;
        Attention {
            q_proj: hf_linear(&p / "q_proj", embed_dim, embed_dim, init_std),
            k_proj: hf_linear(&p / "k_proj", embed_dim, embed_dim, init_std),
            v_proj: hf_linear(&p / "v_proj", embed_dim, embed_dim, init_std),
            out_proj: hf_linear(&p / "out_proj", embed_dim, embed_dim, init_std),
            num_heads,
            head_dim,
            scaling: (head_dim as f64).powf(-0.5),
            dropout,
        }
    }

    /// `[B, T, D]` → `[B, H, T, Dh]`.
    fn split_heads(&self, xs: &Tensor) -> Tensor {
        let (b, t) = (xs.size()[0], xs.size()[1]);
        xs.view([b, t, self.num_heads, self.head_dim])
            .transpose(1, 2)
    }

    /// Projects `xs` `[B, S, D]` to keys and values.
    pub fn project_kv(&self, xs: &Tensor) -> KvState {
        KvState {
            key: self.split_heads(&xs.apply(&self.k_proj)),
            value: self.split_heads(&xs.apply(&self.v_proj)),
        }
    }

    /// Attends from `hidden` `[B, T, D]` to `kv`; `mask` is additive and broadcastable to
    /// `[B, H, T, S]`. Returns `[B, T, D]` after `out_proj`.
    pub fn attend(
        &self,
        hidden: &Tensor,
        kv: &KvState,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let (b, t, d) = (hidden.size()[0], hidden.size()[1], hidden.size()[2]);
        let q = self.split_heads(&(hidden.apply(&self.q_proj) * self.scaling));
        let mut weights = q.matmul(&kv.key.transpose(2, 3));
        if let Some(m) = mask {
            weights += m;
        }
        let probs = weights
            .softmax(-1, weights.kind())
            .dropout(self.dropout, train);
        probs
            .matmul(&kv.value)
            .transpose(1, 2)
            .reshape([b, t, d])
            .apply(&self.out_proj)
    }

    /// Self-attention without cache.
    pub fn self_attend(&self, hidden: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let kv = self.project_kv(hidden);
        self.attend(hidden, &kv, mask, train)
    }

    /// Parameters with names relative to this layer (`q_proj.weight`, …).
    pub fn named_parameters(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        push_linear(out, &format!("{name}.q_proj"), &self.q_proj);
        push_linear(out, &format!("{name}.k_proj"), &self.k_proj);
        push_linear(out, &format!("{name}.v_proj"), &self.v_proj);
        push_linear(out, &format!("{name}.out_proj"), &self.out_proj);
    }
}
