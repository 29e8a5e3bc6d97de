//! The reference's annotation files and gloss vocabularies, read from the shared data folder
//! (`$SLT_SHARED_DATA`, default `<crate>/../shared/data`). Expected values were taken from the files
//! with Python (`pickle.load(gzip.open(...))`) and from slrt-spec §3, §6 and §10.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test annotations
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use slt::data::annotation::{read_annotations, AnnotationSet, SignRecord};
use slt::data::gloss::{split_python_whitespace, GlossVocab, S2GGlossTokenizer};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("SLT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    assert!(
        dir.join("phoenix-2014t").is_dir() && dir.join("csl-daily").is_dir(),
        "shared data not found at {} (set SLT_SHARED_DATA)",
        dir.display()
    );
    dir
}

fn load(rel: &str) -> Vec<SignRecord> {
    let path = data_dir().join(rel);
    let start = Instant::now();
    let records = read_annotations(&path).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{rel}: {} records in {:.3?}",
        records.len(),
        start.elapsed()
    );
    records
}

fn record(name: &str, signer: &str, gloss: &str, text: &str, num_frames: usize) -> SignRecord {
    SignRecord {
        name: name.into(),
        signer: signer.into(),
        gloss: gloss.into(),
        text: text.into(),
        num_frames,
    }
}

/// Corpus statistics of one split.
#[derive(Debug, PartialEq)]
struct Stats {
    frames_sum: usize,
    frames_max: usize,
    frames_min: usize,
    gloss_tokens: usize,
    gloss_len_max: usize,
    gloss_len_min: usize,
    gloss_types: usize,
    signers: usize,
}

fn stats(records: &[SignRecord]) -> Stats {
    let frames = records.iter().map(|r| r.num_frames);
    let lens: Vec<usize> = records
        .iter()
        .map(|r| split_python_whitespace(&r.gloss).count())
        .collect();
    let types: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| split_python_whitespace(&r.gloss))
        .collect();
    let signers: BTreeSet<&str> = records.iter().map(|r| r.signer.as_str()).collect();
    Stats {
        frames_sum: frames.clone().sum(),
        frames_max: frames.clone().max().unwrap_or(0),
        frames_min: frames.min().unwrap_or(0),
        gloss_tokens: lens.iter().sum(),
        gloss_len_max: lens.iter().copied().max().unwrap_or(0),
        gloss_len_min: lens.iter().copied().min().unwrap_or(0),
        gloss_types: types.len(),
        signers: signers.len(),
    }
}

/// `(avg, max, min)` of the whitespace-token counts of the `text` field.
fn text_lengths(records: &[SignRecord]) -> (f64, usize, usize) {
    let lens: Vec<usize> = records
        .iter()
        .map(|r| split_python_whitespace(&r.text).count())
        .collect();
    let avg = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    let max = lens.iter().copied().max().unwrap_or(0);
    let min = lens.iter().copied().min().unwrap_or(0);
    (avg, max, min)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[test]
fn phoenix_train_records_and_statistics() {
    let train = load("phoenix-2014t/phoenix-2014t_cleaned.train");
    assert_eq!(train.len(), 7096);
    assert_eq!(
        train[0],
        record(
            "train/11August_2010_Wednesday_tagesschau-1",
            "Signer08",
            "JETZT WETTER MORGEN DONNERSTAG ZWOELF FEBRUAR",
            "und nun die wettervorhersage für morgen donnerstag den zwölften august .",
            86
        )
    );
    assert_eq!(
        train[7095],
        record(
            "train/27January_2013_Sunday_tagesschau-8842",
            "Signer01",
            "BLEIBEN WIND",
            "es bleibt windig .",
            43
        )
    );
    let s = stats(&train);
    // spec §10: num_frames avg 116.6 / max 475 / min 16; gloss len 7.80 / 30 / 1; 55,358 tokens;
    // 1061 gloss types (the same count before and after lower-casing); 9 signers.
    assert_eq!(
        s,
        Stats {
            frames_sum: 827_354,
            frames_max: 475,
            frames_min: 16,
            gloss_tokens: 55_358,
            gloss_len_max: 30,
            gloss_len_min: 1,
            gloss_types: 1061,
            signers: 9,
        }
    );
    assert_eq!(round2(s.frames_sum as f64 / 7096.0), 116.59);
    assert_eq!(round2(s.gloss_tokens as f64 / 7096.0), 7.80);
    let lower: BTreeSet<String> = train
        .iter()
        .flat_map(|r| split_python_whitespace(&r.gloss))
        .map(str::to_lowercase)
        .collect();
    assert_eq!(lower.len(), 1061);
    assert_eq!(train.iter().filter(|r| r.num_frames > 400).count(), 1);
    let (avg, max, min) = text_lengths(&train);
    assert_eq!((round2(avg), max, min), (14.96, 53, 2));
    let words: BTreeSet<String> = train
        .iter()
        .flat_map(|r| split_python_whitespace(&r.text))
        .map(str::to_lowercase)
        .collect();
    assert_eq!(words.len(), 2888);
    assert!(train.iter().all(|r| r.text.ends_with(" .")));

    let set = AnnotationSet::from_records(PathBuf::from("train"), train)
        .unwrap_or_else(|e| panic!("{e}"));
    let found = set.get("train/27January_2013_Sunday_tagesschau-8842");
    assert_eq!(found.map(|r| r.num_frames), Some(43));
}

#[test]
fn phoenix_dev_records_and_statistics() {
    let dev = load("phoenix-2014t/phoenix-2014t_cleaned.dev");
    assert_eq!(dev.len(), 519);
    assert_eq!(
        dev[0],
        record(
            "dev/11August_2010_Wednesday_tagesschau-2",
            "Signer08",
            "DRUCK TIEF KOMMEN",
            "tiefer luftdruck bestimmt in den nächsten tagen unser wetter .",
            42
        )
    );
    assert_eq!(
        dev[518],
        record(
            "dev/27January_2013_Sunday_tagesschau-8836",
            "Signer01",
            "HEUTE NACHT PLUS DREI REGION NULL ZWISCHEN LEICHT FROST MINUS EINS MINUS ZWEI",
            "am oberrhein heute nacht bis plus drei grad sonst verbreitet werte um den gefrierpunkt \
             oder leichter frost .",
            164
        )
    );
    // spec §10: num_frames avg 107.5 / 272 / 16; gloss len 7.23 / 20 / 2; 396 types; text 14.14 / 33 / 5.
    let s = stats(&dev);
    assert_eq!(
        s,
        Stats {
            frames_sum: 55_775,
            frames_max: 272,
            frames_min: 16,
            gloss_tokens: 3754,
            gloss_len_max: 20,
            gloss_len_min: 2,
            gloss_types: 396,
            signers: 9,
        }
    );
    assert_eq!(round2(s.frames_sum as f64 / 519.0), 107.47);
    assert_eq!(round2(s.gloss_tokens as f64 / 519.0), 7.23);
    let (avg, max, min) = text_lengths(&dev);
    assert_eq!((round2(avg), max, min), (14.14, 33, 5));
}

#[test]
fn csl_daily_records_and_statistics() {
    let train = load("csl-daily/csl-daily.train");
    assert_eq!(train.len(), 18401);
    let first = record("S000000_P0000_T00", "0", "你们 好", "你们好！", 52);
    assert_eq!(train[0], first);
    let last = record(
        "S007411_P0007_T00",
        "7",
        "阑尾 炎 经常 诱惑 别 什么 病",
        "阑尾炎经常引发其他疾病。",
        185,
    );
    assert_eq!(train[18400], last);
    let s = stats(&train);
    assert_eq!(
        (s.frames_sum, s.frames_max, s.frames_min),
        (2_185_329, 493, 10)
    );
    assert_eq!(
        (s.gloss_tokens, s.gloss_len_max, s.gloss_len_min),
        (133_714, 25, 1)
    );
    assert_eq!((s.gloss_types, s.signers), (2000, 10));
    // spec §10: avg gloss length 7.27; 8 train videos longer than 400 frames.
    assert_eq!(round2(s.gloss_tokens as f64 / 18401.0), 7.27);
    assert_eq!(train.iter().filter(|r| r.num_frames > 400).count(), 8);

    let dev = load("csl-daily/csl-daily.dev");
    assert_eq!(dev.len(), 1077);
    assert_eq!(
        dev[0],
        record(
            "S000020_P0000_T00",
            "0",
            "他 今天 年龄 4",
            "他今年四岁。",
            54
        )
    );
    let last = record(
        "S007397_P0003_T00",
        "3",
        "厨师 发现 吃饭 地方 老鼠 有 1",
        "厨师发现吃饭的地方有一只老鼠。",
        87,
    );
    assert_eq!(dev[1076], last);
    let s = stats(&dev);
    assert_eq!(
        (s.frames_sum, s.frames_max, s.frames_min),
        (131_931, 339, 33)
    );
    assert_eq!((s.gloss_tokens, s.gloss_types, s.signers), (8173, 1344, 10));
    assert_eq!(round2(s.gloss_tokens as f64 / 1077.0), 7.59);
}

fn vocab(rel: &str) -> GlossVocab {
    GlossVocab::read(&data_dir().join(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn tokenizer(rel: &str) -> S2GGlossTokenizer {
    S2GGlossTokenizer::from_file(&data_dir().join(rel), true).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn gloss_vocabularies_have_the_documented_layout() {
    let old = vocab("phoenix-2014t/gloss2ids_old.pkl");
    assert_eq!(old.len(), 1094);
    assert_eq!(
        old.glosses()[..5],
        ["<si>", "<unk>", "<pad>", "</s>", "regen"]
    );
    assert_eq!(
        (old.id("region"), old.gloss(1093)),
        (Some(5), Some("ändern"))
    );

    let mbart = vocab("phoenix-2014t/gloss2ids.pkl");
    assert_eq!(mbart.len(), 1124);
    let specials = [
        "<s>", "<pad>", "</s>", "<unk>", "<mask>", "zh_CN", "de_DE", "zh_CSL", "de_DGS", "jetzt",
    ];
    assert_eq!(mbart.glosses()[..10], specials);

    let csl = vocab("csl-daily/gloss2ids.pkl");
    assert_eq!(csl.len(), 2004);
    assert_eq!(csl.glosses()[..5], ["<si>", "<unk>", "<pad>", "</s>", "我"]);
}

/// Every gloss token of `records` encoded one by one; returns the number of `<unk>` ids.
fn count_unk(tok: &S2GGlossTokenizer, records: &[SignRecord]) -> usize {
    let mut unk = 0;
    for r in records {
        let ids = tok.encode(&r.gloss);
        assert_eq!(
            ids.len(),
            split_python_whitespace(&r.gloss).count(),
            "{}",
            r.name
        );
        unk += ids.iter().filter(|&&id| id == tok.unk_id()).count();
    }
    unk
}

#[test]
fn s2g_tokenizer_on_phoenix() {
    let tok = tokenizer("phoenix-2014t/gloss2ids_old.pkl");
    assert_eq!(
        (tok.blank_id(), tok.unk_id(), tok.pad_id(), tok.len()),
        (0, 1, 2, 1094)
    );
    let train = load("phoenix-2014t/phoenix-2014t_cleaned.train");
    let dev = load("phoenix-2014t/phoenix-2014t_cleaned.dev");
    // spec §10: 0 OOV under gloss2ids_old.
    assert_eq!(count_unk(&tok, &train) + count_unk(&tok, &dev), 0);

    let expected_dev_last = [20, 13, 116, 86, 5, 112, 108, 157, 87, 45, 81, 45, 85];
    assert_eq!(tok.encode(&dev[518].gloss), expected_dev_last);
    assert_eq!(tok.encode(&train[0].gloss), [35, 21, 7, 61, 119, 203]);
    let decoded = tok
        .decode(&expected_dev_last)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.join(" "), dev[518].gloss.to_lowercase());

    let batch = tok.encode_batch(&[dev[0].gloss.as_str(), dev[518].gloss.as_str()]);
    assert_eq!((batch.max_len, batch.lengths.clone()), (13, vec![3, 13]));
    let mut first_row = vec![124, 43, 8];
    first_row.resize(13, 2);
    assert_eq!(batch.row(0), Some(first_row.as_slice()));
    assert_eq!(batch.row(1), Some(&expected_dev_last[..]));

    // The mBART vocabulary (raw spelling) with the cleaned glosses: `<s>` is the blank, and
    // 1577 train tokens of 101 types are unknown (spec §10's G2T mismatch).
    let mbart = tokenizer("phoenix-2014t/gloss2ids.pkl");
    assert_eq!(
        (mbart.blank_id(), mbart.pad_id(), mbart.unk_id()),
        (0, 1, 3)
    );
    assert_eq!(mbart.encode(&train[0].gloss), [9, 10, 11, 12, 13, 14]);
    assert_eq!(count_unk(&mbart, &train), 1577);
    let oov: BTreeSet<String> = train
        .iter()
        .flat_map(|r| split_python_whitespace(&r.gloss))
        .filter(|g| mbart.token_id(g) == mbart.unk_id())
        .map(str::to_lowercase)
        .collect();
    assert_eq!(oov.len(), 101);
}

#[test]
fn s2g_tokenizer_on_csl_daily() {
    let tok = tokenizer("csl-daily/gloss2ids.pkl");
    assert_eq!(
        (tok.blank_id(), tok.unk_id(), tok.pad_id(), tok.len()),
        (0, 1, 2, 2004)
    );
    let train = load("csl-daily/csl-daily.train");
    let dev = load("csl-daily/csl-daily.dev");
    assert_eq!(count_unk(&tok, &train) + count_unk(&tok, &dev), 0);
    assert_eq!(tok.encode(&dev[0].gloss), [5, 28, 198, 637]);
    assert_eq!(
        tok.encode(&train[18400].gloss),
        [517, 885, 193, 964, 127, 22, 52]
    );
    assert_eq!(
        tok.decode(&[118, 14]).unwrap_or_else(|e| panic!("{e}")),
        ["你们", "好"]
    );
}
