//! `slt train` and `slt eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use tch::Device;

use slt::config::{SltConfig, Task as TaskKind};
use slt::data::dataset::{annotation_path, Split};
use slt::dist::SingleProcess;
use slt::train::checkpoint::CheckpointDir;
use slt::train::task::Task;
use slt::train::tasks::{Gloss2TextTask, Sign2GlossTask};
use slt::train::trainer::{
    evaluate_split, summary_line, train, write_evaluation, ResumeMode, StopFlag, TrainOutcome,
    TrainerOptions,
};

/// Options of `slt train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment config (the reference's YAML format).
    #[arg(long)]
    config: PathBuf,
    /// Config overrides `key.path=value` (repeatable); `SLT_…` environment overrides also apply.
    #[arg(long = "set")]
    overrides: Vec<String>,
    /// `auto`: continue from the newest complete checkpoint in `model_dir` if there is one;
    /// `never`: start fresh; or the name of a checkpoint under `model_dir/ckpts`. Default:
    /// `never` (`auto` when the launcher restarted this worker).
    #[arg(long, env = "SLT_RESUME")]
    resume: Option<String>,
    /// `cpu`, `cuda` or `cuda:N` (default: `cuda:$LOCAL_RANK` when CUDA is available, else cpu).
    #[arg(long)]
    device: Option<String>,
    /// Stop with a checkpoint after this many optimizer steps in total.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Skip the final dev/test evaluation of the best checkpoint.
    #[arg(long)]
    no_final_eval: bool,
}

/// Options of `slt eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Experiment config.
    #[arg(long)]
    config: PathBuf,
    /// Config overrides `key.path=value`.
    #[arg(long = "set")]
    overrides: Vec<String>,
    /// `best`, `latest`, or a checkpoint name under `model_dir/ckpts`.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Splits to evaluate (repeatable; default dev and test).
    #[arg(long = "split")]
    splits: Vec<Split>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long)]
    device: Option<String>,
}

fn parse_device(spec: Option<&str>) -> Result<Device> {
    let local_rank: usize = std::env::var("LOCAL_RANK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(match spec {
        None if tch::Cuda::is_available() => Device::Cuda(local_rank),
        None | Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda(local_rank),
        Some(other) => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Device::Cuda(index),
            _ => bail!("--device: expected cpu, cuda or cuda:N, got '{other}'"),
        },
    })
}

fn resume_mode(arg: Option<&str>) -> ResumeMode {
    let restarted = std::env::var("TORCHELASTIC_RESTART_COUNT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    match arg {
        Some("auto") => ResumeMode::Auto,
        Some("never") => ResumeMode::Fresh,
        Some(name) => ResumeMode::Checkpoint(name.to_string()),
        None if restarted => ResumeMode::Auto,
        None => ResumeMode::Fresh,
    }
}

/// What [`run_train_config`] needs besides the config.
#[derive(Debug, Clone)]
pub struct TrainRun {
    /// The config file (for messages).
    pub config_path: PathBuf,
    /// `--resume` as given.
    pub resume: Option<String>,
    /// `--device` as given.
    pub device: Option<String>,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<u64>,
    /// Evaluate the best checkpoint on dev and test at the end.
    pub final_evaluation: bool,
}

/// Runs `slt train`.
pub fn run_train(args: TrainArgs) -> Result<ExitCode> {
    let config = SltConfig::load_from_process_env(&args.config, &args.overrides)?;
    run_train_config(
        &config,
        &TrainRun {
            config_path: args.config,
            resume: args.resume,
            device: args.device,
            max_steps: args.max_steps,
            final_evaluation: !args.no_final_eval,
        },
    )
}

/// Trains the stage `config` names as this process's rank of the launcher's group.
pub fn run_train_config(config: &SltConfig, run: &TrainRun) -> Result<ExitCode> {
    let device = parse_device(run.device.as_deref())?;
    let mut group = slt::dist::init_from_env().context("joining the process group")?;
    if group.world_size() > 1 {
        eprintln!(
            "rank {}/{} (local rank {}), backend {:?}, device {device:?}",
            group.rank(),
            group.world_size(),
            group.local_rank(),
            group.backend()
        );
    }
    let options = TrainerOptions {
        resume: resume_mode(run.resume.as_deref()),
        progress: true,
        stop: StopFlag::from_signals().context("installing the signal handlers")?,
        max_steps: run.max_steps,
        final_evaluation: run.final_evaluation,
    };
    let outcome = match config.task {
        TaskKind::S2G => {
            let mut task = Sign2GlossTask::new(config, device)?;
            train(config, &mut task, &options, group.collective())?
        }
        TaskKind::G2T => {
            let mut task = Gloss2TextTask::new(config, device)?;
            train(config, &mut task, &options, group.collective())?
        }
        TaskKind::S2T => bail!(
            "{}: task S2T is not implemented yet (S2G and G2T are)",
            run.config_path.display()
        ),
    };
    Ok(match outcome {
        TrainOutcome::Finished { .. } => ExitCode::SUCCESS,
        // Like a process killed by the signal (128 + n), so schedulers see a preemption.
        TrainOutcome::Stopped {
            signal: Some(signal),
            ..
        } => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        TrainOutcome::Stopped { signal: None, .. } => ExitCode::SUCCESS,
    })
}

/// Runs `slt eval`.
pub fn run_eval(args: EvalArgs) -> Result<ExitCode> {
    let config = SltConfig::load_from_process_env(&args.config, &args.overrides)?;
    let device = parse_device(args.device.as_deref())?;
    match config.task {
        TaskKind::S2G => evaluate(&config, Sign2GlossTask::new(&config, device)?, &args)?,
        TaskKind::G2T => evaluate(&config, Gloss2TextTask::new(&config, device)?, &args)?,
        TaskKind::S2T => bail!("task S2T is not implemented yet (S2G and G2T are)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint `which` names: `best`, `latest` (their pointers; an error when there is none
/// yet) or a checkpoint's own name.
pub(crate) fn resolve_checkpoint(ckpts: &CheckpointDir, which: &str) -> Result<String> {
    Ok(match which {
        "best" => ckpts
            .best()?
            .with_context(|| format!("{} has no `best` checkpoint yet", ckpts.path().display()))?,
        "latest" => ckpts
            .latest()?
            .with_context(|| format!("{} has no checkpoint yet", ckpts.path().display()))?,
        other => other.to_string(),
    })
}

fn evaluate<T: Task>(config: &SltConfig, mut task: T, args: &EvalArgs) -> Result<()> {
    let ckpts = CheckpointDir::new(&config.training.model_dir, config.training.keep_last_ckpts);
    let name = resolve_checkpoint(&ckpts, &args.checkpoint)?;
    let checkpoint = ckpts.load(&name)?;
    checkpoint.restore_model(task.var_store())?;
    let splits = if args.splits.is_empty() {
        vec![Split::Dev, Split::Test]
    } else {
        args.splits.clone()
    };
    for split in splits {
        let path = annotation_path(&config.data, split);
        if !path.exists() {
            if args.splits.is_empty() {
                eprintln!("{split}: skipped ({} does not exist)", path.display());
                continue;
            }
            bail!("{split}: annotation file {} does not exist", path.display());
        }
        let evaluation = evaluate_split(
            &mut task,
            split,
            &config.testing.cfg,
            config.training.batch_size,
            &mut SingleProcess,
        )?;
        let dir = config
            .training
            .model_dir
            .join("eval")
            .join(&name)
            .join(split.name());
        write_evaluation(&dir, &evaluation)?;
        println!("{} -> {}", summary_line(&evaluation), dir.display());
    }
    Ok(())
}
