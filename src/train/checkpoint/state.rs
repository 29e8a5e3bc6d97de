//! What a checkpoint holds besides tensors: the training progress ([`TrainState`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::train::optimizer::AdamState;
use crate::train::schedule::CosineAnnealingState;

/// Where the data stream continues: `batch` is the index (within `epoch`) of the next batch to
/// train on. Since sampling is a pure function of (seed, epoch, rank, cursor), this is all a
/// resumed run needs to seek the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SamplerCursor {
    /// 0-based epoch.
    pub epoch: usize,
    /// Batches of `epoch` already trained on.
    pub batch: usize,
}

/// The JSON part of a checkpoint (`state.json`). Floating-point fields are written as exact
/// decimal strings ([`crate::train::exact_float`]) so that a resume reads back the same bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// 0-based epoch in which the checkpoint was taken.
    pub epoch: usize,
    /// Optimizer steps taken so far (orders checkpoints; `step_200` is older than `step_1000`).
    pub global_step: u64,
    /// The next batch to train on.
    pub cursor: SamplerCursor,
    /// Learning-rate schedule.
    pub scheduler: CosineAnnealingState,
    /// Optimizer rates, step counts and hyperparameters (moments are in `optimizer.safetensors`).
    pub optimizer: AdamState,
    /// Best validation score so far (the reference starts at −100 for BLEU, 10000 for WER).
    #[serde(with = "crate::train::exact_float::scalar")]
    pub best_score: f64,
    /// Score of the validation that triggered this checkpoint, if any.
    #[serde(with = "crate::train::exact_float::option")]
    pub current_score: Option<f64>,
    /// `training.random_seed`; all data randomness derives from it and the cursor. Per-step
    /// torch seeding (dropout) must also derive from it, so no generator state is stored.
    pub seed: u64,
    /// Number of workers that trained (the sampler shards by it; a resume with another world
    /// size changes the data order).
    pub world_size: usize,
    /// The effective config as YAML.
    pub config_yaml: String,
    /// Frozen S3D blocks in effect (`s3d.freeze_block` or the frozen-block schedule's phase).
    pub freeze_block: Option<usize>,
    /// Anything else the trainer wants back on resume.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Everything [`super::CheckpointDir::save`] writes.
#[derive(Debug)]
pub struct CheckpointContents {
    /// Model tensors by name, parameters and buffers ([`super::model_tensors`]).
    pub model: Vec<(String, Tensor)>,
    /// Optimizer moments ([`crate::train::optimizer::Adam::state_tensors`]).
    pub optimizer: Vec<(String, Tensor)>,
    /// Progress, schedule, optimizer metadata, config snapshot.
    pub state: TrainState,
}
