//! `slt demo`: the main job on built-in synthetic data.
//!
//! Generates the synthetic set when it is missing, then streams the train split (with the
//! reference's augmentation, sharded as rank 0 of 1) and the dev split (eval transform)
//! through the prefetching loader, tokenising the glosses as Sign2Gloss does, and prints a
//! summary. Training replaces the streaming once the model stages land.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use slt::config::SltConfig;
use slt::data::dataset::{
    annotation_path, clip_pipeline, open_video_source, recognition_tokenizer, video_dataset, Split,
};
use slt::data::loader::LoaderOptions;
use slt::data::sampler::DistributedSampler;
use slt::data::synth::{generate, SynthOptions};

use super::stream::stream;

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
    /// Loader threads (default: the config's `training.num_workers`).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
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
        eprintln!("generating the synthetic dataset in {}", out_dir.display());
        // A demo-sized set (~0.5 GB at 210×260); `slt data synth` writes the full default set.
        let report = generate(&SynthOptions {
            out_dir,
            train_size: 100,
            dev_size: 20,
            test_size: 20,
            ..SynthOptions::default()
        })?;
        eprintln!(
            "wrote {} videos, {} frames in {:.1} s",
            report.videos.iter().sum::<usize>(),
            report.frames,
            report.wall_secs
        );
    }

    let transform = config
        .data
        .transform_cfg
        .as_ref()
        .context("the demo config needs data.transform_cfg")?;
    let tokenizer = recognition_tokenizer(&config)?;
    let source = Arc::new(open_video_source(&config.data)?);
    let threads = args.threads.unwrap_or(config.training.num_workers).max(1);
    for split in [Split::Train, Split::Dev] {
        let dataset = Arc::new(video_dataset(&config, split, Arc::clone(&source))?);
        let n = dataset.records.len();
        let batch = config.training.batch_size;
        let sampler = match split {
            Split::Train => DistributedSampler::train(n, 0, 1, batch, config.training.shuffle, 0)?,
            _ => DistributedSampler::eval(n, 0, 1, batch)?,
        };
        let options = LoaderOptions {
            seed: config.training.random_seed,
            threads,
            prefetch_batches: 2,
        };
        let mut glosses = 0usize;
        let mut unknown = 0usize;
        let stats = stream(
            Arc::clone(&dataset),
            sampler.batches(0, 0),
            clip_pipeline(transform, split)?,
            options,
            split.name(),
            |batch| {
                let texts: Vec<&str> = batch.glosses.iter().map(String::as_str).collect();
                let labels = tokenizer.encode_batch(&texts);
                glosses += labels.lengths.iter().sum::<i64>() as usize;
                unknown += labels
                    .labels
                    .iter()
                    .filter(|&&id| id == tokenizer.unk_id())
                    .count();
                Ok(())
            },
        )?;
        println!(
            "{split:>5}: {} videos in {} batches, {} frames ({} selected) in {:.2} s = {:.0} frames/s, {:.0} MB/s; \
             longest clip {} frames; last batch {:?}; {} gloss labels ({} unknown, vocabulary {})",
            stats.clips,
            stats.batches,
            stats.frames,
            stats.valid_frames,
            stats.seconds,
            stats.frames_per_s(),
            stats.mb_per_s(),
            stats.longest_clip,
            stats.last_shape,
            glosses,
            unknown,
            tokenizer.len(),
        );
    }
    Ok(())
}
