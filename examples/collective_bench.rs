//! All-reduce benchmark: time and bus bandwidth of a sum all-reduce of `f32` buffers from
//! 1 KiB to 256 MiB, for the TCP ring and (built with `--features mpi`) MPI_Allreduce.
//!
//! ```text
//! cargo build --release --example collective_bench [--features mpi]
//! # TCP ring with 2 ranks (this binary starts the ranks and hosts the store itself):
//! target/release/examples/collective_bench --ranks 2
//! # the same under slt-launch:
//! slt-launch --nproc-per-node 2 -- target/release/examples/collective_bench
//! # MPI_Allreduce (MPICH):
//! mpirun.mpich -np 2 target/release/examples/collective_bench --mpi
//! ```
//!
//! Rank 0 prints one line per size: bytes, iterations, mean time per all-reduce, algorithm
//! bandwidth (bytes / time) and bus bandwidth (algbw · 2(n−1)/n, nccl-tests' definition, which
//! is comparable across world sizes). `--max-bytes` caps the largest size.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slt::dist::{self, Collective, StoreServer};

const MIN_BYTES: usize = 1 << 10;
const DEFAULT_MAX_BYTES: usize = 256 << 20;

struct Args {
    ranks: Option<usize>,
    mpi: bool,
    max_bytes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        ranks: None,
        mpi: false,
        max_bytes: DEFAULT_MAX_BYTES,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .and_then(|v| v.parse::<usize>().map_err(|e| format!("{name} {v:?}: {e}")))
        };
        match a.as_str() {
            "--ranks" => args.ranks = Some(value("--ranks")?),
            "--max-bytes" => args.max_bytes = value("--max-bytes")?,
            "--mpi" => args.mpi = true,
            "-h" | "--help" => {
                return Err("usage: collective_bench [--ranks N | --mpi] [--max-bytes B]".into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Iterations for `bytes`: about 512 MiB moved per size, between 5 and 200.
fn iterations(bytes: usize) -> usize {
    ((512usize << 20) / bytes).clamp(5, 200)
}

fn sizes(max: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut b = MIN_BYTES;
    while b <= max {
        v.push(b);
        b *= 4;
    }
    v
}

fn report(rank: usize, world: usize, bytes: usize, iters: usize, elapsed: Duration) {
    if rank != 0 {
        return;
    }
    let t = elapsed.as_secs_f64() / iters as f64;
    let algbw = bytes as f64 / t / 1e9;
    let busbw = algbw * 2.0 * (world as f64 - 1.0) / world as f64;
    println!(
        "{bytes:>11} B  {iters:>4} it  {:>10.3} ms  algbw {algbw:>7.3} GB/s  busbw {busbw:>7.3} GB/s",
        t * 1e3
    );
}

fn run_collective(c: &mut dyn Collective, max: usize) -> Result<(), String> {
    let (rank, world) = (c.rank(), c.world_size());
    if rank == 0 {
        println!(
            "# backend {} · {world} ranks · f32 sum all-reduce",
            c.backend()
        );
    }
    for bytes in sizes(max) {
        let mut buf = vec![1.0f32; bytes / 4];
        let iters = iterations(bytes);
        for _ in 0..2 {
            c.all_reduce_sum_f32(&mut buf).map_err(|e| e.to_string())?;
        }
        c.barrier().map_err(|e| e.to_string())?;
        let start = Instant::now();
        for _ in 0..iters {
            c.all_reduce_sum_f32(&mut buf).map_err(|e| e.to_string())?;
        }
        report(rank, world, bytes, iters, start.elapsed());
    }
    Ok(())
}

#[cfg(feature = "mpi")]
fn run_mpi(max: usize) -> Result<(), String> {
    use mpi::collective::{CommunicatorCollectives, SystemOperation};
    use mpi::topology::Communicator;
    let group = dist::mpi::MpiCollective::init(None).map_err(|e| e.to_string())?;
    let world = group.communicator();
    let (rank, n) = (world.rank() as usize, world.size() as usize);
    if rank == 0 {
        println!("# MPI_Allreduce (separate send/receive buffers) · {n} ranks · f32 sum");
    }
    for bytes in sizes(max) {
        let send = vec![1.0f32; bytes / 4];
        let mut recv = vec![0.0f32; bytes / 4];
        let iters = iterations(bytes);
        for _ in 0..2 {
            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
        }
        world.barrier();
        let start = Instant::now();
        for _ in 0..iters {
            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
        }
        report(rank, n, bytes, iters, start.elapsed());
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn run_mpi(_max: usize) -> Result<(), String> {
    Err(
        "built without the `mpi` feature (cargo build --example collective_bench --features mpi)"
            .into(),
    )
}

/// Starts `ranks` copies of this binary with slt-launch's environment and a store hosted here.
fn spawn_ranks(ranks: usize, max: usize) -> Result<(), String> {
    let token = "collective-bench/0";
    let store = StoreServer::bind("127.0.0.1:0", token).map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for rank in 0..ranks {
        let child = Command::new(&me)
            .args(["--max-bytes", &max.to_string()])
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", ranks.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", ranks.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", store.port().to_string())
            .env("SLT_RUN_TOKEN", token)
            .env("OMP_NUM_THREADS", "1")
            .stdout(if rank == 0 {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|e| format!("cannot start rank {rank}: {e}"))?;
        children.push(child);
    }
    let mut failed = Vec::new();
    for (rank, mut c) in children.into_iter().enumerate() {
        match c.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => failed.push(format!("rank {rank}: {s}")),
            Err(e) => failed.push(format!("rank {rank}: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

fn main() {
    let result = parse_args().and_then(|args| {
        if args.mpi {
            run_mpi(args.max_bytes)
        } else if let Some(n) = args.ranks {
            spawn_ranks(n, args.max_bytes)
        } else {
            let mut pg = dist::init_from_env().map_err(|e| e.to_string())?;
            run_collective(pg.collective(), args.max_bytes)
        }
    });
    if let Err(e) = result {
        eprintln!("collective_bench: {e}");
        std::process::exit(1);
    }
}
