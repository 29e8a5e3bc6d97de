//! The reference's YAML schema as typed structs: top level, `data`, `training`, `testing`.
//! The `model` section lives in [`super::model`].
//!
//! Key spelling follows the reference files exactly. Optional keys that the reference reads with
//! `.get(key, default)` carry the same default here. Keys present in the reference configs but
//! read by no reference code are accepted and documented as *inert*. Keys marked
//! *slt extension* are ours.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model::ModelConfig;
use super::values::{LearningRates, OptimizerKind, PadLength, SchedulerKind};

/// A whole experiment config (one YAML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SltConfig {
    /// Which stage this config trains.
    pub task: Task,
    /// Annotation files, videos, features and augmentation.
    pub data: DataConfig,
    /// Training loop, optimizer, validation and checkpointing.
    pub training: TrainingConfig,
    /// Decoding settings of the final dev/test evaluation.
    pub testing: TestingConfig,
    /// Network sections (`RecognitionNetwork`, `TranslationNetwork`, `VLMapper`).
    pub model: ModelConfig,
}

/// `task`: the training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Sign2Gloss: S3D + visual head + CTC on videos.
    S2G,
    /// Gloss2Text: mBART translation of ground-truth glosses.
    G2T,
    /// Sign2Text: visual head on pre-extracted S3D features + VLMapper + mBART.
    S2T,
}

impl Task {
    /// Whether the task decodes glosses (recognition head), i.e. S2G and S2T.
    pub fn does_recognition(self) -> bool {
        matches!(self, Task::S2G | Task::S2T)
    }

    /// Whether the task generates text (translation network), i.e. G2T and S2T.
    pub fn does_translation(self) -> bool {
        matches!(self, Task::G2T | Task::S2T)
    }
}

/// `data.dataset_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetName {
    /// `phoenix-2014t`: RWTH-PHOENIX-Weather 2014T (German).
    #[serde(rename = "phoenix-2014t")]
    Phoenix2014T,
    /// `phoenix-2014`: RWTH-PHOENIX-Weather 2014 (glosses only).
    #[serde(rename = "phoenix-2014")]
    Phoenix2014,
    /// `csl-daily`: CSL-Daily (Chinese).
    #[serde(rename = "csl-daily")]
    CslDaily,
}

/// `data.input_data`. Inert in the reference (no code reads it; the task decides the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputData {
    /// `videos`.
    Videos,
    /// `gloss`.
    Gloss,
    /// `features` (also accepted: `feature`).
    #[serde(alias = "feature")]
    Features,
}

/// One entry of `data.input_streams`. SingleStream-SLT has only the RGB stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputStream {
    /// `rgb`.
    Rgb,
}

/// `data.level`: text granularity for BLEU/ROUGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextLevel {
    /// `word`: whitespace tokens (Phoenix).
    Word,
    /// `char`: characters (CSL-Daily).
    Char,
}

/// `data.pad`: how shorter videos of a batch are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// `replicate`: repeat the last frame (reference default).
    #[default]
    Replicate,
    /// `zero`: black frames.
    Zero,
}

/// The `data` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Which data set (decides the zip layout and metric clean-up).
    pub dataset_name: DatasetName,
    /// Inert in the reference; see [`InputData`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_data: Option<InputData>,
    /// Streams fed to the recognition network; default `[rgb]`.
    #[serde(default = "default_input_streams")]
    pub input_streams: Vec<InputStream>,
    /// Zip with the video frames (needed by S2G; inert in S2T).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip_file: Option<PathBuf>,
    /// Training annotations (gzip pickle).
    pub train: PathBuf,
    /// Validation annotations (gzip pickle).
    pub dev: PathBuf,
    /// Test annotations (gzip pickle).
    pub test: PathBuf,
    /// S3D features of the training split, written by feature extraction (S2T input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_head_rgb_input: Option<PathBuf>,
    /// S3D features of the dev split (S2T input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_head_rgb_input: Option<PathBuf>,
    /// S3D features of the test split (S2T input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_head_rgb_input: Option<PathBuf>,
    /// Text granularity of the metrics.
    pub level: TextLevel,
    /// Inert in the reference (read by no code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txt_lowercase: Option<bool>,
    /// Inert in the reference (read by no code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sent_length: Option<usize>,
    /// Length videos of a batch are padded to; default `pad_to_max`.
    #[serde(default)]
    pub pad_length: PadLength,
    /// Padding mode; default `replicate`.
    #[serde(default)]
    pub pad: PadMode,
    /// Spatial and temporal augmentation of videos (S2G).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_cfg: Option<TransformConfig>,
    /// *slt extension*: the data set was generated by `slt data synth` (no real videos).
    #[serde(default)]
    pub synthetic: bool,
}

fn default_input_streams() -> Vec<InputStream> {
    vec![InputStream::Rgb]
}

/// `data.transform_cfg`: video augmentation (spec §6). Defaults are the reference's `.get`
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Side of the square network input after crop + resize; default 224.
    #[serde(default = "default_img_size")]
    pub img_size: usize,
    /// Colour jitter with probability 0.3 during training; default false.
    #[serde(default)]
    pub color_jitter: bool,
    /// Smallest area fraction of the random resized crop; default 0.2.
    #[serde(default = "default_bottom_area")]
    pub bottom_area: f64,
    /// Smallest aspect ratio of the random resized crop; default 3/4.
    #[serde(default = "default_aspect_ratio_min")]
    pub aspect_ratio_min: f64,
    /// Largest aspect ratio of the random resized crop; default 4/3.
    #[serde(default = "default_aspect_ratio_max")]
    pub aspect_ratio_max: f64,
    /// Centre-crop before resizing at evaluation; default false.
    #[serde(default)]
    pub center_crop: bool,
    /// Side of the evaluation centre crop (needed when `center_crop` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_crop_size: Option<usize>,
    /// Temporal sampling range (required by the reference).
    pub temporal_augmentation: TemporalAugmentation,
    /// CSL-Daily: cut the frame before resizing; default true.
    #[serde(default = "default_true")]
    pub csl_cut: bool,
    /// CSL-Daily: `[height, width]` frames are resized to after decoding; default [320, 320].
    #[serde(default = "default_csl_resize")]
    pub csl_resize: [usize; 2],
    /// Inert in the reference (only its dead `video_transformation.py` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aug_hflip: Option<bool>,
    /// Inert in the reference (only its dead `video_transformation.py` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomcrop_threshold: Option<f64>,
}

fn default_img_size() -> usize {
    224
}
fn default_bottom_area() -> f64 {
    0.2
}
fn default_aspect_ratio_min() -> f64 {
    3.0 / 4.0
}
fn default_aspect_ratio_max() -> f64 {
    4.0 / 3.0
}
pub(crate) fn default_true() -> bool {
    true
}
fn default_csl_resize() -> [usize; 2] {
    [320, 320]
}

/// `data.transform_cfg.temporal_augmentation`: training clips keep between `tmin` and `tmax`
/// times the video length (spec §6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalAugmentation {
    /// Smallest length factor.
    pub tmin: f64,
    /// Largest length factor.
    pub tmax: f64,
}

/// The `training` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Output directory (checkpoints, logs, validation results).
    pub model_dir: PathBuf,
    /// Whether an existing `model_dir` may be reused; default false.
    #[serde(default)]
    pub overwrite: bool,
    /// Shuffle the training split (required by the reference).
    pub shuffle: bool,
    /// Loader worker threads; default 2.
    #[serde(default = "default_num_workers")]
    pub num_workers: usize,
    /// Samples per worker (per GPU) and step.
    pub batch_size: usize,
    /// Number of epochs.
    pub total_epoch: usize,
    /// Checkpoints kept besides `best` (FIFO); 0 keeps all, like the reference's unbounded queue.
    pub keep_last_ckpts: usize,
    /// Seed of all randomness; default 42.
    #[serde(default = "default_random_seed")]
    pub random_seed: u64,
    /// Inert in the reference (spec §1: no code reads `training.load_ckpt`; the S2T visual head
    /// starts random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ckpt: Option<PathBuf>,
    /// Resume from the newest checkpoint in `model_dir/ckpts`; default false.
    #[serde(default)]
    pub from_ckpt: bool,
    /// When to validate and how to decode.
    pub validation: ValidationConfig,
    /// Optimizer and learning-rate schedule.
    pub optimization: OptimizationConfig,
    /// *slt extension*: change `s3d.freeze_block` at epoch boundaries. Entries are applied in
    /// order; entry `{epoch: N, freeze_block: K}` makes epochs `N..` freeze blocks `1..=K`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen_block_schedule: Vec<FrozenBlockStep>,
    /// *slt extension*: also write a resume checkpoint (`step_N`, no validation) every this many
    /// optimizer steps, so a killed run loses at most that much work. Validation checkpoints
    /// and the end of every epoch are checkpointed regardless. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<usize>,
    /// *slt extension*: write a `train` line to `metrics.jsonl` every this many steps;
    /// default 10.
    #[serde(default = "default_log_every_steps")]
    pub log_every_steps: usize,
}

fn default_log_every_steps() -> usize {
    10
}

fn default_num_workers() -> usize {
    2
}
fn default_random_seed() -> u64 {
    42
}

/// One entry of `training.frozen_block_schedule` (*slt extension*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrozenBlockStep {
    /// First (0-based) epoch this entry applies to.
    pub epoch: usize,
    /// S3D blocks `1..=freeze_block` are frozen from that epoch on (0 = none).
    pub freeze_block: usize,
}

/// `training.validation.unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationUnit {
    /// Validate after epochs `e > 0` with `e % freq == 0`.
    Epoch,
    /// Validate at global steps `s > 0` with `s % freq == 0`.
    Step,
}

/// `training.validation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Whether `freq` counts epochs or steps.
    pub unit: ValidationUnit,
    /// Validation interval in `unit`s.
    pub freq: usize,
    /// Decoding settings for validation.
    pub cfg: GenerateConfig,
}

/// `training.optimization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizationConfig {
    /// Optimizer; default `adam`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Per-module learning rates.
    pub learning_rate: LearningRates,
    /// Coupled L2 weight decay; default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Adam betas; default (0.9, 0.999).
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Adam epsilon; default 1e-8.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// AMSGrad variant; default false.
    #[serde(default)]
    pub amsgrad: bool,
    /// Learning-rate schedule (required by the reference).
    pub scheduler: SchedulerKind,
    /// Cosine period in epochs; default 20.
    #[serde(default = "default_t_max")]
    pub t_max: usize,
    /// Cosine floor; default 0.
    #[serde(default)]
    pub eta_min: f64,
    /// *slt extension*: linear warm-up over the first `warmup_steps` optimizer steps (the
    /// scheduled rate is multiplied by `min(1, (step + 1) / warmup_steps)`); default 0 = none,
    /// as the reference.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_steps: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1.0e-8
}
fn default_t_max() -> usize {
    20
}

/// The `testing` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// Decoding settings for the final dev/test evaluation.
    pub cfg: GenerateConfig,
}

/// Decoding settings (`testing.cfg`, `training.validation.cfg`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// CTC decoding (S2G, S2T).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recognition: Option<RecognitionDecodeConfig>,
    /// Text generation (G2T, S2T).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation: Option<TranslationDecodeConfig>,
}

/// CTC prefix beam search settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionDecodeConfig {
    /// Beam width (1 is still prefix beam search, not greedy; spec §3).
    pub beam_size: usize,
}

/// mBART beam search settings; defaults are those of the reference's `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationDecodeConfig {
    /// Beam width; default 4.
    #[serde(default = "default_num_beams")]
    pub num_beams: usize,
    /// Maximum output length including the start token; default 100.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Finished-beam score = log-prob / len^length_penalty; default 1.
    #[serde(default = "default_length_penalty")]
    pub length_penalty: f64,
}

fn default_num_beams() -> usize {
    4
}
fn default_max_length() -> usize {
    100
}
fn default_length_penalty() -> f64 {
    1.0
}
