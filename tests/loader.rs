//! The video pipeline end to end on a small synthetic set: validation, damaged archives,
//! determinism across thread counts.

mod common;

use common::{open, tiny_set, train_pipeline};

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slt::data::annotation::read_annotations;
use slt::data::augment::EvalTransform;
use slt::data::gloss::S2GGlossTokenizer;
use slt::data::loader::{ClipPipeline, LoadError, LoaderOptions, VideoDataset, VideoLoader};
use slt::data::sampler::DistributedSampler;
use slt::data::validate::{validate, FrameCheck};

/// Copies `zip` to `out`, truncating entry `truncate` to half its size and leaving out `drop`.
fn damaged_copy(zip: &Path, out: &Path, truncate: &str, drop: &str) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        if name == drop {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == truncate {
            data.truncate(data.len() / 2);
        }
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn synthetic_set_validates_and_damage_is_named_by_validate_and_loader() {
    let dir = tempfile::tempdir().unwrap();
    let set = tiny_set(dir.path());
    let zip = set.join("videos.zip");
    let records = read_annotations(&set.join("synthetic.train")).unwrap();
    let tokenizer = S2GGlossTokenizer::from_file(&set.join("gloss2ids.pkl"), true).unwrap();
    let clean = validate(&records, &open(&zip), Some(&tokenizer), FrameCheck::Decode);
    assert!(clean.is_clean(), "{clean}");
    assert_eq!(clean.videos, 6);

    let broken_video = &records[2];
    let truncated = format!("images/{}/images0002.png", broken_video.name);
    let deleted_video = &records[4];
    let last = deleted_video.num_frames;
    let deleted = format!("images/{}/images{last:04}.png", deleted_video.name);
    let damaged = dir.path().join("damaged.zip");
    damaged_copy(&zip, &damaged, &truncated, &deleted);

    let report = validate(
        &records,
        &open(&damaged),
        Some(&tokenizer),
        FrameCheck::Decode,
    );
    assert!(!report.is_clean());
    assert_eq!(report.corrupt.len(), 1, "{report}");
    assert_eq!(report.corrupt[0].video, broken_video.name);
    assert_eq!(report.corrupt[0].frame, 1);
    assert_eq!(report.missing.len(), 1, "{report}");
    assert_eq!(report.missing[0].video, deleted_video.name);
    assert_eq!(report.missing[0].frame, last - 1);
    assert_eq!(report.count_mismatches.len(), 1, "{report}");
    let text = report.to_string();
    assert!(
        text.contains(&truncated) || text.contains("images0002.png"),
        "{text}"
    );
    assert!(text.contains(&deleted_video.name), "{text}");

    // The loader reports the broken sample instead of hanging or panicking. Eval mode reads
    // every frame, so the truncated frame is always selected.
    let dataset = Arc::new(VideoDataset {
        records: records.clone(),
        source: open(&damaged),
    });
    let plan = DistributedSampler::eval(records.len(), 0, 1, 1)
        .unwrap()
        .batches(0, 0);
    let pipeline = ClipPipeline::Eval(EvalTransform {
        center_crop: Some(64),
        out_size: 32,
    });
    let options = LoaderOptions {
        seed: 1,
        threads: 2,
        prefetch_batches: 1,
    };
    let started = Instant::now();
    let results: Vec<_> = VideoLoader::start(dataset, plan, pipeline, options)
        .unwrap()
        .collect();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        results.len(),
        3,
        "two good batches, then the error ends the stream"
    );
    let err = results[2].as_ref().unwrap_err();
    assert!(matches!(err, LoadError::Frame { index: 2, .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&broken_video.name) && message.contains("frame 1"),
        "{message}"
    );
}

#[test]
fn batches_do_not_depend_on_thread_count_and_follow_the_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let set = tiny_set(dir.path());
    let records = read_annotations(&set.join("synthetic.train")).unwrap();
    let source = open(&set.join("videos.zip"));
    let sampler = DistributedSampler::train(records.len(), 0, 1, 2, true, 5).unwrap();
    let run = |threads: usize, epoch: u64| {
        let dataset = Arc::new(VideoDataset {
            records: records.clone(),
            source: Arc::clone(&source),
        });
        let options = LoaderOptions {
            seed: 9,
            threads,
            prefetch_batches: 2,
        };
        VideoLoader::start(
            dataset,
            sampler.batches(epoch, 0),
            train_pipeline(),
            options,
        )
        .unwrap()
        .map(|b| b.unwrap())
        .collect::<Vec<_>>()
    };
    let one = run(1, 0);
    let two = run(2, 0);
    let other_epoch = run(2, 1);
    assert_eq!(one.len(), 3);
    for ((a, b), expected) in one.iter().zip(&two).zip(sampler.batches(0, 0)) {
        assert_eq!(a.indices, expected.1);
        assert_eq!(a.cursor, expected.0);
        assert_eq!(a.frame_counts, b.frame_counts);
        assert!(
            a.videos.equal(&b.videos),
            "identical pixels with 1 and 2 threads"
        );
        let size = a.videos.size();
        assert_eq!(&size[..2], &[2, 3]);
        assert_eq!(&size[3..], &[32, 32]);
        assert_eq!(size[2] as usize, *a.frame_counts.iter().max().unwrap());
        assert!(
            a.frame_counts.iter().all(|n| n % 4 == 0),
            "lengths are multiples of 4"
        );
        let (min, max) = (
            a.videos.min().double_value(&[]),
            a.videos.max().double_value(&[]),
        );
        assert!((-1.0..=1.0).contains(&min) && (-1.0..=1.0).contains(&max));
        // Padding repeats the last valid frame.
        for (b_idx, &len) in a.frame_counts.iter().enumerate() {
            let clip = a.videos.get(b_idx as i64);
            for t in len..size[2] as usize {
                let last = clip.select(1, len as i64 - 1);
                assert!(clip.select(1, t as i64).equal(&last));
            }
        }
    }
    assert_ne!(
        one.iter().map(|b| b.indices.clone()).collect::<Vec<_>>(),
        other_epoch
            .iter()
            .map(|b| b.indices.clone())
            .collect::<Vec<_>>(),
        "another epoch, another order"
    );
}
