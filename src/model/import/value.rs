//! The value tree a Python pickle turns into ([`PyValue`]), with tensors already materialised.

use tch::Tensor;

/// A Python value read from a pickle. Nothing in it was executed: calls of names this reader
/// does not know are kept as [`OpaqueValue`]s.
#[derive(Debug, Clone)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits `i64` (larger ones are [`OpaqueValue`]s named `builtins.int`).
    Int(i64),
    /// A `float` (numpy float scalars are decoded to this too).
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` / `bytearray`.
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `tuple` (also `torch.Size`).
    Tuple(Vec<PyValue>),
    /// A `dict`, `collections.OrderedDict` or `collections.defaultdict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// A tensor or `nn.Parameter` (a bare storage becomes a 1-D tensor of its elements).
    Tensor(TensorRef),
    /// Anything else: a global name, or a call of one, recorded but never performed.
    Opaque(Box<OpaqueValue>),
}

/// A tensor read from a file: a contiguous CPU tensor with the saved dtype, shape and values.
#[derive(Debug)]
pub struct TensorRef {
    /// The values (always contiguous, on the CPU, never requiring grad).
    pub tensor: Tensor,
    /// `requires_grad` as saved.
    pub requires_grad: bool,
    /// Whether it was saved as an `nn.Parameter` (`torch._utils._rebuild_parameter`).
    pub parameter: bool,
    /// The storage key it was read from (shared by tensors that shared a storage).
    pub storage_key: String,
    /// The device it was saved from (`cpu`, `cuda:0`, …); the data is loaded on the CPU.
    pub device: String,
}

impl Clone for TensorRef {
    /// Shares the tensor data (`shallow_clone`).
    fn clone(&self) -> Self {
        Self {
            tensor: self.tensor.shallow_clone(),
            requires_grad: self.requires_grad,
            parameter: self.parameter,
            storage_key: self.storage_key.clone(),
            device: self.device.clone(),
        }
    }
}

/// A global name (`args == None`) or the call `module.name(*args)` that a pickle asked for,
/// with what `BUILD`, `APPEND(S)` and `SETITEM(S)` added to the result.
#[derive(Debug, Clone)]
pub struct OpaqueValue {
    /// The module of the global, e.g. `argparse`.
    pub module: String,
    /// The name of the global, e.g. `Namespace`.
    pub name: String,
    /// The call's positional arguments; `None` when the global itself is the value.
    pub args: Option<Vec<PyValue>>,
    /// The `BUILD` state (`__setstate__` argument or instance `__dict__`).
    pub state: Option<PyValue>,
    /// Items appended to the result (`APPEND(S)`).
    pub items: Vec<PyValue>,
    /// Entries set on the result (`SETITEM(S)`).
    pub entries: Vec<(PyValue, PyValue)>,
}

impl OpaqueValue {
    /// `module.name`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

impl PyValue {
    /// A short description of the value's type for messages (`dict`, `Tensor`, `argparse.Namespace`).
    pub fn type_name(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(_) => "bool".into(),
            PyValue::Int(_) => "int".into(),
            PyValue::Float(_) => "float".into(),
            PyValue::Str(_) => "str".into(),
            PyValue::Bytes(_) => "bytes".into(),
            PyValue::List(_) => "list".into(),
            PyValue::Tuple(_) => "tuple".into(),
            PyValue::Dict(_) => "dict".into(),
            PyValue::Tensor(t) => format!("Tensor({:?}, {:?})", t.tensor.kind(), t.tensor.size()),
            PyValue::Opaque(o) => o.qualified_name(),
        }
    }

    /// The value stored under the string key `key` of a dict (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The entries of a dict.
    pub fn as_dict(&self) -> Option<&[(PyValue, PyValue)]> {
        match self {
            PyValue::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn as_sequence(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(items) | PyValue::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An `int` (or `bool`, which Python treats as one).
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            PyValue::Int(v) => Some(v),
            PyValue::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// A `float`, or an `int` converted to one.
    pub fn as_float(&self) -> Option<f64> {
        match *self {
            PyValue::Float(v) => Some(v),
            // Precision loss above 2^53 is what Python's float(int) does too.
            PyValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// A `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            PyValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A tensor.
    pub fn as_tensor(&self) -> Option<&TensorRef> {
        match self {
            PyValue::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// An opaque global or call.
    pub fn as_opaque(&self) -> Option<&OpaqueValue> {
        match self {
            PyValue::Opaque(o) => Some(o),
            _ => None,
        }
    }
}
