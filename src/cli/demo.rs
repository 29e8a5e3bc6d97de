//! `slt demo`: the main job on built-in synthetic data.
//!
//! Generates the synthetic sign-video set the synthetic configs expect when it is missing
//! (`slt data synth --width 64 --height 80`: 400/50/50 videos of 20 glosses), then trains
//! Sign2Gloss on it with `experiments/configs/SingleStream/synthetic_s2g.yaml` exactly as
//! `slt train` does (checkpoints, validation, resume with `--resume auto`), and finally
//! evaluates the best checkpoint on dev and test.

use std::path::PathBuf;

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

use slt::config::SltConfig;
use slt::data::dataset::{annotation_path, Split};
use slt::data::synth::{generate, SynthOptions};

use super::train::{run_train_config, TrainRun};

/// Frame size of the synthetic set the synthetic configs are tuned for.
pub const DEMO_FRAME_SIZE: (u32, u32) = (64, 80);

/// Options of `slt demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The synthetic Sign2Gloss config.
    #[arg(
        long,
        default_value = "experiments/configs/SingleStream/synthetic_s2g.yaml"
    )]
    config: PathBuf,
    /// Config overrides `key.path=value`.
    #[arg(long = "set")]
    overrides: Vec<String>,
    /// `auto` continues an interrupted demo run; `never` (default) starts over.
    #[arg(long, default_value = "never")]
    resume: String,
    /// Stop with a checkpoint after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<u64>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<std::process::ExitCode> {
    let config = SltConfig::load_from_process_env(&args.config, &args.overrides)?;
    let zip = config
        .data
        .zip_file
        .clone()
        .context("the demo config needs data.zip_file")?;
    let missing = !zip.exists()
        || Split::ALL
            .iter()
            .any(|&s| !annotation_path(&config.data, s).exists());
    if missing {
        let out_dir = zip
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        eprintln!(
            "generating the synthetic dataset in {} ({}x{} frames)",
            out_dir.display(),
            DEMO_FRAME_SIZE.0,
            DEMO_FRAME_SIZE.1
        );
        let report = generate(&SynthOptions {
            out_dir,
            width: DEMO_FRAME_SIZE.0,
            height: DEMO_FRAME_SIZE.1,
            ..SynthOptions::default()
        })?;
        eprintln!(
            "wrote {} videos, {} frames in {:.1} s",
            report.videos.iter().sum::<usize>(),
            report.frames,
            report.wall_secs
        );
    }
    check_frame_size(&zip)?;
    run_train_config(
        &config,
        &TrainRun {
            config_path: args.config.clone(),
            resume: Some(args.resume.clone()),
            device: None,
            max_steps: args.max_steps,
            final_evaluation: true,
        },
    )
}

/// Refuses a synthetic set whose frames are not [`DEMO_FRAME_SIZE`] (e.g. one generated with
/// `slt data synth`'s Phoenix-sized defaults): the synthetic configs' crop and input size are
/// tuned for it. The set is left alone; the message says how to replace it.
fn check_frame_size(zip_path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("reading the zip directory of {}", zip_path.display()))?;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .with_context(|| format!("{}: entry {index}", zip_path.display()))?;
        let name = entry
            .name()
            .with_context(|| format!("{}: name of entry {index}", zip_path.display()))?
            .into_owned();
        if !name.ends_with(".png") {
            continue;
        }
        let mut header = [0u8; 24];
        entry
            .read_exact(&mut header)
            .with_context(|| format!("{}: reading the PNG header of {name}", zip_path.display()))?;
        let width = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
        let height = u32::from_be_bytes([header[20], header[21], header[22], header[23]]);
        if (width, height) != DEMO_FRAME_SIZE {
            let dir = zip_path.parent().unwrap_or_else(|| Path::new("."));
            bail!(
                "{}: frames are {width}x{height}, the synthetic configs expect {}x{}; move that \
                 set away and rerun, or regenerate it with `slt data synth --out {} --width {} \
                 --height {}`",
                zip_path.display(),
                DEMO_FRAME_SIZE.0,
                DEMO_FRAME_SIZE.1,
                dir.display(),
                DEMO_FRAME_SIZE.0,
                DEMO_FRAME_SIZE.1
            );
        }
        return Ok(());
    }
    bail!("{}: no PNG frame found", zip_path.display())
}
