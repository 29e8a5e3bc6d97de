//! Wire format of the rendezvous store.
//!
//! Every message is a frame: a little-endian `u32` body length, then the body. A request body
//! starts with the magic `SLTS`, the protocol version and the run token, so that a worker of
//! another run (or another program that found the port) is rejected on its first request. The
//! rest is the operation and its arguments; strings and byte strings carry a length prefix.
//!
//! ```text
//! request  = "SLTS" version:u8 token:str16 op:u8 args…
//! response = status:u8 payload…
//! str16    = len:u16 utf8…        bytes32 = len:u32 bytes…
//! ```

use std::io::{self, Read, Write};
use std::time::Duration;

/// First bytes of every request body.
pub const MAGIC: &[u8; 4] = b"SLTS";
/// Protocol version; a server answers a request of another version with an error.
pub const VERSION: u8 = 1;
/// Largest frame body accepted (values up to 64 MiB plus headers).
pub const MAX_FRAME: usize = 64 * 1024 * 1024 + 64 * 1024;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 4096;

/// A request to the store (without the token, which travels in the frame header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Checks that the store is reachable and the token is right.
    Ping,
    /// Stores `value` under `key` (replacing any value) and wakes waiters.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Returns the value of `key`, waiting up to `timeout` for it to be set.
    Get {
        /// The key.
        key: String,
        /// How long to wait for the key (zero: answer at once).
        timeout: Duration,
    },
    /// Waits up to `timeout` until every key is set.
    Wait {
        /// The keys.
        keys: Vec<String>,
        /// How long to wait.
        timeout: Duration,
    },
    /// Adds `delta` to the decimal integer stored under `key` (missing = 0); returns the sum.
    Add {
        /// The key.
        key: String,
        /// The increment.
        delta: i64,
    },
    /// Sets `key` to `desired` if its value is `expected` (`None`: the key is missing);
    /// returns the value stored afterwards.
    CompareSet {
        /// The key.
        key: String,
        /// The value the caller expects to find, or `None` for "not set".
        expected: Option<Vec<u8>>,
        /// The value to store when the expectation holds.
        desired: Vec<u8>,
    },
    /// Removes `key`; answers whether it existed.
    Delete {
        /// The key.
        key: String,
    },
    /// Waits until `world` distinct ranks have entered barrier `name` (reusable: each
    /// completion starts a new generation).
    Barrier {
        /// The barrier's name.
        name: String,
        /// The caller's rank.
        rank: u32,
        /// How many ranks must arrive.
        world: u32,
        /// How long to wait for the others.
        timeout: Duration,
    },
}

impl Request {
    /// A short name of the operation, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Set { .. } => "set",
            Self::Get { .. } => "get",
            Self::Wait { .. } => "wait",
            Self::Add { .. } => "add",
            Self::CompareSet { .. } => "compare_set",
            Self::Delete { .. } => "delete",
            Self::Barrier { .. } => "barrier",
        }
    }

    /// How long the server may take to answer (the wait it was asked for).
    pub fn server_wait(&self) -> Duration {
        match self {
            Self::Get { timeout, .. } | Self::Wait { timeout, .. } => *timeout,
            Self::Barrier { timeout, .. } => *timeout,
            _ => Duration::ZERO,
        }
    }
}

/// Why the server refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request carried another token than the store's.
    TokenMismatch = 1,
    /// Malformed request, wrong magic or version.
    BadRequest = 2,
    /// The operation does not fit the stored value (e.g. `add` on a non-integer).
    Invalid = 3,
    /// The store is shutting down or was reset for a new attempt.
    Closing = 4,
}

impl Refusal {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::TokenMismatch,
            2 => Self::BadRequest,
            3 => Self::Invalid,
            4 => Self::Closing,
            _ => return None,
        })
    }
}

/// The server's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Done (set, wait, barrier, ping).
    Ok,
    /// A value (get, compare_set).
    Value(Vec<u8>),
    /// An integer (add; delete: 1 if the key existed).
    Int(i64),
    /// The wait ran out; these keys were still missing.
    Missing(Vec<String>),
    /// The barrier wait ran out; these ranks had arrived.
    BarrierTimeout {
        /// Ranks that had arrived.
        arrived: Vec<u32>,
        /// The barrier's world size.
        world: u32,
    },
    /// The request was refused.
    Refused(Refusal, String),
}

/// A malformed message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Encodes a request with its token into a frame body.
pub fn encode_request(token: &str, req: &Request) -> Vec<u8> {
    let mut w = Vec::with_capacity(64);
    w.extend_from_slice(MAGIC);
    w.push(VERSION);
    put_str(&mut w, token);
    match req {
        Request::Ping => w.push(0),
        Request::Set { key, value } => {
            w.push(1);
            put_str(&mut w, key);
            put_bytes(&mut w, value);
        }
        Request::Get { key, timeout } => {
            w.push(2);
            put_str(&mut w, key);
            put_duration(&mut w, *timeout);
        }
        Request::Wait { keys, timeout } => {
            w.push(3);
            w.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            for k in keys {
                put_str(&mut w, k);
            }
            put_duration(&mut w, *timeout);
        }
        Request::Add { key, delta } => {
            w.push(4);
            put_str(&mut w, key);
            w.extend_from_slice(&delta.to_le_bytes());
        }
        Request::CompareSet {
            key,
            expected,
            desired,
        } => {
            w.push(5);
            put_str(&mut w, key);
            match expected {
                None => w.push(0),
                Some(v) => {
                    w.push(1);
                    put_bytes(&mut w, v);
                }
            }
            put_bytes(&mut w, desired);
        }
        Request::Delete { key } => {
            w.push(6);
            put_str(&mut w, key);
        }
        Request::Barrier {
            name,
            rank,
            world,
            timeout,
        } => {
            w.push(7);
            put_str(&mut w, name);
            w.extend_from_slice(&rank.to_le_bytes());
            w.extend_from_slice(&world.to_le_bytes());
            put_duration(&mut w, *timeout);
        }
    }
    w
}

/// Splits a request frame body into its token and request. The magic and version are checked
/// first; their errors say what was found, so a stray client is easy to recognise.
pub fn decode_request(body: &[u8]) -> Result<(String, Request), DecodeError> {
    let mut r = Cursor { buf: body, pos: 0 };
    let magic = r.take(4)?;
    if magic != MAGIC {
        return Err(DecodeError(format!(
            "not an slt store request (magic {magic:02x?}, expected \"SLTS\")"
        )));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError(format!(
            "store protocol version {version}, this store speaks version {VERSION} \
             (slt and slt-launch come from different builds)"
        )));
    }
    let token = r.str()?;
    let req = match r.u8()? {
        0 => Request::Ping,
        1 => Request::Set {
            key: r.key()?,
            value: r.bytes()?,
        },
        2 => Request::Get {
            key: r.key()?,
            timeout: r.duration()?,
        },
        3 => {
            let n = r.u32()? as usize;
            let mut keys = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                keys.push(r.key()?);
            }
            Request::Wait {
                keys,
                timeout: r.duration()?,
            }
        }
        4 => Request::Add {
            key: r.key()?,
            delta: r.i64()?,
        },
        5 => {
            let key = r.key()?;
            let expected = match r.u8()? {
                0 => None,
                _ => Some(r.bytes()?),
            };
            Request::CompareSet {
                key,
                expected,
                desired: r.bytes()?,
            }
        }
        6 => Request::Delete { key: r.key()? },
        7 => Request::Barrier {
            name: r.key()?,
            rank: r.u32()?,
            world: r.u32()?,
            timeout: r.duration()?,
        },
        op => return Err(DecodeError(format!("unknown store operation {op}"))),
    };
    r.finish()?;
    Ok((token, req))
}

/// Encodes a response into a frame body.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let mut w = Vec::with_capacity(16);
    match resp {
        Response::Ok => w.push(0),
        Response::Value(v) => {
            w.push(1);
            put_bytes(&mut w, v);
        }
        Response::Int(i) => {
            w.push(2);
            w.extend_from_slice(&i.to_le_bytes());
        }
        Response::Missing(keys) => {
            w.push(3);
            w.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            for k in keys {
                put_str(&mut w, k);
            }
        }
        Response::BarrierTimeout { arrived, world } => {
            w.push(4);
            w.extend_from_slice(&world.to_le_bytes());
            w.extend_from_slice(&(arrived.len() as u32).to_le_bytes());
            for r in arrived {
                w.extend_from_slice(&r.to_le_bytes());
            }
        }
        Response::Refused(kind, msg) => {
            w.push(5);
            w.push(*kind as u8);
            put_bytes(&mut w, msg.as_bytes());
        }
    }
    w
}

/// Decodes a response frame body.
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Cursor { buf: body, pos: 0 };
    let resp = match r.u8()? {
        0 => Response::Ok,
        1 => Response::Value(r.bytes()?),
        2 => Response::Int(r.i64()?),
        3 => {
            let n = r.u32()? as usize;
            let mut keys = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                keys.push(r.str()?);
            }
            Response::Missing(keys)
        }
        4 => {
            let world = r.u32()?;
            let n = r.u32()? as usize;
            let mut arrived = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                arrived.push(r.u32()?);
            }
            Response::BarrierTimeout { arrived, world }
        }
        5 => {
            let code = r.u8()?;
            let kind = Refusal::from_u8(code)
                .ok_or_else(|| DecodeError(format!("unknown refusal code {code}")))?;
            let msg = String::from_utf8_lossy(&r.bytes()?).into_owned();
            Response::Refused(kind, msg)
        }
        s => return Err(DecodeError(format!("unknown response status {s}"))),
    };
    r.finish()?;
    Ok(resp)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("store message of {} bytes exceeds {MAX_FRAME}", body.len()),
            )
        })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean EOF before the first byte.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("store frame of {len} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    // Keys are checked against MAX_KEY by the client; tokens are short. Longer strings are
    // cut at the u16 limit rather than wrapping the length.
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    w.extend_from_slice(&(b.len() as u16).to_le_bytes());
    w.extend_from_slice(b);
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u32).to_le_bytes());
    w.extend_from_slice(b);
}

fn put_duration(w: &mut Vec<u8>, d: Duration) {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    w.extend_from_slice(&ms.to_le_bytes());
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| {
            DecodeError(format!(
                "truncated message: wanted {n} bytes at offset {} of {}",
                self.pos,
                self.buf.len()
            ))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn duration(&mut self) -> Result<Duration, DecodeError> {
        Ok(Duration::from_millis(u64::from_le_bytes(self.array()?)))
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = u16::from_le_bytes(self.array()?) as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
    }

    fn key(&mut self) -> Result<String, DecodeError> {
        let k = self.str()?;
        if k.is_empty() || k.len() > MAX_KEY {
            return Err(DecodeError(format!(
                "key of {} bytes (must be 1..={MAX_KEY})",
                k.len()
            )));
        }
        Ok(k)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} trailing bytes after the message",
                self.buf.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
