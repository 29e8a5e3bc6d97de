//! `slt data …`: synthetic data, packing, validation.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use slt::config::SltConfig;
use slt::data::annotation::read_annotations;
use slt::data::dataset::{annotation_path, open_video_source, recognition_tokenizer, Split};
use slt::data::gloss::S2GGlossTokenizer;
use slt::data::pack::pack_frames;
use slt::data::source::{FrameAdjust, FrameLayout, VideoSource};
use slt::data::synth::{generate, SynthOptions};
use slt::data::validate::{validate, FrameCheck};

/// Dataset tools.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate the synthetic sign-video dataset (Phoenix-2014T layout: PNG zip, annotation
    /// pickles, gloss vocabulary). Same options and seed → byte-identical files.
    Synth(SynthArgs),
    /// Pack a frame tree (e.g. Phoenix-2014T's `fullFrame-210x260px`) into a reference-layout
    /// zip, keeping every video's folder so frame names never collide.
    Pack(PackArgs),
    /// Check annotations against their frames (missing, corrupt, frame-count mismatches) and
    /// the gloss vocabulary; exits non-zero when anything is wrong.
    Validate(ValidateArgs),
}

/// Options of `slt data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder.
    #[arg(long, default_value = "data/synthetic")]
    out: PathBuf,
    /// Videos in the train split that sign a sentence.
    #[arg(long, default_value_t = SynthOptions::default().train_size)]
    train: usize,
    /// Extra train videos that sign a single gloss each (every gloss equally often).
    #[arg(long, default_value_t = SynthOptions::default().isolated_train)]
    isolated_train: usize,
    /// Videos in the dev split.
    #[arg(long, default_value_t = SynthOptions::default().dev_size)]
    dev: usize,
    /// Videos in the test split.
    #[arg(long, default_value_t = SynthOptions::default().test_size)]
    test: usize,
    /// Frame width in pixels (Phoenix: 210).
    #[arg(long, default_value_t = SynthOptions::default().width)]
    width: u32,
    /// Frame height in pixels (Phoenix: 260).
    #[arg(long, default_value_t = SynthOptions::default().height)]
    height: u32,
    /// Mean frames per gloss (each video varies it by up to ±25 %).
    #[arg(long, default_value_t = SynthOptions::default().frames_per_gloss)]
    frames_per_gloss: u32,
    /// Gloss vocabulary size (top-N glosses of --from-annotations, or of the built-in list).
    #[arg(long, default_value_t = SynthOptions::default().vocab_size)]
    vocab_size: usize,
    /// Number of signers.
    #[arg(long, default_value_t = SynthOptions::default().num_signers)]
    signers: usize,
    /// Standard deviation of the pixel noise (0–255 scale).
    #[arg(long, default_value_t = SynthOptions::default().noise_std)]
    noise: f32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = SynthOptions::default().seed)]
    seed: u64,
    /// Take gloss sequences and sentences from a real Phoenix-2014T annotation file.
    #[arg(long)]
    from_annotations: Option<PathBuf>,
    /// Longest gloss sequence taken from --from-annotations.
    #[arg(long, default_value_t = SynthOptions::default().max_glosses)]
    max_glosses: usize,
}

/// Options of `slt data pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The frame tree, e.g. `PHOENIX-2014-T/features/fullFrame-210x260px`.
    #[arg(long)]
    frames: PathBuf,
    /// The zip to write (written under a temporary name, renamed when complete).
    #[arg(long)]
    out: PathBuf,
    /// Prefix of every entry name (`images/` gives the Phoenix-2014T layout).
    #[arg(long, default_value = "images/")]
    prefix: String,
}

/// The frame layouts, for `--dataset`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DatasetArg {
    #[value(name = "phoenix-2014t")]
    Phoenix2014T,
    #[value(name = "csl-daily")]
    CslDaily,
    #[value(name = "phoenix-2014")]
    Phoenix2014,
}

/// Options of `slt data validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Take annotation files, video zip and vocabulary from this config.
    #[arg(long, conflicts_with_all = ["annotations", "videos"])]
    config: Option<PathBuf>,
    /// Config overrides `key.path=value` (with --config).
    #[arg(long = "set", requires = "config")]
    overrides: Vec<String>,
    /// Splits to check (with --config); default: every split whose file exists.
    #[arg(long, requires = "config")]
    split: Vec<Split>,
    /// Annotation files to check (without --config).
    #[arg(long, requires = "videos")]
    annotations: Vec<PathBuf>,
    /// Video zip or frame directory (without --config).
    #[arg(long)]
    videos: Option<PathBuf>,
    /// Frame layout of --videos.
    #[arg(long, value_enum, default_value = "phoenix-2014t")]
    dataset: DatasetArg,
    /// Gloss vocabulary to check glosses against (without --config).
    #[arg(long)]
    gloss2ids: Option<PathBuf>,
    /// Only check that frames exist; do not decode them.
    #[arg(long)]
    no_decode: bool,
}

/// Runs a `slt data` subcommand.
pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Synth(args) => synth(args),
        DataCommand::Pack(args) => {
            let report = pack_frames(&args.frames, &args.out, &args.prefix)?;
            println!(
                "packed {} files of {} folders ({:.1} MB) into {}",
                report.files,
                report.folders,
                report.bytes as f64 / 1e6,
                args.out.display()
            );
            Ok(())
        }
        DataCommand::Validate(args) => validate_command(args),
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    let options = SynthOptions {
        out_dir: args.out,
        train_size: args.train,
        isolated_train: args.isolated_train,
        dev_size: args.dev,
        test_size: args.test,
        width: args.width,
        height: args.height,
        frames_per_gloss: args.frames_per_gloss,
        vocab_size: args.vocab_size,
        num_signers: args.signers,
        noise_std: args.noise,
        seed: args.seed,
        source_annotations: args.from_annotations,
        max_glosses: args.max_glosses,
        ..SynthOptions::default()
    };
    let report = generate(&options)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn validate_command(args: ValidateArgs) -> Result<()> {
    let check = if args.no_decode {
        FrameCheck::Exists
    } else {
        FrameCheck::Decode
    };
    let mut jobs: Vec<(String, PathBuf)> = Vec::new();
    let (source, tokenizer) = if let Some(config_path) = &args.config {
        let config = SltConfig::load_from_process_env(config_path, &args.overrides)?;
        let source = open_video_source(&config.data)?;
        let tokenizer = match config.model.recognition_network {
            Some(_) => Some(recognition_tokenizer(&config)?),
            None => None,
        };
        let explicit = !args.split.is_empty();
        let splits = if explicit {
            args.split.clone()
        } else {
            Split::ALL.to_vec()
        };
        for split in splits {
            let path = annotation_path(&config.data, split).to_path_buf();
            if explicit || path.exists() {
                jobs.push((split.to_string(), path));
            }
        }
        (source, tokenizer)
    } else {
        let videos = args
            .videos
            .as_ref()
            .context("give --config, or --videos with --annotations")?;
        let layout = match args.dataset {
            DatasetArg::Phoenix2014T => FrameLayout::Phoenix2014T,
            DatasetArg::CslDaily => FrameLayout::CslDaily,
            DatasetArg::Phoenix2014 => FrameLayout::Phoenix2014,
        };
        let adjust = match layout {
            FrameLayout::CslDaily => FrameAdjust {
                crop: None,
                resize: Some((320, 320)),
            },
            _ => FrameAdjust::NONE,
        };
        let source = VideoSource::open(videos, layout, adjust)?;
        let tokenizer = match &args.gloss2ids {
            Some(path) => Some(S2GGlossTokenizer::from_file(path, true)?),
            None => None,
        };
        for path in &args.annotations {
            jobs.push((path.display().to_string(), path.clone()));
        }
        (source, tokenizer)
    };
    if jobs.is_empty() {
        bail!("nothing to validate: no annotation files given or found");
    }
    let mut failed = Vec::new();
    for (label, path) in jobs {
        let records = read_annotations(&path)?;
        let report = validate(&records, &source, tokenizer.as_ref(), check);
        println!("== {label} ({})", path.display());
        print!("{report}");
        if !report.is_clean() {
            failed.push(label);
        }
    }
    if !failed.is_empty() {
        bail!("validation found problems in: {}", failed.join(", "));
    }
    Ok(())
}
