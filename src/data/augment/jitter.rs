//! Colour jitter with the semantics of torchvision 0.10's `ColorJitter` on float tensors in
//! `[0, 1]` (`functional_tensor.adjust_{brightness,contrast,saturation,hue}`), in `f32`.

use rand::seq::SliceRandom;
use rand::Rng;

/// One colour-jitter operation with its factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterOp {
    /// `clamp(f·x, 0, 1)`.
    Brightness(f32),
    /// `clamp(f·x + (1−f)·mean(gray), 0, 1)`, mean over the whole frame.
    Contrast(f32),
    /// `clamp(f·x + (1−f)·gray, 0, 1)` per pixel.
    Saturation(f32),
    /// Hue shift by `f` (in turns, `[-0.5, 0.5]`) through RGB → HSV → RGB.
    Hue(f32),
}

/// The reference's `ColorJitter(0.4, 0.4, 0.4, 0.1)` strengths.
pub const BRIGHTNESS: f32 = 0.4;
/// See [`BRIGHTNESS`].
pub const CONTRAST: f32 = 0.4;
/// See [`BRIGHTNESS`].
pub const SATURATION: f32 = 0.4;
/// See [`BRIGHTNESS`].
pub const HUE: f32 = 0.1;

impl JitterOp {
    /// Whether the factor is one torchvision accepts (`>= 0`, hue in `[-0.5, 0.5]`).
    pub fn is_valid(&self) -> bool {
        match *self {
            JitterOp::Brightness(f) | JitterOp::Contrast(f) | JitterOp::Saturation(f) => {
                f.is_finite() && f >= 0.0
            }
            JitterOp::Hue(f) => (-0.5..=0.5).contains(&f),
        }
    }
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, low: f32, high: f32) -> f32 {
    (f64::from(low) + f64::from(high - low) * rng.random::<f64>()) as f32
}

/// Draws `ColorJitter(0.4, 0.4, 0.4, 0.1)` parameters: a random order of the four ops
/// (torchvision's `randperm(4)`), factors uniform in `[0.6, 1.4]` and hue in `[-0.1, 0.1]`.
pub fn draw_color_jitter<R: Rng + ?Sized>(rng: &mut R) -> Vec<JitterOp> {
    let mut order = [0u8, 1, 2, 3];
    order.shuffle(rng);
    let b = uniform(rng, 1.0 - BRIGHTNESS, 1.0 + BRIGHTNESS);
    let c = uniform(rng, 1.0 - CONTRAST, 1.0 + CONTRAST);
    let s = uniform(rng, 1.0 - SATURATION, 1.0 + SATURATION);
    let h = uniform(rng, -HUE, HUE);
    order
        .iter()
        .map(|&k| match k {
            0 => JitterOp::Brightness(b),
            1 => JitterOp::Contrast(c),
            2 => JitterOp::Saturation(s),
            _ => JitterOp::Hue(h),
        })
        .collect()
}

/// `(1.0 - ratio)` as torchvision computes it (Python double) before the tensor op casts it to
/// `f32`.
fn complement(ratio: f32) -> f32 {
    (1.0 - f64::from(ratio)) as f32
}

#[inline(always)]
fn gray(p: &[f32]) -> f32 {
    0.2989f32 * p[0] + 0.587f32 * p[1] + 0.114f32 * p[2]
}

/// Applies the ops in order to an interleaved RGB `f32` frame in `[0, 1]`.
pub(crate) fn apply_ops(rgb: &mut [f32], ops: &[JitterOp]) {
    for op in ops {
        match *op {
            JitterOp::Brightness(f) => {
                for v in rgb.iter_mut() {
                    *v = (f * *v).clamp(0.0, 1.0);
                }
            }
            JitterOp::Contrast(f) => {
                let n = rgb.len() / 3;
                let sum: f64 = rgb.chunks_exact(3).map(|p| f64::from(gray(p))).sum();
                let mean = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
                let offset = complement(f) * mean;
                for v in rgb.iter_mut() {
                    *v = (f * *v + offset).clamp(0.0, 1.0);
                }
            }
            JitterOp::Saturation(f) => {
                let g = complement(f);
                for p in rgb.chunks_exact_mut(3) {
                    let l = g * gray(p);
                    for v in p.iter_mut() {
                        *v = (f * *v + l).clamp(0.0, 1.0);
                    }
                }
            }
            JitterOp::Hue(f) => {
                for p in rgb.chunks_exact_mut(3) {
                    let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
                    let (r, g, b) = hsv_to_rgb(remainder_one(h + f), s, v);
                    p[0] = r;
                    p[1] = g;
                    p[2] = b;
                }
            }
        }
    }
}

/// `floor(x)` for finite `|x| < 2^31` without a libm call (exact).
#[inline(always)]
fn floor_fast(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// `torch.fmod(x, 1.0)` for finite `|x| < 2^31`: `x − trunc(x)` is exact, hence equal.
#[inline(always)]
fn fmod_one(x: f32) -> f32 {
    x - x as i32 as f32
}

/// `torch.remainder(x, 1.0)` (result in `[0, 1]`, sign of the divisor) for finite
/// `|x| < 2^31`: `x − floor(x)` rounds exactly like `fmod(x, 1) + 1` for negative `x`.
#[inline(always)]
fn remainder_one(x: f32) -> f32 {
    x - floor_fast(x)
}

/// torchvision's `_rgb2hsv` for one pixel.
#[inline(always)]
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { cr };
    let rc = (maxc - r) / div;
    let gc = (maxc - g) / div;
    let bc = (maxc - b) / div;
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    (fmod_one(h / 6.0 + 1.0), s, maxc)
}

/// torchvision's `_hsv2rgb` for one pixel.
#[inline(always)]
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let i = floor_fast(h * 6.0);
    let f = h * 6.0 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::{data_rng, Purpose};

    #[test]
    fn fast_rounding_helpers_match_libm() {
        let xs = [
            -1.75f32, -1.0, -0.5, -1e-9, -0.0, 0.0, 1e-9, 0.3, 0.99999994, 1.0, 1.5, 1.8333334,
        ];
        for x in xs {
            assert_eq!(floor_fast(x), x.floor(), "floor {x}");
            assert_eq!(fmod_one(x), x % 1.0, "fmod {x}");
            let m = x % 1.0;
            let torch = if m != 0.0 && m < 0.0 { m + 1.0 } else { m };
            assert_eq!(remainder_one(x), torch, "remainder {x}");
        }
    }

    #[test]
    fn hsv_round_trip() {
        let samples = [
            (0.2, 0.5, 0.9),
            (1.0, 0.0, 0.0),
            (0.3, 0.3, 0.3),
            (0.0, 0.0, 0.0),
            (0.7, 0.7, 0.1),
            (0.1, 0.8, 0.8),
        ];
        for (r, g, b) in samples {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-6 && (g - g2).abs() < 1e-6 && (b - b2).abs() < 1e-6);
        }
    }

    #[test]
    fn hue_shift_of_a_third_rotates_primaries() {
        let mut px = [1.0f32, 0.0, 0.0];
        apply_ops(&mut px, &[JitterOp::Hue(1.0 / 3.0)]);
        assert!(px[0].abs() < 1e-6 && (px[1] - 1.0).abs() < 1e-6 && px[2].abs() < 1e-6);
        let mut px = [0.0f32, 0.0, 1.0];
        apply_ops(&mut px, &[JitterOp::Hue(-1.0 / 3.0)]);
        assert!(px[0].abs() < 1e-6 && (px[1] - 1.0).abs() < 1e-6 && px[2].abs() < 1e-6);
    }

    #[test]
    fn contrast_and_saturation_blend_towards_gray() {
        // Contrast 0 → every pixel is the mean gray; saturation 0 → each pixel its own gray.
        let mut img = [1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0];
        apply_ops(&mut img, &[JitterOp::Contrast(0.0)]);
        let mean = (0.2989f32 + 0.114) / 2.0;
        assert!(img.iter().all(|v| (v - mean).abs() < 1e-6));
        let mut img = [1.0f32, 0.0, 0.0];
        apply_ops(&mut img, &[JitterOp::Saturation(0.0)]);
        assert!(img.iter().all(|v| (v - 0.2989).abs() < 1e-6));
        let mut img = [0.8f32, 0.1, 0.5];
        apply_ops(&mut img, &[JitterOp::Brightness(2.0)]);
        assert_eq!(img, [1.0, 0.2, 1.0]);
    }

    #[test]
    fn drawn_jitter_covers_each_op_once_within_ranges() {
        for i in 0..200 {
            let ops = draw_color_jitter(&mut data_rng(0, 0, i, Purpose::ColorJitter));
            assert_eq!(ops.len(), 4);
            let mut kinds = [0usize; 4];
            for op in &ops {
                assert!(op.is_valid());
                match *op {
                    JitterOp::Brightness(f) => {
                        kinds[0] += 1;
                        assert!((0.6..=1.4).contains(&f));
                    }
                    JitterOp::Contrast(f) => {
                        kinds[1] += 1;
                        assert!((0.6..=1.4).contains(&f));
                    }
                    JitterOp::Saturation(f) => {
                        kinds[2] += 1;
                        assert!((0.6..=1.4).contains(&f));
                    }
                    JitterOp::Hue(f) => {
                        kinds[3] += 1;
                        assert!((-0.1..=0.1).contains(&f));
                    }
                }
            }
            assert_eq!(kinds, [1, 1, 1, 1]);
        }
    }
}
