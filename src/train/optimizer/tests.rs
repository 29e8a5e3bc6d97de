//! Unit tests of the optimizer (torch parity is in `tests/optimizer_parity.rs`).

use super::*;
use tch::{Device, Kind};

fn rates() -> LearningRates {
    serde_json::from_value(serde_json::json!({"default": 1e-3, "translation": 1e-5}))
        .expect("rates")
}

fn hyper() -> AdamHyper {
    AdamHyper {
        betas: [0.9, 0.998],
        eps: 1e-8,
        weight_decay: 1e-3,
        amsgrad: false,
    }
}

fn store() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let _ = root
        .sub("vl_mapper")
        .var("w", &[3], tch::nn::Init::Const(0.5));
    let _ = root
        .sub("translation_network")
        .var("w", &[2], tch::nn::Init::Const(1.0));
    let _ = root
        .sub("recognition_network")
        .var("w", &[2, 2], tch::nn::Init::Const(-1.0));
    let _ = root
        .sub("recognition_network")
        .zeros_no_train("running_mean", &[2]);
    vs
}

fn backward(vs: &VarStore, skip: &str) {
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for (name, t) in trainable_named(vs).expect("named") {
        if name != skip && t.requires_grad() {
            loss += (&t * 0.25).sum(Kind::Float);
        }
    }
    loss.backward();
}

#[test]
fn groups_follow_the_reference_order_and_rates() {
    let vs = store();
    let adam = Adam::new(&vs, &rates(), hyper()).expect("adam");
    assert_eq!(
        adam.group_names(),
        ["recognition_network", "translation_network", "vl_mapper"]
    );
    assert_eq!(adam.lrs(), [1e-3, 1e-5, 1e-3]);
    // Buffers are not parameters.
    assert_eq!(
        adam.param_names(),
        [
            "recognition_network.w",
            "translation_network.w",
            "vl_mapper.w"
        ]
    );
}

#[test]
fn zero_grad_acts_like_set_to_none() {
    let vs = store();
    let mut adam = Adam::new(&vs, &rates(), hyper()).expect("adam");
    backward(&vs, "");
    assert_eq!(adam.step().expect("step"), 3);
    adam.zero_grad().expect("zero");
    // vl_mapper.w is unused this step: its zeroed gradient must not count.
    backward(&vs, "vl_mapper.w");
    let before = vs.variables()["vl_mapper.w"].copy();
    assert_eq!(adam.step().expect("step"), 2);
    assert_eq!(adam.step_count("vl_mapper.w"), 1);
    assert_eq!(adam.step_count("recognition_network.w"), 2);
    assert!(vs.variables()["vl_mapper.w"].equal(&before));
}

#[test]
fn state_round_trips_and_rejects_mismatches() {
    let vs = store();
    let mut adam = Adam::new(&vs, &rates(), hyper()).expect("adam");
    backward(&vs, "translation_network.w");
    adam.step().expect("step");
    adam.set_lrs(&[0.5, 0.25, 0.125]).expect("lrs");
    let state = adam.state();
    let json = serde_json::to_string(&state).expect("json");
    let back: AdamState = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, state);
    assert_eq!(adam.state_tensors().len(), 4);

    let mut fresh = Adam::new(&vs, &rates(), hyper()).expect("adam");
    fresh
        .load_state(&back, &adam.state_tensors())
        .expect("load");
    assert_eq!(fresh.lrs(), [0.5, 0.25, 0.125]);
    assert_eq!(fresh.state(), state);
    for ((a, x), (b, y)) in fresh.state_tensors().iter().zip(adam.state_tensors()) {
        assert_eq!(a, &b);
        assert!(x.equal(&y));
    }

    let mut missing = adam.state_tensors();
    missing.pop();
    let error = fresh.load_state(&back, &missing).expect_err("missing");
    assert!(
        error.to_string().contains("vl_mapper.w.exp_avg_sq"),
        "{error}"
    );
    let mut wrong = adam.state_tensors();
    wrong[0].1 = Tensor::zeros([5], (Kind::Float, Device::Cpu));
    let error = fresh.load_state(&back, &wrong).expect_err("shape");
    assert!(
        matches!(error, OptimizerError::ShapeMismatch { .. }),
        "{error}"
    );
    assert!(fresh.set_lrs(&[1.0]).is_err());
    assert!(fresh.set_lr("nope", 1.0).is_err());
}
