//! Checkpoint directories: round trip of model, optimizer and state; atomic writes (leftover
//! temporaries ignored and cleaned); broken checkpoints rejected by name and file, with
//! `resume_auto` falling back; numeric ordering; keep-last pruning that spares `best`.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test checkpoint
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::json;
use slt::config::LearningRates;
use slt::train::checkpoint::{
    model_tensors, CheckpointContents, CheckpointDir, CheckpointError, SamplerCursor, TrainState,
    MANIFEST_FILE, MODEL_FILE, OPTIMIZER_FILE,
};
use slt::train::optimizer::{Adam, AdamHyper};
use slt::train::schedule::CosineAnnealing;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const HYPER: AdamHyper = AdamHyper {
    betas: [0.9, 0.998],
    eps: 1e-8,
    weight_decay: 1e-3,
    amsgrad: false,
};

fn rates() -> LearningRates {
    serde_json::from_value(json!({"default": 1e-3, "translation": 1e-5})).expect("rates")
}

/// A small model: two groups, a buffer; `seed` varies the values.
fn model(seed: f64) -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let rec = root.sub("recognition_network");
    let _ = rec
        .sub("conv")
        .var("weight", &[2, 3], tch::nn::Init::Const(seed));
    let mut mean = rec.sub("bn").zeros_no_train("running_mean", &[3]);
    let _ = tch::no_grad(|| mean.fill_(seed + 0.5));
    let _ = root.sub("translation_network").sub("proj").var(
        "weight",
        &[4],
        tch::nn::Init::Const(-seed),
    );
    vs
}

/// Model, optimizer after two steps and schedule after one epoch.
fn trained(seed: f64) -> (VarStore, Adam, CosineAnnealing) {
    let vs = model(seed);
    let mut adam = Adam::new(&vs, &rates(), HYPER).expect("adam");
    let mut schedule = CosineAnnealing::new(5, 0.0, adam.lrs()).expect("schedule");
    adam.set_lrs(schedule.step()).expect("lrs");
    for _ in 0..2 {
        adam.zero_grad().expect("zero");
        let mut loss = Tensor::zeros([0i64; 0], (Kind::Float, Device::Cpu));
        for (_, t) in slt::train::optimizer::trainable_named(&vs).expect("named") {
            loss += (&t * &t).sum(Kind::Float);
        }
        loss.backward();
        adam.step().expect("step");
    }
    (vs, adam, schedule)
}

fn contents(global_step: u64, seed: f64) -> CheckpointContents {
    let (vs, adam, schedule) = trained(seed);
    CheckpointContents {
        model: model_tensors(&vs),
        optimizer: adam.state_tensors(),
        state: TrainState {
            epoch: (global_step / 10) as usize,
            global_step,
            cursor: SamplerCursor {
                epoch: (global_step / 10) as usize,
                batch: (global_step % 10) as usize,
            },
            scheduler: schedule.state().clone(),
            optimizer: adam.state(),
            best_score: 23.5,
            current_score: Some(21.0),
            seed: 42,
            world_size: 1,
            config_yaml: "task: S2T\n".to_string(),
            freeze_block: Some(1),
            extra: BTreeMap::from([("note".to_string(), json!("x"))]),
        },
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_restores_model_optimizer_and_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpts = CheckpointDir::new(tmp.path(), 3);
    let saved = contents(17, 0.25);
    let written = ckpts.save("step_17", &saved, true).expect("save");
    assert_eq!(written.manifest.files.len(), 3);
    assert_eq!(ckpts.latest().expect("latest").as_deref(), Some("step_17"));
    assert_eq!(ckpts.best().expect("best").as_deref(), Some("step_17"));
    assert_eq!(
        names(ckpts.path()),
        ["best", "latest", "step_17"],
        "no temporaries left behind"
    );

    let loaded = ckpts.resume_auto().expect("resume").expect("a checkpoint");
    assert_eq!(loaded.name, "step_17");
    assert_eq!(loaded.state, saved.state);
    assert!(loaded.skipped.is_empty());

    // Into a model with other values: every variable, buffers included, is restored.
    let vs = model(9.0);
    let report = loaded.restore_model(&vs).expect("restore");
    assert_eq!(report.loaded, 3);
    for (name, tensor) in &saved.model {
        assert!(vs.variables()[name].equal(tensor), "{name}");
    }
    assert!(vs.variables()["recognition_network.conv.weight"].requires_grad());

    let mut adam = Adam::new(&vs, &rates(), HYPER).expect("adam");
    adam.load_state(&loaded.state.optimizer, &loaded.optimizer)
        .expect("optimizer state");
    assert_eq!(adam.state(), saved.state.optimizer);
    for ((a, x), (b, y)) in adam.state_tensors().iter().zip(&saved.optimizer) {
        assert_eq!(a, b);
        assert!(x.equal(y), "{a}");
    }
    let schedule = CosineAnnealing::from_state(loaded.state.scheduler.clone()).expect("sched");
    assert_eq!(schedule.lrs(), adam.lrs());

    // A model with another shape is refused by name.
    let other = VarStore::new(Device::Cpu);
    let _ = other.root().sub("recognition_network").sub("conv").var(
        "weight",
        &[3, 3],
        tch::nn::Init::Const(0.0),
    );
    let error = loaded
        .restore_model(&other)
        .expect_err("mismatch")
        .to_string();
    assert!(error.contains("recognition_network.conv.weight"), "{error}");
}

#[test]
fn leftover_temporaries_are_ignored_and_cleaned() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpts = CheckpointDir::new(tmp.path(), 0);
    ckpts
        .save("step_10", &contents(10, 0.5), false)
        .expect("save");
    // A writer killed mid-way (dead pid) left a newer partial checkpoint and a pointer temp.
    let partial = ckpts.path().join("step_20.tmp-4194000");
    fs::create_dir(&partial).expect("mkdir");
    fs::write(partial.join(MODEL_FILE), b"partial").expect("write");
    fs::write(ckpts.path().join("latest.tmp-4194000"), b"step_20\n").expect("write");

    let listed: Vec<String> = ckpts
        .list()
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(listed, ["step_10"]);
    let loaded = ckpts.resume_auto().expect("resume").expect("a checkpoint");
    assert_eq!(loaded.name, "step_10");
    assert_eq!(names(ckpts.path()), ["latest", "step_10"]);
}

#[test]
fn broken_checkpoints_are_named_and_resume_falls_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpts = CheckpointDir::new(tmp.path(), 0);
    for step in [10, 20, 30] {
        ckpts
            .save(&format!("step_{step}"), &contents(step, step as f64), false)
            .expect("save");
    }
    // step_30: truncated model file.
    let model = ckpts.path().join("step_30").join(MODEL_FILE);
    let length = fs::metadata(&model).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .and_then(|f| f.set_len(length / 2))
        .expect("truncate");
    let error = ckpts.load("step_30").expect_err("truncated").to_string();
    assert!(
        error.contains("`step_30`") && error.contains(MODEL_FILE),
        "{error}"
    );
    assert!(error.contains("truncated"), "{error}");

    // step_20: optimizer file deleted.
    fs::remove_file(ckpts.path().join("step_20").join(OPTIMIZER_FILE)).expect("rm");
    let error = ckpts.load("step_20").expect_err("missing").to_string();
    assert!(
        error.contains("`step_20`") && error.contains(OPTIMIZER_FILE),
        "{error}"
    );
    assert!(error.contains("missing"), "{error}");

    let loaded = ckpts.resume_auto().expect("resume").expect("a checkpoint");
    assert_eq!(loaded.name, "step_10");
    assert_eq!(loaded.state.global_step, 10);
    assert_eq!(loaded.skipped.len(), 2);
    assert!(loaded.skipped[0].contains("step_30") && loaded.skipped[0].contains(MODEL_FILE));
    assert!(loaded.skipped[1].contains("step_20") && loaded.skipped[1].contains(OPTIMIZER_FILE));

    // Without a manifest (write never finished) and when nothing is left.
    fs::remove_file(ckpts.path().join("step_10").join(MANIFEST_FILE)).expect("rm");
    let error = ckpts.resume_auto().expect_err("all broken");
    assert!(
        matches!(&error, CheckpointError::NoCompleteCheckpoint { skipped, .. } if skipped.len() == 3),
        "{error}"
    );
    assert!(error.to_string().contains(MANIFEST_FILE), "{error}");
    let empty = CheckpointDir::new(&tmp.path().join("fresh"), 2);
    assert!(empty.resume_auto().expect("fresh start").is_none());
    assert!(matches!(
        empty.load("step_1"),
        Err(CheckpointError::NotFound { .. })
    ));
}

#[test]
fn resume_orders_by_global_step_not_by_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpts = CheckpointDir::new(tmp.path(), 0);
    ckpts
        .save("step_200", &contents(200, 1.0), false)
        .expect("save");
    ckpts
        .save("step_1000", &contents(1000, 2.0), false)
        .expect("save");
    // Even if the `latest` pointer lags (killed between rename and pointer update).
    fs::write(ckpts.path().join("latest"), "step_200\n").expect("write");
    let loaded = ckpts.resume_auto().expect("resume").expect("a checkpoint");
    assert_eq!(loaded.name, "step_1000");
}

#[test]
fn keep_last_prunes_oldest_but_never_best_or_latest() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpts = CheckpointDir::new(tmp.path(), 2);
    let list = |c: &CheckpointDir| -> Vec<String> {
        c.list()
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    ckpts
        .save("epoch_01", &contents(10, 1.0), true)
        .expect("save");
    ckpts
        .save("epoch_02", &contents(20, 1.0), false)
        .expect("save");
    let saved = ckpts
        .save("epoch_03", &contents(30, 1.0), false)
        .expect("save");
    assert!(
        saved.pruned.is_empty(),
        "epoch_01 is best: {:?}",
        saved.pruned
    );
    assert_eq!(list(&ckpts), ["epoch_01", "epoch_02", "epoch_03"]);
    let saved = ckpts
        .save("epoch_04", &contents(40, 1.0), false)
        .expect("save");
    assert_eq!(saved.pruned, ["epoch_02"]);
    assert_eq!(list(&ckpts), ["epoch_01", "epoch_03", "epoch_04"]);
    assert_eq!(ckpts.best().expect("best").as_deref(), Some("epoch_01"));

    // A new best releases the old one.
    let saved = ckpts
        .save("epoch_05", &contents(50, 1.0), true)
        .expect("save");
    assert_eq!(saved.pruned, ["epoch_01", "epoch_03"]);
    assert_eq!(list(&ckpts), ["epoch_04", "epoch_05"]);
    assert_eq!(ckpts.best().expect("best").as_deref(), Some("epoch_05"));
    assert_eq!(ckpts.latest().expect("latest").as_deref(), Some("epoch_05"));
    assert_eq!(
        fs::read_to_string(ckpts.path().join("best")).expect("read"),
        "epoch_05\n"
    );
    assert!(names(ckpts.path()).iter().all(|n| !n.contains(".tmp-")));

    // Re-saving an existing name replaces it.
    ckpts
        .save("epoch_05", &contents(51, 3.0), true)
        .expect("resave");
    let loaded = ckpts.load("epoch_05").expect("load");
    assert_eq!(loaded.state.global_step, 51);
}

#[test]
fn invalid_input_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpts = CheckpointDir::new(tmp.path(), 2);
    for name in ["", "latest", "best", "a/b", ".hidden", "x.tmp-1"] {
        assert!(
            matches!(
                ckpts.save(name, &contents(1, 1.0), false),
                Err(CheckpointError::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
    let mut twice = contents(1, 1.0);
    let first = twice.model[0].0.clone();
    twice.model.push((first.clone(), Tensor::from(1.0f32)));
    let error = ckpts
        .save("step_1", &twice, false)
        .expect_err("dup")
        .to_string();
    assert!(error.contains(&first), "{error}");
    assert!(ckpts.list().expect("list").is_empty());
}
