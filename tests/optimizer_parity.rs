//! `Adam` + `CosineAnnealing` against `torch.optim.Adam` + `CosineAnnealingLR` (torch 2.13),
//! stepped like the reference: scheduler at every epoch start, then per batch zero_grad →
//! backward → step. Parameter groups with different rates, a parameter frozen throughout, one
//! that becomes trainable in epoch 2 (fresh state), one without a gradient on every other step,
//! and a run that is checkpointed mid-epoch and resumed in a new optimizer
//! (`tests/oracles/adam_oracle.py`). On CPU the trajectories come out bitwise equal (the test
//! asserts 1e-6 relative and prints the count); where CUDA is available the run is repeated on the
//! GPU against the same (CPU) oracle.
//!
//! Needs the venv interpreter in `SLT_PYTHON_ORACLE` (exported by ./setup.sh):
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test optimizer_parity
//! ```
//! Without it the tests fail, unless `SLT_SKIP_ORACLE=1` (then they report being skipped).

mod common;

use common::oracle_python;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use slt::config::LearningRates;
use slt::train::optimizer::{Adam, AdamHyper, AdamState};
use slt::train::schedule::{CosineAnnealing, CosineAnnealingState};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const REL_TOL: f64 = 1e-6;
const LR_TOL: f64 = 1e-12;
const EPOCHS: usize = 5;
const STEPS_PER_EPOCH: usize = 3;
const T_MAX: usize = 5;

/// (name, shape, first trainable epoch; None = frozen throughout)
const PARAMS: [(&str, &[i64], Option<usize>); 6] = [
    ("recognition_network.conv.weight", &[3, 4], Some(0)),
    ("recognition_network.frozen.weight", &[5], None),
    ("recognition_network.late.weight", &[4], Some(2)),
    ("translation_network.proj.weight", &[2, 3], Some(0)),
    ("vl_mapper.fc.weight", &[6], Some(0)),
    ("vl_mapper.fc.bias", &[3], Some(0)),
];
/// Gets no gradient on odd global steps (unused by the graph).
const SOMETIMES_UNUSED: &str = "vl_mapper.fc.bias";

/// Deterministic values in [-scale, scale] (splitmix64).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn numel(shape: &[i64]) -> usize {
    shape.iter().product::<i64>() as usize
}

fn rates() -> LearningRates {
    serde_json::from_value(json!({"default": 1e-3, "translation": 1e-5, "mapper": 2e-3}))
        .expect("rates")
}

fn trainable_in(epoch: usize) -> Vec<&'static str> {
    PARAMS
        .iter()
        .filter(|(_, _, from)| from.is_some_and(|f| epoch >= f))
        .map(|(name, _, _)| *name)
        .collect()
}

/// Per global step: the parameters that get a gradient, with its values.
fn gradient_plan() -> Vec<BTreeMap<&'static str, Vec<f32>>> {
    (0..EPOCHS * STEPS_PER_EPOCH)
        .map(|step| {
            let epoch = step / STEPS_PER_EPOCH;
            trainable_in(epoch)
                .into_iter()
                .filter(|name| !(*name == SOMETIMES_UNUSED && step % 2 == 1))
                .enumerate()
                .map(|(i, name)| {
                    let shape = PARAMS.iter().find(|p| p.0 == name).expect("param").1;
                    // Gradient scales from 1e-3 to 1 so that eps and weight decay both matter.
                    let scale = 10f32.powi(-(((step + i) % 4) as i32));
                    (
                        name,
                        values(1000 + 37 * step as u64 + i as u64, numel(shape), scale),
                    )
                })
                .collect()
        })
        .collect()
}

fn initial(name: &str) -> Vec<f32> {
    let index = PARAMS.iter().position(|p| p.0 == name).expect("param");
    values(index as u64 + 1, numel(PARAMS[index].1), 1.0)
}

/// A VarStore with the test parameters (given values) and a buffer.
fn store(values_of: impl Fn(&str) -> Vec<f32>, device: Device) -> VarStore {
    let vs = VarStore::new(device);
    let root = vs.root();
    for (name, shape, _) in PARAMS {
        let (path, leaf) = name.rsplit_once('.').expect("dotted");
        let mut p = root.clone();
        for part in path.split('.') {
            p = p.sub(part);
        }
        let tensor = Tensor::from_slice(&values_of(name))
            .reshape(shape)
            .to_device(device);
        let _ = p.var_copy(leaf, &tensor);
    }
    let _ = root
        .sub("recognition_network")
        .sub("bn")
        .ones_no_train("running_mean", &[2]);
    vs
}

fn set_trainable(vs: &VarStore, epoch: usize) {
    let trainable = trainable_in(epoch);
    for (name, tensor) in vs.variables() {
        if PARAMS.iter().any(|p| p.0 == name) {
            let _ = tensor.set_requires_grad(trainable.contains(&name.as_str()));
        }
    }
}

fn flat(tensor: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(tensor.reshape([-1]).to_device(Device::Cpu)).expect("f32 values")
}

/// The trajectory of one run: lrs per epoch, parameter values after every step.
#[derive(Default, Debug, PartialEq)]
struct Trajectory {
    lrs: Vec<Vec<f64>>,
    params: Vec<BTreeMap<String, Vec<f32>>>,
}

struct Run {
    vs: VarStore,
    adam: Adam,
    schedule: CosineAnnealing,
}

impl Run {
    fn fresh(hyper: AdamHyper, device: Device) -> Run {
        let vs = store(initial, device);
        let adam = Adam::new(&vs, &rates(), hyper).expect("adam");
        let schedule = CosineAnnealing::new(T_MAX, 0.0, adam.lrs()).expect("schedule");
        Run { vs, adam, schedule }
    }

    /// Runs global steps `from..to`, stepping the scheduler at epoch starts.
    fn train(
        &mut self,
        from: usize,
        to: usize,
        plan: &[BTreeMap<&str, Vec<f32>>],
        out: &mut Trajectory,
    ) {
        for (step, grads) in plan.iter().enumerate().take(to).skip(from) {
            let epoch = step / STEPS_PER_EPOCH;
            if step % STEPS_PER_EPOCH == 0 {
                set_trainable(&self.vs, epoch);
                let lrs = self.schedule.step().to_vec();
                self.adam.set_lrs(&lrs).expect("lrs");
                out.lrs.push(lrs);
            }
            self.adam.zero_grad().expect("zero_grad");
            let variables = self.vs.variables();
            let device = self.vs.device();
            let mut loss = Tensor::zeros([0i64; 0], (Kind::Float, device));
            for (name, grad) in grads {
                let shape = variables[*name].size();
                let g = Tensor::from_slice(grad).reshape(shape).to_device(device);
                loss += (&variables[*name] * g).sum(Kind::Float);
            }
            loss.backward();
            self.adam.step().expect("step");
            out.params.push(
                PARAMS
                    .iter()
                    .map(|(name, _, _)| (name.to_string(), flat(&variables[*name])))
                    .collect(),
            );
        }
    }

    /// Serialises everything the way a checkpoint does (JSON + safetensors on disk) and rebuilds
    /// the run in a new VarStore and optimizer.
    fn checkpoint_and_restore(&self, hyper: AdamHyper, epoch: usize) -> Run {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("optimizer.safetensors");
        Tensor::write_safetensors(&self.adam.state_tensors(), &file).expect("write");
        let adam_json = serde_json::to_string(&self.adam.state()).expect("json");
        let sched_json = serde_json::to_string(self.schedule.state()).expect("json");
        let values: BTreeMap<String, Vec<f32>> = self
            .vs
            .variables()
            .iter()
            .map(|(n, t)| (n.clone(), flat(t)))
            .collect();

        let vs = store(|name| values[name].clone(), self.vs.device());
        set_trainable(&vs, epoch);
        let mut adam = Adam::new(&vs, &rates(), hyper).expect("adam");
        let state: AdamState = serde_json::from_str(&adam_json).expect("parse");
        adam.load_state(&state, &Tensor::read_safetensors(&file).expect("read"))
            .expect("load_state");
        let sched: CosineAnnealingState = serde_json::from_str(&sched_json).expect("parse");
        let schedule = CosineAnnealing::from_state(sched).expect("schedule");
        assert_eq!(
            schedule.lr_at(epoch),
            schedule.lrs(),
            "lr_at replays the schedule"
        );
        assert_eq!(adam.lrs(), schedule.lrs());
        Run { vs, adam, schedule }
    }
}

fn hyper_cases() -> Vec<AdamHyper> {
    vec![
        // The reference's settings.
        AdamHyper {
            betas: [0.9, 0.998],
            eps: 1e-8,
            weight_decay: 1e-3,
            amsgrad: false,
        },
        AdamHyper {
            betas: [0.8, 0.99],
            eps: 1e-6,
            weight_decay: 0.0,
            amsgrad: true,
        },
    ]
}

fn adam_case_json(hyper: &AdamHyper, plan: &[BTreeMap<&str, Vec<f32>>]) -> Value {
    let adam = Run::fresh(*hyper, Device::Cpu).adam;
    let state = adam.state();
    json!({
        // Plain JSON numbers (the state's own serde form uses exact strings).
        "hyper": {
            "betas": hyper.betas, "eps": hyper.eps,
            "weight_decay": hyper.weight_decay, "amsgrad": hyper.amsgrad,
        },
        "groups": state.groups.iter().map(|g| {
            json!({"name": g.name, "lr": g.lr, "params": g.params})
        }).collect::<Vec<_>>(),
        "params": PARAMS.iter().map(|(name, shape, _)| {
            (name.to_string(), json!({"shape": shape, "values": initial(name)}))
        }).collect::<BTreeMap<_, _>>(),
        "t_max": T_MAX, "eta_min": 0.0, "epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH,
        "trainable": (0..EPOCHS).map(trainable_in).collect::<Vec<_>>(),
        "steps": plan.iter().map(|grads| json!({"grads": grads})).collect::<Vec<_>>(),
    })
}

const SCHEDULE_CASES: [(usize, f64, &[f64], usize); 4] = [
    (5, 0.0, &[1e-3, 1e-5, 2e-3], 12),
    (7, 1e-6, &[3e-4], 30),
    (40, 0.0, &[1e-3, 1e-5, 1e-3], 40),
    (80, 0.0, &[1e-4, 1e-5], 4),
];

fn run_oracle(python: &PathBuf, spec: &Value) -> Value {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in.json");
    let output = dir.path().join("out.json");
    std::fs::write(&input, serde_json::to_vec(spec).expect("json")).expect("write");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/adam_oracle.py");
    let status = Command::new(python)
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .status()
        .expect("run the oracle");
    assert!(status.success(), "adam_oracle.py failed: {status}");
    serde_json::from_slice(&std::fs::read(&output).expect("oracle output")).expect("oracle json")
}

/// The oracle writes IEEE bit patterns (signed integers) so that no digit is lost.
fn f64_from_bits(value: &Value) -> f64 {
    f64::from_bits(value.as_i64().expect("f64 bits") as u64)
}

fn f32_from_bits(value: &Value) -> f32 {
    f32::from_bits(value.as_i64().expect("f32 bits") as i32 as u32)
}

fn close(ours: f64, torch: f64, rel: f64) -> bool {
    (ours - torch).abs() <= rel * torch.abs().max(1e-3)
}

/// Compares a trajectory with the oracle's; returns how many values were bitwise equal.
fn compare(label: &str, ours: &Trajectory, torch: &Value) -> (usize, usize) {
    let lrs = torch["lrs"].as_array().expect("lrs");
    assert_eq!(lrs.len(), ours.lrs.len(), "{label}: epochs");
    for (epoch, (a, b)) in ours.lrs.iter().zip(lrs).enumerate() {
        for (x, y) in a.iter().zip(b.as_array().expect("lr row")) {
            let y = f64_from_bits(y);
            assert!(
                (x - y).abs() <= LR_TOL * y.abs(),
                "{label}: epoch {epoch} lr {x} vs torch {y}"
            );
        }
    }
    let steps = torch["params"].as_array().expect("params");
    assert_eq!(steps.len(), ours.params.len(), "{label}: steps");
    let (mut exact, mut total) = (0, 0);
    for (step, (a, b)) in ours.params.iter().zip(steps).enumerate() {
        for (name, values) in a {
            let reference = b[name].as_array().expect("values");
            for (i, (x, y)) in values.iter().zip(reference).enumerate() {
                let (x, y) = (f64::from(*x), f64::from(f32_from_bits(y)));
                assert!(
                    close(x, y, REL_TOL),
                    "{label}: step {step} `{name}`[{i}] = {x}, torch {y}"
                );
                exact += usize::from(x == y);
                total += 1;
            }
        }
    }
    (exact, total)
}

#[test]
fn adam_and_cosine_schedule_match_torch() {
    let Some(python) = oracle_python("adam_and_cosine_schedule_match_torch") else {
        return;
    };
    let plan = gradient_plan();
    let cases = hyper_cases();
    let spec = json!({
        "adam_cases": cases.iter().map(|h| adam_case_json(h, &plan)).collect::<Vec<_>>(),
        "schedule_cases": SCHEDULE_CASES.iter().map(|(t_max, eta_min, base, steps)| json!({
            "t_max": t_max, "eta_min": eta_min, "base_lrs": base, "steps": steps,
        })).collect::<Vec<_>>(),
    });
    let torch = run_oracle(&python, &spec);
    let total_steps = EPOCHS * STEPS_PER_EPOCH;
    // Resume after the second batch of epoch 2 (mid-epoch, after `late` got its first state).
    let resume_at = 2 * STEPS_PER_EPOCH + 2;

    for (case, hyper) in cases.iter().enumerate() {
        let reference = &torch["adam_cases"][case];
        let mut straight = Trajectory::default();
        let mut run = Run::fresh(*hyper, Device::Cpu);
        run.train(0, total_steps, &plan, &mut straight);
        let (exact, total) = compare(&format!("case {case}"), &straight, reference);
        eprintln!("case {case}: {exact}/{total} parameter values bitwise equal to torch");

        // The frozen parameter never moves; the buffer is not optimized.
        let frozen = "recognition_network.frozen.weight";
        assert_eq!(straight.params[total_steps - 1][frozen], initial(frozen));
        assert_eq!(run.adam.step_count(frozen), 0);
        assert_eq!(run.adam.step_count("recognition_network.late.weight"), 9);
        assert_eq!(run.adam.step_count(SOMETIMES_UNUSED), 8);
        assert!(!run
            .adam
            .param_names()
            .iter()
            .any(|n| n.contains("running_mean")));

        let mut resumed = Trajectory::default();
        let mut first = Run::fresh(*hyper, Device::Cpu);
        first.train(0, resume_at, &plan, &mut resumed);
        let mut second = first.checkpoint_and_restore(*hyper, resume_at / STEPS_PER_EPOCH);
        second.train(resume_at, total_steps, &plan, &mut resumed);
        assert_eq!(
            resumed, straight,
            "case {case}: resumed run differs from the straight run"
        );

        // On a GPU (torch's reference ran on CPU; CUDA kernels may round differently).
        if tch::Cuda::is_available() {
            let cuda = Device::Cuda(0);
            let mut on_gpu = Trajectory::default();
            let mut run = Run::fresh(*hyper, cuda);
            run.train(0, resume_at, &plan, &mut on_gpu);
            let mut second = run.checkpoint_and_restore(*hyper, resume_at / STEPS_PER_EPOCH);
            second.train(resume_at, total_steps, &plan, &mut on_gpu);
            let (exact, total) = compare(&format!("case {case} on CUDA"), &on_gpu, reference);
            eprintln!("case {case} on CUDA: {exact}/{total} parameter values bitwise equal");
        }
    }

    for (case, (t_max, eta_min, base, steps)) in SCHEDULE_CASES.iter().enumerate() {
        let mut schedule = CosineAnnealing::new(*t_max, *eta_min, base.to_vec()).expect("schedule");
        let reference = torch["schedule_cases"][case].as_array().expect("lrs");
        let mut bitwise = true;
        assert_eq!(reference.len(), *steps);
        for (step, row) in reference.iter().enumerate() {
            let ours = schedule.step().to_vec();
            assert_eq!(schedule.lr_at(step), ours);
            for (x, y) in ours.iter().zip(row.as_array().expect("row")) {
                let y = f64_from_bits(y);
                assert!(
                    (x - y).abs() <= LR_TOL * y.abs(),
                    "schedule {case} (T_max {t_max}): step {step}: {x} vs torch {y}"
                );
                bitwise &= *x == y;
            }
        }
        eprintln!("schedule {case} (T_max {t_max}, {steps} steps): bitwise equal: {bitwise}");
    }
}
