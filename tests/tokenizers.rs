//! The Gloss2Text tokenizers on the real annotation files and vocabularies
//! (`$SLT_SHARED_DATA`, default `<crate>/../shared/data`; numbers from slrt-spec §3, §10 and
//! re-counted in Python), and the pretrained (mBART) text tokenizer against Hugging Face
//! transformers (`tests/oracles/tokenizer_oracle.py`).
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test tokenizers
//! ```
//! The oracle test needs the venv interpreter in `SLT_PYTHON_ORACLE` (exported by ./setup.sh);
//! without it it fails, unless `SLT_SKIP_ORACLE=1` (then it reports being skipped).

mod common;

use common::oracle_python;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use slt::data::annotation::{read_annotations, SignRecord};
use slt::data::g2t_gloss::G2TGlossTokenizer;
use slt::data::gloss::split_python_whitespace;
use slt::data::pickle::{PickleValue, PickleWriter};
use slt::data::text_tokenizer::{TextTokenizer, TokenLevel, BASE_SPECIALS};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("SLT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    assert!(
        dir.is_dir(),
        "shared data not found at {} (set SLT_SHARED_DATA)",
        dir.display()
    );
    dir
}

fn records(rel: &str) -> Vec<SignRecord> {
    let path = data_dir().join(rel);
    read_annotations(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn texts(records: &[SignRecord]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

fn phoenix_g2t() -> G2TGlossTokenizer {
    let path = data_dir().join("phoenix-2014t/gloss2ids.pkl");
    G2TGlossTokenizer::from_file(&path, "de_DGS", true).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn g2t_gloss_tokenizer_on_phoenix_dev() {
    let tok = phoenix_g2t();
    assert_eq!(tok.len(), 1124);
    assert_eq!(
        (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.lang_id()),
        (1, 2, 3, 8)
    );
    let dev = records("phoenix-2014t/phoenix-2014t_cleaned.dev");
    let glosses: Vec<&str> = dev.iter().map(|r| r.gloss.as_str()).collect();
    let batch = tok.encode_batch(&glosses[..3]);
    // From Python: [gloss2id.get(g.lower(), unk) for g in gloss.split()] + [2, 8].
    #[rustfmt::skip]
    assert_eq!(batch.input_ids, vec![
        62, 61, 63, 2, 8, 1, 1, 1, 1, 1,
        263, 31, 32, 93, 18, 16, 26, 18, 2, 8,
        86, 3, 108, 52, 238, 26, 86, 18, 2, 8,
    ]);
    assert_eq!(batch.lengths, vec![5, 10, 10]);
    assert_eq!(batch.mask_row(0), Some(&[1, 1, 1, 1, 1, 0, 0, 0, 0, 0][..]));

    let batch = tok.encode_batch(&glosses);
    let longest = glosses
        .iter()
        .map(|g| split_python_whitespace(g).count())
        .max()
        .expect("non-empty dev set");
    assert_eq!(batch.max_len, longest + 2);
    for (i, gloss) in glosses.iter().enumerate() {
        let n = split_python_whitespace(gloss).count() + 2;
        let row = batch.row(i).expect("row");
        let mask = batch.mask_row(i).expect("mask");
        assert_eq!(&row[n - 2..n], &[2, 8], "row {i}");
        assert!(row[n..].iter().all(|&id| id == 1), "row {i}");
        assert!(row[..n - 2].iter().all(|&id| id > 8 || id == 3), "row {i}");
        assert!(mask[..n].iter().all(|&m| m == 1) && mask[n..].iter().all(|&m| m == 0));
        assert_eq!(batch.lengths[i], n as i64);
    }
    // Dev under the raw-spelling vocabulary: 111 unknown tokens of 28 types (Python count).
    let unk = batch.input_ids.iter().filter(|&&id| id == 3).count();
    assert_eq!(unk, 111);
}

#[test]
fn g2t_oov_on_cleaned_phoenix_train_matches_the_spec() {
    let tok = phoenix_g2t();
    let train = records("phoenix-2014t/phoenix-2014t_cleaned.train");
    let mut tokens = 0;
    let mut unknown = 0;
    let mut unknown_types = HashSet::new();
    for record in &train {
        let ids = tok.encode(&record.gloss);
        let glosses: Vec<&str> = split_python_whitespace(&record.gloss).collect();
        assert_eq!(ids.len(), glosses.len() + 2);
        tokens += glosses.len();
        for (gloss, &id) in glosses.iter().zip(&ids) {
            if id == tok.unk_id() {
                unknown += 1;
                unknown_types.insert(gloss.to_lowercase());
            }
        }
    }
    assert_eq!(tokens, 55_358);
    assert_eq!((unknown, unknown_types.len()), (1577, 101));
}

#[test]
fn word_tokenizer_on_phoenix_round_trips_dev() {
    let train = records("phoenix-2014t/phoenix-2014t_cleaned.train");
    let dev = records("phoenix-2014t/phoenix-2014t_cleaned.dev");
    let tok = TextTokenizer::train(&texts(&train), TokenLevel::Word, "de_DE").expect("train");
    assert_eq!(tok.vocab_size(), 2888 + 5);
    assert_eq!(
        (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.lang_id()),
        (1, 2, 3, 4)
    );
    // The most frequent word comes first: "." ends every sentence.
    assert_eq!(tok.hf_tokenizer().token_to_id("."), Some(5));

    let vocab: HashSet<&str> = train
        .iter()
        .flat_map(|r| split_python_whitespace(&r.text))
        .collect();
    let known: Vec<&str> = texts(&dev)
        .into_iter()
        .filter(|t| split_python_whitespace(t).all(|w| vocab.contains(w)))
        .collect();
    assert_eq!(known.len(), 477);
    let batch = tok.encode_targets(&known).expect("encode");
    let rows: Vec<Vec<i64>> = (0..known.len())
        .map(|i| batch.decoder_input_row(i).expect("row").to_vec())
        .collect();
    assert_eq!(tok.decode(&rows), known);

    // Layout (slrt-spec §4.2) on the first two dev sentences.
    let pair = [dev[1].text.as_str(), dev[0].text.as_str()];
    let batch = tok.encode_targets(&pair).expect("encode");
    let words = |t: &str| -> Vec<i64> {
        split_python_whitespace(t)
            .map(|w| tok.hf_tokenizer().token_to_id(w).map_or(3, i64::from))
            .collect()
    };
    let (long, short) = (words(pair[0]), words(pair[1]));
    assert_eq!((long.len(), short.len()), (14, 10));
    assert_eq!(batch.max_len, 16);
    let pad = |mut v: Vec<i64>| {
        v.resize(16, 1);
        v
    };
    let cat = |parts: &[&[i64]]| pad(parts.concat());
    assert_eq!(batch.labels_row(0), Some(&cat(&[&long, &[2]])[..]));
    assert_eq!(batch.labels_row(1), Some(&cat(&[&short, &[2]])[..]));
    assert_eq!(
        batch.decoder_input_row(0),
        Some(&cat(&[&[4], &long, &[2]])[..])
    );
    assert_eq!(
        batch.decoder_input_row(1),
        Some(&cat(&[&[4], &short, &[2, 4]])[..])
    );
    assert_eq!(batch.lengths, vec![15, 11]);

    // Saved and loaded, the tokenizer is the same.
    let dir = tempfile::tempdir().expect("tempdir");
    tok.save(dir.path()).expect("save");
    let back = TextTokenizer::load(dir.path()).expect("load");
    assert_eq!(back.encode_targets(&pair).expect("encode"), batch);
}

#[test]
fn char_tokenizer_on_csl_round_trips_dev() {
    let train = records("csl-daily/csl-daily.train");
    let dev = records("csl-daily/csl-daily.dev");
    let tok = TextTokenizer::train(&texts(&train), TokenLevel::Char, "zh_CN").expect("train");
    assert_eq!(tok.vocab_size(), 2343 + 5);
    let chars: HashSet<char> = train.iter().flat_map(|r| r.text.chars()).collect();
    let known: Vec<&str> = texts(&dev)
        .into_iter()
        .filter(|t| t.chars().all(|c| chars.contains(&c)))
        .collect();
    assert_eq!(known.len(), 1028);
    let batch = tok.encode_targets(&known).expect("encode");
    for (i, text) in known.iter().enumerate() {
        assert_eq!(batch.lengths[i], text.chars().count() as i64 + 1);
    }
    let rows: Vec<Vec<i64>> = (0..known.len())
        .map(|i| batch.decoder_input_row(i).expect("row").to_vec())
        .collect();
    assert_eq!(tok.decode(&rows), known);
}

#[test]
fn subword_tokenizer_on_phoenix_round_trips_dev() {
    let train = records("phoenix-2014t/phoenix-2014t_cleaned.train");
    let dev = records("phoenix-2014t/phoenix-2014t_cleaned.dev");
    let level = TokenLevel::Subword { vocab_size: 1000 };
    let tok = TextTokenizer::train(&texts(&train), level, "de_DE").expect("train");
    assert!(
        (900..=1000).contains(&tok.vocab_size()),
        "{}",
        tok.vocab_size()
    );
    // Every dev character occurs in train, so every dev sentence comes back exactly.
    let dev_texts = texts(&dev);
    let batch = tok.encode_targets(&dev_texts).expect("encode");
    assert!(!batch.labels.contains(&tok.unk_id()));
    let rows: Vec<Vec<i64>> = (0..dev.len())
        .map(|i| batch.decoder_input_row(i).expect("row").to_vec())
        .collect();
    assert_eq!(tok.decode(&rows), dev_texts);
    let words: usize = dev_texts
        .iter()
        .map(|t| split_python_whitespace(t).count())
        .sum();
    let pieces: i64 = batch.lengths.iter().map(|l| l - 1).sum();
    assert!(pieces as usize > words, "subwords split some words");
}

/// mBART's 25 language codes, in the order `MBartTokenizer` knows them.
const LANGS: [&str; 25] = [
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN",
    "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO",
    "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN",
];

/// A Unigram vocabulary from Phoenix train sentences: frequent words as `▁word`, a few
/// suffixes, `▁` and every character, so any text segments (`x` and `q` are left out → unk).
fn oracle_vocab(train: &[SignRecord]) -> Vec<(String, f64)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &train[..300] {
        for w in split_python_whitespace(&r.text) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut vocab: Vec<(String, f64)> =
        BASE_SPECIALS.iter().map(|s| (s.to_string(), 0.0)).collect();
    for (w, n) in &counts {
        if *n >= 3 {
            vocab.push((format!("\u{2581}{w}"), -10.0 / (*n as f64).sqrt()));
        }
    }
    for (p, s) in [
        ("en", -6.0),
        ("er", -6.5),
        ("ung", -6.0),
        ("\u{2581}?", -2.0),
        ("\u{2581},", -2.0),
        ("\u{2581}", -8.0),
    ] {
        vocab.push((p.to_string(), s));
    }
    let chars: HashSet<char> = train.iter().flat_map(|r| r.text.chars()).collect();
    let mut chars: Vec<char> = chars
        .into_iter()
        .filter(|c| !c.is_whitespace() && !"xq".contains(*c))
        .collect();
    chars.extend(['.', '?', ',']);
    chars.sort_unstable();
    chars.dedup();
    vocab.extend(chars.iter().map(|c| (c.to_string(), -12.0)));
    vocab.extend(
        LANGS
            .iter()
            .chain(&["<mask>"])
            .map(|l| (l.to_string(), 0.0)),
    );
    vocab
}

/// The notebook's layout: specials keep ids, language codes and `<mask>` follow, then pieces
/// in reverse order; the piece `ung` is left out (→ `<unk>` when pruning).
fn oracle_prune(vocab: &[(String, f64)]) -> Vec<(i64, i64)> {
    let id = |t: &str| vocab.iter().position(|(p, _)| p == t).expect("token") as i64;
    let mut pairs: Vec<(i64, i64)> = (0..4).map(|i| (i, i)).collect();
    let langs = LANGS.iter().chain(&["<mask>"]).map(|l| id(l));
    let n_pieces = vocab.len() - 4 - LANGS.len() - 1;
    let pieces = (4..4 + n_pieces as i64).rev().filter(|&i| i != id("ung"));
    for (new, old) in langs.chain(pieces).enumerate() {
        pairs.push((old, new as i64 + 4));
    }
    pairs
}

fn as_rows(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).expect("list of int lists")
}

#[test]
fn pretrained_mode_matches_transformers_mbart() {
    let Some(python) = oracle_python("pretrained_mode_matches_transformers_mbart") else {
        return;
    };
    let train = records("phoenix-2014t/phoenix-2014t_cleaned.train");
    let dev = records("phoenix-2014t/phoenix-2014t_cleaned.dev");
    let vocab = oracle_vocab(&train);
    let pairs = oracle_prune(&vocab);
    let dir = tempfile::tempdir().expect("tempdir");
    let map_path = dir.path().join("map_ids.pkl");
    let dict = pairs
        .iter()
        .map(|&(a, b)| (PickleValue::Int(a), PickleValue::Int(b)))
        .collect();
    let mut w = PickleWriter::new(3);
    w.value(&PickleValue::Dict(dict));
    std::fs::write(&map_path, w.finish()).expect("write prune map");

    let mut sentences: Vec<&str> = texts(&dev)[..40].to_vec();
    sentences.extend([
        "quatsch mit x , oder ?",
        "REGEN Im Norden .",
        "es  gibt\tschnee .",
    ]);
    let prune: HashMap<i64, i64> = pairs.iter().copied().collect();
    let id = |t: &str| prune[&(vocab.iter().position(|(p, _)| p == t).expect("token") as i64)];
    let (dot, space, w) = (id("."), id("\u{2581}"), id("\u{2581}morgen"));
    let mut decode = vec![
        vec![6, w, id("\u{2581}."), 2, 1],
        vec![6, w, dot, 2],
        vec![6, w, id("\u{2581}?"), 2, 6, 1],
        vec![6, w, id("\u{2581},"), w, 99_999, id("\u{2581}.")],
        vec![6, dot],
        vec![w, w, w],
        vec![6],
    ];
    let trailing_space = decode.len();
    decode.push(vec![6, w, space]);

    let out_dir = dir.path().join("mbart");
    let request = json!({
        "out_dir": out_dir,
        "vocab": vocab,
        "tgt_lang": "de_DE",
        "prune_map": map_path,
        "texts": sentences,
        "decode": decode,
    });
    let request_path = dir.path().join("request.json");
    std::fs::write(&request_path, request.to_string()).expect("write request");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/tokenizer_oracle.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&request_path)
        .output()
        .expect("run the oracle");
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("oracle JSON");

    let tok = TextTokenizer::pretrained(&out_dir, Some(&map_path), "de_DE").expect("load");
    assert_eq!((tok.pad_id(), tok.eos_id(), tok.lang_id()), (1, 2, 6));
    // Raw pieces (before pruning) agree with transformers' target tokenisation.
    let lang_orig = i64::from(tok.hf_tokenizer().token_to_id("de_DE").expect("de_DE"));
    let raw = as_rows(&answer["raw_input_ids"]);
    assert_eq!(raw.len(), sentences.len());
    for (i, row) in raw.iter().enumerate() {
        let mut ids: Vec<i64> = tok
            .hf_tokenizer()
            .encode(sentences[i], false)
            .expect("encode")
            .get_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect();
        ids.extend([2, lang_orig]);
        ids.resize(row.len(), 1);
        assert_eq!(row, &ids, "sentence {i}: {:?}", sentences[i]);
    }
    let batch = tok.encode_targets(&sentences).expect("encode");
    let flat = |v: &Value| as_rows(v).concat();
    assert_eq!(batch.labels, flat(&answer["labels"]));
    assert_eq!(batch.decoder_input_ids, flat(&answer["decoder_input_ids"]));
    let unknown = answer["unknown"].as_u64().expect("count");
    assert!(unknown > 0, "the test should exercise unmapped pieces");
    assert_eq!(tok.unknown_pruned_count(), unknown);

    // Hand-made sequences, then every decoder input row of the batch (generation-like: start
    // token, pieces, </s>, maybe the language token and padding).
    let rows: Vec<Vec<i64>> = (0..sentences.len())
        .map(|i| batch.decoder_input_row(i).expect("row").to_vec())
        .collect();
    let ours = tok.decode(&[decode.clone(), rows].concat());
    let slow: Vec<String> = serde_json::from_value(answer["decoded_slow"].clone()).expect("strs");
    let fast: Vec<String> = serde_json::from_value(answer["decoded_fast"].clone()).expect("strs");
    assert_eq!(ours.len(), decode.len() + sentences.len());
    assert_eq!(ours, slow);
    // transformers 5 decodes with the fast tokenizer, whose Metaspace decoder keeps spaces that
    // the slow MBartTokenizer of the reference strips; otherwise they agree.
    for (i, (o, f)) in ours.iter().zip(&fast).enumerate() {
        assert_eq!(o, f.trim(), "sequence {i}");
    }
    // The slow and fast decoders differ only in the trailing "▁"; slt follows the slow one.
    assert_eq!(ours[trailing_space], "morgen");
    assert_eq!(fast[trailing_space], "morgen ");
    assert_eq!(ours[0], "morgen .");
    assert_eq!(ours[decode.len()], sentences[0]);
}
