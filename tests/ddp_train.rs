//! Data-parallel `slt train` end to end, on a tiny from-scratch Gloss2Text model (no
//! BatchNorm, dropout 0) over the synthetic set of `common::tiny_set` (6 training pairs).
//!
//! - Equivalence: 2 ranks × batch 2 under `slt-launch` (tcp) end with the parameters of 1
//!   process × batch 4, within 1e-5, while 1 process × batch 2 ends far away (so the check can
//!   fail). Why the global batches are the same samples: the sampler draws one permutation per
//!   (seed, epoch), independent of the world size; with 2 ranks rank r takes positions r, r+2, …
//!   of it, so the first batch of rank 0 is positions {0, 2} and of rank 1 {1, 3} — together
//!   positions 0..4, the first batch of the single process; the short last batch is {4}+{5}
//!   against {4, 5}. The loss is a sum over tokens divided by the local batch size, so the mean
//!   of two equal-size halves' gradients is the gradient of the whole batch. The launched run
//!   also writes exactly the files a single process writes (one set of checkpoints, one metrics
//!   log with one line per step).
//! - Kill: SIGKILL to one worker mid-run → no worker of the run is left 10 s later, and the
//!   launcher exits 137 naming that rank; with `--max-restarts 1` the group restarts, resumes
//!   from the newest checkpoint and ends with the parameters of an uninterrupted 2-rank run.
//! - Two launchers started at once (no `--master-port`) both train to the end.
//! - With `--features mpi`: the equivalence under `mpirun -np 2` (`$SLT_MPIRUN`, default
//!   `mpirun`).
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test ddp_train
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --features mpi --test ddp_train
//! ```

mod common;
mod ddp_support;

use std::path::Path;
use std::time::{Duration, Instant};

use ddp_support::{
    events, launch_train, max_abs_diff, metrics, model_tensors, poll, train_single, tree,
    workers_of, write_g2t_config, G2tRun,
};

/// Parameters of the 2-rank and the 1-rank run must agree this closely.
const TOLERANCE: f64 = 1e-5;
/// Generous limits for a loaded 2-core machine; a hang fails the test instead of blocking CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// 3 epochs of 2 steps with a global batch of 4; validation after epochs 1 and 2.
fn short(batch_size: usize) -> G2tRun {
    G2tRun {
        batch_size,
        total_epoch: 3,
        validation_freq: 1,
        keep_last_ckpts: 0,
    }
}

/// 100 epochs (200 steps of 2 per rank): long enough to be killed mid-run; validation only at
/// the end, the 2 newest checkpoints kept.
fn long() -> G2tRun {
    G2tRun {
        batch_size: 2,
        total_epoch: 100,
        validation_freq: 1000,
        keep_last_ckpts: 2,
    }
}

fn unique_run_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("ddp-{what}-{}-{nanos}", std::process::id())
}

/// The reference (1 process, batch 4) and the sensitivity run (1 process, batch 2) next to a
/// data-parallel run's `model_dir`; asserts the equivalence and returns nothing.
fn assert_equivalent_to_single(dir: &Path, data: &Path, parallel_dir: &Path, what: &str) {
    let (reference_config, reference_dir) = write_g2t_config(dir, data, "single_b4", &short(4));
    train_single(&reference_config);
    let last = "epoch_02";
    let reference = model_tensors(&reference_dir, last);
    let (diff, name) = max_abs_diff(&model_tensors(parallel_dir, last), &reference);
    eprintln!("{what}: max |2 ranks × 2 − 1 × 4| = {diff:e} (at {name})");
    assert!(
        diff <= TOLERANCE,
        "{what}: the 2-rank run differs from the 1-rank run with the same global batch: \
         `{name}` by {diff:e} (> {TOLERANCE:e})"
    );

    // The comparison can fail: half the global batch trains to clearly different weights.
    let (half_config, half_dir) = write_g2t_config(dir, data, "single_b2", &short(2));
    train_single(&half_config);
    let (apart, at) = max_abs_diff(&model_tensors(&half_dir, last), &reference);
    assert!(
        apart > 100.0 * TOLERANCE,
        "batch 2 and batch 4 end only {apart:e} apart (at {at}): the test cannot tell DDP from \
         no DDP"
    );

    // One set of files: exactly what the single process wrote.
    let mut single_files = tree(&reference_dir);
    let mut parallel_files = tree(parallel_dir);
    single_files.remove("config.yaml");
    parallel_files.remove("config.yaml");
    assert_eq!(
        parallel_files, single_files,
        "{what}: the data-parallel run wrote other files than a single process"
    );
    let lines = metrics(parallel_dir);
    let steps: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "train")
        .filter_map(|l| l["step"].as_u64())
        .collect();
    assert_eq!(
        steps,
        (1..=6).collect::<Vec<_>>(),
        "{what}: one train line per step"
    );
    assert_eq!(
        events(&lines),
        events(&metrics(&reference_dir)),
        "{what}: the metrics log has other events than a single process's"
    );
}

#[test]
fn two_tcp_ranks_equal_one_rank_with_the_same_global_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());
    let (config, model_dir) = write_g2t_config(dir.path(), &data, "launched_2x2", &short(2));
    let run = launch_train(2, &unique_run_id("eq"), &["--backend", "tcp"], &config);
    let status = run.wait(RUN_TIMEOUT);
    assert!(
        status.success(),
        "slt-launch failed: {status}\n{}",
        run.output()
    );
    let output = run.output();
    assert!(
        output.contains("[rank1]: rank 1/2") && output.contains("backend Tcp"),
        "the workers did not form a 2-rank tcp group:\n{output}"
    );
    assert_equivalent_to_single(dir.path(), &data, &model_dir, "tcp");
}

#[cfg(feature = "mpi")]
#[test]
fn two_mpi_ranks_equal_one_rank_with_the_same_global_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());
    let (config, model_dir) = write_g2t_config(dir.path(), &data, "mpirun_2x2", &short(2));
    let mpirun = std::env::var("SLT_MPIRUN").unwrap_or_else(|_| "mpirun".into());
    let mut cmd = ddp_support::clean_command(&mpirun);
    cmd.args(["-np", "2"])
        .arg(ddp_support::slt_bin())
        .args(ddp_support::train_args(&config));
    let run = ddp_support::Running::start(cmd);
    let status = run.wait(RUN_TIMEOUT);
    assert!(
        status.success(),
        "{mpirun} -np 2 slt train failed: {status}\n{}",
        run.output()
    );
    assert!(
        run.output().contains("backend Mpi"),
        "the workers did not use the mpi backend:\n{}",
        run.output()
    );
    assert_equivalent_to_single(dir.path(), &data, &model_dir, "mpi");
}

/// Waits until the run has written `epoch_{min_epoch:02}` or later (the run is training)
/// and both ranks of attempt `attempt` are up; returns the two workers.
fn running_workers(
    run: &ddp_support::Running,
    run_id: &str,
    model_dir: &Path,
    min_epoch: usize,
    attempt: u32,
) -> Vec<ddp_support::Worker> {
    let ckpts = model_dir.join("ckpts");
    poll(
        &format!("checkpoint epoch_{min_epoch:02} of a running 2-rank group"),
        RUN_TIMEOUT,
        || {
            if let Some(status) = run.try_wait() {
                panic!(
                    "slt-launch ended ({status}) before a worker could be killed:\n{}",
                    run.output()
                );
            }
            let epoch = std::fs::read_dir(&ckpts)
                .ok()?
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("epoch_")?
                        .parse::<usize>()
                        .ok()
                })
                .max()?;
            let workers: Vec<_> = workers_of(run_id)
                .into_iter()
                .filter(|w| w.attempt == attempt)
                .collect();
            (epoch >= min_epoch && workers.len() == 2).then_some(workers)
        },
        || run.output(),
    )
}

fn sigkill(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is a worker this test started.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "SIGKILL {pid}"
    );
}

#[test]
fn a_killed_worker_takes_the_group_down_and_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());
    let (config, model_dir) = write_g2t_config(dir.path(), &data, "killed", &long());
    let run_id = unique_run_id("kill");
    let run = launch_train(2, &run_id, &[], &config);
    let workers = running_workers(&run, &run_id, &model_dir, 2, 0);
    let victim = workers
        .iter()
        .find(|w| w.rank == 1)
        .copied()
        .expect("rank 1 is running");
    sigkill(victim.pid);
    let killed_at = Instant::now();

    // Within 10 s no process of the run is left (the other rank, any helper it started).
    let survivors = loop {
        let left = workers_of(&run_id);
        if left.is_empty() || killed_at.elapsed() > Duration::from_secs(10) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        survivors.is_empty(),
        "workers still alive {:?} after the kill: {survivors:?}\n{}",
        killed_at.elapsed(),
        run.output()
    );
    eprintln!("group gone {:?} after the kill", killed_at.elapsed());

    let status = run.wait(Duration::from_secs(60));
    let stderr = run.stderr();
    assert_eq!(
        status.code(),
        Some(137),
        "the launcher must exit 128 + SIGKILL, got {status}\n{}",
        run.output()
    );
    assert!(
        stderr.contains("rank:     1 (local rank 1)") && stderr.contains("SIGKILL"),
        "the summary must name rank 1 and its signal:\n{stderr}"
    );
    assert!(
        !model_dir.join("ckpts").join("epoch_99").exists(),
        "the run finished although a worker was killed"
    );
}

#[test]
fn a_restarted_group_resumes_and_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());

    let (config, reference_dir) = write_g2t_config(dir.path(), &data, "uninterrupted", &long());
    let run = launch_train(2, &unique_run_id("ref"), &[], &config);
    let status = run.wait(RUN_TIMEOUT);
    assert!(
        status.success(),
        "uninterrupted run failed: {status}\n{}",
        run.output()
    );
    let reference = model_tensors(&reference_dir, "epoch_99");

    let (config, model_dir) = write_g2t_config(dir.path(), &data, "restarted", &long());
    let run_id = unique_run_id("restart");
    let run = launch_train(2, &run_id, &["--max-restarts", "1"], &config);
    // Kill rank 0, the one that writes the checkpoints, mid-run.
    let workers = running_workers(&run, &run_id, &model_dir, 3, 0);
    let victim = workers
        .iter()
        .find(|w| w.rank == 0)
        .copied()
        .expect("rank 0 is running");
    sigkill(victim.pid);
    let restarted = poll(
        "the second attempt's workers",
        RUN_TIMEOUT,
        || {
            let all = workers_of(&run_id);
            let first_gone = all.iter().all(|w| w.attempt != 0);
            let second: Vec<_> = all.into_iter().filter(|w| w.attempt == 1).collect();
            (first_gone && (second.len() == 2 || run.try_wait().is_some())).then_some(second)
        },
        || run.output(),
    );
    assert!(
        restarted
            .iter()
            .all(|w| !workers.iter().any(|o| o.pid == w.pid)),
        "the restarted workers are new processes"
    );
    let status = run.wait(RUN_TIMEOUT);
    let output = run.output();
    assert!(
        status.success(),
        "the restarted run failed: {status}\n{output}"
    );
    assert!(
        output.contains("resuming from checkpoint"),
        "the restarted workers did not resume:\n{output}"
    );
    let lines = metrics(&model_dir);
    let resume = lines
        .iter()
        .find(|l| l["event"] == "resume")
        .unwrap_or_else(|| panic!("no resume line in metrics.jsonl:\n{lines:?}"));
    let from_step = resume["from_step"].as_u64().expect("from_step");
    assert!(
        (6..200).contains(&from_step),
        "resumed from step {from_step}: not mid-run"
    );
    let (diff, name) = max_abs_diff(&model_tensors(&model_dir, "epoch_99"), &reference);
    eprintln!("restarted after step {from_step}: max |restarted − uninterrupted| = {diff:e}");
    assert!(
        diff <= TOLERANCE,
        "the restarted run ends {diff:e} away from the uninterrupted one (at {name})"
    );
}

#[test]
fn two_launches_at_once_do_not_collide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_set(dir.path());
    // No --master-port: each launcher binds a free port for its store and keeps it.
    let runs: Vec<_> = ["first", "second"]
        .iter()
        .map(|name| {
            let (config, model_dir) = write_g2t_config(dir.path(), &data, name, &short(2));
            (
                launch_train(2, &unique_run_id(name), &[], &config),
                model_dir,
            )
        })
        .collect();
    for (run, model_dir) in &runs {
        let status = run.wait(RUN_TIMEOUT);
        assert!(
            status.success(),
            "a concurrent launch failed: {status}\n{}",
            run.output()
        );
        assert!(
            model_dir.join("ckpts").join("epoch_02").is_dir(),
            "{} did not finish",
            model_dir.display()
        );
    }
}
