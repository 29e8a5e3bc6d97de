//! Spatial augmentation against PyTorch: crop/centre crop (zero padding), bilinear resize
//! (`F.interpolate`, `align_corners=False`, no antialias), BGR, normalisation, and each
//! colour-jitter op as torchvision 0.10 computes it (`tests/oracles/augment_oracle.py`).
//!
//! Needs the venv interpreter in `SLT_PYTHON_ORACLE` (exported by ./setup.sh):
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test augment_oracle
//! ```
//! Without it the tests fail, unless `SLT_SKIP_ORACLE=1` (then they report being skipped).

mod common;

use common::oracle_python;
use std::path::Path;
use std::process::Command;

use rand::Rng;
use serde_json::{json, Value};
use slt::data::augment::{CropBox, EvalTransform, FrameRef, JitterOp, SpatialPlan, TrainAugment};
use slt::data::rng::{data_rng, Purpose, SampleKey};

const TOLERANCE: f32 = 1e-5;

/// A test frame: random bytes, with a share of pixels drawn from a few levels so that grays and
/// ties between channels (all branches of RGB → HSV) occur.
fn test_frame(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let mut rng = data_rng(seed, 0, 0, Purpose::Synthetic);
    let levels = [0u8, 1, 64, 128, 200, 254, 255];
    let mut rgb = Vec::with_capacity(width * height * 3);
    for _ in 0..width * height {
        match rng.random_range(0..4) {
            0 => {
                let v = levels[rng.random_range(0..levels.len())];
                rgb.extend([v, v, v]);
            }
            1 => rgb.extend([0; 3].map(|_: u8| levels[rng.random_range(0..levels.len())])),
            _ => rgb.extend([0; 3].map(|_: u8| rng.random::<u8>())),
        }
    }
    rgb
}

struct Case {
    name: String,
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    plan: SpatialPlan,
    /// `Some(size)`: the oracle computes the centre crop itself; otherwise it uses the plan's box.
    center_crop: Option<usize>,
}

fn jitter_json(ops: &[JitterOp]) -> Value {
    Value::Array(
        ops.iter()
            .map(|op| match *op {
                JitterOp::Brightness(f) => json!(["brightness", f64::from(f)]),
                JitterOp::Contrast(f) => json!(["contrast", f64::from(f)]),
                JitterOp::Saturation(f) => json!(["saturation", f64::from(f)]),
                JitterOp::Hue(f) => json!(["hue", f64::from(f)]),
            })
            .collect(),
    )
}

/// Runs all cases through the oracle in one Python process and compares.
fn check_against_torch(test: &str, cases: &[Case]) {
    let Some(python) = oracle_python(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let frame = dir.path().join(format!("frame{k}.u8"));
        std::fs::write(&frame, &case.rgb).expect("write frame");
        let crop = case.plan.crop();
        spec.push(json!({
            "name": case.name,
            "frame": frame,
            "width": case.width,
            "height": case.height,
            "jitter": jitter_json(case.plan.jitter()),
            "center_crop": case.center_crop,
            "crop": [crop.top, crop.left, crop.height, crop.width],
            "out_size": case.plan.out_size(),
            "output": dir.path().join(format!("out{k}.f32")),
        }));
    }
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, Value::Array(spec).to_string()).expect("write spec");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/augment_oracle.py");
    let result = Command::new(&python)
        .arg(&script)
        .arg(&spec_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        result.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let mut failures = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let bytes = std::fs::read(dir.path().join(format!("out{k}.f32"))).expect("oracle output");
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut got = vec![0.0f32; case.plan.output_len(1)];
        let frame = FrameRef {
            width: case.width,
            height: case.height,
            rgb: &case.rgb,
        };
        case.plan.apply(frame, &mut got, 0, 1).expect("apply");
        assert_eq!(got.len(), want.len(), "{}: output size", case.name);
        let (worst, err) = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold(
                (0, 0.0f32),
                |acc, (i, e)| if e > acc.1 { (i, e) } else { acc },
            );
        eprintln!("{}: max |diff| = {err:.2e}", case.name);
        if err > TOLERANCE || got.iter().any(|v| !v.is_finite()) {
            failures.push(format!(
                "{}: max |diff| {err:.3e} at {worst} (got {}, torch {})",
                case.name, got[worst], want[worst]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn eval_case(name: &str, width: usize, height: usize, crop: Option<usize>, out: usize) -> Case {
    let plan = EvalTransform {
        center_crop: crop,
        out_size: out,
    }
    .plan(width, height)
    .expect("eval plan");
    Case {
        name: name.to_string(),
        width,
        height,
        rgb: test_frame(width, height, (width * 1000 + height) as u64),
        plan,
        center_crop: crop,
    }
}

fn box_case(name: &str, width: usize, height: usize, crop: CropBox, out: usize) -> Case {
    box_jitter_case(name, width, height, crop, out, Vec::new())
}

fn box_jitter_case(
    name: &str,
    width: usize,
    height: usize,
    crop: CropBox,
    out: usize,
    jitter: Vec<JitterOp>,
) -> Case {
    let plan = SpatialPlan::new(width, height, crop, out, jitter).expect("plan");
    Case {
        name: name.to_string(),
        width,
        height,
        rgb: test_frame(width, height, (width * 7 + height * 13 + out) as u64),
        plan,
        center_crop: None,
    }
}

#[test]
fn crop_resize_and_normalise_match_torch() {
    let mut cases = vec![
        // Phoenix eval: 7 px zero padding left/right, rows 18..241, no resize.
        eval_case("eval phoenix 210x260 crop 224", 210, 260, Some(224), 224),
        // Odd padding (6 before, 7 after) and half-way row offsets (17.5 → 18, 18.5 → 18).
        eval_case("eval 211x259 crop 224", 211, 259, Some(224), 224),
        eval_case("eval 209x261 crop 224", 209, 261, Some(224), 224),
        // Padding on both axes, then a downscale.
        eval_case("eval 200x190 crop 224 to 112", 200, 190, Some(224), 112),
        // CSL: crop 270 of 320, downscale to 224.
        eval_case("eval csl 320x320 crop 270", 320, 320, Some(270), 224),
        // No centre crop: upscale width, downscale height.
        eval_case("eval 210x260 resize 224", 210, 260, None, 224),
        box_case(
            "upscale 40x50 box",
            210,
            260,
            CropBox {
                top: 100,
                left: 30,
                height: 50,
                width: 40,
            },
            224,
        ),
        box_case(
            "downscale whole frame",
            210,
            260,
            CropBox {
                top: 0,
                left: 0,
                height: 260,
                width: 210,
            },
            100,
        ),
        box_case(
            "box reaching outside",
            50,
            40,
            CropBox {
                top: -5,
                left: 30,
                height: 48,
                width: 33,
            },
            29,
        ),
    ];
    let train = TrainAugment {
        crop_scale: (0.7, 1.0),
        crop_ratio: (0.75, 1.3),
        color_jitter: false,
        out_size: 224,
    };
    for i in 0..4 {
        let key = SampleKey {
            seed: 3,
            epoch: 0,
            sample_index: i,
        };
        let plan = train.draw(210, 260, &key).expect("draw");
        cases.push(Case {
            name: format!("train crop {:?}", plan.crop()),
            width: 210,
            height: 260,
            rgb: test_frame(210, 260, 100 + i),
            plan,
            center_crop: None,
        });
    }
    check_against_torch("crop_resize_and_normalise_match_torch", &cases);
}

#[test]
fn color_jitter_ops_match_torch() {
    let whole = CropBox {
        top: 0,
        left: 0,
        height: 36,
        width: 36,
    };
    let single = |name: &str, op: JitterOp| box_jitter_case(name, 36, 36, whole, 36, vec![op]);
    let mut cases = vec![
        single("brightness 0.6", JitterOp::Brightness(0.6)),
        single("brightness 1.37", JitterOp::Brightness(1.37)),
        single("contrast 0.63", JitterOp::Contrast(0.63)),
        single("contrast 1.4", JitterOp::Contrast(1.4)),
        single("saturation 0.6", JitterOp::Saturation(0.6)),
        single("saturation 1.29", JitterOp::Saturation(1.29)),
        single("hue -0.1", JitterOp::Hue(-0.1)),
        single("hue 0.073", JitterOp::Hue(0.073)),
        single("hue 0.5", JitterOp::Hue(0.5)),
        single("hue -0.5", JitterOp::Hue(-0.5)),
        single("hue 0", JitterOp::Hue(0.0)),
        // The contrast mean is over the full frame, before the crop.
        box_jitter_case(
            "contrast then crop",
            64,
            48,
            CropBox {
                top: 5,
                left: 40,
                height: 20,
                width: 16,
            },
            24,
            vec![JitterOp::Contrast(1.33)],
        ),
    ];
    // Full drawn plans (random op order and factors) with crops, as in training.
    let train = TrainAugment {
        crop_scale: (0.7, 1.0),
        crop_ratio: (0.75, 1.3),
        color_jitter: true,
        out_size: 64,
    };
    let mut found = 0;
    for i in 0.. {
        let key = SampleKey {
            seed: 5,
            epoch: 2,
            sample_index: i,
        };
        let plan = train.draw(70, 90, &key).expect("draw");
        if plan.jitter().is_empty() {
            continue;
        }
        cases.push(Case {
            name: format!("drawn {:?} {:?}", plan.jitter(), plan.crop()),
            width: 70,
            height: 90,
            rgb: test_frame(70, 90, 200 + i),
            plan,
            center_crop: None,
        });
        found += 1;
        if found == 6 {
            break;
        }
    }
    check_against_torch("color_jitter_ops_match_torch", &cases);
}
