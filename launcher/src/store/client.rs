//! The store client used by workers.
//!
//! Connecting retries for a bounded window (the store may start a moment after the worker, on
//! another node), then checks the run token with a ping, so a worker that is pointed at the
//! wrong store or carries another run's token fails at once with a message that says so.
//! Every request has a deadline: the server answers a blocking request when its timeout runs
//! out, and the socket's read timeout (the request's wait plus a grace period) catches a store
//! that stopped answering. A lost connection is an error, never a hang.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use super::protocol::{
    decode_response, encode_request, read_frame, write_frame, Refusal, Request, Response, MAX_KEY,
};
use super::StoreError;

/// Timeouts of a [`StoreClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long `connect` keeps retrying a refused or unreachable store.
    pub connect_timeout: Duration,
    /// Default wait of `get`, `wait` and `barrier`.
    pub timeout: Duration,
    /// Extra time allowed for an answer beyond the wait the request asked for.
    pub reply_grace: Duration,
}

impl Default for ClientOptions {
    /// 30 s to connect, 300 s for blocking operations (torch's TCPStore default), 10 s grace.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
            reply_grace: Duration::from_secs(10),
        }
    }
}

/// A connection to the rendezvous store.
pub struct StoreClient {
    addr: String,
    token: String,
    opts: ClientOptions,
    stream: TcpStream,
    /// Set after an I/O failure: the connection's framing can no longer be trusted.
    broken: Option<String>,
}

impl std::fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreClient")
            .field("addr", &self.addr)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl StoreClient {
    /// Connects to the store at `addr` (`host:port`), retrying for `opts.connect_timeout`,
    /// and verifies `token` with a ping.
    pub fn connect(addr: &str, token: &str, opts: ClientOptions) -> Result<Self, StoreError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(20);
        let stream = loop {
            let left = opts.connect_timeout.saturating_sub(start.elapsed());
            match try_connect(
                addr,
                left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
            ) {
                Ok(s) => break s,
                Err(source) => {
                    let left = opts.connect_timeout.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(StoreError::Unreachable {
                            addr: addr.to_string(),
                            waited: start.elapsed(),
                            source,
                        });
                    }
                    thread::sleep(delay.min(left));
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let mut client = Self {
            addr: addr.to_string(),
            token: token.to_string(),
            opts,
            stream,
            broken: None,
        };
        client.ping()?;
        Ok(client)
    }

    /// The store's address as given to `connect`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The client's timeouts.
    pub fn options(&self) -> ClientOptions {
        self.opts
    }

    /// The local address of this connection: the interface through which this host reaches
    /// the store, which is a good address to offer peers.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Checks that the store answers and accepts the token.
    pub fn ping(&mut self) -> Result<(), StoreError> {
        self.expect_ok(Request::Ping)
    }

    /// Stores `value` under `key`.
    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        self.expect_ok(Request::Set {
            key: key.to_string(),
            value: value.to_vec(),
        })
    }

    /// The value of `key`, waiting up to the default timeout for it to be set.
    pub fn get(&mut self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.get_timeout(key, self.opts.timeout)
    }

    /// The value of `key`, waiting up to `timeout` for it to be set.
    pub fn get_timeout(&mut self, key: &str, timeout: Duration) -> Result<Vec<u8>, StoreError> {
        check_key(key)?;
        let req = Request::Get {
            key: key.to_string(),
            timeout,
        };
        match self.request(&req)? {
            Response::Value(v) => Ok(v),
            Response::Missing(keys) => Err(self.timeout_error(&req, keys)),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// The value of `key` if it is set, without waiting.
    pub fn try_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let req = Request::Get {
            key: key.to_string(),
            timeout: Duration::ZERO,
        };
        match self.request(&req)? {
            Response::Value(v) => Ok(Some(v)),
            Response::Missing(_) => Ok(None),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// Waits up to the default timeout until every key is set.
    pub fn wait<S: AsRef<str>>(&mut self, keys: &[S]) -> Result<(), StoreError> {
        self.wait_timeout(keys, self.opts.timeout)
    }

    /// Waits up to `timeout` until every key is set; the error lists the missing keys.
    pub fn wait_timeout<S: AsRef<str>>(
        &mut self,
        keys: &[S],
        timeout: Duration,
    ) -> Result<(), StoreError> {
        for k in keys {
            check_key(k.as_ref())?;
        }
        let req = Request::Wait {
            keys: keys.iter().map(|k| k.as_ref().to_string()).collect(),
            timeout,
        };
        match self.request(&req)? {
            Response::Ok => Ok(()),
            Response::Missing(missing) => Err(self.timeout_error(&req, missing)),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// Adds `delta` to the integer under `key` (a missing key counts as 0); returns the sum.
    pub fn add(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        check_key(key)?;
        let req = Request::Add {
            key: key.to_string(),
            delta,
        };
        match self.request(&req)? {
            Response::Int(v) => Ok(v),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// Sets `key` to `desired` if it currently holds `expected` (`None`: is not set). Returns
    /// the value stored afterwards (`None` if the key is still not set), so the caller sees
    /// whether it won.
    pub fn compare_set(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        desired: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let req = Request::CompareSet {
            key: key.to_string(),
            expected: expected.map(<[u8]>::to_vec),
            desired: desired.to_vec(),
        };
        match self.request(&req)? {
            Response::Value(v) => Ok(Some(v)),
            Response::Missing(_) => Ok(None),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        let req = Request::Delete {
            key: key.to_string(),
        };
        match self.request(&req)? {
            Response::Int(n) => Ok(n != 0),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// Waits (default timeout) until all `world` ranks entered the barrier `name`. Barriers
    /// are reusable: every rank may enter the same name again after it completed.
    pub fn barrier(&mut self, name: &str, rank: u32, world: u32) -> Result<(), StoreError> {
        self.barrier_timeout(name, rank, world, self.opts.timeout)
    }

    /// [`StoreClient::barrier`] with an explicit timeout; the error names the missing ranks.
    pub fn barrier_timeout(
        &mut self,
        name: &str,
        rank: u32,
        world: u32,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        check_key(name)?;
        let req = Request::Barrier {
            name: name.to_string(),
            rank,
            world,
            timeout,
        };
        match self.request(&req)? {
            Response::Ok => Ok(()),
            Response::BarrierTimeout { arrived, world } => {
                let missing = (0..world).filter(|r| !arrived.contains(r)).collect();
                Err(StoreError::BarrierTimeout {
                    addr: self.addr.clone(),
                    name: name.to_string(),
                    arrived,
                    missing,
                    world,
                    waited: timeout,
                })
            }
            other => Err(self.unexpected(&req, &other)),
        }
    }

    fn expect_ok(&mut self, req: Request) -> Result<(), StoreError> {
        match self.request(&req)? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(&req, &other)),
        }
    }

    /// Sends `req` and reads the answer; refusals become errors here.
    fn request(&mut self, req: &Request) -> Result<Response, StoreError> {
        if let Some(why) = &self.broken {
            return Err(StoreError::Disconnected {
                addr: self.addr.clone(),
                op: req.name(),
                source: io::Error::new(io::ErrorKind::NotConnected, why.clone()),
            });
        }
        let wait = req.server_wait().saturating_add(self.opts.reply_grace);
        let result = self
            .stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .and_then(|()| self.stream.set_write_timeout(Some(self.opts.reply_grace)))
            .and_then(|()| write_frame(&mut self.stream, &encode_request(&self.token, req)))
            .and_then(|()| read_frame(&mut self.stream))
            .and_then(|body| body.ok_or_else(|| io::ErrorKind::UnexpectedEof.into()));
        let body = match result {
            Ok(b) => b,
            Err(source) => {
                self.broken = Some(format!("an earlier request failed: {source}"));
                let source = if matches!(
                    source.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {wait:?}"),
                    )
                } else {
                    source
                };
                return Err(StoreError::Disconnected {
                    addr: self.addr.clone(),
                    op: req.name(),
                    source,
                });
            }
        };
        let resp = decode_response(&body).map_err(|e| StoreError::Protocol {
            addr: self.addr.clone(),
            op: req.name(),
            detail: e.0,
        })?;
        match resp {
            Response::Refused(Refusal::TokenMismatch, detail) => {
                self.broken = Some("the store refused the run token".into());
                Err(StoreError::TokenMismatch {
                    addr: self.addr.clone(),
                    detail,
                })
            }
            Response::Refused(_, detail) => Err(StoreError::Refused {
                addr: self.addr.clone(),
                op: req.name(),
                detail,
            }),
            other => Ok(other),
        }
    }

    fn timeout_error(&self, req: &Request, keys: Vec<String>) -> StoreError {
        StoreError::Timeout {
            addr: self.addr.clone(),
            op: req.name(),
            keys,
            waited: req.server_wait(),
        }
    }

    fn unexpected(&self, req: &Request, resp: &Response) -> StoreError {
        StoreError::Protocol {
            addr: self.addr.clone(),
            op: req.name(),
            detail: format!("unexpected answer {resp:?}"),
        }
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(StoreError::InvalidKey {
            key: key.chars().take(80).collect(),
            reason: format!(
                "keys must have 1 to {MAX_KEY} bytes, this one has {}",
                key.len()
            ),
        });
    }
    Ok(())
}

/// One connection attempt to every address `addr` resolves to.
fn try_connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("{addr} resolves to no address"),
    );
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}
