//! From a config to datasets, frame sources and clip pipelines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::annotation::{read_annotations, AnnotationError};
use super::augment::{EvalTransform, TrainAugment};
use super::gloss::{GlossError, S2GGlossTokenizer};
use super::loader::{ClipPipeline, VideoDataset};
use super::sampling::{SamplingError, TemporalSampling};
use super::source::{FrameAdjust, FrameLayout, SourceError, VideoSource};
use crate::config::{DataConfig, DatasetName, SltConfig, TransformConfig};

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// `data.train`.
    Train,
    /// `data.dev`.
    Dev,
    /// `data.test`.
    Test,
}

impl Split {
    /// All splits, in the order train, dev, test.
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    /// `train`, `dev` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "dev" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            other => Err(format!(
                "unknown split '{other}' (expected train, dev or test)"
            )),
        }
    }
}

/// Errors assembling a dataset from a config.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// A key the task needs is absent.
    #[error("config key {0} is required to read videos")]
    MissingKey(&'static str),
    /// The annotation file could not be read.
    #[error(transparent)]
    Annotations(#[from] AnnotationError),
    /// The video source could not be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The gloss vocabulary could not be read.
    #[error(transparent)]
    Gloss(#[from] GlossError),
    /// `temporal_augmentation` is out of range.
    #[error("data.transform_cfg.temporal_augmentation: {0}")]
    Temporal(#[from] SamplingError),
}

impl From<DatasetName> for FrameLayout {
    fn from(name: DatasetName) -> Self {
        match name {
            DatasetName::Phoenix2014T => FrameLayout::Phoenix2014T,
            DatasetName::Phoenix2014 => FrameLayout::Phoenix2014,
            DatasetName::CslDaily => FrameLayout::CslDaily,
        }
    }
}

/// The annotation file of `split`.
pub fn annotation_path(data: &DataConfig, split: Split) -> &Path {
    match split {
        Split::Train => &data.train,
        Split::Dev => &data.dev,
        Split::Test => &data.test,
    }
}

/// What the reference does to a frame right after decoding: for CSL-Daily, the optional
/// `csl_cut` (keep rows 80..512) and the resize to `csl_resize` (PIL `(width, height)`).
pub fn frame_adjust(data: &DataConfig) -> FrameAdjust {
    match (data.dataset_name, &data.transform_cfg) {
        (DatasetName::CslDaily, Some(t)) => FrameAdjust {
            crop: t.csl_cut.then_some((0, 80, 512, 512)),
            resize: Some((t.csl_resize[0], t.csl_resize[1])),
        },
        (DatasetName::CslDaily, None) => FrameAdjust {
            crop: Some((0, 80, 512, 512)),
            resize: Some((320, 320)),
        },
        _ => FrameAdjust::NONE,
    }
}

/// Opens `data.zip_file` (a zip archive or an unpacked directory).
pub fn open_video_source(data: &DataConfig) -> Result<VideoSource, DatasetError> {
    let path: &PathBuf = data
        .zip_file
        .as_ref()
        .ok_or(DatasetError::MissingKey("data.zip_file"))?;
    Ok(VideoSource::open(
        path,
        data.dataset_name.into(),
        frame_adjust(data),
    )?)
}

/// The clip pipeline the reference applies to `split`: augmentation for train, the
/// deterministic transform otherwise.
pub fn clip_pipeline(
    transform: &TransformConfig,
    split: Split,
) -> Result<ClipPipeline, DatasetError> {
    let eval = EvalTransform {
        center_crop: if transform.center_crop {
            transform.center_crop_size
        } else {
            None
        },
        out_size: transform.img_size,
    };
    if split != Split::Train {
        return Ok(ClipPipeline::Eval(eval));
    }
    let range = transform.temporal_augmentation;
    Ok(ClipPipeline::Train {
        temporal: TemporalSampling::from_fractions(range.tmin, range.tmax)?,
        augment: TrainAugment {
            crop_scale: (transform.bottom_area, 1.0),
            crop_ratio: (transform.aspect_ratio_min, transform.aspect_ratio_max),
            color_jitter: transform.color_jitter,
            out_size: transform.img_size,
        },
    })
}

/// The videos of `split` with an already opened source (share one source between splits).
pub fn video_dataset(
    config: &SltConfig,
    split: Split,
    source: Arc<VideoSource>,
) -> Result<VideoDataset, DatasetError> {
    let records = read_annotations(annotation_path(&config.data, split))?;
    Ok(VideoDataset { records, source })
}

/// The Sign2Gloss tokenizer named by `model.RecognitionNetwork.GlossTokenizer`.
pub fn recognition_tokenizer(config: &SltConfig) -> Result<S2GGlossTokenizer, DatasetError> {
    let settings = &config
        .model
        .recognition_network
        .as_ref()
        .ok_or(DatasetError::MissingKey("model.RecognitionNetwork"))?
        .gloss_tokenizer;
    Ok(S2GGlossTokenizer::from_file(
        &settings.gloss2id_file,
        settings.lower_case,
    )?)
}
