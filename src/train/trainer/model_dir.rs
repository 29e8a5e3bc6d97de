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
/// `*.replaced-{unix time}` rather than deleted. Any run that starts from scratch (also
/// `--resume auto` without a checkpoint, e.g. after a crash before the first one) moves an old
/// `metrics.jsonl` aside, so the log only ever holds the run that continues in this folder.
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
            }
            None
        }
    };
    if leader {
        if source.is_some() {
            ckpts.clean_temporaries()?;
        } else {
            move_aside(model_dir, "metrics.jsonl")?;
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
    // Never rename onto an earlier moved-aside entry (rename replaces files silently).
    let target = (0..)
        .map(|n| match n {
            0 => model_dir.join(format!("{entry}.replaced-{stamp}")),
            n => model_dir.join(format!("{entry}.replaced-{stamp}-{n}")),
        })
        .find(|candidate| !candidate.exists())
        .unwrap_or_else(|| model_dir.join(format!("{entry}.replaced-{stamp}")));
    fs::rename(&path, &target).map_err(TrainError::io("moving aside", &path))?;
    eprintln!(
        "starting from scratch: moved the previous {} to {}",
        path.display(),
        target.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model_dir: &Path, overwrite: bool) -> SltConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/configs/SingleStream/phoenix-2014t_g2t_scratch.yaml");
        let mut config = SltConfig::load(&path, &[]).expect("the shipped G2T config loads");
        config.training.model_dir = model_dir.to_path_buf();
        config.training.overwrite = overwrite;
        config
    }

    fn replaced(model_dir: &Path, entry: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(model_dir)
            .expect("model_dir is readable")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&format!("{entry}.replaced-")))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_fresh_start_never_appends_to_an_old_metrics_log() {
        for mode in [ResumeMode::Fresh, ResumeMode::Auto] {
            let tmp = tempfile::tempdir().expect("temp dir");
            let dir = tmp.path();
            // A run that stopped before its first checkpoint left only its log.
            fs::write(dir.join("metrics.jsonl"), "{\"event\":\"start\"}\n").expect("write");
            let source = prepare_model_dir(&config(dir, false), &mode, true).expect("prepared");
            assert!(source.is_none(), "{mode:?}: nothing to resume");
            assert!(
                !dir.join("metrics.jsonl").exists(),
                "{mode:?}: old log still in place"
            );
            let aside = replaced(dir, "metrics.jsonl");
            assert_eq!(aside.len(), 1, "{mode:?}: {aside:?}");
            let kept = fs::read_to_string(dir.join(&aside[0])).expect("moved log readable");
            assert_eq!(kept, "{\"event\":\"start\"}\n");
        }
    }

    #[test]
    fn non_leaders_leave_the_log_alone() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        fs::write(dir.join("metrics.jsonl"), "x\n").expect("write");
        prepare_model_dir(&config(dir, false), &ResumeMode::Fresh, false).expect("prepared");
        assert!(dir.join("metrics.jsonl").exists());
        assert!(replaced(dir, "metrics.jsonl").is_empty());
    }
}
