//! VisualHead: the gloss head on top of the S3D features.
//!
//! Mirrors SLRT `modelling/Visualhead.py` with `modelling/utils.py` (`MaskedNorm`,
//! `PositionalEncoding`, `PositionwiseFeedForward`); variables are named like the reference's
//! state dict (`fc1.weight`, `bn1.norm.running_mean`, `pe.pe`, `feedforward.pwff_layer.0.weight`,
//! `gloss_output_layer.weight`, …; prefixed `recognition_network.visual_head.` in checkpoints).
//!
//! ```text
//! x [B,T,832] → fc1 → bn1 (MaskedNorm) → ReLU → + PE → dropout
//!   → feedforward: x + Dropout(Conv1d(Dropout(ReLU(Conv1d(LN(x))))))   (k3, 'same')
//!   → layer_norm = gloss_feature [B,T,512] → gloss_output_layer = gloss_logits [B,T,V]
//! ```
//!
//! MaskedNorm in training mode normalises the valid frames only (batch statistics over all
//! valid rows of the batch, biased variance) and passes padded rows through unchanged; in eval
//! mode it applies the running statistics to every position.

use std::borrow::Borrow;

use tch::{nn, Device, Kind, TchError, Tensor};
use thiserror::Error;

use super::s3d::BatchNorm;

/// Rows of the positional-encoding buffer `pe.pe` (the reference's `max_len`).
pub const PE_MAX_LEN: i64 = 5000;
/// Epsilon of `bn1.norm` (`nn.SyncBatchNorm` default).
pub const BN_EPS: f64 = 1e-5;
/// Momentum of `bn1.norm` (`nn.SyncBatchNorm` default).
pub const BN_MOMENTUM: f64 = 0.1;
/// Epsilon of both LayerNorms.
pub const LN_EPS: f64 = 1e-6;
/// Dropout probability of every dropout in the head.
pub const DROPOUT: f64 = 0.1;

/// Errors of the visual head.
#[derive(Debug, Error)]
pub enum VisualHeadError {
    /// An invalid construction setting.
    #[error("VisualHead config: {0}")]
    Config(String),
    /// An input with an unexpected shape or kind.
    #[error("VisualHead input `{name}`: expected {expected}, got {shape:?} ({kind:?})")]
    Input {
        /// Which input.
        name: &'static str,
        /// What was expected.
        expected: String,
        /// The shape received.
        shape: Vec<i64>,
        /// The kind received.
        kind: Kind,
    },
    /// Training-mode MaskedNorm needs at least two valid frames in the batch.
    #[error("VisualHead MaskedNorm in training mode needs at least 2 valid frames, got {0}")]
    TooFewValidFrames(i64),
    /// An error raised by libtorch.
    #[error("VisualHead: libtorch error: {0}")]
    Torch(#[from] TchError),
}

/// Construction settings of [`VisualHead`] (the arguments of the reference's `VisualHead`).
#[derive(Debug, Clone, PartialEq)]
pub struct VisualHeadConfig {
    /// Gloss vocabulary size `V` (`len(gloss_tokenizer)`).
    pub cls_num: i64,
    /// Width of the input features (832).
    pub input_size: i64,
    /// Hidden width (512).
    pub hidden_size: i64,
    /// Feed-forward inner width (2048).
    pub ff_size: i64,
    /// Add the sinusoidal positional encoding.
    pub pe: bool,
    /// Kernel sizes of the feed-forward convolutions (`[3, 3]`; at least one).
    pub ff_kernel_sizes: Vec<i64>,
}

impl VisualHeadConfig {
    /// The reference's defaults (832 → 512, ff 2048, PE, kernels `[3, 3]`) for `cls_num` glosses.
    pub fn new(cls_num: i64) -> Self {
        VisualHeadConfig {
            cls_num,
            input_size: 832,
            hidden_size: 512,
            ff_size: 2048,
            pe: true,
            ff_kernel_sizes: vec![3, 3],
        }
    }

    /// The head of an experiment config (`model.RecognitionNetwork.visual_head`).
    pub fn from_config(config: &crate::config::VisualHeadConfig, cls_num: usize) -> Self {
        let to_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        VisualHeadConfig {
            cls_num: to_i64(cls_num),
            input_size: to_i64(config.input_size),
            hidden_size: to_i64(config.hidden_size),
            ff_size: to_i64(config.ff_size),
            pe: config.pe,
            ff_kernel_sizes: config.ff_kernelsize.0.iter().map(|&k| to_i64(k)).collect(),
        }
    }

    /// Checks sizes: all positive, an even hidden size when `pe`, at least one kernel.
    pub fn validate(&self) -> Result<(), VisualHeadError> {
        let sizes = [
            ("cls_num", self.cls_num),
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("ff_size", self.ff_size),
        ];
        for (name, value) in sizes {
            if value <= 0 {
                return Err(VisualHeadError::Config(format!(
                    "{name} must be positive, got {value}"
                )));
            }
        }
        if self.ff_kernel_sizes.is_empty() || self.ff_kernel_sizes.iter().any(|&k| k <= 0) {
            return Err(VisualHeadError::Config(format!(
                "ff_kernelsize must be a non-empty list of positive sizes, got {:?}",
                self.ff_kernel_sizes
            )));
        }
        if self.pe && self.hidden_size % 2 != 0 {
            return Err(VisualHeadError::Config(format!(
                "sin/cos positional encoding needs an even hidden_size, got {}",
                self.hidden_size
            )));
        }
        Ok(())
    }
}

/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: PyTorch's default init of linear/conv weights and biases.
fn torch_default_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// An affine layer (`Linear` or `Conv1d`) with PyTorch's default initialisation.
#[derive(Debug)]
struct Affine {
    weight: Tensor,
    bias: Tensor,
}

impl Affine {
    fn new(p: &nn::Path, weight_dims: &[i64]) -> Self {
        let fan_in: i64 = weight_dims.iter().skip(1).product();
        let init = torch_default_init(fan_in);
        Affine {
            weight: p.var("weight", weight_dims, init),
            bias: p.var("bias", &weight_dims[..1], init),
        }
    }

    fn linear(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_linear(&self.weight, Some(&self.bias))
    }

    /// Conv1d over `[B, C, T]` with PyTorch's `padding='same'` (zeros, extra pad on the right).
    fn conv1d_same(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_conv1d_padding(&self.weight, Some(&self.bias), [1], "same", [1], 1)
    }
}

/// A LayerNorm over the last dimension (`weight` 1, `bias` 0).
#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    size: i64,
}

impl LayerNorm {
    fn new(p: &nn::Path, size: i64) -> Self {
        LayerNorm {
            weight: p.var("weight", &[size], nn::Init::Const(1.0)),
            bias: p.var("bias", &[size], nn::Init::Const(0.0)),
            size,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_layer_norm(
            [self.size],
            Some(&self.weight),
            Some(&self.bias),
            LN_EPS,
            true,
        )
    }
}

/// `MaskedNorm(norm_type='sync_batch')`: a BatchNorm (`norm.*`) applied to valid frames only.
#[derive(Debug)]
pub struct MaskedNorm {
    /// The wrapped BatchNorm (`bn1.norm.*`).
    pub norm: BatchNorm,
    num_features: i64,
}

impl MaskedNorm {
    fn new(p: &nn::Path, num_features: i64) -> Self {
        MaskedNorm {
            norm: BatchNorm::new(p / "norm", num_features, BN_EPS, BN_MOMENTUM),
            num_features,
        }
    }

    /// `x [B, T, C]`, `mask` with `B·T` elements (`> 0` = valid).
    fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor, VisualHeadError> {
        let batch = x.size()[0];
        let rows = x.f_reshape([-1, self.num_features])?;
        let normed = if train {
            let index = mask
                .f_reshape([-1])?
                .f_gt(0)?
                .f_nonzero()?
                .f_squeeze_dim(1)?;
            let valid = index.size()[0];
            if valid < 2 {
                return Err(VisualHeadError::TooFewValidFrames(valid));
            }
            let selected = self
                .norm
                .forward_t(&rows.f_index_select(0, &index)?, true)?;
            rows.f_index_copy(0, &index, &selected)?
        } else {
            self.norm.forward_t(&rows, false)?
        };
        Ok(normed.f_reshape([batch, -1, self.num_features])?)
    }
}

/// The sinusoidal table `[1, max_len, size]`, computed in float32 exactly like the reference.
pub fn sinusoidal_table(max_len: i64, size: i64) -> Result<Tensor, TchError> {
    let cpu = (Kind::Float, Device::Cpu);
    let position = Tensor::f_arange(max_len, cpu)?.f_unsqueeze(1)?;
    let div_term = Tensor::f_arange_start_step(0, size, 2, cpu)?
        .f_mul_scalar(-(10000f64.ln() / size as f64))?
        .f_exp()?;
    let angles = position.f_mul(&div_term)?;
    Tensor::f_stack(&[angles.f_sin()?, angles.f_cos()?], 2)?.f_reshape([1, max_len, size])
}

/// `PositionwiseFeedForward` with `skip_connection=True`: pre-LN residual conv block.
#[derive(Debug)]
struct FeedForward {
    layer_norm: LayerNorm,
    convs: Vec<Affine>,
}

impl FeedForward {
    fn new(p: &nn::Path, size: i64, ff_size: i64, kernels: &[i64]) -> Self {
        let last = kernels.len() - 1;
        let convs = kernels
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let cin = if i == 0 { size } else { ff_size };
                let cout = if i == last { size } else { ff_size };
                // Sequential indices: each conv is followed by (ReLU, Dropout), the last by Dropout.
                Affine::new(&(p / "pwff_layer" / (3 * i)), &[cout, cin, k])
            })
            .collect();
        FeedForward {
            layer_norm: LayerNorm::new(&(p / "layer_norm"), size),
            convs,
        }
    }

    fn forward(&self, x: &Tensor, dropout: bool) -> Result<Tensor, TchError> {
        let mut y = self.layer_norm.forward(x)?.f_transpose(1, 2)?;
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            y = conv.conv1d_same(&y)?;
            if i != last {
                y = y.f_relu_()?;
            }
            y = y.f_dropout(DROPOUT, dropout)?;
        }
        y.f_transpose(1, 2)?.f_add(x)
    }
}

/// Outputs of [`VisualHead::forward_t`] (the reference's output dict).
#[derive(Debug)]
pub struct VisualHeadOutput {
    /// Head features after the final LayerNorm `[B, T, hidden]`.
    pub gloss_feature: Tensor,
    /// `gloss_feature` L2-normalised over the last dimension.
    pub gloss_feature_norm: Tensor,
    /// Gloss logits `[B, T, V]`.
    pub gloss_logits: Tensor,
    /// `log_softmax(gloss_logits)`.
    pub gloss_probabilities_log: Tensor,
    /// `softmax(gloss_logits)`.
    pub gloss_probabilities: Tensor,
    /// Output lengths (= the input lengths).
    pub valid_len_out: Tensor,
}

/// The gloss head: `fc1`, `bn1`, `pe`, `feedforward`, `layer_norm`, `gloss_output_layer`.
#[derive(Debug)]
pub struct VisualHead {
    fc1: Affine,
    bn1: MaskedNorm,
    pe: Option<Tensor>,
    feedforward: FeedForward,
    layer_norm: LayerNorm,
    gloss_output_layer: Affine,
    config: VisualHeadConfig,
    dropout_enabled: bool,
}

impl VisualHead {
    /// Creates the variables under `p` (`p.fc1.weight`, …, and the buffer `p.pe.pe`).
    pub fn new<'a>(
        p: impl Borrow<nn::Path<'a>>,
        config: &VisualHeadConfig,
    ) -> Result<Self, VisualHeadError> {
        config.validate()?;
        let p = p.borrow();
        let hidden = config.hidden_size;
        let pe = if config.pe {
            let table = sinusoidal_table(PE_MAX_LEN, hidden)?.f_to_device(p.device())?;
            Some((p / "pe").add("pe", table, false))
        } else {
            None
        };
        Ok(VisualHead {
            fc1: Affine::new(&(p / "fc1"), &[hidden, config.input_size]),
            bn1: MaskedNorm::new(&(p / "bn1"), hidden),
            pe,
            feedforward: FeedForward::new(
                &(p / "feedforward"),
                hidden,
                config.ff_size,
                &config.ff_kernel_sizes,
            ),
            layer_norm: LayerNorm::new(&(p / "layer_norm"), hidden),
            gloss_output_layer: Affine::new(&(p / "gloss_output_layer"), &[config.cls_num, hidden]),
            config: config.clone(),
            dropout_enabled: true,
        })
    }

    /// The construction settings.
    pub fn config(&self) -> &VisualHeadConfig {
        &self.config
    }

    /// Enables or disables every dropout (training-mode BN still applies). Default: enabled.
    pub fn set_dropout_enabled(&mut self, enabled: bool) {
        self.dropout_enabled = enabled;
    }

    /// Whether dropout is applied in training mode.
    pub fn dropout_enabled(&self) -> bool {
        self.dropout_enabled
    }

    /// The MaskedNorm (`bn1`), e.g. to read its running statistics.
    pub fn bn1(&self) -> &MaskedNorm {
        &self.bn1
    }

    /// Number of parameter elements (7,284,806 for V = 1094 with the defaults).
    pub fn num_parameters(&self) -> i64 {
        let mut tensors = vec![
            &self.fc1.weight,
            &self.fc1.bias,
            &self.bn1.norm.weight,
            &self.bn1.norm.bias,
            &self.feedforward.layer_norm.weight,
            &self.feedforward.layer_norm.bias,
            &self.layer_norm.weight,
            &self.layer_norm.bias,
            &self.gloss_output_layer.weight,
            &self.gloss_output_layer.bias,
        ];
        for conv in &self.feedforward.convs {
            tensors.extend([&conv.weight, &conv.bias]);
        }
        tensors.iter().map(|t| t.numel() as i64).sum()
    }

    /// Runs the head on `x [B, T, input_size]` with `mask` (`[B, 1, T]` or `[B, T]`, bool or
    /// integer, true/`> 0` = valid) and `valid_len_in [B]`.
    ///
    /// `train`: MaskedNorm uses (and updates) batch statistics of the valid frames, and dropout
    /// is applied when [`dropout_enabled`](Self::dropout_enabled).
    pub fn forward_t(
        &self,
        x: &Tensor,
        mask: &Tensor,
        valid_len_in: &Tensor,
        train: bool,
    ) -> Result<VisualHeadOutput, VisualHeadError> {
        let (batch, time) = self.check_inputs(x, mask, valid_len_in)?;
        let dropout = train && self.dropout_enabled;
        let h = self.fc1.linear(x)?;
        let h = self.bn1.forward_t(&h, mask, train)?.f_relu_()?;
        let h = match &self.pe {
            Some(pe) => h.f_add(&pe.f_narrow(1, 0, time)?)?,
            None => h,
        };
        let h = h.f_dropout(DROPOUT, dropout)?;
        let h = self.feedforward.forward(&h, dropout)?;
        let gloss_feature = self.layer_norm.forward(&h)?;
        let norm = gloss_feature
            .f_norm_scalaropt_dim(2.0, [-1], true)?
            .f_clamp_min(1e-12)?;
        let gloss_feature_norm = gloss_feature.f_div(&norm)?;
        let gloss_logits = self.gloss_output_layer.linear(&gloss_feature)?;
        debug_assert_eq!(gloss_logits.size()[..2], [batch, time]);
        Ok(VisualHeadOutput {
            gloss_probabilities_log: gloss_logits.f_log_softmax(-1, None::<Kind>)?,
            gloss_probabilities: gloss_logits.f_softmax(-1, None::<Kind>)?,
            gloss_feature,
            gloss_feature_norm,
            gloss_logits,
            valid_len_out: valid_len_in.shallow_clone(),
        })
    }

    /// Checks the input shapes; returns `(B, T)`.
    fn check_inputs(
        &self,
        x: &Tensor,
        mask: &Tensor,
        valid_len_in: &Tensor,
    ) -> Result<(i64, i64), VisualHeadError> {
        let input_size = self.config.input_size;
        let (batch, time) = match x.size()[..] {
            [b, t, d] if d == input_size && x.is_floating_point() => (b, t),
            _ => {
                return Err(VisualHeadError::Input {
                    name: "x",
                    expected: format!("a float tensor [B, T, {input_size}]"),
                    shape: x.size(),
                    kind: x.kind(),
                })
            }
        };
        let mask_ok = matches!(mask.size()[..], [b, 1, t] | [b, t] if b == batch && t == time);
        if !mask_ok {
            return Err(VisualHeadError::Input {
                name: "mask",
                expected: format!("[{batch}, 1, {time}] or [{batch}, {time}]"),
                shape: mask.size(),
                kind: mask.kind(),
            });
        }
        if valid_len_in.size() != [batch] {
            return Err(VisualHeadError::Input {
                name: "valid_len_in",
                expected: format!("[{batch}]"),
                shape: valid_len_in.size(),
                kind: valid_len_in.kind(),
            });
        }
        if self.pe.is_some() && time > PE_MAX_LEN {
            return Err(VisualHeadError::Input {
                name: "x",
                expected: format!("at most {PE_MAX_LEN} time steps (positional encoding)"),
                shape: x.size(),
                kind: x.kind(),
            });
        }
        Ok((batch, time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_and_names_match_the_reference() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = VisualHead::new(vs.root(), &VisualHeadConfig::new(1094)).expect("valid");
        assert_eq!(head.num_parameters(), 7_284_806);
        let trainable: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(trainable, 7_284_806);
        let names = vs.variables();
        assert_eq!(names["pe.pe"].size(), [1, PE_MAX_LEN, 512]);
        assert_eq!(
            names["feedforward.pwff_layer.0.weight"].size(),
            [2048, 512, 3]
        );
        assert_eq!(
            names["feedforward.pwff_layer.3.weight"].size(),
            [512, 2048, 3]
        );
        assert_eq!(names["bn1.norm.num_batches_tracked"].kind(), Kind::Int64);
        // 14 parameters + 3 BN buffers + pe.pe (the reference's state dict).
        assert_eq!(names.len(), 18);
    }

    #[test]
    fn train_mode_passes_padded_rows_through_and_rejects_bad_inputs() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = VisualHeadConfig {
            input_size: 6,
            hidden_size: 4,
            ff_size: 8,
            ..VisualHeadConfig::new(5)
        };
        let head = VisualHead::new(vs.root(), &config).expect("valid");
        let x = Tensor::randn([2, 3, 6], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 0, 0]).view([2, 1, 3]);
        let rows = x
            .reshape([-1, 6])
            .linear(&head.fc1.weight, Some(&head.fc1.bias));
        let normed = head
            .bn1
            .forward_t(&rows.view([2, 3, 4]), &mask, true)
            .expect("bn");
        let padded = normed.reshape([-1, 4]).narrow(0, 4, 2);
        assert!(padded.allclose(&rows.narrow(0, 4, 2), 0.0, 0.0, false));
        let lengths = Tensor::from_slice(&[3i64, 1]);
        let out = head.forward_t(&x, &mask, &lengths, true).expect("forward");
        assert_eq!(out.gloss_logits.size(), [2, 3, 5]);
        assert!(head
            .forward_t(&x, &mask.view([3, 2]), &lengths, false)
            .is_err());
        let none = Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu));
        assert!(matches!(
            head.forward_t(&x, &none, &lengths, true),
            Err(VisualHeadError::TooFewValidFrames(0))
        ));
        assert!(VisualHead::new(
            vs.root() / "odd",
            &VisualHeadConfig {
                hidden_size: 5,
                ..config
            }
        )
        .is_err());
    }
}
