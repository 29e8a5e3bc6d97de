//! CTC parity with the reference (fixtures `ctc_loss/` and `ctc_beam_decode/` in the folder
//! named by `SLT_FIXTURES`, default `../shared/fixtures`): the recognition loss and its
//! gradient, and TensorFlow's beam-search decoding for every batch and beam width listed.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test ctc_parity -- --nocapture
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use slt::model::ctc::{
    ctc_nll_per_sample, decode_batch, merge_repeats, recognition_ctc_loss, CtcBeamDecoder,
};
use tch::{Kind, Tensor};

/// The decoding kind whose results hinge on exact score ties (informative per the fixture).
const TIES_KIND: &str = "ties";

fn fixture_dir(name: &str) -> PathBuf {
    std::env::var_os("SLT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join(name)
}

fn load_meta(dir: &Path) -> Value {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&python_json_to_json(&text))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Python's `json` writes `Infinity`, `-Infinity` and `NaN`; JSON has no such tokens. Outside
/// strings they become `null` (the tests never read those values).
fn python_json_to_json(text: &str) -> String {
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

fn load_tensors(dir: &Path) -> HashMap<String, Tensor> {
    let path = dir.join("io.safetensors");
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn get<'a>(io: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    io.get(key)
        .unwrap_or_else(|| panic!("io.safetensors has no `{key}`"))
}

fn f64_of(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: expected a number, got {v}"))
}

/// The fixture's suggested tolerances for one output.
struct Tol {
    atol: f64,
    rtol: f64,
    rel_l2: f64,
}

impl Tol {
    fn from_meta(case: &Value, output: &str) -> Self {
        let t = &case["tolerances"][output];
        let what = format!("tolerances.{output}");
        Tol {
            atol: f64_of(&t["suggested_atol"], &what),
            rtol: f64_of(&t["suggested_rtol"], &what),
            rel_l2: f64_of(&t["suggested_rel_l2"], &what),
        }
    }
}

/// Element-wise `|got - want| <= atol + rtol·|want|`, plus the relative-L2 criterion.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: &Tol) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let got = got.to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    let err = (&got - &want).abs();
    let bound = want.abs() * tol.rtol + tol.atol;
    let excess = (&err - &bound).max().double_value(&[]);
    assert!(
        excess <= 0.0,
        "{what}: max |err| {} exceeds atol {} + rtol {} · |ref| (by {excess})",
        err.max().double_value(&[]),
        tol.atol,
        tol.rtol
    );
    let norm = want.norm().double_value(&[]);
    if norm > 0.0 {
        let rel = err.norm().double_value(&[]) / norm;
        assert!(rel <= tol.rel_l2, "{what}: rel L2 {rel} > {}", tol.rel_l2);
    }
}

#[test]
fn recognition_loss_and_gradient_match_reference() {
    let dir = fixture_dir("ctc_loss");
    let meta = load_meta(&dir);
    let io = load_tensors(&dir);
    let cases = meta["cases"]
        .as_array()
        .expect("meta.json: `cases` must be a list");
    assert!(!cases.is_empty(), "meta.json lists no case");
    for case in cases {
        let name = case["name"].as_str().expect("case without a name");
        let key = |k: &str| format!("{name}.{k}");
        let logits = get(&io, &key("logits")).detach().set_requires_grad(true);
        let log_probs = logits.log_softmax(-1, Kind::Float);
        let input_lengths = get(&io, &key("input_lengths"));
        let targets = get(&io, &key("gloss_labels"));
        let target_lengths = get(&io, &key("gls_lengths"));

        let loss = recognition_ctc_loss(&log_probs, input_lengths, targets, target_lengths)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let loss_tol = Tol::from_meta(case, "loss");
        assert_close(&key("loss"), &loss, get(&io, &key("loss")), &loss_tol);

        loss.backward();
        assert_close(
            &key("grad_logits"),
            &logits.grad(),
            get(&io, &key("grad_logits")),
            &Tol::from_meta(case, "grad_logits"),
        );

        // Per-sample NLL before zeroing: same infinities, finite values within the loss's
        // tolerance scaled back from the batch mean to a single sample.
        let nll = ctc_nll_per_sample(&log_probs, input_lengths, targets, target_lengths)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = Vec::<f64>::try_from(&nll.to_kind(Kind::Double)).expect("1-D NLL");
        let want_t = get(&io, &key("per_sample_nll_unzeroed")).to_kind(Kind::Double);
        let want = Vec::<f64>::try_from(&want_t).expect("1-D reference NLL");
        assert_eq!(got.len(), want.len(), "{name}: per-sample NLL count");
        let batch = want.len() as f64;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            if w.is_finite() {
                let bound = loss_tol.atol * batch + loss_tol.rtol * w.abs();
                assert!((g - w).abs() <= bound, "{name}: NLL[{i}] {g} vs {w}");
            } else {
                assert_eq!(g, w, "{name}: NLL[{i}] must be {w}");
            }
        }
        println!("ctc_loss {name}: loss {}", loss.double_value(&[]));
    }
}

/// `bXXX.gloss_logits` keys of the decode fixture, by batch number.
fn logits_keys(io: &HashMap<String, Tensor>) -> HashMap<u64, String> {
    io.keys()
        .filter_map(|k| {
            let prefix = k.strip_suffix(".gloss_logits")?;
            let n = prefix.strip_prefix('b')?.parse().ok()?;
            Some((n, prefix.to_string()))
        })
        .collect()
}

fn ids_of(v: &Value, what: &str) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list of ids, got {v}"))
        .iter()
        .map(|x| x.as_i64().unwrap_or_else(|| panic!("{what}: bad id {x}")))
        .collect()
}

#[test]
fn beam_search_decoding_matches_tensorflow() {
    let dir = fixture_dir("ctc_beam_decode");
    let meta = load_meta(&dir);
    let io = load_tensors(&dir);
    let prefixes = logits_keys(&io);
    let batches = meta["batches"]
        .as_array()
        .expect("meta.json: `batches` must be a list");
    assert!(!batches.is_empty(), "meta.json lists no batch");

    // (kind, beam) -> (matched, total)
    let mut counts: BTreeMap<(String, usize), (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for batch in batches {
        let number = batch["batch"].as_u64().expect("batch number");
        let kind = batch["kind"].as_str().unwrap_or("unknown").to_string();
        let prefix = prefixes
            .get(&number)
            .unwrap_or_else(|| panic!("io.safetensors has no logits for batch {number}"));
        let logits = get(&io, &format!("{prefix}.gloss_logits"));
        let lengths_t = get(&io, &format!("{prefix}.input_lengths"));
        let lengths = Vec::<i64>::try_from(lengths_t).expect("1-D int64 input_lengths");
        let (_, t, v) = logits.size3().expect("[B, T, V] logits");
        let flat = Vec::<f32>::try_from(&logits.reshape([-1])).expect("f32 logits");
        let decoded = batch["decoded"]
            .as_object()
            .expect("`decoded` must be an object");
        for (beam_key, seqs) in decoded {
            let beam: usize = beam_key.parse().expect("beam width key");
            let want: Vec<Vec<i64>> = seqs
                .as_array()
                .expect("decoded sequences")
                .iter()
                .map(|s| ids_of(s, "decoded"))
                .collect();
            assert_eq!(want.len(), lengths.len(), "batch {number}: sequence count");
            let got = decode_batch(logits, &lengths, beam)
                .unwrap_or_else(|e| panic!("batch {number} beam {beam}: {e}"));
            let mut decoder = CtcBeamDecoder::new(beam).expect("beam width >= 1");
            let scores = &batch["tf_log_probability"][beam_key.as_str()];
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let entry = counts.entry((kind.clone(), beam)).or_default();
                entry.1 += 1;
                if g != w {
                    failures.push(format!(
                        "batch {number} ({kind}) seq {i} beam {beam}: got {g:?}, want {w:?}"
                    ));
                    continue;
                }
                entry.0 += 1;
                // The path's TF score (debug aid) must agree too.
                let seq = &flat[i * (t * v) as usize..(i + 1) * (t * v) as usize];
                let path = decoder
                    .decode(seq, lengths[i] as usize, v as usize)
                    .expect("valid sequence");
                let merged: Vec<i64> = merge_repeats(&path.ids).iter().map(|&x| x as i64).collect();
                assert_eq!(&merged, g, "decoder and decode_batch disagree");
                if let Some(tf) = scores[i].as_f64() {
                    let ours = f64::from(path.log_probability);
                    assert!(
                        (ours - tf).abs() <= 1e-5 * (1.0 + tf.abs()),
                        "batch {number} seq {i} beam {beam}: log p {ours} vs TF {tf}"
                    );
                }
            }
        }
    }

    let mut ties = (0, 0);
    for ((kind, beam), (ok, n)) in &counts {
        println!("ctc_beam_decode {kind:>8} beam {beam:>3}: {ok}/{n} exact");
        if kind == TIES_KIND {
            ties.0 += ok;
            ties.1 += n;
        }
    }
    println!("ctc_beam_decode ties: {}/{} reproduced", ties.0, ties.1);
    // Every kind, ties included, is reproduced bit for bit (TF's tie-breaking is emulated).
    assert!(
        failures.is_empty(),
        "{} decodes differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
