//! From an unpickled object graph to a [`PyValue`] tree: the globals torch, numpy and the
//! standard library use are interpreted by name (tensor and parameter rebuilds, storages,
//! `OrderedDict`, `torch.Size`, `_codecs.encode`, numpy scalars); every other call stays an
//! [`OpaqueValue`]. Storages are read through a [`StorageSource`] and tensors are built with
//! `as_strided` + `contiguous` on a fresh copy of the storage's bytes.

use std::collections::HashMap;
use std::fmt::Write;

use tch::{Kind, Tensor};

use super::pickle_graph::{Call, Id, Obj, Pickle};
use super::storage::{strided, StorageSource, StorageView};
use super::value::{OpaqueValue, PyValue, TensorRef};

/// Containers nested deeper than this are rejected (this also stops reference cycles).
const MAX_DEPTH: usize = 256;
/// `torch.storage._load_from_bytes` payloads nested deeper than this are rejected.
pub(super) const MAX_NESTED_FILES: usize = 4;
/// A problem found while building the value tree, with the key path where it occurred.
#[derive(Debug)]
pub(crate) enum ConvertError {
    /// A storage could not be read or does not match what the pickle says about it.
    Storage {
        path: String,
        key: String,
        reason: String,
    },
    /// A value is not what its context requires.
    Value { path: String, reason: String },
}

/// Builds the value tree of `pickle`, reading storages from `source`. `input_len` (the size of
/// the pickle's bytes) bounds how far shared references may expand.
pub(crate) fn convert(
    pickle: &Pickle,
    source: &dyn StorageSource,
    input_len: usize,
) -> Result<PyValue, ConvertError> {
    Converter::new(&pickle.arena, source, input_len, 0).value(pickle.root, 0)
}

enum Seg {
    Key(Id),
    Index(usize),
    Attr(&'static str),
}

pub(super) struct Converter<'a> {
    pub(super) arena: &'a [Obj],
    pub(super) source: &'a dyn StorageSource,
    pub(super) storages: HashMap<(String, Kind), Tensor>,
    tensors: HashMap<Id, TensorRef>,
    pub(super) nested: HashMap<Id, StorageView>,
    budget: usize,
    pub(super) nesting: usize,
    path: Vec<Seg>,
}

impl<'a> Converter<'a> {
    pub(super) fn new(
        arena: &'a [Obj],
        source: &'a dyn StorageSource,
        input_len: usize,
        nesting: usize,
    ) -> Self {
        Self {
            arena,
            source,
            storages: HashMap::new(),
            tensors: HashMap::new(),
            nested: HashMap::new(),
            budget: arena
                .len()
                .saturating_add(input_len)
                .saturating_add(1 << 20),
            nesting,
            path: Vec::new(),
        }
    }

    pub(super) fn value(&mut self, id: Id, depth: usize) -> Result<PyValue, ConvertError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!(
                "nested more than {MAX_DEPTH} levels deep (or recursive)"
            )));
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| self.err("shared references expand to too many values".to_string()))?;
        let arena = self.arena;
        Ok(match &arena[id] {
            Obj::None => PyValue::None,
            Obj::Bool(b) => PyValue::Bool(*b),
            Obj::Int(v) => PyValue::Int(*v),
            Obj::Float(v) => PyValue::Float(*v),
            Obj::Str(s) => PyValue::Str(s.clone()),
            Obj::Bytes(b) => PyValue::Bytes(b.clone()),
            Obj::BigInt(b) => opaque("builtins", "int", Some(vec![PyValue::Bytes(b.clone())])),
            Obj::List(items) => PyValue::List(self.seq(items, depth)?),
            Obj::Tuple(items) => PyValue::Tuple(self.seq(items, depth)?),
            Obj::Set(items) => opaque(
                "builtins",
                "set",
                Some(vec![PyValue::List(self.seq(items, depth)?)]),
            ),
            Obj::Dict(pairs) => PyValue::Dict(self.dict(pairs, depth)?),
            Obj::Global(module, name) => opaque(module, name, None),
            Obj::Persistent(pid) => match &arena[*pid] {
                // Legacy files name the classes of saved nn.Modules ('module', cls, file, source).
                Obj::Tuple(t) if t.len() >= 2 && arena[t[0]] == Obj::Str("module".into()) => {
                    self.value(t[1], depth + 1)?
                }
                _ => PyValue::Tensor(self.storage_tensor(id, depth)?),
            },
            Obj::Call(call) => self.call(id, call, depth)?,
        })
    }

    fn seq(&mut self, items: &[Id], depth: usize) -> Result<Vec<PyValue>, ConvertError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, &item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            out.push(self.value(item, depth + 1)?);
            self.path.pop();
        }
        Ok(out)
    }

    /// Dict entries in insertion order; a repeated key keeps its first position and its last
    /// value, as in Python.
    fn dict(
        &mut self,
        pairs: &[(Id, Id)],
        depth: usize,
    ) -> Result<Vec<(PyValue, PyValue)>, ConvertError> {
        let mut out: Vec<(PyValue, PyValue)> = Vec::with_capacity(pairs.len());
        let mut seen: HashMap<HashKey, usize> = HashMap::new();
        for &(k, v) in pairs {
            self.path.push(Seg::Key(k));
            let key = self.value(k, depth + 1)?;
            let value = self.value(v, depth + 1)?;
            self.path.pop();
            let hashed = hash_key(&key);
            if let Some(&i) = hashed.as_ref().and_then(|h| seen.get(h)) {
                out[i].1 = value;
                continue;
            }
            if let Some(h) = hashed {
                seen.insert(h, out.len());
            }
            out.push((key, value));
        }
        Ok(out)
    }

    fn call(&mut self, id: Id, call: &Call, depth: usize) -> Result<PyValue, ConvertError> {
        let (module, name) = (call.module.as_str(), call.name.as_str());
        let builtin = module == "builtins" || module == "__builtin__";
        match (module, name) {
            ("collections", "OrderedDict" | "defaultdict") | (_, "dict")
                if builtin || module == "collections" =>
            {
                let mut pairs = Vec::new();
                if name != "defaultdict" {
                    if let Some(&first) = call.args.first() {
                        pairs = self.pairs_of(first)?;
                    }
                }
                pairs.extend_from_slice(&call.entries);
                // The BUILD state of an OrderedDict (e.g. a state dict's `_metadata`) is dropped.
                Ok(PyValue::Dict(self.dict(&pairs, depth)?))
            }
            ("torch._utils", _) | ("torch._tensor", "_rebuild_from_type_v2")
                if is_tensor_rebuild(name) =>
            {
                Ok(PyValue::Tensor(self.tensor(id, call, depth)?))
            }
            ("torch.storage", "_load_from_bytes") => {
                Ok(PyValue::Tensor(self.storage_tensor(id, depth)?))
            }
            ("torch", "Size") => match self.args(call, depth)?.into_iter().next() {
                Some(PyValue::Tuple(items) | PyValue::List(items)) => Ok(PyValue::Tuple(items)),
                None => Ok(PyValue::Tuple(Vec::new())),
                Some(other) => Err(self.err(format!("torch.Size of {}", other.type_name()))),
            },
            ("_codecs", "encode") => match self.args(call, depth)?.as_slice() {
                [PyValue::Str(s), PyValue::Str(encoding)] => encode(s, encoding)
                    .map(PyValue::Bytes)
                    .ok_or_else(|| self.err(format!("_codecs.encode with encoding '{encoding}'"))),
                _ => Err(self.err("malformed _codecs.encode call".into())),
            },
            (_, "bytes" | "bytearray") if builtin => match self.args(call, depth)?.as_slice() {
                [] => Ok(PyValue::Bytes(Vec::new())),
                [PyValue::Bytes(b)] => Ok(PyValue::Bytes(b.clone())),
                [PyValue::Str(s), PyValue::Str(encoding)] => encode(s, encoding)
                    .map(PyValue::Bytes)
                    .ok_or_else(|| self.err(format!("{name}() with encoding '{encoding}'"))),
                _ => Ok(self.opaque_call(call, depth)?),
            },
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => {
                let value = self.opaque_call(call, depth)?;
                let decoded = value
                    .as_opaque()
                    .and_then(|o| o.args.as_deref())
                    .and_then(numpy_scalar);
                Ok(decoded.unwrap_or(value))
            }
            _ if module.starts_with("torch") && name.starts_with("_rebuild") => {
                Err(self.err(format!("unsupported tensor kind {module}.{name}")))
            }
            _ => self.opaque_call(call, depth),
        }
    }

    fn opaque_call(&mut self, call: &Call, depth: usize) -> Result<PyValue, ConvertError> {
        self.path.push(Seg::Attr("args"));
        let args = self.seq(&call.args, depth)?;
        self.path.pop();
        let state = match call.state {
            Some(state) => {
                self.path.push(Seg::Attr("state"));
                let value = self.value(state, depth + 1)?;
                self.path.pop();
                Some(value)
            }
            None => None,
        };
        self.path.push(Seg::Attr("items"));
        let items = self.seq(&call.items, depth)?;
        self.path.pop();
        let entries = self.dict(&call.entries, depth)?;
        Ok(PyValue::Opaque(Box::new(OpaqueValue {
            module: call.module.clone(),
            name: call.name.clone(),
            args: Some(args),
            state,
            items,
            entries,
        })))
    }

    fn args(&mut self, call: &Call, depth: usize) -> Result<Vec<PyValue>, ConvertError> {
        call.args
            .iter()
            .map(|&a| self.value(a, depth + 1))
            .collect()
    }

    /// The `(key, value)` pairs of `dict(x)` / `OrderedDict(x)` for a dict or a sequence of pairs.
    fn pairs_of(&self, id: Id) -> Result<Vec<(Id, Id)>, ConvertError> {
        match &self.arena[id] {
            Obj::Dict(pairs) => Ok(pairs.clone()),
            Obj::List(items) | Obj::Tuple(items) => items
                .iter()
                .map(|&item| match &self.arena[item] {
                    Obj::Tuple(kv) | Obj::List(kv) if kv.len() == 2 => Ok((kv[0], kv[1])),
                    _ => Err(self.err("dict built from something that is not a pair".into())),
                })
                .collect(),
            _ => Err(self.err("dict built from something that is not a mapping".into())),
        }
    }

    fn tensor(&mut self, id: Id, call: &Call, depth: usize) -> Result<TensorRef, ConvertError> {
        if let Some(done) = self.tensors.get(&id) {
            return Ok(done.clone());
        }
        let tensor = self.rebuild(&call.module, &call.name, &call.args, depth)?;
        self.tensors.insert(id, tensor.clone());
        Ok(tensor)
    }

    fn rebuild(
        &mut self,
        module: &str,
        name: &str,
        args: &[Id],
        depth: usize,
    ) -> Result<TensorRef, ConvertError> {
        let need = |n: usize| {
            if args.len() < n {
                Err(self.err(format!(
                    "{module}.{name} with {} arguments, expected {n}",
                    args.len()
                )))
            } else {
                Ok(())
            }
        };
        match name {
            "_rebuild_tensor" | "_rebuild_tensor_v2" => {
                need(4)?;
                let storage = self.storage(args[0], depth)?;
                let offset = self.int(args[1], "storage offset", depth)?;
                let size = self.ints(args[2], "size", depth)?;
                let stride = self.ints(args[3], "stride", depth)?;
                let requires_grad = match args.get(4) {
                    Some(&flag) if name == "_rebuild_tensor_v2" => {
                        self.value(flag, depth + 1)?.as_bool().unwrap_or(false)
                    }
                    _ => false,
                };
                let tensor =
                    strided(&storage, offset, &size, &stride).map_err(|reason| self.err(reason))?;
                Ok(TensorRef {
                    tensor,
                    requires_grad,
                    parameter: false,
                    storage_key: storage.key,
                    device: storage.device,
                })
            }
            "_rebuild_parameter" | "_rebuild_parameter_with_state" => {
                need(2)?;
                let data = match self.value(args[0], depth + 1)? {
                    PyValue::Tensor(t) => t,
                    other => {
                        return Err(self.err(format!(
                            "parameter data is {}, not a tensor",
                            other.type_name()
                        )))
                    }
                };
                let requires_grad = self.value(args[1], depth + 1)?.as_bool().unwrap_or(true);
                Ok(TensorRef {
                    requires_grad,
                    parameter: true,
                    ..data
                })
            }
            "_rebuild_from_type_v2" => {
                need(3)?;
                let arena = self.arena;
                let (Obj::Global(m, n), Obj::Tuple(inner)) = (&arena[args[0]], &arena[args[2]])
                else {
                    return Err(
                        self.err("malformed torch._tensor._rebuild_from_type_v2 call".into())
                    );
                };
                if !is_tensor_rebuild(n) || n == "_rebuild_from_type_v2" {
                    return Err(self.err(format!("unsupported tensor kind {m}.{n}")));
                }
                self.rebuild(m, n, inner, depth + 1)
            }
            _ => Err(self.err(format!("unsupported tensor kind {module}.{name}"))),
        }
    }

    fn int(&mut self, id: Id, what: &str, depth: usize) -> Result<i64, ConvertError> {
        match self.value(id, depth + 1)? {
            PyValue::Int(v) => Ok(v),
            other => Err(self.err(format!(
                "tensor {what} is {}, not an int",
                other.type_name()
            ))),
        }
    }

    fn ints(&mut self, id: Id, what: &str, depth: usize) -> Result<Vec<i64>, ConvertError> {
        let value = self.value(id, depth + 1)?;
        let ints = value
            .as_sequence()
            .and_then(|s| s.iter().map(PyValue::as_int).collect::<Option<Vec<_>>>());
        ints.ok_or_else(|| {
            self.err(format!(
                "tensor {what} is {}, not a tuple of ints",
                value.type_name()
            ))
        })
    }

    pub(super) fn err(&self, reason: String) -> ConvertError {
        ConvertError::Value {
            path: self.path_string(),
            reason,
        }
    }

    pub(super) fn storage_err(&self, key: &str, reason: String) -> ConvertError {
        ConvertError::Storage {
            path: self.path_string(),
            key: key.to_string(),
            reason,
        }
    }

    /// `state_dict['conv.weight']`, `optimizer_state['state'][0]['exp_avg']`, `<root>`.
    fn path_string(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => match &self.arena[*k] {
                    Obj::Str(name) if s.is_empty() => s.push_str(name),
                    Obj::Str(name) => {
                        let _ = write!(s, "['{name}']");
                    }
                    Obj::Int(v) => {
                        let _ = write!(s, "[{v}]");
                    }
                    other => {
                        let _ = write!(s, "[<{}>]", obj_name(other));
                    }
                },
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
                Seg::Attr(a) if s.is_empty() => s.push_str(a),
                Seg::Attr(a) => {
                    let _ = write!(s, ".{a}");
                }
            }
        }
        if s.is_empty() {
            s.push_str("<root>");
        }
        s
    }
}

fn is_tensor_rebuild(name: &str) -> bool {
    matches!(
        name,
        "_rebuild_tensor"
            | "_rebuild_tensor_v2"
            | "_rebuild_parameter"
            | "_rebuild_parameter_with_state"
            | "_rebuild_from_type_v2"
    )
}

fn opaque(module: &str, name: &str, args: Option<Vec<PyValue>>) -> PyValue {
    PyValue::Opaque(Box::new(OpaqueValue {
        module: module.to_string(),
        name: name.to_string(),
        args,
        state: None,
        items: Vec::new(),
        entries: Vec::new(),
    }))
}

pub(super) fn obj_name(obj: &Obj) -> String {
    match obj {
        Obj::None => "None".into(),
        Obj::Bool(_) => "bool".into(),
        Obj::Int(_) | Obj::BigInt(_) => "int".into(),
        Obj::Float(_) => "float".into(),
        Obj::Str(_) => "str".into(),
        Obj::Bytes(_) => "bytes".into(),
        Obj::List(_) => "list".into(),
        Obj::Tuple(_) => "tuple".into(),
        Obj::Dict(_) => "dict".into(),
        Obj::Set(_) => "set".into(),
        Obj::Global(m, n) => format!("global {m}.{n}"),
        Obj::Call(c) => format!("{}.{}(…)", c.module, c.name),
        Obj::Persistent(_) => "persistent id".into(),
    }
}

/// `str.encode(encoding)` for the encodings pickle uses for `bytes` in protocol 2.
fn encode(s: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding {
        "latin1" | "latin-1" | "iso-8859-1" => {
            s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
        }
        "utf-8" | "utf8" => Some(s.as_bytes().to_vec()),
        "ascii" => s.is_ascii().then(|| s.as_bytes().to_vec()),
        _ => None,
    }
}

/// `numpy.core.multiarray.scalar(dtype, bytes)` for bool, int and float dtypes.
fn numpy_scalar(args: &[PyValue]) -> Option<PyValue> {
    let dtype = args.first()?.as_opaque()?;
    if dtype.name != "dtype" || !dtype.module.starts_with("numpy") {
        return None;
    }
    let code = dtype.args.as_ref()?.first()?.as_str()?;
    let PyValue::Bytes(data) = args.get(1)? else {
        return None;
    };
    let order = dtype
        .state
        .as_ref()
        .and_then(PyValue::as_sequence)
        .and_then(|s| s.get(1)?.as_str());
    let mut raw = [0u8; 8];
    let n = data.len();
    if n == 0 || n > 8 || code.get(1..)?.parse::<usize>().ok()? != n {
        return None;
    }
    raw[..n].copy_from_slice(data);
    if order == Some(">") {
        raw[..n].reverse();
    }
    let unsigned = u64::from_le_bytes(raw);
    Some(match (code.as_bytes()[0], n) {
        (b'f', 8) => PyValue::Float(f64::from_bits(unsigned)),
        (b'f', 4) => PyValue::Float(f64::from(f32::from_bits(unsigned as u32))),
        (b'i', _) => {
            let shift = 64 - 8 * n as u32;
            PyValue::Int(((unsigned << shift) as i64) >> shift)
        }
        (b'u', _) => PyValue::Int(i64::try_from(unsigned).ok()?),
        (b'b', 1) => PyValue::Bool(unsigned != 0),
        _ => return None,
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum HashKey {
    Str(String),
    Int(i64),
    Bytes(Vec<u8>),
}

fn hash_key(value: &PyValue) -> Option<HashKey> {
    match value {
        PyValue::Str(s) => Some(HashKey::Str(s.clone())),
        PyValue::Int(_) | PyValue::Bool(_) => value.as_int().map(HashKey::Int),
        PyValue::Bytes(b) => Some(HashKey::Bytes(b.clone())),
        _ => None,
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
