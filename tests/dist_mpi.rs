//! The `mpi` backend under a real `mpirun` (only with `--features mpi`): the same collective
//! checks as the TCP ring with 3 ranks, rank and world taken from MPI, and the `srun` without
//! `--mpi=` mistake (MPI and the launcher disagree on the world size) reported clearly.
//!
//! `SLT_MPIRUN` names the launcher (default `mpirun`; with both MPICH and Open MPI installed,
//! use the one matching the MPI the crate was built against, e.g. `mpirun.mpich`).
#![cfg(feature = "mpi")]

mod dist_support;

use std::time::Duration;

use dist_support::{
    assert_all_ok, check_all_reduce, check_gather_broadcast, worker_command, Group, ROLE,
};
use slt::dist::{self, Backend, DistError};

fn role_collectives() {
    let mut pg = dist::init_from_env().expect("init");
    assert_eq!(
        pg.backend(),
        Backend::Mpi,
        "mpirun defaults to the mpi backend"
    );
    assert_eq!(pg.env().launcher, dist::Launcher::Mpi);
    let c = pg.collective();
    assert_eq!(c.backend(), "mpi");
    check_all_reduce(c);
    check_gather_broadcast(c);
    println!("mpi ok");
}

fn role_wrong_world() {
    // A singleton MPI process told by its environment that it is rank 0 of 2.
    let err = dist::init_from_env().expect_err("MPI says world 1");
    assert!(matches!(err, DistError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("--mpi=pmi2"), "{err}");
    println!("wrong world ok: {err}");
}

#[test]
fn worker() {
    match std::env::var(ROLE).as_deref() {
        Ok("collectives") => role_collectives(),
        Ok("wrong_world") => role_wrong_world(),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
}

#[test]
fn three_ranks_under_mpirun() {
    let mpirun = std::env::var("SLT_MPIRUN").unwrap_or_else(|_| "mpirun".into());
    let worker = worker_command("collectives");
    let mut cmd = std::process::Command::new(&mpirun);
    cmd.args(["-np", "3"])
        .arg(worker.get_program())
        .args(worker.get_args());
    for (k, v) in worker.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut g = Group::empty("unused");
    g.push(0, cmd);
    let out = g.wait(Duration::from_secs(180));
    assert_all_ok(&out);
    assert_eq!(
        out[0].stdout.matches("mpi ok").count(),
        3,
        "{}",
        out[0].output()
    );
}

#[test]
fn mpi_and_launcher_disagreeing_on_the_world_is_an_error() {
    let mut cmd = worker_command("wrong_world");
    cmd.envs([
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("SLT_DIST_BACKEND", "mpi"),
    ]);
    let mut g = Group::empty("unused");
    g.push(0, cmd);
    let out = g.wait(Duration::from_secs(60));
    assert_all_ok(&out);
}
