//! Helpers shared by the integration tests: a tiny synthetic set and its pipeline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slt::data::augment::TrainAugment;
use slt::data::loader::ClipPipeline;
use slt::data::sampling::TemporalSampling;
use slt::data::source::{FrameAdjust, FrameLayout, VideoSource};
use slt::data::synth::{generate, SynthOptions};

/// Generates 6/2/2 synthetic videos of 64×80 pixels below `dir`; returns their folder.
pub fn tiny_set(dir: &Path) -> PathBuf {
    let out = dir.join("synthetic");
    generate(&SynthOptions {
        out_dir: out.clone(),
        train_size: 6,
        dev_size: 2,
        test_size: 2,
        width: 64,
        height: 80,
        frames_per_gloss: 4,
        vocab_size: 6,
        progress: false,
        ..SynthOptions::default()
    })
    .expect("synthetic set");
    out
}

/// Opens a Phoenix-layout zip.
pub fn open(zip: &Path) -> Arc<VideoSource> {
    Arc::new(VideoSource::open(zip, FrameLayout::Phoenix2014T, FrameAdjust::NONE).expect("source"))
}

/// The reference's training augmentation at 32×32 output.
pub fn train_pipeline() -> ClipPipeline {
    ClipPipeline::Train {
        temporal: TemporalSampling::Train {
            tmin: 0.5,
            tmax: 1.5,
        },
        augment: TrainAugment {
            crop_scale: (0.7, 1.0),
            crop_ratio: (0.75, 1.3),
            color_jitter: true,
            out_size: 32,
        },
    }
}

/// The Python interpreter of the test oracles (`$SLT_PYTHON_ORACLE`, set by `./setup.sh`).
/// `None` (with a note) when `SLT_SKIP_ORACLE=1`; otherwise a missing interpreter fails the test.
pub fn oracle_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SLT_PYTHON_ORACLE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if std::env::var("SLT_SKIP_ORACLE").as_deref() == Ok("1") => {
            eprintln!("{test}: skipped (SLT_SKIP_ORACLE=1, no SLT_PYTHON_ORACLE)");
            None
        }
        _ => panic!(
            "{test}: SLT_PYTHON_ORACLE is not set; run the tests via ./setup.sh \
             (SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test {}), \
             or set SLT_SKIP_ORACLE=1 to skip the Python oracle tests",
            env!("CARGO_CRATE_NAME")
        ),
    }
}
