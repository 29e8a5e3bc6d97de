//! Drawing a signer: background, torso, head, arms and hands, with anti-aliased signed-distance
//! shapes, then mild Gaussian pixel noise.
//!
//! The scene lives on a virtual 210 × 260 canvas (Phoenix's frame size) and is mapped to the
//! requested pixel size (possibly with another aspect ratio, like resizing a real video). Each
//! video renders its still layer (background, body, head) once; each frame copies it and adds
//! arms, hands and noise.

use rand::{Rng, RngCore};

use super::sign::{FramePose, HandPose, HandShape};

/// Width of the virtual canvas.
pub const VIRTUAL_W: f32 = 210.0;
/// Height of the virtual canvas.
pub const VIRTUAL_H: f32 = 260.0;

const SKINS: [[f32; 3]; 5] = [
    [224.0, 172.0, 140.0],
    [198.0, 134.0, 100.0],
    [240.0, 200.0, 170.0],
    [160.0, 105.0, 75.0],
    [212.0, 160.0, 118.0],
];
const SHIRTS: [[f32; 3]; 6] = [
    [25.0, 25.0, 35.0],
    [20.0, 30.0, 62.0],
    [48.0, 48.0, 48.0],
    [20.0, 52.0, 36.0],
    [72.0, 22.0, 28.0],
    [14.0, 14.0, 16.0],
];
const HAIRS: [[f32; 3]; 5] = [
    [30.0, 20.0, 15.0],
    [85.0, 52.0, 25.0],
    [150.0, 112.0, 62.0],
    [20.0, 20.0, 22.0],
    [115.0, 112.0, 110.0],
];

/// What stays the same for a signer across videos.
#[derive(Debug, Clone)]
pub struct SignerLook {
    skin: [f32; 3],
    shirt: [f32; 3],
    hair: [f32; 3],
    background: [f32; 3],
    /// Relative brightness change from top to bottom of the background.
    gradient: f32,
    /// Low-frequency background waves: (x frequency, y frequency, phase, amplitude).
    waves: [[f32; 4]; 3],
    /// Vertical stripes (curtain folds): (period, amplitude).
    stripes: [f32; 2],
    /// Half shoulder width on the virtual canvas.
    half_width: f32,
    head_scale: f32,
}

fn jitter<R: Rng>(rng: &mut R, c: [f32; 3], amount: f32) -> [f32; 3] {
    c.map(|v| (v + rng.random_range(-amount..=amount)).clamp(0.0, 255.0))
}

impl SignerLook {
    /// Draws a signer's appearance.
    pub fn random<R: Rng>(rng: &mut R) -> Self {
        let skin = SKINS[rng.random_range(0..SKINS.len())];
        let skin = jitter(rng, skin, 10.0);
        let shirt = SHIRTS[rng.random_range(0..SHIRTS.len())];
        let shirt = jitter(rng, shirt, 8.0);
        let hair = HAIRS[rng.random_range(0..HAIRS.len())];
        let hair = jitter(rng, hair, 10.0);
        let grey = rng.random_range(95.0..165.0);
        let background = [0, 1, 2].map(|_| grey + rng.random_range(-18.0..18.0));
        let waves = [0, 1, 2].map(|_| {
            [
                rng.random_range(0.01..0.06),
                rng.random_range(0.01..0.06),
                rng.random_range(0.0..std::f32::consts::TAU),
                rng.random_range(2.0..9.0),
            ]
        });
        Self {
            skin,
            shirt,
            hair,
            background,
            gradient: rng.random_range(-0.25..0.25),
            waves,
            stripes: [rng.random_range(8.0..40.0), rng.random_range(0.0..7.0)],
            half_width: rng.random_range(48.0..57.0),
            head_scale: rng.random_range(0.92..1.08),
        }
    }
}

/// A signer in one video: the look plus this video's framing and lighting.
#[derive(Debug, Clone)]
pub struct Scene {
    look: SignerLook,
    /// Body centre line (virtual x).
    cx: f32,
    /// Shoulder line (virtual y).
    shoulder_y: f32,
    /// Half shoulder width (virtual units); the unit of body-relative positions.
    unit: f32,
    brightness: f32,
    phase_shift: f32,
}

impl Scene {
    /// Places `look` in a video with random framing (offset, size) and lighting.
    pub fn random<R: Rng>(look: &SignerLook, rng: &mut R) -> Self {
        Self {
            look: look.clone(),
            cx: VIRTUAL_W / 2.0 + rng.random_range(-11.0..11.0),
            shoulder_y: 140.0 + rng.random_range(-9.0..9.0),
            unit: look.half_width * rng.random_range(0.92..1.08),
            brightness: rng.random_range(0.9..1.1),
            phase_shift: rng.random_range(0.0..std::f32::consts::TAU),
        }
    }

    fn at(&self, dx: f32, dy: f32) -> (f32, f32) {
        (self.cx + dx * self.unit, self.shoulder_y + dy * self.unit)
    }
}

/// An RGB float image (0–255 per channel) with its virtual-to-pixel scale.
#[derive(Debug, Clone)]
pub struct Canvas {
    width: usize,
    height: usize,
    sx: f32,
    sy: f32,
    data: Vec<f32>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        Self {
            width: w,
            height: h,
            sx: width as f32 / VIRTUAL_W,
            sy: height as f32 / VIRTUAL_H,
            data: vec![0.0; w * h * 3],
        }
    }

    /// Pixels per virtual unit, for converting distances.
    fn pixel_scale(&self) -> f32 {
        (self.sx * self.sy).sqrt()
    }

    /// Blends `colour` where `sdf` (virtual coordinates → signed virtual distance) is negative,
    /// with one pixel of anti-aliasing, over the virtual box `[x0, x1] × [y0, y1]`.
    fn fill(&mut self, bbox: [f32; 4], colour: [f32; 3], sdf: impl Fn(f32, f32) -> f32) {
        let [x0, y0, x1, y1] = bbox;
        let px0 = ((x0 * self.sx).floor().max(0.0)) as usize;
        let py0 = ((y0 * self.sy).floor().max(0.0)) as usize;
        let px1 = ((x1 * self.sx).ceil().max(0.0) as usize).min(self.width);
        let py1 = ((y1 * self.sy).ceil().max(0.0) as usize).min(self.height);
        let scale = self.pixel_scale();
        for py in py0..py1 {
            let y = (py as f32 + 0.5) / self.sy;
            for px in px0..px1 {
                let x = (px as f32 + 0.5) / self.sx;
                let alpha = (0.5 - sdf(x, y) * scale).clamp(0.0, 1.0);
                if alpha > 0.0 {
                    let i = (py * self.width + px) * 3;
                    for (c, &v) in self.data[i..i + 3].iter_mut().zip(&colour) {
                        *c += (v - *c) * alpha;
                    }
                }
            }
        }
    }
}

/// Euclidean length (plain `sqrt`: `hypot`'s overflow care is slow and not needed here).
fn len(x: f32, y: f32) -> f32 {
    (x * x + y * y).sqrt()
}

fn circle(x: f32, y: f32, c: (f32, f32), r: f32) -> f32 {
    len(x - c.0, y - c.1) - r
}

fn ellipse(x: f32, y: f32, c: (f32, f32), rx: f32, ry: f32) -> f32 {
    (len((x - c.0) / rx, (y - c.1) / ry) - 1.0) * rx.min(ry)
}

fn capsule(x: f32, y: f32, a: (f32, f32), b: (f32, f32), r: f32) -> f32 {
    let (bx, by) = (b.0 - a.0, b.1 - a.1);
    let (px, py) = (x - a.0, y - a.1);
    let len2 = (bx * bx + by * by).max(1e-6);
    let t = ((px * bx + py * by) / len2).clamp(0.0, 1.0);
    len(px - t * bx, py - t * by) - r
}

fn capsule_bbox(a: (f32, f32), b: (f32, f32), r: f32) -> [f32; 4] {
    let m = r + 2.0;
    [
        a.0.min(b.0) - m,
        a.1.min(b.1) - m,
        a.0.max(b.0) + m,
        a.1.max(b.1) + m,
    ]
}

fn scaled(c: [f32; 3], f: f32) -> [f32; 3] {
    c.map(|v| (v * f).clamp(0.0, 255.0))
}

/// Renders the parts of a video that do not move: background, torso, neck and head.
pub fn render_still(scene: &Scene, width: u32, height: u32) -> Canvas {
    let mut canvas = Canvas::new(width, height);
    let look = &scene.look;
    for py in 0..canvas.height {
        let y = (py as f32 + 0.5) / canvas.sy;
        let shade = 1.0 + look.gradient * (y / VIRTUAL_H - 0.5);
        for px in 0..canvas.width {
            let x = (px as f32 + 0.5) / canvas.sx;
            let mut t = look.stripes[1]
                * (std::f32::consts::TAU * x / look.stripes[0] + scene.phase_shift).sin();
            for [fx, fy, phase, amp] in look.waves {
                t += amp * (fx * x + fy * y + phase + scene.phase_shift).sin();
            }
            let i = (py * canvas.width + px) * 3;
            for (c, &b) in canvas.data[i..i + 3].iter_mut().zip(&look.background) {
                *c = ((b * shade + t) * scene.brightness).clamp(0.0, 255.0);
            }
        }
    }
    let u = scene.unit;
    let (cx, sy) = (scene.cx, scene.shoulder_y);
    let shirt = scaled(look.shirt, scene.brightness);
    let skin = scaled(look.skin, scene.brightness);
    // Torso: rounded shoulders (capsule) over a body that widens downwards.
    let r = 0.35 * u;
    let (l, rr) = ((cx - u + r, sy + r), (cx + u - r, sy + r));
    canvas.fill([0.0, sy - 2.0, VIRTUAL_W, VIRTUAL_H], shirt, |x, y| {
        let body = ((x - cx).abs() - (u + 0.12 * (y - sy))).max(sy + r - y);
        body.min(capsule(x, y, l, rr, r))
    });
    // Neck, hair, head, eyes, mouth.
    let head = (cx, sy - 1.02 * u);
    let (hrx, hry) = (0.5 * u * look.head_scale, 0.62 * u * look.head_scale);
    let neck_r = 0.22 * u;
    canvas.fill(
        capsule_bbox(head, (cx, sy + 2.0), neck_r),
        scaled(skin, 0.88),
        |x, y| capsule(x, y, head, (cx, sy + 2.0), neck_r),
    );
    let hair_c = (head.0, head.1 - 0.18 * hry);
    let hair_bbox = [
        hair_c.0 - 1.2 * hrx,
        hair_c.1 - 1.1 * hry,
        hair_c.0 + 1.2 * hrx,
        head.1,
    ];
    canvas.fill(hair_bbox, scaled(look.hair, scene.brightness), |x, y| {
        ellipse(x, y, hair_c, 1.08 * hrx, 0.95 * hry)
    });
    let head_bbox = [
        head.0 - hrx - 2.0,
        head.1 - hry - 2.0,
        head.0 + hrx + 2.0,
        head.1 + hry + 2.0,
    ];
    canvas.fill(head_bbox, skin, |x, y| ellipse(x, y, head, hrx, hry));
    let dark = [30.0, 25.0, 25.0];
    for side in [-1.0, 1.0] {
        let eye = (head.0 + side * 0.38 * hrx, head.1 - 0.05 * hry);
        let r = 0.1 * hrx;
        canvas.fill(capsule_bbox(eye, eye, r), dark, |x, y| circle(x, y, eye, r));
    }
    let (m0, m1) = (
        (head.0 - 0.25 * hrx, head.1 + 0.5 * hry),
        (head.0 + 0.25 * hrx, head.1 + 0.5 * hry),
    );
    canvas.fill(
        capsule_bbox(m0, m1, 0.06 * hrx),
        [120.0, 40.0, 45.0],
        |x, y| capsule(x, y, m0, m1, 0.06 * hrx),
    );
    canvas
}

/// Elbow position of an arm from `shoulder` to `hand` with segments of length `len`, bent
/// away from the body centre line `cx`.
fn elbow(shoulder: (f32, f32), hand: (f32, f32), len: f32, cx: f32) -> (f32, f32) {
    let (dx, dy) = (hand.0 - shoulder.0, hand.1 - shoulder.1);
    let d = dx.hypot(dy).max(1e-3);
    let half = (d / 2.0).min(len * 0.999);
    let h = (len * len - half * half).max(0.0).sqrt();
    let (nx, ny) = (-dy / d, dx / d);
    let mid = (shoulder.0 + dx / 2.0, shoulder.1 + dy / 2.0);
    let a = (mid.0 + nx * h, mid.1 + ny * h);
    let b = (mid.0 - nx * h, mid.1 - ny * h);
    // Outward first, then downward.
    let score = |p: (f32, f32)| (p.0 - cx).abs() + 0.3 * p.1;
    if score(a) >= score(b) {
        a
    } else {
        b
    }
}

fn draw_arm(canvas: &mut Canvas, scene: &Scene, pose: &HandPose, side: f32) {
    let u = scene.unit;
    let shoulder = scene.at(0.7 * side, 0.25);
    let hand = scene.at(pose.dx, pose.dy);
    let e = elbow(shoulder, hand, 1.15 * u, scene.cx);
    let sleeve = scaled(scene.look.shirt.map(|c| c + 38.0), scene.brightness);
    let (ru, rf) = (0.2 * u, 0.16 * u);
    canvas.fill(capsule_bbox(shoulder, e, ru), sleeve, |x, y| {
        capsule(x, y, shoulder, e, ru)
    });
    canvas.fill(capsule_bbox(e, hand, rf), sleeve, |x, y| {
        capsule(x, y, e, hand, rf)
    });
}

/// Signed distance of a hand shape centred at `c` with base radius `r`.
fn hand_sdf(shape: HandShape, x: f32, y: f32, c: (f32, f32), r: f32) -> f32 {
    let finger = |angle: f32, len: f32| {
        let tip = (c.0 + angle.sin() * len, c.1 - angle.cos() * len);
        capsule(x, y, c, tip, 0.26 * r)
    };
    match shape {
        HandShape::Fist => circle(x, y, c, 0.85 * r),
        HandShape::Flat => ellipse(x, y, c, 0.58 * r, 1.3 * r),
        HandShape::FlatSide => ellipse(x, y, c, 1.3 * r, 0.58 * r),
        HandShape::Point => circle(x, y, c, 0.72 * r).min(finger(0.0, 1.9 * r)),
        HandShape::Vee => circle(x, y, c, 0.72 * r)
            .min(finger(-0.45, 1.8 * r))
            .min(finger(0.45, 1.8 * r)),
    }
}

fn draw_hand(canvas: &mut Canvas, scene: &Scene, pose: &HandPose) {
    let c = scene.at(pose.dx, pose.dy);
    let r = 0.27 * scene.unit * pose.scale;
    let outline = (1.5f32).max(0.8 / canvas.pixel_scale());
    let m = 2.0 * r + outline + 2.0;
    let bbox = [c.0 - m, c.1 - m, c.0 + m, c.1 + m];
    let skin = scaled(scene.look.skin, scene.brightness);
    canvas.fill(bbox, scaled(skin, 0.55), |x, y| {
        hand_sdf(pose.shape, x, y, c, r) - outline
    });
    canvas.fill(bbox, skin, |x, y| hand_sdf(pose.shape, x, y, c, r));
}

/// Rounds to the nearest byte, saturating (`as` truncates, so add ½ after clamping; avoids a
/// `roundf` call per value on baseline x86-64).
fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

/// Renders one frame: the still layer plus both arms and hands, then Gaussian noise with
/// standard deviation `noise_std` (0–255 scale), as interleaved RGB bytes.
pub fn render_frame<R: RngCore>(
    still: &Canvas,
    scene: &Scene,
    pose: &FramePose,
    noise_std: f32,
    rng: &mut R,
    noise_buf: &mut Vec<u8>,
) -> Vec<u8> {
    let mut canvas = still.clone();
    // The non-dominant (image right) side first, so the dominant hand is in front.
    draw_arm(&mut canvas, scene, &pose.left, 1.0);
    draw_hand(&mut canvas, scene, &pose.left);
    draw_arm(&mut canvas, scene, &pose.right, -1.0);
    draw_hand(&mut canvas, scene, &pose.right);
    if noise_std <= 0.0 {
        return canvas.data.iter().map(|&v| to_u8(v)).collect();
    }
    // Luminance noise (one draw per pixel, added to all three channels), as camera noise
    // mostly is; the Irwin–Hall sum of four uniform bytes ≈ Gaussian (mean 510, sd ≈ 147.8).
    noise_buf.resize(canvas.width * canvas.height * 4, 0);
    rng.fill_bytes(noise_buf);
    let k = noise_std / 147.8;
    let mut out = Vec::with_capacity(canvas.data.len());
    for (px, n) in canvas.data.chunks_exact(3).zip(noise_buf.chunks_exact(4)) {
        let sum = n.iter().map(|&b| u32::from(b)).sum::<u32>() as f32 - 510.0;
        let d = sum * k;
        out.extend(px.iter().map(|&v| to_u8(v + d)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::sign::{rest_pose, sign_table};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn scene(seed: u64) -> Scene {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let look = SignerLook::random(&mut rng);
        Scene::random(&look, &mut rng)
    }

    #[test]
    fn frame_has_requested_size_and_shows_hands() {
        let s = scene(1);
        let still = render_still(&s, 64, 80);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (right, left) = sign_table(1)[0].pose(0.0, 1.0);
        let pose = FramePose {
            right,
            left,
            label: 4,
        };
        let mut buf = Vec::new();
        let img = render_frame(&still, &s, &pose, 0.0, &mut rng, &mut buf);
        assert_eq!(img.len(), 64 * 80 * 3);
        let rest = FramePose {
            right: rest_pose(-1.0),
            left: rest_pose(1.0),
            label: 0,
        };
        let img_rest = render_frame(&still, &s, &rest, 0.0, &mut rng, &mut buf);
        let changed = img
            .iter()
            .zip(&img_rest)
            .filter(|(a, b)| a.abs_diff(**b) > 40)
            .count();
        assert!(
            changed > 64 * 80 / 50,
            "hands barely visible: {changed} bytes changed"
        );
    }

    #[test]
    fn noise_has_roughly_the_requested_spread() {
        let s = scene(3);
        let still = render_still(&s, 32, 40);
        let pose = FramePose {
            right: rest_pose(-1.0),
            left: rest_pose(1.0),
            label: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut buf = Vec::new();
        let clean = render_frame(&still, &s, &pose, 0.0, &mut rng, &mut buf);
        let noisy = render_frame(&still, &s, &pose, 4.0, &mut rng, &mut buf);
        let var = clean
            .iter()
            .zip(&noisy)
            .map(|(&a, &b)| (f32::from(a) - f32::from(b)).powi(2))
            .sum::<f32>()
            / clean.len() as f32;
        assert!((var.sqrt() - 4.0).abs() < 0.6, "noise sd {}", var.sqrt());
    }
}
