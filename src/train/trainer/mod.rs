//! The training loop shared by every stage.
//!
//! Per epoch (0-based `e`): apply the frozen-block phase of `e`, step the cosine schedule (at
//! the epoch start, as the reference), then for every batch of this rank's shard: set the rates
//! (with warm-up), seed torch for the step's dropout from `(random_seed, global_step)`, zero
//! the gradients, compute the loss, backward, Adam step. Validation follows the reference's
//! `unit`/`freq` rules (plus the last epoch); each validation writes a checkpoint and updates
//! `best`. The end of every epoch, every `checkpoint_every_steps` steps and a stop signal also
//! write checkpoints, so a killed run resumes from where it was: the sampler cursor says which
//! batch comes next, and since data randomness and dropout are pure functions of the seed and
//! the position, a resumed run computes exactly what the uninterrupted run would have.
//!
//! After the last epoch the best checkpoint is evaluated on dev and (when its annotation file
//! exists) test with `testing.cfg`; results go to `{model_dir}/eval/{checkpoint}/{split}/`.

mod evaluate;
mod interrupt;
mod lr;
mod model_dir;
mod run_log;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tch::Tensor;
use thiserror::Error;

pub use evaluate::{evaluate_split, summary_line, write_evaluation, SplitEvaluation};
pub use interrupt::{StopFlag, STOP_SIGNALS};
pub use lr::LrSchedule;
pub use model_dir::{prepare_model_dir, ResumeMode};
pub use run_log::RunLog;

use crate::config::{SltConfig, ValidationUnit};
use crate::data::dataset::{annotation_path, Split};
use crate::data::sampler::DistributedSampler;
use crate::dist::ddp::{average_gradients, broadcast_parameters, DdpError};
use crate::dist::{Collective, CollectiveError};
use crate::train::checkpoint::{
    model_tensors, CheckpointContents, CheckpointDir, CheckpointError, LoadedCheckpoint,
    SamplerCursor, TrainState,
};
use crate::train::optimizer::{trainable_named, Adam, AdamHyper, OptimizerError};
use crate::train::schedule::{CosineAnnealing, ScheduleError};
use crate::train::task::{SelectionMetric, Task, TaskError};

/// Gradient all-reduce bucket size (torch DDP's default is 25 MiB).
pub const GRADIENT_BUCKET_BYTES: usize = 25 << 20;

/// Why training stopped with an error.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A collective operation failed (a peer died, timed out or disagreed).
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// Parameter broadcast or gradient averaging failed.
    #[error(transparent)]
    Ddp(#[from] DdpError),
    /// The task failed (data, model, metrics).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Writing or reading a checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The optimizer.
    #[error(transparent)]
    Optimizer(#[from] OptimizerError),
    /// The learning-rate schedule.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The config could not be serialised.
    #[error(transparent)]
    Config(Box<crate::config::ConfigError>),
    /// A file operation.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON document could not be written.
    #[error("{}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `model_dir` is in a state this run must not touch.
    #[error("{0}")]
    ModelDir(String),
    /// The loss became NaN or infinite.
    #[error(
        "the training loss is {loss} at global step {step} (epoch {epoch}, batch {batch}); \
         stopping — the checkpoints written so far are intact"
    )]
    NonFiniteLoss {
        /// The value.
        loss: f64,
        /// Optimizer steps completed before this batch.
        step: u64,
        /// 0-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
    },
    /// A libtorch call failed.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        source: tch::TchError,
    },
}

impl From<crate::config::ConfigError> for TrainError {
    fn from(error: crate::config::ConfigError) -> Self {
        TrainError::Config(Box::new(error))
    }
}

impl TrainError {
    /// An I/O error constructor for `map_err`.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.to_path_buf();
        move |source| TrainError::Io {
            action,
            path,
            source,
        }
    }
}

/// How to run the trainer.
#[derive(Debug, Clone)]
pub struct TrainerOptions {
    /// Start fresh, or continue from a checkpoint.
    pub resume: ResumeMode,
    /// Draw a progress bar on a terminal (otherwise a line per `log_every_steps`).
    pub progress: bool,
    /// Set by a stop signal: write a checkpoint at the next step boundary and return.
    pub stop: StopFlag,
    /// Stop (with a checkpoint) once this many optimizer steps are done in total.
    pub max_steps: Option<u64>,
    /// Evaluate the best checkpoint on dev and test after the last epoch.
    pub final_evaluation: bool,
}

impl Default for TrainerOptions {
    fn default() -> Self {
        TrainerOptions {
            resume: ResumeMode::Fresh,
            progress: false,
            stop: StopFlag::manual(),
            max_steps: None,
            final_evaluation: true,
        }
    }
}

/// How a training run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// All epochs done.
    Finished {
        /// Best validation score (None if no validation ran).
        best_score: Option<f64>,
        /// Optimizer steps in total.
        global_step: u64,
    },
    /// Stopped early (signal or `max_steps`) after writing checkpoint `checkpoint`.
    Stopped {
        /// The signal, if one caused the stop.
        signal: Option<i32>,
        /// The checkpoint a resume continues from.
        checkpoint: String,
        /// Optimizer steps done.
        global_step: u64,
    },
}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
struct Position {
    global_step: u64,
    cursor: SamplerCursor,
    best_score: f64,
    validated: bool,
    freeze_block: Option<usize>,
}

/// Seed of torch's generator for the step after `global_step` completed steps (dropout).
pub fn step_seed(seed: u64, global_step: u64) -> i64 {
    let mut z = seed ^ global_step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// Trains `task` as `config` says, as one rank of `collective`'s group (see the module docs;
/// `&mut SingleProcess` for one worker).
pub fn train<T: Task>(
    config: &SltConfig,
    task: &mut T,
    options: &TrainerOptions,
    collective: &mut dyn Collective,
) -> Result<TrainOutcome, TrainError> {
    let training = &config.training;
    let model_dir = training.model_dir.clone();
    let rank = collective.rank();
    let world_size = collective.world_size();
    let leader = rank == 0;
    let ckpts = CheckpointDir::new(&model_dir, training.keep_last_ckpts);
    // Rank 0 prepares model_dir (moves an old run aside, writes config.yaml) before the others
    // look at it, so every rank resumes from the same checkpoint.
    let resume_from = if leader {
        let source = prepare_model_dir(config, &options.resume, true)?;
        collective.barrier()?;
        source
    } else {
        collective.barrier()?;
        prepare_model_dir(config, &options.resume, false)?
    };
    let mut log = if leader {
        Some(
            RunLog::open(&model_dir.join("metrics.jsonl"))
                .map_err(TrainError::io("opening", &model_dir.join("metrics.jsonl")))?,
        )
    } else {
        None
    };
    let optimization = &training.optimization;
    let mut adam = Adam::new(
        task.var_store(),
        &optimization.learning_rate,
        AdamHyper::from_config(optimization),
    )?;
    let metric = SelectionMetric::for_task(config.task);
    let seed = training.random_seed;
    let mut position = Position {
        global_step: 0,
        cursor: SamplerCursor::default(),
        best_score: metric.initial_best(),
        validated: false,
        freeze_block: None,
    };
    let cosine = match resume_from.map(|r| r.load(&ckpts)).transpose()? {
        Some(checkpoint) => {
            let cosine = restore(&checkpoint, task, &mut adam, &mut position, world_size)?;
            note(
                &mut log,
                "resume",
                json!({"checkpoint": checkpoint.name, "from_step": position.global_step,
                       "epoch": position.cursor.epoch, "batch": position.cursor.batch,
                       "skipped": checkpoint.skipped}),
            )?;
            if leader {
                eprintln!(
                    "resuming from checkpoint {} (epoch {}, batch {}, step {})",
                    checkpoint.name,
                    position.cursor.epoch,
                    position.cursor.batch,
                    position.global_step
                );
                for skipped in &checkpoint.skipped {
                    eprintln!("warning: skipped a damaged checkpoint: {skipped}");
                }
            }
            cosine
        }
        None => {
            let report = task.load_initial_weights()?;
            if leader && !report.is_empty() {
                eprintln!("{report}");
            }
            note(&mut log, "start", json!({"initial_weights": report}))?;
            CosineAnnealing::from_config(optimization, adam.lrs())?
        }
    };
    let mut schedule = LrSchedule {
        cosine,
        warmup_steps: optimization.warmup_steps,
    };
    // Every rank starts from rank 0's weights (fresh random init differs per process only if
    // seeding does; a resume reads the same files — this makes it hold regardless).
    let model: Vec<Tensor> = model_tensors(task.var_store())
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    broadcast_parameters(&model, collective)?;
    let trainable: Vec<Tensor> = trainable_named(task.var_store())?
        .into_iter()
        .map(|(_, t)| t)
        .collect();

    let sampler = DistributedSampler::train(
        task.split_len(Split::Train)?,
        rank,
        world_size,
        training.batch_size,
        training.shuffle,
        seed,
    )
    .map_err(TaskError::from)?;
    let batches_per_epoch = sampler.batches_per_epoch();
    let mut saver = Saver {
        config,
        ckpts: &ckpts,
        metric,
        leader,
        world_size,
        last_saved: None,
    };

    while position.cursor.epoch < training.total_epoch {
        let epoch = position.cursor.epoch;
        let fresh_epoch = position.cursor.batch == 0;
        if fresh_epoch || position.freeze_block.is_none() {
            position.freeze_block = config.freeze_block_at_epoch(epoch);
        }
        task.set_frozen_blocks(position.freeze_block)?;
        if fresh_epoch {
            schedule.cosine.step();
        }
        let plan = sampler.batches(epoch as u64, position.cursor.batch);
        let bar = progress_bar(
            options.progress && leader,
            epoch,
            batches_per_epoch,
            position,
        );
        let stream = task.train_batches(plan, seed)?;
        let epoch_started = Instant::now();
        let mut window = StepWindow::default();
        for item in stream {
            let (next, batch) = item?;
            let rates = schedule.rates(position.global_step);
            adam.set_lrs(&rates)?;
            tch::manual_seed(step_seed(seed, position.global_step));
            adam.zero_grad()?;
            let terms = task.training_loss(&batch)?;
            let loss = terms
                .total
                .f_double_value(&[])
                .map_err(|source| TrainError::Torch {
                    context: "reading the loss".into(),
                    source,
                })?;
            if !loss.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    loss,
                    step: position.global_step,
                    epoch,
                    batch: position.cursor.batch,
                });
            }
            terms
                .total
                .f_backward()
                .map_err(|source| TrainError::Torch {
                    context: format!("backward at step {}", position.global_step),
                    source,
                })?;
            average_gradients(&trainable, collective, GRADIENT_BUCKET_BYTES)?;
            adam.step()?;
            drop(batch);
            position.global_step += 1;
            position.cursor = SamplerCursor {
                epoch: next.epoch as usize,
                batch: next.batch,
            };
            window.add(loss, terms.samples);
            if let Some(bar) = &bar {
                bar.set_position(position.cursor.batch as u64);
                bar.set_message(format!("loss {loss:.4} lr {:.3e}", rates[0]));
            }
            if position.global_step % training.log_every_steps as u64 == 0 {
                let (mean_loss, samples_per_s) = window.take();
                let fields = json!({"step": position.global_step, "epoch": epoch,
                    "batch": position.cursor.batch, "loss": mean_loss, "lr": rates,
                    "samples_per_s": samples_per_s, "parts": terms.parts.iter()
                        .map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()});
                note(&mut log, "train", fields)?;
                if bar.is_none() && leader {
                    eprintln!(
                        "epoch {epoch} step {} batch {}/{batches_per_epoch} loss {mean_loss:.4} lr {:.3e} {samples_per_s:.2} samples/s",
                        position.global_step, position.cursor.batch, rates[0]
                    );
                }
            }
            let epoch_done = position.cursor.batch >= batches_per_epoch;
            let validation = &training.validation;
            if validation.unit == ValidationUnit::Step
                && position.global_step % validation.freq as u64 == 0
            {
                let name = format!("step_{}", position.global_step);
                validate_and_save(
                    &mut saver,
                    &name,
                    task,
                    &adam,
                    &schedule,
                    &mut position,
                    &mut log,
                    collective,
                )?;
            } else if training
                .checkpoint_every_steps
                .is_some_and(|every| position.global_step % every as u64 == 0)
                && !epoch_done
            {
                let name = format!("step_{}", position.global_step);
                saver.save(&name, task, &adam, &schedule, &position, None, &mut log)?;
            }
            if !epoch_done {
                if let Some(outcome) = stop_if_asked(
                    options, &mut saver, task, &adam, &schedule, &position, &mut log, collective,
                )? {
                    return Ok(outcome);
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        // End of the epoch: the next batch is the first of the next epoch.
        position.cursor = SamplerCursor {
            epoch: epoch + 1,
            batch: 0,
        };
        let last = epoch + 1 == training.total_epoch;
        let validation = &training.validation;
        let name = format!("epoch_{epoch:02}");
        if leader {
            eprintln!(
                "epoch {epoch} done in {:.1} s (step {})",
                epoch_started.elapsed().as_secs_f64(),
                position.global_step
            );
        }
        let due =
            validation.unit == ValidationUnit::Epoch && epoch > 0 && epoch % validation.freq == 0;
        if due || (last && validation.unit == ValidationUnit::Epoch) {
            validate_and_save(
                &mut saver,
                &name,
                task,
                &adam,
                &schedule,
                &mut position,
                &mut log,
                collective,
            )?;
        } else {
            saver.save(&name, task, &adam, &schedule, &position, None, &mut log)?;
        }
        if !last {
            if let Some(outcome) = stop_if_asked(
                options, &mut saver, task, &adam, &schedule, &position, &mut log, collective,
            )? {
                return Ok(outcome);
            }
        }
    }

    collective.barrier()?;
    if options.final_evaluation {
        final_evaluation(config, task, &ckpts, &mut log, collective)?;
    }
    Ok(TrainOutcome::Finished {
        best_score: position.validated.then_some(position.best_score),
        global_step: position.global_step,
    })
}

/// Loss and throughput between two log lines.
#[derive(Debug)]
struct StepWindow {
    loss_sum: f64,
    steps: usize,
    samples: usize,
    started: Instant,
}

impl Default for StepWindow {
    fn default() -> Self {
        StepWindow {
            loss_sum: 0.0,
            steps: 0,
            samples: 0,
            started: Instant::now(),
        }
    }
}

impl StepWindow {
    fn add(&mut self, loss: f64, samples: usize) {
        self.loss_sum += loss;
        self.steps += 1;
        self.samples += samples;
    }

    /// Mean loss and samples per second since the last call.
    fn take(&mut self) -> (f64, f64) {
        let mean = self.loss_sum / self.steps.max(1) as f64;
        let rate = self.samples as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        *self = StepWindow::default();
        (mean, rate)
    }
}

fn progress_bar(
    enabled: bool,
    epoch: usize,
    batches: usize,
    position: Position,
) -> Option<ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
    if bar.is_hidden() {
        return None;
    }
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(epoch.to_string());
    bar.set_position(position.cursor.batch as u64);
    bar.reset_eta();
    Some(bar)
}

fn note(
    log: &mut Option<RunLog>,
    event: &str,
    fields: serde_json::Value,
) -> Result<(), TrainError> {
    if let Some(log) = log {
        let path = log.path().to_path_buf();
        log.write(event, fields)
            .map_err(TrainError::io("appending to", &path))?;
    }
    Ok(())
}

/// Restores model, optimizer, schedule and position from a checkpoint.
fn restore<T: Task>(
    checkpoint: &LoadedCheckpoint,
    task: &mut T,
    adam: &mut Adam,
    position: &mut Position,
    world_size: usize,
) -> Result<CosineAnnealing, TrainError> {
    checkpoint.restore_model(task.var_store())?;
    adam.load_state(&checkpoint.state.optimizer, &checkpoint.optimizer)?;
    let state = &checkpoint.state;
    if state.world_size != world_size {
        eprintln!(
            "warning: checkpoint {} was written by {} workers, this run has {}; the data order \
             of the remaining epochs differs from the original run",
            checkpoint.name, state.world_size, world_size
        );
    }
    *position = Position {
        global_step: state.global_step,
        cursor: state.cursor,
        best_score: state.best_score,
        validated: state
            .extra
            .get("validated")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        freeze_block: state.freeze_block,
    };
    Ok(CosineAnnealing::from_state(state.scheduler.clone())?)
}

/// Writes checkpoints (rank 0 only).
struct Saver<'a> {
    config: &'a SltConfig,
    ckpts: &'a CheckpointDir,
    metric: SelectionMetric,
    leader: bool,
    world_size: usize,
    /// `(global_step, name)` of the last checkpoint written by this run.
    last_saved: Option<(u64, String)>,
}

impl Saver<'_> {
    #[allow(clippy::too_many_arguments)]
    fn save<T: Task>(
        &mut self,
        name: &str,
        task: &T,
        adam: &Adam,
        schedule: &LrSchedule,
        position: &Position,
        current_score: Option<(f64, bool)>,
        log: &mut Option<RunLog>,
    ) -> Result<(), TrainError> {
        self.last_saved = Some((position.global_step, name.to_string()));
        if !self.leader {
            return Ok(());
        }
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("validated".to_string(), json!(position.validated));
        let state = TrainState {
            epoch: position.cursor.epoch,
            global_step: position.global_step,
            cursor: position.cursor,
            scheduler: schedule.cosine.state().clone(),
            optimizer: adam.state(),
            best_score: position.best_score,
            current_score: current_score.map(|(score, _)| score),
            seed: self.config.training.random_seed,
            world_size: self.world_size,
            config_yaml: self.config.to_yaml()?,
            freeze_block: position.freeze_block,
            extra,
        };
        let contents = CheckpointContents {
            model: model_tensors(task.var_store()),
            optimizer: adam.state_tensors(),
            state,
        };
        let best = current_score.is_some_and(|(_, best)| best);
        let saved = self.ckpts.save(name, &contents, best)?;
        note(
            log,
            "checkpoint",
            json!({"name": name, "step": position.global_step, "best": best,
                   "metric": self.metric.name(), "score": current_score.map(|s| s.0),
                   "pruned": saved.pruned}),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn validate_and_save<T: Task>(
    saver: &mut Saver<'_>,
    name: &str,
    task: &mut T,
    adam: &Adam,
    schedule: &LrSchedule,
    position: &mut Position,
    log: &mut Option<RunLog>,
    collective: &mut dyn Collective,
) -> Result<(), TrainError> {
    let config = saver.config;
    let evaluation = evaluate_split(
        task,
        Split::Dev,
        &config.training.validation.cfg,
        config.training.batch_size,
        collective,
    )?;
    let score = saver.metric.score(&evaluation.scores).ok_or_else(|| {
        TrainError::ModelDir(format!(
            "validation produced no {} score for task {:?}",
            saver.metric.name(),
            config.task
        ))
    })?;
    let best = saver.metric.is_best(score, position.best_score);
    if best {
        position.best_score = score;
    }
    position.validated = true;
    if saver.leader {
        eprintln!(
            "validation at step {} ({name}): {}{}",
            position.global_step,
            summary_line(&evaluation),
            if best { " — new best" } else { "" }
        );
        write_evaluation(
            &config.training.model_dir.join("validation").join(name),
            &evaluation,
        )?;
    }
    note(
        log,
        "validation",
        json!({"name": name, "step": position.global_step, "epoch": position.cursor.epoch,
               "split": "dev", "scores": evaluation.scores, "seconds": evaluation.seconds,
               "best": best, "best_score": position.best_score}),
    )?;
    saver.save(
        name,
        task,
        adam,
        schedule,
        position,
        Some((score, best)),
        log,
    )?;
    collective.barrier()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn stop_if_asked<T: Task>(
    options: &TrainerOptions,
    saver: &mut Saver<'_>,
    task: &T,
    adam: &Adam,
    schedule: &LrSchedule,
    position: &Position,
    log: &mut Option<RunLog>,
    collective: &mut dyn Collective,
) -> Result<Option<TrainOutcome>, TrainError> {
    // All ranks must stop at the same step: the highest signal number seen by any rank wins.
    let mut seen = [options.stop.received().unwrap_or(0) as f32];
    if collective.world_size() > 1 {
        let mut flags = vec![0f32; collective.world_size()];
        flags[collective.rank()] = seen[0];
        collective.all_reduce_sum_f32(&mut flags)?;
        seen[0] = flags.iter().copied().fold(0.0, f32::max);
    }
    let signal = (seen[0] > 0.0).then_some(seen[0] as i32);
    let limit = options
        .max_steps
        .is_some_and(|max| position.global_step >= max);
    if signal.is_none() && !limit {
        return Ok(None);
    }
    let name = match &saver.last_saved {
        Some((step, name)) if *step == position.global_step => name.clone(),
        _ => {
            let name = format!("step_{}", position.global_step);
            saver.save(&name, task, adam, schedule, position, None, log)?;
            name
        }
    };
    note(
        log,
        "interrupt",
        json!({"signal": signal, "step": position.global_step, "checkpoint": name}),
    )?;
    collective.barrier()?;
    if collective.rank() == 0 {
        eprintln!(
            "stopping at step {} ({}); resume with --resume auto from checkpoint {name}",
            position.global_step,
            signal.map_or("step limit".to_string(), |s| format!("signal {s}"))
        );
    }
    Ok(Some(TrainOutcome::Stopped {
        signal,
        checkpoint: name,
        global_step: position.global_step,
    }))
}

/// Evaluates the best checkpoint (or the latest, without validation) on dev and test.
fn final_evaluation<T: Task>(
    config: &SltConfig,
    task: &mut T,
    ckpts: &CheckpointDir,
    log: &mut Option<RunLog>,
    collective: &mut dyn Collective,
) -> Result<(), TrainError> {
    let Some(name) = ckpts.best()?.or(ckpts.latest()?) else {
        return Ok(());
    };
    let leader = collective.rank() == 0;
    let checkpoint = ckpts.load(&name)?;
    checkpoint.restore_model(task.var_store())?;
    for split in [Split::Dev, Split::Test] {
        if !annotation_path(&config.data, split).exists() {
            if leader {
                eprintln!(
                    "{split}: skipped ({} does not exist)",
                    annotation_path(&config.data, split).display()
                );
            }
            continue;
        }
        let evaluation = evaluate_split(
            task,
            split,
            &config.testing.cfg,
            config.training.batch_size,
            collective,
        )?;
        if !leader {
            continue;
        }
        eprintln!("final ({name}) {}", summary_line(&evaluation));
        write_evaluation(
            &config
                .training
                .model_dir
                .join("eval")
                .join(&name)
                .join(split.name()),
            &evaluation,
        )?;
        note(
            log,
            "evaluation",
            json!({"checkpoint": name, "split": split.name(), "scores": evaluation.scores,
                   "samples": evaluation.samples, "seconds": evaluation.seconds}),
        )?;
    }
    Ok(())
}

/// Which checkpoint a resumed run continues from.
#[derive(Debug, Clone)]
pub enum ResumeSource {
    /// `--resume auto`: the newest complete checkpoint of `model_dir`.
    Latest,
    /// A named checkpoint directory of `model_dir/ckpts` or a path to one.
    Named(String),
}

impl ResumeSource {
    fn load(&self, ckpts: &CheckpointDir) -> Result<LoadedCheckpoint, TrainError> {
        match self {
            ResumeSource::Latest => ckpts.resume_auto()?.ok_or_else(|| {
                TrainError::ModelDir(format!(
                    "no complete checkpoint under {} to resume from",
                    ckpts.path().display()
                ))
            }),
            ResumeSource::Named(name) => Ok(ckpts.load(name)?),
        }
    }
}
