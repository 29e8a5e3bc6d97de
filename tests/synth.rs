//! The synthetic dataset end to end: a tiny generation, its zip layout and PNGs, determinism,
//! the annotation/vocabulary pickles read by our reader and by Python (`pickle.load` with torch),
//! and sentences taken from a real Phoenix-2014T annotation file.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test synth
//! ```
//! The Python check needs `SLT_PYTHON_ORACLE` (exported by ./setup.sh); without it the test
//! fails, unless `SLT_SKIP_ORACLE=1` (then it reports being skipped). The source-file test reads
//! `$SLT_SHARED_DATA` (default `<crate>/../shared/data`).

mod common;

use common::oracle_python;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use slt::data::annotation::{read_annotations, SignRecord};
use slt::data::pickle::{write_annotations, write_gloss_vocab, SignRecordOut};
use slt::data::source::{FrameAdjust, FrameLayout, VideoSource};
use slt::data::synth::{generate, SourcePolicy, SynthOptions, SynthReport, SPLITS};

fn tiny(out_dir: &Path, seed: u64) -> SynthOptions {
    SynthOptions {
        out_dir: out_dir.to_path_buf(),
        train_size: 6,
        dev_size: 3,
        test_size: 3,
        width: 64,
        height: 80,
        vocab_size: 12,
        num_signers: 4,
        seed,
        progress: false,
        ..SynthOptions::default()
    }
}

fn run(opts: &SynthOptions) -> SynthReport {
    let report = generate(opts).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} videos, {} frames, {} zip bytes in {:.2} s ({:.1} videos/s, {:.0} frames/s)",
        report.videos.iter().sum::<usize>(),
        report.frames,
        report.zip_bytes,
        report.wall_secs,
        report.videos_per_sec(),
        report.frames_per_sec()
    );
    report
}

fn vocab(path: &Path) -> BTreeMap<String, i64> {
    let bytes = std::fs::read(path).unwrap();
    serde_pickle::from_slice(&bytes, Default::default()).unwrap()
}

fn annotations(dir: &Path) -> Vec<Vec<SignRecord>> {
    SPLITS
        .iter()
        .map(|s| {
            read_annotations(&dir.join(format!("synthetic.{s}"))).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

#[test]
fn tiny_dataset_has_the_phoenix_layout() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tiny(dir.path(), 7);
    let report = run(&opts);
    assert!(
        report.wall_secs < 30.0,
        "tiny generation took {} s",
        report.wall_secs
    );
    assert_eq!(report.videos, [6, 3, 3]);

    let splits = annotations(dir.path());
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for (s, records) in splits.iter().enumerate() {
        assert_eq!(records.len(), report.videos[s]);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.name, format!("{}/synth-{:06}", SPLITS[s], i + 1));
            assert!(
                r.signer.starts_with("Signer") && r.signer.len() == 8,
                "{}",
                r.signer
            );
            assert_eq!(r.gloss, r.gloss.to_uppercase());
            assert!((2..=8).contains(&r.gloss.split(' ').count()), "{}", r.gloss);
            assert!(
                r.text.ends_with(" .") && r.text == r.text.to_lowercase(),
                "{}",
                r.text
            );
            expected.insert(r.name.clone(), r.num_frames);
        }
    }
    assert_eq!(
        report.frames,
        expected.values().map(|&n| n as u64).sum::<u64>()
    );

    // Every gloss is in the vocabulary, whose layout is that of gloss2ids_old.pkl.
    let v = vocab(&report.vocab_path);
    assert_eq!(v.len(), 4 + opts.vocab_size);
    for (tok, id) in [("<si>", 0), ("<unk>", 1), ("<pad>", 2), ("</s>", 3)] {
        assert_eq!(v.get(tok), Some(&id), "{tok}");
    }
    let ids: HashSet<i64> = v.values().copied().collect();
    assert_eq!(ids, (0..v.len() as i64).collect());
    for r in splits.iter().flatten() {
        for g in r.gloss.split(' ') {
            assert!(
                v.contains_key(&g.to_lowercase()),
                "{g} not in the vocabulary"
            );
        }
    }

    // The zip holds exactly images/{name}/images{i:04}.png, i = 1..=num_frames, in order.
    let file = std::fs::File::open(&report.zip_path).unwrap();
    assert_eq!(file.metadata().unwrap().len(), report.zip_bytes);
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    let mut want = Vec::new();
    for r in splits.iter().flatten() {
        want.extend((1..=r.num_frames).map(|i| format!("images/{}/images{i:04}.png", r.name)));
    }
    assert_eq!(names, want);
    // Every PNG decodes to an RGB frame of the requested size.
    let mut png_bytes = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).unwrap();
        png_bytes += buf.len() as u64;
        let mut reader = png::Decoder::new(std::io::Cursor::new(buf))
            .read_info()
            .unwrap();
        let mut img = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut img).unwrap();
        assert_eq!((info.width, info.height), (opts.width, opts.height));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
    }
    assert_eq!(png_bytes, report.png_bytes);

    // The project's own frame source reads it like a Phoenix-2014T zip.
    let source = VideoSource::open(
        &report.zip_path,
        FrameLayout::Phoenix2014T,
        FrameAdjust::NONE,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let counts = source.frames_per_video().unwrap();
    assert_eq!(counts.into_iter().collect::<BTreeMap<_, _>>(), expected);
    let first = &splits[1][0];
    for index in [0, first.num_frames - 1] {
        let frame = source
            .read_frame(&first.name, index)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((frame.width, frame.height), (64, 80));
        assert_eq!(frame.rgb.len(), 64 * 80 * 3);
    }
    assert!(source.read_frame(&first.name, first.num_frames).is_err());
    // Nothing else is left in the output folder (no temporary zip).
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "gloss2ids.pkl",
            "synthetic.dev",
            "synthetic.test",
            "synthetic.train",
            "videos.zip"
        ]
    );
}

fn read_all(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn generation_is_deterministic_and_seeded() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    run(&tiny(a.path(), 3));
    // A different thread count must not change a byte.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| run(&tiny(b.path(), 3)));
    run(&tiny(c.path(), 4));
    let (fa, fb, fc) = (read_all(a.path()), read_all(b.path()), read_all(c.path()));
    assert_eq!(fa.len(), 5);
    for (name, bytes) in &fa {
        assert!(fb[name] == *bytes, "{name} differs between identical runs");
    }
    for name in ["videos.zip", "synthetic.train", "synthetic.dev"] {
        assert!(fc[name] != fa[name], "{name} did not change with the seed");
    }
}

/// Two records covering umlauts, a large frame count and empty alignments.
fn sample() -> Vec<SignRecordOut> {
    vec![
        SignRecordOut {
            name: "train/synth-000001".into(),
            signer: "Signer01".into(),
            gloss: "MORGEN REGEN NORD".into(),
            text: "morgen gibt es regen im norden .".into(),
            num_frames: 37,
            alignments: vec![("gloss_ids".into(), "0 0 6 6 4 4 5".into())],
        },
        SignRecordOut {
            name: "dev/synth-000002".into(),
            signer: "Signer12".into(),
            gloss: "SUED".into(),
            text: "im süden .".into(),
            num_frames: 1000,
            alignments: vec![],
        },
    ]
}

const PY_CHECK: &str = r#"
import gzip, json, pickle, sys, torch
out = {}
for path in sys.argv[1:-1]:
    recs = pickle.load(gzip.open(path, "rb"))
    rows = []
    for r in recs:
        s = r["sign"]
        rows.append({
            "keys": sorted(r.keys()), "name": r["name"], "signer": r["signer"],
            "gloss": r["gloss"], "text": r["text"], "num_frames": r["num_frames"],
            "alignments": r["alignments"], "is_tensor": isinstance(s, torch.Tensor),
            "shape": list(s.shape), "dtype": str(s.dtype),
        })
    out[path] = rows
vocab = pickle.load(open(sys.argv[-1], "rb"))
out["vocab"] = [[k, v] for k, v in vocab.items()]
print(json.dumps(out))
"#;

#[test]
fn python_reads_the_pickles_like_the_reference_files() {
    let Some(python) = oracle_python("python_reads_the_pickles_like_the_reference_files") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let records = sample();
    let ann = dir.path().join("synthetic.dev");
    write_annotations(&ann, &records, true).unwrap();
    let entries: Vec<(String, i64)> = ["<si>", "<unk>", "<pad>", "</s>", "regen", "süd"]
        .iter()
        .enumerate()
        .map(|(i, g)| (g.to_string(), i as i64))
        .collect();
    let voc = dir.path().join("gloss2ids.pkl");
    write_gloss_vocab(&voc, &entries).unwrap();
    // Also a generated file, so the whole pipeline is covered.
    let gen = tempfile::tempdir().unwrap();
    let report = run(&tiny(gen.path(), 1));
    let gen_train = &report.annotation_paths[0];

    let out = Command::new(&python)
        .arg("-c")
        .arg(PY_CHECK)
        .arg(&ann)
        .arg(gen_train)
        .arg(&voc)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let rows = v[ann.to_str().unwrap()].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, want) in rows.iter().zip(&records) {
        assert_eq!(
            row["keys"],
            serde_json::json!([
                "alignments",
                "gloss",
                "name",
                "num_frames",
                "sign",
                "signer",
                "text"
            ])
        );
        assert_eq!(row["name"], want.name.as_str());
        assert_eq!(row["signer"], want.signer.as_str());
        assert_eq!(row["gloss"], want.gloss.as_str());
        assert_eq!(row["text"], want.text.as_str());
        assert_eq!(row["num_frames"], want.num_frames);
        let al: HashMap<String, String> =
            serde_json::from_value(row["alignments"].clone()).unwrap();
        assert_eq!(al, want.alignments.iter().cloned().collect());
        assert_eq!(row["is_tensor"], true);
        assert_eq!(row["shape"], serde_json::json!([0]));
        assert_eq!(row["dtype"], "torch.float32");
    }
    let gen_rows = v[gen_train.to_str().unwrap()].as_array().unwrap();
    let ours = read_annotations(gen_train).unwrap();
    assert_eq!(gen_rows.len(), ours.len());
    for (row, r) in gen_rows.iter().zip(&ours) {
        assert_eq!(row["name"], r.name.as_str());
        assert_eq!(row["gloss"], r.gloss.as_str());
        assert_eq!(row["num_frames"], r.num_frames);
        assert_eq!(row["shape"], serde_json::json!([0]));
        let ids = row["alignments"]["gloss_ids"].as_str().unwrap();
        assert_eq!(ids.split(' ').count(), r.num_frames);
    }
    let want_vocab: Vec<serde_json::Value> = entries
        .iter()
        .map(|(g, i)| serde_json::json!([g, i]))
        .collect();
    assert_eq!(v["vocab"], serde_json::Value::Array(want_vocab));
}

#[test]
fn our_reader_round_trips_written_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<SignRecordOut> = (0..50)
        .map(|i| SignRecordOut {
            name: format!("test/synth-{:06}", i + 1),
            signer: format!("Signer{:02}", i % 9 + 1),
            gloss: "HEUTE SONNE".into(),
            text: format!("heute sonnenschein {i} ."),
            num_frames: 20 + i,
            alignments: vec![("gloss_ids".into(), "0 4".into())],
        })
        .collect();
    for compress in [true, false] {
        let path = dir.path().join(format!("a-{compress}"));
        write_annotations(&path, &records, compress).unwrap();
        let back = read_annotations(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.len(), records.len());
        for (b, r) in back.iter().zip(&records) {
            assert_eq!(
                (&b.name, &b.signer, &b.gloss, &b.text, b.num_frames),
                (&r.name, &r.signer, &r.gloss, &r.text, r.num_frames as usize)
            );
        }
    }
}

#[test]
fn sentences_come_from_a_real_annotation_file() {
    let data = std::env::var_os("SLT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let source = data.join("phoenix-2014t/phoenix-2014t_cleaned.train");
    assert!(
        source.is_file(),
        "{} not found (set SLT_SHARED_DATA)",
        source.display()
    );
    let real = read_annotations(&source).unwrap();
    let real_pairs: HashSet<(String, String)> = real
        .iter()
        .map(|r| (r.gloss.clone(), r.text.clone()))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        vocab_size: 30,
        train_size: 4,
        dev_size: 2,
        test_size: 2,
        width: 32,
        height: 40,
        source_annotations: Some(source.clone()),
        ..tiny(dir.path(), 5)
    };
    let report = run(&opts);
    assert_eq!(report.vocabulary.len(), 30);
    assert_eq!(&report.vocabulary[..3], ["REGEN", "REGION", "IX"]);
    assert!(
        report.source_sentences.unwrap_or(0) > 100,
        "{:?}",
        report.source_sentences
    );
    let v = vocab(&report.vocab_path);
    assert_eq!(v["regen"], 4);
    for r in annotations(dir.path()).iter().flatten() {
        // KeepInVocab: the real gloss sequence and its real sentence, unchanged.
        assert!(
            real_pairs.contains(&(r.gloss.clone(), r.text.clone())),
            "{r:?}"
        );
        assert!(r
            .gloss
            .split(' ')
            .all(|g| v.contains_key(&g.to_lowercase())));
    }

    // Too small a vocabulary for KeepInVocab is an error naming the file…
    let err = generate(&SynthOptions {
        vocab_size: 1,
        max_glosses: 1,
        ..opts.clone()
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        err.to_string().contains("phoenix-2014t_cleaned.train"),
        "{err}"
    );
    // …while DropOutOfVocab keeps (shortened) records.
    let r = run(&SynthOptions {
        vocab_size: 5,
        max_glosses: 3,
        source_policy: SourcePolicy::DropOutOfVocab,
        ..opts
    });
    assert!(r.source_sentences.unwrap_or(0) > 1000);
}

#[test]
fn pickle_files_are_deterministic_and_vocab_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gz"), dir.path().join("b.gz"));
    write_annotations(&a, &sample(), true).unwrap();
    write_annotations(&b, &sample(), true).unwrap();
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba, bb);
    assert_eq!(&ba[..2], &[0x1f, 0x8b]);
    assert_eq!(&ba[4..8], &[0, 0, 0, 0], "gzip mtime must be zero");

    let vocab: Vec<(String, i64)> = ["<si>", "<unk>", "<pad>", "</s>", "regen", "süd"]
        .iter()
        .enumerate()
        .map(|(i, g)| (g.to_string(), i as i64))
        .collect();
    let v = dir.path().join("gloss2ids.pkl");
    write_gloss_vocab(&v, &vocab).unwrap();
    let raw = std::fs::read(&v).unwrap();
    assert_eq!(&raw[..2], &[0x80, 3]);
    let back: BTreeMap<String, i64> = serde_pickle::from_slice(&raw, Default::default()).unwrap();
    assert_eq!(back.len(), 6);
    assert_eq!(back["<si>"], 0);
    assert_eq!(back["süd"], 5);
}

#[test]
fn pickle_write_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("missing-dir").join("x.pkl");
    let err = write_gloss_vocab(&p, &[]).unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
}
