//! Storages: where their bytes come from, what their persistent ids say, and how a tensor is
//! cut out of one (`as_strided` + `contiguous` on a fresh copy of the bytes, after checking
//! that every element lies inside).

use std::borrow::Cow;

use tch::{Kind, Tensor};

use super::convert::{obj_name, ConvertError, Converter, MAX_NESTED_FILES};
use super::legacy::parse_legacy;
use super::pickle_graph::{Id, Obj};
use super::value::{PyValue, TensorRef};

/// A tensor with more elements than its storage (stride 0, as saved by `expand`) is only
/// materialised up to this many elements (1 GiB of f64), so a crafted geometry cannot make a
/// small file allocate without bound.
const MAX_EXPANDED_NUMEL: i64 = 1 << 27;

/// Where the bytes of the storages named by persistent ids come from.
pub(crate) trait StorageSource {
    /// The raw bytes of storage `key`, or why they cannot be read.
    fn storage_bytes(&self, key: &str) -> Result<Cow<'_, [u8]>, String>;
}

/// The storage source of a plain pickle: there is none.
pub(crate) struct NoStorages;

impl StorageSource for NoStorages {
    fn storage_bytes(&self, _key: &str) -> Result<Cow<'_, [u8]>, String> {
        Err("cannot be resolved: a plain pickle carries no storage data".into())
    }
}

/// The payload of a storage persistent id:
/// `('storage', storage_type, key, location, numel[, view_metadata])`.
#[derive(Debug, Clone)]
pub(crate) struct StoragePid {
    pub type_name: String,
    pub kind: Option<Kind>,
    pub key: String,
    pub location: String,
    pub numel: i64,
    /// Legacy storage views: `(offset, numel)` inside the root storage.
    pub view: Option<(i64, i64)>,
}

/// The element type of a `torch.*Storage` class (`torch.cuda.*` too).
pub(crate) fn storage_kind(module: &str, name: &str) -> Option<Kind> {
    if module != "torch" && module != "torch.cuda" {
        return None;
    }
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" | "UntypedStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// Reads a storage persistent id from the arena.
pub(crate) fn parse_storage_pid(arena: &[Obj], pid: Id) -> Result<StoragePid, String> {
    let bad = || "unsupported persistent id (expected ('storage', type, key, location, numel))";
    let Obj::Tuple(items) = &arena[pid] else {
        return Err(bad().into());
    };
    if items.len() < 5 || !matches!(&arena[items[0]], Obj::Str(s) if s == "storage") {
        return Err(bad().into());
    }
    let Obj::Global(module, name) = &arena[items[1]] else {
        return Err("storage type is not a global name".into());
    };
    let key = match &arena[items[2]] {
        Obj::Str(s) => s.clone(),
        Obj::Int(v) => v.to_string(),
        _ => return Err("storage key is not a string".into()),
    };
    let location = match &arena[items[3]] {
        Obj::Str(s) => s.clone(),
        _ => return Err(format!("storage '{key}': location is not a string")),
    };
    let numel = match &arena[items[4]] {
        Obj::Int(v) if *v >= 0 => *v,
        _ => {
            return Err(format!(
                "storage '{key}': element count is not a non-negative int"
            ))
        }
    };
    let view = match items.get(5).map(|&v| &arena[v]) {
        None | Some(Obj::None) => None,
        Some(Obj::Tuple(v)) if v.len() == 3 => match (&arena[v[1]], &arena[v[2]]) {
            (Obj::Int(offset), Obj::Int(len)) => Some((*offset, *len)),
            _ => return Err(format!("storage '{key}': malformed view metadata")),
        },
        Some(_) => return Err(format!("storage '{key}': malformed view metadata")),
    };
    Ok(StoragePid {
        type_name: format!("{module}.{name}"),
        kind: storage_kind(module, name),
        key,
        location,
        numel,
        view,
    })
}

/// A storage (or legacy view of one) as a 1-D tensor of its root's elements.
pub(super) struct StorageView {
    pub(super) base: Tensor,
    pub(super) offset: i64,
    pub(super) len: i64,
    pub(super) key: String,
    pub(super) device: String,
}

impl StorageView {
    /// Another handle on the same data.
    pub(super) fn share(&self) -> Self {
        Self {
            base: self.base.shallow_clone(),
            offset: self.offset,
            len: self.len,
            key: self.key.clone(),
            device: self.device.clone(),
        }
    }
}

impl Converter<'_> {
    /// A bare storage as a 1-D tensor.
    pub(super) fn storage_tensor(
        &mut self,
        id: Id,
        depth: usize,
    ) -> Result<TensorRef, ConvertError> {
        let storage = self.storage(id, depth)?;
        let tensor =
            strided(&storage, 0, &[storage.len], &[1]).map_err(|reason| self.err(reason))?;
        Ok(TensorRef {
            tensor,
            requires_grad: false,
            parameter: false,
            storage_key: storage.key,
            device: storage.device,
        })
    }

    pub(super) fn storage(&mut self, id: Id, depth: usize) -> Result<StorageView, ConvertError> {
        let arena = self.arena;
        match &arena[id] {
            Obj::Persistent(pid) => {
                let pid = parse_storage_pid(self.arena, *pid).map_err(|reason| self.err(reason))?;
                let kind = pid.kind.ok_or_else(|| {
                    self.storage_err(&pid.key, format!("has unsupported type {}", pid.type_name))
                })?;
                let base = self.base_storage(&pid.key, kind, pid.numel)?;
                let (offset, len) = pid.view.unwrap_or((0, pid.numel));
                if offset < 0
                    || len < 0
                    || offset.checked_add(len).is_none_or(|end| end > pid.numel)
                {
                    return Err(self.storage_err(
                        &pid.key,
                        format!(
                            "view [{offset}, +{len}) lies outside its {} elements",
                            pid.numel
                        ),
                    ));
                }
                Ok(StorageView {
                    base,
                    offset,
                    len,
                    key: pid.key,
                    device: pid.location,
                })
            }
            Obj::Call(call)
                if call.module == "torch.storage" && call.name == "_load_from_bytes" =>
            {
                if let Some(view) = self.nested.get(&id) {
                    return Ok(view.share());
                }
                let bytes = match call
                    .args
                    .first()
                    .map(|&a| self.value(a, depth + 1))
                    .transpose()?
                {
                    Some(PyValue::Bytes(b)) => b,
                    _ => {
                        return Err(self.err("torch.storage._load_from_bytes without bytes".into()))
                    }
                };
                let view = self
                    .nested_storage(&bytes)
                    .map_err(|reason| self.err(format!("embedded torch.save data: {reason}")))?;
                self.nested.insert(id, view.share());
                Ok(view)
            }
            other => Err(self.err(format!("expected a storage, found {}", obj_name(other)))),
        }
    }

    /// The storage saved by `torch.save(storage)` in the legacy format, embedded as bytes.
    fn nested_storage(&self, bytes: &[u8]) -> Result<StorageView, String> {
        if self.nesting + 1 > MAX_NESTED_FILES {
            return Err(format!("nested more than {MAX_NESTED_FILES} levels deep"));
        }
        let file = parse_legacy(bytes).map_err(|e| e.to_string())?;
        let mut inner = Converter::new(&file.main.arena, &file, bytes.len(), self.nesting + 1);
        let view = inner.storage(file.main.root, 0).map_err(|e| match e {
            ConvertError::Storage { key, reason, .. } => format!("storage '{key}' {reason}"),
            ConvertError::Value { reason, .. } => reason,
        })?;
        let base = view
            .base
            .f_narrow(0, view.offset, view.len)
            .map_err(|e| e.to_string())?;
        Ok(StorageView {
            base,
            offset: 0,
            ..view
        })
    }

    fn base_storage(&mut self, key: &str, kind: Kind, numel: i64) -> Result<Tensor, ConvertError> {
        if let Some(t) = self.storages.get(&(key.to_string(), kind)) {
            return Ok(t.shallow_clone());
        }
        if cfg!(target_endian = "big") {
            return Err(self.storage_err(key, "cannot be read on a big-endian host".into()));
        }
        let bytes = self
            .source
            .storage_bytes(key)
            .map_err(|reason| self.storage_err(key, reason))?;
        let element = kind.elt_size_in_bytes();
        let need = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(element));
        let data = need.and_then(|n| bytes.get(..n)).ok_or_else(|| {
            self.storage_err(
                key,
                format!(
                    "has {} bytes, too few for {numel} elements of {kind:?}",
                    bytes.len()
                ),
            )
        })?;
        if kind == Kind::Bool && data.iter().any(|&b| b > 1) {
            return Err(self.storage_err(key, "holds bool bytes other than 0 and 1".into()));
        }
        let tensor = Tensor::f_from_data_size(data, &[numel], kind)
            .map_err(|e| self.storage_err(key, e.to_string()))?;
        self.storages
            .insert((key.to_string(), kind), tensor.shallow_clone());
        Ok(tensor)
    }
}

/// `as_strided` + `contiguous` on the storage, after checking that every element lies inside.
pub(super) fn strided(
    storage: &StorageView,
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> Result<Tensor, String> {
    let describe = || format!("size {size:?}, stride {stride:?}, offset {offset}");
    if size.len() != stride.len() || offset < 0 || size.iter().chain(stride).any(|&v| v < 0) {
        return Err(format!("invalid tensor geometry ({})", describe()));
    }
    let numel = size.iter().try_fold(1i64, |acc, &s| acc.checked_mul(s));
    let numel = numel.ok_or_else(|| format!("tensor too large ({})", describe()))?;
    if numel > 0 {
        let last = size.iter().zip(stride).try_fold(offset, |acc, (&s, &st)| {
            acc.checked_add((s - 1).checked_mul(st)?)
        });
        if last.is_none_or(|last| last >= storage.len) {
            return Err(format!(
                "tensor ({}) reaches past the end of storage '{}' ({} elements)",
                describe(),
                storage.key,
                storage.len
            ));
        }
        if numel > storage.len && numel > MAX_EXPANDED_NUMEL {
            return Err(format!(
                "expanded tensor too large to materialise ({})",
                describe()
            ));
        }
    }
    storage
        .base
        .f_as_strided(size, stride, storage.offset + offset)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| e.to_string())
}
