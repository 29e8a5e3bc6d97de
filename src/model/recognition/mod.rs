//! The reference's `RecognitionNetwork` (Sign2Gloss): S3D backbone → visual head → CTC.
//!
//! Mirrors SLRT `modelling/recognition.py` for the SingleStream model (RGB only, no pyramid,
//! `fuse_method: empty`). Built under the VarStore path the caller passes (normally
//! `vs.root() / "recognition_network"`), the variables carry the names of the reference's
//! `model_state` (spec §2.3):
//!
//! ```text
//! recognition_network.visual_backbone.backbone.base.{0..12}.…   S3D blocks 1–4 (+ BN buffers)
//! recognition_network.visual_head.{fc1,bn1.norm,pe.pe,feedforward,layer_norm,gloss_output_layer}.…
//!
//! videos [B,3,T,H,W] ─S3D─▶ head_rgb_input [B,T/4,832] ─VisualHead─▶ gloss_logits [B,T/4,V]
//!                                                            └ log_softmax ─▶ CTC loss / beam decode
//! ```
//!
//! * **Video input** ([`RecognitionNetwork::new`], S2G): the backbone runs, lengths become
//!   `floor(len · T' / T)`.
//! * **Feature input** ([`RecognitionNetwork::new_feature_input`], S2T): the reference builds no
//!   backbone at all and feeds the extracted S3D features to the head
//!   ([`RecognitionNetwork::forward_features_t`]); lengths pass through.
//! * **`freeze: true`** (`model.RecognitionNetwork.freeze`, `model.py` in the reference): every
//!   parameter gets `requires_grad = false` and the network always runs in eval mode (running
//!   BN statistics, no dropout), under `no_grad`.
//! * **Pretrained S3D** (`s3d.pretrained_ckpt`): `scratch` means random initialisation; anything
//!   else is a directory (or file) read by [`RecognitionNetwork::load_pretrained_backbone`].
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test recognition
//! ```

mod pretrained;

use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, TchError, Tensor};
use thiserror::Error;

use crate::config::{GlossFeatureSource, RecognitionNetworkConfig};
use crate::model::ctc::{decode_batch, recognition_ctc_loss, CtcError};
use crate::model::import::TorchFileError;
use crate::model::s3d::{S3dBackbone, S3dBackboneConfig, S3dError};
use crate::model::visual_head::{VisualHead, VisualHeadConfig, VisualHeadError, VisualHeadOutput};
use crate::train::checkpoint::CheckpointError;

pub use pretrained::{resolve_pretrained_file, PRETRAINED_EXTENSIONS};

/// Sub-path of the S3D inside the network (`S3D_backbone` module attribute).
pub const VISUAL_BACKBONE: &str = "visual_backbone";
/// Sub-path of the head inside the network.
pub const VISUAL_HEAD: &str = "visual_head";

/// Errors of the recognition network.
#[derive(Debug, Error)]
pub enum RecognitionError {
    /// The S3D backbone rejected its settings or input.
    #[error("recognition network: {0}")]
    S3d(#[from] S3dError),
    /// The visual head rejected its settings or input.
    #[error("recognition network: {0}")]
    Head(#[from] VisualHeadError),
    /// CTC loss or decoding rejected its input.
    #[error("recognition network: CTC: {0}")]
    Ctc(#[from] CtcError),
    /// A visual-head parameter the reference has was not created under the network's path.
    #[error("recognition network: the visual head created no variable `{0}`")]
    MissingHeadParameter(String),
    /// A video-only operation on a network built for feature input (no S3D).
    #[error("recognition network: `{0}` needs the S3D backbone, but this network was built for feature input")]
    NoBackbone(&'static str),
    /// Extracted features of the wrong shape, or lengths that are not `[B]` integers.
    #[error("recognition network: {what}: expected {expected}, got {shape:?} ({kind:?})")]
    Input {
        /// Which input.
        what: &'static str,
        /// The expected shape.
        expected: String,
        /// The shape received.
        shape: Vec<i64>,
        /// The kind received.
        kind: Kind,
    },
    /// `s3d.pretrained_ckpt` names nothing usable (missing path, no or several candidates).
    #[error("pretrained S3D checkpoint `{}`: {reason}", path.display())]
    PretrainedPath {
        /// The configured path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint file could not be read (the message names the file; boxed to keep the
    /// error small).
    #[error("pretrained S3D checkpoint: {0}")]
    ReadCheckpoint(Box<TorchFileError>),
    /// The checkpoint holds no tensor under any of the reference's S3D key conventions.
    #[error(
        "pretrained S3D checkpoint `{}` has no S3D weights: no key starts with `backbone.base.`, \
         `module.base.` or `recognition_network.visual_backbone.backbone.base.` \
         ({count} tensors, first keys: {sample})",
        path.display()
    )]
    NoBackboneKeys {
        /// The file.
        path: PathBuf,
        /// Number of tensors in its state dict.
        count: usize,
        /// The first few keys.
        sample: String,
    },
    /// S3D weights whose shapes differ from the model's (nothing was copied).
    #[error("pretrained S3D checkpoint `{}`: shapes differ from the model: {details}", path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// `name: model [..], checkpoint [..]` entries.
        details: String,
    },
    /// S3D-looking keys, but none names a variable of this backbone.
    #[error("pretrained S3D checkpoint `{}`: no tensor matched a backbone variable: {report}", path.display())]
    NothingLoaded {
        /// The file.
        path: PathBuf,
        /// The load report.
        report: String,
    },
    /// Copying into the VarStore failed (boxed to keep the error small).
    #[error("pretrained S3D checkpoint: {0}")]
    Checkpoint(Box<CheckpointError>),
    /// An error raised by libtorch.
    #[error("recognition network: libtorch error: {0}")]
    Torch(#[from] TchError),
}

impl From<TorchFileError> for RecognitionError {
    fn from(error: TorchFileError) -> Self {
        RecognitionError::ReadCheckpoint(Box::new(error))
    }
}

impl From<CheckpointError> for RecognitionError {
    fn from(error: CheckpointError) -> Self {
        RecognitionError::Checkpoint(Box::new(error))
    }
}

/// Outputs of [`RecognitionNetwork::forward_t`] (the reference's output dict, single stream).
#[derive(Debug)]
pub struct RecognitionOutput {
    /// Gloss logits `[B, T', V]`.
    pub gloss_logits: Tensor,
    /// `log_softmax(gloss_logits)` `[B, T', V]` (the CTC input).
    pub gloss_probabilities_log: Tensor,
    /// The head output named by `gloss_feature_ensemble` (default `gloss_feature`
    /// `[B, T', hidden]`), what the VLMapper reads in S2T.
    pub gloss_feature: Tensor,
    /// The head's input: S3D block-4 output mean-pooled over space `[B, T', 832]` (what feature
    /// extraction stores), or the given features in feature mode.
    pub head_rgb_input: Tensor,
    /// Valid output frames per sample, int64 `[B]` (the reference's `input_lengths`).
    pub valid_len_out: Tensor,
}

/// S3D + visual head with the reference's parameter names, freezing and pretrained import.
#[derive(Debug)]
pub struct RecognitionNetwork {
    backbone: Option<S3dBackbone>,
    head: VisualHead,
    head_params: Vec<Tensor>,
    gloss_feature_source: GlossFeatureSource,
    frozen: bool,
    pretrained_ckpt: Option<PathBuf>,
    /// VarStore name prefix of the backbone, e.g. `recognition_network.visual_backbone.`.
    backbone_prefix: String,
}

impl RecognitionNetwork {
    /// The S2G network for video input: `p.visual_backbone.backbone.base.*` (blocks
    /// `1..=s3d.use_block`, blocks `1..=s3d.freeze_block` frozen) and `p.visual_head.*` with
    /// `num_glosses` classes.
    ///
    /// The head's input width is the backbone's output width (832 for 4 blocks; the reference
    /// forces 832 whatever `visual_head.input_size` says). Weights are random; load the
    /// configured S3D with [`load_configured_backbone`](Self::load_configured_backbone).
    pub fn new(
        p: &nn::Path,
        cfg: &RecognitionNetworkConfig,
        num_glosses: usize,
    ) -> Result<Self, RecognitionError> {
        let s3d = S3dBackboneConfig::from_config(&cfg.s3d);
        let mut backbone = S3dBackbone::new(p / VISUAL_BACKBONE / "backbone", &s3d)?;
        if let Some(momentum) = cfg.s3d.bn_momentum {
            backbone.set_bn_momentum(momentum);
        }
        let input_size = backbone.out_channels();
        Self::build(p, cfg, num_glosses, Some(backbone), input_size)
    }

    /// The S2T network for extracted features (`input_type='feature'` in the reference): no S3D
    /// is built, only `p.visual_head.*`, whose input width is `visual_head.input_size`.
    pub fn new_feature_input(
        p: &nn::Path,
        cfg: &RecognitionNetworkConfig,
        num_glosses: usize,
    ) -> Result<Self, RecognitionError> {
        let input_size = i64::try_from(cfg.visual_head.input_size).unwrap_or(i64::MAX);
        Self::build(p, cfg, num_glosses, None, input_size)
    }

    fn build(
        p: &nn::Path,
        cfg: &RecognitionNetworkConfig,
        num_glosses: usize,
        backbone: Option<S3dBackbone>,
        input_size: i64,
    ) -> Result<Self, RecognitionError> {
        let head_cfg = VisualHeadConfig {
            input_size,
            ..VisualHeadConfig::from_config(&cfg.visual_head, num_glosses)
        };
        let head_path = p / VISUAL_HEAD;
        let head = VisualHead::new(&head_path, &head_cfg)?;
        let head_params = head_parameter_names(&head_cfg)
            .into_iter()
            .map(|name| {
                lookup(&head_path, &name).ok_or(RecognitionError::MissingHeadParameter(name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut backbone_prefix: String = p.components().map(|c| format!("{c}.")).collect();
        backbone_prefix.push_str(VISUAL_BACKBONE);
        backbone_prefix.push('.');
        let mut network = RecognitionNetwork {
            backbone,
            head,
            head_params,
            gloss_feature_source: cfg.gloss_feature_ensemble,
            frozen: cfg.freeze,
            pretrained_ckpt: cfg.s3d.pretrained_dir().map(Path::to_path_buf),
            backbone_prefix,
        };
        if network.frozen {
            network.freeze_all()?;
        }
        Ok(network)
    }

    /// Whether the whole network is frozen (`freeze: true`).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Whether the network has an S3D (video input).
    pub fn has_backbone(&self) -> bool {
        self.backbone.is_some()
    }

    /// The S3D backbone, if built.
    pub fn backbone(&self) -> Option<&S3dBackbone> {
        self.backbone.as_ref()
    }

    /// The visual head.
    pub fn head(&self) -> &VisualHead {
        &self.head
    }

    /// All parameters (S3D conv weights and BN affine, head weights), frozen ones included;
    /// buffers (BN running statistics, `pe.pe`) are not parameters.
    pub fn parameters(&self) -> Vec<Tensor> {
        let mut params = self
            .backbone
            .as_ref()
            .map(S3dBackbone::parameters)
            .unwrap_or_default();
        params.extend(self.head_params.iter().map(Tensor::shallow_clone));
        params
    }

    /// The configured pretrained S3D (`s3d.pretrained_ckpt`), `None` for `scratch`.
    pub fn pretrained_checkpoint(&self) -> Option<&Path> {
        self.pretrained_ckpt.as_deref()
    }

    /// Runs the S3D and the head on `videos [B, 3, T, H, W]` with `lengths [B]` (valid input
    /// frames, integer). `train`: training-mode BN (except frozen blocks) and dropout; ignored
    /// (eval mode, no gradients) when the network is frozen.
    pub fn forward_t(
        &self,
        videos: &Tensor,
        lengths: &Tensor,
        train: bool,
    ) -> Result<RecognitionOutput, RecognitionError> {
        let backbone = self
            .backbone
            .as_ref()
            .ok_or(RecognitionError::NoBackbone("forward_t"))?;
        let train = train && !self.frozen;
        self.maybe_no_grad(|| {
            let s3d = backbone.forward_t(videos, lengths, train)?;
            self.head_forward(s3d.sgn, &s3d.sgn_mask, s3d.valid_len_out, train)
        })
    }

    /// Runs the head on extracted S3D features `[B, T, input_size]` with `lengths [B]` (the
    /// reference's feature mode: mask `t < len`, output lengths = `lengths`).
    pub fn forward_features_t(
        &self,
        features: &Tensor,
        lengths: &Tensor,
        train: bool,
    ) -> Result<RecognitionOutput, RecognitionError> {
        let input_size = self.head.config().input_size;
        let (batch, time) = match features.size()[..] {
            [b, t, d] if d == input_size && features.is_floating_point() => (b, t),
            _ => {
                return Err(RecognitionError::Input {
                    what: "features",
                    expected: format!("a float tensor [B, T, {input_size}]"),
                    shape: features.size(),
                    kind: features.kind(),
                })
            }
        };
        if lengths.size() != [batch] || lengths.is_floating_point() {
            return Err(RecognitionError::Input {
                what: "lengths",
                expected: format!("an integer tensor [{batch}]"),
                shape: lengths.size(),
                kind: lengths.kind(),
            });
        }
        let train = train && !self.frozen;
        self.maybe_no_grad(|| {
            let lengths = lengths
                .f_to_device(features.device())?
                .f_to_kind(Kind::Int64)?;
            let mask = Tensor::f_arange(time, (Kind::Int64, features.device()))?
                .f_view([1, 1, time])?
                .f_lt_tensor(&lengths.f_view([batch, 1, 1])?)?;
            self.head_forward(features.shallow_clone(), &mask, lengths, train)
        })
    }

    fn maybe_no_grad<T>(
        &self,
        f: impl FnOnce() -> Result<T, RecognitionError>,
    ) -> Result<T, RecognitionError> {
        if self.frozen {
            tch::no_grad(f)
        } else {
            f()
        }
    }

    fn head_forward(
        &self,
        head_rgb_input: Tensor,
        mask: &Tensor,
        valid_len_out: Tensor,
        train: bool,
    ) -> Result<RecognitionOutput, RecognitionError> {
        let VisualHeadOutput {
            gloss_feature,
            gloss_feature_norm,
            gloss_logits,
            gloss_probabilities_log,
            gloss_probabilities,
            ..
        } = self
            .head
            .forward_t(&head_rgb_input, mask, &valid_len_out, train)?;
        let gloss_feature = match self.gloss_feature_source {
            GlossFeatureSource::GlossFeature => gloss_feature,
            GlossFeatureSource::GlossFeatureNorm => gloss_feature_norm,
            GlossFeatureSource::GlossLogits => gloss_logits.shallow_clone(),
            GlossFeatureSource::GlossProbabilities => gloss_probabilities,
            GlossFeatureSource::GlossProbabilitiesLog => gloss_probabilities_log.shallow_clone(),
        };
        Ok(RecognitionOutput {
            gloss_logits,
            gloss_probabilities_log,
            gloss_feature,
            head_rgb_input,
            valid_len_out,
        })
    }

    /// The reference's recognition loss on `out`: CTC (blank 0, `zero_infinity`) summed over
    /// the batch and divided by `B`, with `out.valid_len_out` as input lengths.
    /// `gloss_labels [B, S]` (padding ignored), `gloss_lengths [B]`.
    pub fn ctc_loss(
        &self,
        out: &RecognitionOutput,
        gloss_labels: &Tensor,
        gloss_lengths: &Tensor,
    ) -> Result<Tensor, RecognitionError> {
        Ok(recognition_ctc_loss(
            &out.gloss_probabilities_log,
            &out.valid_len_out,
            gloss_labels,
            gloss_lengths,
        )?)
    }

    /// The reference's `decode`: TF-exact CTC prefix beam search on `out.gloss_logits` over the
    /// first `valid_len_out[b]` frames, duplicates merged. Returns gloss ids per sample.
    pub fn decode(
        &self,
        out: &RecognitionOutput,
        beam_size: usize,
    ) -> Result<Vec<Vec<i64>>, RecognitionError> {
        let lengths = out
            .valid_len_out
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Int64)?;
        let lengths = Vec::<i64>::try_from(&lengths)?;
        Ok(decode_batch(&out.gloss_logits, &lengths, beam_size)?)
    }

    /// Freezes S3D blocks `1..=k` (0 = none) and unfreezes the others; when the whole network is
    /// frozen every parameter stays frozen (the count is still recorded).
    pub fn set_frozen_blocks(&mut self, k: usize) -> Result<(), RecognitionError> {
        let backbone = self
            .backbone
            .as_mut()
            .ok_or(RecognitionError::NoBackbone("set_frozen_blocks"))?;
        backbone.set_frozen_blocks(k)?;
        if self.frozen {
            self.freeze_all()?;
        }
        Ok(())
    }

    /// Number of frozen S3D blocks (0 without a backbone).
    pub fn frozen_blocks(&self) -> usize {
        self.backbone.as_ref().map_or(0, S3dBackbone::frozen_blocks)
    }

    /// Enables or disables the head's dropout in training mode (default: enabled).
    pub fn set_dropout_enabled(&mut self, on: bool) {
        self.head.set_dropout_enabled(on);
    }

    fn freeze_all(&mut self) -> Result<(), RecognitionError> {
        for param in self.parameters() {
            let mut param = param;
            param.zero_grad();
            let _ = param.f_set_requires_grad(false)?;
        }
        Ok(())
    }
}

/// The visual head's parameters (not buffers) as the reference names them, relative to the
/// head (spec §2.3); the feed-forward convs sit at `pwff_layer.{0,3,…}`.
fn head_parameter_names(cfg: &VisualHeadConfig) -> Vec<String> {
    let mut modules = vec![
        "fc1".to_string(),
        "bn1.norm".to_string(),
        "feedforward.layer_norm".to_string(),
    ];
    modules.extend(
        (0..cfg.ff_kernel_sizes.len()).map(|i| format!("feedforward.pwff_layer.{}", 3 * i)),
    );
    modules.extend(["layer_norm".to_string(), "gloss_output_layer".to_string()]);
    modules
        .iter()
        .flat_map(|m| [format!("{m}.weight"), format!("{m}.bias")])
        .collect()
}

/// The variable `a.b.c` below `p`.
fn lookup(p: &nn::Path, name: &str) -> Option<Tensor> {
    let mut parts: Vec<&str> = name.split('.').collect();
    let last = parts.pop()?;
    let path = parts
        .into_iter()
        .fold(p.clone(), |path, part| path.sub(part));
    path.get(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parameter_names_follow_the_reference() {
        let names = head_parameter_names(&VisualHeadConfig::new(10));
        assert_eq!(names.len(), 14);
        assert!(names.contains(&"feedforward.pwff_layer.3.bias".to_string()));
        assert!(names.contains(&"bn1.norm.weight".to_string()));
    }

    #[test]
    fn errors_stay_small() {
        // Callers wrap this error in their own enums; keep it well under clippy's 128 bytes.
        assert!(std::mem::size_of::<RecognitionError>() <= 96);
    }
}
