//! mBART parity with the reference (fixture `mbart_tiny/` in the folder named by `SLT_FIXTURES`,
//! default `../shared/fixtures`): HF directory and full state-dict loading, eval logits and
//! encoder states, the label-smoothed loss and its gradient w.r.t. `inputs_embeds`, greedy and
//! beam generation; plus the KV cache against the full decoder and a save → load round trip.
//! Everything (shapes, tolerances, generation settings) is read from the fixture files.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test mbart_parity
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use slt::config::MbartOverrides;
use slt::model::mbart::{
    label_smoothed_loss, BeamCompat, EncoderInput, GenerateOptions, MbartConfig,
    MbartForConditionalGeneration,
};
use tch::{nn, Device, Kind, Tensor};

fn fixture_dir() -> PathBuf {
    let root = std::env::var_os("SLT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    root.join("mbart_tiny")
}

/// Python's `json.dump` writes bare `NaN`, `Infinity`, `-Infinity` (e.g. the greedy log-prob of a
/// pad token at a forced-EOS step); JSON has no such tokens: they become `null` here.
fn python_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A JSON number, or −∞ for `null` (see [`python_json`]).
fn number(v: &Value) -> f64 {
    if v.is_null() {
        f64::NEG_INFINITY
    } else {
        v.as_f64()
            .unwrap_or_else(|| panic!("expected a number, got {v}"))
    }
}

struct Fixture {
    dir: PathBuf,
    meta: Value,
    io: BTreeMap<String, Tensor>,
}

fn fixture() -> Fixture {
    tch::set_num_threads(1);
    let dir = fixture_dir();
    let meta_path = dir.join("meta.json");
    let text = std::fs::read_to_string(&meta_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", meta_path.display()));
    let meta: Value = serde_json::from_str(&python_json(&text))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", meta_path.display()));
    let io_path = dir.join("io.safetensors");
    let io = Tensor::read_safetensors(&io_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", io_path.display()))
        .into_iter()
        .collect();
    Fixture { dir, meta, io }
}

impl Fixture {
    fn t(&self, name: &str) -> &Tensor {
        self.io
            .get(name)
            .unwrap_or_else(|| panic!("io.safetensors has no `{name}`"))
    }

    fn model(&self, vs: &nn::VarStore) -> MbartForConditionalGeneration {
        let (model, report) =
            MbartForConditionalGeneration::from_pretrained(&vs.root(), &self.dir, None)
                .unwrap_or_else(|e| panic!("loading {}: {e}", self.dir.display()));
        report
            .ensure_clean(&self.dir.join("model.safetensors"))
            .expect("clean load");
        model
    }

    fn tolerance(&self, name: &str) -> (f64, f64, f64) {
        let t = &self.meta["tolerances"][name];
        let get = |k: &str| {
            t[k].as_f64()
                .unwrap_or_else(|| panic!("meta.tolerances.{name}.{k} missing"))
        };
        (
            get("suggested_atol"),
            get("suggested_rtol"),
            get("suggested_rel_l2"),
        )
    }

    /// Checks `|got - want| <= atol + rtol |want|` element-wise and the relative L2 error.
    fn check(&self, name: &str, got: &Tensor, want: &Tensor) {
        assert_eq!(got.size(), want.size(), "{name}: shape");
        let (atol, rtol, rel_l2) = self.tolerance(name);
        let (g, w) = (got.to_kind(Kind::Double), want.to_kind(Kind::Double));
        let err = (&g - &w).abs();
        let excess = (&err - (w.abs() * rtol + atol)).max().double_value(&[]);
        let max_err = err.max().double_value(&[]);
        let rel = (&g - &w).norm().double_value(&[]) / w.norm().double_value(&[]).max(1e-30);
        println!("{name}: max abs err {max_err:.3e} (atol {atol:.3e}), rel L2 {rel:.3e} (limit {rel_l2:.3e})");
        assert!(
            excess <= 0.0,
            "{name}: max abs err {max_err:e} exceeds atol {atol:e} + rtol {rtol:e}·|ref|"
        );
        assert!(
            rel <= rel_l2,
            "{name}: relative L2 error {rel:e} > {rel_l2:e}"
        );
    }

    fn inputs(&self) -> (Tensor, Tensor, Tensor) {
        (
            self.t("inputs_embeds").shallow_clone(),
            self.t("attention_mask").shallow_clone(),
            self.t("decoder_input_ids").shallow_clone(),
        )
    }

    /// `name=<number>` inside the documented `generate.call` / loss description strings.
    fn number_in(&self, text_path: &[&str], key: &str) -> f64 {
        let mut v = &self.meta;
        for p in text_path {
            v = &v[*p];
        }
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("meta.{} is not a string", text_path.join(".")));
        let pat = format!("{key}=");
        let start = s
            .find(&pat)
            .unwrap_or_else(|| panic!("`{key}=` not in meta.{}", text_path.join(".")))
            + pat.len();
        let num: String = s[start..]
            .chars()
            .skip_while(|c| *c == '[')
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-' || *c == 'e')
            .collect();
        num.parse()
            .unwrap_or_else(|e| panic!("`{key}={num}` in meta.{}: {e}", text_path.join(".")))
    }
}

#[test]
fn full_state_dict_loads_with_tied_copies() {
    let fx = fixture();
    let vs_dir = nn::VarStore::new(Device::Cpu);
    let from_dir = fx.model(&vs_dir);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MbartForConditionalGeneration::new(&vs.root(), from_dir.config()).expect("model");
    let full = fx.dir.join("state_dict_full.safetensors");
    let report = model.load_safetensors(&full, "").expect("state_dict_full");
    report.ensure_clean(&full).expect("clean");
    assert_eq!(report.tied_copies.len(), 3, "{report:?}");
    assert_eq!(report.loaded.len(), model.named_parameters().len());
    let names_in_file: Vec<String> = Tensor::read_safetensors(&full)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names_in_file.len(), report.loaded.len() + 3);
    for ((n, a), (_, b)) in model
        .named_parameters()
        .iter()
        .zip(from_dir.named_parameters())
    {
        assert!(
            a.equal(&b),
            "{n} differs between model dir and full state dict"
        );
    }
    // The VarStore holds exactly the HF names: one tied table, a non-trainable bias buffer.
    let vars = vs.variables();
    assert_eq!(vars.len(), report.loaded.len());
    assert!(vars.contains_key("model.shared.weight") && vars.contains_key("final_logits_bias"));
    assert_eq!(vs.trainable_variables().len(), vars.len() - 1);
    // A prefixed checkpoint (reference layout) loads the same way.
    let vs2 = nn::VarStore::new(Device::Cpu);
    let p = vs2.root() / "translation_network" / "model";
    let prefixed = MbartForConditionalGeneration::new(&p, model.config()).unwrap();
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&full)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (format!("translation_network.model.{n}"), t))
        .chain(std::iter::once((
            "recognition_network.x".to_string(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        )))
        .collect();
    let r = prefixed
        .load_tensors(tensors, "translation_network.model.")
        .unwrap();
    assert!(r.is_clean() && r.outside_prefix == 1, "{r:?}");
    assert!(vs2
        .variables()
        .contains_key("translation_network.model.model.encoder.layers.0.fc1.weight"));
    // A wrong shape is reported, not copied.
    let bad = vec![(
        "final_logits_bias".to_string(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    )];
    let r = prefixed.load_tensors(bad, "").unwrap();
    assert_eq!(r.mismatched.len(), 1);
    assert!(!r.is_clean());
}

#[test]
fn eval_forward_loss_and_input_gradient() {
    let fx = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = fx.model(&vs);
    let (embeds, mask, dec) = fx.inputs();
    let embeds = embeds.set_requires_grad(true);
    let out = model
        .forward(EncoderInput::Embeds(&embeds), Some(&mask), &dec, false)
        .expect("forward");
    fx.check("logits", &out.logits, fx.t("logits"));
    fx.check(
        "encoder_last_hidden_state",
        &out.encoder_last_hidden_state,
        fx.t("encoder_last_hidden_state"),
    );

    let smoothing = fx.number_in(&["outputs", "loss"], "smoothing");
    let pad = fx.number_in(&["outputs", "loss"], "pad_index") as i64;
    assert_eq!(pad, model.config().pad_token_id);
    let labels = fx.t("labels");
    let loss = label_smoothed_loss(&out.logits, labels, pad, smoothing).expect("loss");
    fx.check("loss", &loss, fx.t("loss"));
    loss.backward();
    fx.check(
        "grad_inputs_embeds",
        &embeds.grad(),
        fx.t("grad_inputs_embeds"),
    );
}

#[test]
fn kv_cache_matches_full_decoder() {
    let fx = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = fx.model(&vs);
    let (embeds, mask, dec) = fx.inputs();
    tch::no_grad(|| {
        let enc = model
            .encode(EncoderInput::Embeds(&embeds), Some(&mask), false)
            .unwrap();
        let full = model.decode(&dec, &enc, Some(&mask), false).unwrap();
        let mut cache = model.decoder().init_cache(&enc, Some(&mask));
        // Prompt of two tokens at once, then one token at a time.
        let mut parts = vec![model.lm_logits(
            &model
                .decoder()
                .forward_cached(&dec.narrow(1, 0, 2), &mut cache)
                .unwrap(),
        )];
        for t in 2..dec.size()[1] {
            let h = model
                .decoder()
                .forward_cached(&dec.narrow(1, t, 1), &mut cache)
                .unwrap();
            parts.push(model.lm_logits(&h));
        }
        let cached = Tensor::cat(&parts, 1);
        let diff = (cached - full).abs().max().double_value(&[]);
        assert!(
            diff < 1e-4,
            "cached vs full decoder logits differ by {diff}"
        );
    });
}

#[test]
fn generation_matches_reference() {
    let fx = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = fx.model(&vs);
    let (embeds, mask, _) = fx.inputs();
    let b = embeds.size()[0];
    let call = ["generate", "call"];
    let max_length = fx.number_in(&call, "max_length") as usize;
    let length_penalty = fx.number_in(&call, "length_penalty");
    let start = fx.number_in(&call, "decoder_input_ids") as i64;
    let prompt = Tensor::full([b, 1], start, (Kind::Int64, Device::Cpu));
    let results = fx.meta["generate"]["results"]
        .as_object()
        .expect("generate.results");
    assert!(!results.is_empty());
    for (beams, want) in results {
        let num_beams: usize = beams.parse().expect("beam count key");
        let want_seqs: Vec<Vec<i64>> =
            serde_json::from_value(want["sequences"].clone()).expect("sequences");
        for compat in [BeamCompat::Hf4_11, BeamCompat::Hf5] {
            let opts = GenerateOptions {
                num_beams,
                max_length,
                length_penalty,
                compat,
                ..GenerateOptions::default()
            };
            let out = model
                .generate(EncoderInput::Embeds(&embeds), Some(&mask), &prompt, &opts)
                .expect("generate");
            let got: Vec<Vec<i64>> = (0..b)
                .map(|i| Vec::<i64>::try_from(out.sequences.get(i)).unwrap())
                .collect();
            assert_eq!(
                got, want_seqs,
                "num_beams {num_beams} ({compat:?}): sequences"
            );
            if let Some(want_scores) = want.get("sequences_scores") {
                let want_scores: Vec<f64> = want_scores
                    .as_array()
                    .expect("sequences_scores")
                    .iter()
                    .map(number)
                    .collect();
                let got_scores = Vec::<f64>::try_from(
                    out.sequences_scores
                        .as_ref()
                        .expect("beam scores")
                        .to_kind(Kind::Double),
                )
                .unwrap();
                for (g, w) in got_scores.iter().zip(&want_scores) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "num_beams {num_beams}: score {g} vs {w}"
                    );
                }
                println!("beam {num_beams} ({compat:?}): scores {got_scores:?} vs {want_scores:?}");
            }
            if let Some(steps) = want.get("per_step_logprob_of_chosen") {
                let steps: Vec<Vec<f64>> = steps
                    .as_array()
                    .expect("per_step_logprob_of_chosen")
                    .iter()
                    .map(|row| row.as_array().expect("row").iter().map(number).collect())
                    .collect();
                let lp = out.token_logprobs.as_ref().expect("greedy log-probs");
                for (i, row) in steps.iter().enumerate() {
                    let eos_at = want_seqs[i][1..]
                        .iter()
                        .position(|&t| t == model.config().eos_token_id)
                        .map_or(row.len(), |p| p + 1);
                    for (j, w) in row.iter().take(eos_at).enumerate() {
                        let g = lp.double_value(&[i as i64, j as i64]);
                        assert!(
                            (g - w).abs() < 1e-4,
                            "greedy row {i} step {j}: log p {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn save_load_round_trip() {
    let fx = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = fx.model(&vs);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("saved");
    model.save_pretrained(&dir).expect("save");
    let vs2 = nn::VarStore::new(Device::Cpu);
    let (back, report) =
        MbartForConditionalGeneration::from_pretrained(&vs2.root(), &dir, None).expect("reload");
    assert!(
        report.is_clean() && report.tied_copies.is_empty(),
        "{report:?}"
    );
    assert_eq!(back.config(), model.config());
    for ((n, a), (_, b)) in model.named_parameters().iter().zip(back.named_parameters()) {
        assert!(a.equal(&b), "{n} changed in the round trip");
    }
    // The stored names are exactly those of the HF file (tied table once).
    let mut saved: Vec<String> = Tensor::read_safetensors(dir.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut orig: Vec<String> = Tensor::read_safetensors(fx.dir.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    saved.sort();
    orig.sort();
    assert_eq!(saved, orig);
    // Unknown config keys survive.
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg_orig: Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg, cfg_orig);
}

#[test]
fn train_mode_dropout() {
    let fx = fixture();
    let (embeds, mask, dec) = fx.inputs();
    let labels = fx.t("labels");
    let pad = fx.number_in(&["outputs", "loss"], "pad_index") as i64;
    let build = |overrides: Option<MbartOverrides>| {
        let mut cfg = MbartConfig::from_file(&fx.dir).unwrap();
        if let Some(o) = overrides {
            cfg.apply_overrides(&o).unwrap();
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let model = MbartForConditionalGeneration::new(&vs.root(), &cfg).unwrap();
        let report = model
            .load_safetensors(&fx.dir.join("model.safetensors"), "")
            .unwrap();
        assert!(report.is_clean());
        (vs, model)
    };
    let logits = |m: &MbartForConditionalGeneration, train: bool| {
        m.forward(EncoderInput::Embeds(&embeds), Some(&mask), &dec, train)
            .unwrap()
            .logits
    };
    // The reference's overwrite_cfg with all dropouts 0: training mode computes eval mode.
    let zero = MbartOverrides {
        dropout: Some(0.0),
        attention_dropout: Some(0.0),
        activation_dropout: Some(0.0),
    };
    let (_vs0, no_dropout) = build(Some(zero));
    let diff = (logits(&no_dropout, true) - logits(&no_dropout, false))
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        diff < 1e-6,
        "train without dropout differs from eval by {diff}"
    );
    // With the fixture's dropouts, training mode is random, eval is not.
    let (vs, model) = build(None);
    assert!(
        model.config().dropout > 0.0,
        "the fixture config has dropout"
    );
    let (a, b) = (logits(&model, true), logits(&model, true));
    assert!(
        (&a - &b).abs().max().double_value(&[]) > 1e-3,
        "dropout inactive in training"
    );
    assert!((&a - logits(&model, false)).abs().max().double_value(&[]) > 1e-3);
    assert!(logits(&model, false).equal(&logits(&model, false)));
    // Gradients reach every trainable parameter (the tied table once), not the bias buffer.
    let loss = label_smoothed_loss(&a, labels, pad, 0.2).unwrap();
    loss.backward();
    for (name, t) in vs.variables() {
        let has_grad =
            t.grad().defined() && t.grad().abs().sum(Kind::Double).double_value(&[]) > 0.0;
        assert_eq!(
            has_grad,
            name != "final_logits_bias",
            "{name}: gradient presence"
        );
    }
    // padding_idx: the pad row of the tied table gets gradient only through the LM head.
    let (_vs2, m2) = build(Some(zero));
    let enc = m2
        .encode(EncoderInput::Embeds(&embeds), Some(&mask), true)
        .unwrap();
    let h = m2.decoder().forward(&dec, &enc, Some(&mask), true).unwrap();
    h.sum(Kind::Float).backward();
    let pad_grad = m2
        .shared()
        .grad()
        .get(pad)
        .abs()
        .sum(Kind::Double)
        .double_value(&[]);
    let other = m2
        .shared()
        .grad()
        .get(dec.int64_value(&[0, 0]))
        .abs()
        .sum(Kind::Double)
        .double_value(&[]);
    assert!(
        pad_grad == 0.0 && other > 0.0,
        "pad row grad {pad_grad}, token row grad {other}"
    );
}
