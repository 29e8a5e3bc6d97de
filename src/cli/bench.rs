//! `slt bench …`: measured figures, with the Python reference's way as the baseline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use slt::data::annotation::read_annotations;
use slt::data::augment::{EvalTransform, TrainAugment};
use slt::data::loader::{ClipPipeline, LoaderOptions, VideoDataset};
use slt::data::sampler::DistributedSampler;
use slt::data::sampling::TemporalSampling;
use slt::data::source::{FrameAdjust, FrameLayout, VideoSource};
use slt::data::synth::{generate, SynthOptions};

use super::stream::stream;

#[path = "bench_g2t.rs"]
mod g2t;
#[path = "bench_metrics.rs"]
mod metrics;
#[path = "bench_s2g.rs"]
mod s2g;
#[path = "bench_support.rs"]
mod support;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Video loader throughput (decode + temporal sampling + augmentation + batching) on a
    /// synthetic 210×260 PNG zip, optionally against the Python reference's loader.
    Loader(LoaderBenchArgs),
    /// One Sign2Gloss training step (S3D + visual head + CTC, forward + backward + Adam) on
    /// `[1,3,32,112,112]` and `[1,3,64,224,224]` clips, optionally against plain PyTorch.
    S2gStep(s2g::S2gStepArgs),
    /// Gloss2Text batched beam search and training step (mBART, label-smoothed loss, Adam) on a
    /// G2T config's model and checkpoint, optionally against HF transformers on the same
    /// weights and batches.
    G2t(g2t::G2tArgs),
    /// Corpus BLEU-1..4 and ROUGE-L on a dev split (Phoenix-2014T by default), optionally
    /// against sacrebleu 1.4.2 and the reference's ROUGE-L in Python, scores compared.
    Metrics(metrics::MetricsArgs),
}

/// Train (reference augmentation) or eval (centre crop) pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchMode {
    Train,
    Eval,
}

/// Options of `slt bench loader`.
#[derive(Debug, Args)]
pub struct LoaderBenchArgs {
    /// Folder with `videos.zip` and `synthetic.train`; generated (210×260 PNG) when missing.
    #[arg(long, default_value = "data/bench-loader")]
    data: PathBuf,
    /// Videos to generate when the folder is empty.
    #[arg(long, default_value_t = 24)]
    generate_videos: usize,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Pipelines to measure.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "train,eval")]
    mode: Vec<BenchMode>,
    /// Clips per batch.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Output side (img_size).
    #[arg(long, default_value_t = 224)]
    img_size: usize,
    /// Also run benches/loader_baseline.py (same zip, same settings, workers = threads) with
    /// this Python (default: $SLT_PYTHON_ORACLE, set by ./setup.sh).
    #[arg(long)]
    python: bool,
    /// Write all results as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs a benchmark.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Loader(args) => loader(args),
        BenchCommand::S2gStep(args) => s2g::s2g_step(args),
        BenchCommand::G2t(args) => g2t::g2t(args),
        BenchCommand::Metrics(args) => metrics::metrics(args),
    }
}

fn loader(args: LoaderBenchArgs) -> Result<()> {
    let zip = args.data.join("videos.zip");
    let annotations = args.data.join("synthetic.train");
    if !zip.exists() || !annotations.exists() {
        eprintln!(
            "generating {} synthetic 210×260 videos in {}",
            args.generate_videos,
            args.data.display()
        );
        generate(&SynthOptions {
            out_dir: args.data.clone(),
            train_size: args.generate_videos,
            dev_size: 1,
            test_size: 1,
            ..SynthOptions::default()
        })?;
    }
    let records = read_annotations(&annotations)?;
    let source = Arc::new(VideoSource::open(
        &zip,
        FrameLayout::Phoenix2014T,
        FrameAdjust::NONE,
    )?);
    // Warm the page cache so neither side pays for the first disk read.
    std::fs::read(&zip).with_context(|| format!("reading {}", zip.display()))?;
    let dataset = Arc::new(VideoDataset { records, source });
    let total_frames: usize = dataset.records.iter().map(|r| r.num_frames).sum();
    println!(
        "loader benchmark: {} videos, {} stored frames (210×260 PNG), batch {}, output {}²; {} cores",
        dataset.records.len(),
        total_frames,
        args.batch_size,
        args.img_size,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!(
        "{:<8} {:<6} {:>7} {:>8} {:>9} {:>12} {:>9}",
        "impl", "mode", "threads", "frames", "seconds", "frames/s", "MB/s"
    );
    let mut lines = Vec::new();
    for &mode in &args.mode {
        for &threads in &args.threads {
            let pipeline = match mode {
                BenchMode::Train => ClipPipeline::Train {
                    temporal: TemporalSampling::Train {
                        tmin: 0.5,
                        tmax: 1.5,
                    },
                    augment: TrainAugment {
                        crop_scale: (0.7, 1.0),
                        crop_ratio: (0.75, 1.3),
                        color_jitter: true,
                        out_size: args.img_size,
                    },
                },
                BenchMode::Eval => ClipPipeline::Eval(EvalTransform {
                    center_crop: Some(args.img_size),
                    out_size: args.img_size,
                }),
            };
            let sampler = DistributedSampler::eval(dataset.records.len(), 0, 1, args.batch_size)?;
            let options = LoaderOptions {
                seed: 42,
                threads,
                prefetch_batches: 2,
            };
            let label = format!("{mode:?}").to_lowercase();
            let stats = stream(
                Arc::clone(&dataset),
                sampler.batches(0, 0),
                pipeline,
                options,
                &label,
                |_| Ok(()),
            )?;
            println!(
                "{:<8} {:<6} {:>7} {:>8} {:>9.2} {:>12.1} {:>9.1}",
                "rust",
                label,
                threads,
                stats.frames,
                stats.seconds,
                stats.frames_per_s(),
                stats.mb_per_s()
            );
            let rust = serde_json::json!({
                "impl": "rust", "mode": label, "threads": threads, "frames": stats.frames,
                "seconds": stats.seconds, "frames_per_s": stats.frames_per_s(), "mb_per_s": stats.mb_per_s(),
            });
            lines.push(rust.to_string());
            if args.python {
                let py = python_baseline(&args, &label, threads)?;
                let py_fps = py["frames_per_s"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{:<8} {:<6} {:>7} {:>8} {:>9.2} {:>12.1} {:>9.1}   rust/python = {:.2}×",
                    "python",
                    label,
                    threads,
                    py["frames"].as_u64().unwrap_or(0),
                    py["seconds"].as_f64().unwrap_or(f64::NAN),
                    py_fps,
                    py["mb_per_s"].as_f64().unwrap_or(f64::NAN),
                    stats.frames_per_s() / py_fps
                );
                lines.push(py.to_string());
            }
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn python_baseline(
    args: &LoaderBenchArgs,
    mode: &str,
    workers: usize,
) -> Result<serde_json::Value> {
    let python = std::env::var("SLT_PYTHON_ORACLE")
        .context("--python needs SLT_PYTHON_ORACLE (run through ./setup.sh)")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/loader_baseline.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg("--data")
        .arg(&args.data)
        .args(["--mode", mode])
        .args(["--workers", &workers.to_string()])
        .args(["--batch-size", &args.batch_size.to_string()])
        .args(["--img-size", &args.img_size.to_string()])
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .last()
        .context("the Python baseline printed nothing")?;
    Ok(serde_json::from_str(last)?)
}
