//! Temporal sampling: which frames of a video make up a clip.
//!
//! Semantics of the reference's `get_selected_indexs(vlen, tmin, tmax, max_num_frames=400)`
//! (`dataset/VideoLoader.py`):
//!
//! * **Eval** (`tmin = tmax = 1`): all frames if `vlen <= max_frames`, else the centred
//!   `max_frames` (first index `(vlen - max_frames) / 2`); then truncated to a multiple of 4.
//!   Videos of 1–3 frames give an empty selection. Bit-exact with the reference.
//! * **Train** (`tmin`, `tmax`): a length `L` drawn uniformly from
//!   `[trunc(tmin·vlen), min(max_frames, trunc(tmax·vlen))]` (inclusive), rounded **up** to a
//!   multiple of 4. If `L <= vlen` the clip is a sorted random subset of `L` distinct frames;
//!   otherwise all frames plus `L - vlen` frames drawn with replacement, sorted (so repeated
//!   frames are adjacent).
//!
//! Where the reference fails, this module picks a defined result instead (train mode only):
//! * `trunc(tmin·vlen) > min(max_frames, trunc(tmax·vlen))` (e.g. `vlen > 801` with
//!   `tmin = 0.5`; numpy's `randint` raises): the lower bound is lowered to the upper bound, so
//!   `L` is the upper bound.
//! * `L = 0` (possible only when `trunc(tmin·vlen) = 0`, e.g. `vlen = 1` with `tmin = 0.5`; the
//!   reference returns an empty clip that the backbone cannot process): `L` becomes 4. So every
//!   `vlen >= 1` yields at least 4 frames in train mode, videos shorter than 4 frames through
//!   repeats (`vlen = 1` → `[0, 0, 0, 0]`).
//! * `max_frames` not a multiple of 4 (the reference asserts when rounding up passes it): `L` is
//!   capped at `max_frames` rounded down to a multiple of 4. With the reference's 400 the cap
//!   never binds, because rounding up a value `<= 400` to a multiple of 4 stays `<= 400`.
//!
//! `max_frames` values below 4 are treated as 4 in train mode. `vlen = 0` gives an empty
//! selection in both modes.

use rand::seq::index;
use rand::Rng;

/// The reference's `max_num_frames`.
pub const MAX_FRAMES: usize = 400;

/// How frames are chosen from a video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TemporalSampling {
    /// Deterministic: all (or the centred `max_frames`) frames, truncated to a multiple of 4.
    Eval,
    /// Random length in `[tmin·vlen, tmax·vlen]` and a random subset (or superset with repeats).
    Train {
        /// Lower bound of the length, as a fraction of the video length (reference: 0.5).
        tmin: f64,
        /// Upper bound of the length, as a fraction of the video length (reference: 1.5).
        tmax: f64,
    },
}

/// An invalid temporal-sampling configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// `tmin`/`tmax` are not finite, negative, or `tmin > tmax`.
    #[error("temporal sampling needs finite 0 <= tmin <= tmax, got tmin={tmin}, tmax={tmax}")]
    InvalidRange {
        /// The configured lower fraction.
        tmin: f64,
        /// The configured upper fraction.
        tmax: f64,
    },
}

impl TemporalSampling {
    /// The mode the reference picks for these fractions: [`TemporalSampling::Eval`] when both
    /// are exactly 1 (even during training), otherwise [`TemporalSampling::Train`].
    pub fn from_fractions(tmin: f64, tmax: f64) -> Result<Self, SamplingError> {
        if !(tmin.is_finite() && tmax.is_finite() && 0.0 <= tmin && tmin <= tmax) {
            return Err(SamplingError::InvalidRange { tmin, tmax });
        }
        if tmin == 1.0 && tmax == 1.0 {
            Ok(TemporalSampling::Eval)
        } else {
            Ok(TemporalSampling::Train { tmin, tmax })
        }
    }
}

/// Python's `int(x)` for a non-negative float product (truncation; NaN and negatives → 0).
fn trunc_to_usize(x: f64) -> usize {
    // `as` saturates: NaN → 0, negative → 0, too large → usize::MAX.
    x as usize
}

fn round_up_to_4(n: usize) -> usize {
    n.div_ceil(4).saturating_mul(4)
}

/// Eval-mode selection (deterministic).
pub fn eval_indices(vlen: usize, max_frames: usize) -> Vec<usize> {
    let (start, len) = if vlen <= max_frames {
        (0, vlen)
    } else {
        ((vlen - max_frames) / 2, max_frames)
    };
    let len = len - len % 4;
    (start..start + len).collect()
}

/// The inclusive range the train-mode length `L` is drawn from, before rounding up, with the
/// reference's failure case (lower > upper) resolved to the upper bound.
pub fn train_length_bounds(vlen: usize, tmin: f64, tmax: f64, max_frames: usize) -> (usize, usize) {
    let low = trunc_to_usize(tmin * vlen as f64);
    let high = max_frames.min(trunc_to_usize(tmax * vlen as f64));
    (low.min(high), high)
}

/// The train-mode clip length for a drawn `L` (rounded up to a multiple of 4, at least 4, at most
/// `max_frames` rounded down to a multiple of 4; see the module docs).
pub fn train_clip_length(drawn: usize, max_frames: usize) -> usize {
    let cap = (max_frames - max_frames % 4).max(4);
    round_up_to_4(drawn).clamp(4, cap)
}

/// Train-mode selection.
pub fn train_indices<R: Rng + ?Sized>(
    vlen: usize,
    tmin: f64,
    tmax: f64,
    rng: &mut R,
    max_frames: usize,
) -> Vec<usize> {
    if vlen == 0 {
        return Vec::new();
    }
    let (low, high) = train_length_bounds(vlen, tmin, tmax, max_frames);
    let drawn = rng.random_range(low..=high);
    let len = train_clip_length(drawn, max_frames);
    let mut selected = if len <= vlen {
        index::sample(rng, vlen, len).into_vec()
    } else {
        let mut all: Vec<usize> = (0..vlen).collect();
        all.extend((0..len - vlen).map(|_| rng.random_range(0..vlen)));
        all
    };
    selected.sort_unstable();
    selected
}

/// The frame indices (into `0..vlen`) of the clip, sorted, of a length that is a multiple of 4.
///
/// `rng` is only used in train mode; pass the sample's
/// [`Purpose::TemporalSampling`](crate::data::rng::Purpose::TemporalSampling) stream.
/// `max_frames` is the reference's `max_num_frames` ([`MAX_FRAMES`]).
pub fn select_frames<R: Rng + ?Sized>(
    vlen: usize,
    mode: &TemporalSampling,
    rng: &mut R,
    max_frames: usize,
) -> Vec<usize> {
    match *mode {
        TemporalSampling::Eval => eval_indices(vlen, max_frames),
        TemporalSampling::Train { tmin, tmax } => train_indices(vlen, tmin, tmax, rng, max_frames),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::{data_rng, Purpose};

    #[test]
    fn eval_examples() {
        assert!(eval_indices(0, 400).is_empty());
        assert!(eval_indices(3, 400).is_empty());
        assert_eq!(eval_indices(7, 400), vec![0, 1, 2, 3]);
        assert_eq!(eval_indices(400, 400).len(), 400);
        let v = eval_indices(403, 400);
        assert_eq!((v.len(), v[0], v[399]), (400, 1, 400));
        let v = eval_indices(500, 400);
        assert_eq!((v.len(), v[0], v[399]), (400, 50, 449));
        // max_frames not a multiple of 4: centred window, then truncated.
        let v = eval_indices(20, 10);
        assert_eq!(v, (5..13).collect::<Vec<_>>());
    }

    #[test]
    fn eval_ignores_rng() {
        let mut a = data_rng(1, 0, 0, Purpose::TemporalSampling);
        let mut b = data_rng(2, 0, 0, Purpose::TemporalSampling);
        let mode = TemporalSampling::Eval;
        assert_eq!(
            select_frames(123, &mode, &mut a, MAX_FRAMES),
            select_frames(123, &mode, &mut b, MAX_FRAMES)
        );
    }

    #[test]
    fn from_fractions_picks_the_reference_mode() {
        assert_eq!(
            TemporalSampling::from_fractions(1.0, 1.0),
            Ok(TemporalSampling::Eval)
        );
        assert_eq!(
            TemporalSampling::from_fractions(0.5, 1.5),
            Ok(TemporalSampling::Train {
                tmin: 0.5,
                tmax: 1.5
            })
        );
        assert!(TemporalSampling::from_fractions(1.5, 0.5).is_err());
        assert!(TemporalSampling::from_fractions(f64::NAN, 1.0).is_err());
        assert!(TemporalSampling::from_fractions(-0.1, 1.0).is_err());
    }

    #[test]
    fn train_bounds_follow_python_int() {
        // int(0.5*7)=3, int(1.5*7)=10
        assert_eq!(train_length_bounds(7, 0.5, 1.5, 400), (3, 10));
        assert_eq!(train_length_bounds(300, 0.5, 1.5, 400), (150, 400));
        // The reference's failure case: lower bound above the cap → the cap.
        assert_eq!(train_length_bounds(1000, 0.5, 1.5, 400), (400, 400));
        // 0.29 * 100 = 28.999999999999996 → 28 as in Python.
        assert_eq!(train_length_bounds(100, 0.29, 1.0, 400).0, 28);
    }

    #[test]
    fn train_clip_length_rounding() {
        assert_eq!(train_clip_length(0, 400), 4);
        assert_eq!(train_clip_length(1, 400), 4);
        assert_eq!(train_clip_length(4, 400), 4);
        assert_eq!(train_clip_length(5, 400), 8);
        for drawn in 397..=400 {
            assert_eq!(train_clip_length(drawn, 400), 400);
        }
        assert_eq!(train_clip_length(399, 399), 396);
        assert_eq!(train_clip_length(2, 2), 4);
    }

    #[test]
    fn train_tiny_videos_repeat_frames() {
        let mode = TemporalSampling::Train {
            tmin: 0.5,
            tmax: 1.5,
        };
        for i in 0..50 {
            let mut rng = data_rng(0, 0, i, Purpose::TemporalSampling);
            assert_eq!(select_frames(1, &mode, &mut rng, MAX_FRAMES), vec![0; 4]);
            let v = select_frames(2, &mode, &mut rng, MAX_FRAMES);
            assert_eq!(v.len(), 4);
            assert!(v.contains(&0) && v.contains(&1));
            assert!(select_frames(0, &mode, &mut rng, MAX_FRAMES).is_empty());
        }
    }

    #[test]
    fn train_long_videos_do_not_panic() {
        let mode = TemporalSampling::Train {
            tmin: 0.5,
            tmax: 1.5,
        };
        let mut rng = data_rng(0, 0, 0, Purpose::TemporalSampling);
        let v = select_frames(5000, &mode, &mut rng, MAX_FRAMES);
        assert_eq!(v.len(), 400);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
}
