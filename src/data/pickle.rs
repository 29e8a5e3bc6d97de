//! A small, deterministic pickle writer (protocols 2 and 3) and the two files the synthetic
//! dataset needs in the reference's formats:
//!
//! - annotation lists ([`write_annotations`]): gzip → pickle protocol 3 → `list` of `dict`s with
//!   the keys `name, signer, gloss, text, sign, num_frames, alignments`, where `sign` is an empty
//!   float tensor pickled exactly like the reference's files do it
//!   (`torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(<legacy torch.save>), 0,
//!   (0,), (1,), False, collections.OrderedDict())`, see [`legacy_empty_float_storage`]);
//! - gloss vocabularies ([`write_gloss_vocab`]): a plain pickle `dict` str → int, like
//!   `gloss2ids_old.pkl`.
//!
//! The writer emits no memo opcodes (`BINPUT`/`BINGET`), so equal inputs give equal bytes. The
//! gzip header carries no modification time and no file name.
//!
//! Python reads the annotation files with `pickle.load(gzip.open(p))` (torch installed); Rust
//! reads them with serde-pickle and `DeOptions::new().replace_unresolved_globals()`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};

/// Errors while writing pickle files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// Creating or writing the file failed.
    #[error("cannot write pickle file {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

// Opcodes (pickletools names).
const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const EMPTY_LIST: u8 = b']';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const SETITEMS: u8 = b'u';
const EMPTY_TUPLE: u8 = b')';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const TUPLE: u8 = b't';
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BINPERSID: u8 = b'Q';

/// A Python value tree that [`PickleWriter::value`] writes in one call.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// A Python `int`.
    Int(i64),
    /// A Python `float` (IEEE double).
    Float(f64),
    /// A Python `str`.
    Str(String),
    /// A Python `bytes` (needs protocol 3 readers, i.e. Python 3).
    Bytes(Vec<u8>),
    /// A Python `tuple`.
    Tuple(Vec<PickleValue>),
    /// A Python `list`.
    List(Vec<PickleValue>),
    /// A Python `dict`; insertion order is kept.
    Dict(Vec<(PickleValue, PickleValue)>),
}

/// Defines writer methods that push a single opcode.
macro_rules! opcode_methods {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {
        $($(#[$doc])* pub fn $name(&mut self) -> &mut Self {
            self.buf.push($op);
            self
        })*
    };
}

/// Low-level pickle writer: one method per opcode group, building one pickle in memory.
///
/// Stack discipline is the caller's job (as in `pickle.py`): e.g. a dict is
/// `empty_dict(); mark(); <key> <value> …; set_items()`. [`PickleWriter::finish`] appends `STOP`.
#[derive(Debug, Clone)]
pub struct PickleWriter {
    buf: Vec<u8>,
}

impl PickleWriter {
    /// Starts a pickle with the `PROTO` header for `protocol` (2 or 3 are what torch and the
    /// reference's files use).
    pub fn new(protocol: u8) -> Self {
        Self {
            buf: vec![PROTO, protocol],
        }
    }

    opcode_methods! {
        /// Pushes a `MARK`.
        mark => MARK;
        /// Pushes `None`.
        none => NONE;
        /// Pushes an empty `list`.
        empty_list => EMPTY_LIST;
        /// Extends the list below the last `MARK` with the items above it (`APPENDS`).
        appends => APPENDS;
        /// Pushes an empty `dict`.
        empty_dict => EMPTY_DICT;
        /// Sets the key/value pairs above the last `MARK` into the dict below it (`SETITEMS`).
        set_items => SETITEMS;
        /// Pushes an empty tuple.
        empty_tuple => EMPTY_TUPLE;
        /// Packs the top stack item into a 1-tuple (`TUPLE1`).
        tuple1 => TUPLE1;
        /// Packs the top two stack items into a 2-tuple (`TUPLE2`).
        tuple2 => TUPLE2;
        /// Packs the top three stack items into a 3-tuple (`TUPLE3`).
        tuple3 => TUPLE3;
        /// Packs everything above the last `MARK` into a tuple (`TUPLE`).
        tuple_from_mark => TUPLE;
        /// Calls the callable below the top tuple with it as arguments (`REDUCE`).
        reduce => REDUCE;
        /// Replaces the top of the stack with the object of that persistent id (`BINPERSID`).
        binpersid => BINPERSID;
    }

    /// Pushes `True`/`False`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(if v { NEWTRUE } else { NEWFALSE });
        self
    }

    /// Pushes an `int` with the shortest encoding `pickle.py` would pick.
    pub fn int(&mut self, v: i64) -> &mut Self {
        if (0..=0xff).contains(&v) {
            self.buf.extend_from_slice(&[BININT1, v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.buf.push(BININT2);
            self.buf.extend_from_slice(&(v as u16).to_le_bytes());
        } else if let Ok(v32) = i32::try_from(v) {
            self.buf.push(BININT);
            self.buf.extend_from_slice(&v32.to_le_bytes());
        } else {
            let bytes = long_bytes(v);
            self.buf.extend_from_slice(&[LONG1, bytes.len() as u8]);
            self.buf.extend_from_slice(&bytes);
        }
        self
    }

    /// Pushes a `float` (`BINFLOAT`, big-endian double).
    pub fn float(&mut self, v: f64) -> &mut Self {
        self.buf.push(BINFLOAT);
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Pushes a `str` (`BINUNICODE`, UTF-8).
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.buf.push(BINUNICODE);
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// Pushes a `bytes` object (`SHORT_BINBYTES`/`BINBYTES`, protocol 3).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if b.len() < 256 {
            self.buf.extend_from_slice(&[SHORT_BINBYTES, b.len() as u8]);
        } else {
            self.buf.push(BINBYTES);
            self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(b);
        self
    }

    /// Pushes the global `module.name` (`GLOBAL`, text form as protocols 2 and 3 use).
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.buf.push(GLOBAL);
        self.buf.extend_from_slice(module.as_bytes());
        self.buf.push(b'\n');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b'\n');
        self
    }

    /// Writes a whole value tree.
    pub fn value(&mut self, v: &PickleValue) -> &mut Self {
        match v {
            PickleValue::None => self.none(),
            PickleValue::Bool(b) => self.bool(*b),
            PickleValue::Int(i) => self.int(*i),
            PickleValue::Float(f) => self.float(*f),
            PickleValue::Str(s) => self.str(s),
            PickleValue::Bytes(b) => self.bytes(b),
            PickleValue::Tuple(items) => {
                if items.is_empty() {
                    return self.empty_tuple();
                }
                let short = items.len() <= 3;
                if !short {
                    self.mark();
                }
                for item in items {
                    self.value(item);
                }
                match items.len() {
                    1 => self.tuple1(),
                    2 => self.tuple2(),
                    3 => self.tuple3(),
                    _ => self.tuple_from_mark(),
                }
            }
            PickleValue::List(items) => {
                self.empty_list();
                if !items.is_empty() {
                    self.mark();
                    for item in items {
                        self.value(item);
                    }
                    self.appends();
                }
                self
            }
            PickleValue::Dict(items) => {
                self.empty_dict();
                if !items.is_empty() {
                    self.mark();
                    for (k, v) in items {
                        self.value(k);
                        self.value(v);
                    }
                    self.set_items();
                }
                self
            }
        }
    }

    /// Pushes an empty float32 CPU tensor of shape `(0,)`, pickled like the reference's `sign`
    /// placeholders (see the module docs).
    pub fn empty_float_tensor(&mut self) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.mark();
        // storage = torch.storage._load_from_bytes(b"...")
        self.global("torch.storage", "_load_from_bytes");
        self.bytes(&legacy_empty_float_storage("0"));
        self.tuple1().reduce();
        // storage_offset, size, stride, requires_grad, backward_hooks
        self.int(0);
        self.int(0).tuple1();
        self.int(1).tuple1();
        self.bool(false);
        self.global("collections", "OrderedDict");
        self.empty_tuple().reduce();
        self.tuple_from_mark().reduce()
    }

    /// Appends `STOP` and returns the pickle bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(STOP);
        self.buf
    }
}

/// Minimal two's-complement little-endian bytes of `v` (the `LONG1` payload).
fn long_bytes(v: i64) -> Vec<u8> {
    let mut bytes = v.to_le_bytes().to_vec();
    while bytes.len() > 1 {
        let last = bytes[bytes.len() - 1];
        let prev_sign = bytes[bytes.len() - 2] & 0x80;
        if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
            bytes.pop();
        } else {
            break;
        }
    }
    bytes
}

/// The magic number at the start of the legacy (non-zip) `torch.save` format.
const TORCH_LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;
/// The legacy `torch.save` protocol version.
const TORCH_LEGACY_PROTOCOL: i64 = 1001;

/// The bytes `torch.save(torch.FloatStorage(), f, _use_new_zipfile_serialization=False)` writes
/// (up to the storage key and memo opcodes): five protocol-2 pickles — magic number, protocol
/// version, system info, the storage as a persistent id
/// `('storage', torch.FloatStorage, key, 'cpu', 0, None)`, the list of storage keys — followed
/// by the storage's element count as little-endian `i64` (0) and no data.
pub fn legacy_empty_float_storage(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);

    let mut p = PickleWriter::new(2);
    let magic = TORCH_LEGACY_MAGIC.to_le_bytes();
    p.buf.extend_from_slice(&[LONG1, 10]);
    p.buf.extend_from_slice(&magic[..10]);
    out.extend(p.finish());

    let mut p = PickleWriter::new(2);
    p.int(TORCH_LEGACY_PROTOCOL);
    out.extend(p.finish());

    let mut p = PickleWriter::new(2);
    let type_sizes = PickleValue::Dict(vec![
        (PickleValue::Str("short".into()), PickleValue::Int(2)),
        (PickleValue::Str("int".into()), PickleValue::Int(4)),
        (PickleValue::Str("long".into()), PickleValue::Int(4)),
    ]);
    p.value(&PickleValue::Dict(vec![
        (
            PickleValue::Str("protocol_version".into()),
            PickleValue::Int(TORCH_LEGACY_PROTOCOL),
        ),
        (
            PickleValue::Str("little_endian".into()),
            PickleValue::Bool(true),
        ),
        (PickleValue::Str("type_sizes".into()), type_sizes),
    ]));
    out.extend(p.finish());

    let mut p = PickleWriter::new(2);
    p.mark()
        .str("storage")
        .global("torch", "FloatStorage")
        .str(key)
        .str("cpu")
        .int(0)
        .none()
        .tuple_from_mark()
        .binpersid();
    out.extend(p.finish());

    let mut p = PickleWriter::new(2);
    p.value(&PickleValue::List(vec![PickleValue::Str(key.into())]));
    out.extend(p.finish());

    out.extend_from_slice(&0i64.to_le_bytes());
    out
}

/// One annotation record as the reference's Phoenix-2014T files hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRecordOut {
    /// Video name, e.g. `train/synth-000001` (also the folder inside the video zip).
    pub name: String,
    /// Signer, e.g. `Signer01`.
    pub signer: String,
    /// Space-separated glosses, upper-case.
    pub gloss: String,
    /// Lower-case tokenised sentence ending in `" ."`.
    pub text: String,
    /// Number of frames of the video.
    pub num_frames: u32,
    /// Frame-level strings (`alignments` dict); may be empty. Insertion order is kept.
    pub alignments: Vec<(String, String)>,
}

/// Pickles `records` (protocol 3) in the reference's record format.
pub fn annotations_to_pickle(records: &[SignRecordOut]) -> Vec<u8> {
    let mut p = PickleWriter::new(3);
    p.empty_list();
    if !records.is_empty() {
        p.mark();
        for r in records {
            p.empty_dict().mark();
            p.str("name").str(&r.name);
            p.str("signer").str(&r.signer);
            p.str("gloss").str(&r.gloss);
            p.str("text").str(&r.text);
            p.str("sign").empty_float_tensor();
            p.str("num_frames").int(i64::from(r.num_frames));
            p.str("alignments").empty_dict();
            if !r.alignments.is_empty() {
                p.mark();
                for (k, v) in &r.alignments {
                    p.str(k).str(v);
                }
                p.set_items();
            }
            p.set_items();
        }
        p.appends();
    }
    p.finish()
}

/// Writes `records` to `path` as the reference's annotation files are stored: gzip (when
/// `compress`; header without time or name) of a protocol-3 pickle of a list of dicts.
pub fn write_annotations(
    path: &Path,
    records: &[SignRecordOut],
    compress: bool,
) -> Result<(), PickleError> {
    let bytes = annotations_to_pickle(records);
    write_file(path, &bytes, compress)
}

/// Pickles a gloss vocabulary as a plain `dict` str → int, insertion order kept.
pub fn gloss_vocab_to_pickle(entries: &[(String, i64)]) -> Vec<u8> {
    let mut p = PickleWriter::new(3);
    p.empty_dict();
    if !entries.is_empty() {
        p.mark();
        for (gloss, id) in entries {
            p.str(gloss).int(*id);
        }
        p.set_items();
    }
    p.finish()
}

/// Writes a gloss vocabulary like `gloss2ids_old.pkl` (uncompressed pickle `dict` str → int).
pub fn write_gloss_vocab(path: &Path, entries: &[(String, i64)]) -> Result<(), PickleError> {
    write_file(path, &gloss_vocab_to_pickle(entries), false)
}

fn write_file(path: &Path, bytes: &[u8], compress: bool) -> Result<(), PickleError> {
    let io_err = |source| PickleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io_err)?;
    let mut w = BufWriter::new(file);
    if compress {
        // No mtime, no file name, OS "unknown": the bytes depend on the content only.
        let mut gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(w, Compression::default());
        gz.write_all(bytes).map_err(io_err)?;
        w = gz.finish().map_err(io_err)?;
    } else {
        w.write_all(bytes).map_err(io_err)?;
    }
    let file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Debug, Deserialize)]
    struct Entry {
        name: String,
        signer: String,
        gloss: String,
        text: String,
        num_frames: i64,
        alignments: HashMap<String, String>,
        #[allow(dead_code)]
        sign: serde::de::IgnoredAny,
    }

    fn sample() -> Vec<SignRecordOut> {
        vec![
            SignRecordOut {
                name: "train/synth-000001".into(),
                signer: "Signer01".into(),
                gloss: "MORGEN REGEN NORD".into(),
                text: "morgen regnet es im norden .".into(),
                num_frames: 42,
                alignments: vec![("gloss".into(), "0 0 4 4 5".into())],
            },
            SignRecordOut {
                name: "train/synth-000002".into(),
                signer: "Signer02".into(),
                gloss: "SÜD".into(),
                text: "im süden .".into(),
                num_frames: 300,
                alignments: vec![],
            },
        ]
    }

    #[test]
    fn ints_use_shortest_encoding() {
        let enc = |v: i64| {
            let mut p = PickleWriter::new(3);
            p.int(v);
            p.finish()[2..].to_vec()
        };
        assert_eq!(enc(42), vec![BININT1, 42, STOP]);
        assert_eq!(enc(1001), vec![BININT2, 0xe9, 0x03, STOP]);
        assert_eq!(enc(-1), vec![BININT, 0xff, 0xff, 0xff, 0xff, STOP]);
        assert_eq!(enc(1 << 40), vec![LONG1, 6, 0, 0, 0, 0, 0, 1, STOP]);
        assert_eq!(long_bytes(-(1 << 40)), vec![0, 0, 0, 0, 0, 0xff]);
        assert_eq!(long_bytes(0x80_0000_0000), vec![0, 0, 0, 0, 0x80, 0]);
    }

    #[test]
    fn value_tree_round_trips_through_serde_pickle() {
        let v = PickleValue::Dict(vec![
            (PickleValue::Str("a".into()), PickleValue::Float(1.5)),
            (
                PickleValue::Str("b".into()),
                PickleValue::List(vec![
                    PickleValue::Int(-7),
                    PickleValue::Int(1 << 40),
                    PickleValue::None,
                    PickleValue::Bool(true),
                    PickleValue::Bytes(vec![1; 300]),
                    PickleValue::Tuple(vec![PickleValue::Int(1); 5]),
                    PickleValue::Tuple(vec![PickleValue::Int(2); 2]),
                    PickleValue::Tuple(vec![]),
                ]),
            ),
        ]);
        let mut p = PickleWriter::new(3);
        p.value(&v);
        let bytes = p.finish();
        let back: serde_pickle::Value =
            serde_pickle::value_from_slice(&bytes, serde_pickle::DeOptions::new()).unwrap();
        let s = format!("{back:?}");
        assert!(s.contains("F64(1.5)"), "{s}");
        assert!(
            s.contains("I64(-7)") && s.contains("I64(1099511627776)"),
            "{s}"
        );
        assert!(s.contains("Bool(true)") && s.contains("None"), "{s}");
    }

    #[test]
    fn annotations_read_back_with_serde_pickle() {
        let bytes = annotations_to_pickle(&sample());
        let opts = serde_pickle::DeOptions::new().replace_unresolved_globals();
        let back: Vec<Entry> = serde_pickle::from_slice(&bytes, opts).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].name, "train/synth-000001");
        assert_eq!(back[0].signer, "Signer01");
        assert_eq!(back[0].gloss, "MORGEN REGEN NORD");
        assert_eq!(back[0].text, "morgen regnet es im norden .");
        assert_eq!(back[0].num_frames, 42);
        assert_eq!(back[0].alignments["gloss"], "0 0 4 4 5");
        assert_eq!(back[1].gloss, "SÜD");
        assert_eq!(back[1].num_frames, 300);
        assert!(back[1].alignments.is_empty());
        // Without replacing the torch globals the reader must refuse, as for the real files.
        assert!(serde_pickle::from_slice::<Vec<Entry>>(&bytes, Default::default()).is_err());
    }

    #[test]
    fn sign_tensor_arguments_match_the_reference_layout() {
        let bytes = annotations_to_pickle(&sample()[..1]);
        let opts = serde_pickle::DeOptions::new()
            .replace_unresolved_globals()
            .keep_restore_state();
        let v = serde_pickle::value_from_slice(&bytes, opts).unwrap();
        let s = format!("{v:?}");
        // (storage, 0, (0,), (1,), False, OrderedDict())
        assert!(
            s.contains("I64(0), Tuple([I64(0)]), Tuple([I64(1)]), Bool(false)"),
            "{s}"
        );
        let storage = format!("Bytes({:?})", legacy_empty_float_storage("0"));
        assert!(s.contains(&storage), "{s}");
    }

    #[test]
    fn legacy_storage_bytes_have_the_torch_save_layout() {
        let b = legacy_empty_float_storage("0");
        // Magic number pickle, as torch writes it.
        assert_eq!(&b[..15], b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.");
        // Protocol version 1001.
        assert_eq!(&b[15..21], b"\x80\x02M\xe9\x03.");
        // Then the sys-info dict, which serde-pickle can read on its own.
        let end = 21 + b[21..].windows(3).position(|w| w == b"uu.").unwrap() + 3;
        let info = serde_pickle::value_from_slice(&b[21..end], Default::default()).unwrap();
        let s = format!("{info:?}");
        assert!(
            s.contains("protocol_version") && s.contains("little_endian"),
            "{s}"
        );
        let rest = &b[end..];
        let needle = b"ctorch\nFloatStorage\n";
        assert!(rest.windows(needle.len()).any(|w| w == needle));
        assert!(rest.contains(&BINPERSID));
        // Element count 0 as i64, no data.
        assert_eq!(&b[b.len() - 8..], &[0u8; 8]);
    }
}
