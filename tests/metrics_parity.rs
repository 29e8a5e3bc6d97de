//! Parity of `slt::metrics` with the reference's metrics, from golden fixtures.
//!
//! Reads `metrics/meta.json` and `phoenix_cleanup/meta.json` in the folder named by
//! `SLT_FIXTURES` (default `<manifest>/../shared/fixtures`). Inputs and expected values all come
//! from the JSON, so any fixture folder of the same format works. Where a fixture leaves out the
//! Phoenix references ("references come from the dev annotations"), they are read from the
//! annotation file named by its `source_file`, below `SLT_SHARED_DATA` (default
//! `<manifest>/../shared/data`).
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test metrics_parity
//! ```
use std::path::{Path, PathBuf};

use serde_json::Value;
use slt::metrics::bleu::bleu;
use slt::metrics::phoenix_cleanup::clean_phoenix_2014_trans;
use slt::metrics::rouge::rouge;
use slt::metrics::wer::{
    wer_list, wer_single, PhoenixCleanup, SentenceWer, WerScores, COST_DEL, COST_INS, COST_SUB,
};
use slt::metrics::TextLevel;

fn env_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
}

fn load(fixture: &str) -> Value {
    let path = env_dir("SLT_FIXTURES", "../shared/fixtures")
        .join(fixture)
        .join("meta.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value at a `/`-separated JSON pointer, or a panic naming it.
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("fixture has no {pointer}"))
}

fn f64_at(v: &Value, pointer: &str) -> f64 {
    at(v, pointer)
        .as_f64()
        .unwrap_or_else(|| panic!("{pointer} is not a number"))
}

fn usize_at(v: &Value, pointer: &str) -> usize {
    at(v, pointer)
        .as_u64()
        .unwrap_or_else(|| panic!("{pointer} is not a count")) as usize
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string"))
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    at(v, pointer)
        .as_array()
        .unwrap_or_else(|| panic!("{pointer} is not a list"))
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_str()
                .unwrap_or_else(|| panic!("{pointer}/{i} is not a string"))
                .to_owned()
        })
        .collect()
}

/// The fixture's absolute tolerance for metric values (`"… |a-b| <= 1e-9 …"`), 1e-9 if absent.
fn tolerance(meta: &Value) -> f64 {
    meta.get("tolerance")
        .and_then(Value::as_str)
        .and_then(|t| t.split("<=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_end_matches([',', ';', ')']).parse().ok())
        .unwrap_or(1e-9)
}

fn assert_close(got: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (got - expected).abs() <= tol,
        "{what}: got {got}, reference {expected} (tolerance {tol})"
    );
}

/// `pointer` from the fixture, or else the `field` of the first `n` records of the annotation
/// file the fixture names in `source_pointer`.
fn strings_or_annotations(
    meta: &Value,
    pointer: &str,
    source_pointer: &str,
    field: &str,
    n: usize,
) -> Vec<String> {
    if meta.pointer(pointer).is_some() {
        return strings(meta, pointer);
    }
    let source = Path::new(str_at(meta, source_pointer));
    let components: Vec<_> = source.components().rev().take(2).collect();
    let relative: PathBuf = components.into_iter().rev().collect();
    let path = env_dir("SLT_SHARED_DATA", "../shared/data").join(relative);
    let records = slt::data::annotation::read_annotations(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        records.len() >= n,
        "{}: {} records, fixture needs {n}",
        path.display(),
        records.len()
    );
    records
        .into_iter()
        .take(n)
        .map(|r| if field == "text" { r.text } else { r.gloss })
        .collect()
}

fn assert_wer_scores(got: &WerScores, meta: &Value, pointer: &str, tol: f64) {
    assert_close(
        got.wer,
        f64_at(meta, &format!("{pointer}/wer")),
        tol,
        &format!("{pointer}/wer"),
    );
    let counts = [
        ("del", got.del),
        ("ins", got.ins),
        ("sub", got.sub),
        ("ref_len", got.ref_len),
        ("error", got.error),
    ];
    for (key, value) in counts {
        assert_eq!(
            value,
            usize_at(meta, &format!("{pointer}/{key}")),
            "{pointer}/{key}"
        );
    }
}

fn alignment_letters(w: &SentenceWer) -> Vec<String> {
    w.alignment
        .iter()
        .map(|op| op.as_char().to_string())
        .collect()
}

/// Compares the per-sentence counts present in `expected` (keys `num_*`, `alignment`, `wer`).
fn assert_sentence(got: &SentenceWer, expected: &Value, tol: f64, what: &str) {
    let counts = [
        ("num_err", got.num_err),
        ("num_del", got.num_del),
        ("num_ins", got.num_ins),
        ("num_sub", got.num_sub),
        ("num_cor", got.num_cor),
        ("num_ref", got.num_ref),
    ];
    for (key, value) in counts {
        if let Some(e) = expected.get(key) {
            assert_eq!(Some(value as u64), e.as_u64(), "{what}: {key}");
        }
    }
    if let Some(e) = expected.get("alignment") {
        assert_eq!(alignment_letters(got), strings(e, ""), "{what}: alignment");
    }
    if let Some(e) = expected.get("wer").and_then(Value::as_f64) {
        let w = got
            .wer()
            .unwrap_or_else(|| panic!("{what}: empty reference but the fixture has a WER"));
        assert_close(w, e, tol, &format!("{what}: wer"));
    }
}

#[test]
fn phoenix_text_bleu_and_rouge() {
    let meta = load("metrics");
    let tol = tolerance(&meta);
    let n = usize_at(&meta, "/phoenix/n");
    let hyps = strings(&meta, "/phoenix/text/hypotheses");
    let refs = strings_or_annotations(&meta, "/phoenix/text/references", "/source_file", "text", n);
    assert_eq!((refs.len(), hyps.len()), (n, n));
    let b = bleu(&refs, &hyps, TextLevel::Word).unwrap();
    for (k, got) in (1..=4).zip(b.as_array()) {
        assert_close(
            got,
            f64_at(&meta, &format!("/phoenix/text/bleu/bleu{k}")),
            tol,
            &format!("bleu{k}"),
        );
    }
    let r = rouge(&refs, &hyps, TextLevel::Word).unwrap();
    assert_close(r, f64_at(&meta, "/phoenix/text/rouge"), tol, "rouge");
}

/// The Phoenix gloss references (raw) and hypotheses of the fixture.
fn phoenix_glosses(meta: &Value) -> (Vec<String>, Vec<String>) {
    let n = usize_at(meta, "/phoenix/n");
    let hyps = strings(meta, "/phoenix/gloss/hypotheses");
    let refs = strings_or_annotations(
        meta,
        "/phoenix/gloss/references_raw",
        "/source_file",
        "gloss",
        n,
    );
    assert_eq!((refs.len(), hyps.len()), (n, n));
    (refs, hyps)
}

#[test]
fn phoenix_gloss_wer_with_cleanup() {
    let meta = load("metrics");
    let (refs, hyps) = phoenix_glosses(&meta);
    // The cleaned strings, where the fixture records them.
    if meta
        .pointer("/phoenix/gloss/references_upper_clean")
        .is_some()
    {
        let expected = strings(&meta, "/phoenix/gloss/references_upper_clean");
        for (i, (r, e)) in refs.iter().zip(&expected).enumerate() {
            assert_eq!(
                &clean_phoenix_2014_trans(&r.to_uppercase()),
                e,
                "reference {i}: {r:?}"
            );
        }
    }
    if meta.pointer("/phoenix/gloss/hypotheses_clean").is_some() {
        let expected = strings(&meta, "/phoenix/gloss/hypotheses_clean");
        for (i, (h, e)) in hyps.iter().zip(&expected).enumerate() {
            assert_eq!(&clean_phoenix_2014_trans(h), e, "hypothesis {i}: {h:?}");
        }
    }
    let got = wer_list(&refs, &hyps, PhoenixCleanup::Yes).unwrap();
    assert_wer_scores(
        &got,
        &meta,
        "/phoenix/gloss/wer_with_cleanup",
        tolerance(&meta),
    );
}

#[test]
fn phoenix_gloss_wer_without_cleanup() {
    let meta = load("metrics");
    let (refs, hyps) = phoenix_glosses(&meta);
    // "raw upper-case strings": references upper-cased as prediction.py does, no clean-up.
    let refs: Vec<String> = refs.iter().map(|r| r.to_uppercase()).collect();
    let got = wer_list(&refs, &hyps, PhoenixCleanup::No).unwrap();
    assert_wer_scores(
        &got,
        &meta,
        "/phoenix/gloss/wer_without_cleanup",
        tolerance(&meta),
    );
}

#[test]
fn phoenix_gloss_per_sentence_details() {
    let meta = load("metrics");
    let tol = tolerance(&meta);
    let (refs, hyps) = phoenix_glosses(&meta);
    let details = at(&meta, "/phoenix/gloss/per_sentence_first50_with_cleanup")
        .as_array()
        .expect("per-sentence details are a list");
    assert!(!details.is_empty());
    for (k, d) in details.iter().enumerate() {
        let i = d
            .get("index")
            .and_then(Value::as_u64)
            .map_or(k, |i| i as usize);
        let ref_clean = clean_phoenix_2014_trans(&refs[i].to_uppercase());
        let hyp_clean = clean_phoenix_2014_trans(&hyps[i]);
        if let Some(e) = d.get("ref_clean").and_then(Value::as_str) {
            assert_eq!(ref_clean, e, "sentence {i}: cleaned reference");
        }
        if let Some(e) = d.get("hyp_clean").and_then(Value::as_str) {
            assert_eq!(hyp_clean, e, "sentence {i}: cleaned hypothesis");
        }
        assert_sentence(
            &wer_single(&ref_clean, &hyp_clean),
            d,
            tol,
            &format!("sentence {i}"),
        );
    }
}

#[test]
fn csl_daily_char_level_text_and_gloss_wer() {
    let meta = load("metrics");
    let tol = tolerance(&meta);
    let n = usize_at(&meta, "/csl_daily/n");
    let refs = strings_or_annotations(
        &meta,
        "/csl_daily/text_char_level/references",
        "/csl_daily/source_file",
        "text",
        n,
    );
    let hyps = strings(&meta, "/csl_daily/text_char_level/hypotheses");
    let b = bleu(&refs, &hyps, TextLevel::Char).unwrap();
    for (k, got) in (1..=4).zip(b.as_array()) {
        let pointer = format!("/csl_daily/text_char_level/bleu/bleu{k}");
        assert_close(got, f64_at(&meta, &pointer), tol, &pointer);
    }
    let r = rouge(&refs, &hyps, TextLevel::Char).unwrap();
    assert_close(
        r,
        f64_at(&meta, "/csl_daily/text_char_level/rouge"),
        tol,
        "char rouge",
    );

    let refs = strings_or_annotations(
        &meta,
        "/csl_daily/gloss_wer_no_cleanup/references",
        "/csl_daily/source_file",
        "gloss",
        n,
    );
    let hyps = strings(&meta, "/csl_daily/gloss_wer_no_cleanup/hypotheses");
    let got = wer_list(&refs, &hyps, PhoenixCleanup::No).unwrap();
    assert_wer_scores(&got, &meta, "/csl_daily/gloss_wer_no_cleanup/wer", tol);
}

/// Exact weighted edit distance and the largest value the reference's DP table (and its
/// back-trace sums, up to `+COST_SUB`) would have to hold.
fn exact_distance_and_peak(r: &[&str], h: &[&str]) -> (u32, u32) {
    let mut prev: Vec<u32> = (0..=h.len() as u32).map(|j| j * COST_INS).collect();
    let mut peak = *prev.last().unwrap_or(&0);
    for (i, ri) in r.iter().enumerate() {
        let mut row = vec![(i as u32 + 1) * COST_DEL; h.len() + 1];
        for (j, hj) in h.iter().enumerate() {
            row[j + 1] = if ri == hj {
                prev[j]
            } else {
                (prev[j] + COST_SUB)
                    .min(row[j] + COST_INS)
                    .min(prev[j + 1] + COST_DEL)
            };
        }
        peak = peak.max(row.iter().copied().max().unwrap_or(0));
        prev = row;
    }
    (prev[h.len()], peak)
}

#[test]
fn crafted_wer_cases() {
    let meta = load("metrics");
    let tol = tolerance(&meta);
    let cases = at(&meta, "/wer_crafted")
        .as_array()
        .expect("wer_crafted is a list");
    assert!(!cases.is_empty());
    for (k, c) in cases.iter().enumerate() {
        let (r, h) = (str_at(c, "/ref"), str_at(c, "/hyp"));
        let what = format!("wer_crafted/{k} ({r:?} vs {h:?})");
        let got = wer_single(r, h);
        let rt: Vec<&str> = r.split_whitespace().collect();
        let ht: Vec<&str> = h.split_whitespace().collect();
        // Whatever the regime: our counts are a consistent, optimal alignment.
        let (distance, peak) = exact_distance_and_peak(&rt, &ht);
        let cost = COST_DEL as usize * got.num_del
            + COST_INS as usize * got.num_ins
            + COST_SUB as usize * got.num_sub;
        assert_eq!(cost, distance as usize, "{what}: alignment cost");
        assert_eq!(
            got.num_cor + got.num_sub + got.num_del,
            rt.len(),
            "{what}: reference coverage"
        );
        assert_eq!(
            got.num_cor + got.num_sub + got.num_ins,
            ht.len(),
            "{what}: hypothesis coverage"
        );
        assert_eq!(got.num_ref, usize_at(c, "/num_ref"), "{what}: num_ref");
        if peak + COST_SUB <= u32::from(u8::MAX) {
            // The reference's uint8 table holds every value exactly: full parity.
            assert_sentence(&got, c, tol, &what);
        } else {
            // uint8 overflow regime: the reference's counts are informative only.
            eprintln!(
                "{what}: reference table overflows uint8 (peak {peak}); ours: err {} del {} ins {} sub {}, \
                 reference: {}",
                got.num_err,
                got.num_del,
                got.num_ins,
                got.num_sub,
                ["num_err", "num_del", "num_ins", "num_sub"].map(|key| c.get(key).map_or("-".to_owned(), Value::to_string)).join(" "),
            );
        }
    }
}

#[test]
fn phoenix_cleanup_pairs() {
    let meta = load("phoenix_cleanup");
    let pairs = at(&meta, "/pairs").as_array().expect("pairs is a list");
    if let Some(n) = meta.get("n_pairs").and_then(Value::as_u64) {
        assert_eq!(pairs.len() as u64, n, "n_pairs");
    }
    assert!(!pairs.is_empty());
    let failures: Vec<String> = pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (input, expected) = (str_at(p, "/input"), str_at(p, "/output"));
            let got = clean_phoenix_2014_trans(input);
            (got != expected)
                .then(|| format!("pair {i}: {input:?} -> {got:?}, reference {expected:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} pairs differ:\n{}",
        failures.len(),
        pairs.len(),
        failures.join("\n")
    );
}
