//! Dropping a loader mid-stream stops every thread it started. In its own test binary, so
//! that no other test's loader threads are counted.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open, tiny_set, train_pipeline};
use slt::data::annotation::read_annotations;
use slt::data::loader::{LoaderOptions, VideoDataset, VideoLoader};
use slt::data::sampler::DistributedSampler;

#[test]
fn dropping_a_loader_mid_stream_stops_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let set = tiny_set(dir.path());
    let records = read_annotations(&set.join("synthetic.train")).unwrap();
    let dataset = Arc::new(VideoDataset {
        records: records.clone(),
        source: open(&set.join("videos.zip")),
    });
    let plan = DistributedSampler::train(records.len(), 0, 1, 1, true, 0)
        .unwrap()
        .batches(0, 0);
    let options = LoaderOptions {
        seed: 0,
        threads: 2,
        prefetch_batches: 1,
    };
    let mut loader = VideoLoader::start(dataset, plan, train_pipeline(), options).unwrap();
    assert!(loader.next().unwrap().is_ok());
    let started = Instant::now();
    drop(loader);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The pool's threads exit once the producer (which owns the pool) has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = loader_threads();
        if alive == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} loader threads still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Threads of this process whose name starts with `slt-loader`.
fn loader_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .map(|c| c.starts_with("slt-loader"))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}
