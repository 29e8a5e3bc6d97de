//! The reference's annotation files: a (usually gzip-compressed) pickle of a Python `list` of
//! `dict`s, one per video (slrt-spec §6).
//!
//! The reader is data-only: it never executes pickled code. The `sign` placeholder tensor that the
//! files carry is rebuilt in Python by `torch._utils._rebuild_tensor_v2(...)`; here such globals
//! are replaced by `None` (serde-pickle's `replace_unresolved_globals`) and the field is ignored,
//! like every other field this crate does not use (`alignments`, `folder`, ...).
//!
//! ```no_run
//! use slt::data::annotation::read_annotations;
//! let records = read_annotations("data/phoenix-2014t/phoenix-2014t_cleaned.dev".as_ref())?;
//! println!("{} videos, first {}", records.len(), records[0].name);
//! # Ok::<(), slt::data::annotation::AnnotationError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_pickle::{DeOptions, HashableValue, Value};
use thiserror::Error;

/// One annotated video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRecord {
    /// Video id, e.g. `train/11August_2010_Wednesday_tagesschau-1` or `S000000_P0000_T00`.
    pub name: String,
    /// Signer: Phoenix stores `'Signer08'`; CSL-Daily stores an integer, kept as its decimal string.
    pub signer: String,
    /// Space-separated gloss sequence as stored (Phoenix upper-case; not normalised here).
    pub gloss: String,
    /// Spoken-language sentence; empty for Phoenix-2014 records (those have `folder`, no `text`).
    pub text: String,
    /// Number of frames of the video.
    pub num_frames: usize,
}

/// Why an annotation file could not be read.
#[derive(Debug, Error)]
pub enum AnnotationError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// The annotation file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The file starts with the gzip magic but does not decompress.
    #[error("{}: corrupt or truncated gzip stream: {source}", .path.display())]
    Gzip {
        /// The annotation file.
        path: PathBuf,
        /// The decompression error.
        source: io::Error,
    },
    /// The (decompressed) bytes are not a pickle serde-pickle can parse.
    #[error("{}: not a readable pickle: {source}", .path.display())]
    Pickle {
        /// The annotation file.
        path: PathBuf,
        /// The parser's error.
        source: serde_pickle::Error,
    },
    /// The pickle holds something other than a list of records.
    #[error("{}: expected a list of records at the top level, found {found}", .path.display())]
    NotAList {
        /// The annotation file.
        path: PathBuf,
        /// What the top level was instead.
        found: String,
    },
    /// One record is malformed.
    #[error("{}: record {index}{}: {problem}", .path.display(), NameTag(.name))]
    Record {
        /// The annotation file.
        path: PathBuf,
        /// Position of the record in the list (0-based).
        index: usize,
        /// The record's `name`, when it could be read.
        name: Option<String>,
        /// What is wrong with it.
        problem: RecordProblem,
    },
    /// Two records share a `name` (only checked by [`AnnotationSet`]).
    #[error("{}: records {first} and {second} have the same name '{name}'", .path.display())]
    DuplicateName {
        /// The annotation file.
        path: PathBuf,
        /// The shared name.
        name: String,
        /// Index of the first record with that name.
        first: usize,
        /// Index of the second record with that name.
        second: usize,
    },
}

/// What is wrong with a single record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordProblem {
    /// The list element is not a dict.
    #[error("expected a dict, found {found}")]
    NotADict {
        /// What the element was instead.
        found: String,
    },
    /// A required key is absent.
    #[error("missing field '{field}'")]
    MissingField {
        /// The absent key.
        field: &'static str,
    },
    /// A field holds a value of the wrong type or range.
    #[error("field '{field}': expected {expected}, found {found}")]
    Invalid {
        /// The key.
        field: &'static str,
        /// What the field must hold.
        expected: &'static str,
        /// What it holds.
        found: String,
    },
}

/// Formats ` ('name')` when the record name is known.
struct NameTag<'a>(&'a Option<String>);

impl fmt::Display for NameTag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " ('{name}')"),
            None => Ok(()),
        }
    }
}

/// Reads an annotation file (gzip-compressed or plain pickle; the gzip magic decides).
pub fn read_annotations(path: &Path) -> Result<Vec<SignRecord>, AnnotationError> {
    let bytes = read_maybe_gzip(path)?;
    let value =
        serde_pickle::value_from_slice(&bytes, DeOptions::new().replace_unresolved_globals())
            .map_err(|source| AnnotationError::Pickle {
                path: path.to_path_buf(),
                source,
            })?;
    drop(bytes);
    records_from_value(path, value)
}

/// Reads the whole file and gunzips it when it starts with the gzip magic `1f 8b`.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, AnnotationError> {
    let raw = std::fs::read(path).map_err(|source| AnnotationError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    // The trailer's ISIZE (uncompressed size mod 2^32 of the last member) is only a capacity hint.
    let hint = raw
        .len()
        .checked_sub(4)
        .and_then(|at| raw.get(at..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize)
        .min(1 << 30);
    let mut out = Vec::with_capacity(hint);
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| AnnotationError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Converts the unpickled top-level value into records.
fn records_from_value(path: &Path, value: Value) -> Result<Vec<SignRecord>, AnnotationError> {
    let items = match value {
        Value::List(items) | Value::Tuple(items) => items,
        other => {
            return Err(AnnotationError::NotAList {
                path: path.to_path_buf(),
                found: describe(&other),
            })
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            record_from_value(item).map_err(|(name, problem)| AnnotationError::Record {
                path: path.to_path_buf(),
                index,
                name,
                problem,
            })
        })
        .collect()
}

/// Converts one list element; on failure returns the record name (if readable) and the problem.
fn record_from_value(value: Value) -> Result<SignRecord, (Option<String>, RecordProblem)> {
    let dict = match value {
        Value::Dict(dict) => dict,
        other => {
            let found = describe(&other);
            return Err((None, RecordProblem::NotADict { found }));
        }
    };
    let (mut name, mut signer, mut gloss, mut text, mut num_frames) =
        (None, None, None, None, None);
    let mut has_folder = false;
    for (key, value) in dict {
        let HashableValue::String(key) = key else {
            continue;
        };
        match key.as_str() {
            "name" => name = Some(value),
            "signer" => signer = Some(value),
            "gloss" => gloss = Some(value),
            "text" => text = Some(value),
            "num_frames" => num_frames = Some(value),
            "folder" => has_folder = true,
            _ => {}
        }
    }
    let name = string_field("name", name).map_err(|p| (None, p))?;
    let fail = |problem| (Some(name.clone()), problem);
    let signer = match signer {
        Some(Value::String(s)) => s,
        Some(Value::I64(i)) => i.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(other) => {
            return Err(fail(invalid("signer", "a string or an integer", &other)));
        }
        None => return Err(fail(RecordProblem::MissingField { field: "signer" })),
    };
    let gloss = string_field("gloss", gloss).map_err(fail)?;
    // Phoenix-2014 (not -2014T) records carry `folder` and no sentence.
    let text = match text {
        None if has_folder => String::new(),
        text => string_field("text", text).map_err(fail)?,
    };
    let num_frames = match num_frames {
        Some(Value::I64(n)) => usize::try_from(n).map_err(|_| {
            fail(invalid(
                "num_frames",
                "a non-negative integer",
                &Value::I64(n),
            ))
        })?,
        Some(other) => return Err(fail(invalid("num_frames", "an integer", &other))),
        None => {
            return Err(fail(RecordProblem::MissingField {
                field: "num_frames",
            }))
        }
    };
    Ok(SignRecord {
        name,
        signer,
        gloss,
        text,
        num_frames,
    })
}

/// A required string field.
fn string_field(field: &'static str, value: Option<Value>) -> Result<String, RecordProblem> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid(field, "a string", &other)),
        None => Err(RecordProblem::MissingField { field }),
    }
}

fn invalid(field: &'static str, expected: &'static str, found: &Value) -> RecordProblem {
    RecordProblem::Invalid {
        field,
        expected,
        found: describe(found),
    }
}

/// Short description of a pickled value for error messages, e.g. `a string ('86')`.
pub(crate) fn describe(value: &Value) -> String {
    const MAX: usize = 40;
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => format!("a bool ({})", if *b { "True" } else { "False" }),
        Value::I64(i) => format!("an integer ({i})"),
        Value::Int(i) => format!("an integer ({i})"),
        Value::F64(x) => format!("a float ({x})"),
        Value::Bytes(b) => format!("bytes (length {})", b.len()),
        Value::String(s) if s.chars().count() > MAX => {
            format!("a string ('{}…')", s.chars().take(MAX).collect::<String>())
        }
        Value::String(s) => format!("a string ('{s}')"),
        Value::List(v) => format!("a list (length {})", v.len()),
        Value::Tuple(v) => format!("a tuple (length {})", v.len()),
        Value::Set(v) => format!("a set (length {})", v.len()),
        Value::FrozenSet(v) => format!("a frozenset (length {})", v.len()),
        Value::Dict(v) => format!("a dict (length {})", v.len()),
    }
}

/// The records of one annotation file, with lookup by `name` (names must be unique).
#[derive(Debug, Clone)]
pub struct AnnotationSet {
    path: PathBuf,
    records: Vec<SignRecord>,
    by_name: HashMap<String, usize>,
}

impl AnnotationSet {
    /// Reads `path` with [`read_annotations`] and indexes the records by name.
    pub fn load(path: &Path) -> Result<Self, AnnotationError> {
        let records = read_annotations(path)?;
        Self::from_records(path.to_path_buf(), records)
    }

    /// Indexes already-read records; `path` is only used in messages. Duplicate names are an error.
    pub fn from_records(path: PathBuf, records: Vec<SignRecord>) -> Result<Self, AnnotationError> {
        let mut by_name = HashMap::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            if let Some(first) = by_name.insert(record.name.clone(), index) {
                return Err(AnnotationError::DuplicateName {
                    path,
                    name: record.name.clone(),
                    first,
                    second: index,
                });
            }
        }
        Ok(Self {
            path,
            records,
            by_name,
        })
    }

    /// The file the records came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All records, in file order.
    pub fn records(&self) -> &[SignRecord] {
        &self.records
    }

    /// Gives the records back, in file order.
    pub fn into_records(self) -> Vec<SignRecord> {
        self.records
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the file held no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Position of the record called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The record called `name`.
    pub fn get(&self, name: &str) -> Option<&SignRecord> {
        self.position(name).and_then(|i| self.records.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use serde_pickle::SerOptions;
    use std::collections::BTreeMap;
    use std::io::Write;

    fn s(x: &str) -> Value {
        Value::String(x.to_string())
    }

    fn dict(entries: &[(&str, Value)]) -> Value {
        let map: BTreeMap<HashableValue, Value> = entries
            .iter()
            .map(|(k, v)| (HashableValue::String(k.to_string()), v.clone()))
            .collect();
        Value::Dict(map)
    }

    fn phoenix(name: &str, frames: Value) -> Value {
        dict(&[
            ("name", s(name)),
            ("signer", s("Signer08")),
            ("gloss", s("JETZT WETTER")),
            ("text", s("und nun .")),
            ("num_frames", frames),
            ("alignments", dict(&[("pami0", s("0 0 1"))])),
            ("sign", Value::None),
        ])
    }

    fn pickle(value: &Value) -> Vec<u8> {
        serde_pickle::value_to_vec(value, SerOptions::new()).expect("serialize test pickle")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).expect("gzip");
        enc.finish().expect("gzip")
    }

    /// Writes `bytes` to `<tmp>/<file>` and reads it back.
    fn read_bytes(file: &str, bytes: &[u8]) -> (PathBuf, Result<Vec<SignRecord>, AnnotationError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).expect("write");
        let result = read_annotations(&path);
        (path, result)
    }

    fn error_of(file: &str, value: &Value) -> (String, String) {
        let (path, result) = read_bytes(file, &gzip(&pickle(value)));
        let err = result.expect_err("must fail");
        (path.display().to_string(), err.to_string())
    }

    #[test]
    fn reads_gzip_and_plain_pickles_of_all_record_kinds() {
        let csl = dict(&[
            ("name", s("S000000_P0000_T00")),
            ("signer", Value::I64(7)),
            ("gloss", s("你们 好")),
            ("text", s("你们好！")),
            ("num_frames", Value::I64(52)),
        ]);
        let phoenix2014 = dict(&[
            ("name", s("train/01April_2010_Thursday_heute_default-0")),
            (
                "folder",
                s("train/01April_2010_Thursday_heute_default-0/1/*.png"),
            ),
            ("signer", s("Signer04")),
            ("gloss", s("__ON__ LIEB")),
            ("num_frames", Value::I64(176)),
        ]);
        let list = Value::List(vec![phoenix("train/a", Value::I64(86)), csl, phoenix2014]);
        let plain = pickle(&list);
        for bytes in [gzip(&plain), plain] {
            let (_, records) = read_bytes("x.train", &bytes);
            let records = records.expect("valid file");
            assert_eq!(records.len(), 3);
            assert_eq!(
                records[0],
                SignRecord {
                    name: "train/a".into(),
                    signer: "Signer08".into(),
                    gloss: "JETZT WETTER".into(),
                    text: "und nun .".into(),
                    num_frames: 86,
                }
            );
            assert_eq!(records[1].signer, "7");
            assert_eq!(records[1].gloss, "你们 好");
            assert_eq!(records[2].text, "");
            assert_eq!(records[2].num_frames, 176);
        }
    }

    /// Hand-written protocol-2 pickle whose `sign` is a REDUCE of a torch global, like the real files.
    #[test]
    fn torch_globals_are_replaced_not_executed() {
        fn unicode(out: &mut Vec<u8>, x: &str) {
            out.push(b'X');
            out.extend_from_slice(&(x.len() as u32).to_le_bytes());
            out.extend_from_slice(x.as_bytes());
        }
        let mut p = vec![0x80, 2, b']', b'}', b'('];
        for (k, v) in [
            ("name", "dev/x"),
            ("signer", "Signer01"),
            ("gloss", "A B"),
            ("text", "t ."),
        ] {
            unicode(&mut p, k);
            unicode(&mut p, v);
        }
        unicode(&mut p, "sign");
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(K\x00tR");
        unicode(&mut p, "num_frames");
        p.extend_from_slice(b"K\x10ua.");
        let (_, records) = read_bytes("torch.dev", &gzip(&p));
        let records = records.expect("torch global must be tolerated");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, "dev/x");
        assert_eq!(records[0].num_frames, 16);
    }

    #[test]
    fn truncated_gzip_names_the_file() {
        let full = gzip(&pickle(&Value::List(vec![
            phoenix("train/a", Value::I64(3));
            50
        ])));
        let (path, result) = read_bytes("cut.train", &full[..full.len() / 2]);
        let err = result.expect_err("truncated");
        assert!(matches!(err, AnnotationError::Gzip { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("gzip"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_typed_field_names_file_record_name_and_field() {
        let list = Value::List(vec![
            phoenix("train/ok", Value::I64(3)),
            phoenix("train/foo", s("86")),
        ]);
        let (path, msg) = error_of("x.train", &list);
        let expected = format!(
            "{path}: record 1 ('train/foo'): field 'num_frames': expected an integer, found a string ('86')"
        );
        assert_eq!(msg, expected);
    }

    #[test]
    fn negative_frame_count_and_bad_signer_are_rejected() {
        let (path, msg) = error_of(
            "neg.dev",
            &Value::List(vec![phoenix("dev/n", Value::I64(-3))]),
        );
        assert!(msg.starts_with(&path), "{msg}");
        assert!(
            msg.contains(
                "field 'num_frames': expected a non-negative integer, found an integer (-3)"
            ),
            "{msg}"
        );

        let mut rec = phoenix("dev/s", Value::I64(3));
        if let Value::Dict(map) = &mut rec {
            map.insert(HashableValue::String("signer".into()), Value::F64(1.5));
        }
        let (_, msg) = error_of("signer.dev", &Value::List(vec![rec]));
        assert!(
            msg.contains("record 0 ('dev/s'): field 'signer': expected a string or an integer"),
            "{msg}"
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let no_gloss = dict(&[
            ("name", s("dev/g")),
            ("signer", s("Signer01")),
            ("text", s("t .")),
            ("num_frames", Value::I64(9)),
        ]);
        let (path, msg) = error_of("g.dev", &Value::List(vec![no_gloss]));
        assert_eq!(
            msg,
            format!("{path}: record 0 ('dev/g'): missing field 'gloss'")
        );

        // Without `folder` (i.e. not a Phoenix-2014 record) the sentence is required.
        let no_text = dict(&[
            ("name", s("dev/t")),
            ("signer", s("Signer01")),
            ("gloss", s("A")),
            ("num_frames", Value::I64(9)),
        ]);
        let (_, msg) = error_of("t.dev", &Value::List(vec![no_text]));
        assert!(
            msg.ends_with("record 0 ('dev/t'): missing field 'text'"),
            "{msg}"
        );

        let no_name = dict(&[("gloss", s("A"))]);
        let (_, msg) = error_of("n.dev", &Value::List(vec![no_name]));
        assert!(msg.ends_with("record 0: missing field 'name'"), "{msg}");
    }

    #[test]
    fn structural_errors() {
        let (path, msg) = error_of("d.dev", &dict(&[("name", s("x"))]));
        assert_eq!(
            msg,
            format!("{path}: expected a list of records at the top level, found a dict (length 1)")
        );

        let (path, msg) = error_of(
            "e.dev",
            &Value::List(vec![phoenix("a", Value::I64(1)), Value::I64(4)]),
        );
        assert_eq!(
            msg,
            format!("{path}: record 1: expected a dict, found an integer (4)")
        );

        let (path, result) = read_bytes("junk.dev", b"definitely not a pickle");
        let msg = result.expect_err("junk").to_string();
        assert!(
            msg.starts_with(&format!("{}: not a readable pickle", path.display())),
            "{msg}"
        );

        let missing = Path::new("/nonexistent/slt/annotations.train");
        let msg = read_annotations(missing).expect_err("missing").to_string();
        assert!(
            msg.starts_with("/nonexistent/slt/annotations.train: cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn annotation_set_lookup_and_duplicates() {
        let records = vec![
            phoenix("train/a", Value::I64(1)),
            phoenix("train/b", Value::I64(2)),
            phoenix("train/a", Value::I64(3)),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dup.train");
        std::fs::write(&path, gzip(&pickle(&Value::List(records[..2].to_vec())))).expect("write");
        let set = AnnotationSet::load(&path).expect("unique names");
        assert_eq!(set.len(), 2);
        assert_eq!(set.position("train/b"), Some(1));
        assert_eq!(set.get("train/b").map(|r| r.num_frames), Some(2));
        assert!(set.get("train/c").is_none());
        assert_eq!(set.path(), path.as_path());

        std::fs::write(&path, gzip(&pickle(&Value::List(records)))).expect("write");
        let msg = AnnotationSet::load(&path)
            .expect_err("duplicate")
            .to_string();
        assert_eq!(
            msg,
            format!(
                "{}: records 0 and 2 have the same name 'train/a'",
                path.display()
            )
        );
    }
}
