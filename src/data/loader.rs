//! The prefetching video loader.
//!
//! One producer thread walks the batch plan in order. For each batch it decodes and
//! augments every selected frame of every sample on a dedicated rayon pool (one work item per
//! frame, so even a batch of one long video uses every thread), assembles the batch and sends
//! it through a bounded crossbeam channel: at most `prefetch_batches` finished batches wait,
//! which is the back-pressure that bounds memory. The consumer receives tch tensors.
//!
//! Failure behaviour: a decode error reaches the consumer as an error naming the sample and
//! frame, after which the loader ends; a panic in a worker is caught and reported the same
//! way; if the producer thread disappears the consumer sees an error instead of waiting
//! forever; dropping the loader stops the producer, which lets its pool's threads exit.
//!
//! Every random draw is keyed by (seed, epoch, sample index, purpose), so thread count and
//! timing cannot change a batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rayon::prelude::*;
use tch::Tensor;
use thiserror::Error;

use super::annotation::SignRecord;
use super::augment::{AugmentError, EvalTransform, FrameRef, SpatialPlan, TrainAugment};
use super::decode::RgbFrame;
use super::rng::{Purpose, SampleKey};
use super::sampler::SamplerCursor;
use super::sampling::{select_frames, TemporalSampling, MAX_FRAMES};
use super::source::{SourceError, VideoSource};

/// Annotated videos and where their frames are.
#[derive(Debug)]
pub struct VideoDataset {
    /// The annotation records, indexed by sample index.
    pub records: Vec<SignRecord>,
    /// The frames (shared by the splits of a run).
    pub source: Arc<VideoSource>,
}

/// The per-sample pipeline: temporal selection and spatial transform.
#[derive(Debug, Clone)]
pub enum ClipPipeline {
    /// Random temporal sampling, random resized crop and colour jitter.
    Train {
        /// Temporal augmentation range.
        temporal: TemporalSampling,
        /// Spatial augmentation.
        augment: TrainAugment,
    },
    /// All frames (centred 400, multiple of 4), centre crop and resize.
    Eval(EvalTransform),
}

impl ClipPipeline {
    fn temporal(&self) -> TemporalSampling {
        match self {
            Self::Train { temporal, .. } => *temporal,
            Self::Eval(_) => TemporalSampling::Eval,
        }
    }

    fn out_size(&self) -> usize {
        match self {
            Self::Train { augment, .. } => augment.out_size,
            Self::Eval(t) => t.out_size,
        }
    }
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Seed of every random draw.
    pub seed: u64,
    /// Decode/augment threads (a dedicated pool).
    pub threads: usize,
    /// Finished batches allowed to wait for the consumer.
    pub prefetch_batches: usize,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch_batches: 2,
        }
    }
}

/// One batch, ready for the model.
#[derive(Debug)]
pub struct VideoBatch {
    /// Position of the batch stream after this batch (store it to resume after it).
    pub cursor: SamplerCursor,
    /// Dataset indices of the samples.
    pub indices: Vec<usize>,
    /// Annotation names.
    pub names: Vec<String>,
    /// Gloss strings as annotated.
    pub glosses: Vec<String>,
    /// Text strings as annotated.
    pub texts: Vec<String>,
    /// `[B, 3, T, H, W]` float32, BGR, in [−1, 1]; clips shorter than T repeat their last
    /// frame (a view of a `[B, T, 3, H, W]` buffer; the model may call `.contiguous()`).
    pub videos: Tensor,
    /// `[B]` int64: valid frames per clip.
    pub lengths: Tensor,
    /// Valid frames per clip, as plain numbers.
    pub frame_counts: Vec<usize>,
}

/// Why a batch could not be produced.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A frame was missing, unreadable or undecodable.
    #[error("sample {index} ('{video}'): {source}")]
    Frame {
        /// Dataset index.
        index: usize,
        /// Annotation name.
        video: String,
        /// The underlying error (names the frame and its location).
        source: Box<SourceError>,
    },
    /// A frame could not be transformed (e.g. its size differs from the clip's first frame).
    #[error("sample {index} ('{video}'){}: {source}", frame_suffix(*.frame))]
    Augment {
        /// Dataset index.
        index: usize,
        /// Annotation name.
        video: String,
        /// 0-based frame position, when the error is about one frame.
        frame: Option<usize>,
        /// The transform's error.
        source: Box<AugmentError>,
    },
    /// A batch refers to a sample that does not exist.
    #[error("sample index {index} is out of range (dataset has {len} samples)")]
    BadIndex {
        /// The index.
        index: usize,
        /// Dataset size.
        len: usize,
    },
    /// A worker panicked while building a batch.
    #[error("loader worker panicked while building the batch ending at {cursor:?}: {message}")]
    WorkerPanic {
        /// Cursor of the failed batch.
        cursor: SamplerCursor,
        /// The panic message.
        message: String,
    },
    /// The producer thread ended without finishing its plan.
    #[error("the loader's producer thread stopped unexpectedly")]
    ProducerGone,
    /// The thread pool could not be created.
    #[error("cannot start loader threads: {0}")]
    Pool(String),
}

/// A running loader; iterate it to get batches in plan order.
pub struct VideoLoader {
    receiver: Option<Receiver<Result<VideoBatch, LoadError>>>,
    stop: Arc<AtomicBool>,
    producer: Option<JoinHandle<()>>,
    remaining: usize,
}

impl VideoLoader {
    /// Starts producing `plan` (batches of dataset indices with their cursors, e.g. from
    /// [`DistributedSampler::batches`](super::sampler::DistributedSampler::batches)).
    pub fn start(
        dataset: Arc<VideoDataset>,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        pipeline: ClipPipeline,
        options: LoaderOptions,
    ) -> Result<Self, LoadError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads.max(1))
            .thread_name(|i| format!("slt-loader-{i}"))
            .build()
            .map_err(|e| LoadError::Pool(e.to_string()))?;
        let (sender, receiver) = bounded(options.prefetch_batches.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let remaining = plan.len();
        let producer_stop = Arc::clone(&stop);
        let producer = std::thread::Builder::new()
            .name("slt-loader".into())
            .spawn(move || {
                for (cursor, indices) in plan {
                    if producer_stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let built = catch_unwind(AssertUnwindSafe(|| {
                        pool.install(|| {
                            build_batch(
                                &dataset,
                                &pipeline,
                                &options,
                                cursor,
                                &indices,
                                &producer_stop,
                            )
                        })
                    }))
                    .unwrap_or_else(|payload| {
                        Err(LoadError::WorkerPanic {
                            cursor,
                            message: panic_message(payload.as_ref()),
                        })
                    });
                    let failed = built.is_err();
                    if sender.send(built).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| LoadError::Pool(e.to_string()))?;
        Ok(Self {
            receiver: Some(receiver),
            stop,
            producer: Some(producer),
            remaining,
        })
    }
}

impl Iterator for VideoLoader {
    type Item = Result<VideoBatch, LoadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let receiver = self.receiver.as_ref()?;
        match receiver.recv() {
            Ok(Ok(batch)) => {
                self.remaining -= 1;
                Some(Ok(batch))
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                self.remaining = 0;
                Some(Err(LoadError::ProducerGone))
            }
        }
    }
}

impl Drop for VideoLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a producer waiting on a full channel.
        self.receiver.take();
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

fn frame_suffix(frame: Option<usize>) -> String {
    frame.map(|f| format!(" frame {f}")).unwrap_or_default()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// What one sample contributes: its frame positions and its spatial plan.
struct SamplePlan<'a> {
    record: &'a SignRecord,
    index: usize,
    frames: Vec<usize>,
    spatial: SpatialPlan,
    /// The first selected frame, decoded in stage 1 to learn the frame size; reused.
    first_frame: RgbFrame,
}

fn build_batch(
    dataset: &VideoDataset,
    pipeline: &ClipPipeline,
    options: &LoaderOptions,
    cursor: SamplerCursor,
    indices: &[usize],
    stop: &AtomicBool,
) -> Result<VideoBatch, LoadError> {
    let epoch = cursor.epoch;
    let temporal = pipeline.temporal();
    // Stage 1: temporal selection and the spatial plan, which needs the frame size.
    let plans: Vec<SamplePlan<'_>> = indices
        .par_iter()
        .map(|&index| {
            let record = dataset.records.get(index).ok_or(LoadError::BadIndex {
                index,
                len: dataset.records.len(),
            })?;
            #[cfg(test)]
            tests::maybe_panic(index);
            let key = SampleKey {
                seed: options.seed,
                epoch,
                sample_index: index as u64,
            };
            let mut rng = key.rng(Purpose::TemporalSampling);
            let frames = select_frames(record.num_frames, &temporal, &mut rng, MAX_FRAMES);
            let first = frames.first().copied().unwrap_or(0);
            let probe = dataset
                .source
                .read_frame(&record.name, first)
                .map_err(|source| LoadError::Frame {
                    index,
                    video: record.name.clone(),
                    source: Box::new(source),
                })?;
            let spatial = match pipeline {
                ClipPipeline::Train { augment, .. } => {
                    augment.draw(probe.width, probe.height, &key)
                }
                ClipPipeline::Eval(transform) => transform.plan(probe.width, probe.height),
            }
            .map_err(|source| LoadError::Augment {
                index,
                video: record.name.clone(),
                frame: None,
                source: Box::new(source),
            })?;
            Ok(SamplePlan {
                record,
                index,
                frames,
                spatial,
                first_frame: probe,
            })
        })
        .collect::<Result<_, LoadError>>()?;

    let side = pipeline.out_size();
    let frame_len = 3 * side * side;
    let max_len = plans.iter().map(|p| p.frames.len()).max().unwrap_or(0);
    let batch_len = plans.len();
    let dims = [
        batch_len as i64,
        max_len as i64,
        3,
        side as i64,
        side as i64,
    ];
    // The batch is written straight into the tensor's memory: no zero-fill and no copy, which
    // would otherwise be serial passes over ~30 MB per batch while the pool idles.
    let frames_major = Tensor::empty(dims, (tch::Kind::Float, tch::Device::Cpu));
    let numel = batch_len * max_len * frame_len;
    let buffer: &mut [f32] = if numel == 0 {
        &mut []
    } else {
        // SAFETY: `frames_major` is a freshly allocated, contiguous f32 CPU tensor of exactly
        // `numel` elements; nothing else refers to its storage until this function returns it,
        // and the slice is not used after that.
        unsafe { std::slice::from_raw_parts_mut(frames_major.data_ptr() as *mut f32, numel) }
    };

    // Stage 2: every (sample, frame) pair is one work item writing its own [3, H, W] slot.
    buffer
        .par_chunks_mut(frame_len.max(1))
        .enumerate()
        .try_for_each(|(slot, out)| {
            let (b, t) = (slot / max_len.max(1), slot % max_len.max(1));
            let plan = &plans[b];
            let Some(&frame_index) = plan.frames.get(t) else {
                return Ok(()); // padding, filled below
            };
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let decoded;
            let frame = if t == 0 {
                &plan.first_frame
            } else {
                decoded = dataset
                    .source
                    .read_frame(&plan.record.name, frame_index)
                    .map_err(|source| LoadError::Frame {
                        index: plan.index,
                        video: plan.record.name.clone(),
                        source: Box::new(source),
                    })?;
                &decoded
            };
            let frame_ref = FrameRef {
                width: frame.width,
                height: frame.height,
                rgb: &frame.rgb,
            };
            plan.spatial
                .apply(frame_ref, out, 0, 1)
                .map_err(|source| LoadError::Augment {
                    index: plan.index,
                    video: plan.record.name.clone(),
                    frame: Some(frame_index),
                    source: Box::new(source),
                })
        })?;

    // Pad each clip to the batch length by repeating its last frame.
    // A clip without frames (fewer than 4 in eval mode) is all zeros.
    for (b, plan) in plans.iter().enumerate() {
        let len = plan.frames.len();
        let clip = &mut buffer[b * max_len * frame_len..(b + 1) * max_len * frame_len];
        if len == 0 {
            clip.fill(0.0);
            continue;
        }
        if len == max_len {
            continue;
        }
        let (valid, padding) = clip.split_at_mut(len * frame_len);
        let last = &valid[(len - 1) * frame_len..];
        for slot in padding.chunks_exact_mut(frame_len) {
            slot.copy_from_slice(last);
        }
    }

    let videos = frames_major.permute([0, 2, 1, 3, 4]);
    let frame_counts: Vec<usize> = plans.iter().map(|p| p.frames.len()).collect();
    let lengths = Tensor::from_slice(&frame_counts.iter().map(|&n| n as i64).collect::<Vec<_>>());
    Ok(VideoBatch {
        cursor,
        indices: indices.to_vec(),
        names: plans.iter().map(|p| p.record.name.clone()).collect(),
        glosses: plans.iter().map(|p| p.record.gloss.clone()).collect(),
        texts: plans.iter().map(|p| p.record.text.clone()).collect(),
        videos,
        lengths,
        frame_counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::{FrameAdjust, FrameLayout};
    use std::sync::atomic::AtomicUsize;

    static PANIC_ON_SAMPLE: AtomicUsize = AtomicUsize::new(usize::MAX);

    /// Test hook: panics while preparing the sample with this index.
    pub(super) fn maybe_panic(index: usize) {
        if PANIC_ON_SAMPLE.load(Ordering::Relaxed) == index {
            panic!("injected failure for sample {index}");
        }
    }

    fn png(width: u32, height: u32, value: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![value; (width * height * 3) as usize])
            .unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn a_panicking_worker_becomes_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        for v in 0..3 {
            let name = format!("train/v{v}");
            let folder = dir.path().join("images").join(&name);
            std::fs::create_dir_all(&folder).unwrap();
            for f in 1..=4 {
                std::fs::write(folder.join(format!("images{f:04}.png")), png(8, 10, 40 * v))
                    .unwrap();
            }
            records.push(SignRecord {
                name,
                signer: "Signer01".into(),
                gloss: "A".into(),
                text: "a .".into(),
                num_frames: 4,
            });
        }
        let source =
            VideoSource::open(dir.path(), FrameLayout::Phoenix2014T, FrameAdjust::NONE).unwrap();
        let dataset = Arc::new(VideoDataset {
            records,
            source: Arc::new(source),
        });
        let plan = (0..3)
            .map(|i| {
                (
                    SamplerCursor {
                        epoch: 0,
                        batch: i + 1,
                    },
                    vec![i],
                )
            })
            .collect();
        let pipeline = ClipPipeline::Eval(EvalTransform {
            center_crop: None,
            out_size: 4,
        });
        PANIC_ON_SAMPLE.store(1, Ordering::Relaxed);
        let results: Vec<_> = VideoLoader::start(dataset, plan, pipeline, LoaderOptions::default())
            .unwrap()
            .collect();
        PANIC_ON_SAMPLE.store(usize::MAX, Ordering::Relaxed);
        assert_eq!(results.len(), 2);
        let first = results[0].as_ref().unwrap();
        assert_eq!(first.videos.size(), vec![1, 3, 4, 4, 4]);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("panicked") && err.contains("injected failure for sample 1"),
            "{err}"
        );
    }
}
