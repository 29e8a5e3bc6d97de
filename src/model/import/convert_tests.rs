use std::borrow::Cow;
use std::collections::HashMap;

use super::*;
use crate::model::import::legacy::parse_legacy;
use crate::model::import::pickle_vm::unpickle;
use crate::model::import::storage::NoStorages;

/// A hand-assembled pickle (protocol 2).
#[derive(Default, Clone)]
struct P(Vec<u8>);

impl P {
    fn new() -> Self {
        P(vec![0x80, 2])
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn s(self, text: &str) -> Self {
        let len = (text.len() as u32).to_le_bytes();
        self.raw(b"X").raw(&len).raw(text.as_bytes())
    }
    fn int(self, v: i32) -> Self {
        self.raw(b"J").raw(&v.to_le_bytes())
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.raw(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints(mut self, values: &[i32]) -> Self {
        self = self.raw(b"(");
        for &v in values {
            self = self.int(v);
        }
        self.raw(b"t")
    }
    /// `_rebuild_tensor_v2(storage pid, offset, size, stride, False, OrderedDict())`.
    fn tensor(
        self,
        storage: &str,
        key: &str,
        numel: i32,
        offset: i32,
        size: &[i32],
        stride: &[i32],
    ) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .raw(b"((")
            .s("storage")
            .global("torch", storage)
            .s(key)
            .s("cpu")
            .int(numel)
            .raw(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .raw(b"\x89")
            .global("collections", "OrderedDict")
            .raw(b")RtR")
    }
    fn stop(self) -> Vec<u8> {
        self.raw(b".").0
    }
}

struct Storages(HashMap<String, Vec<u8>>);

impl StorageSource for Storages {
    fn storage_bytes(&self, key: &str) -> Result<Cow<'_, [u8]>, String> {
        self.0
            .get(key)
            .map(|b| Cow::Borrowed(&b[..]))
            .ok_or_else(|| "missing from the archive".into())
    }
}

fn f32_storage(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn load(bytes: &[u8], storages: &[(&str, Vec<u8>)]) -> Result<PyValue, ConvertError> {
    let source = Storages(
        storages
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    );
    let pickle = unpickle(bytes, 0).expect("valid pickle");
    convert(&pickle, &source, bytes.len())
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn value_error(result: Result<PyValue, ConvertError>) -> (String, String) {
    match result {
        Err(ConvertError::Value { path, reason }) => (path, reason),
        other => panic!("expected a value error, got {other:?}"),
    }
}

#[test]
fn strided_views_share_a_storage_and_come_out_contiguous() {
    let storage = f32_storage((0..12).map(|v| v as f32));
    let bytes = P::new()
        .raw(b"}(")
        .s("w")
        .tensor("FloatStorage", "0", 12, 1, &[2, 3], &[1, 2])
        .s("all")
        .tensor("FloatStorage", "0", 12, 0, &[12], &[1])
        .s("scalar")
        .tensor("FloatStorage", "0", 12, 11, &[], &[])
        .raw(b"u")
        .stop();
    let value = load(&bytes, &[("0", storage)]).unwrap();
    let w = value.get("w").and_then(PyValue::as_tensor).unwrap();
    assert_eq!(w.tensor.size(), [2, 3]);
    assert!(w.tensor.is_contiguous());
    // w[i][j] = storage[1 + i + 2j]
    assert_eq!(values(&w.tensor), [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    assert_eq!(
        (w.storage_key.as_str(), w.device.as_str(), w.parameter),
        ("0", "cpu", false)
    );
    let all = value.get("all").and_then(PyValue::as_tensor).unwrap();
    assert_eq!(
        values(&all.tensor),
        (0..12).map(f64::from).collect::<Vec<_>>()
    );
    let scalar = value.get("scalar").and_then(PyValue::as_tensor).unwrap();
    assert_eq!(
        (scalar.tensor.dim(), values(&scalar.tensor)),
        (0, vec![11.0])
    );
}

#[test]
fn storage_problems_name_the_key_path_and_storage() {
    let one = |geometry: (i32, &[i32], &[i32]), key: &str, storages: &[(&str, Vec<u8>)]| {
        let bytes = P::new()
            .raw(b"}(")
            .s("state_dict")
            .raw(b"}(")
            .s("conv.weight")
            .tensor("FloatStorage", key, 4, geometry.0, geometry.1, geometry.2)
            .raw(b"uu")
            .stop();
        load(&bytes, storages)
    };
    let four = || vec![("0", f32_storage([1.0, 2.0, 3.0, 4.0]))];
    match one((0, &[4], &[1]), "3", &four()) {
        Err(ConvertError::Storage { path, key, reason }) => {
            assert_eq!(
                (path.as_str(), key.as_str()),
                ("state_dict['conv.weight']", "3")
            );
            assert_eq!(reason, "missing from the archive");
        }
        other => panic!("{other:?}"),
    }
    let (path, reason) = value_error(one((1, &[2, 2], &[2, 1]), "0", &four()));
    assert_eq!(path, "state_dict['conv.weight']");
    assert!(
        reason.contains("reaches past the end of storage '0'"),
        "{reason}"
    );
    let (_, reason) = value_error(one((0, &[2, 2], &[-1, 1]), "0", &four()));
    assert!(reason.contains("invalid tensor geometry"), "{reason}");
    let (_, reason) = value_error(one((0, &[2, 2, 2], &[1, 1]), "0", &four()));
    assert!(reason.contains("invalid tensor geometry"), "{reason}");
    match one((0, &[4], &[1]), "0", &[("0", vec![0; 15])]) {
        Err(ConvertError::Storage { reason, .. }) => {
            assert!(reason.contains("15 bytes, too few"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dtypes_parameters_and_unsupported_storages() {
    let bytes = P::new()
        .raw(b"(")
        .global("torch._utils", "_rebuild_parameter")
        .raw(b"(")
        .tensor("HalfStorage", "h", 2, 0, &[2], &[1])
        .raw(b"\x88")
        .global("collections", "OrderedDict")
        .raw(b")RtR")
        .tensor("BoolStorage", "b", 3, 0, &[3], &[1])
        .tensor("LongStorage", "l", 1, 0, &[], &[])
        .raw(b"l")
        .stop();
    let half = [1.5f32, -2.0]
        .iter()
        .flat_map(|&v| half_bits(v).to_le_bytes())
        .collect();
    let storages = [
        ("h", half),
        ("b", vec![1, 0, 1]),
        ("l", (-7i64).to_le_bytes().to_vec()),
    ];
    let value = load(&bytes, &storages).unwrap();
    let items = value.as_sequence().unwrap();
    let param = items[0].as_tensor().unwrap();
    assert!(param.parameter && param.requires_grad);
    assert_eq!(
        (param.tensor.kind(), values(&param.tensor)),
        (Kind::Half, vec![1.5, -2.0])
    );
    let flags = items[1].as_tensor().unwrap();
    assert_eq!(
        (flags.tensor.kind(), values(&flags.tensor)),
        (Kind::Bool, vec![1.0, 0.0, 1.0])
    );
    let long = items[2].as_tensor().unwrap();
    assert_eq!(i64::try_from(&long.tensor).unwrap(), -7);

    let bool_bytes = P::new().tensor("BoolStorage", "b", 1, 0, &[1], &[1]).stop();
    assert!(matches!(
        load(&bool_bytes, &[("b", vec![2])]),
        Err(ConvertError::Storage { .. })
    ));
    let complex = P::new()
        .tensor("ComplexFloatStorage", "c", 1, 0, &[1], &[1])
        .stop();
    match load(&complex, &[("c", vec![0; 8])]) {
        Err(ConvertError::Storage { reason, .. }) => {
            assert!(
                reason.contains("unsupported type torch.ComplexFloatStorage"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let qtensor = P::new()
        .global("torch._utils", "_rebuild_qtensor")
        .raw(b")R")
        .stop();
    let (_, reason) = value_error(load(&qtensor, &[]));
    assert!(
        reason.contains("unsupported tensor kind torch._utils._rebuild_qtensor"),
        "{reason}"
    );
}

fn half_bits(v: f32) -> u16 {
    // Exact for the small test values used here (normal numbers with few mantissa bits).
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = (((bits >> 23) & 0xff) as i32 - 127 + 15) as u16;
    let mantissa = ((bits >> 13) & 0x3ff) as u16;
    sign | (exp << 10) | mantissa
}

#[test]
fn standard_library_and_numpy_globals() {
    let bytes = P::new()
        .global("collections", "OrderedDict")
        .raw(b")R(")
        .s("a")
        .int(1)
        .s("b")
        .int(2)
        .s("a")
        .int(3)
        .raw(b"u}")
        .s("_metadata")
        .int(0)
        .raw(b"sb")
        .stop();
    let value = load(&bytes, &[]).unwrap();
    let entries = value.as_dict().unwrap();
    let flat: Vec<_> = entries
        .iter()
        .map(|(k, v)| (k.as_str().unwrap(), v.as_int().unwrap()))
        .collect();
    assert_eq!(
        flat,
        [("a", 3), ("b", 2)],
        "first position, last value; BUILD state dropped"
    );

    let scalar = |code: &str, order: &str, data: &[u8]| {
        let mut p = P::new()
            .global("numpy._core.multiarray", "scalar")
            .global("numpy", "dtype")
            .s(code)
            .raw(b"\x89\x88\x87R(")
            .int(3)
            .s(order)
            .raw(b"NNN")
            .int(-1)
            .int(-1)
            .int(0)
            .raw(b"tbC");
        p.0.push(data.len() as u8);
        load(&p.raw(data).raw(b"\x86R").stop(), &[]).unwrap()
    };
    assert_eq!(
        scalar("f8", "<", &0.25f64.to_le_bytes()).as_float(),
        Some(0.25)
    );
    assert_eq!(
        scalar("f4", "<", &1.5f32.to_le_bytes()).as_float(),
        Some(1.5)
    );
    assert_eq!(scalar("i8", "<", &(-5i64).to_le_bytes()).as_int(), Some(-5));
    assert_eq!(scalar("i4", ">", &(-5i32).to_be_bytes()).as_int(), Some(-5));
    assert_eq!(scalar("b1", "|", &[1]).as_bool(), Some(true));
    assert!(
        scalar("c16", "<", &[0; 16]).as_opaque().is_some(),
        "complex stays opaque"
    );

    let bytes = P::new()
        .raw(b"(")
        .global("_codecs", "encode")
        .s("\u{ff}A")
        .s("latin1")
        .raw(b"\x86R")
        .global("torch", "Size")
        .ints(&[2, 3])
        .raw(b"\x85R")
        .global("torch", "device")
        .s("cuda")
        .int(0)
        .raw(b"\x86Rl")
        .stop();
    let value = load(&bytes, &[]).unwrap();
    let items = value.as_sequence().unwrap();
    assert!(matches!(&items[0], PyValue::Bytes(b) if b == &[0xff, b'A']));
    assert!(matches!(&items[1], PyValue::Tuple(t) if t.len() == 2 && t[1].as_int() == Some(3)));
    let device = items[2].as_opaque().unwrap();
    assert_eq!(device.qualified_name(), "torch.device");
    assert_eq!(device.args.as_ref().unwrap()[0].as_str(), Some("cuda"));
}

#[test]
fn cycles_and_exponential_sharing_are_rejected() {
    // l = []; l.append(l)
    let (_, reason) = value_error(load(&P::new().raw(b"]q\x00h\x00a").stop(), &[]));
    assert!(reason.contains("nested more than"), "{reason}");
    // x = (); 60 times: x = (x, x)  → 2^60 leaves through shared references.
    let mut p = P::new().raw(b")");
    for _ in 0..60 {
        p = p.raw(b"q\x00h\x00\x86");
    }
    let (_, reason) = value_error(load(&p.stop(), &[]));
    assert!(reason.contains("too many values"), "{reason}");
}

/// A legacy `torch.save` file around `main`, with the given storages' raw bytes.
fn legacy_file(main: Vec<u8>, storages: &[(&str, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = P::new().raw(b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19").stop();
    out.extend(P::new().raw(b"M\xe9\x03").stop());
    out.extend(P::new().raw(b"}").s("little_endian").raw(b"\x88s").stop());
    out.extend(main);
    let mut keys = P::new().raw(b"(");
    for (key, _, _) in storages {
        keys = keys.s(key);
    }
    out.extend(keys.raw(b"l").stop());
    for (_, count, data) in storages {
        out.extend(count.to_le_bytes());
        out.extend(data);
    }
    out
}

#[test]
fn legacy_layout_and_embedded_storages() {
    let main = P::new()
        .raw(b"((")
        .s("storage")
        .global("torch", "FloatStorage")
        .s("140")
        .s("cuda:0")
        .int(3)
        .raw(b"Nt")
        .raw(b"Q.")
        .0;
    let storage_bytes = f32_storage([1.0, 2.0, 3.0]);
    let file = legacy_file(main.clone(), &[("140", 3, storage_bytes.clone())]);
    let parsed = parse_legacy(&file).unwrap();
    let value = convert(&parsed.main, &parsed, file.len()).unwrap();
    let t = value.as_tensor().unwrap();
    assert_eq!(
        (values(&t.tensor), t.device.as_str()),
        (vec![1.0, 2.0, 3.0], "cuda:0")
    );

    // The same file embedded the way pickle.dumps(tensor) embeds storages.
    let mut embedded = P::new()
        .global("torch._utils", "_rebuild_tensor_v2")
        .raw(b"(");
    embedded = embedded
        .global("torch.storage", "_load_from_bytes")
        .raw(b"B");
    embedded.0.extend((file.len() as u32).to_le_bytes());
    embedded = embedded
        .raw(&file)
        .raw(b"\x85R")
        .int(1)
        .ints(&[2])
        .ints(&[1])
        .raw(b"\x89")
        .raw(b")tR");
    let pickle = unpickle(
        &embedded.0.iter().copied().chain(*b".").collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    let value = convert(&pickle, &NoStorages, 1000).unwrap();
    assert_eq!(values(&value.as_tensor().unwrap().tensor), [2.0, 3.0]);

    let error = |file: Vec<u8>| {
        parse_legacy(&file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(error(legacy_file(
        main.clone(),
        &[("140", 4, storage_bytes.clone())]
    ))
    .contains("4 elements, the pickle says 3"));
    assert!(error(legacy_file(main.clone(), &[("140", 3, vec![0; 11])])).contains("truncated"));
    assert!(error(legacy_file(
        main.clone(),
        &[("9", 3, storage_bytes.clone())]
    ))
    .contains("no persistent id"));
    assert!(error(P::new().int(5).stop()).contains("magic number"));
    let full = legacy_file(main, &[("140", 3, storage_bytes)]);
    for cut in 0..full.len() {
        assert!(
            parse_legacy(&full[..cut]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
}
