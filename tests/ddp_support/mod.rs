//! Helpers of the data-parallel training tests (`tests/ddp_train.rs`): a tiny from-scratch
//! Gloss2Text config on the synthetic set, the `slt` and `slt-launch` binaries, a launcher
//! whose output is collected in the background, worker processes found through /proc, and
//! checkpoint comparison.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use slt::train::checkpoint::MODEL_FILE;
use tch::{Kind, Tensor};

/// Variables of an enclosing launcher, SLURM step or MPI job that must not leak into the runs
/// a test starts (each test sets what its run needs).
pub const DIST_VARS: &[&str] = &[
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
    "SLT_RESUME",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
    "TORCHELASTIC_RUN_ID",
    "SLURM_PROCID",
    "SLURM_STEP_NUM_TASKS",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "PMI_SIZE",
    "PMI_RANK",
];

/// Shape of a tiny Gloss2Text run.
#[derive(Debug, Clone)]
pub struct G2tRun {
    /// Per-rank batch size.
    pub batch_size: usize,
    /// Epochs.
    pub total_epoch: usize,
    /// Validate every this many epochs (and after the last one).
    pub validation_freq: usize,
    /// Checkpoints kept besides `best` (0: all).
    pub keep_last_ckpts: usize,
}

/// A 1+1-layer, 16-wide mBART-style translation model trained from scratch on the synthetic
/// glosses and sentences under `data` (word-level vocabularies built from the training split),
/// without dropout so that runs can be compared. Cosine schedule over 100 epochs, so the
/// learning rate stays far from 0 in short runs.
pub fn g2t_config(data: &Path, model_dir: &Path, run: &G2tRun) -> String {
    let d = data.display();
    format!(
        r#"task: G2T
data:
  dataset_name: phoenix-2014t
  synthetic: true
  input_data: gloss
  train: {d}/synthetic.train
  dev: {d}/synthetic.dev
  test: {d}/synthetic.test
  level: word
training:
  model_dir: {m}
  overwrite: false
  shuffle: true
  num_workers: 1
  batch_size: {batch}
  total_epoch: {epochs}
  keep_last_ckpts: {keep}
  random_seed: 3
  log_every_steps: 1
  validation:
    unit: epoch
    freq: {freq}
    cfg: {{translation: {{num_beams: 1, max_length: 12, length_penalty: 1}}}}
  optimization:
    optimizer: Adam
    learning_rate: {{default: 1.0e-3}}
    weight_decay: 0.0
    betas: [0.9, 0.998]
    scheduler: cosineannealing
    t_max: 100
testing:
  cfg: {{translation: {{num_beams: 1, max_length: 12, length_penalty: 1}}}}
model:
  TranslationNetwork:
    architecture:
      d_model: 16
      encoder_layers: 1
      decoder_layers: 1
      encoder_attention_heads: 2
      decoder_attention_heads: 2
      encoder_ffn_dim: 32
      decoder_ffn_dim: 32
      max_position_embeddings: 64
      scale_embedding: true
      activation_function: gelu
      init_std: 0.02
    from_scratch: true
    overwrite_cfg: {{dropout: 0.0, attention_dropout: 0.0, activation_dropout: 0.0}}
    TextTokenizer: {{level: word, tgt_lang: de_DE}}
    GlossTokenizer: {{src_lang: de_DGS, lower_case: true}}
    GlossEmbedding: {{from_scratch: true, freeze: false, init_std: 0.02}}
    freeze_txt_embed: false
    label_smoothing: 0.1
"#,
        m = model_dir.display(),
        batch = run.batch_size,
        epochs = run.total_epoch,
        keep = run.keep_last_ckpts,
        freq = run.validation_freq,
    )
}

/// Writes `{dir}/{name}.yaml` for a run into `{dir}/{name}`; returns (config, model_dir).
pub fn write_g2t_config(dir: &Path, data: &Path, name: &str, run: &G2tRun) -> (PathBuf, PathBuf) {
    let model_dir = dir.join(name);
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, g2t_config(data, &model_dir, run)).expect("write the config");
    (path, model_dir)
}

/// The `slt` binary of this build.
pub fn slt_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slt"))
}

/// The arguments of `slt train` on `config` (CPU, no final evaluation).
pub fn train_args(config: &Path) -> Vec<String> {
    vec![
        "train".into(),
        "--config".into(),
        config.display().to_string(),
        "--device".into(),
        "cpu".into(),
        "--no-final-eval".into(),
    ]
}

/// A command with the distributed variables of the surroundings removed, one torch thread
/// per process (the same arithmetic in every run), output piped.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in DIST_VARS {
        cmd.env_remove(var);
    }
    cmd.env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs one `slt train` process on `config` to the end and panics with its output on failure.
pub fn train_single(config: &Path) {
    let out = clean_command(slt_bin())
        .args(train_args(config))
        .output()
        .expect("start slt train");
    assert!(
        out.status.success(),
        "single-process slt train failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `slt-launch` of the same profile as this test: `$SLT_LAUNCH_BIN`, or built once per test
/// process with `cargo build -p slt-launch` into this build's target directory (a no-op when it
/// is up to date; `cargo test --workspace` has built it already).
pub fn launcher_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("SLT_LAUNCH_BIN") {
            return PathBuf::from(path);
        }
        let slt = slt_bin();
        let profile_dir = slt
            .parent()
            .expect("the slt binary lies in target/<profile>");
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "slt-launch",
            "--bin",
            "slt-launch",
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
        match profile {
            "release" => {
                cmd.arg("--release");
            }
            "debug" => {}
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("run cargo build -p slt-launch");
        assert!(
            status.success(),
            "cargo build -p slt-launch failed ({status}); set SLT_LAUNCH_BIN to a built slt-launch"
        );
        profile_dir.join("slt-launch")
    })
    .clone()
}

/// A running process (a launcher, or mpirun) whose stdout and stderr are collected in the
/// background. Dropping it kills it (its workers follow through their parent-death signal).
pub struct Running {
    child: Mutex<Child>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Running {
    /// Starts `cmd` (whose stdout and stderr must be piped).
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&buf);
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                    sink.lock().expect("lock").push_str(&text);
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().expect("piped stdout")));
        let err = collect(Box::new(child.stderr.take().expect("piped stderr")));
        Self {
            child: Mutex::new(child),
            out,
            err,
        }
    }

    /// Everything printed so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.out.lock().expect("lock"),
            self.err.lock().expect("lock")
        )
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.err.lock().expect("lock").clone()
    }

    /// The exit status, if it has exited.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .expect("lock")
            .try_wait()
            .expect("try_wait")
    }

    fn kill(&self) {
        let mut child = self.child.lock().expect("lock");
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the exit (panics with the output after `timeout`); lets the collectors catch up.
    pub fn wait(&self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                thread::sleep(Duration::from_millis(100));
                return status;
            }
            if start.elapsed() > timeout {
                self.kill();
                panic!("no exit within {timeout:?}\n{}", self.output());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `slt-launch --nproc-per-node {nproc} --run-id {run_id} {extra…} -- slt train …`.
pub fn launch_train(nproc: usize, run_id: &str, extra: &[&str], config: &Path) -> Running {
    let mut cmd = clean_command(launcher_bin());
    cmd.args(["--nproc-per-node", &nproc.to_string(), "--run-id", run_id])
        .args(extra)
        .arg("--")
        .arg(slt_bin())
        .args(train_args(config));
    Running::start(cmd)
}

/// A worker process of a launched run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    /// Process id.
    pub pid: i32,
    /// Its RANK.
    pub rank: usize,
    /// Its TORCHELASTIC_RESTART_COUNT.
    pub attempt: u32,
}

/// Live (non-zombie) processes whose environment holds `SLT_RUN_ID={run_id}`, with their
/// RANK: every worker of the run, whoever started it.
pub fn workers_of(run_id: &str) -> Vec<Worker> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = format!("SLT_RUN_ID={run_id}");
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        if !vars.contains(&wanted.as_bytes()) {
            continue;
        }
        let value = |key: &str| {
            let prefix = format!("{key}=");
            vars.iter()
                .find_map(|v| v.strip_prefix(prefix.as_bytes()))
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        let (Some(rank), Some(attempt)) = (
            value("RANK").and_then(|r| r.parse().ok()),
            value("TORCHELASTIC_RESTART_COUNT").and_then(|r| r.parse().ok()),
        ) else {
            continue;
        };
        if alive(pid) {
            found.push(Worker { pid, rank, attempt });
        }
    }
    found.sort_by_key(|w| (w.attempt, w.rank, w.pid));
    found
}

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Polls `cond` every 20 ms until it returns `Some`; panics with `what` and `context()` after
/// `timeout`.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The model tensors of checkpoint `name` of `model_dir`, sorted by name.
pub fn model_tensors(model_dir: &Path, name: &str) -> Vec<(String, Tensor)> {
    let path = model_dir.join("ckpts").join(name).join(MODEL_FILE);
    let mut tensors = Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The largest absolute element difference over all tensors, and the tensor where it occurs.
/// Panics when the tensor names or shapes differ.
pub fn max_abs_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> (f64, String) {
    let names = |t: &[(String, Tensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "the checkpoints hold different tensors");
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.size(), y.size(), "`{name}` has different shapes");
        let diff = (x.to_kind(Kind::Double) - y.to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        if diff > worst.0 || worst.1.is_empty() {
            worst = (diff, name.clone());
        }
    }
    worst
}

/// Relative paths of every file and directory under `dir`.
pub fn tree(dir: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.expect("walk the model dir"))
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .expect("below dir")
                .display()
                .to_string()
        })
        .collect()
}

/// The JSON lines of `{model_dir}/metrics.jsonl`.
pub fn metrics(model_dir: &Path) -> Vec<serde_json::Value> {
    let path = model_dir.join("metrics.jsonl");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The `event` fields of `lines`, in order.
pub fn events(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["event"].as_str().unwrap_or("?").to_string())
        .collect()
}
