//! The `nccl` backend (only with `--features nccl`). On any machine: NCCL is loaded from
//! torch's `libnccl.so.2` through the `libnccl.so` shim and a re-execution, its version is
//! torch 2.13's (2.29), and a machine without GPU gets clean errors, never panics. With a CUDA
//! device: a one-rank communicator passes the collective checks on CPU buffers and on CUDA
//! tensors in place.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --features nccl --test dist_nccl
//! ```
#![cfg(feature = "nccl")]

mod dist_support;

use std::time::Duration;

use dist_support::{
    assert_all_ok, check_all_reduce, check_gather_broadcast, worker_command, Group, Outcome, ROLE,
};
use slt::dist::nccl::{prepare, NcclCollective, NcclOptions, ENV_NCCL_LIBRARY, ENV_NCCL_REEXEC};
use slt::dist::{ClientOptions, Collective, DistError, StoreClient, StoreServer};
use tch::{Device, Kind, Tensor};

/// A one-rank communicator with an in-process store, or the error that says why not.
fn one_rank() -> Result<NcclCollective, DistError> {
    let server = StoreServer::bind("127.0.0.1:0", "nccl-test/0").expect("host the store");
    let addr = format!("127.0.0.1:{}", server.port());
    let mut store =
        StoreClient::connect(&addr, "nccl-test/0", ClientOptions::default()).expect("store");
    NcclCollective::connect(&mut store, 0, 1, 0, &NcclOptions::default())
}

fn role_prepare() {
    let runtime = prepare().expect("NCCL becomes loadable");
    println!("nccl version {} shim {:?}", runtime.version, runtime.shim);
    assert!(
        (22900..23000).contains(&runtime.version),
        "expected torch 2.13's NCCL 2.29, got {}",
        runtime.version
    );
    match one_rank() {
        Ok(mut c) => {
            println!("gpu: device {}", c.device());
            check_all_reduce(&mut c);
            check_gather_broadcast(&mut c);
            // In place on device memory.
            let dev = Device::Cuda(c.device());
            let mut t = Tensor::arange(10, (Kind::Float, dev));
            let before = t.data_ptr();
            c.all_reduce_tensor(&mut t).expect("CUDA all-reduce");
            assert_eq!(t.data_ptr(), before, "reduced in place");
            let got = Vec::<f32>::try_from(t.to_device(Device::Cpu)).expect("vec");
            assert_eq!(got, (0..10).map(|i| i as f32).collect::<Vec<_>>());
            println!("gpu checks ok");
        }
        Err(e) => {
            assert!(
                matches!(e, DistError::Unavailable { .. }),
                "a GPU-less machine must give Unavailable: {e}"
            );
            println!("no gpu: {e}");
        }
    }
}

fn role_expect_error(needles: &[&str]) {
    let err = prepare().expect_err("prepare must fail");
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing in: {text}");
    }
    println!("error ok: {text}");
}

#[test]
fn worker() {
    match std::env::var(ROLE).as_deref() {
        Ok("prepare") => role_prepare(),
        Ok("no_reexec") => role_expect_error(&["LD_LIBRARY_PATH=", "libnccl.so", ENV_NCCL_REEXEC]),
        Ok("bad_library") => role_expect_error(&["/nonexistent/libnccl.so.2", ENV_NCCL_LIBRARY]),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
}

fn run(role: &str, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = worker_command(role);
    cmd.env_remove("SLT_NCCL_SHIM")
        .env_remove(ENV_NCCL_LIBRARY)
        .env_remove(ENV_NCCL_REEXEC)
        .envs(env.iter().copied());
    let mut g = Group::empty("unused");
    g.push(0, cmd);
    let mut out = g.wait(Duration::from_secs(120));
    assert_all_ok(&out);
    out.remove(0)
}

#[test]
fn nccl_loads_through_the_shim_and_fails_cleanly_without_gpu() {
    let out = run("prepare", &[]);
    assert!(out.stdout.contains("nccl version 229"), "{}", out.output());
    assert!(
        out.stdout.contains("gpu checks ok") || out.stdout.contains("no gpu: "),
        "{}",
        out.output()
    );
    eprintln!("{}", out.stdout);
}

#[test]
fn without_reexecution_the_fix_is_named() {
    let out = run("no_reexec", &[(ENV_NCCL_REEXEC, "0")]);
    assert!(out.stdout.contains("error ok"), "{}", out.output());
}

#[test]
fn a_wrong_library_path_is_named() {
    let out = run(
        "bad_library",
        &[(ENV_NCCL_LIBRARY, "/nonexistent/libnccl.so.2")],
    );
    assert!(out.stdout.contains("error ok"), "{}", out.output());
}
