//! The object graph a pickle stream builds: an arena of [`Obj`]s that refer to each other by
//! index, so that memoized containers are shared the way Python shares them.

/// Index of an object in the arena of a [`Pickle`].
pub(crate) type Id = usize;

/// One object of the unpickled graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit `i64`: minimal little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// A name pushed by `GLOBAL`, not called.
    Global(String, String),
    /// The result of calling a global (`REDUCE`, `NEWOBJ`, `INST`, `OBJ`), with whatever
    /// `BUILD`, `APPEND(S)` and `SETITEM(S)` later did to it.
    Call(Box<Call>),
    /// A persistent id (`BINPERSID`/`PERSID`): the object it names lives outside the pickle.
    Persistent(Id),
}

/// An inert record of `module.name(*args)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub module: String,
    pub name: String,
    pub args: Vec<Id>,
    pub state: Option<Id>,
    pub items: Vec<Id>,
    pub entries: Vec<(Id, Id)>,
}

/// An unpickled object graph.
#[derive(Debug)]
pub(crate) struct Pickle {
    /// All objects, in creation order.
    pub arena: Vec<Obj>,
    /// The object `STOP` returned.
    pub root: Id,
    /// Offset just past the `STOP` opcode.
    pub end: usize,
}

impl Pickle {
    /// The value of `key` in the dict `dict` (string keys only).
    pub fn dict_get(&self, dict: Id, key: &str) -> Option<Id> {
        match self.arena.get(dict)? {
            Obj::Dict(pairs) => pairs
                .iter()
                .rev()
                .find(|(k, _)| matches!(self.arena.get(*k), Some(Obj::Str(s)) if s == key))
                .map(|&(_, v)| v),
            _ => None,
        }
    }
}

impl Call {
    pub(crate) fn new(module: String, name: String, args: Vec<Id>) -> Self {
        Self {
            module,
            name,
            args,
            state: None,
            items: Vec::new(),
            entries: Vec::new(),
        }
    }
}
