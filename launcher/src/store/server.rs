//! The store server: one thread accepts connections, one thread per connection answers its
//! requests. All data lives in one mutex-protected map; blocking operations (get, wait,
//! barrier) wait on a condition variable with a deadline, so the server never blocks longer
//! than the client asked for.
//!
//! The launcher starts the server on the socket it reserved for MASTER_PORT before it spawns
//! any worker, so the port can never be taken by someone else in between. Before each restart
//! it calls [`StoreServer::reset`] with the new attempt's token: the data of the failed attempt
//! is dropped, and connections of its workers are closed (a leftover worker that reconnects
//! with the old token is told so).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufReader, BufWriter};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::protocol::{
    decode_request, encode_response, read_frame, write_frame, Refusal, Request, Response,
};

/// Most simultaneous connections; more are refused (a worker needs one, plus a few for tools).
const MAX_CONNECTIONS: usize = 4096;

/// A running store server. Dropping it shuts it down.
pub struct StoreServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

struct State {
    token: String,
    /// Incremented by every reset; blocked requests of an older epoch are refused.
    epoch: u64,
    closing: bool,
    data: HashMap<String, Vec<u8>>,
    barriers: HashMap<String, Barrier>,
    next_conn: u64,
}

struct Barrier {
    world: u32,
    generation: u64,
    arrived: BTreeSet<u32>,
}

impl StoreServer {
    /// Binds `addr` and starts serving with `token`.
    pub fn bind(addr: impl ToSocketAddrs, token: &str) -> io::Result<Self> {
        Self::start(TcpListener::bind(addr)?, token)
    }

    /// Serves on an already bound listener (the launcher's reserved port) with `token`.
    pub fn start(listener: TcpListener, token: &str) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                token: token.to_string(),
                epoch: 0,
                closing: false,
                data: HashMap::new(),
                barriers: HashMap::new(),
                next_conn: 0,
            }),
            changed: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("slt-store-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(Self {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Starts a new attempt: drops all keys and barriers, switches to `token`, closes every
    /// open connection and refuses the blocked requests of the previous attempt.
    pub fn reset(&self, token: &str) {
        {
            let mut st = self.shared.lock();
            st.token = token.to_string();
            st.epoch += 1;
            st.data.clear();
            st.barriers.clear();
        }
        self.shared.changed.notify_all();
        self.shared.close_connections();
    }

    /// Number of keys currently stored (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shared.lock().data.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting, refuses blocked requests and closes all connections.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        {
            let mut st = self.shared.lock();
            if st.closing {
                return;
            }
            st.closing = true;
        }
        self.shared.changed.notify_all();
        self.shared.close_connections();
        // Wake the accept loop with a connection of our own; if that fails the thread stays
        // blocked in accept, harmlessly (it holds no resources anyone waits for).
        let wake = match self.addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            if let Some(h) = self.accept.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one connection thread must not take the store down for the others; the
        // state is a plain map that stays consistent between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close_connections(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for (_, c) in conns.drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Waits on the condition variable until `deadline`; `false` once it has passed.
    fn wait_until<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> (MutexGuard<'a, State>, bool) {
        let now = Instant::now();
        if now >= deadline {
            return (guard, false);
        }
        let (g, _) = self
            .changed
            .wait_timeout(guard, deadline - now)
            .unwrap_or_else(|p| p.into_inner());
        (g, true)
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.lock().closing {
            return;
        }
        let Ok(stream) = conn else { continue };
        let id = {
            let mut st = shared.lock();
            st.next_conn += 1;
            st.next_conn
        };
        {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            if conns.len() >= MAX_CONNECTIONS {
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            match stream.try_clone() {
                Ok(c) => conns.insert(id, c),
                Err(_) => continue,
            };
        }
        let _ = stream.set_nodelay(true);
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("slt-store-conn".into())
            .spawn(move || {
                serve_connection(stream, &conn_shared);
                let mut conns = conn_shared.conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.remove(&id);
            });
        if spawned.is_err() {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = conns.remove(&id) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(stream);
    while let Ok(Some(body)) = read_frame(&mut reader) {
        let (resp, close) = match decode_request(&body) {
            Err(e) => (Response::Refused(Refusal::BadRequest, e.0), true),
            Ok((token, req)) => answer(shared, &token, req),
        };
        if write_frame(&mut writer, &encode_response(&resp)).is_err() || close {
            return;
        }
    }
}

/// Executes one request; the flag says whether to close the connection afterwards.
fn answer(shared: &Shared, token: &str, req: Request) -> (Response, bool) {
    let mut st = shared.lock();
    if st.closing {
        let msg = "the store is shutting down (the launcher is exiting)".to_string();
        return (Response::Refused(Refusal::Closing, msg), true);
    }
    if token != st.token {
        let msg = format!(
            "run token mismatch: this store serves {:?}, the request carried {token:?} \
             (a worker of another run, or of an earlier attempt of this run)",
            st.token
        );
        return (Response::Refused(Refusal::TokenMismatch, msg), true);
    }
    let epoch = st.epoch;
    let resp = match req {
        Request::Ping => Response::Ok,
        Request::Set { key, value } => {
            st.data.insert(key, value);
            shared.changed.notify_all();
            Response::Ok
        }
        Request::Get { key, timeout } => {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(v) = st.data.get(&key) {
                    break Response::Value(v.clone());
                }
                let (g, more) = shared.wait_until(st, deadline);
                st = g;
                if let Some(r) = interrupted(&st, epoch) {
                    break r;
                }
                if !more {
                    break Response::Missing(vec![key]);
                }
            }
        }
        Request::Wait { keys, timeout } => {
            let deadline = Instant::now() + timeout;
            loop {
                let missing: Vec<String> = keys
                    .iter()
                    .filter(|k| !st.data.contains_key(*k))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    break Response::Ok;
                }
                let (g, more) = shared.wait_until(st, deadline);
                st = g;
                if let Some(r) = interrupted(&st, epoch) {
                    break r;
                }
                if !more {
                    break Response::Missing(missing);
                }
            }
        }
        Request::Add { key, delta } => {
            let current = match st.data.get(&key) {
                None => Ok(0),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "add on key {key:?}: its value {:?} is not a decimal integer",
                            String::from_utf8_lossy(&v[..v.len().min(64)])
                        )
                    }),
            };
            match current.and_then(|c| {
                c.checked_add(delta)
                    .ok_or_else(|| format!("add on key {key:?}: {c} + {delta} overflows i64"))
            }) {
                Ok(sum) => {
                    st.data.insert(key, sum.to_string().into_bytes());
                    shared.changed.notify_all();
                    Response::Int(sum)
                }
                Err(msg) => Response::Refused(Refusal::Invalid, msg),
            }
        }
        Request::CompareSet {
            key,
            expected,
            desired,
        } => {
            let matches = st.data.get(&key) == expected.as_ref();
            if matches {
                st.data.insert(key.clone(), desired);
                shared.changed.notify_all();
            }
            match st.data.get(&key) {
                Some(v) => Response::Value(v.clone()),
                None => Response::Missing(vec![key]),
            }
        }
        Request::Delete { key } => Response::Int(i64::from(st.data.remove(&key).is_some())),
        Request::Barrier {
            name,
            rank,
            world,
            timeout,
        } => barrier(shared, st, epoch, name, rank, world, timeout),
    };
    (resp, false)
}

/// A blocked request's answer when the store was reset or is closing meanwhile.
fn interrupted(st: &State, epoch: u64) -> Option<Response> {
    if st.closing {
        let msg = "the store shut down while the request waited".to_string();
        Some(Response::Refused(Refusal::Closing, msg))
    } else if st.epoch != epoch {
        let msg = "the store was reset for a new attempt while the request waited".to_string();
        Some(Response::Refused(Refusal::Closing, msg))
    } else {
        None
    }
}

fn barrier(
    shared: &Shared,
    mut st: MutexGuard<'_, State>,
    epoch: u64,
    name: String,
    rank: u32,
    world: u32,
    timeout: Duration,
) -> Response {
    let invalid = |msg: String| Response::Refused(Refusal::Invalid, msg);
    if world == 0 || rank >= world {
        return invalid(format!(
            "barrier {name:?}: rank {rank} is outside world size {world}"
        ));
    }
    let b = st.barriers.entry(name.clone()).or_insert(Barrier {
        world,
        generation: 0,
        arrived: BTreeSet::new(),
    });
    if b.arrived.is_empty() {
        b.world = world;
    } else if b.world != world {
        return invalid(format!(
            "barrier {name:?}: rank {rank} expects world size {world}, but ranks {:?} entered \
             it expecting {}",
            b.arrived, b.world
        ));
    }
    if !b.arrived.insert(rank) {
        return invalid(format!(
            "barrier {name:?}: rank {rank} entered twice (two processes with the same RANK?)"
        ));
    }
    let generation = b.generation;
    if b.arrived.len() == world as usize {
        b.generation += 1;
        b.arrived.clear();
        shared.changed.notify_all();
        return Response::Ok;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let (g, more) = shared.wait_until(st, deadline);
        st = g;
        if let Some(r) = interrupted(&st, epoch) {
            return r;
        }
        let Some(b) = st.barriers.get_mut(&name) else {
            return Response::Ok;
        };
        if b.generation != generation {
            return Response::Ok;
        }
        if !more {
            let arrived: Vec<u32> = b.arrived.iter().copied().collect();
            b.arrived.remove(&rank);
            return Response::BarrierTimeout { arrived, world };
        }
    }
}
