//! A data-only pickle machine (protocols 0–5, the opcodes Python's pickler emits).
//!
//! It never imports or calls anything: `GLOBAL`/`STACK_GLOBAL` push a name, and `REDUCE`,
//! `NEWOBJ`, `INST`/`OBJ` record a call of that name with its arguments as an inert object.
//! What such a call *means* (a tensor, an `OrderedDict`, a numpy scalar, or nothing we know)
//! is decided afterwards, when the object graph is turned into a value tree (`convert.rs`).
//!
//! Objects live in an arena and the stack holds their indices, so containers that are
//! memoized before they are filled (`EMPTY_DICT`, `BINPUT`, … `SETITEMS`) are shared exactly
//! as Python shares them. Every length and index read from the input is checked: malformed
//! input gives a [`PickleError`], never a panic or an unbounded allocation.

use std::collections::HashMap;

use super::pickle_graph::{Call, Id, Obj, Pickle};
use super::pickle_opcodes as op;

/// A structural problem in a pickle stream; `pos` is the byte offset of the opcode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// The stream ends inside an opcode or before `STOP`.
    #[error("pickle truncated at byte {pos} (reading {what})")]
    Truncated {
        /// Offset of the opcode being read.
        pos: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The stream is malformed or uses something this reader does not support.
    #[error("pickle byte {pos}: {reason}")]
    Invalid {
        /// Offset of the opcode.
        pos: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Unpickles the stream that starts at `start` in `data`.
pub(crate) fn unpickle(data: &[u8], start: usize) -> Result<Pickle, PickleError> {
    let mut vm = Machine {
        data,
        pos: start,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = vm.run()?;
    Ok(Pickle {
        arena: vm.arena,
        root,
        end: vm.pos,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            let at = self.pos;
            let code = self.take(1, at, "an opcode")?[0];
            let bad = |reason: String| PickleError::Invalid { pos: at, reason };
            match code {
                op::PROTO => {
                    let version = self.take(1, at, "PROTO")?[0];
                    if version > 5 {
                        return Err(bad(format!("unsupported pickle protocol {version}")));
                    }
                }
                // Frames only group opcodes for buffering; the opcodes follow inline.
                op::FRAME => {
                    self.take(8, at, "FRAME")?;
                }
                op::STOP => return self.pop(at),
                op::MARK => self.marks.push(self.stack.len()),
                // Python pops the topmost mark when nothing lies above it.
                op::POP => {
                    if self.floor() == self.stack.len() && !self.marks.is_empty() {
                        self.pop_mark(at)?;
                    } else {
                        self.pop(at)?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark(at)?;
                }
                op::DUP => {
                    let top = self.top(at)?;
                    self.stack.push(top);
                }
                op::NONE => self.push(Obj::None),
                op::NEWTRUE => self.push(Obj::Bool(true)),
                op::NEWFALSE => self.push(Obj::Bool(false)),
                op::BININT => {
                    let b = self.take(4, at, "BININT")?;
                    self.push(Obj::Int(i64::from(i32::from_le_bytes([
                        b[0], b[1], b[2], b[3],
                    ]))));
                }
                op::BININT1 => {
                    let v = self.take(1, at, "BININT1")?[0];
                    self.push(Obj::Int(i64::from(v)));
                }
                op::BININT2 => {
                    let b = self.take(2, at, "BININT2")?;
                    self.push(Obj::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                op::LONG1 => {
                    let n = usize::from(self.take(1, at, "LONG1")?[0]);
                    let bytes = self.take(n, at, "LONG1")?;
                    self.push(long_from_bytes(bytes));
                }
                op::LONG4 => {
                    let n = self.len_i32(at, "LONG4")?;
                    let bytes = self.take(n, at, "LONG4")?;
                    self.push(long_from_bytes(bytes));
                }
                op::INT => {
                    let line = self.line(at, "INT")?;
                    let obj = match line {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        _ => Obj::Int(line.parse().map_err(|_| bad(format!("bad INT {line:?}")))?),
                    };
                    self.push(obj);
                }
                op::LONG => {
                    let line = self.line(at, "LONG")?;
                    let digits = line.strip_suffix('L').unwrap_or(line);
                    let v = digits
                        .parse()
                        .map_err(|_| bad(format!("bad LONG {line:?}")))?;
                    self.push(Obj::Int(v));
                }
                op::FLOAT => {
                    let line = self.line(at, "FLOAT")?;
                    let v = line
                        .parse()
                        .map_err(|_| bad(format!("bad FLOAT {line:?}")))?;
                    self.push(Obj::Float(v));
                }
                op::BINFLOAT => {
                    let b = self.take(8, at, "BINFLOAT")?;
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(b);
                    self.push(Obj::Float(f64::from_be_bytes(raw)));
                }
                op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                    let n = match code {
                        op::SHORT_BINUNICODE => {
                            usize::from(self.take(1, at, "a string length")?[0])
                        }
                        op::BINUNICODE => self.len_u32(at, "a string length")?,
                        _ => self.len_u64(at, "a string length")?,
                    };
                    let bytes = self.take(n, at, "a string")?;
                    let s = std::str::from_utf8(bytes)
                        .map_err(|e| bad(format!("string is not UTF-8: {e}")))?;
                    self.push(Obj::Str(s.to_string()));
                }
                // Python 2 `str`: text when it is UTF-8 (torch.load's default encoding).
                op::SHORT_BINSTRING | op::BINSTRING => {
                    let n = if code == op::SHORT_BINSTRING {
                        usize::from(self.take(1, at, "a string length")?[0])
                    } else {
                        self.len_i32(at, "a string length")?
                    };
                    let bytes = self.take(n, at, "a string")?;
                    let obj = match std::str::from_utf8(bytes) {
                        Ok(s) => Obj::Str(s.to_string()),
                        Err(_) => Obj::Bytes(bytes.to_vec()),
                    };
                    self.push(obj);
                }
                op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = match code {
                        op::SHORT_BINBYTES => usize::from(self.take(1, at, "a bytes length")?[0]),
                        op::BINBYTES => self.len_u32(at, "a bytes length")?,
                        _ => self.len_u64(at, "a bytes length")?,
                    };
                    let bytes = self.take(n, at, "bytes")?.to_vec();
                    self.push(Obj::Bytes(bytes));
                }
                op::EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new())),
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    let split = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .filter(|&split| split >= self.floor())
                        .ok_or_else(|| underflow(at))?;
                    let items = self.stack.split_off(split);
                    self.push(Obj::Tuple(items));
                }
                op::TUPLE => {
                    let items = self.pop_mark(at)?;
                    self.push(Obj::Tuple(items));
                }
                op::EMPTY_LIST => self.push(Obj::List(Vec::new())),
                op::LIST => {
                    let items = self.pop_mark(at)?;
                    self.push(Obj::List(items));
                }
                op::EMPTY_DICT => self.push(Obj::Dict(Vec::new())),
                op::DICT => {
                    let items = self.pop_mark(at)?;
                    let pairs = pairs(items, at)?;
                    self.push(Obj::Dict(pairs));
                }
                op::EMPTY_SET => self.push(Obj::Set(Vec::new())),
                op::FROZENSET => {
                    let items = self.pop_mark(at)?;
                    self.push(Obj::Set(items));
                }
                op::APPEND => {
                    let item = self.pop(at)?;
                    self.extend_list(vec![item], at)?;
                }
                op::APPENDS => {
                    let items = self.pop_mark(at)?;
                    self.extend_list(items, at)?;
                }
                op::ADDITEMS => {
                    let items = self.pop_mark(at)?;
                    let target = self.top(at)?;
                    match &mut self.arena[target] {
                        Obj::Set(set) => set.extend(items),
                        _ => return Err(bad("ADDITEMS on something that is not a set".into())),
                    }
                }
                op::SETITEM => {
                    let value = self.pop(at)?;
                    let key = self.pop(at)?;
                    self.extend_dict(vec![(key, value)], at)?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark(at)?;
                    let pairs = pairs(items, at)?;
                    self.extend_dict(pairs, at)?;
                }
                op::GLOBAL => {
                    let module = self.line(at, "GLOBAL module")?.to_string();
                    let name = self.line(at, "GLOBAL name")?.to_string();
                    self.push(Obj::Global(module, name));
                }
                op::STACK_GLOBAL => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (&self.arena[module], &self.arena[name]) {
                        (Obj::Str(m), Obj::Str(n)) => {
                            let global = Obj::Global(m.clone(), n.clone());
                            self.push(global);
                        }
                        _ => return Err(bad("STACK_GLOBAL needs two strings".into())),
                    }
                }
                op::REDUCE | op::NEWOBJ => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let args = self.tuple_items(args, at)?;
                    self.call(callable, args, at)?;
                }
                op::NEWOBJ_EX => {
                    let _kwargs = self.pop(at)?;
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let args = self.tuple_items(args, at)?;
                    self.call(callable, args, at)?;
                }
                op::INST => {
                    let module = self.line(at, "INST module")?.to_string();
                    let name = self.line(at, "INST name")?.to_string();
                    let args = self.pop_mark(at)?;
                    self.push(Obj::Call(Box::new(Call::new(module, name, args))));
                }
                op::OBJ => {
                    let mut items = self.pop_mark(at)?;
                    if items.is_empty() {
                        return Err(underflow(at));
                    }
                    let callable = items.remove(0);
                    self.call(callable, items, at)?;
                }
                op::BUILD => {
                    let state = self.pop(at)?;
                    let target = self.top(at)?;
                    // Python would call __setstate__; only inert calls keep the state.
                    if let Obj::Call(call) = &mut self.arena[target] {
                        call.state = Some(state);
                    }
                }
                op::BINPERSID => {
                    let pid = self.pop(at)?;
                    self.push(Obj::Persistent(pid));
                }
                op::PERSID => {
                    let line = self.line(at, "PERSID")?.to_string();
                    let pid = self.alloc(Obj::Str(line));
                    self.push(Obj::Persistent(pid));
                }
                op::BINGET => {
                    let index = u32::from(self.take(1, at, "BINGET")?[0]);
                    self.get(index, at)?;
                }
                op::LONG_BINGET => {
                    let index = self.u32(at, "LONG_BINGET")?;
                    self.get(index, at)?;
                }
                op::GET => {
                    let line = self.line(at, "GET")?;
                    let index = line.parse().map_err(|_| bad(format!("bad GET {line:?}")))?;
                    self.get(index, at)?;
                }
                op::BINPUT => {
                    let index = u32::from(self.take(1, at, "BINPUT")?[0]);
                    self.put(index, at)?;
                }
                op::LONG_BINPUT => {
                    let index = self.u32(at, "LONG_BINPUT")?;
                    self.put(index, at)?;
                }
                op::PUT => {
                    let line = self.line(at, "PUT")?;
                    let index = line.parse().map_err(|_| bad(format!("bad PUT {line:?}")))?;
                    self.put(index, at)?;
                }
                op::MEMOIZE => {
                    let index =
                        u32::try_from(self.memo.len()).map_err(|_| bad("memo overflow".into()))?;
                    self.put(index, at)?;
                }
                _ => {
                    return Err(bad(format!(
                        "unsupported opcode 0x{code:02x} (extension registry, out-of-band \
                         buffers and protocol 0 strings are not supported)"
                    )))
                }
            }
        }
    }

    fn alloc(&mut self, obj: Obj) -> Id {
        self.arena.push(obj);
        self.arena.len() - 1
    }

    fn push(&mut self, obj: Obj) {
        let id = self.alloc(obj);
        self.stack.push(id);
    }

    /// Stack height at the innermost mark: objects below it are out of reach.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, at: usize) -> Result<Id, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(underflow(at));
        }
        self.stack.pop().ok_or_else(|| underflow(at))
    }

    fn top(&self, at: usize) -> Result<Id, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(underflow(at));
        }
        self.stack.last().copied().ok_or_else(|| underflow(at))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Id>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| PickleError::Invalid {
            pos: at,
            reason: "no MARK on the stack".into(),
        })?;
        if mark > self.stack.len() {
            return Err(underflow(at));
        }
        Ok(self.stack.split_off(mark))
    }

    fn tuple_items(&self, id: Id, at: usize) -> Result<Vec<Id>, PickleError> {
        match &self.arena[id] {
            Obj::Tuple(items) | Obj::List(items) => Ok(items.clone()),
            _ => Err(PickleError::Invalid {
                pos: at,
                reason: "call arguments are not a tuple".into(),
            }),
        }
    }

    fn call(&mut self, callable: Id, args: Vec<Id>, at: usize) -> Result<(), PickleError> {
        let class = match &self.arena[callable] {
            // Legacy files replace the classes of saved nn.Modules by ('module', cls, …) ids.
            Obj::Persistent(pid) => match &self.arena[*pid] {
                Obj::Tuple(t) if t.len() >= 2 => t[1],
                _ => callable,
            },
            _ => callable,
        };
        match &self.arena[class] {
            Obj::Global(module, name) => {
                let call = Call::new(module.clone(), name.clone(), args);
                self.push(Obj::Call(Box::new(call)));
                Ok(())
            }
            _ => Err(PickleError::Invalid {
                pos: at,
                reason: "call of something that is not a global name".into(),
            }),
        }
    }

    fn extend_list(&mut self, items: Vec<Id>, at: usize) -> Result<(), PickleError> {
        let target = self.top(at)?;
        match &mut self.arena[target] {
            Obj::List(list) => list.extend(items),
            Obj::Call(call) => call.items.extend(items),
            _ => {
                return Err(PickleError::Invalid {
                    pos: at,
                    reason: "APPEND(S) on something that is not a list".into(),
                })
            }
        }
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>, at: usize) -> Result<(), PickleError> {
        let target = self.top(at)?;
        match &mut self.arena[target] {
            Obj::Dict(dict) => dict.extend(pairs),
            Obj::Call(call) => call.entries.extend(pairs),
            _ => {
                return Err(PickleError::Invalid {
                    pos: at,
                    reason: "SETITEM(S) on something that is not a dict".into(),
                })
            }
        }
        Ok(())
    }

    fn get(&mut self, index: u32, at: usize) -> Result<(), PickleError> {
        let id = *self.memo.get(&index).ok_or_else(|| PickleError::Invalid {
            pos: at,
            reason: format!("memo entry {index} is not set"),
        })?;
        self.stack.push(id);
        Ok(())
    }

    fn put(&mut self, index: u32, at: usize) -> Result<(), PickleError> {
        let top = self.top(at)?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn take(&mut self, n: usize, at: usize, what: &'static str) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(PickleError::Truncated { pos: at, what })?;
        let data: &'a [u8] = self.data;
        self.pos = end;
        Ok(&data[end - n..end])
    }

    fn u32(&mut self, at: usize, what: &'static str) -> Result<u32, PickleError> {
        let b = self.take(4, at, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len_u32(&mut self, at: usize, what: &'static str) -> Result<usize, PickleError> {
        let n = self.u32(at, what)?;
        usize::try_from(n).map_err(|_| PickleError::Truncated { pos: at, what })
    }

    fn len_i32(&mut self, at: usize, what: &'static str) -> Result<usize, PickleError> {
        let n = self.u32(at, what)? as i32;
        usize::try_from(n).map_err(|_| PickleError::Invalid {
            pos: at,
            reason: format!("negative length {n} for {what}"),
        })
    }

    fn len_u64(&mut self, at: usize, what: &'static str) -> Result<usize, PickleError> {
        let b = self.take(8, at, what)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        // A length that does not fit in memory cannot fit in the input either.
        usize::try_from(u64::from_le_bytes(raw))
            .map_err(|_| PickleError::Truncated { pos: at, what })
    }

    /// A newline-terminated ASCII argument of the text opcodes.
    fn line(&mut self, at: usize, what: &'static str) -> Result<&'a str, PickleError> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { pos: at, what })?;
        let bytes = self.take(n + 1, at, what)?;
        let text = std::str::from_utf8(&bytes[..n]).map_err(|_| PickleError::Invalid {
            pos: at,
            reason: format!("{what} is not text"),
        })?;
        Ok(text.strip_suffix('\r').unwrap_or(text))
    }
}

fn underflow(at: usize) -> PickleError {
    PickleError::Invalid {
        pos: at,
        reason: "stack underflow".into(),
    }
}

fn pairs(items: Vec<Id>, at: usize) -> Result<Vec<(Id, Id)>, PickleError> {
    if items.len() % 2 != 0 {
        return Err(PickleError::Invalid {
            pos: at,
            reason: "odd number of items for a dict".into(),
        });
    }
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

/// `LONG1`/`LONG4` payload: little-endian two's complement of any length.
fn long_from_bytes(bytes: &[u8]) -> Obj {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0x00 };
    // Drop redundant sign-extension bytes, keeping the sign bit where it is.
    let mut len = bytes.len();
    while len > 1 && bytes[len - 1] == fill && (bytes[len - 2] & 0x80 != 0) == negative {
        len -= 1;
    }
    if len <= 8 {
        let mut raw = [fill; 8];
        raw[..len].copy_from_slice(&bytes[..len]);
        Obj::Int(i64::from_le_bytes(raw))
    } else {
        Obj::BigInt(bytes[..len].to_vec())
    }
}

#[cfg(test)]
#[path = "pickle_vm_tests.rs"]
mod tests;
