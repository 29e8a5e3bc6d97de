//! Decoding a whole split and writing what came out: per-sample hypotheses and references
//! (`results.jsonl`) and the corpus scores (`scores.json`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::TrainError;
use crate::config::GenerateConfig;
use crate::data::dataset::Split;
use crate::data::sampler::DistributedSampler;
use crate::dist::Collective;
use crate::train::task::{Prediction, Scores, Task};

/// The outcome of decoding one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitEvaluation {
    /// The split.
    pub split: String,
    /// Number of samples decoded.
    pub samples: usize,
    /// Corpus scores.
    pub scores: Scores,
    /// Wall time of decoding and scoring.
    pub seconds: f64,
    /// Per-sample predictions, in dataset order.
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// Decodes every sample of `split` with `decode` (batches of `batch_size`) and scores them.
/// With several ranks, each decodes its shard (sequential, no repeats) and the predictions are
/// gathered, so every rank works and every rank ends with the same scores.
pub fn evaluate_split<T: Task>(
    task: &mut T,
    split: Split,
    decode: &GenerateConfig,
    batch_size: usize,
    collective: &mut dyn Collective,
) -> Result<SplitEvaluation, TrainError> {
    let started = Instant::now();
    let len = task.split_len(split)?;
    let sampler = DistributedSampler::eval(
        len,
        collective.rank(),
        collective.world_size(),
        batch_size.max(1),
    )
    .map_err(|e| TrainError::Task(crate::train::task::TaskError::Sampler(e)))?;
    let plan = sampler.batches(0, 0);
    let mut predictions = task.predict(split, plan, decode)?;
    if collective.world_size() > 1 {
        let mine = serde_json::to_vec(&predictions).map_err(|e| TrainError::Json {
            path: PathBuf::from(format!(
                "<{split} predictions of rank {}>",
                collective.rank()
            )),
            message: e.to_string(),
        })?;
        predictions.clear();
        for (rank, bytes) in collective.all_gather_bytes(&mine)?.iter().enumerate() {
            let theirs: Vec<Prediction> =
                serde_json::from_slice(bytes).map_err(|e| TrainError::Json {
                    path: PathBuf::from(format!("<{split} predictions of rank {rank}>")),
                    message: e.to_string(),
                })?;
            predictions.extend(theirs);
        }
    }
    predictions.sort_by_key(|p| p.index);
    let scores = task.score(&predictions)?;
    Ok(SplitEvaluation {
        split: split.name().to_string(),
        samples: predictions.len(),
        scores,
        seconds: started.elapsed().as_secs_f64(),
        predictions,
    })
}

/// Writes `dir/results.jsonl` (one prediction per line) and `dir/scores.json`, each through a
/// temporary file and a rename so a reader never sees half a file.
pub fn write_evaluation(dir: &Path, evaluation: &SplitEvaluation) -> Result<(), TrainError> {
    fs::create_dir_all(dir).map_err(TrainError::io("creating", dir))?;
    let mut lines = Vec::new();
    for prediction in &evaluation.predictions {
        let line = serde_json::to_string(prediction).map_err(|e| TrainError::Json {
            path: dir.join("results.jsonl"),
            message: e.to_string(),
        })?;
        lines.extend_from_slice(line.as_bytes());
        lines.push(b'\n');
    }
    write_atomic(&dir.join("results.jsonl"), &lines)?;
    let scores = serde_json::to_vec_pretty(evaluation).map_err(|e| TrainError::Json {
        path: dir.join("scores.json"),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join("scores.json"), &scores)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(TrainError::io("creating", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(TrainError::io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(TrainError::io("renaming into place", path))
}

/// One line for the console: `dev: WER 23.10 (del 5.00 ins 3.00 sub 15.10) | BLEU-4 …`.
pub fn summary_line(evaluation: &SplitEvaluation) -> String {
    let mut parts = Vec::new();
    let s = &evaluation.scores;
    if let Some(wer) = s.wer {
        match s.wer_del_ins_sub {
            Some([d, i, sub]) => {
                parts.push(format!("WER {wer:.2} (del {d:.2} ins {i:.2} sub {sub:.2})"))
            }
            None => parts.push(format!("WER {wer:.2}")),
        }
    }
    if let Some(b) = s.bleu {
        parts.push(format!(
            "BLEU-1..4 {:.2}/{:.2}/{:.2}/{:.2}",
            b[0], b[1], b[2], b[3]
        ));
    }
    if let Some(r) = s.rouge_l {
        parts.push(format!("ROUGE-L {r:.2}"));
    }
    format!(
        "{}: {} ({} samples, {:.1} s)",
        evaluation.split,
        parts.join(" | "),
        evaluation.samples,
        evaluation.seconds
    )
}
