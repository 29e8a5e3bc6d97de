//! Environment detection for each launcher.

use std::collections::HashMap;

use super::*;

fn env_of(vars: &[(&str, &str)]) -> Result<DistEnv, EnvError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    DistEnv::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn nothing_set_is_a_single_process() {
    let e = env_of(&[]).expect("single");
    assert_eq!(e, DistEnv::single());
    assert!(!e.is_distributed());
    assert_eq!(e.store_addr(), None);
    // A SLURM batch script (no job step) is not a multi-process world either.
    let e = env_of(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")]).expect("batch");
    assert_eq!(e.launcher, Launcher::Single);
}

#[test]
fn slt_launch_variables() {
    let e = env_of(&[
        ("RANK", "5"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "4"),
        ("GROUP_RANK", "1"),
        ("MASTER_ADDR", "10.1.2.3"),
        ("MASTER_PORT", "29400"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
        ("SLT_RUN_ID", "abc"),
        ("SLT_RUN_TOKEN", "abc/2"),
        ("SLT_DIST_BACKEND", "TCP"),
        // Ignored: slt-launch's variables take precedence over the surrounding srun step.
        ("SLURM_PROCID", "0"),
        ("SLURM_STEP_NUM_TASKS", "2"),
    ])
    .expect("launcher env");
    assert_eq!(e.launcher, Launcher::Torchrun);
    assert_eq!(
        (e.rank, e.world_size, e.local_rank, e.local_world_size),
        (5, 8, 1, 4)
    );
    assert_eq!(e.node_rank, 1);
    assert_eq!(e.store_addr().as_deref(), Some("10.1.2.3:29400"));
    assert_eq!(e.restart_count, 2);
    assert_eq!(e.run_token.as_deref(), Some("abc/2"));
    assert_eq!(e.backend.as_deref(), Some("tcp"));
    let v6 = env_of(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "::1"),
        ("MASTER_PORT", "1"),
    ])
    .expect("v6");
    assert_eq!(v6.store_addr().as_deref(), Some("[::1]:1"));
}

#[test]
fn errors_name_the_variable() {
    let err = env_of(&[("RANK", "0")]).expect_err("no world size");
    assert!(err.to_string().contains("WORLD_SIZE is not set"), "{err}");
    let err = env_of(&[("RANK", "x"), ("WORLD_SIZE", "2")]).expect_err("bad rank");
    assert!(err.to_string().contains("RANK=\"x\""), "{err}");
    let err = env_of(&[("RANK", "2"), ("WORLD_SIZE", "2")]).expect_err("rank too big");
    assert!(err.to_string().contains("below the world size 2"), "{err}");
    let err = env_of(&[("RANK", "0"), ("WORLD_SIZE", "0")]).expect_err("world 0");
    assert!(err.to_string().contains("WORLD_SIZE"), "{err}");
    let err =
        env_of(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "70000")]).expect_err("port");
    assert!(err.to_string().contains("MASTER_PORT=\"70000\""), "{err}");
    let err = env_of(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "1"),
    ])
    .expect_err("local rank");
    assert!(err.to_string().contains("LOCAL_RANK"), "{err}");
}

#[test]
fn srun_step_variables() {
    let e = env_of(&[
        ("SLURM_PROCID", "3"),
        ("SLURM_STEP_NUM_TASKS", "4"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NODEID", "1"),
        ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"),
        ("SLURM_STEP_NODELIST", "gpu[07-08]"),
        ("SLURM_JOB_ID", "123456"),
        ("SLURM_STEP_ID", "0"),
    ])
    .expect("srun");
    assert_eq!(e.launcher, Launcher::Slurm);
    assert_eq!(
        (e.rank, e.world_size, e.local_rank, e.local_world_size),
        (3, 4, 1, 2)
    );
    assert_eq!(e.master_addr, "gpu07");
    assert_eq!(e.master_port, Some(15000 + 3456));
    assert_eq!(e.run_id, "slurm-123456.0");
    let e = env_of(&[
        ("SLURM_PROCID", "0"),
        ("SLURM_STEP_NUM_TASKS", "2"),
        ("SLURM_STEP_NODELIST", "n1"),
        ("SLURM_JOB_ID", "7"),
        ("MASTER_ADDR", "head"),
        ("MASTER_PORT", "29500"),
    ])
    .expect("overrides");
    assert_eq!(e.store_addr().as_deref(), Some("head:29500"));
}

#[test]
fn mpirun_variables() {
    let ompi = env_of(&[
        ("OMPI_COMM_WORLD_RANK", "1"),
        ("OMPI_COMM_WORLD_SIZE", "2"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ("MASTER_PORT", "29501"),
    ])
    .expect("ompi");
    assert_eq!(ompi.launcher, Launcher::Mpi);
    assert_eq!((ompi.rank, ompi.world_size, ompi.local_rank), (1, 2, 1));
    assert_eq!(ompi.store_addr().as_deref(), Some("127.0.0.1:29501"));
    let hydra = env_of(&[("PMI_RANK", "2"), ("PMI_SIZE", "3")]).expect("hydra");
    assert_eq!((hydra.rank, hydra.world_size), (2, 3));
    assert_eq!(hydra.master_port, None);
}

#[test]
fn slurm_node_lists() {
    assert_eq!(first_host("gpu[07-09,12],cpu1").as_deref(), Some("gpu07"));
    assert_eq!(first_host("node3,node4").as_deref(), Some("node3"));
    assert_eq!(first_host("single").as_deref(), Some("single"));
    assert_eq!(first_host("a[1]").as_deref(), Some("a1"));
    assert_eq!(first_host("a[x]"), None);
    assert_eq!(first_host(""), None);
}
