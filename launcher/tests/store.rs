//! The rendezvous store as workers see it through `slt-launch`: hosted by the (node-0)
//! launcher, reached through MASTER_ADDR/MASTER_PORT with SLT_RUN_TOKEN, reset between
//! attempts, shared across nodes.
//!
//! Workers are this test binary re-executed with `--exact worker_role`: the `worker_role`
//! "test" does nothing unless `STORE_TEST_ROLE` is set, in which case it plays that role.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use slt_launch::store::{ClientOptions, StoreClient, StoreError};

const BIN: &str = env!("CARGO_BIN_EXE_slt-launch");

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn env_u32(name: &str) -> u32 {
    env(name).parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn connect(token: &str) -> Result<StoreClient, StoreError> {
    let addr = format!("{}:{}", env("MASTER_ADDR"), env("MASTER_PORT"));
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(20),
        timeout: Duration::from_secs(60),
        reply_grace: Duration::from_secs(5),
    };
    StoreClient::connect(&addr, token, opts)
}

/// Every rank publishes its rank and node, waits for all, and prints what it saw.
fn exchange() {
    let (rank, world) = (env_u32("RANK"), env_u32("WORLD_SIZE"));
    let mut store = connect(&env("SLT_RUN_TOKEN")).expect("connect");
    let value = format!("{rank}@{}", env("GROUP_RANK"));
    store
        .set(&format!("addr/{rank}"), value.as_bytes())
        .expect("set");
    store.barrier("ready", rank, world).expect("barrier");
    let seen: Vec<String> = (0..world)
        .map(|r| {
            let v = store.try_get(&format!("addr/{r}")).expect("try_get");
            String::from_utf8(v.expect("set before the barrier")).expect("utf8")
        })
        .collect();
    println!("seen {}", seen.join(","));
}

/// Attempt 0 leaves a key behind and fails on rank 0; attempt 1 checks it starts clean.
fn restart() {
    let (rank, world) = (env_u32("RANK"), env_u32("WORLD_SIZE"));
    let token = env("SLT_RUN_TOKEN");
    let attempt = env_u32("TORCHELASTIC_RESTART_COUNT");
    assert_eq!(token, format!("{}/{attempt}", env("SLT_RUN_ID")));
    let mut store = connect(&token).expect("connect");
    if attempt == 0 {
        store.set("from_attempt0", b"stale").expect("set");
        store.barrier("written", rank, world).expect("barrier");
        if rank == 0 {
            std::process::exit(3);
        }
        // Blocks until the launcher stops this attempt.
        let _ = store.get("never");
        std::process::exit(1);
    }
    assert_eq!(store.try_get("from_attempt0").expect("try_get"), None);
    let start = Instant::now();
    let old = format!("{}/0", env("SLT_RUN_ID"));
    match connect(&old) {
        Err(StoreError::TokenMismatch { detail, .. }) => {
            assert!(detail.contains(&token), "{detail}");
        }
        other => panic!("the old attempt's token must be refused, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    store.barrier("done", rank, world).expect("barrier");
    println!("attempt1 clean");
}

#[test]
fn worker_role() {
    match std::env::var("STORE_TEST_ROLE").as_deref() {
        Ok("exchange") => exchange(),
        Ok("restart") => restart(),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
}

fn launcher(args: &[&str], role: &str) -> Command {
    let me = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--")
        .arg(me)
        .args(["--exact", "worker_role", "--nocapture", "--test-threads=1"])
        .env("STORE_TEST_ROLE", role)
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether a console line of `rank` contains `what` (the test harness prints its own words
/// before the worker's on the same line).
fn rank_said(stdout: &str, rank: u32, what: &str) -> bool {
    let prefix = format!("[rank{rank}]: ");
    stdout
        .lines()
        .any(|l| l.starts_with(&prefix) && l.contains(what))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

#[test]
fn workers_rendezvous_through_the_launcher_store() {
    let out = launcher(&["--nproc-per-node", "3"], "exchange")
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for rank in 0..3 {
        assert!(
            rank_said(&stdout, rank, "seen 0@0,1@0,2@0"),
            "rank {rank}:\n{stdout}"
        );
    }
}

#[test]
fn restart_gets_a_fresh_token_and_an_empty_store() {
    let args = [
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--run-id",
        "rs",
    ];
    let out = launcher(&args, "restart").output().expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("restart 1 of 1"), "{stderr}");
    for rank in 0..2 {
        assert!(
            rank_said(&stdout, rank, "attempt1 clean"),
            "rank {rank}:\n{stdout}"
        );
    }
}

#[test]
fn two_nodes_on_one_host_share_node_zero_store() {
    let port = free_port().to_string();
    let common = |node: &'static str| {
        let args = [
            "--nproc-per-node",
            "2",
            "--nnodes",
            "2",
            "--node-rank",
            node,
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            &port,
            "--run-id",
            "two-nodes",
        ];
        launcher(&args, "exchange")
    };
    // Node 1 starts first: its launcher waits for node 0's store to appear.
    let node1 = common("1").spawn().expect("node 1");
    std::thread::sleep(Duration::from_millis(500));
    let out0 = common("0").output().expect("node 0");
    let out1 = node1.wait_with_output().expect("node 1");
    for (node, out) in [(0, &out0), (1, &out1)] {
        let (stdout, stderr) = text(out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "node {node}:\n{stdout}\n{stderr}"
        );
        for local in 0..2 {
            let rank = node * 2 + local;
            assert!(
                rank_said(&stdout, rank, "seen 0@0,1@0,2@1,3@1"),
                "rank {rank} on node {node}:\n{stdout}"
            );
        }
    }
}

#[test]
fn a_node_without_a_store_or_with_another_run_id_fails_fast() {
    let port = free_port().to_string();
    let args = [
        "--nproc-per-node",
        "1",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-port",
        &port,
        "--run-id",
        "lonely",
    ];
    let start = Instant::now();
    let out = launcher(&args, "exchange")
        .env("SLT_STORE_CONNECT_TIMEOUT", "1")
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(
        stderr.contains("cannot reach the rendezvous store"),
        "{stderr}"
    );
    assert!(!stdout.contains("seen"), "no worker may start: {stdout}");

    // Node 0 of run "a" is up; node 1 claims run "b".
    let mut node0 = launcher(
        &[
            "--nproc-per-node",
            "1",
            "--nnodes",
            "2",
            "--node-rank",
            "0",
            "--master-port",
            &port,
            "--run-id",
            "a",
        ],
        "exchange",
    )
    .spawn()
    .expect("node 0");
    let args_b = [
        "--nproc-per-node",
        "1",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-port",
        &port,
        "--run-id",
        "b",
    ];
    let out = launcher(&args_b, "exchange").output().expect("run");
    let _ = node0.kill();
    let _ = node0.wait();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("run token mismatch") && stderr.contains("\"a/0\""),
        "{stderr}"
    );
}
