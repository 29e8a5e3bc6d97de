//! Multi-process test groups: the test binary re-executes itself once per rank with
//! `--exact worker --nocapture`; the `worker` test of each file dispatches on `DIST_TEST_ROLE`
//! and does nothing when it is unset. The test process hosts the rendezvous store, as
//! slt-launch would, and kills every worker that outlives the deadline (a hang is a failure,
//! never a stuck CI job).
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use slt::dist::{Collective, CollectiveError, StoreServer};
use tch::{Kind, Tensor};

/// The environment variable naming the role a re-executed worker plays.
pub const ROLE: &str = "DIST_TEST_ROLE";

/// How one worker ended.
#[derive(Debug)]
pub struct Outcome {
    /// The rank.
    pub rank: usize,
    /// Exit status (`None`: killed at the deadline).
    pub status: Option<ExitStatus>,
    /// When it exited, from the group's start.
    pub elapsed: Duration,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Outcome {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Everything it printed, for assertion messages.
    pub fn output(&self) -> String {
        format!(
            "rank {} ({:?} after {:?}):\n{}\n{}",
            self.rank, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A group of worker processes with a store hosted here.
pub struct Group {
    /// The store (kept alive until the group is dropped).
    pub store: StoreServer,
    children: Vec<(usize, Child, Instant)>,
    start: Instant,
}

/// The token the test stores use.
pub const TOKEN: &str = "dist-test/0";

/// Starts `world` workers playing `role`, with slt-launch's environment plus `extra`.
pub fn spawn(world: usize, role: &str, extra: &[(&str, &str)]) -> Group {
    let store = StoreServer::bind("127.0.0.1:0", TOKEN).expect("host the store");
    let port = store.port().to_string();
    let mut group = Group {
        store,
        children: Vec::new(),
        start: Instant::now(),
    };
    for rank in 0..world {
        let env = [
            ("RANK", rank.to_string()),
            ("WORLD_SIZE", world.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("LOCAL_WORLD_SIZE", world.to_string()),
            ("MASTER_ADDR", "127.0.0.1".to_string()),
            ("MASTER_PORT", port.clone()),
            ("SLT_RUN_TOKEN", TOKEN.to_string()),
            ("SLT_RUN_ID", "dist-test".to_string()),
        ];
        let mut cmd = worker_command(role);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd.envs(extra.iter().copied());
        group.push(rank, cmd);
    }
    group
}

/// A command that re-executes this test binary as a worker playing `role`, with the
/// distributed variables of the surrounding environment removed.
pub fn worker_command(role: &str) -> Command {
    let me = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(me);
    cmd.args(["--exact", "worker", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "SLT_RUN_TOKEN",
        "SLT_RUN_ID",
        "SLT_DIST_BACKEND",
        "SLT_DIST_TIMEOUT",
        "SLURM_PROCID",
        "SLURM_STEP_NUM_TASKS",
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

impl Group {
    /// A group whose workers the caller starts with [`Group::push`] (its store serves `token`).
    pub fn empty(token: &str) -> Self {
        Self {
            store: StoreServer::bind("127.0.0.1:0", token).expect("host the store"),
            children: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Starts `cmd` as `rank`.
    pub fn push(&mut self, rank: usize, mut cmd: Command) {
        let child = cmd.spawn().expect("spawn a worker");
        self.children.push((rank, child, Instant::now()));
    }

    /// Waits for every worker, killing those still running at `deadline` after the start.
    pub fn wait(mut self, deadline: Duration) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let readers: Vec<_> = self
            .children
            .iter_mut()
            .map(|(_, c, _)| {
                let out = c.stdout.take().map(drain);
                let err = c.stderr.take().map(drain);
                (out, err)
            })
            .collect();
        let mut done: Vec<Option<(Option<ExitStatus>, Duration)>> =
            self.children.iter().map(|_| None).collect();
        loop {
            for (i, (_, child, _)) in self.children.iter_mut().enumerate() {
                if done[i].is_none() {
                    if let Ok(Some(s)) = child.try_wait() {
                        done[i] = Some((Some(s), self.start.elapsed()));
                    }
                }
            }
            if done.iter().all(Option::is_some) {
                break;
            }
            if self.start.elapsed() > deadline {
                for (i, (_, child, _)) in self.children.iter_mut().enumerate() {
                    if done[i].is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                        done[i] = Some((None, self.start.elapsed()));
                    }
                }
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        for (((rank, _, _), (out, err)), d) in self.children.iter().zip(readers).zip(done) {
            let (status, elapsed) = d.unwrap_or((None, Duration::ZERO));
            let join = |h: Option<thread::JoinHandle<String>>| {
                h.and_then(|h| h.join().ok()).unwrap_or_default()
            };
            outcomes.push(Outcome {
                rank: *rank,
                status,
                elapsed,
                stdout: join(out),
                stderr: join(err),
            });
        }
        outcomes
    }
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Asserts that every worker exited 0.
pub fn assert_all_ok(outcomes: &[Outcome]) {
    if outcomes.iter().all(Outcome::ok) {
        return;
    }
    let all: Vec<String> = outcomes.iter().map(Outcome::output).collect();
    panic!("not every worker succeeded:\n{}", all.join("\n"));
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// Integer-valued (hence exactly summable) data of `rank`.
pub fn data(rank: usize, len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| ((i * 7 + rank * 13) % 1021) as f64 - 500.0 + rank as f64 * 0.5)
        .collect()
}

/// All-reduce of odd sizes (0, 1, 2, 7, 1000, 1000003) in f32 and f64 equals the serial sum;
/// random data gives bitwise identical results on all ranks; tensor helpers work.
pub fn check_all_reduce(c: &mut dyn Collective) {
    let (rank, world) = (c.rank(), c.world_size());
    for len in [0usize, 1, 2, 7, 1000, 1_000_003] {
        let per_rank: Vec<Vec<f64>> = (0..world).map(|r| data(r, len)).collect();
        let serial: Vec<f64> = (0..len)
            .map(|i| per_rank.iter().map(|d| d[i]).sum())
            .collect();
        let mut v64 = data(rank, len);
        c.all_reduce_sum_f64(&mut v64).expect("f64");
        assert!(
            v64 == serial,
            "f64 all_reduce of {len} differs from the serial sum"
        );
        let mut v32: Vec<f32> = data(rank, len).iter().map(|&x| x as f32).collect();
        c.all_reduce_sum_f32(&mut v32).expect("f32");
        assert!(
            v32.iter().zip(&serial).all(|(a, b)| f64::from(*a) == *b),
            "f32 all_reduce of {len} differs from the serial sum"
        );
    }
    // Random floats: every rank must end with the same bits.
    let mut noisy: Vec<f32> = (0..100_003u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ rank as u32) as f32).sin() * 1e-3)
        .collect();
    c.all_reduce_sum_f32(&mut noisy).expect("noisy");
    let bits: Vec<u8> = noisy.iter().flat_map(|x| x.to_le_bytes()).collect();
    let digest = fnv(&bits).to_le_bytes();
    let all = c.all_gather_bytes(&digest).expect("gather digests");
    assert!(
        all.iter().all(|d| d == &all[0]),
        "ranks disagree bitwise: {all:?}"
    );
    // Tensors: a contiguous 2-D one and a transposed view.
    let mut t =
        Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]) * (rank as f64 + 1.0);
    c.all_reduce_tensor(&mut t).expect("tensor");
    let tri = (world * (world + 1) / 2) as f32;
    let got = Vec::<f32>::try_from(t.view(-1)).expect("vec");
    assert_eq!(got, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0].map(|x| x * tri));
    let base = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).view([2, 2]);
    let mut tr = base.tr();
    c.all_reduce_tensor(&mut tr).expect("strided tensor");
    let got = Vec::<f64>::try_from(base.view(-1)).expect("vec");
    assert_eq!(got, [1.0, 2.0, 3.0, 4.0].map(|x| x * world as f64));
    let mut ints = Tensor::from_slice(&[1i64]);
    assert!(c.all_reduce_tensor(&mut ints).is_err(), "Int64 is refused");
}

/// All-gather of ragged blocks, broadcast from every root (multi-segment), barriers.
pub fn check_gather_broadcast(c: &mut dyn Collective) {
    let (rank, world) = (c.rank(), c.world_size());
    let mine = vec![rank as u8; rank * 3];
    let all = c.all_gather_bytes(&mine).expect("all_gather");
    assert_eq!(all.len(), world);
    for (r, bytes) in all.iter().enumerate() {
        assert_eq!(bytes, &vec![r as u8; r * 3], "block of rank {r}");
    }
    for root in 0..world {
        // 3 MiB + 5 bytes: several pipeline segments and a ragged last one.
        let len = 3 * (1 << 20) + 5;
        let mut buf = if rank == root {
            (0..len).map(|i| (i % 251) as u8 ^ root as u8).collect()
        } else {
            vec![0u8; len]
        };
        c.broadcast(&mut buf, root).expect("broadcast");
        assert!(
            buf.iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8 ^ root as u8),
            "broadcast from root {root}"
        );
        c.broadcast(&mut [], root).expect("empty broadcast");
    }
    let mut t = Tensor::full([3], rank as i64, (Kind::Int64, tch::Device::Cpu));
    c.broadcast_tensor(&mut t, world - 1)
        .expect("broadcast_tensor");
    assert_eq!(
        Vec::<i64>::try_from(&t).expect("vec"),
        vec![(world - 1) as i64; 3]
    );
    for _ in 0..3 {
        c.barrier().expect("barrier");
    }
    let err = c
        .broadcast(&mut [0u8], world)
        .expect_err("root outside the world");
    assert!(matches!(err, CollectiveError::Invalid { .. }), "{err}");
}

pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
