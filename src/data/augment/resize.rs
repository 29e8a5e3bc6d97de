//! Crop + bilinear resize with the semantics of
//! `torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False,
//! antialias=False)` applied to a (possibly zero-padded) crop of the frame.
//!
//! The source taps and weights of every output row and column are computed once per plan
//! ([`axis_taps`]); the per-frame kernel ([`resample`]) is then a branch-free 4-tap loop. Taps
//! that fall outside the frame (zero padding of a centre crop larger than the frame) get weight 0
//! and a valid dummy index, which is exactly interpolation against zeros.

/// One output coordinate's two source taps along an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tap {
    /// Element offset of the first tap (source coordinate × stride).
    pub i0: usize,
    /// Element offset of the second tap.
    pub i1: usize,
    /// Weight of the first tap.
    pub w0: f32,
    /// Weight of the second tap.
    pub w1: f32,
}

/// Taps for resizing the window `[offset, offset + crop_len)` of an axis of `src_len` pixels to
/// `out_len` pixels; pixels of the window outside `[0, src_len)` are zeros. Offsets are
/// multiplied by `stride`. Index and weight arithmetic is in `f32` like PyTorch's kernels
/// (`area_pixel_compute_scale`, `area_pixel_compute_source_index`, `guard_index_and_lambda`).
pub(crate) fn axis_taps(
    src_len: usize,
    offset: i64,
    crop_len: usize,
    out_len: usize,
    stride: usize,
) -> Vec<Tap> {
    let scale = crop_len as f32 / out_len as f32;
    let last = crop_len.saturating_sub(1);
    let to_source = |idx: usize, weight: f32| -> (usize, f32) {
        let s = offset + idx as i64;
        match usize::try_from(s) {
            Ok(s) if s < src_len => (s * stride, weight),
            _ => (0, 0.0),
        }
    };
    (0..out_len)
        .map(|dst| {
            let (idx0, idx1, lambda0, lambda1) = if crop_len == out_len {
                (dst, dst, 1.0f32, 0.0f32)
            } else {
                // PyTorch's compiled kernels (CUDA, and the AVX2/AVX-512 CPU builds) contract
                // `scale * (dst + 0.5) - 0.5` into one fused multiply-add; matching that
                // rounding matters at ~1e-5 for sources of a few hundred pixels.
                let real = scale.mul_add(dst as f32 + 0.5, -0.5).max(0.0);
                let idx0 = (real.floor() as usize).min(last);
                let lambda1 = (real - idx0 as f32).clamp(0.0, 1.0);
                let idx1 = idx0 + usize::from(idx0 < last);
                (idx0, idx1, 1.0 - lambda1, lambda1)
            };
            let (i0, w0) = to_source(idx0, lambda0);
            let (i1, w1) = to_source(idx1, lambda1);
            Tap { i0, i1, w0, w1 }
        })
        .collect()
}

/// A source pixel component type.
pub(crate) trait Texel: Copy {
    fn value(self) -> f32;
}

impl Texel for u8 {
    #[inline(always)]
    fn value(self) -> f32 {
        f32::from(self)
    }
}

impl Texel for f32 {
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
}

/// Horizontal pass over one source row: writes the row resampled to `cols.len()` pixels into
/// `dst` as three planes `[r | g | b]`.
#[inline]
fn horizontal<T: Texel>(row: &[T], cols: &[Tap], dst: &mut [f32]) {
    let out_w = cols.len();
    let (dr, rest) = dst.split_at_mut(out_w);
    let (dg, db) = rest.split_at_mut(out_w);
    for (c, ((r, g), b)) in cols
        .iter()
        .zip(dr.iter_mut().zip(dg.iter_mut()).zip(db.iter_mut()))
    {
        let p0 = &row[c.i0..c.i0 + 3];
        let p1 = &row[c.i1..c.i1 + 3];
        *r = c.w0 * p0[0].value() + c.w1 * p1[0].value();
        *g = c.w0 * p0[1].value() + c.w1 * p1[1].value();
        *b = c.w0 * p0[2].value() + c.w1 * p1[2].value();
    }
}

/// Resamples an interleaved RGB image (`row_len` = width × 3 elements per row) through the
/// precomputed taps and writes `value * scale + bias` into the planes `[b, g, r]` (each
/// `rows.len() × cols.len()`, row-major): the channel order is reversed to BGR here.
///
/// Separable, in PyTorch's order: `wy0·(wx0·p00 + wx1·p01) + wy1·(wx0·p10 + wx1·p11)`. Each
/// source row is resampled horizontally once and kept while consecutive output rows use it.
/// Callers guarantee that every column tap + 2 is inside a row and every row tap is a row start.
pub(crate) fn resample<T: Texel>(
    src: &[T],
    row_len: usize,
    rows: &[Tap],
    cols: &[Tap],
    scale: f32,
    bias: f32,
    planes: [&mut [f32]; 3],
) {
    let out_w = cols.len();
    // Two horizontally resampled source rows, tagged with their source offset.
    let mut tags = [usize::MAX; 2];
    let mut cache = vec![0.0f32; 6 * out_w];
    let [plane_b, plane_g, plane_r] = planes;
    let dst_rows = plane_r
        .chunks_exact_mut(out_w)
        .zip(plane_g.chunks_exact_mut(out_w))
        .zip(plane_b.chunks_exact_mut(out_w));
    for (ry, ((or, og), ob)) in rows.iter().zip(dst_rows) {
        let mut ensure = |idx: usize, keep: Option<usize>| -> usize {
            if let Some(slot) = tags.iter().position(|&t| t == idx) {
                return slot;
            }
            let slot = match keep {
                Some(k) => 1 - k,
                None => usize::from(tags[0] == ry.i1),
            };
            horizontal(
                &src[idx..idx + row_len],
                cols,
                &mut cache[slot * 3 * out_w..(slot + 1) * 3 * out_w],
            );
            tags[slot] = idx;
            slot
        };
        let s0 = ensure(ry.i0, None);
        let s1 = ensure(ry.i1, Some(s0));
        let h0 = &cache[s0 * 3 * out_w..(s0 + 1) * 3 * out_w];
        let h1 = &cache[s1 * 3 * out_w..(s1 + 1) * 3 * out_w];
        let (wy0, wy1) = (ry.w0, ry.w1);
        for (k, dst) in [or, og, ob].into_iter().enumerate() {
            let a = &h0[k * out_w..(k + 1) * out_w];
            let b = &h1[k * out_w..(k + 1) * out_w];
            for ((d, &a), &b) in dst.iter_mut().zip(a).zip(b) {
                *d = (wy0 * a + wy1 * b) * scale + bias;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_sizes_match() {
        let taps = axis_taps(10, 0, 10, 10, 3);
        for (i, t) in taps.iter().enumerate() {
            assert_eq!((t.i0, t.w0, t.w1), (3 * i, 1.0, 0.0));
        }
    }

    #[test]
    fn downscale_by_two_averages_pairs() {
        // scale 2: src = 2*(dst+0.5)-0.5 = 2*dst + 0.5 → taps (2d, 2d+1) with weights 0.5.
        let taps = axis_taps(8, 0, 8, 4, 1);
        for (d, t) in taps.iter().enumerate() {
            assert_eq!((t.i0, t.i1, t.w0, t.w1), (2 * d, 2 * d + 1, 0.5, 0.5));
        }
    }

    #[test]
    fn source_index_uses_a_fused_multiply_add_like_torch() {
        // F.interpolate 260 → 100, output 98: torch's weights are (0.4000091552734375,
        // 0.5999908447265625) on pixels 255/256; unfused f32 arithmetic gives 0.4000244….
        let taps = axis_taps(260, 0, 260, 100, 1);
        assert_eq!((taps[98].i0, taps[98].i1), (255, 256));
        assert_eq!((taps[98].w0, taps[98].w1), (0.400_009_16, 0.599_990_84));
    }

    #[test]
    fn upscale_clamps_at_the_borders() {
        let taps = axis_taps(2, 0, 2, 4, 1);
        // dst 0: src = 0.5*0.5-0.5 < 0 → 0; dst 3: src = 1.25 → idx 1 (last), idx1 = 1.
        assert_eq!((taps[0].i0, taps[0].w0, taps[0].w1), (0, 1.0, 0.0));
        assert_eq!((taps[3].i0, taps[3].i1), (1, 1));
        assert!((taps[1].w1 - 0.25).abs() < 1e-7);
    }

    #[test]
    fn padding_taps_have_zero_weight() {
        // Window [-2, 6) of a 4-pixel axis, same size: two zero taps each side.
        let taps = axis_taps(4, -2, 8, 8, 3);
        let weights: Vec<f32> = taps.iter().map(|t| t.w0).collect();
        assert_eq!(weights, vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(taps[2].i0, 0);
        assert_eq!(taps[5].i0, 9);
    }

    #[test]
    fn resample_writes_bgr() {
        // 1×1 image, identity: planes get (b, g, r).
        let src = [10u8, 20, 30];
        let taps = axis_taps(1, 0, 1, 1, 3);
        let rows = axis_taps(1, 0, 1, 1, 3);
        let (mut b, mut g, mut r) = ([0.0f32], [0.0f32], [0.0f32]);
        resample(&src, 3, &rows, &taps, 1.0, 0.0, [&mut b, &mut g, &mut r]);
        assert_eq!((b[0], g[0], r[0]), (30.0, 20.0, 10.0));
    }
}
