//! The `tcp` backend: a ring of persistent TCP connections, the CPU default.
//!
//! Set-up goes through the rendezvous store: every rank listens on an ephemeral port of the
//! interface through which it reaches the store, publishes `ip:port` under
//! `{prefix}/addr/{rank}`, connects to the next rank and accepts the previous one. Both sides
//! of a connection check a hello (magic, run token, world size, rank), so a stray connection
//! is ignored and a rank of another run cannot join. A ring barrier ends the set-up, so a
//! broken ring fails in `connect`, not in the first training step.
//!
//! Every operation first swaps a small header with the neighbours (sequence number, operation,
//! element count, root); a rank that calls something else fails with
//! [`CollectiveError::Mismatch`] naming the peer. After any failure the connections are shut
//! down, so the neighbours fail at once too (and theirs, around the ring), and every later
//! call returns [`CollectiveError::Broken`].

mod link;
mod ring;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use slt_launch::store::StoreClient;

use self::link::{Links, Transfer};
use self::ring::Clock;
use super::collective::{Collective, CollectiveError, Op};
use super::DistError;

const HELLO_MAGIC: &[u8; 4] = b"SLTR";

/// Settings of the TCP backend.
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// Longest time one collective may take before it fails (peer deaths are detected at
    /// once regardless). Default 30 min.
    pub timeout: Duration,
    /// How long set-up waits for the neighbours to connect. Default 5 min.
    pub setup_timeout: Duration,
    /// Address to listen on for ring connections; default: the local address of the store
    /// connection (the interface that reaches node 0).
    pub listen_ip: Option<IpAddr>,
    /// Store key prefix, to tell several groups of one attempt apart. Default `tcp`.
    pub key_prefix: String,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            setup_timeout: Duration::from_secs(300),
            listen_ip: None,
            key_prefix: "tcp".into(),
        }
    }
}

/// A member of a TCP ring. See the module documentation.
pub struct TcpCollective {
    rank: usize,
    world: usize,
    links: Option<Links>,
    timeout: Duration,
    seq: u64,
    scratch: Vec<u64>,
    broken: Option<String>,
}

impl std::fmt::Debug for TcpCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpCollective")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("seq", &self.seq)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl TcpCollective {
    /// Builds the ring for `rank` of `world` through `store`; `token` (the run token)
    /// authenticates the ring connections.
    pub fn connect(
        store: &mut StoreClient,
        rank: usize,
        world: usize,
        token: &str,
        opts: &TcpOptions,
    ) -> Result<Self, DistError> {
        if world == 0 || rank >= world {
            return Err(DistError::Config(format!(
                "rank {rank} is outside world size {world}"
            )));
        }
        let mut me = Self {
            rank,
            world,
            links: None,
            timeout: opts.timeout,
            seq: 0,
            scratch: Vec::new(),
            broken: None,
        };
        if world == 1 {
            return Ok(me);
        }
        let setup = |what: String| move |source: io::Error| DistError::Setup { what, source };
        let ip = match opts.listen_ip {
            Some(ip) => ip,
            None => store
                .local_addr()
                .map_err(setup("cannot read the store connection's address".into()))?
                .ip(),
        };
        let listener = TcpListener::bind((ip, 0))
            .map_err(setup(format!("rank {rank}: cannot listen on {ip}")))?;
        let addr = listener
            .local_addr()
            .map_err(setup("cannot read the listening address".into()))?;
        let key = |r: usize| format!("{}/addr/{r}", opts.key_prefix);
        store.set(&key(rank), addr.to_string().as_bytes())?;
        let (next, prev) = ((rank + 1) % world, (rank + world - 1) % world);
        let deadline = Instant::now() + opts.setup_timeout;
        let next_addr = store.get_timeout(&key(next), opts.setup_timeout)?;
        let next_addr: SocketAddr = std::str::from_utf8(&next_addr)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                DistError::Config(format!(
                    "store key {} holds {:?}, not an ip:port address",
                    key(next),
                    String::from_utf8_lossy(&next_addr)
                ))
            })?;
        let hello = hello(rank, world, token);
        let mut to_next = connect_with_retry(next_addr, deadline).map_err(setup(format!(
            "rank {rank}: cannot connect to rank {next} at {next_addr}"
        )))?;
        to_next
            .write_all(&hello)
            .map_err(setup(format!("rank {rank}: cannot greet rank {next}")))?;
        let from_prev =
            accept_peer(&listener, prev, world, token, deadline).map_err(|e| match e {
                AcceptError::Io(source) => DistError::Setup {
                    what: format!("rank {rank}: waiting for rank {prev} to connect"),
                    source,
                },
                AcceptError::Wrong(what) => DistError::Config(format!("rank {rank}: {what}")),
            })?;
        me.links = Some(
            Links::new(rank, next, prev, to_next, from_prev)
                .map_err(setup("cannot configure the ring sockets".into()))?,
        );
        me.barrier()?;
        Ok(me)
    }

    /// Runs `body` as operation `op`: refuses if the group is broken, swaps the header with
    /// the neighbours, and marks the group broken (shutting the sockets) on any error.
    fn run<R>(
        &mut self,
        op: Op,
        count: u64,
        root: u32,
        body: impl FnOnce(&Links, usize, &mut Vec<u64>, Clock) -> Result<R, CollectiveError>,
        world_one: impl FnOnce() -> R,
    ) -> Result<R, CollectiveError> {
        if let Some(cause) = &self.broken {
            return Err(CollectiveError::Broken {
                rank: self.rank,
                op,
                cause: cause.clone(),
            });
        }
        let Some(links) = &self.links else {
            return Ok(world_one());
        };
        let clock = Clock {
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
        };
        self.seq += 1;
        let header = Header {
            seq: self.seq,
            op,
            count,
            root,
        };
        let result = swap_headers(links, header, clock)
            .and_then(|()| body(links, self.world, &mut self.scratch, clock));
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
            links.shut_down();
        }
        result
    }
}

impl Collective for TcpCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn backend(&self) -> &'static str {
        "tcp"
    }

    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        let op = Op::AllReduceF32;
        let n = buf.len() as u64;
        self.run(
            op,
            n,
            0,
            |l, w, s, c| ring::all_reduce(l, w, buf, s, op, c),
            || (),
        )
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), CollectiveError> {
        let op = Op::AllReduceF64;
        let n = buf.len() as u64;
        self.run(
            op,
            n,
            0,
            |l, w, s, c| ring::all_reduce(l, w, buf, s, op, c),
            || (),
        )
    }

    fn broadcast(&mut self, buf: &mut [u8], root: usize) -> Result<(), CollectiveError> {
        let op = Op::Broadcast;
        if root >= self.world {
            return Err(CollectiveError::Invalid {
                rank: self.rank,
                op,
                what: format!("root {root} is outside world size {}", self.world),
            });
        }
        let n = buf.len() as u64;
        self.run(
            op,
            n,
            root as u32,
            |l, w, _, c| ring::broadcast(l, w, buf, root, op, c),
            || (),
        )
    }

    fn all_gather_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let op = Op::AllGather;
        let rank = self.rank;
        self.run(
            op,
            0,
            0,
            |l, w, _, c| {
                let mut lens = vec![0u8; 8 * w];
                lens[8 * rank..8 * rank + 8].copy_from_slice(&(data.len() as u64).to_le_bytes());
                let bounds: Vec<_> = (0..w).map(|i| 8 * i..8 * i + 8).collect();
                ring::all_gather_blocks(l, w, &mut lens, &bounds, op, c)?;
                let mut bounds = Vec::with_capacity(w);
                let mut at = 0usize;
                for chunk in lens.chunks_exact(8) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    let len = usize::try_from(u64::from_le_bytes(b)).unwrap_or(usize::MAX);
                    let end = at
                        .checked_add(len)
                        .ok_or_else(|| CollectiveError::Invalid {
                            rank,
                            op,
                            what: "gathered lengths overflow".into(),
                        })?;
                    bounds.push(at..end);
                    at = end;
                }
                let mut all = vec![0u8; at];
                all[bounds[rank].clone()].copy_from_slice(data);
                ring::all_gather_blocks(l, w, &mut all, &bounds, op, c)?;
                Ok(bounds.into_iter().map(|b| all[b].to_vec()).collect())
            },
            || vec![data.to_vec()],
        )
    }

    fn barrier(&mut self) -> Result<(), CollectiveError> {
        let op = Op::Barrier;
        self.run(
            op,
            0,
            0,
            |l, w, _, c| {
                // One byte per rank: an empty block would move nothing and synchronise nothing.
                let mut flags = vec![1u8; w];
                let bounds: Vec<_> = (0..w).map(|i| i..i + 1).collect();
                ring::all_gather_blocks(l, w, &mut flags, &bounds, op, c)
            },
            || (),
        )
    }
}

/// The per-operation header swapped with the neighbours.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Header {
    seq: u64,
    op: Op,
    count: u64,
    root: u32,
}

impl Header {
    fn encode(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8] = op_code(self.op);
        b[12..16].copy_from_slice(&self.root.to_le_bytes());
        b[16..].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    fn describe(bytes: &[u8; 24]) -> String {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let mut r = [0u8; 4];
        r.copy_from_slice(&bytes[12..16]);
        let op = ALL_OPS
            .iter()
            .find(|o| op_code(**o) == bytes[8])
            .map_or_else(|| format!("unknown op {}", bytes[8]), |o| o.to_string());
        format!(
            "{op} (operation #{}, {} elements, root {})",
            u64_at(0),
            u64_at(16),
            u32::from_le_bytes(r)
        )
    }
}

const ALL_OPS: [Op; 6] = [
    Op::Setup,
    Op::AllReduceF32,
    Op::AllReduceF64,
    Op::Broadcast,
    Op::AllGather,
    Op::Barrier,
];

fn op_code(op: Op) -> u8 {
    match op {
        Op::Setup => 0,
        Op::AllReduceF32 => 1,
        Op::AllReduceF64 => 2,
        Op::Broadcast => 3,
        Op::AllGather => 4,
        Op::Barrier => 5,
    }
}

fn swap_headers(links: &Links, mine: Header, clock: Clock) -> Result<(), CollectiveError> {
    let out = mine.encode();
    let mut theirs = [0u8; 24];
    let t = Transfer {
        send: vec![&out],
        recv: vec![&mut theirs],
    };
    links.exchange(t, mine.op, clock.deadline, clock.timeout)?;
    if theirs != out {
        return Err(CollectiveError::Mismatch {
            rank: links.rank,
            op: mine.op,
            peer: links.prev,
            mine: Header::describe(&out),
            theirs: Header::describe(&theirs),
        });
    }
    Ok(())
}

fn hello(rank: usize, world: usize, token: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + token.len());
    h.extend_from_slice(HELLO_MAGIC);
    h.extend_from_slice(&(rank as u32).to_le_bytes());
    h.extend_from_slice(&(world as u32).to_le_bytes());
    h.extend_from_slice(&(token.len() as u32).to_le_bytes());
    h.extend_from_slice(token.as_bytes());
    h
}

fn connect_with_retry(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let mut delay = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(
            &addr,
            left.clamp(Duration::from_millis(10), Duration::from_secs(5)),
        ) {
            Ok(s) => return Ok(s),
            Err(e) if left.is_zero() => return Err(e),
            Err(_) => {
                std::thread::sleep(delay.min(left));
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}

enum AcceptError {
    Io(io::Error),
    Wrong(String),
}

/// Accepts connections until one greets as rank `prev` of this run; strangers (wrong magic
/// or token) are dropped.
fn accept_peer(
    listener: &TcpListener,
    prev: usize,
    world: usize,
    token: &str,
    deadline: Instant,
) -> Result<TcpStream, AcceptError> {
    listener.set_nonblocking(true).map_err(AcceptError::Io)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AcceptError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "no connection from the previous rank before the set-up timeout",
            )));
        }
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5).min(left));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(AcceptError::Io(e)),
        };
        let greeting = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(left.min(Duration::from_secs(30)))))
            .and_then(|()| read_hello(&mut stream, token));
        let Ok(Some((rank, their_world))) = greeting else {
            continue; // a stranger or a broken connection; keep waiting for the real peer
        };
        if their_world != world || rank != prev {
            return Err(AcceptError::Wrong(format!(
                "rank {rank} of world {their_world} connected, expected rank {prev} of world \
                 {world} (inconsistent RANK/WORLD_SIZE between processes?)"
            )));
        }
        if stream.set_read_timeout(None).is_ok() {
            return Ok(stream);
        }
    }
}

/// Reads a hello; `None` when the magic or the token is not ours.
fn read_hello(stream: &mut TcpStream, token: &str) -> io::Result<Option<(usize, usize)>> {
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed)?;
    let u32_at =
        |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    if &fixed[..4] != HELLO_MAGIC || u32_at(12) as usize != token.len() {
        return Ok(None);
    }
    let mut theirs = vec![0u8; token.len()];
    stream.read_exact(&mut theirs)?;
    if theirs != token.as_bytes() {
        return Ok(None);
    }
    Ok(Some((u32_at(4) as usize, u32_at(8) as usize)))
}
