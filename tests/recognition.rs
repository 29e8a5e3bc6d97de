//! The Sign2Gloss `RecognitionNetwork`: parameter names against the reference's state dict
//! (fixtures `s3d_block4/` + `visual_head/`), composition of S3D → head → CTC, gradient flow
//! with frozen blocks and `freeze: true`, and import of pretrained S3D checkpoints that PyTorch
//! writes in the reference's three conventions.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test recognition
//! ```
//! The import test needs the venv interpreter in `SLT_PYTHON_ORACLE` (exported by ./setup.sh);
//! with `SLT_SKIP_ORACLE=1` and no interpreter it reports being skipped.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use slt::config::{GlossFeatureSource, RecognitionNetworkConfig, SltConfig};
use slt::model::ctc::{decode_batch, recognition_ctc_loss};
use slt::model::recognition::{RecognitionError, RecognitionNetwork};
use slt::model::s3d::{S3dBackbone, S3dBackboneConfig};
use slt::model::visual_head::{VisualHead, VisualHeadConfig};
use tch::{nn, Device, Kind, Tensor};

const NET: &str = "recognition_network";

fn fixture_dir(name: &str) -> PathBuf {
    std::env::var_os("SLT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join(name)
}

fn config(name: &str) -> RecognitionNetworkConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/configs/SingleStream")
        .join(name);
    let config = SltConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
    config
        .model
        .recognition_network
        .unwrap_or_else(|| panic!("{name}: no model.RecognitionNetwork"))
}

/// The Phoenix S2G network shrunk for a 2-core CPU: `use_block` S3D blocks, a 16-wide head.
fn tiny_config(use_block: usize, freeze_block: usize) -> RecognitionNetworkConfig {
    let mut cfg = config("phoenix-2014t_s2g.yaml");
    cfg.s3d.use_block = use_block;
    cfg.s3d.freeze_block = freeze_block;
    cfg.s3d.pretrained_ckpt = PathBuf::from("scratch");
    cfg.visual_head.hidden_size = 16;
    cfg.visual_head.ff_size = 32;
    cfg
}

fn build(cfg: &RecognitionNetworkConfig, glosses: usize) -> (nn::VarStore, RecognitionNetwork) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RecognitionNetwork::new(&(vs.root() / NET), cfg, glosses).expect("valid config");
    (vs, net)
}

fn read_safetensors(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn ints(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).flatten(0, -1)).expect("int tensor")
}

fn is_present(grad: &Tensor) -> bool {
    grad.defined() && grad.abs().sum(Kind::Double).double_value(&[]) > 0.0
}

#[test]
fn parameter_names_and_shapes_equal_the_reference_s2g_state_dict() {
    let cfg = config("phoenix-2014t_s2g.yaml");
    assert!(
        cfg.s3d.pretrained_dir().is_some(),
        "Phoenix S2G uses a pretrained S3D"
    );
    let (vs, net) = build(&cfg, 1094);
    let mut expected: BTreeMap<String, (Vec<i64>, Kind)> = BTreeMap::new();
    let s3d = fixture_dir("s3d_block4");
    for (name, t) in read_safetensors(&s3d.join("weights.safetensors")) {
        expected.insert(
            format!("{NET}.visual_backbone.{name}"),
            (t.size(), t.kind()),
        );
    }
    let head = fixture_dir("visual_head");
    for file in [
        "weights_trunk_a.safetensors",
        "weights_trunk_b.safetensors",
        "weights_classifier.safetensors",
    ] {
        for (name, t) in read_safetensors(&head.join(file)) {
            expected.insert(format!("{NET}.visual_head.{name}"), (t.size(), t.kind()));
        }
    }
    // The head fixture leaves out the positional-encoding buffer (spec §2.3: `pe.pe`).
    expected.insert(
        format!("{NET}.visual_head.pe.pe"),
        (vec![1, 5000, 512], Kind::Float),
    );
    let actual: BTreeMap<String, (Vec<i64>, Kind)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, (t.size(), t.kind())))
        .collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(actual, expected);
    assert_eq!(actual.len(), 384, "spec §2.3: 384 state-dict entries");
    // Parameters: S3D blocks 1–4 (4,734,272) + head with V = 1094 (7,284,806).
    let params: i64 = net.parameters().iter().map(|t| t.numel() as i64).sum();
    assert_eq!(params, 4_734_272 + 7_284_806);
    // freeze_block 1: only base.0 (conv_s, bn_s, conv_t, bn_t: 6 tensors) is frozen.
    let frozen: Vec<String> = vs
        .trainable_variables()
        .iter()
        .filter(|t| !t.requires_grad())
        .map(|t| format!("{:?}", t.size()))
        .collect();
    assert_eq!(frozen.len(), 6, "{frozen:?}");
    assert_eq!(net.frozen_blocks(), 1);
    assert!(!net.is_frozen());
}

#[test]
fn loss_and_decode_compose_the_backbone_head_and_ctc() {
    tch::set_num_threads(1);
    tch::manual_seed(7);
    let mut cfg = tiny_config(2, 1);
    let (vs, net) = build(&cfg, 12);
    // The same modules built on their own under the same names, with the same weights.
    let mut vs2 = nn::VarStore::new(Device::Cpu);
    let root = vs2.root() / NET;
    let backbone = S3dBackbone::new(
        &root / "visual_backbone" / "backbone",
        &S3dBackboneConfig::from_config(&cfg.s3d),
    )
    .expect("backbone");
    let head_cfg = VisualHeadConfig {
        input_size: 192,
        ..VisualHeadConfig::from_config(&cfg.visual_head, 12)
    };
    let head = VisualHead::new(&root / "visual_head", &head_cfg).expect("head");
    vs2.copy(&vs).expect("same variables");

    let videos = Tensor::rand([2, 3, 8, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let lengths = Tensor::from_slice(&[8i64, 6]);
    let labels = Tensor::from_slice(&[4i64, 5, 2, 7, 2, 2]).view([2, 3]);
    let label_lengths = Tensor::from_slice(&[2i64, 1]);

    let out = net.forward_t(&videos, &lengths, false).expect("forward");
    let s3d = backbone.forward_t(&videos, &lengths, false).expect("s3d");
    let h = head
        .forward_t(&s3d.sgn, &s3d.sgn_mask, &s3d.valid_len_out, false)
        .expect("head");
    assert_eq!(out.head_rgb_input.size(), [2, 4, 192]);
    assert!(out.head_rgb_input.equal(&s3d.sgn));
    assert_eq!(ints(&out.valid_len_out), [4, 3]);
    assert!(out.gloss_logits.equal(&h.gloss_logits));
    assert!(out
        .gloss_probabilities_log
        .equal(&h.gloss_probabilities_log));
    assert!(out.gloss_feature.equal(&h.gloss_feature));

    let loss = net.ctc_loss(&out, &labels, &label_lengths).expect("loss");
    let direct = recognition_ctc_loss(
        &h.gloss_probabilities_log,
        &s3d.valid_len_out,
        &labels,
        &label_lengths,
    )
    .expect("ctc");
    assert_eq!(loss.size(), Vec::<i64>::new());
    assert!(loss.double_value(&[]) > 0.0);
    assert!(loss.equal(&direct));
    for beam in [1, 5] {
        let decoded = net.decode(&out, beam).expect("decode");
        assert_eq!(decoded.len(), 2);
        assert_eq!(
            decoded,
            decode_batch(&h.gloss_logits, &[4, 3], beam).expect("decode_batch")
        );
    }
    assert!(matches!(
        net.ctc_loss(&out, &labels, &Tensor::from_slice(&[2i64, 9])),
        Err(RecognitionError::Ctc(_))
    ));
    assert!(net.decode(&out, 0).is_err());

    // `gloss_feature_ensemble` picks the head output passed on as `gloss_feature`.
    cfg.gloss_feature_ensemble = GlossFeatureSource::GlossFeatureNorm;
    let (vs3, net3) = build(&cfg, 12);
    let mut vs3 = vs3;
    vs3.copy(&vs).expect("same variables");
    let out3 = net3.forward_t(&videos, &lengths, false).expect("forward");
    assert!(out3.gloss_feature.equal(&h.gloss_feature_norm));
    // Wrong inputs are errors, not panics.
    let bad = Tensor::rand([2, 1, 8, 32, 32], (Kind::Float, Device::Cpu));
    assert!(matches!(
        net.forward_t(&bad, &lengths, false),
        Err(RecognitionError::S3d(_))
    ));
}

#[test]
fn gradients_reach_unfrozen_blocks_and_the_head_only() {
    tch::set_num_threads(1);
    tch::manual_seed(11);
    let (vs, mut net) = build(&tiny_config(3, 1), 10);
    net.set_dropout_enabled(false);
    let videos = Tensor::rand([1, 3, 8, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let lengths = Tensor::from_slice(&[8i64]);
    let labels = Tensor::from_slice(&[4i64, 6]).view([1, 2]);
    let label_lengths = Tensor::from_slice(&[2i64]);
    let variables = vs.variables();
    let grad = |name: &str| {
        variables
            .get(&format!("{NET}.{name}"))
            .unwrap_or_else(|| panic!("no variable {name}"))
            .grad()
    };
    let step = |net: &RecognitionNetwork| {
        for t in vs.trainable_variables() {
            let mut t = t;
            t.zero_grad();
        }
        let out = net.forward_t(&videos, &lengths, true).expect("forward");
        let loss = net.ctc_loss(&out, &labels, &label_lengths).expect("loss");
        loss.backward();
    };

    step(&net);
    for frozen in [
        "visual_backbone.backbone.base.0.conv_s.weight",
        "visual_backbone.backbone.base.0.bn_t.weight",
    ] {
        assert!(!is_present(&grad(frozen)), "{frozen} got a gradient");
    }
    for trained in [
        "visual_backbone.backbone.base.2.conv.weight",
        "visual_backbone.backbone.base.3.conv_t.weight",
        "visual_backbone.backbone.base.6.branch1.1.conv_s.weight",
        "visual_backbone.backbone.base.6.branch3.1.bn.bias",
        "visual_head.fc1.weight",
        "visual_head.bn1.norm.weight",
        "visual_head.feedforward.pwff_layer.3.weight",
        "visual_head.gloss_output_layer.bias",
    ] {
        assert!(is_present(&grad(trained)), "{trained} got no gradient");
    }
    // Frozen blocks run in eval mode: their BN statistics do not move, the others' do.
    let counter = |name: &str| variables[&format!("{NET}.{name}")].int64_value(&[]);
    assert_eq!(
        counter("visual_backbone.backbone.base.0.bn_s.num_batches_tracked"),
        0
    );
    assert_eq!(
        counter("visual_backbone.backbone.base.2.bn.num_batches_tracked"),
        1
    );

    net.set_frozen_blocks(2).expect("2 of 3 blocks");
    assert_eq!(net.frozen_blocks(), 2);
    step(&net);
    assert!(!is_present(&grad(
        "visual_backbone.backbone.base.3.conv_t.weight"
    )));
    assert!(is_present(&grad(
        "visual_backbone.backbone.base.5.branch0.0.conv.weight"
    )));
    assert!(net.set_frozen_blocks(4).is_err());
}

#[test]
fn freeze_true_means_no_gradients_and_eval_mode() {
    tch::set_num_threads(1);
    tch::manual_seed(3);
    let mut cfg = tiny_config(2, 0);
    cfg.freeze = true;
    let (vs, mut net) = build(&cfg, 10);
    assert!(net.is_frozen());
    assert!(vs.trainable_variables().iter().all(|t| !t.requires_grad()));
    net.set_frozen_blocks(0).expect("valid");
    assert!(
        vs.trainable_variables().iter().all(|t| !t.requires_grad()),
        "unfreezing blocks must not unfreeze a frozen network"
    );
    let videos = Tensor::rand([1, 3, 8, 32, 32], (Kind::Float, Device::Cpu));
    let lengths = Tensor::from_slice(&[8i64]);
    let train = net.forward_t(&videos, &lengths, true).expect("forward");
    let eval = net.forward_t(&videos, &lengths, false).expect("forward");
    assert!(!train.gloss_logits.requires_grad());
    assert!(train.gloss_logits.equal(&eval.gloss_logits));
    let counters: Vec<i64> = vs
        .variables()
        .iter()
        .filter(|(name, _)| name.ends_with("num_batches_tracked"))
        .map(|(_, t)| t.int64_value(&[]))
        .collect();
    assert!(!counters.is_empty() && counters.iter().all(|&c| c == 0));
}

#[test]
fn feature_input_builds_only_the_head() {
    tch::set_num_threads(1);
    let mut cfg = tiny_config(4, 1);
    cfg.visual_head.input_size = 24;
    let vs = nn::VarStore::new(Device::Cpu);
    let mut net =
        RecognitionNetwork::new_feature_input(&(vs.root() / NET), &cfg, 9).expect("valid");
    assert!(!net.has_backbone());
    assert!(vs
        .variables()
        .keys()
        .all(|name| name.starts_with("recognition_network.visual_head.")));
    let features = Tensor::randn([2, 5, 24], (Kind::Float, Device::Cpu));
    let lengths = Tensor::from_slice(&[5i64, 3]);
    let out = net
        .forward_features_t(&features, &lengths, true)
        .expect("forward");
    assert_eq!(out.gloss_logits.size(), [2, 5, 9]);
    assert_eq!(ints(&out.valid_len_out), [5, 3]);
    assert!(out.head_rgb_input.equal(&features));
    let videos = Tensor::rand([1, 3, 8, 32, 32], (Kind::Float, Device::Cpu));
    assert!(matches!(
        net.forward_t(&videos, &Tensor::from_slice(&[8i64]), false),
        Err(RecognitionError::NoBackbone(_))
    ));
    assert!(net.set_frozen_blocks(1).is_err());
    assert!(net
        .forward_features_t(&features.narrow(2, 0, 8), &lengths, false)
        .is_err());
}

/// Writes random S3D weights in the three reference conventions with PyTorch, plus broken files.
const WRITER: &str = r#"
import json, os, sys
import torch
from safetensors.torch import save_file

out = sys.argv[1]
spec = json.load(open(os.path.join(out, "shapes.json")))

def random_weights(seed, names):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name in names:
        shape, kind = spec[name]
        if kind == "int64":
            sd[name] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
        else:
            sd[name] = torch.randn(shape, generator=g)
    return sd

names = sorted(spec)
def mkdir(*parts):
    path = os.path.join(out, *parts)
    os.makedirs(path, exist_ok=True)
    return path

# glosscls: {'state_dict': {'backbone.base.…'}} plus a block the model lacks and a classifier.
gloss = random_weights(1, names)
extra = {"backbone.base.5.branch0.0.conv.weight": torch.randn(64, 192, 1, 1, 1),
         "backbone.fc.weight": torch.randn(10, 1024)}
d = mkdir("s3ds_glosscls_ckpt")
torch.save({"state_dict": {**gloss, **extra}, "epoch": 7}, os.path.join(d, "S3D_WLASL.pth.tar"))
open(os.path.join(d, "notes.txt"), "w").write("not a checkpoint")
save_file(gloss, os.path.join(out, "glosscls.safetensors"))

# actioncls: top-level {'module.base.…'} without one counter.
action = random_weights(2, [n for n in names if n != "backbone.base.3.bn_t.num_batches_tracked"])
d = mkdir("s3ds_actioncls_ckpt")
torch.save({n.replace("backbone.", "module.", 1): t for n, t in action.items()},
           os.path.join(d, "S3D_kinetics400.pt"))
save_file(action, os.path.join(out, "actioncls.safetensors"))

# SLRT training checkpoint: {'model_state': {'recognition_network.visual_backbone.…', head …}}.
slrt = random_weights(3, names)
state = {"recognition_network.visual_backbone." + n: t for n, t in slrt.items()}
state["recognition_network.visual_head.fc1.weight"] = torch.randn(16, 192)
torch.save({"model_state": state, "epoch": 2, "global_step": 10},
           os.path.join(mkdir("s2g"), "best.ckpt"))
save_file(slrt, os.path.join(out, "slrt.safetensors"))

# Broken: one tensor with a wrong shape; no S3D key at all.
bad = random_weights(4, names)
bad["backbone.base.2.conv.weight"] = torch.randn(64, 64, 3, 1, 1)
torch.save({"state_dict": bad}, os.path.join(mkdir("wrong_shape"), "s3d.pth.tar"))
torch.save({"fc.weight": torch.randn(3, 4)}, os.path.join(mkdir("unrelated"), "other.pt"))
"#;

fn backbone_tensors(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    let prefix = format!("{NET}.visual_backbone.");
    vs.variables()
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix(&prefix)?.to_string(), t)))
        .filter(|(name, _)| name.starts_with("backbone."))
        .collect()
}

fn assert_loaded(vs: &nn::VarStore, expected: &Path, skip: &[&str]) {
    let model = backbone_tensors(vs);
    let expected = read_safetensors(expected);
    assert_eq!(expected.len() + skip.len(), model.len());
    for (name, want) in expected {
        let have = &model[&name];
        assert!(have.equal(&want), "{name} differs after loading");
    }
}

#[test]
fn pretrained_s3d_imports_from_the_three_reference_conventions() {
    let Some(python) = common::oracle_python("pretrained_s3d_imports") else {
        return;
    };
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = tiny_config(2, 1);
    let (vs, net) = build(&cfg, 10);
    assert!(net
        .load_configured_backbone(&vs)
        .expect("scratch")
        .is_none());

    let shapes: serde_json::Map<String, serde_json::Value> = backbone_tensors(&vs)
        .into_iter()
        .map(|(name, t)| {
            let kind = if t.kind() == Kind::Int64 {
                "int64"
            } else {
                "float32"
            };
            (name, serde_json::json!([t.size(), kind]))
        })
        .collect();
    // base.0, 2, 3: 5 conv weights + 5 BatchNorms × 5 entries.
    assert_eq!(shapes.len(), 30);
    std::fs::write(
        dir.path().join("shapes.json"),
        serde_json::Value::Object(shapes).to_string(),
    )
    .expect("write shapes");
    let status = Command::new(&python)
        .args(["-c", WRITER])
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(status.success(), "checkpoint writer failed: {status}");
    let d = dir.path();

    // glosscls directory (via the config, as the reference reads it).
    cfg.s3d.pretrained_ckpt = d.join("s3ds_glosscls_ckpt");
    let (vs_g, net_g) = build(&cfg, 10);
    let report = net_g
        .load_configured_backbone(&vs_g)
        .expect("glosscls")
        .expect("configured");
    assert_eq!(report.loaded, 30);
    assert!(report.missing.is_empty(), "{report}");
    assert_eq!(
        report.unexpected,
        [format!(
            "{NET}.visual_backbone.backbone.base.5.branch0.0.conv.weight"
        )]
    );
    assert_loaded(&vs_g, &d.join("glosscls.safetensors"), &[]);

    // actioncls directory: `module.` keys; the missing counter is reported and left alone.
    let report = net
        .load_pretrained_backbone(&vs, &d.join("s3ds_actioncls_ckpt"))
        .expect("actioncls");
    assert_eq!(report.loaded, 29);
    assert_eq!(
        report.missing,
        [format!(
            "{NET}.visual_backbone.backbone.base.3.bn_t.num_batches_tracked"
        )]
    );
    assert_loaded(
        &vs,
        &d.join("actioncls.safetensors"),
        &["backbone.base.3.bn_t.num_batches_tracked"],
    );
    // Frozen block 1 stays frozen after loading.
    assert!(!backbone_tensors(&vs)["backbone.base.0.conv_s.weight"].requires_grad());

    // An SLRT `.ckpt` named directly: only the backbone is taken from `model_state`.
    let head_before = vs.variables()[&format!("{NET}.visual_head.fc1.weight")].copy();
    let report = net
        .load_pretrained_backbone(&vs, &d.join("s2g/best.ckpt"))
        .expect("slrt ckpt");
    assert!(report.is_exact(), "{report}");
    assert_loaded(&vs, &d.join("slrt.safetensors"), &[]);
    assert!(vs.variables()[&format!("{NET}.visual_head.fc1.weight")].equal(&head_before));

    // A wrong shape is an error naming the key, and nothing is copied.
    let before = backbone_tensors(&vs)["backbone.base.0.conv_s.weight"].copy();
    let error = net
        .load_pretrained_backbone(&vs, &d.join("wrong_shape"))
        .expect_err("wrong shape");
    let text = error.to_string();
    assert!(
        matches!(error, RecognitionError::ShapeMismatch { .. })
            && text.contains("base.2.conv.weight")
            && text.contains("[64, 64, 3, 1, 1]"),
        "{text}"
    );
    assert!(backbone_tensors(&vs)["backbone.base.0.conv_s.weight"].equal(&before));

    // No S3D key at all, an empty directory, a missing path: clear errors.
    let error = net
        .load_pretrained_backbone(&vs, &d.join("unrelated/other.pt"))
        .expect_err("no S3D keys");
    assert!(
        matches!(error, RecognitionError::NoBackboneKeys { count: 1, .. })
            && error.to_string().contains("other.pt"),
        "{error}"
    );
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    for path in [d.join("empty"), d.join("absent")] {
        let error = net
            .load_pretrained_backbone(&vs, &path)
            .expect_err("nothing to load");
        assert!(
            matches!(error, RecognitionError::PretrainedPath { .. }),
            "{error}"
        );
    }
}

/// An earlier slt run's checkpoint directory (or its `model.safetensors`) initialises the S3D:
/// the backbone takes the saved tensors, the head keeps its own.
#[test]
fn pretrained_s3d_from_an_slt_checkpoint_directory() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = tiny_config(2, 0);
    tch::manual_seed(1);
    let (saved_vs, _saved) = build(&cfg, 10);
    let ckpt = dir.path().join("ckpts").join("epoch_03");
    std::fs::create_dir_all(&ckpt).expect("mkdir");
    let tensors: Vec<(String, Tensor)> = saved_vs.variables().into_iter().collect();
    Tensor::write_safetensors(&tensors, ckpt.join("model.safetensors")).expect("write model");
    std::fs::write(ckpt.join("state.json"), "{}").expect("write state");
    // A second file with a checkpoint ending must not make the directory ambiguous.
    std::fs::write(ckpt.join("optimizer.safetensors"), b"").expect("write optimizer");

    tch::manual_seed(2);
    cfg.s3d.pretrained_ckpt = ckpt.clone();
    let (vs, net) = build(&cfg, 10);
    let head = format!("{NET}.visual_head.fc1.weight");
    let head_before = vs.variables()[&head].copy();
    let report = net
        .load_configured_backbone(&vs)
        .expect("slt checkpoint")
        .expect("configured");
    assert!(report.is_exact(), "{report}");
    assert_eq!(report.loaded, 30);
    let saved = backbone_tensors(&saved_vs);
    for (name, have) in backbone_tensors(&vs) {
        assert!(have.equal(&saved[&name]), "{name} not loaded");
    }
    assert!(
        vs.variables()[&head].equal(&head_before),
        "the head was overwritten"
    );
    assert!(!vs.variables()[&head].equal(&saved_vs.variables()[&head]));

    // The run's `model_dir` (or its `ckpts`) gives the checkpoint the `best` pointer names.
    let run = dir.path();
    let other = run.join("ckpts").join("step_9");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("state.json"), "{}").expect("write state");
    std::fs::write(run.join("ckpts").join("latest"), "step_9\n").expect("latest");
    std::fs::write(run.join("ckpts").join("best"), "epoch_03\n").expect("best");
    for path in [run.to_path_buf(), run.join("ckpts")] {
        let (vs3, net3) = build(&cfg, 10);
        let report = net3
            .load_pretrained_backbone(&vs3, &path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(report.is_exact(), "{report}");
        assert!(backbone_tensors(&vs3)["backbone.base.0.conv_s.weight"]
            .equal(&saved["backbone.base.0.conv_s.weight"]));
    }
    // A pointer to an incomplete checkpoint is refused with the name.
    std::fs::write(run.join("ckpts").join("best"), "step_9\n").expect("best");
    let error = net
        .load_pretrained_backbone(&vs, run)
        .expect_err("incomplete checkpoint");
    assert!(error.to_string().contains("step_9"), "{error}");

    // The safetensors file named directly works the same; an unreadable one is a clear error.
    let (vs2, net2) = build(&cfg, 10);
    let report = net2
        .load_pretrained_backbone(&vs2, &ckpt.join("model.safetensors"))
        .expect("safetensors file");
    assert!(report.is_exact(), "{report}");
    let error = net2
        .load_pretrained_backbone(&vs2, &ckpt.join("optimizer.safetensors"))
        .expect_err("empty file");
    assert!(
        matches!(error, RecognitionError::PretrainedPath { .. })
            && error.to_string().contains("optimizer.safetensors"),
        "{error}"
    );
}
