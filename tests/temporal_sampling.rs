//! Temporal sampling: parity with the reference's eval-mode `get_selected_indexs` (fixture
//! `temporal_sampling/meta.json` in the folder named by `SLT_FIXTURES`, default
//! `../shared/fixtures`), and properties of train mode.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test temporal_sampling
//! ```

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use serde_json::Value;
use slt::data::rng::{data_rng, Purpose};
use slt::data::sampling::{
    select_frames, train_clip_length, train_length_bounds, TemporalSampling, MAX_FRAMES,
};

fn fixture_path() -> PathBuf {
    let root = std::env::var_os("SLT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    root.join("temporal_sampling").join("meta.json")
}

fn load_fixture() -> Value {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn as_usize(v: &Value, what: &str) -> usize {
    v.as_u64()
        .and_then(|x| usize::try_from(x).ok())
        .unwrap_or_else(|| panic!("{what}: expected a non-negative integer, got {v}"))
}

fn eval(vlen: usize) -> Vec<usize> {
    // Eval mode never draws; any generator will do.
    let mut rng = data_rng(0, 0, 0, Purpose::TemporalSampling);
    select_frames(vlen, &TemporalSampling::Eval, &mut rng, MAX_FRAMES)
}

#[test]
fn eval_summary_matches_fixture() {
    let fixture = load_fixture();
    let summary = fixture["summary_all_vlen_1_to_500"]
        .as_array()
        .expect("summary_all_vlen_1_to_500 must be a list");
    assert!(!summary.is_empty(), "summary_all_vlen_1_to_500 is empty");
    for entry in summary {
        let vlen = as_usize(&entry["vlen"], "vlen");
        let ctx = format!("vlen {vlen}");
        let got = eval(vlen);
        assert_eq!(
            got.len(),
            as_usize(&entry["valid_len"], &ctx),
            "{ctx}: valid_len"
        );
        let first = entry["first"].as_u64().map(|x| x as usize);
        let last = entry["last"].as_u64().map(|x| x as usize);
        assert_eq!(got.first().copied(), first, "{ctx}: first");
        assert_eq!(got.last().copied(), last, "{ctx}: last");
        let contiguous = got.windows(2).all(|w| w[1] == w[0] + 1);
        let expected = entry["contiguous"]
            .as_bool()
            .unwrap_or_else(|| panic!("{ctx}: contiguous must be a bool"));
        assert_eq!(contiguous, expected, "{ctx}: contiguous");
    }
}

#[test]
fn eval_full_lists_match_fixture() {
    let fixture = load_fixture();
    let lists = fixture["full_index_lists"]
        .as_object()
        .expect("full_index_lists must be an object");
    assert!(!lists.is_empty(), "full_index_lists is empty");
    for (key, expected) in lists {
        let vlen: usize = key
            .parse()
            .unwrap_or_else(|e| panic!("full_index_lists key {key:?}: {e}"));
        let expected: Vec<usize> = expected
            .as_array()
            .unwrap_or_else(|| panic!("full_index_lists[{key}] must be a list"))
            .iter()
            .map(|v| as_usize(v, key))
            .collect();
        assert_eq!(eval(vlen), expected, "vlen {vlen}");
    }
}

const REFERENCE_TRAIN: TemporalSampling = TemporalSampling::Train {
    tmin: 0.5,
    tmax: 1.5,
};

fn check_train_clip(vlen: usize, tmin: f64, tmax: f64, max_frames: usize, clip: &[usize]) {
    let ctx = format!("vlen {vlen}, tmin {tmin}, tmax {tmax}, max {max_frames}: {clip:?}");
    assert_eq!(clip.len() % 4, 0, "{ctx}: length not a multiple of 4");
    assert!(clip.windows(2).all(|w| w[0] <= w[1]), "{ctx}: not sorted");
    assert!(clip.iter().all(|&i| i < vlen), "{ctx}: index out of range");
    let (low, high) = train_length_bounds(vlen, tmin, tmax, max_frames);
    let min_len = train_clip_length(low, max_frames);
    let max_len = train_clip_length(high, max_frames);
    assert!(
        (min_len..=max_len).contains(&clip.len()),
        "{ctx}: length outside [{min_len}, {max_len}]"
    );
    let distinct: HashSet<usize> = clip.iter().copied().collect();
    if clip.len() <= vlen {
        assert_eq!(distinct.len(), clip.len(), "{ctx}: repeated frames");
    } else {
        assert_eq!(distinct.len(), vlen, "{ctx}: not every frame used");
    }
}

#[test]
fn train_mode_properties() {
    let TemporalSampling::Train { tmin, tmax } = REFERENCE_TRAIN else {
        unreachable!()
    };
    for vlen in 1..=900usize {
        for draw in 0..6u64 {
            let mut rng = data_rng(11, draw, vlen as u64, Purpose::TemporalSampling);
            let clip = select_frames(vlen, &REFERENCE_TRAIN, &mut rng, MAX_FRAMES);
            check_train_clip(vlen, tmin, tmax, MAX_FRAMES, &clip);
            // Where the reference is defined (lower bound <= upper bound, L > 0), the
            // length lies in the reference's rounded range exactly.
            let low = (tmin * vlen as f64) as usize;
            let high = MAX_FRAMES.min((tmax * vlen as f64) as usize);
            if low >= 1 && low <= high {
                assert!(clip.len() >= low.div_ceil(4) * 4 && clip.len() <= high.div_ceil(4) * 4);
            }
        }
    }
    // Other fractions and a max_frames that is not a multiple of 4.
    for (tmin, tmax, max_frames) in [(0.8, 1.2, 400), (0.0, 2.0, 64), (1.0, 1.0001, 99)] {
        let mode = TemporalSampling::Train { tmin, tmax };
        for vlen in 1..=300usize {
            let mut rng = data_rng(3, 0, vlen as u64, Purpose::TemporalSampling);
            let clip = select_frames(vlen, &mode, &mut rng, max_frames);
            check_train_clip(vlen, tmin, tmax, max_frames, &clip);
        }
    }
}

#[test]
fn train_mode_reaches_the_whole_length_range() {
    // vlen 20: L in [10, 30] → rounded up {12, 16, 20, 24, 28, 32}; all must occur.
    let vlen = 20;
    let mut lengths = BTreeSet::new();
    for i in 0..2000 {
        let mut rng = data_rng(5, 1, i, Purpose::TemporalSampling);
        lengths.insert(select_frames(vlen, &REFERENCE_TRAIN, &mut rng, MAX_FRAMES).len());
    }
    assert_eq!(
        lengths.into_iter().collect::<Vec<_>>(),
        vec![12, 16, 20, 24, 28, 32]
    );
}

#[test]
fn train_mode_is_a_pure_function_of_the_key() {
    let draw = |seed, epoch, index| {
        let mut rng = data_rng(seed, epoch, index, Purpose::TemporalSampling);
        select_frames(250, &REFERENCE_TRAIN, &mut rng, MAX_FRAMES)
    };
    assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
    let others = [draw(2, 2, 3), draw(1, 3, 3), draw(1, 2, 4)];
    assert!(others.iter().all(|o| *o != draw(1, 2, 3)));
}

#[test]
fn train_mode_subsets_are_spread_over_the_video() {
    // Frames are exchangeable: over 400 draws every frame of a 100-frame video must be picked
    // about equally often (no bias towards the start, the end or the centre).
    let vlen = 100;
    let mut counts = vec![0usize; vlen];
    for i in 0..400 {
        let mut rng = data_rng(8, 0, i, Purpose::TemporalSampling);
        for f in select_frames(vlen, &REFERENCE_TRAIN, &mut rng, MAX_FRAMES) {
            counts[f] += 1;
        }
    }
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    let total: usize = counts.iter().sum();
    let mean = total as f64 / vlen as f64;
    assert!(
        counts
            .iter()
            .all(|&c| (c as f64) > 0.6 * mean && (c as f64) < 1.6 * mean),
        "uneven: {counts:?}"
    );
}
