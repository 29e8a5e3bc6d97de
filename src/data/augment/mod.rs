//! Spatial augmentation and normalisation: decoded RGB frames → the model's input layout.
//!
//! Reference: `RecognitionNetwork.augment_preprocess_inputs` (torchvision 0.10 on tensors).
//! * **Train** ([`TrainAugment`]): with probability 0.3 `ColorJitter(0.4, 0.4, 0.4, 0.1)` on the
//!   full frame, then `RandomResizedCrop.get_params(scale, ratio)` and `resized_crop` to
//!   `out_size × out_size` (bilinear, `align_corners=False`, no antialias).
//! * **Eval** ([`EvalTransform`]): optional `CenterCrop(size)` (zero-padded where the crop is
//!   larger than the frame), then `Resize([out, out])`.
//! * Both: channel order reversed to **BGR** and `(x − 0.5) / 0.5` with `x = u8 / 255`.
//!
//! Parameters are drawn once into a [`SpatialPlan`], which is then applied to every frame of the
//! clip. The reference draws once per *batch*; drawing once per *sample* is identical for the
//! batch size 1 of the S2G configs and keeps each sample a pure function of its
//! [`SampleKey`](crate::data::rng::SampleKey) for larger batches.

mod jitter;
mod resize;

pub use jitter::{draw_color_jitter, JitterOp, BRIGHTNESS, CONTRAST, HUE, SATURATION};

use rand::Rng;

use crate::data::rng::{Purpose, SampleKey};
use resize::{axis_taps, resample, Tap};

/// Probability of colour jitter per sample (`random.random() < 0.3` in the reference).
pub const COLOR_JITTER_PROB: f64 = 0.3;
/// Attempts of `RandomResizedCrop.get_params` before its centre fallback.
const CROP_ATTEMPTS: usize = 10;

/// An error in augmentation parameters or buffers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    /// A frame or crop with a zero side, or a zero output size.
    #[error("empty {what}: {width}x{height}")]
    Empty {
        /// What is empty ("frame", "crop", "output").
        what: &'static str,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
    },
    /// The frame does not have the size the plan was made for.
    #[error("frame is {got_width}x{got_height}, but the plan was made for {width}x{height}")]
    FrameSize {
        /// Planned width.
        width: usize,
        /// Planned height.
        height: usize,
        /// Width of the frame passed in.
        got_width: usize,
        /// Height of the frame passed in.
        got_height: usize,
    },
    /// The RGB buffer length is not `width * height * 3`.
    #[error("frame buffer has {got} bytes, expected {expected} ({width}x{height} RGB)")]
    FrameBytes {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
        /// Expected byte count.
        expected: usize,
        /// Actual byte count.
        got: usize,
    },
    /// The output buffer is not `[3, num_t, out, out]`, or `t >= num_t`.
    #[error("output buffer of {got} floats with t={t} does not fit [3, {num_t}, {size}, {size}]")]
    Output {
        /// Buffer length.
        got: usize,
        /// Time index written.
        t: usize,
        /// Number of time steps of the buffer.
        num_t: usize,
        /// Output side.
        size: usize,
    },
    /// A crop scale/ratio range or a jitter factor torchvision would reject.
    #[error("invalid augmentation parameter: {0}")]
    Invalid(String),
}

/// A decoded frame: interleaved RGB bytes, row-major, `width * height * 3` long.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `[height][width][3]` RGB bytes.
    pub rgb: &'a [u8],
}

/// A crop window in frame coordinates (torchvision's `top, left, height, width`). It may reach
/// outside the frame (centre crop larger than the frame); outside pixels are zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row (may be negative).
    pub top: i64,
    /// First column (may be negative).
    pub left: i64,
    /// Rows in the window.
    pub height: usize,
    /// Columns in the window.
    pub width: usize,
}

/// Everything random about one sample's spatial transform, with precomputed resize taps.
#[derive(Debug, Clone)]
pub struct SpatialPlan {
    frame_width: usize,
    frame_height: usize,
    crop: CropBox,
    out_size: usize,
    jitter: Vec<JitterOp>,
    rows: Vec<Tap>,
    cols: Vec<Tap>,
}

impl SpatialPlan {
    /// A plan for `frame_width × frame_height` frames: colour jitter `jitter` (in order; empty for
    /// none) on the full frame, then `crop` resized to `out_size × out_size`.
    pub fn new(
        frame_width: usize,
        frame_height: usize,
        crop: CropBox,
        out_size: usize,
        jitter: Vec<JitterOp>,
    ) -> Result<Self, AugmentError> {
        check_nonempty("frame", frame_width, frame_height)?;
        check_nonempty("crop", crop.width, crop.height)?;
        check_nonempty("output", out_size, out_size)?;
        if let Some(op) = jitter.iter().find(|op| !op.is_valid()) {
            return Err(AugmentError::Invalid(format!("colour jitter {op:?}")));
        }
        let row_len = frame_width * 3;
        let rows = axis_taps(frame_height, crop.top, crop.height, out_size, row_len);
        let cols = axis_taps(frame_width, crop.left, crop.width, out_size, 3);
        Ok(SpatialPlan {
            frame_width,
            frame_height,
            crop,
            out_size,
            jitter,
            rows,
            cols,
        })
    }

    /// The crop window.
    pub fn crop(&self) -> CropBox {
        self.crop
    }

    /// The colour-jitter ops in application order (empty: no jitter).
    pub fn jitter(&self) -> &[JitterOp] {
        &self.jitter
    }

    /// Side of the square output.
    pub fn out_size(&self) -> usize {
        self.out_size
    }

    /// `(width, height)` of the frames this plan applies to.
    pub fn frame_size(&self) -> (usize, usize) {
        (self.frame_width, self.frame_height)
    }

    /// Length of a `[3, num_t, out, out]` buffer.
    pub fn output_len(&self, num_t: usize) -> usize {
        3 * num_t * self.out_size * self.out_size
    }

    /// Transforms `frame` and writes it at time index `t` of `out`, a `[3, num_t, out, out]`
    /// buffer (channels B, G, R; values `(x/255 − 0.5)/0.5`). Other time steps are untouched.
    pub fn apply(
        &self,
        frame: FrameRef<'_>,
        out: &mut [f32],
        t: usize,
        num_t: usize,
    ) -> Result<(), AugmentError> {
        if (frame.width, frame.height) != (self.frame_width, self.frame_height) {
            return Err(AugmentError::FrameSize {
                width: self.frame_width,
                height: self.frame_height,
                got_width: frame.width,
                got_height: frame.height,
            });
        }
        let expected = self.frame_width * self.frame_height * 3;
        if frame.rgb.len() != expected {
            return Err(AugmentError::FrameBytes {
                width: frame.width,
                height: frame.height,
                expected,
                got: frame.rgb.len(),
            });
        }
        if t >= num_t || out.len() != self.output_len(num_t) {
            return Err(AugmentError::Output {
                got: out.len(),
                t,
                num_t,
                size: self.out_size,
            });
        }
        let plane = self.out_size * self.out_size;
        let at_t = (t * plane)..((t + 1) * plane);
        let (b, rest) = out.split_at_mut(num_t * plane);
        let (g, r) = rest.split_at_mut(num_t * plane);
        let (b, g, r) = (&mut b[at_t.clone()], &mut g[at_t.clone()], &mut r[at_t]);
        let row_len = self.frame_width * 3;
        if self.jitter.is_empty() {
            resample(
                frame.rgb,
                row_len,
                &self.rows,
                &self.cols,
                2.0 / 255.0,
                -1.0,
                [b, g, r],
            );
        } else {
            let lut = unit_lut();
            let mut full: Vec<f32> = frame.rgb.iter().map(|&v| lut[usize::from(v)]).collect();
            jitter::apply_ops(&mut full, &self.jitter);
            resample(&full, row_len, &self.rows, &self.cols, 2.0, -1.0, [b, g, r]);
        }
        Ok(())
    }
}

/// `u8 → f32 / 255` (as torch's `uint8_tensor / 255`), as a table.
fn unit_lut() -> &'static [f32; 256] {
    static LUT: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    LUT.get_or_init(|| std::array::from_fn(|v| v as f32 / 255.0))
}

fn check_nonempty(what: &'static str, width: usize, height: usize) -> Result<(), AugmentError> {
    if width == 0 || height == 0 {
        Err(AugmentError::Empty {
            what,
            width,
            height,
        })
    } else {
        Ok(())
    }
}

/// Training-time augmentation (the reference's `is_train` branch).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainAugment {
    /// Area fraction range of the crop (reference: `(bottom_area, 1.0)`, Phoenix S2G 0.7).
    pub crop_scale: (f64, f64),
    /// Width/height ratio range of the crop (reference: `(aspect_ratio_min, aspect_ratio_max)`).
    pub crop_ratio: (f64, f64),
    /// Whether colour jitter is enabled; when it is, it is applied with p = [`COLOR_JITTER_PROB`].
    pub color_jitter: bool,
    /// Side of the square output (`img_size`, 224).
    pub out_size: usize,
}

impl TrainAugment {
    fn validate(&self) -> Result<(), AugmentError> {
        let ok = |(a, b): (f64, f64)| a.is_finite() && b.is_finite() && 0.0 < a && a <= b;
        if !ok(self.crop_scale) || !ok(self.crop_ratio) {
            return Err(AugmentError::Invalid(format!(
                "crop scale {:?} and ratio {:?} must be finite 0 < min <= max",
                self.crop_scale, self.crop_ratio
            )));
        }
        Ok(())
    }

    /// Draws the sample's plan from its [`Purpose::Crop`] and [`Purpose::ColorJitter`] streams.
    pub fn draw(
        &self,
        frame_width: usize,
        frame_height: usize,
        key: &SampleKey,
    ) -> Result<SpatialPlan, AugmentError> {
        let mut crop_rng = key.rng(Purpose::Crop);
        let mut jitter_rng = key.rng(Purpose::ColorJitter);
        self.draw_with(frame_width, frame_height, &mut crop_rng, &mut jitter_rng)
    }

    /// Draws a plan from explicit generators: the jitter coin and parameters from `jitter_rng`
    /// (nothing is drawn from it when jitter is disabled), the crop box from `crop_rng`.
    pub fn draw_with<R1: Rng + ?Sized, R2: Rng + ?Sized>(
        &self,
        frame_width: usize,
        frame_height: usize,
        crop_rng: &mut R1,
        jitter_rng: &mut R2,
    ) -> Result<SpatialPlan, AugmentError> {
        self.validate()?;
        check_nonempty("frame", frame_width, frame_height)?;
        let jitter = if self.color_jitter && jitter_rng.random::<f64>() < COLOR_JITTER_PROB {
            draw_color_jitter(jitter_rng)
        } else {
            Vec::new()
        };
        let crop = random_resized_crop_box(
            frame_width,
            frame_height,
            self.crop_scale,
            self.crop_ratio,
            crop_rng,
        );
        SpatialPlan::new(frame_width, frame_height, crop, self.out_size, jitter)
    }
}

/// Python's `int(round(x))` (round half to even).
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// torchvision 0.10 `RandomResizedCrop.get_params`: up to 10 attempts with a uniform area
/// fraction in `scale` and a log-uniform aspect ratio in `ratio`; if none fits, the centre crop
/// of the whole frame with its ratio clamped to `ratio`. The box always lies inside the frame.
pub fn random_resized_crop_box<R: Rng + ?Sized>(
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> CropBox {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..CROP_ATTEMPTS {
        let target_area = area * (scale.0 + (scale.1 - scale.0) * rng.random::<f64>());
        let aspect = (log_lo + (log_hi - log_lo) * rng.random::<f64>()).exp();
        let w = py_round((target_area * aspect).sqrt());
        let h = py_round((target_area / aspect).sqrt());
        if 0 < w && w as usize <= width && 0 < h && h as usize <= height {
            let (w, h) = (w as usize, h as usize);
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return CropBox {
                top: top as i64,
                left: left as i64,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (min_r, max_r) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < min_r {
        (
            width,
            py_round(width as f64 / min_r).clamp(1, height as i64) as usize,
        )
    } else if in_ratio > max_r {
        (
            py_round(height as f64 * max_r).clamp(1, width as i64) as usize,
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        top: ((height - h) / 2) as i64,
        left: ((width - w) / 2) as i64,
        height: h,
        width: w,
    }
}

/// torchvision 0.10 `center_crop` of a `size × size` window: where the window is larger than the
/// frame, the frame is first zero-padded by `(size − n) // 2` before and `(size − n + 1) // 2`
/// after; the offset is `int(round((padded − size) / 2))` (round half to even).
pub fn center_crop_box(width: usize, height: usize, size: usize) -> CropBox {
    let axis = |n: usize| -> i64 {
        if size > n {
            // Padded to exactly `size` (before + after = size − n), so the offset is 0.
            -(((size - n) / 2) as i64)
        } else {
            py_round((n - size) as f64 / 2.0)
        }
    };
    CropBox {
        top: axis(height),
        left: axis(width),
        height: size,
        width: size,
    }
}

/// Evaluation-time transform (the reference's `is_train = False` branch).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTransform {
    /// `center_crop_size` when `center_crop: true` (Phoenix 224, CSL 270).
    pub center_crop: Option<usize>,
    /// Side of the square output (`img_size`, 224).
    pub out_size: usize,
}

impl EvalTransform {
    /// The (deterministic) plan for frames of this size.
    pub fn plan(
        &self,
        frame_width: usize,
        frame_height: usize,
    ) -> Result<SpatialPlan, AugmentError> {
        let crop = match self.center_crop {
            Some(size) => center_crop_box(frame_width, frame_height, size),
            None => CropBox {
                top: 0,
                left: 0,
                height: frame_height,
                width: frame_width,
            },
        };
        SpatialPlan::new(frame_width, frame_height, crop, self.out_size, Vec::new())
    }
}

#[cfg(test)]
mod tests;
