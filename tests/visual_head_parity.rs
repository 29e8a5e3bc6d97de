//! Parity of the VisualHead with the reference fixture `visual_head/` (fixtures README §2).
//!
//! Reads `$SLT_FIXTURES/visual_head` (default `<manifest>/../shared/fixtures`); shapes come from
//! the tensors and the head's settings from `meta.json` (any vocabulary size, batch, length).
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test visual_head_parity -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use slt::model::visual_head::{VisualHead, VisualHeadConfig, VisualHeadOutput};
use tch::{nn, Device, Kind, Tensor};

/// Prefix of the head in a real S2G checkpoint; the fixture's keys have none.
const CHECKPOINT_PREFIX: &str = "recognition_network.visual_head.";
/// The positional-encoding buffer, which the fixture does not store (it holds `pe_first64`).
const PE_KEY: &str = "pe.pe";

fn fixture_dir(name: &str) -> PathBuf {
    std::env::var_os("SLT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join(name)
}

fn read_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn read_meta(dir: &Path) -> Value {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `suggested_atol` and `suggested_rtol` of one output.
struct Tolerance {
    atol: f64,
    rtol: f64,
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
    }
}

/// Element-wise `|a − e| <= atol + rtol·|e|`; prints the observed errors.
fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tol: &Tolerance) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let a = actual.detach().to_device(Device::Cpu).to_kind(Kind::Double);
    let e = expected.to_kind(Kind::Double);
    let diff = (&a - &e).abs();
    let ratio = (&diff / (e.abs() * tol.rtol + tol.atol))
        .max()
        .double_value(&[]);
    let max_abs = diff.max().double_value(&[]);
    let rel_l2 = diff.norm().double_value(&[]) / e.norm().double_value(&[]).max(f64::MIN_POSITIVE);
    println!(
        "{name}: max|err| {max_abs:.3e} (atol {:.3e}), worst err/bound {ratio:.3}, rel-L2 {rel_l2:.3e}",
        tol.atol
    );
    assert!(
        ratio <= 1.0,
        "{name}: |err| exceeds atol + rtol·|ref| (worst {ratio:.3}×)"
    );
}

fn config_from_meta(meta: &Value) -> VisualHeadConfig {
    let config = &meta["config"];
    let int = |key: &str| {
        config[key]
            .as_i64()
            .unwrap_or_else(|| panic!("meta.json: config.{key} missing"))
    };
    let kernels = match &config["ff_kernelsize"] {
        Value::Number(k) => {
            let k = k.as_i64().expect("meta.json: config.ff_kernelsize");
            vec![k, k]
        }
        Value::Array(ks) => ks
            .iter()
            .map(|k| k.as_i64().expect("meta.json: config.ff_kernelsize[i]"))
            .collect(),
        other => panic!("meta.json: config.ff_kernelsize: {other}"),
    };
    VisualHeadConfig {
        cls_num: int("cls_num"),
        input_size: int("input_size"),
        hidden_size: int("hidden_size"),
        ff_size: int("ff_size"),
        pe: config["pe"].as_bool().expect("meta.json: config.pe"),
        ff_kernel_sizes: kernels,
    }
}

/// The head under the checkpoint prefix, with every `weights*.safetensors` copied in by name.
fn build(dir: &Path, meta: &Value) -> (nn::VarStore, VisualHead) {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root() / "recognition_network" / "visual_head";
    let head = VisualHead::new(root, &config_from_meta(meta)).expect("head");
    let mut weights = BTreeMap::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file.starts_with("weights") && file.ends_with(".safetensors") {
            weights.extend(read_tensors(&path));
        }
    }
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
            None if key == PE_KEY => {}
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
    (vs, head)
}

/// The output named `eval.<field>` / `train.<field>`.
fn output<'a>(out: &'a VisualHeadOutput, field: &str) -> &'a Tensor {
    match field {
        "gloss_feature" => &out.gloss_feature,
        "gloss_feature_norm" => &out.gloss_feature_norm,
        "gloss_logits" => &out.gloss_logits,
        "gloss_probabilities_log" => &out.gloss_probabilities_log,
        "gloss_probabilities" => &out.gloss_probabilities,
        "valid_len_out" => &out.valid_len_out,
        other => panic!("unknown head output {other}"),
    }
}

/// Compares every `<mode>.<field>` tensor of the fixture except `<mode>.loss`.
fn compare_outputs(
    mode: &str,
    out: &VisualHeadOutput,
    io: &BTreeMap<String, Tensor>,
    meta: &Value,
) {
    let mut compared = 0;
    for (key, expected) in io {
        let Some(field) = key.strip_prefix(mode).and_then(|k| k.strip_prefix('.')) else {
            continue;
        };
        if field == "loss" {
            continue;
        }
        assert_close(key, output(out, field), expected, &tolerance(meta, key));
        compared += 1;
    }
    assert!(compared > 0, "fixture has no {mode}.* outputs");
}

#[test]
fn visual_head_matches_the_reference_in_eval_and_train_mode() {
    tch::set_num_threads(2);
    let dir = fixture_dir("visual_head");
    let meta = read_meta(&dir);
    let io = read_tensors(&dir.join("io.safetensors"));
    let io_get = |key: &str| io.get(key).unwrap_or_else(|| panic!("io: {key} missing"));
    let (vs, mut head) = build(&dir, &meta);
    let variables = vs.variables();
    let var = |name: &str| &variables[&format!("{CHECKPOINT_PREFIX}{name}")];

    // The positional encoding is computed, not loaded: check it against the stored rows. The
    // float32 angle p·d_i carries the rounding of exp/mul, which differs between CPU kernels
    // (AVX2/AVX512) by an ulp or so: allow 4 ulps of the angle (≤ p) per row, plus 1e-6.
    if let Some(first) = io.get("pe_first64") {
        let rows = first.size()[1];
        let ours = var(PE_KEY).narrow(1, 0, rows);
        let angle_ulps = Tensor::arange(rows, (Kind::Double, Device::Cpu)).view([1, rows, 1])
            * (4.0 * f64::from(f32::EPSILON));
        let diff = (ours.to_kind(Kind::Double) - first.to_kind(Kind::Double)).abs();
        let worst = (&diff / (angle_ulps + 1e-6)).max().double_value(&[]);
        let max_abs = diff.max().double_value(&[]);
        println!("pe_first64: max|err| {max_abs:.3e}, worst err/bound {worst:.3}");
        assert!(
            worst <= 1.0,
            "pe_first64: the table differs from the reference"
        );
    }

    let (x, mask, lengths) = (io_get("x"), io_get("mask"), io_get("valid_len_in"));
    let before: HashMap<String, Tensor> = variables
        .iter()
        .map(|(k, v)| (k.clone(), v.detach().copy()))
        .collect();

    let eval = tch::no_grad(|| head.forward_t(x, mask, lengths, false)).expect("eval forward");
    compare_outputs("eval", &eval, &io, &meta);
    assert!(eval.valid_len_out.equal(lengths));
    for (name, value) in &variables {
        assert!(value.equal(&before[name]), "eval forward changed {name}");
    }

    // Train mode with dropout disabled, as the fixture was produced.
    head.set_dropout_enabled(false);
    let x = x.detach().copy().set_requires_grad(true);
    let train = head
        .forward_t(&x, mask, lengths, true)
        .expect("train forward");
    compare_outputs("train", &train, &io, &meta);
    let loss = (&train.gloss_logits * io_get("R")).sum(Kind::Float);
    assert_close(
        "train.loss",
        &loss,
        io_get("train.loss"),
        &tolerance(&meta, "train.loss"),
    );
    loss.backward();

    let mut grads = 0;
    for (key, expected) in &io {
        let Some(name) = key.strip_prefix("grad.") else {
            continue;
        };
        let actual = if name == "x" {
            x.grad()
        } else {
            var(name).grad()
        };
        assert!(actual.defined(), "{key}: no gradient");
        assert_close(key, &actual, expected, &tolerance(&meta, key));
        grads += 1;
    }
    assert!(grads > 0, "fixture has no gradients");

    let mut buffers = 0;
    for (key, expected) in &io {
        let Some(name) = key.strip_prefix("bn_after.") else {
            continue;
        };
        let after = var(name);
        if name.ends_with("num_batches_tracked") {
            assert!(after.equal(expected), "{key}: {after:?} != {expected:?}");
            println!("{key}: exact");
            continue;
        }
        assert_close(key, after, expected, &tolerance(&meta, key));
        let old = &before[&format!("{CHECKPOINT_PREFIX}{name}")];
        let reference = (expected - old).norm().double_value(&[]);
        let err = (after - expected).norm().double_value(&[]);
        println!(
            "{key}: delta rel-L2 {:.3e} (limit 1e-3)",
            err / reference.max(f64::MIN_POSITIVE)
        );
        assert!(
            err <= 1e-3 * reference,
            "{key}: running-statistics update differs"
        );
        buffers += 1;
    }
    assert!(buffers > 0, "fixture has no bn_after.* buffers");
}

#[test]
fn dropout_is_applied_in_train_mode_only_when_enabled() {
    tch::set_num_threads(2);
    let dir = fixture_dir("visual_head");
    let meta = read_meta(&dir);
    let io = read_tensors(&dir.join("io.safetensors"));
    let (_vs, mut head) = build(&dir, &meta);
    let x = &io["x"];
    let mask = &io["mask"];
    let lengths = &io["valid_len_in"];
    let run = |head: &VisualHead| {
        tch::no_grad(|| head.forward_t(x, mask, lengths, true))
            .expect("forward")
            .gloss_logits
    };
    head.set_dropout_enabled(false);
    let (a, b) = (run(&head), run(&head));
    head.set_dropout_enabled(true);
    tch::manual_seed(7);
    let c = run(&head);
    assert!(!a.allclose(&c, 1e-6, 1e-6, false), "dropout had no effect");
    // Without dropout only the running statistics change between the two train passes, and
    // those are not used in train mode: identical outputs.
    assert!(a.equal(&b));
}
