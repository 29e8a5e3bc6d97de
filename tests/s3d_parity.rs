//! Parity of the S3D backbone with the reference fixture `s3d_block4/` (fixtures README §1).
//!
//! Reads `$SLT_FIXTURES/s3d_block4` (default `<manifest>/../shared/fixtures`); every shape comes
//! from the tensors and every setting from `meta.json`, so other folders of the same format
//! (other seeds, shapes, blocks) work unchanged.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test s3d_parity -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use slt::model::s3d::{S3dBackbone, S3dBackboneConfig};
use tch::{nn, Device, Kind, Tensor};

/// Prefix of the backbone in a real S2G checkpoint; the fixture's keys start at `backbone.`.
const CHECKPOINT_PREFIX: &str = "recognition_network.visual_backbone.";

fn fixture_dir(name: &str) -> PathBuf {
    std::env::var_os("SLT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join(name)
}

fn read_tensors(path: &std::path::Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn read_meta(dir: &std::path::Path) -> Value {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `suggested_atol`, `suggested_rtol`, `suggested_rel_l2` of one output.
struct Tolerance {
    atol: f64,
    rtol: f64,
    rel_l2: f64,
}

fn tolerance(meta: &Value, name: &str) -> Tolerance {
    let entry = &meta["tolerances"][name];
    let get = |key: &str| {
        entry[key]
            .as_f64()
            .unwrap_or_else(|| panic!("meta.json: tolerances.{name}.{key} missing"))
    };
    Tolerance {
        atol: get("suggested_atol"),
        rtol: get("suggested_rtol"),
        rel_l2: get("suggested_rel_l2"),
    }
}

/// Max |a−e|, worst |a−e| / (atol + rtol|e|), and ||a−e|| / ||e||.
fn errors(actual: &Tensor, expected: &Tensor, tol: &Tolerance) -> (f64, f64, f64) {
    assert_eq!(actual.size(), expected.size(), "shape mismatch");
    let a = actual.detach().to_device(Device::Cpu).to_kind(Kind::Double);
    let e = expected.to_kind(Kind::Double);
    let diff = (&a - &e).abs();
    let bound = e.abs() * tol.rtol + tol.atol;
    let max_abs = diff.max().double_value(&[]);
    let ratio = (&diff / bound).max().double_value(&[]);
    let norm = e.norm().double_value(&[]);
    let rel_l2 = diff.norm().double_value(&[]) / norm.max(f64::MIN_POSITIVE);
    (max_abs, ratio, rel_l2)
}

/// Element-wise `|a − e| <= atol + rtol·|e|`.
fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tol: &Tolerance) {
    let (max_abs, ratio, rel_l2) = errors(actual, expected, tol);
    println!(
        "{name}: max|err| {max_abs:.3e} (atol {:.3e}), worst err/bound {ratio:.3}, rel-L2 {rel_l2:.3e}",
        tol.atol
    );
    assert!(
        ratio <= 1.0,
        "{name}: |err| exceeds atol + rtol·|ref| (worst {ratio:.3}×)"
    );
}

/// `||a − e|| / ||e|| <= suggested_rel_l2` (the README's criterion for S3D gradients).
fn assert_rel_l2(name: &str, actual: &Tensor, expected: &Tensor, tol: &Tolerance) {
    let (max_abs, _, rel_l2) = errors(actual, expected, tol);
    println!(
        "{name}: rel-L2 {rel_l2:.3e} (limit {:.3e}), max|err| {max_abs:.3e}",
        tol.rel_l2
    );
    assert!(
        rel_l2 <= tol.rel_l2,
        "{name}: rel-L2 {rel_l2:.3e} > {:.3e}",
        tol.rel_l2
    );
}

fn assert_exact(name: &str, actual: &Tensor, expected: &Tensor) {
    let actual = actual.to_device(Device::Cpu).to_kind(Kind::Int64);
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    assert!(
        actual.equal(&expected.to_kind(Kind::Int64)),
        "{name}: {actual:?} != {expected:?}"
    );
    println!("{name}: exact");
}

fn config_from_meta(meta: &Value) -> S3dBackboneConfig {
    let config = &meta["config"];
    let int = |key: &str, default: Option<i64>| {
        config[key]
            .as_i64()
            .or(default)
            .unwrap_or_else(|| panic!("meta.json: config.{key} missing"))
    };
    S3dBackboneConfig {
        in_channels: int("in_channel", Some(3)),
        use_block: int("use_block", None) as usize,
        freeze_block: int("freeze_block", None) as usize,
        stride: int("stride", Some(2)),
    }
}

/// The model under the checkpoint prefix, with the fixture weights copied in by name.
fn build(dir: &std::path::Path, meta: &Value) -> (nn::VarStore, S3dBackbone) {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root() / "recognition_network" / "visual_backbone" / "backbone";
    let model = S3dBackbone::new(root, &config_from_meta(meta)).expect("backbone");
    let weights = read_tensors(&dir.join("weights.safetensors"));
    let ours: HashMap<String, Tensor> = vs.variables();
    let mut missing = BTreeSet::new();
    for (name, var) in &ours {
        let key = name.strip_prefix(CHECKPOINT_PREFIX).unwrap_or(name);
        match weights.get(key) {
            Some(value) => {
                assert_eq!(var.size(), value.size(), "{key}: shape");
                assert_eq!(var.kind(), value.kind(), "{key}: kind");
                let mut var = var.shallow_clone();
                tch::no_grad(|| var.copy_(value));
            }
            None => {
                missing.insert(key.to_string());
            }
        }
    }
    let unexpected: BTreeSet<_> = weights
        .keys()
        .filter(|k| !ours.contains_key(&format!("{CHECKPOINT_PREFIX}{k}")))
        .collect();
    assert!(missing.is_empty(), "missing keys: {missing:?}");
    assert!(unexpected.is_empty(), "unexpected keys: {unexpected:?}");
    (vs, model)
}

#[test]
fn s3d_matches_the_reference_in_eval_and_train_mode() {
    tch::set_num_threads(2);
    let dir = fixture_dir("s3d_block4");
    let meta = read_meta(&dir);
    let io = read_tensors(&dir.join("io.safetensors"));
    let (vs, model) = build(&dir, &meta);
    let before: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect();
    let io_get = |key: &str| io.get(key).unwrap_or_else(|| panic!("io: {key} missing"));
    let video = io_get("video");
    let lengths = io_get("sgn_lengths");

    // Eval: running statistics everywhere, nothing updated.
    let eval = tch::no_grad(|| model.forward_t(video, lengths, false)).expect("eval forward");
    assert_close(
        "eval.feat",
        &eval.feat,
        io_get("eval.feat"),
        &tolerance(&meta, "eval.feat"),
    );
    assert_close(
        "eval.sgn",
        &eval.sgn,
        io_get("eval.sgn"),
        &tolerance(&meta, "eval.sgn"),
    );
    assert_exact(
        "eval.valid_len_out",
        &eval.valid_len_out,
        io_get("eval.valid_len_out"),
    );
    assert_exact("eval.sgn_mask", &eval.sgn_mask, io_get("eval.sgn_mask"));
    for (name, value) in vs.variables() {
        assert!(value.equal(&before[&name]), "eval forward changed {name}");
    }

    // Train: frozen blocks in eval mode, the rest with batch statistics.
    let video = video.detach().copy().set_requires_grad(true);
    let train = model
        .forward_t(&video, lengths, true)
        .expect("train forward");
    for (name, ours) in [("train.feat", &train.feat), ("train.sgn", &train.sgn)] {
        assert_close(name, ours, io_get(name), &tolerance(&meta, name));
    }
    let loss = (&train.sgn * io_get("R")).sum(Kind::Float);
    assert_close(
        "train.loss",
        &loss,
        io_get("train.loss"),
        &tolerance(&meta, "train.loss"),
    );
    loss.backward();

    let variables = vs.variables();
    let fixture_name = |name: &str| {
        name.strip_prefix(CHECKPOINT_PREFIX)
            .unwrap_or(name)
            .to_string()
    };
    let mut grads_checked = 0;
    for (key, expected) in &io {
        let Some(param) = key.strip_prefix("grad.") else {
            continue;
        };
        let actual = if param == "video" {
            video.grad()
        } else {
            variables[&format!("{CHECKPOINT_PREFIX}{param}")].grad()
        };
        assert!(actual.defined(), "{key}: no gradient");
        assert_rel_l2(key, &actual, expected, &tolerance(&meta, key));
        grads_checked += 1;
    }
    assert!(grads_checked >= 2, "fixture lists no parameter gradients");

    // Frozen parameters: requires_grad false, no gradient; every other parameter has one.
    let without: BTreeSet<String> = meta["params_without_grad"]
        .as_array()
        .expect("meta.json: params_without_grad")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    let trainable = model.parameters();
    let mut seen_without = BTreeSet::new();
    for (name, var) in &variables {
        if !trainable.iter().any(|p| p.data_ptr() == var.data_ptr()) {
            continue; // a buffer
        }
        let name = fixture_name(name);
        if without.contains(&name) {
            assert!(!var.requires_grad(), "{name} must be frozen");
            assert!(!var.grad().defined(), "{name} must have no gradient");
            seen_without.insert(name);
        } else {
            assert!(var.grad().defined(), "{name} got no gradient");
        }
    }
    assert_eq!(seen_without, without, "params_without_grad not all found");

    // Running statistics after the single train forward.
    let mut buffers_checked = 0;
    for (key, expected) in &io {
        let Some(buffer) = key.strip_prefix("bn_after.") else {
            continue;
        };
        let name = format!("{CHECKPOINT_PREFIX}{buffer}");
        let (after, old) = (&variables[&name], &before[&name]);
        if buffer.ends_with("num_batches_tracked") {
            assert_exact(key, after, expected);
            continue;
        }
        assert_close(key, after, expected, &tolerance(&meta, key));
        let ours = after - old;
        let reference = expected - old;
        let reference_norm = reference.norm().double_value(&[]);
        let err = (&ours - &reference).norm().double_value(&[]);
        if reference_norm == 0.0 {
            assert_eq!(err, 0.0, "{key}: a frozen buffer changed");
            println!("{key}: unchanged, as in the reference");
        } else {
            println!(
                "{key}: delta rel-L2 {:.3e} (limit 1e-3)",
                err / reference_norm
            );
            assert!(err <= 1e-3 * reference_norm, "{key}: update differs");
        }
        buffers_checked += 1;
    }
    assert!(buffers_checked > 0, "fixture lists no BatchNorm buffers");
}

#[test]
fn unfreezing_at_an_epoch_boundary_gives_the_frozen_blocks_gradients() {
    tch::set_num_threads(2);
    let dir = fixture_dir("s3d_block4");
    let meta = read_meta(&dir);
    let (_vs, mut model) = build(&dir, &meta);
    let frozen = model.frozen_blocks();
    let params = model.parameters();
    let frozen_count = params.iter().filter(|p| !p.requires_grad()).count();
    assert_eq!(frozen > 0, frozen_count > 0);
    model.set_frozen_blocks(0).expect("unfreeze");
    assert!(params.iter().all(Tensor::requires_grad));
    // A small clip: every parameter now receives a gradient.
    let video = Tensor::rand(
        [1, model.config().in_channels, 16, 64, 64],
        (Kind::Float, Device::Cpu),
    );
    let lengths = Tensor::from_slice(&[16i64]);
    let out = model.forward_t(&video, &lengths, true).expect("forward");
    out.sgn.sum(Kind::Float).backward();
    assert!(params.iter().all(|p| p.grad().defined()));
    model.set_frozen_blocks(frozen).expect("refreeze");
    assert_eq!(
        params.iter().filter(|p| !p.requires_grad()).count(),
        frozen_count
    );
}

/// Forward + backward time of the backbone on a `[1,3,32,112,112]` clip (train mode).
///
/// `SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test s3d_parity -- --ignored --nocapture`
#[test]
#[ignore = "timing; run explicitly"]
fn s3d_forward_backward_timing() {
    tch::set_num_threads(2);
    let dir = fixture_dir("s3d_block4");
    let meta = read_meta(&dir);
    let (_vs, model) = build(&dir, &meta);
    let video = Tensor::rand([1, 3, 32, 112, 112], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let lengths = Tensor::from_slice(&[32i64]);
    let mut times = Vec::new();
    for _ in 0..4 {
        let start = Instant::now();
        let out = model.forward_t(&video, &lengths, true).expect("forward");
        let forward = start.elapsed();
        out.sgn.sum(Kind::Float).backward();
        times.push((forward, start.elapsed()));
        for p in model.parameters() {
            let mut p = p;
            p.zero_grad();
        }
    }
    for (i, (forward, total)) in times.iter().enumerate() {
        println!("run {i}: forward {forward:.2?}, forward+backward {total:.2?}");
    }
    let eval_start = Instant::now();
    let out = tch::no_grad(|| model.forward_t(&video, &lengths, false)).expect("eval");
    println!("eval forward (no_grad) {:.2?}", eval_start.elapsed());
    assert_eq!(out.sgn.size()[2], model.out_channels());
}
