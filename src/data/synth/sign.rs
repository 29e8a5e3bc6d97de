//! What each gloss looks like (a motion pattern of one or two hands) and the frame-by-frame pose
//! timeline of a whole video.
//!
//! A gloss's sign is a combination of six factors: trajectory, location, hand use, hand shape,
//! size and repetitions (8·3·3·5·2·2 = 1440 combinations). Gloss `k` of the vocabulary gets the
//! `k`-th combination of a fixed greedy farthest-point order (weighted Hamming distance between
//! factor tuples), so the first N glosses differ from each other in as many factors as possible,
//! above all in trajectory and location, which survive small resolutions and random crops.
//!
//! Positions are body-relative: `(dx, dy)` in units of the signer's half shoulder width, `dx`
//! negative towards the image's left (where the signer's dominant right hand is), `dy` positive
//! downwards from the shoulder line. [`super::render`] maps them to pixels.

use std::f32::consts::PI;

/// Path the dominant hand follows during one cycle of the sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trajectory {
    /// Left–right swing.
    Horizontal,
    /// Up–down swing.
    Vertical,
    /// Swing along the diagonal.
    Diagonal,
    /// Full circle.
    Circle,
    /// Figure eight lying on its side.
    FigureEight,
    /// Fast sideways zig-zag while moving down and up again.
    ZigZag,
    /// Repeated taps downwards.
    Tap,
    /// Push towards the camera (the hand grows and shrinks).
    Push,
}

const TRAJECTORIES: [Trajectory; 8] = [
    Trajectory::Horizontal,
    Trajectory::Circle,
    Trajectory::Tap,
    Trajectory::ZigZag,
    Trajectory::Vertical,
    Trajectory::FigureEight,
    Trajectory::Push,
    Trajectory::Diagonal,
];

/// Where in front of the body the sign is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Beside the face.
    Head,
    /// In front of the chest.
    Chest,
    /// Low, in front of the belly.
    Belly,
}

const LOCATIONS: [Location; 3] = [Location::Head, Location::Chest, Location::Belly];

/// Which hands take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandUse {
    /// Dominant hand only; the other rests low.
    One,
    /// Both hands, mirrored about the body's centre line.
    Mirror,
    /// The other hand is a flat, still base in front of the chest.
    Base,
}

const HAND_USES: [HandUse; 3] = [HandUse::One, HandUse::Mirror, HandUse::Base];

/// Hand shape, drawn by [`super::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandShape {
    /// Closed fist (disc).
    Fist,
    /// Flat hand, fingers up (tall ellipse).
    Flat,
    /// Flat hand, fingers sideways (wide ellipse).
    FlatSide,
    /// Index finger pointing up.
    Point,
    /// Two fingers spread (V).
    Vee,
}

const SHAPES: [HandShape; 5] = [
    HandShape::Fist,
    HandShape::Flat,
    HandShape::Point,
    HandShape::FlatSide,
    HandShape::Vee,
];

/// Size multipliers of the motion (small, large).
const SIZES: [f32; 2] = [1.15, 0.65];
/// Cycles of the trajectory per sign.
const REPEATS: [u32; 2] = [1, 2];

/// Factor radices and their weights in the distance that orders the combinations.
const RADICES: [usize; 6] = [8, 3, 3, 5, 2, 2];
const WEIGHTS: [u32; 6] = [4, 3, 2, 1, 1, 1];

/// Number of distinct signs available.
pub const MAX_SIGNS: usize = 8 * 3 * 3 * 5 * 2 * 2;

/// Motion pattern of one gloss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlossSign {
    /// Path of the dominant hand.
    pub trajectory: Trajectory,
    /// Centre of the motion.
    pub location: Location,
    /// Which hands move.
    pub hands: HandUse,
    /// Hand shape.
    pub shape: HandShape,
    /// Motion amplitude multiplier.
    pub size: f32,
    /// Trajectory cycles per sign.
    pub repeats: u32,
}

/// One hand in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandPose {
    /// Body-relative horizontal position (half shoulder widths, negative = image left).
    pub dx: f32,
    /// Body-relative vertical position (half shoulder widths below the shoulder line).
    pub dy: f32,
    /// Shape.
    pub shape: HandShape,
    /// Apparent size multiplier (depth).
    pub scale: f32,
}

/// Both hands in one frame, and the frame's label (vocabulary id; 0 = no sign).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramePose {
    /// The dominant (signer's right, image left) hand.
    pub right: HandPose,
    /// The other hand.
    pub left: HandPose,
    /// Vocabulary id of the gloss being signed, 0 during rest and transitions.
    pub label: i64,
}

/// Signs for the first `n` glosses (`n ≤ MAX_SIGNS`), in a fixed farthest-point order.
pub fn sign_table(n: usize) -> Vec<GlossSign> {
    let n = n.min(MAX_SIGNS);
    let combos: Vec<[usize; 6]> = (0..MAX_SIGNS).map(decode_combo).collect();
    let mut chosen = Vec::with_capacity(n);
    let mut used = vec![false; MAX_SIGNS];
    // Distance of every combination to the nearest chosen one.
    let mut nearest = vec![u32::MAX; MAX_SIGNS];
    let mut next = 0usize;
    for _ in 0..n {
        used[next] = true;
        chosen.push(next);
        let mut best: Option<(u32, usize)> = None;
        for (i, c) in combos.iter().enumerate() {
            nearest[i] = nearest[i].min(distance(c, &combos[next]));
            if !used[i] && best.is_none_or(|(d, _)| nearest[i] > d) {
                best = Some((nearest[i], i));
            }
        }
        if let Some((_, i)) = best {
            next = i;
        }
    }
    chosen.into_iter().map(|i| to_sign(combos[i])).collect()
}

fn decode_combo(mut index: usize) -> [usize; 6] {
    let mut out = [0; 6];
    for (slot, radix) in out.iter_mut().zip(RADICES) {
        *slot = index % radix;
        index /= radix;
    }
    out
}

fn distance(a: &[usize; 6], b: &[usize; 6]) -> u32 {
    (0..6).filter(|&i| a[i] != b[i]).map(|i| WEIGHTS[i]).sum()
}

fn to_sign(c: [usize; 6]) -> GlossSign {
    GlossSign {
        trajectory: TRAJECTORIES[c[0]],
        location: LOCATIONS[c[1]],
        hands: HAND_USES[c[2]],
        shape: SHAPES[c[3]],
        size: SIZES[c[4]],
        repeats: REPEATS[c[5]],
    }
}

/// Where a resting hand is (low, partly out of the frame), dominant hand for `side = -1`.
pub fn rest_pose(side: f32) -> HandPose {
    HandPose {
        dx: 0.8 * side,
        dy: 2.35,
        shape: HandShape::Fist,
        scale: 1.0,
    }
}

impl GlossSign {
    /// Poses of both hands at phase `s ∈ [0, 1)` of the sign, motion scaled by `amplitude`.
    pub fn pose(&self, s: f32, amplitude: f32) -> (HandPose, HandPose) {
        let t = s * self.repeats as f32;
        let w = 2.0 * PI * t;
        let (mut x, mut y, mut scale) = (0.0f32, 0.0f32, 1.0f32);
        match self.trajectory {
            Trajectory::Horizontal => x = w.sin(),
            Trajectory::Vertical => y = w.sin(),
            Trajectory::Diagonal => (x, y) = (0.8 * w.sin(), 0.8 * w.sin()),
            Trajectory::Circle => (x, y) = (0.85 * w.sin(), -0.85 * w.cos()),
            Trajectory::FigureEight => (x, y) = (w.sin(), 0.55 * (2.0 * w).sin()),
            Trajectory::ZigZag => (x, y) = (0.55 * (3.0 * w).sin(), -0.9 * w.cos()),
            Trajectory::Tap => y = -0.7 * (0.5 * w).sin().abs() + 0.35,
            Trajectory::Push => scale = 1.0 + 0.55 * (0.5 * w).sin().powi(2),
        }
        let a = 0.5 * self.size * amplitude;
        let (cx, cy) = match self.location {
            Location::Head => (-0.72, -1.05),
            Location::Chest => (-0.38, 0.45),
            Location::Belly => (-0.42, 1.2),
        };
        let right = HandPose {
            dx: cx + a * x,
            dy: cy + a * y,
            shape: self.shape,
            scale,
        };
        let left = match self.hands {
            HandUse::One => rest_pose(1.0),
            HandUse::Mirror => HandPose {
                dx: -right.dx,
                ..right
            },
            // A flat, still hand under the motion, nearer the body's centre line.
            HandUse::Base => HandPose {
                dx: cx + 0.45,
                dy: cy + 0.6,
                shape: HandShape::FlatSide,
                scale: 1.0,
            },
        };
        (right, left)
    }
}

/// How one video is timed: everything random about its timeline is drawn by the caller.
#[derive(Debug, Clone)]
pub struct TimelinePlan {
    /// Rest frames before the first transition.
    pub lead_in: u32,
    /// Rest frames after the last transition.
    pub lead_out: u32,
    /// Frames of each transition (before each gloss and back to rest at the end).
    pub transition: u32,
    /// Frames of each gloss's sign, one entry per gloss.
    pub sign_frames: Vec<u32>,
    /// Motion amplitude multiplier of the signer in this video.
    pub amplitude: f32,
}

fn lerp_pose(a: &HandPose, b: &HandPose, t: f32) -> HandPose {
    let e = t * t * (3.0 - 2.0 * t);
    HandPose {
        dx: a.dx + (b.dx - a.dx) * e,
        dy: a.dy + (b.dy - a.dy) * e,
        shape: if t < 0.5 { a.shape } else { b.shape },
        scale: a.scale + (b.scale - a.scale) * e,
    }
}

/// Frame-by-frame poses of a video signing `glosses` (pairs of vocabulary id and sign).
pub fn timeline(glosses: &[(i64, GlossSign)], plan: &TimelinePlan) -> Vec<FramePose> {
    let mut frames = Vec::new();
    let rest = (rest_pose(-1.0), rest_pose(1.0));
    let push = |frames: &mut Vec<FramePose>, (right, left): (HandPose, HandPose), label| {
        frames.push(FramePose { right, left, label });
    };
    for _ in 0..plan.lead_in {
        push(&mut frames, rest, 0);
    }
    let transition = |frames: &mut Vec<FramePose>, from: (HandPose, HandPose), to| {
        let (to_r, to_l): (HandPose, HandPose) = to;
        for k in 0..plan.transition {
            let t = (k + 1) as f32 / (plan.transition + 1) as f32;
            let pose = (lerp_pose(&from.0, &to_r, t), lerp_pose(&from.1, &to_l, t));
            push(frames, pose, 0);
        }
    };
    let mut current = rest;
    for (&(label, sign), &n) in glosses.iter().zip(&plan.sign_frames) {
        let n = n.max(1);
        transition(&mut frames, current, sign.pose(0.0, plan.amplitude));
        for k in 0..n {
            current = sign.pose(k as f32 / n as f32, plan.amplitude);
            push(&mut frames, current, label);
        }
    }
    transition(&mut frames, current, rest);
    for _ in 0..plan.lead_out {
        push(&mut frames, rest, 0);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_stable_and_signs_are_distinct() {
        let a = sign_table(MAX_SIGNS);
        assert_eq!(a.len(), MAX_SIGNS);
        for i in 0..a.len() {
            for j in 0..i {
                assert_ne!(a[i], a[j], "signs {i} and {j} coincide");
            }
        }
        assert_eq!(sign_table(20), a[..20].to_vec());
        // The first 20 differ pairwise in trajectory or location (the robust cues).
        let t = &a[..20];
        for i in 0..20 {
            for j in 0..i {
                let same = t[i].trajectory == t[j].trajectory && t[i].location == t[j].location;
                let other = t[i].hands != t[j].hands || t[i].shape != t[j].shape;
                assert!(!same || other, "signs {i} and {j} too similar");
            }
        }
        let trajectories: std::collections::HashSet<_> =
            t.iter().map(|s| format!("{:?}", s.trajectory)).collect();
        assert_eq!(trajectories.len(), 8);
    }

    #[test]
    fn timeline_has_the_planned_length_and_labels() {
        let signs = sign_table(3);
        let glosses = [(4, signs[0]), (6, signs[2])];
        let plan = TimelinePlan {
            lead_in: 2,
            lead_out: 3,
            transition: 3,
            sign_frames: vec![8, 5],
            amplitude: 1.0,
        };
        let frames = timeline(&glosses, &plan);
        assert_eq!(frames.len(), 2 + 3 + 8 + 3 + 5 + 3 + 3);
        let labels: Vec<i64> = frames.iter().map(|f| f.label).collect();
        assert_eq!(labels.iter().filter(|&&l| l == 4).count(), 8);
        assert_eq!(labels.iter().filter(|&&l| l == 6).count(), 5);
        assert_eq!(labels[0], 0);
        assert_eq!(*labels.last().unwrap_or(&-1), 0);
        // Hands move during a sign.
        let sign = &frames[5..13];
        assert!(sign.windows(2).any(|w| w[0].right != w[1].right));
    }
}
