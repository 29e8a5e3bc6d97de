use super::*;
use crate::data::rng::{data_rng, SampleKey};

fn phoenix_train() -> TrainAugment {
    TrainAugment {
        crop_scale: (0.7, 1.0),
        crop_ratio: (0.75, 1.3),
        color_jitter: true,
        out_size: 224,
    }
}

fn key(i: u64) -> SampleKey {
    SampleKey {
        seed: 7,
        epoch: 1,
        sample_index: i,
    }
}

fn normalise(v: u8) -> f32 {
    (f32::from(v) / 255.0 - 0.5) / 0.5
}

#[test]
fn center_crop_offsets_follow_torchvision() {
    let b = |w, h, s| {
        let c = center_crop_box(w, h, s);
        (c.top, c.left, c.height, c.width)
    };
    // Phoenix: 7 px zero padding each side, rows 18..241.
    assert_eq!(b(210, 260, 224), (18, -7, 224, 224));
    // Odd padding: 13 → 6 before, 7 after; 35 / 2 = 17.5 rounds half to even → 18.
    assert_eq!(b(211, 259, 224), (18, -6, 224, 224));
    // 37 / 2 = 18.5 → 18 (Python's round), not 19.
    assert_eq!(b(210, 261, 224), (18, -7, 224, 224));
    assert_eq!(b(200, 200, 224), (-12, -12, 224, 224));
    assert_eq!(b(320, 320, 270), (25, 25, 270, 270));
    assert_eq!(b(224, 224, 224), (0, 0, 224, 224));
}

#[test]
fn random_crop_boxes_lie_inside_and_respect_ranges() {
    for i in 0..2000 {
        let c = random_resized_crop_box(
            210,
            260,
            (0.7, 1.0),
            (0.75, 1.3),
            &mut key(i).rng(Purpose::Crop),
        );
        assert!(c.top >= 0 && c.left >= 0, "{c:?}");
        assert!(
            c.top as usize + c.height <= 260 && c.left as usize + c.width <= 210,
            "{c:?}"
        );
        let area = (c.width * c.height) as f64 / (210.0 * 260.0);
        assert!((0.69..=1.0).contains(&area), "{c:?}: area {area}");
        let ratio = c.width as f64 / c.height as f64;
        assert!((0.74..=1.31).contains(&ratio), "{c:?}: ratio {ratio}");
    }
}

#[test]
fn random_crop_fallback_is_the_clamped_centre() {
    let mut rng = data_rng(0, 0, 0, Purpose::Crop);
    // No attempt can fit an area above the frame: fallback. Frame ratio 210/260 ≈ 0.81 is
    // inside (0.75, 1.3) → whole frame.
    let c = random_resized_crop_box(210, 260, (2.0, 3.0), (0.75, 1.3), &mut rng);
    assert_eq!(
        c,
        CropBox {
            top: 0,
            left: 0,
            height: 260,
            width: 210
        }
    );
    // Ratio range above the frame's → full width, height = round(210 / 1.0), centred.
    let c = random_resized_crop_box(210, 260, (2.0, 3.0), (1.0, 1.3), &mut rng);
    assert_eq!(
        c,
        CropBox {
            top: 25,
            left: 0,
            height: 210,
            width: 210
        }
    );
    // Ratio range below the frame's → full height, width = round(100 * 0.5) = 50.
    let c = random_resized_crop_box(300, 100, (2.0, 3.0), (0.25, 0.5), &mut rng);
    assert_eq!(
        c,
        CropBox {
            top: 0,
            left: 125,
            height: 100,
            width: 50
        }
    );
}

#[test]
fn draws_are_pure_and_streams_independent() {
    let aug = phoenix_train();
    let mut jittered = 0;
    for i in 0..2000 {
        let a = aug.draw(210, 260, &key(i)).expect("draw");
        let b = aug.draw(210, 260, &key(i)).expect("draw");
        assert_eq!((a.crop(), a.jitter()), (b.crop(), b.jitter()));
        let no_jitter = TrainAugment {
            color_jitter: false,
            ..aug.clone()
        };
        let c = no_jitter.draw(210, 260, &key(i)).expect("draw");
        assert_eq!(c.crop(), a.crop(), "jitter switch must not move the crop");
        assert!(c.jitter().is_empty());
        if !a.jitter().is_empty() {
            jittered += 1;
        }
    }
    // p = 0.3: 600 expected, sd ≈ 20.
    assert!((500..=700).contains(&jittered), "{jittered}");
}

#[test]
fn invalid_parameters_are_errors() {
    let bad = TrainAugment {
        crop_scale: (1.0, 0.5),
        ..phoenix_train()
    };
    assert!(matches!(
        bad.draw(10, 10, &key(0)),
        Err(AugmentError::Invalid(_))
    ));
    assert!(matches!(
        phoenix_train().draw(0, 10, &key(0)),
        Err(AugmentError::Empty { .. })
    ));
    let crop = CropBox {
        top: 0,
        left: 0,
        height: 4,
        width: 4,
    };
    assert!(SpatialPlan::new(4, 4, crop, 4, vec![JitterOp::Hue(0.7)]).is_err());
    assert!(SpatialPlan::new(4, 4, crop, 0, Vec::new()).is_err());
}

#[test]
fn apply_checks_buffers() {
    let plan = EvalTransform {
        center_crop: None,
        out_size: 4,
    }
    .plan(6, 5)
    .expect("plan");
    let rgb = vec![0u8; 6 * 5 * 3];
    let mut out = vec![0.0f32; plan.output_len(2)];
    let frame = FrameRef {
        width: 6,
        height: 5,
        rgb: &rgb,
    };
    assert!(plan.apply(frame, &mut out, 1, 2).is_ok());
    assert!(matches!(
        plan.apply(frame, &mut out, 2, 2),
        Err(AugmentError::Output { .. })
    ));
    assert!(matches!(
        plan.apply(frame, &mut out[1..], 0, 2),
        Err(AugmentError::Output { .. })
    ));
    let wrong = FrameRef {
        width: 5,
        height: 6,
        rgb: &rgb,
    };
    assert!(matches!(
        plan.apply(wrong, &mut out, 0, 2),
        Err(AugmentError::FrameSize { .. })
    ));
    let short = FrameRef {
        width: 6,
        height: 5,
        rgb: &rgb[1..],
    };
    assert!(matches!(
        plan.apply(short, &mut out, 0, 2),
        Err(AugmentError::FrameBytes { .. })
    ));
}

#[test]
fn centre_crop_without_resize_copies_pixels_and_pads_with_minus_one() {
    // 4 wide × 6 high, crop 6 → 1 px zero padding left/right, rows 0..6; output 6 (identity).
    let (w, h) = (4usize, 6usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
    let plan = EvalTransform {
        center_crop: Some(6),
        out_size: 6,
    }
    .plan(w, h)
    .expect("plan");
    assert_eq!(
        plan.crop(),
        CropBox {
            top: 0,
            left: -1,
            height: 6,
            width: 6
        }
    );
    let mut out = vec![0.0f32; plan.output_len(1)];
    plan.apply(
        FrameRef {
            width: w,
            height: h,
            rgb: &rgb,
        },
        &mut out,
        0,
        1,
    )
    .expect("apply");
    for y in 0..6 {
        for x in 0..6 {
            for c in 0..3 {
                let got = out[(c * 6 + y) * 6 + x];
                let want = if (1..=4).contains(&x) {
                    // BGR: output channel c is source channel 2 - c.
                    normalise(rgb[(y * w + x - 1) * 3 + 2 - c])
                } else {
                    -1.0
                };
                assert!((got - want).abs() < 1e-6, "({c},{y},{x}): {got} vs {want}");
            }
        }
    }
}

#[test]
fn apply_writes_only_its_time_step() {
    let (w, h) = (9usize, 7usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
    let frame = FrameRef {
        width: w,
        height: h,
        rgb: &rgb,
    };
    let aug = TrainAugment {
        out_size: 5,
        ..phoenix_train()
    };
    let plan = (0..)
        .map(|i| aug.draw(w, h, &key(i)).expect("draw"))
        .find(|p| !p.jitter().is_empty())
        .expect("some sample is jittered");
    let mut single = vec![0.0f32; plan.output_len(1)];
    plan.apply(frame, &mut single, 0, 1).expect("apply");
    let mut multi = vec![f32::NAN; plan.output_len(3)];
    plan.apply(frame, &mut multi, 1, 3).expect("apply");
    for c in 0..3 {
        for t in 0..3 {
            let chunk = &multi[(c * 3 + t) * 25..(c * 3 + t + 1) * 25];
            if t == 1 {
                assert_eq!(chunk, &single[c * 25..(c + 1) * 25]);
            } else {
                assert!(chunk.iter().all(|v| v.is_nan()));
            }
        }
    }
}

#[test]
fn jitter_path_without_ops_effect_matches_fast_path() {
    // Brightness 1 is an exact no-op, so the float path must agree with the u8 path.
    let (w, h) = (13usize, 11usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 17 % 256) as u8).collect();
    let frame = FrameRef {
        width: w,
        height: h,
        rgb: &rgb,
    };
    let crop = CropBox {
        top: 2,
        left: 1,
        height: 8,
        width: 10,
    };
    let fast = SpatialPlan::new(w, h, crop, 16, Vec::new()).expect("plan");
    let slow = SpatialPlan::new(w, h, crop, 16, vec![JitterOp::Brightness(1.0)]).expect("plan");
    let (mut a, mut b) = (vec![0.0; fast.output_len(1)], vec![0.0; slow.output_len(1)]);
    fast.apply(frame, &mut a, 0, 1).expect("apply");
    slow.apply(frame, &mut b, 0, 1).expect("apply");
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-6, "{max}");
}

/// Throughput of `apply` on Phoenix-sized frames (one core). Run with
/// `cargo test --release --lib data::augment::tests::apply_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run explicitly"]
fn apply_throughput() {
    let (w, h) = (210usize, 260usize);
    let rgb: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    let frame = FrameRef {
        width: w,
        height: h,
        rgb: &rgb,
    };
    let eval = EvalTransform {
        center_crop: Some(224),
        out_size: 224,
    }
    .plan(w, h)
    .expect("plan");
    let crop = random_resized_crop_box(
        w,
        h,
        (0.7, 1.0),
        (0.75, 1.3),
        &mut key(0).rng(Purpose::Crop),
    );
    let train = SpatialPlan::new(w, h, crop, 224, Vec::new()).expect("plan");
    let jitter = SpatialPlan::new(
        w,
        h,
        crop,
        224,
        draw_color_jitter(&mut key(0).rng(Purpose::ColorJitter)),
    )
    .expect("plan");
    let frames = 32;
    let mut out = vec![0.0f32; eval.output_len(frames)];
    for (name, plan) in [
        ("eval", &eval),
        ("train", &train),
        ("train+jitter", &jitter),
    ] {
        // Best of several rounds: the machine may be shared.
        let best = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                for t in 0..frames {
                    plan.apply(frame, &mut out, t, frames).expect("apply");
                }
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let rate = frames as f64 / best;
        eprintln!("{name}: {rate:.0} frames/s (210x260 -> 224, one thread)");
        assert!(rate > 100.0, "{name}: {rate} frames/s");
    }
}
