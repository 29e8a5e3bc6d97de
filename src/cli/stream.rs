//! Drain a loader and measure it (shared by `slt demo` and `slt bench loader`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use slt::data::loader::{ClipPipeline, LoaderOptions, VideoBatch, VideoDataset, VideoLoader};
use slt::data::sampler::SamplerCursor;

/// What one pass over a batch plan produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamStats {
    /// Batches received.
    pub batches: usize,
    /// Clips received.
    pub clips: usize,
    /// Output frames (B·T summed over batches, padding included).
    pub frames: usize,
    /// Valid (selected) frames.
    pub valid_frames: usize,
    /// Bytes of output tensors.
    pub bytes: usize,
    /// Wall time in seconds, from start to the last batch.
    pub seconds: f64,
    /// Longest clip in frames.
    pub longest_clip: usize,
    /// Shape of the last batch's video tensor.
    pub last_shape: Vec<i64>,
}

impl StreamStats {
    /// Output frames per second.
    pub fn frames_per_s(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }

    /// Output megabytes (10⁶) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Streams `plan` through a loader, calling `on_batch` for each batch.
pub fn stream(
    dataset: Arc<VideoDataset>,
    plan: Vec<(SamplerCursor, Vec<usize>)>,
    pipeline: ClipPipeline,
    options: LoaderOptions,
    label: &str,
    mut on_batch: impl FnMut(&VideoBatch) -> Result<()>,
) -> Result<StreamStats> {
    let bar = ProgressBar::new(plan.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>6} [{bar:30}] {pos}/{len} batches  {msg}  {per_sec}  ETA {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let start = Instant::now();
    let mut stats = StreamStats::default();
    for batch in VideoLoader::start(dataset, plan, pipeline, options)? {
        let batch = batch?;
        let shape = batch.videos.size();
        stats.batches += 1;
        stats.clips += batch.indices.len();
        stats.frames += (shape[0] * shape[2]) as usize;
        stats.valid_frames += batch.frame_counts.iter().sum::<usize>();
        stats.bytes += batch.videos.numel() * 4;
        stats.longest_clip = stats.longest_clip.max(shape[2] as usize);
        stats.last_shape = shape;
        on_batch(&batch)?;
        let elapsed = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{:.0} frames/s", stats.frames as f64 / elapsed));
        bar.inc(1);
    }
    stats.seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(stats)
}
