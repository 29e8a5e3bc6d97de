//! The shared trainer on a tiny synthetic Sign2Gloss set: a run stopped mid-epoch and resumed
//! ends with exactly the parameters of an uninterrupted run; a damaged newest checkpoint makes
//! the resume fall back to the previous one and still end identically; a fresh run refuses a
//! `model_dir` that holds checkpoints; `slt train` killed with SIGKILL resumes with
//! `--resume auto` and finishes with the uninterrupted run's parameters.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test train_resume
//! ```

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slt::config::SltConfig;
use slt::dist::SingleProcess;
use slt::train::checkpoint::{CheckpointDir, MODEL_FILE};
use slt::train::tasks::Sign2GlossTask;
use slt::train::trainer::{train, ResumeMode, TrainOutcome, TrainerOptions};
use tch::{Device, Kind, Tensor};

/// A two-epoch S2G config over the tiny set in `data`, writing to `model_dir`.
fn config_yaml(data: &Path, model_dir: &Path) -> String {
    let d = data.display();
    format!(
        r#"
task: S2G
data:
  dataset_name: phoenix-2014t
  synthetic: true
  input_data: videos
  input_streams: [rgb]
  zip_file: {d}/videos.zip
  train: {d}/synthetic.train
  dev: {d}/synthetic.dev
  test: {d}/synthetic.test
  level: word
  transform_cfg:
    img_size: 32
    color_jitter: true
    bottom_area: 0.7
    aspect_ratio_min: 0.75
    aspect_ratio_max: 1.3
    center_crop: true
    center_crop_size: 64
    temporal_augmentation: {{tmin: 0.5, tmax: 1.5}}
training:
  model_dir: {m}
  overwrite: false
  shuffle: true
  num_workers: 1
  batch_size: 2
  total_epoch: 2
  keep_last_ckpts: 0
  random_seed: 7
  checkpoint_every_steps: 1
  log_every_steps: 1
  validation:
    unit: epoch
    freq: 1
    cfg: {{recognition: {{beam_size: 1}}}}
  optimization:
    optimizer: Adam
    learning_rate: {{default: 1.0e-3}}
    weight_decay: 0.001
    betas: [0.9, 0.998]
    scheduler: cosineannealing
    t_max: 2
testing:
  cfg: {{recognition: {{beam_size: 2}}}}
model:
  RecognitionNetwork:
    GlossTokenizer:
      gloss2id_file: {d}/gloss2ids.pkl
    s3d:
      pretrained_ckpt: scratch
      use_block: 4
      freeze_block: 1
    visual_head:
      input_size: 832
      hidden_size: 16
      ff_size: 32
      pe: true
      ff_kernelsize: [3, 3]
"#,
        m = model_dir.display()
    )
}

fn load_config(data: &Path, model_dir: &Path) -> SltConfig {
    SltConfig::from_yaml_str(&config_yaml(data, model_dir), "train_resume.yaml", &[])
        .expect("test config")
}

fn options(resume: ResumeMode, max_steps: Option<u64>) -> TrainerOptions {
    TrainerOptions {
        resume,
        max_steps,
        final_evaluation: false,
        ..TrainerOptions::default()
    }
}

fn run(config: &SltConfig, options: &TrainerOptions) -> TrainOutcome {
    let mut task = Sign2GlossTask::new(config, Device::Cpu).expect("task");
    train(config, &mut task, options, &mut SingleProcess).expect("training")
}

/// The model tensors of checkpoint `name`, by name.
fn model_tensors(model_dir: &Path, name: &str) -> Vec<(String, Tensor)> {
    let mut tensors = Tensor::read_safetensors(model_dir.join("ckpts").join(name).join(MODEL_FILE))
        .expect("model file");
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Asserts bitwise equality, naming the first tensor that differs.
fn assert_same_model(actual: &[(String, Tensor)], expected: &[(String, Tensor)], what: &str) {
    let names = |t: &[(String, Tensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(actual),
        names(expected),
        "{what}: tensor names differ"
    );
    for ((name, a), (_, e)) in actual.iter().zip(expected) {
        if !a.equal(e) {
            let diff = (a.to_kind(Kind::Double) - e.to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            panic!("{what}: `{name}` differs (max |diff| {diff:e})");
        }
    }
}

fn latest(model_dir: &Path) -> String {
    CheckpointDir::new(model_dir, 0)
        .latest()
        .expect("pointer")
        .expect("a checkpoint")
}

#[test]
fn stopped_and_resumed_run_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());

    let full_dir = dir.path().join("full");
    let config = load_config(&data, &full_dir);
    let outcome = run(&config, &options(ResumeMode::Fresh, None));
    let steps = match outcome {
        TrainOutcome::Finished { global_step, .. } => global_step,
        other => panic!("expected a finished run, got {other:?}"),
    };
    assert_eq!(steps, 6, "6 training videos, batch 2, 2 epochs");
    let reference = model_tensors(&full_dir, "epoch_01");

    // Stop after 2 of the 3 steps of epoch 0 (mid-epoch), then resume.
    let resumed_dir = dir.path().join("resumed");
    let config = load_config(&data, &resumed_dir);
    match run(&config, &options(ResumeMode::Fresh, Some(2))) {
        TrainOutcome::Stopped {
            checkpoint,
            global_step,
            ..
        } => {
            assert_eq!((checkpoint.as_str(), global_step), ("step_2", 2));
        }
        other => panic!("expected a stop, got {other:?}"),
    }
    // A fresh run must not touch the stopped run's checkpoints.
    let mut task = Sign2GlossTask::new(&config, Device::Cpu).expect("task");
    let refused = train(
        &config,
        &mut task,
        &options(ResumeMode::Fresh, None),
        &mut SingleProcess,
    )
    .expect_err("fresh run into a model_dir with checkpoints");
    assert!(refused.to_string().contains("--resume auto"), "{refused}");
    drop(task);

    let outcome = run(&config, &options(ResumeMode::Auto, None));
    assert!(
        matches!(outcome, TrainOutcome::Finished { global_step: 6, .. }),
        "{outcome:?}"
    );
    assert_same_model(
        &model_tensors(&resumed_dir, "epoch_01"),
        &reference,
        "stopped at step 2 and resumed",
    );

    // Damage the newest checkpoint of a run stopped at step 4 (epoch 1): resume falls back to
    // step_3 (= epoch_00's position), replays step 4 and still ends identically.
    let damaged_dir = dir.path().join("damaged");
    let config = load_config(&data, &damaged_dir);
    assert!(matches!(
        run(&config, &options(ResumeMode::Fresh, Some(4))),
        TrainOutcome::Stopped { global_step: 4, .. }
    ));
    let newest = latest(&damaged_dir);
    assert_eq!(newest, "step_4");
    let model = damaged_dir.join("ckpts").join(&newest).join(MODEL_FILE);
    let bytes = fs::read(&model).expect("model");
    fs::write(&model, &bytes[..bytes.len() / 2]).expect("truncate");
    let broken = CheckpointDir::new(&damaged_dir, 0)
        .load(&newest)
        .expect_err("a truncated checkpoint is rejected");
    assert!(broken.to_string().contains(MODEL_FILE), "{broken}");
    let outcome = run(&config, &options(ResumeMode::Auto, None));
    assert!(
        matches!(outcome, TrainOutcome::Finished { global_step: 6, .. }),
        "{outcome:?}"
    );
    assert_same_model(
        &model_tensors(&damaged_dir, "epoch_01"),
        &reference,
        "resumed past a damaged checkpoint",
    );

    // The metrics log records the resume and the validations.
    let log = fs::read_to_string(resumed_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    assert!(
        log.lines().any(|l| l.contains("\"event\":\"resume\"")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("\"event\":\"validation\"")),
        "{log}"
    );
}

fn slt_train(config: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slt"));
    command
        .args(["train", "--config"])
        .arg(config)
        .args(["--device", "cpu", "--no-final-eval"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn sigkilled_cli_run_resumes_and_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());
    let write_config = |name: &str| -> (PathBuf, PathBuf) {
        let model_dir = dir.path().join(name);
        let path = dir.path().join(format!("{name}.yaml"));
        fs::write(&path, config_yaml(&data, &model_dir)).expect("config");
        (path, model_dir)
    };

    let (full_config, full_dir) = write_config("full");
    let status = slt_train(&full_config, &[]).status().expect("slt train");
    assert!(status.success(), "uninterrupted run failed: {status}");
    let reference = model_tensors(&full_dir, "epoch_01");

    let (config, model_dir) = write_config("killed");
    let mut child = slt_train(&config, &[]).spawn().expect("slt train");
    // Wait for the first mid-epoch checkpoint, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !model_dir.join("ckpts").join("step_1").is_dir() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        if let Some(status) = child.try_wait().expect("poll") {
            panic!("slt train ended before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // The newest committed checkpoint directory, which is what `--resume auto` scans for. Not
    // the `latest` pointer: the kill may land between a checkpoint's rename and the pointer
    // update, leaving no pointer or an older one.
    let killed_at = CheckpointDir::new(&model_dir, 0)
        .list()
        .expect("listing checkpoints")
        .pop()
        .expect("step_1 was seen")
        .name;
    assert_ne!(killed_at, "epoch_01", "the run finished before the kill");

    let output = slt_train(&config, &["--resume", "auto"])
        .output()
        .expect("slt train --resume auto");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "resumed run failed:\n{stderr}");
    assert!(stderr.contains("resuming from checkpoint"), "{stderr}");
    assert_same_model(
        &model_tensors(&model_dir, "epoch_01"),
        &reference,
        &format!("killed after {killed_at} and resumed"),
    );
}
