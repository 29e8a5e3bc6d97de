//! What the trainer needs from a training stage ([`Task`]), and what evaluation produces
//! ([`Prediction`], [`Scores`]).
//!
//! A task owns its model (in a `VarStore` whose names are the reference's), its data and its
//! decoding; the trainer owns the loop, the optimizer, the schedule, checkpoints and logs. The
//! same trainer runs Sign2Gloss and Gloss2Text.

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;
use thiserror::Error;

use crate::config::GenerateConfig;
use crate::data::dataset::Split;
use crate::data::sampler::SamplerCursor;

/// A task's failure, with enough context to name the file, sample or module at fault.
#[derive(Debug, Error)]
pub enum TaskError {
    /// Reading annotations, videos or vocabularies.
    #[error(transparent)]
    Data(#[from] crate::data::dataset::DatasetError),
    /// A batch could not be loaded.
    #[error(transparent)]
    Load(#[from] crate::data::loader::LoadError),
    /// Building or running the recognition network.
    #[error(transparent)]
    Recognition(#[from] crate::model::recognition::RecognitionError),
    /// Building or running the translation network.
    #[error(transparent)]
    Translation(#[from] crate::model::translation::TranslationError),
    /// Scoring.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The sampler was built with impossible parameters.
    #[error(transparent)]
    Sampler(#[from] crate::data::sampler::SamplerError),
    /// A libtorch call failed.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        source: tch::TchError,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl TaskError {
    /// Wraps a libtorch error with what was being done.
    pub fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> TaskError {
        let context = context.into();
        move |source| TaskError::Torch { context, source }
    }
}

/// Batches of one training epoch, in plan order, each with the cursor that follows it. The
/// stream owns what it reads (the task is used mutably while it runs).
pub type BatchStream<B> = Box<dyn Iterator<Item = Result<(SamplerCursor, B), TaskError>>>;

/// The loss of one training batch.
#[derive(Debug)]
pub struct LossTerms {
    /// The scalar to minimise (what `backward` runs on).
    pub total: Tensor,
    /// Samples in the batch.
    pub samples: usize,
    /// Named components for the log (e.g. `recognition_loss`), as plain numbers.
    pub parts: Vec<(&'static str, f64)>,
}

/// One evaluated sample: hypotheses and references as the metrics see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Dataset index within the split.
    pub index: usize,
    /// Annotation name.
    pub name: String,
    /// Decoded glosses (recognition tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gloss_hyp: Option<String>,
    /// Annotated glosses.
    pub gloss_ref: String,
    /// Generated sentence (translation tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_hyp: Option<String>,
    /// Annotated sentence.
    pub text_ref: String,
}

/// Corpus-level scores of one evaluation. Percentages, like the reference reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Word error rate of the gloss hypotheses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wer: Option<f64>,
    /// WER's deletion / insertion / substitution rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wer_del_ins_sub: Option<[f64; 3]>,
    /// BLEU-1..4 of the sentence hypotheses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<[f64; 4]>,
    /// ROUGE-L F of the sentence hypotheses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rouge_l: Option<f64>,
}

/// The number a run selects its best checkpoint by (reference: BLEU-4 for tasks that
/// translate, WER otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionMetric {
    /// Lower is better; the reference starts from 10000.
    Wer,
    /// Higher is better; the reference starts from −100.
    Bleu4,
}

impl SelectionMetric {
    /// The metric of a task.
    pub fn for_task(task: crate::config::Task) -> Self {
        if task.does_translation() {
            SelectionMetric::Bleu4
        } else {
            SelectionMetric::Wer
        }
    }

    /// The reference's initial `best_score`.
    pub fn initial_best(self) -> f64 {
        match self {
            SelectionMetric::Wer => 10_000.0,
            SelectionMetric::Bleu4 => -100.0,
        }
    }

    /// `score` of `scores`, if the evaluation produced it.
    pub fn score(self, scores: &Scores) -> Option<f64> {
        match self {
            SelectionMetric::Wer => scores.wer,
            SelectionMetric::Bleu4 => scores.bleu.map(|b| b[3]),
        }
    }

    /// Whether `score` makes a new best (ties count: the reference keeps the later one).
    pub fn is_best(self, score: f64, best: f64) -> bool {
        match self {
            SelectionMetric::Wer => score <= best,
            SelectionMetric::Bleu4 => score >= best,
        }
    }

    /// `wer` or `bleu4`.
    pub fn name(self) -> &'static str {
        match self {
            SelectionMetric::Wer => "wer",
            SelectionMetric::Bleu4 => "bleu4",
        }
    }
}

/// A training stage as the trainer sees it.
pub trait Task {
    /// One training batch.
    type Batch;

    /// The model's variables (named like the reference's state dict).
    fn var_store(&self) -> &VarStore;

    /// Number of samples in `split`.
    fn split_len(&self, split: Split) -> Result<usize, TaskError>;

    /// Loads pretrained weights named by the config (fresh runs only; a resumed run restores
    /// its checkpoint instead). Returns a human-readable report.
    fn load_initial_weights(&mut self) -> Result<String, TaskError>;

    /// Applies the number of frozen S3D blocks in effect for an epoch (tasks without a
    /// backbone ignore it).
    fn set_frozen_blocks(&mut self, _freeze_block: Option<usize>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Starts producing the training batches of `plan` (dataset indices per batch, each with
    /// the cursor after it) with data randomness keyed by `seed`.
    fn train_batches(
        &self,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        seed: u64,
    ) -> Result<BatchStream<Self::Batch>, TaskError>;

    /// The training loss of a batch (train mode: dropout on, batch statistics).
    fn training_loss(&mut self, batch: &Self::Batch) -> Result<LossTerms, TaskError>;

    /// Decodes the samples of `split` named by `plan` (eval mode, no gradients).
    fn predict(
        &mut self,
        split: Split,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        decode: &GenerateConfig,
    ) -> Result<Vec<Prediction>, TaskError>;

    /// Corpus scores of predictions covering a whole split.
    fn score(&self, predictions: &[Prediction]) -> Result<Scores, TaskError>;
}
