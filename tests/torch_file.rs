//! Reading `torch.save` files against PyTorch itself: `tests/oracles/torch_save_oracle.py`
//! writes zip and legacy checkpoints (S3D `.pth.tar`, SLRT `.ckpt`, `gloss_embeddings.bin`,
//! every dtype, `nn.Parameter`s, plain pickles of tensors), damaged and hostile files, and the
//! values they hold as JSON; every tensor is compared exactly (dtype, shape, values).
//!
//! Needs the venv interpreter in `SLT_PYTHON_ORACLE` (exported by ./setup.sh):
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test torch_file
//! ```
//! Without it the oracle tests fail, unless `SLT_SKIP_ORACLE=1` (then they report being skipped).

mod common;

use common::oracle_python;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use slt::model::import::{
    load_pickle_bytes, load_state_dict, load_tensor_dict, load_torch_file, reference_s3d_weights,
    remap_prefix, state_dict, PyValue, ReferenceCheckpoint, TorchFileError,
};
use tch::{Kind, Tensor};

/// Runs the oracle into a fresh temp dir; returns the dir and its `expected.json`.
fn run_oracle(test: &str) -> Option<(tempfile::TempDir, Value)> {
    let python = oracle_python(test)?;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/torch_save_oracle.py");
    let status = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    let text = std::fs::read_to_string(dir.path().join("expected.json")).expect("expected.json");
    let expected = serde_json::from_str(&text).expect("valid JSON");
    Some((dir, expected))
}

fn load(dir: &Path, name: &str, loader: &str) -> Result<PyValue, TorchFileError> {
    let path = dir.join(name);
    match loader {
        "torch" => load_torch_file(&path),
        "pickle" => load_pickle_bytes(&std::fs::read(&path).expect("readable"), &path),
        other => panic!("unknown loader {other}"),
    }
}

/// Follows a JSON path: strings are dict keys, numbers list/tuple indices or int dict keys.
fn navigate<'v>(root: &'v PyValue, path: &[Value]) -> Result<&'v PyValue, String> {
    let mut value = root;
    for (depth, step) in path.iter().enumerate() {
        let next = match (step, value) {
            (Value::String(key), _) => value.get(key),
            (Value::Number(n), PyValue::Dict(entries)) => entries
                .iter()
                .find(|(k, _)| k.as_int() == n.as_i64())
                .map(|(_, v)| v),
            (Value::Number(n), _) => n
                .as_u64()
                .and_then(|i| value.as_sequence()?.get(usize::try_from(i).ok()?)),
            _ => None,
        };
        value =
            next.ok_or_else(|| format!("{:?}: missing in {}", &path[..=depth], value.type_name()))?;
    }
    Ok(value)
}

fn kind_of(dtype: &str) -> Kind {
    match dtype {
        "float32" => Kind::Float,
        "float64" => Kind::Double,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "int64" => Kind::Int64,
        "int32" => Kind::Int,
        "int16" => Kind::Int16,
        "int8" => Kind::Int8,
        "uint8" => Kind::Uint8,
        "bool" => Kind::Bool,
        other => panic!("unexpected dtype {other}"),
    }
}

fn check_tensor(
    t: &Tensor,
    parameter: bool,
    requires_grad: bool,
    exp: &Value,
) -> Result<(), String> {
    let kind = kind_of(exp["dtype"].as_str().unwrap_or_default());
    let shape: Vec<i64> =
        serde_json::from_value(exp["shape"].clone()).map_err(|e| e.to_string())?;
    if t.kind() != kind || t.size() != shape {
        return Err(format!(
            "got {:?} {:?}, expected {kind:?} {shape:?}",
            t.kind(),
            t.size()
        ));
    }
    if !t.is_contiguous() {
        return Err("not contiguous".into());
    }
    let flat = t.flatten(0, -1);
    let same = match kind {
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => {
            let got =
                Vec::<f64>::try_from(flat.to_kind(Kind::Double)).map_err(|e| e.to_string())?;
            let want: Vec<i64> =
                serde_json::from_value(exp["values"].clone()).map_err(|e| e.to_string())?;
            got.iter().map(|v| v.to_bits() as i64).eq(want)
        }
        _ => {
            let got = Vec::<i64>::try_from(flat.to_kind(Kind::Int64)).map_err(|e| e.to_string())?;
            let want: Vec<i64> =
                serde_json::from_value(exp["values"].clone()).map_err(|e| e.to_string())?;
            got == want
        }
    };
    if !same {
        return Err("values differ".into());
    }
    if (parameter, requires_grad) != (exp["parameter"] == true, exp["requires_grad"] == true) {
        return Err(format!(
            "parameter/requires_grad {parameter}/{requires_grad}, expected {exp}"
        ));
    }
    Ok(())
}

fn check_entry(root: &PyValue, entry: &Value) -> Result<(), String> {
    let path = entry["path"].as_array().cloned().unwrap_or_default();
    let value = navigate(root, &path)?;
    let fail = |what: String| format!("{path:?}: {what}");
    if let Some(exp) = entry.get("tensor") {
        let t = value
            .as_tensor()
            .ok_or_else(|| fail(format!("{} is not a tensor", value.type_name())))?;
        check_tensor(&t.tensor, t.parameter, t.requires_grad, exp).map_err(fail)
    } else if let Some(name) = entry.get("opaque") {
        match value.as_opaque() {
            Some(o) if name == &o.qualified_name() => Ok(()),
            _ => Err(fail(format!("{} is not opaque {name}", value.type_name()))),
        }
    } else if let Some(bits) = entry.get("float_bits") {
        match value {
            PyValue::Float(v) if bits.as_i64() == Some(v.to_bits() as i64) => Ok(()),
            _ => Err(fail(format!("got {value:?}, expected float bits {bits}"))),
        }
    } else if let Some(len) = entry.get("len") {
        let got = match value {
            PyValue::Dict(d) => d.len(),
            PyValue::List(s) | PyValue::Tuple(s) => s.len(),
            other => return Err(fail(format!("{} is not a container", other.type_name()))),
        };
        (len.as_u64() == Some(got as u64))
            .then_some(())
            .ok_or_else(|| fail(format!("{got} items, expected {len}")))
    } else {
        let exp = &entry["value"];
        let same = match (exp, value) {
            (Value::Null, PyValue::None) => true,
            (Value::Bool(b), PyValue::Bool(v)) => b == v,
            (Value::String(s), PyValue::Str(v)) => s == v,
            (Value::Number(n), PyValue::Int(v)) => n.as_i64() == Some(*v),
            _ => false,
        };
        same.then_some(())
            .ok_or_else(|| fail(format!("got {value:?}, expected {exp}")))
    }
}

fn names(tensors: &[(String, Tensor)]) -> Vec<&str> {
    tensors.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn torch_saved_files_load_exactly() {
    let Some((dir, expected)) = run_oracle("torch_saved_files_load_exactly") else {
        return;
    };
    let mut failures = Vec::new();
    let files = expected["files"].as_array().expect("files");
    for file in files {
        let name = file["name"].as_str().unwrap_or_default();
        let value = match load(
            dir.path(),
            name,
            file["loader"].as_str().unwrap_or_default(),
        ) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for entry in file["entries"].as_array().into_iter().flatten() {
            if let Err(e) = check_entry(&value, entry) {
                failures.push(format!("{name}: {e}"));
            }
        }
        if let Some(keys) = file["state_dict_keys"].as_array() {
            match load_state_dict(&dir.path().join(name), None) {
                Ok(tensors) if names(&tensors) == *keys => {}
                Ok(tensors) => {
                    failures.push(format!("{name}: state dict keys {:?}", names(&tensors)))
                }
                Err(e) => failures.push(format!("{name}: load_state_dict: {e}")),
            }
        }
        if let Some(keys) = file["tensor_dict_keys"].as_array() {
            match load_tensor_dict(&dir.path().join(name)) {
                Ok(tensors) if names(&tensors) == *keys => {}
                Ok(tensors) => {
                    failures.push(format!("{name}: tensor dict keys {:?}", names(&tensors)))
                }
                Err(e) => failures.push(format!("{name}: load_tensor_dict: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(files.len() >= 16, "the oracle wrote {} files", files.len());

    // Tied weights come back as one storage; the reference's S3D key conventions.
    let s3d =
        load_state_dict(&dir.path().join("s3d_glosscls.pth.tar"), Some("state_dict")).unwrap();
    let weights = reference_s3d_weights(s3d, ReferenceCheckpoint::GlossCls);
    assert_eq!(weights.len(), 7);
    assert!(weights.iter().all(|(n, _)| n.starts_with("backbone.base.")));
    let action = remap_prefix(weights, "backbone.", "module.");
    assert_eq!(action[0].0, "module.base.0.conv_s.weight");
    let back = reference_s3d_weights(action, ReferenceCheckpoint::ActionCls);
    assert_eq!(back[0].0, "backbone.base.0.conv_s.weight");
    let slrt = load_state_dict(&dir.path().join("best_legacy.ckpt"), None).unwrap();
    assert_eq!(slrt.len(), 8);
    let s3d = reference_s3d_weights(slrt, ReferenceCheckpoint::Slrt);
    assert_eq!(
        names(&s3d),
        [
            "backbone.base.0.weight",
            "backbone.base.1.weight",
            "backbone.base.1.bias",
            "backbone.base.1.running_mean",
            "backbone.base.1.running_var",
            "backbone.base.1.num_batches_tracked",
        ]
    );
    for name in ["whole_module.pt", "whole_module_legacy.pt"] {
        let module = load_torch_file(&dir.path().join(name)).unwrap();
        let state = module.as_opaque().and_then(|m| m.state.as_ref()).unwrap();
        let weight = state
            .get("_parameters")
            .and_then(|p| p.get("weight"))
            .unwrap();
        let weight = weight.as_tensor().unwrap();
        assert!(weight.parameter, "{name}");
        assert_eq!(weight.tensor.size(), [3, 2], "{name}");
    }
    let ckpt = load_torch_file(&dir.path().join("best.ckpt")).unwrap();
    let args = ckpt.get("args").and_then(PyValue::as_opaque).unwrap();
    assert_eq!(
        args.state.as_ref().and_then(|s| s.get("name")?.as_str()),
        Some("s2g")
    );
    let err = load_state_dict(&dir.path().join("best.ckpt"), Some("scheduler_state")).unwrap_err();
    assert!(
        err.to_string()
            .contains("best.ckpt: scheduler_state['T_max']: expected a tensor, found int"),
        "{err}"
    );
    let err = load_state_dict(&dir.path().join("best.ckpt"), Some("nope")).unwrap_err();
    assert!(
        err.to_string()
            .contains("no entry 'nope' (entries: epoch, global_step, model_state"),
        "{err}"
    );
}

#[test]
fn hostile_damaged_and_truncated_files_fail_cleanly() {
    let Some((dir, expected)) = run_oracle("hostile_damaged_and_truncated_files_fail_cleanly")
    else {
        return;
    };
    let marker = PathBuf::from(expected["marker"].as_str().expect("marker"));
    // The os.system call is a record, never a call: an opaque value, or an error.
    for file in expected["hostile"].as_array().expect("hostile") {
        let name = file["name"].as_str().unwrap_or_default();
        let loader = file["loader"].as_str().unwrap_or_default();
        match load(dir.path(), name, loader) {
            Ok(value) => {
                let call = value.get("state_dict").and_then(PyValue::as_opaque);
                assert_eq!(
                    call.map(|c| c.qualified_name()).as_deref(),
                    Some("os.system"),
                    "{name}"
                );
                let err = state_dict(&value, None).unwrap_err();
                assert!(
                    err.to_string()
                        .contains("expected a dict of tensors, found os.system"),
                    "{err}"
                );
            }
            Err(e) => assert!(e.to_string().contains(name), "{name}: {e}"),
        }
    }
    assert!(
        matches!(
            load(dir.path(), "evil.pkl", "torch"),
            Err(TorchFileError::Format { .. })
        ),
        "a bare pickle is not a torch file"
    );
    assert!(!marker.exists(), "pickled code was executed");

    for file in expected["broken"].as_array().expect("broken") {
        let name = file["name"].as_str().unwrap_or_default();
        let message = file["message"].as_str().unwrap_or_default();
        match load_torch_file(&dir.path().join(name)) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => assert!(
                e.to_string().contains(message),
                "{name}: {e}\nexpected: {message}"
            ),
        }
    }

    // Every proper prefix of a zip or legacy file is an error; corrupted bytes never panic.
    let scratch = dir.path().join("scratch");
    for name in ["s3d_glosscls.pth.tar", "s3d_glosscls_legacy.pth.tar"] {
        let bytes = std::fs::read(dir.path().join(name)).expect("readable");
        let step = (bytes.len() / 400).max(1);
        let cuts = (0..bytes.len().min(600))
            .chain((600..bytes.len()).step_by(step))
            .chain([bytes.len() - 1]);
        for cut in cuts {
            std::fs::write(&scratch, &bytes[..cut]).expect("writable");
            assert!(
                load_torch_file(&scratch).is_err(),
                "{name} cut to {cut} bytes loaded"
            );
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ bytes.len() as u64;
        for _ in 0..300 {
            let mut mutated = bytes.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Hit the pickles and headers more often than the raw storage bytes.
                let at = (state % bytes.len().min(2000) as u64) as usize;
                mutated[at] ^= (state >> 32) as u8 | 1;
            }
            std::fs::write(&scratch, &mutated).expect("writable");
            let _ = load_torch_file(&scratch);
        }
    }
}

#[test]
fn non_torch_files_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.pt", b"", "empty file"),
        ("text.pt", b"hello", "not a torch.save file"),
        (
            "zip.pt",
            b"PK\x03\x04 not really",
            "not a readable zip archive",
        ),
        (
            "pickle.pt",
            b"\x80\x02K\x01.",
            "without torch's magic number",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("writable");
        let err = load_torch_file(&path).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(message), "{name}: {err}");
    }
    let missing = dir.path().join("missing.pt");
    assert!(matches!(
        load_torch_file(&missing),
        Err(TorchFileError::Io { .. })
    ));

    // A zip without a torch payload.
    let path = dir.path().join("other.zip.pt");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&path).expect("writable"));
    writer
        .start_file("a/b.txt", zip::write::SimpleFileOptions::default())
        .expect("zip");
    writer.finish().expect("zip");
    let err = load_torch_file(&path).unwrap_err().to_string();
    assert!(err.contains("without '<name>/data.pkl'"), "{err}");
}
