//! Unit tests of the text tokenizer: a small mBART-like Unigram `tokenizer.json` built here plus
//! a prune map pickle, and small trained tokenizers.

use std::path::{Path, PathBuf};

use tokenizers::decoders::metaspace::{Metaspace, PrependScheme};
use tokenizers::models::unigram::Unigram;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::*;
use crate::data::pickle::{PickleValue, PickleWriter};

const LANGS: [&str; 4] = ["ar_AR", "cs_CZ", "de_DE", "en_XX"];
/// Pieces after the four specials (ids 4..): whole words score higher than characters.
const PIECES: [(&str, f64); 16] = [
    ("\u{2581}regen", -1.0),
    ("\u{2581}im", -1.0),
    ("\u{2581}nord", -2.0),
    ("en", -2.0),
    ("\u{2581}.", -1.0),
    ("\u{2581}ja", -1.0),
    ("\u{2581}?", -1.0),
    ("\u{2581}", -3.0),
    (".", -4.0),
    ("r", -5.0),
    ("e", -5.0),
    ("g", -5.0),
    ("n", -5.0),
    ("i", -5.0),
    ("m", -5.0),
    ("o", -5.0),
];

/// Original id of a piece or token in the test tokenizer.
fn orig(token: &str) -> u32 {
    let specials = BASE_SPECIALS.iter().copied();
    let pieces = PIECES.iter().map(|p| p.0);
    let all: Vec<&str> = specials
        .chain(pieces)
        .chain(LANGS)
        .chain(["<mask>"])
        .collect();
    all.iter().position(|t| *t == token).expect("known token") as u32
}

/// Writes an mBART-like `tokenizer.json` (with an `en_XX` source template that slt must not use).
fn write_tokenizer(dir: &Path) -> PathBuf {
    let vocab: Vec<(String, f64)> = BASE_SPECIALS
        .iter()
        .map(|s| (s.to_string(), 0.0))
        .chain(PIECES.iter().map(|(p, s)| (p.to_string(), *s)))
        .chain(
            LANGS
                .iter()
                .chain(&["<mask>"])
                .map(|l| (l.to_string(), 0.0)),
        )
        .collect();
    let mut tok = Tokenizer::new(Unigram::from(vocab, Some(3), false).expect("unigram"));
    let metaspace = || Metaspace::new('\u{2581}', PrependScheme::Always, true);
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        WhitespaceSplit.into(),
        metaspace().into(),
    ])));
    tok.with_decoder(Some(metaspace()));
    let template = TemplateProcessing::builder()
        .try_single("$A </s> en_XX")
        .expect("template")
        .special_tokens(vec![("</s>", orig("</s>")), ("en_XX", orig("en_XX"))])
        .build()
        .expect("template");
    tok.with_post_processor(Some(template));
    let specials: Vec<AddedToken> = BASE_SPECIALS
        .iter()
        .chain(&LANGS)
        .chain(&["<mask>"])
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    tok.add_special_tokens(&specials);
    let path = dir.join(TOKENIZER_FILE);
    tok.save(&path, false).expect("save tokenizer.json");
    path
}

/// The prune layout of the reference: specials keep ids, languages follow, then pieces; `en`
/// is left out (→ `<unk>`).
fn prune_pairs() -> Vec<(i64, i64)> {
    let mut pairs: Vec<(i64, i64)> = (0..4).map(|i| (i, i)).collect();
    let kept = LANGS
        .iter()
        .copied()
        .chain(["<mask>"])
        .chain(PIECES.iter().map(|p| p.0).filter(|p| *p != "en").rev());
    pairs.extend(
        kept.enumerate()
            .map(|(i, t)| (i64::from(orig(t)), 4 + i as i64)),
    );
    pairs
}

fn write_prune(dir: &Path, pairs: &[(i64, i64)]) -> PathBuf {
    let dict = pairs
        .iter()
        .map(|&(a, b)| (PickleValue::Int(a), PickleValue::Int(b)))
        .collect();
    let mut w = PickleWriter::new(2);
    w.value(&PickleValue::Dict(dict));
    let path = dir.join("map_ids.pkl");
    std::fs::write(&path, w.finish()).expect("write map");
    path
}

fn pretrained(dir: &Path) -> TextTokenizer {
    let json = write_tokenizer(dir);
    let map = write_prune(dir, &prune_pairs());
    TextTokenizer::pretrained(&json, Some(&map), "de_DE").expect("valid tokenizer")
}

/// Model id of a token under [`prune_pairs`].
fn model(tok: &TextTokenizer, token: &str) -> i64 {
    tok.prune_map()
        .and_then(|m| m.prune(orig(token)))
        .expect("pruned token")
}

#[test]
fn pretrained_targets_follow_the_reference_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = pretrained(dir.path());
    assert_eq!(
        (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.lang_id()),
        (1, 2, 3, 6)
    );
    assert_eq!(tok.vocab_size(), 4 + 5 + 15);
    let m = |t| model(&tok, t);
    let batch = tok
        .encode_targets(&["regen im norden .", "ja ?"])
        .expect("encode");
    assert_eq!(
        tok.unknown_pruned_count(),
        1,
        "'en' is not in the prune map"
    );
    let first = [
        m("\u{2581}regen"),
        m("\u{2581}im"),
        m("\u{2581}nord"),
        3,
        m("\u{2581}."),
    ];
    let second = [m("\u{2581}ja"), m("\u{2581}?")];
    let mut labels = first.to_vec();
    labels.extend([2, 1]);
    labels.extend(second);
    labels.extend([2, 1, 1, 1, 1]);
    assert_eq!(batch.labels, labels);
    // The longest row's language token is shifted out; the shorter row keeps it.
    let mut inputs = vec![6];
    inputs.extend(first);
    inputs.extend([2, 6]);
    inputs.extend(second);
    inputs.extend([2, 6, 1, 1]);
    assert_eq!(batch.decoder_input_ids, inputs);
    assert_eq!((batch.max_len, batch.lengths.clone()), (7, vec![6, 3]));
}

#[test]
fn pretrained_decode_cleans_up_and_fixes_the_final_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = pretrained(dir.path());
    let m = |t| model(&tok, t);
    let seqs = vec![
        // " ." → "." by the clean-up, then back to " ." by the German rule.
        vec![6, m("\u{2581}regen"), m("\u{2581}im"), m("\u{2581}."), 2, 1],
        // "." directly after a word gets a space.
        vec![6, m("\u{2581}nord"), m("."), 2],
        // "?" is cleaned up and stays attached; unknown ids and specials vanish.
        vec![6, m("\u{2581}ja"), 999, m("\u{2581}?"), 6, 2, 1],
        // The first token is always dropped, whatever it is.
        vec![m("\u{2581}regen"), m("\u{2581}ja")],
        vec![6],
        vec![],
    ];
    assert_eq!(
        tok.decode(&seqs),
        ["regen im .", "nord .", "ja?", "ja", "", ""]
    );
    assert_eq!(tok.decode_ids(&[m("\u{2581}ja"), m("\u{2581}.")]), "ja .");

    let json = dir.path().join(TOKENIZER_FILE);
    let zh = TextTokenizer::pretrained(&json, None, "ar_AR").expect("unpruned");
    assert_eq!(zh.vocab_size(), 4 + PIECES.len() + LANGS.len() + 1);
    assert_eq!(zh.lang_id(), i64::from(orig("ar_AR")));
    let o = |t| i64::from(orig(t));
    // No German rule for other languages; the clean-up still applies.
    let seq = vec![
        o("ar_AR"),
        o("\u{2581}nord"),
        o("."),
        o("\u{2581}ja"),
        o("\u{2581}."),
    ];
    assert_eq!(zh.decode(&[seq]), ["nord. ja."]);
    assert_eq!(zh.decode_ids(&[-5, 1_000_000]), "");
}

#[test]
fn pretrained_errors_name_the_file_and_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = write_tokenizer(dir.path());
    let map = write_prune(dir.path(), &prune_pairs());
    let msg = TextTokenizer::pretrained(&json, Some(&map), "zh_CN")
        .expect_err("no zh_CN")
        .to_string();
    assert_eq!(
        msg,
        format!(
            "{}: the vocabulary has no 'zh_CN' token (target language, decoder start)",
            json.display()
        )
    );

    let mut shifted = prune_pairs();
    shifted[1] = (1, 40);
    let bad = write_prune(dir.path(), &shifted);
    let msg = TextTokenizer::pretrained(&json, Some(&bad), "de_DE")
        .expect_err("pad moved")
        .to_string();
    assert!(
        msg.ends_with("map_ids.pkl: '<pad>' (1) must keep its id, but maps to 40"),
        "{msg}"
    );

    let no_lang: Vec<(i64, i64)> = prune_pairs()
        .into_iter()
        .filter(|&(o, _)| o != i64::from(orig("de_DE")))
        .collect();
    let bad = write_prune(dir.path(), &no_lang);
    let msg = TextTokenizer::pretrained(&json, Some(&bad), "de_DE")
        .expect_err("lang unmapped")
        .to_string();
    let lang = orig("de_DE");
    assert!(
        msg.ends_with(&format!("has no entry for token id {lang}")),
        "{msg}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let err = TextTokenizer::pretrained(empty.path(), None, "de_DE").expect_err("no json");
    assert!(
        matches!(err, TextTokenizerError::NoTokenizerJson { .. }),
        "{err}"
    );
    let garbage = empty.path().join("garbage.json");
    std::fs::write(&garbage, "{}").expect("write");
    let msg = TextTokenizer::pretrained(&garbage, None, "de_DE")
        .expect_err("not a tokenizer")
        .to_string();
    assert!(
        msg.contains("garbage.json: not a readable tokenizer file"),
        "{msg}"
    );
}

#[test]
fn from_config_reads_the_directory_and_prune_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tokenizer(dir.path());
    let map = write_prune(dir.path(), &prune_pairs());
    let cfg = TextTokenizerConfig {
        pretrained_model_name_or_path: dir.path().to_path_buf(),
        pruneids_file: map,
        tgt_lang: "de_DE".into(),
        level: TextTokenizerLevel::Sentencepiece,
        vocab_size: None,
    };
    let tok = TextTokenizer::from_config(&cfg).expect("valid config");
    assert_eq!((tok.lang_id(), tok.vocab_size()), (6, 24));
    assert_eq!(tok.settings().origin, TokenizerOrigin::Pretrained);
}

#[test]
fn save_and_load_keep_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = pretrained(dir.path());
    let out = dir.path().join("saved");
    tok.save(&out).expect("save");
    let back = TextTokenizer::load(&out).expect("load");
    assert_eq!(back.settings(), tok.settings());
    assert_eq!(
        back.prune_map().map(PruneMap::pairs),
        tok.prune_map().map(PruneMap::pairs)
    );
    let texts = ["regen im norden .", "ja ?", "im regen"];
    let batch = tok.encode_targets(&texts).expect("encode");
    assert_eq!(back.encode_targets(&texts).expect("encode"), batch);
    let rows: Vec<Vec<i64>> = (0..3)
        .map(|i| batch.decoder_input_row(i).expect("row").to_vec())
        .collect();
    assert_eq!(back.decode(&rows), ["regen im nord .", "ja?", "im regen"]);
    assert_eq!(back.decode(&rows), tok.decode(&rows));

    let trained = TextTokenizer::train(&["es regnet .", "es schneit"], TokenLevel::Word, "de_DE")
        .expect("train");
    let out = dir.path().join("word");
    trained.save(&out).expect("save");
    let back = TextTokenizer::load(&out).expect("load");
    assert_eq!(back.settings(), trained.settings());
    assert_eq!(back.vocab_size(), 9);
    let settings = std::fs::read_to_string(out.join(SETTINGS_FILE)).expect("settings");
    assert!(settings.contains("\"trained\": \"word\""), "{settings}");

    std::fs::write(out.join(SETTINGS_FILE), "{\"origin\": \"pretrained\"}").expect("write");
    let msg = TextTokenizer::load(&out)
        .expect_err("incomplete")
        .to_string();
    assert!(
        msg.contains("slt_text_tokenizer.json: bad settings: missing field"),
        "{msg}"
    );
}

#[test]
fn trained_word_level_round_trips_and_maps_oov_to_unk() {
    let texts = ["es regnet .", "morgen schneit es .", "regnet es morgen ."];
    let tok = TextTokenizer::train(&texts, TokenLevel::Word, "de_DE").expect("train");
    assert_eq!(
        (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.lang_id()),
        (1, 2, 3, 4)
    );
    assert_eq!(tok.vocab_size(), 5 + 5);
    let batch = tok.encode_targets(&texts).expect("encode");
    assert_eq!(
        tok.decode(&[batch.decoder_input_ids[..5].to_vec()]),
        ["es regnet ."]
    );
    let rows: Vec<Vec<i64>> = (0..3)
        .map(|i| batch.decoder_input_row(i).expect("row").to_vec())
        .collect();
    assert_eq!(tok.decode(&rows), texts);
    let oov = tok.encode("es hagelt").expect("encode");
    assert_eq!(oov[1], tok.unk_id());
    assert_eq!(tok.decode(&[[vec![4], oov].concat()]), ["es"]);
    assert_eq!(tok.unknown_pruned_count(), 0);
}

#[test]
fn training_rejects_bad_requests() {
    let msg = TextTokenizer::train(&[], TokenLevel::Char, "zh_CN")
        .expect_err("empty")
        .to_string();
    assert_eq!(msg, "training a Char tokenizer: no training sentences");
    let msg = TextTokenizer::train(&["a b"], TokenLevel::Word, "<pad>")
        .expect_err("collision")
        .to_string();
    assert!(msg.contains("collides with a base special token"), "{msg}");
}

#[test]
fn tokenizer_can_be_shared_between_loader_threads() {
    fn shareable<T: Send + Sync + Clone>(_: &T) {}
    let tok = TextTokenizer::train(&["a b ."], TokenLevel::Word, "de_DE").expect("train");
    shareable(&tok);
    let clone = tok.clone();
    let texts = ["a b .", "b a"];
    let batch = std::thread::spawn(move || clone.encode_targets(&texts).expect("encode"))
        .join()
        .expect("thread");
    assert_eq!(batch, tok.encode_targets(&texts).expect("encode"));
}
