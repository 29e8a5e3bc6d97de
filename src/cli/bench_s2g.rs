//! `slt bench s2g-step`: one Sign2Gloss training step (S3D blocks 1–4 + visual head + CTC loss,
//! forward + backward + Adam), against the same step in plain PyTorch (`benches/s2g_step.py`).
//!
//! Both sides: the Phoenix S2G network (`experiments/configs/SingleStream/phoenix-2014t_s2g.yaml`,
//! S3D from scratch, block 1 frozen), Adam with lr 1e-3, betas (0.9, 0.998), eps 1e-8, weight
//! decay 1e-3, a fixed random clip `[1, 3, T, S, S]` and a random target of
//! `min(target_len, T/4 − 2)` gloss ids, the same intra-op thread count; warm-up steps, then the
//! median of the timed steps. With `--python` the script runs as a server and the two sides
//! alternate step by step, so that on a shared machine both see the same background load.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use tch::{nn, Device, Kind, Tensor};

use slt::config::{LearningRates, SltConfig};
use slt::model::recognition::RecognitionNetwork;
use slt::train::optimizer::{Adam, AdamHyper};

use super::support::{set_threads, summarize, write_json_lines, Phases, PythonServer};

/// The reference architecture the step is measured on.
const PHOENIX_S2G: &str = "experiments/configs/SingleStream/phoenix-2014t_s2g.yaml";

/// A clip shape `FRAMESxSIDE` (`[1, 3, FRAMES, SIDE, SIDE]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipShape {
    frames: i64,
    side: i64,
}

impl FromStr for ClipShape {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |v: &str| v.trim().parse::<i64>().ok().filter(|&n| n > 0);
        match text.split_once('x').map(|(t, s)| (parse(t), parse(s))) {
            Some((Some(frames), Some(side))) if frames % 4 == 0 && frames >= 12 => {
                Ok(ClipShape { frames, side })
            }
            _ => Err(format!(
                "`{text}`: expected FRAMESxSIDE with FRAMES a multiple of 4, at least 12 (e.g. 32x112)"
            )),
        }
    }
}

impl std::fmt::Display for ClipShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.frames, self.side)
    }
}

/// Options of `slt bench s2g-step`.
#[derive(Debug, Args)]
pub struct S2gStepArgs {
    /// Timed steps per clip shape (the median is reported).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed warm-up steps per clip shape.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Intra-op threads on both sides (`torch.set_num_threads`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Clip shapes `FRAMESxSIDE`.
    #[arg(long, value_delimiter = ',', default_value = "32x112,64x224")]
    shapes: Vec<ClipShape>,
    /// Gloss vocabulary size.
    #[arg(long, default_value_t = 1124)]
    vocab: usize,
    /// Target length in glosses (capped at T/4 − 2 so that a CTC alignment exists).
    #[arg(long, default_value_t = 10)]
    target_len: usize,
    /// Also run benches/s2g_step.py with the Python of $SLT_PYTHON_ORACLE (set by ./setup.sh).
    #[arg(long)]
    python: bool,
    /// Write all results as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `slt bench s2g-step`.
pub fn s2g_step(args: S2gStepArgs) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    set_threads(args.threads)?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config_path = manifest.join(PHOENIX_S2G);
    let config = SltConfig::load(&config_path, &[])
        .with_context(|| format!("loading {}", config_path.display()))?;
    let mut net_cfg = config
        .model
        .recognition_network
        .with_context(|| format!("{}: no model.RecognitionNetwork", config_path.display()))?;
    net_cfg.s3d.pretrained_ckpt = PathBuf::from("scratch");
    println!(
        "S2G training step (S3D blocks 1-{}, block 1 frozen, head, CTC, Adam), vocab {}, \
         {} warm-up + {} timed steps, {} threads, {} cores{}",
        net_cfg.s3d.use_block,
        args.vocab,
        args.warmup,
        args.steps,
        tch::get_num_threads(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if args.python {
            "; Rust and Python steps alternate"
        } else {
            ""
        }
    );
    let mut python = if args.python {
        Some(PythonServer::spawn(
            "s2g_step.py",
            &[
                "--serve".to_string(),
                "--threads".to_string(),
                args.threads.max(1).to_string(),
                "--vocab".to_string(),
                args.vocab.to_string(),
                "--target-len".to_string(),
                args.target_len.to_string(),
            ],
        )?)
    } else {
        None
    };
    let mut lines = Vec::new();
    for &shape in &args.shapes {
        let mut rust = RustStepper::new(&net_cfg, shape, &args)?;
        let setup = python
            .as_mut()
            .map(|py| py.request(&format!("setup {shape}")))
            .transpose()?;
        let (mut rust_times, mut py_times) = (Vec::new(), Vec::new());
        for step in 0..args.warmup + args.steps {
            let r = rust.step()?;
            let p = match python.as_mut() {
                Some(py) => Some(Phases::from_reply(&py.request("step")?)?),
                None => None,
            };
            if step >= args.warmup {
                rust_times.push(r);
                py_times.extend(p);
            }
        }
        let (rust_median, mut rust_line) = summarize(
            "rust",
            &shape.to_string(),
            &rust_times,
            &format!("; target {} glosses", rust.n_glosses),
        );
        let dims = [1, 3, shape.frames, shape.side, shape.side];
        rust_line["impl"] = "rust".into();
        rust_line["shape"] = serde_json::json!(dims);
        rust_line["threads"] = tch::get_num_threads().into();
        rust_line["target_len"] = rust.n_glosses.into();
        lines.push(rust_line);
        drop(rust);
        if let Some(setup) = setup {
            let extra = format!(
                "; torch {}, {} threads",
                setup["torch"].as_str().unwrap_or("?"),
                setup["threads"].as_i64().unwrap_or(0)
            );
            let (py_median, mut py_line) =
                summarize("python", &shape.to_string(), &py_times, &extra);
            println!(
                "        {:<8} python/rust = {:.2}×",
                shape.to_string(),
                py_median / rust_median
            );
            py_line["impl"] = "python".into();
            py_line["shape"] = serde_json::json!(dims);
            py_line["threads"] = setup["threads"].clone();
            py_line["torch"] = setup["torch"].clone();
            py_line["target_len"] = setup["target_len"].clone();
            lines.push(py_line);
        }
    }
    write_json_lines(args.json.as_deref(), &lines)
}

/// A fresh network, optimizer, clip and target for one clip shape.
struct RustStepper {
    // Owns the variables that `net` and `adam` refer to.
    _vs: nn::VarStore,
    net: RecognitionNetwork,
    adam: Adam,
    video: Tensor,
    lengths: Tensor,
    target: Tensor,
    target_len: Tensor,
    n_glosses: i64,
}

impl RustStepper {
    fn new(
        net_cfg: &slt::config::RecognitionNetworkConfig,
        shape: ClipShape,
        args: &S2gStepArgs,
    ) -> Result<Self> {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net =
            RecognitionNetwork::new(&(vs.root() / "recognition_network"), net_cfg, args.vocab)?;
        let adam = Adam::new(
            &vs,
            &LearningRates::uniform(1e-3),
            AdamHyper {
                betas: [0.9, 0.998],
                eps: 1e-8,
                weight_decay: 1e-3,
                amsgrad: false,
            },
        )?;
        let options = (Kind::Float, Device::Cpu);
        let video = Tensor::f_rand([1, 3, shape.frames, shape.side, shape.side], options)?
            .f_mul_scalar(2.0)?
            .f_sub_scalar(1.0)?;
        let vocab = i64::try_from(args.vocab).context("--vocab is too large")?;
        let wanted = i64::try_from(args.target_len).context("--target-len is too large")?;
        let n_glosses = wanted.min(shape.frames / 4 - 2).max(1);
        let target = Tensor::f_randint_low(4, vocab, [1, n_glosses], (Kind::Int64, Device::Cpu))?;
        Ok(RustStepper {
            _vs: vs,
            net,
            adam,
            video,
            lengths: Tensor::from_slice(&[shape.frames]),
            target,
            target_len: Tensor::from_slice(&[n_glosses]),
            n_glosses,
        })
    }

    /// One step (zero_grad, forward, loss, backward, Adam); returns its wall times.
    fn step(&mut self) -> Result<Phases> {
        let start = Instant::now();
        self.adam.zero_grad()?;
        let out = self.net.forward_t(&self.video, &self.lengths, true)?;
        let loss = self.net.ctc_loss(&out, &self.target, &self.target_len)?;
        let forward = Instant::now();
        loss.f_backward()?;
        let backward = Instant::now();
        self.adam.step()?;
        let end = Instant::now();
        Ok(Phases {
            total: (end - start).as_secs_f64(),
            forward: (forward - start).as_secs_f64(),
            backward: (backward - forward).as_secs_f64(),
            optimizer: (end - backward).as_secs_f64(),
        })
    }
}
