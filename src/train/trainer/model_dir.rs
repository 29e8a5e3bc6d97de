//! Preparing `training.model_dir` for a run: fresh start or resume, never silently losing an
//! earlier run's checkpoints.

use std::fs;
use std::path::Path;

use super::{ResumeSource, TrainError};
use crate::config::SltConfig;
use crate::train::checkpoint::CheckpointDir;

/// What the user asked for (`slt train --resume …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeMode {
    /// Start from scratch (`training.from_ckpt: true` turns this into [`ResumeMode::Auto`]).
    Fresh,
    /// Continue from the newest complete checkpoint if there is one, else start fresh.
    Auto,
    /// Continue from this checkpoint (a name under `ckpts/`).
    Checkpoint(String),
}

/// Creates `model_dir`, writes `config.yaml` (rank 0) and decides where training starts.
///
/// A fresh run into a `model_dir` that already holds checkpoints is refused unless
/// `training.overwrite` is true; then the old `ckpts/` and `metrics.jsonl` are moved aside to
/// `*.replaced-{unix time}` rather than deleted.
pub fn prepare_model_dir(
    config: &SltConfig,
    mode: &ResumeMode,
    leader: bool,
) -> Result<Option<ResumeSource>, TrainError> {
    let model_dir = &config.training.model_dir;
    fs::create_dir_all(model_dir).map_err(TrainError::io("creating", model_dir))?;
    let ckpts = CheckpointDir::new(model_dir, config.training.keep_last_ckpts);
    let mode = match mode {
        ResumeMode::Fresh if config.training.from_ckpt => &ResumeMode::Auto,
        other => other,
    };
    let existing = ckpts.list()?;
    let source = match mode {
        ResumeMode::Checkpoint(name) => Some(ResumeSource::Named(name.clone())),
        ResumeMode::Auto if !existing.is_empty() => Some(ResumeSource::Latest),
        ResumeMode::Auto => None,
        ResumeMode::Fresh if existing.is_empty() => None,
        ResumeMode::Fresh => {
            if !config.training.overwrite {
                return Err(TrainError::ModelDir(format!(
                    "{} already holds {} checkpoint(s) (newest: {}); pass --resume auto to \
                     continue that run, or set training.overwrite: true to start over (the old \
                     checkpoints are then moved aside, not deleted)",
                    ckpts.path().display(),
                    existing.len(),
                    existing.last().map_or("?", |c| c.name.as_str())
                )));
            }
            if leader {
                move_aside(model_dir, "ckpts")?;
                move_aside(model_dir, "metrics.jsonl")?;
            }
            None
        }
    };
    if leader {
        if source.is_some() {
            ckpts.clean_temporaries()?;
        }
        let yaml = config.to_yaml()?;
        let path = model_dir.join("config.yaml");
        fs::write(&path, yaml).map_err(TrainError::io("writing", &path))?;
    }
    Ok(source)
}

fn move_aside(model_dir: &Path, entry: &str) -> Result<(), TrainError> {
    let path = model_dir.join(entry);
    if !path.exists() {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let target = model_dir.join(format!("{entry}.replaced-{stamp}"));
    fs::rename(&path, &target).map_err(TrainError::io("moving aside", &path))?;
    eprintln!(
        "training.overwrite: moved the previous {} to {}",
        path.display(),
        target.display()
    );
    Ok(())
}
