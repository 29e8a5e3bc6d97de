//! S3D backbone (blocks 1–5) with the reference's frozen-block semantics.
//!
//! Mirrors SLRT `modelling/models_3d/S3D/model.py` (`S3Dsup.base`, `SepConv3d`, `BasicConv3d`,
//! `Mixed_*`) and `modelling/S3D.py` (`S3D_backbone`): the layers live in `base.{i}` with the
//! reference's module indices, so a caller that builds the backbone under
//! `recognition_network.visual_backbone.backbone` gets the checkpoint's names, e.g.
//! `recognition_network.visual_backbone.backbone.base.0.conv_s.weight`.
//!
//! ```text
//! video [B,3,T,H,W]
//!   base.0        SepConv3d(3→64, k7, s2)                              block 1
//!   base.1..3     MaxPool(1,3,3) · BasicConv3d(64→64) · SepConv3d(64→192)   block 2
//!   base.4..6     MaxPool(1,3,3) · Mixed_3b · Mixed_3c                  block 3 (480)
//!   base.7..12    MaxPool(3,3,3) · Mixed_4b..4f                         block 4 (832)
//!   base.13..15   MaxPool(2,2,2) · Mixed_5b · Mixed_5c                  block 5 (1024)
//! feat [B,C,T',H',W'] → mean over H',W' → sgn [B,T',C]
//! ```
//!
//! Frozen blocks (`freeze_block = k` freezes blocks `1..=k`, i.e. `base[0..=END[k]]`) have
//! `requires_grad = false` and always run in eval mode: their BatchNorms normalise with the
//! running statistics and never update them, even when the rest trains. Every other BatchNorm
//! in training mode normalises with the batch statistics (biased variance) and updates its
//! running statistics with momentum 0.001 and the unbiased variance, like `torch.nn.BatchNorm3d`.
//! (The reference wraps them in `SyncBatchNorm`; statistics across ranks are not handled here.)

mod layers;

use std::borrow::Borrow;

use tch::{nn, Kind, TchError, Tensor};
use thiserror::Error;

pub use layers::BatchNorm;
use layers::{
    BasicConv3d, Layer, MaxPool3d, Mixed, SepConv3d, MIXED_3B, MIXED_3C, MIXED_4B, MIXED_4C,
    MIXED_4D, MIXED_4E, MIXED_4F, MIXED_5B, MIXED_5C,
};

/// BatchNorm epsilon of every S3D BatchNorm3d.
pub const BN_EPS: f64 = 1e-3;
/// BatchNorm momentum of every S3D BatchNorm3d.
pub const BN_MOMENTUM: f64 = 0.001;
/// Number of S3D blocks the reference can build.
pub const MAX_BLOCKS: usize = 5;
/// Index in `base` of the last layer of block `k` at position `k - 1` (S3D.py `END_POINT2BLOCK`).
pub const BLOCK_END_INDEX: [usize; MAX_BLOCKS] = [0, 3, 6, 12, 15];
/// Output channels after block `k` at position `k - 1` (S3D.py `BLOCK2SIZE`).
pub const BLOCK_OUT_CHANNELS: [i64; MAX_BLOCKS] = [64, 192, 480, 832, 1024];

/// Errors of the S3D backbone.
#[derive(Debug, Error)]
pub enum S3dError {
    /// `use_block` outside `1..=5`.
    #[error("S3D use_block must be in 1..={MAX_BLOCKS}, got {0}")]
    UseBlock(usize),
    /// `freeze_block` larger than `use_block`.
    #[error("S3D freeze_block must be in 0..={use_block} (use_block), got {freeze_block}")]
    FreezeBlock {
        /// The requested number of frozen blocks.
        freeze_block: usize,
        /// The number of blocks built.
        use_block: usize,
    },
    /// A non-positive channel count or block-5 temporal stride.
    #[error("S3D {what} must be positive, got {value}")]
    NonPositive {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: i64,
    },
    /// The video is not a floating-point `[B, C, T, H, W]` tensor.
    #[error(
        "S3D input video must be a float tensor [B, {channels}, T, H, W], got {shape:?} ({kind:?})"
    )]
    Video {
        /// The expected number of channels.
        channels: i64,
        /// The shape received.
        shape: Vec<i64>,
        /// The element kind received.
        kind: Kind,
    },
    /// `sgn_lengths` is not an integer tensor `[B]`.
    #[error("S3D sgn_lengths must be an integer tensor [{batch}], got {shape:?} ({kind:?})")]
    Lengths {
        /// The batch size of the video.
        batch: i64,
        /// The shape received.
        shape: Vec<i64>,
        /// The element kind received.
        kind: Kind,
    },
    /// An error raised by libtorch.
    #[error("S3D: libtorch error: {0}")]
    Torch(#[from] TchError),
}

/// Construction settings of [`S3dBackbone`] (the arguments of the reference's `S3D_backbone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3dBackboneConfig {
    /// Input channels (3 for RGB).
    pub in_channels: i64,
    /// Number of blocks built, `1..=5`.
    pub use_block: usize,
    /// Blocks `1..=freeze_block` are frozen; 0 freezes nothing.
    pub freeze_block: usize,
    /// Temporal stride of the block-5 max-pool (the reference's `stride`, default 2).
    pub stride: i64,
}

impl Default for S3dBackboneConfig {
    /// The reference constructor's defaults: RGB, 5 blocks, nothing frozen, stride 2.
    fn default() -> Self {
        S3dBackboneConfig {
            in_channels: 3,
            use_block: MAX_BLOCKS,
            freeze_block: 0,
            stride: 2,
        }
    }
}

impl S3dBackboneConfig {
    /// The backbone of an experiment config (`model.RecognitionNetwork.s3d`), RGB input.
    pub fn from_config(config: &crate::config::S3dConfig) -> Self {
        S3dBackboneConfig {
            use_block: config.use_block,
            freeze_block: config.freeze_block,
            ..Self::default()
        }
    }

    /// Checks the ranges of every setting.
    pub fn validate(&self) -> Result<(), S3dError> {
        if !(1..=MAX_BLOCKS).contains(&self.use_block) {
            return Err(S3dError::UseBlock(self.use_block));
        }
        if self.freeze_block > self.use_block {
            return Err(S3dError::FreezeBlock {
                freeze_block: self.freeze_block,
                use_block: self.use_block,
            });
        }
        for (what, value) in [("in_channels", self.in_channels), ("stride", self.stride)] {
            if value <= 0 {
                return Err(S3dError::NonPositive { what, value });
            }
        }
        Ok(())
    }

    /// Channels of the backbone output (832 for 4 blocks), `None` for an invalid `use_block`.
    pub fn out_channels(&self) -> Option<i64> {
        let index = self.use_block.checked_sub(1)?;
        BLOCK_OUT_CHANNELS.get(index).copied()
    }
}

/// Outputs of [`S3dBackbone::forward_t`] (the reference's `sgn_feature`, `sgn`, `valid_len_out`,
/// `sgn_mask` for one pyramid level).
#[derive(Debug)]
pub struct S3dOutput {
    /// Last block's feature map `[B, C, T', H', W']`.
    pub feat: Tensor,
    /// Spatially mean-pooled features `[B, T', C]`.
    pub sgn: Tensor,
    /// `floor(sgn_lengths · T' / T)` (int64 `[B]`; `T` = padded input length).
    pub valid_len_out: Tensor,
    /// `[B, 1, T']` bool, true for `t < valid_len_out`.
    pub sgn_mask: Tensor,
}

/// The S3D backbone: `base.{0..N}` under the path given at construction.
#[derive(Debug)]
pub struct S3dBackbone {
    base: Vec<Layer>,
    config: S3dBackboneConfig,
}

impl S3dBackbone {
    /// Builds blocks `1..=use_block` as `p.base.{i}` and freezes blocks `1..=freeze_block`.
    pub fn new<'a>(
        p: impl Borrow<nn::Path<'a>>,
        config: &S3dBackboneConfig,
    ) -> Result<Self, S3dError> {
        config.validate()?;
        let base_path = p.borrow() / "base";
        let at = |index: usize| &base_path / index;
        let pool = |kernel, stride, padding| {
            Layer::Pool(MaxPool3d {
                kernel,
                stride,
                padding,
            })
        };
        let spatial_pool = || pool([1, 3, 3], [1, 2, 2], [0, 1, 1]);
        let mixed = |index: usize, plan| Layer::Mixed(Box::new(Mixed::new(&at(index), plan)));
        let mut base = vec![Layer::Sep(SepConv3d::new(
            &at(0),
            config.in_channels,
            64,
            7,
            2,
            3,
        ))];
        if config.use_block >= 2 {
            base.push(spatial_pool());
            base.push(Layer::Basic(BasicConv3d::new(&at(2), 64, 64)));
            base.push(Layer::Sep(SepConv3d::new(&at(3), 64, 192, 3, 1, 1)));
        }
        if config.use_block >= 3 {
            base.push(spatial_pool());
            base.push(mixed(5, MIXED_3B));
            base.push(mixed(6, MIXED_3C));
        }
        if config.use_block >= 4 {
            base.push(pool([3, 3, 3], [2, 2, 2], [1, 1, 1]));
            for (index, plan) in [MIXED_4B, MIXED_4C, MIXED_4D, MIXED_4E, MIXED_4F]
                .into_iter()
                .enumerate()
            {
                base.push(mixed(8 + index, plan));
            }
        }
        if config.use_block >= 5 {
            let time_pad = if config.stride == 2 { 0 } else { 1 };
            base.push(pool([2, 2, 2], [config.stride, 2, 2], [time_pad, 0, 0]));
            base.push(mixed(14, MIXED_5B));
            base.push(mixed(15, MIXED_5C));
        }
        let mut backbone = S3dBackbone {
            base,
            config: S3dBackboneConfig {
                freeze_block: 0,
                ..*config
            },
        };
        backbone.set_frozen_blocks(config.freeze_block)?;
        Ok(backbone)
    }

    /// The construction settings (`freeze_block` = the current number of frozen blocks).
    pub fn config(&self) -> &S3dBackboneConfig {
        &self.config
    }

    /// Channels of the output features (832 with 4 blocks).
    pub fn out_channels(&self) -> i64 {
        BLOCK_OUT_CHANNELS[self.config.use_block - 1]
    }

    /// Number of layers in `base` (13 with 4 blocks).
    pub fn num_layers(&self) -> usize {
        self.base.len()
    }

    /// Number of frozen blocks (blocks `1..=k` are frozen; 0 = none).
    pub fn frozen_blocks(&self) -> usize {
        self.config.freeze_block
    }

    /// Whether `base[index]` is frozen (fixed parameters, always eval mode).
    pub fn is_layer_frozen(&self, index: usize) -> bool {
        match self.config.freeze_block {
            0 => false,
            k => index <= BLOCK_END_INDEX[k - 1],
        }
    }

    /// Freezes blocks `1..=freeze_block` and unfreezes the others (e.g. at an epoch boundary).
    ///
    /// Frozen parameters get `requires_grad = false` and their gradients (if any) are zeroed;
    /// unfrozen ones get `requires_grad = true`. The variables stay in the VarStore's trainable
    /// list either way, so an optimizer must skip tensors that do not require a gradient.
    /// Sets the running-statistics momentum of every BatchNorm (the reference: 0.001, right for
    /// fine-tuning a pretrained S3D; a randomly initialised S3D needs a larger one — torch's
    /// default is 0.1 — or its running statistics lag far behind the weights).
    pub fn set_bn_momentum(&mut self, momentum: f64) {
        for layer in &mut self.base {
            for bn in layer.batch_norms_mut() {
                bn.set_momentum(momentum);
            }
        }
    }

    pub fn set_frozen_blocks(&mut self, freeze_block: usize) -> Result<(), S3dError> {
        S3dBackboneConfig {
            freeze_block,
            ..self.config
        }
        .validate()?;
        self.config.freeze_block = freeze_block;
        for (index, layer) in self.base.iter().enumerate() {
            let frozen = self.is_layer_frozen(index);
            for param in layer.parameters() {
                let mut param = param.shallow_clone();
                if frozen {
                    param.zero_grad();
                }
                let _ = param.f_set_requires_grad(!frozen)?;
            }
        }
        Ok(())
    }

    /// All parameters (conv weights, BN affine), frozen ones included, in module order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.base
            .iter()
            .flat_map(Layer::parameters)
            .map(Tensor::shallow_clone)
            .collect()
    }

    /// Number of parameter elements (4,734,272 for blocks 1–4).
    pub fn num_parameters(&self) -> i64 {
        self.base
            .iter()
            .flat_map(Layer::parameters)
            .map(Tensor::numel)
            .map(|n| n as i64)
            .sum()
    }

    /// Runs `base` on `video [B, C, T, H, W]` and returns the last feature map.
    ///
    /// `train` selects training mode for the non-frozen layers; frozen ones always run in eval
    /// mode. Callers that need no gradients should wrap the call in [`tch::no_grad`].
    pub fn features_t(&self, video: &Tensor, train: bool) -> Result<Tensor, S3dError> {
        self.check_video(video)?;
        let mut x = video.shallow_clone();
        for (index, layer) in self.base.iter().enumerate() {
            x = layer.forward_t(&x, train && !self.is_layer_frozen(index))?;
        }
        Ok(x)
    }

    /// The reference's `S3D_backbone.forward` (no pyramid): features, pooled `sgn`, output
    /// lengths and mask. `sgn_lengths` is an integer tensor `[B]` of valid input frames.
    pub fn forward_t(
        &self,
        video: &Tensor,
        sgn_lengths: &Tensor,
        train: bool,
    ) -> Result<S3dOutput, S3dError> {
        let (batch, t_in) = self.check_video(video)?;
        let lengths_ok = sgn_lengths.size() == [batch]
            && matches!(
                sgn_lengths.kind(),
                Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
            );
        if !lengths_ok {
            return Err(S3dError::Lengths {
                batch,
                shape: sgn_lengths.size(),
                kind: sgn_lengths.kind(),
            });
        }
        let feat = self.features_t(video, train)?;
        let t_out = feat.size()[2];
        let sgn = feat.f_mean_dim([3i64, 4].as_slice(), false, None::<Kind>)?;
        let sgn = sgn.f_transpose(1, 2)?;
        let (valid_len_out, sgn_mask) = tch::no_grad(|| -> Result<_, TchError> {
            let valid = sgn_lengths
                .f_to_device(feat.device())?
                .f_to_kind(Kind::Int64)?
                .f_mul_scalar(t_out)?
                .f_floor_divide_scalar(t_in)?;
            let mask = Tensor::f_arange(t_out, (Kind::Int64, feat.device()))?
                .f_view([1, 1, t_out])?
                .f_lt_tensor(&valid.f_view([batch, 1, 1])?)?;
            Ok((valid, mask))
        })?;
        Ok(S3dOutput {
            feat,
            sgn,
            valid_len_out,
            sgn_mask,
        })
    }

    /// Checks the video's rank, channels and kind; returns `(B, T)`.
    fn check_video(&self, video: &Tensor) -> Result<(i64, i64), S3dError> {
        let shape = video.size();
        let float = matches!(
            video.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        );
        match shape[..] {
            [batch, channels, time, _, _] if float && channels == self.config.in_channels => {
                Ok((batch, time))
            }
            _ => Err(S3dError::Video {
                channels: self.config.in_channels,
                shape,
                kind: video.kind(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(use_block: usize, freeze_block: usize) -> (nn::VarStore, S3dBackbone) {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let config = S3dBackboneConfig {
            use_block,
            freeze_block,
            ..S3dBackboneConfig::default()
        };
        let model = S3dBackbone::new(vs.root() / "backbone", &config).expect("valid config");
        (vs, model)
    }

    #[test]
    fn parameter_count_of_blocks_1_to_4_matches_the_reference() {
        let (vs, model) = build(4, 1);
        assert_eq!(model.num_parameters(), 4_734_272);
        assert_eq!(model.num_layers(), 13);
        let in_store: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(in_store, 4_734_272);
        // 61 conv weights + 61 BatchNorms × 5 entries = 366 state-dict entries.
        assert_eq!(vs.variables().len(), 366);
    }

    #[test]
    fn names_follow_the_reference_state_dict() {
        let (vs, _) = build(5, 0);
        let names = vs.variables();
        for name in [
            "backbone.base.0.conv_s.weight",
            "backbone.base.0.bn_t.num_batches_tracked",
            "backbone.base.2.bn.running_var",
            "backbone.base.8.branch1.1.conv_t.weight",
            "backbone.base.12.branch3.1.bn.num_batches_tracked",
            "backbone.base.15.branch2.0.conv.weight",
        ] {
            assert!(names.contains_key(name), "missing {name}");
        }
        assert_eq!(
            names["backbone.base.3.conv_s.weight"].size(),
            [192, 64, 1, 3, 3]
        );
        assert_eq!(
            names["backbone.base.0.bn_s.num_batches_tracked"].kind(),
            Kind::Int64
        );
    }

    #[test]
    fn freezing_follows_block_end_points() {
        let (_, mut model) = build(4, 2);
        assert!(model.is_layer_frozen(3) && !model.is_layer_frozen(4));
        let params = model.parameters();
        // base.0 (6 params), base.2 (3), base.3 (6) are frozen.
        assert_eq!(params.iter().filter(|p| !p.requires_grad()).count(), 15);
        model.set_frozen_blocks(0).expect("0 is valid");
        assert!(params.iter().all(Tensor::requires_grad));
        assert_eq!(model.frozen_blocks(), 0);
        assert!(model.set_frozen_blocks(5).is_err());
        assert!(S3dBackbone::new(
            nn::VarStore::new(tch::Device::Cpu).root(),
            &S3dBackboneConfig {
                use_block: 6,
                ..S3dBackboneConfig::default()
            }
        )
        .is_err());
    }

    #[test]
    fn shapes_lengths_and_mask() {
        tch::set_num_threads(1);
        let (_, model) = build(2, 1);
        let video = Tensor::rand([2, 3, 10, 32, 32], (Kind::Float, tch::Device::Cpu));
        let lengths = Tensor::from_slice(&[10i64, 7]);
        let out = tch::no_grad(|| model.forward_t(&video, &lengths, false)).expect("forward");
        assert_eq!(out.feat.size(), [2, 192, 5, 8, 8]);
        assert_eq!(out.sgn.size(), [2, 5, 192]);
        assert_eq!(
            Vec::<i64>::try_from(&out.valid_len_out).expect("ints"),
            [5, 3]
        );
        let mask =
            Vec::<i64>::try_from(&out.sgn_mask.to_kind(Kind::Int64).flatten(0, -1)).expect("ints");
        assert_eq!(mask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        let bad = Tensor::rand([2, 1, 10, 32, 32], (Kind::Float, tch::Device::Cpu));
        assert!(model.forward_t(&bad, &lengths, false).is_err());
        let float_lengths = Tensor::from_slice(&[10f32, 7.0]);
        assert!(model.forward_t(&video, &float_lengths, false).is_err());
    }
}
