//! Ring algorithms over [`Links`]: reduce-scatter + all-gather for all-reduce, a pipelined
//! chain for broadcast, block rotation for all-gather.
//!
//! The buffer of `len` elements is cut into `world` chunks, chunk `i` = `[i·len/world,
//! (i+1)·len/world)`: sizes differ by at most one element, and some are empty when
//! `len < world`, which needs no special case (an empty exchange moves nothing). In
//! reduce-scatter step `s` rank `r` sends chunk `r−s` and adds the incoming chunk `r−s−1` to
//! its own; after `world−1` steps it holds the complete sum of chunk `r+1`, which all-gather
//! then passes around unchanged. Each chunk's sum is therefore computed once, in a fixed ring
//! order, and copied: all ranks end with bitwise identical results, run after run.

use std::ops::{AddAssign, Range};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::link::{Links, Transfer};
use crate::dist::collective::{CollectiveError, Op};

/// Segment size of the broadcast pipeline: a middle rank forwards segment `i−1` while it
/// receives segment `i`.
const BROADCAST_SEGMENT: usize = 1 << 20;

/// Elements `[i·len/n, (i+1)·len/n)` of chunk `i`.
pub(crate) fn chunk_bounds(len: usize, n: usize, i: usize) -> Range<usize> {
    let at = |k: usize| ((k as u128 * len as u128) / n as u128) as usize;
    at(i)..at(i + 1)
}

/// Deadline and timeout of one operation.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    pub deadline: Instant,
    pub timeout: Duration,
}

impl Links {
    fn step(
        &self,
        send: &[u8],
        recv: &mut [u8],
        op: Op,
        clock: Clock,
    ) -> Result<(), CollectiveError> {
        let t = Transfer {
            send: vec![send],
            recv: vec![recv],
        };
        self.exchange(t, op, clock.deadline, clock.timeout)
    }
}

/// Sum all-reduce of `buf` in place. `scratch` is reused between calls (u64 words, so any
/// element type is aligned in it).
pub(crate) fn all_reduce<T: Pod + AddAssign>(
    links: &Links,
    world: usize,
    buf: &mut [T],
    scratch: &mut Vec<u64>,
    op: Op,
    clock: Clock,
) -> Result<(), CollectiveError> {
    let (n, r, len) = (world, links.rank, buf.len());
    let elt = std::mem::size_of::<T>();
    let max_chunk = len.div_ceil(n);
    let words = (max_chunk * elt).div_ceil(8);
    if scratch.len() < words {
        scratch.resize(words, 0);
    }
    for s in 0..n - 1 {
        let send = chunk_bounds(len, n, (r + n - s) % n);
        let recv = chunk_bounds(len, n, (r + 2 * n - s - 1) % n);
        let incoming = &mut bytemuck::cast_slice_mut::<u64, u8>(scratch)[..recv.len() * elt];
        links.step(bytemuck::cast_slice(&buf[send]), incoming, op, clock)?;
        let incoming: &[T] = bytemuck::cast_slice(incoming);
        for (mine, theirs) in buf[recv].iter_mut().zip(incoming) {
            *mine += *theirs;
        }
    }
    let bounds: Vec<Range<usize>> = (0..n)
        .map(|i| {
            let c = chunk_bounds(len, n, i);
            c.start * elt..c.end * elt
        })
        .collect();
    // All-gather, shifted by one: rank r starts with the complete chunk r+1.
    rotate_blocks(
        links,
        n,
        bytemuck::cast_slice_mut(buf),
        &bounds,
        1,
        op,
        clock,
    )
}

/// Every rank's block `bounds[r]` of `buf` ends up in every rank's `buf`.
pub(crate) fn all_gather_blocks(
    links: &Links,
    world: usize,
    buf: &mut [u8],
    bounds: &[Range<usize>],
    op: Op,
    clock: Clock,
) -> Result<(), CollectiveError> {
    rotate_blocks(links, world, buf, bounds, 0, op, clock)
}

/// Ring all-gather where rank `r` initially owns block `r + shift`: step `s` sends block
/// `r + shift − s` and receives block `r + shift − s − 1`.
fn rotate_blocks(
    links: &Links,
    n: usize,
    buf: &mut [u8],
    bounds: &[Range<usize>],
    shift: usize,
    op: Op,
    clock: Clock,
) -> Result<(), CollectiveError> {
    let r = links.rank;
    for s in 0..n - 1 {
        let send = bounds[(r + shift + n - s) % n].clone();
        let recv = bounds[(r + shift + 2 * n - s - 1) % n].clone();
        let (out, inc) = disjoint(buf, send, recv);
        links.step(out, inc, op, clock)?;
    }
    Ok(())
}

/// Copies `root`'s `buf` to all ranks along the ring, pipelined in segments.
pub(crate) fn broadcast(
    links: &Links,
    world: usize,
    buf: &mut [u8],
    root: usize,
    op: Op,
    clock: Clock,
) -> Result<(), CollectiveError> {
    let pos = (links.rank + world - root) % world;
    if pos == 0 {
        return links.step(buf, &mut [], op, clock);
    }
    if pos == world - 1 {
        return links.step(&[], buf, op, clock);
    }
    let segments = buf.len().div_ceil(BROADCAST_SEGMENT);
    for i in 0..=segments {
        let seg = |k: usize| k * BROADCAST_SEGMENT..((k + 1) * BROADCAST_SEGMENT).min(buf.len());
        let send = if i > 0 { seg(i - 1) } else { 0..0 };
        let recv = if i < segments {
            seg(i)
        } else {
            buf.len()..buf.len()
        };
        let (out, inc) = disjoint(buf, send, recv);
        links.step(out, inc, op, clock)?;
    }
    Ok(())
}

/// A shared view of `a` and a mutable view of `b`, two non-overlapping ranges of `buf`.
fn disjoint(buf: &mut [u8], a: Range<usize>, b: Range<usize>) -> (&[u8], &mut [u8]) {
    if a.is_empty() {
        return (&[], &mut buf[b]);
    }
    if b.is_empty() {
        return (&buf[a], &mut []);
    }
    if a.start >= b.end {
        let (lo, hi) = buf.split_at_mut(a.start);
        (&hi[..a.len()], &mut lo[b])
    } else {
        debug_assert!(b.start >= a.end, "overlapping ranges {a:?} and {b:?}");
        let (lo, hi) = buf.split_at_mut(b.start);
        (&lo[a], &mut hi[..b.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_buffer_evenly() {
        for (len, n) in [
            (0, 3),
            (1, 3),
            (2, 3),
            (7, 3),
            (1000003, 3),
            (10, 2),
            (5, 5),
        ] {
            let chunks: Vec<_> = (0..n).map(|i| chunk_bounds(len, n, i)).collect();
            assert_eq!(chunks[0].start, 0);
            assert_eq!(chunks[n - 1].end, len);
            for w in chunks.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let (min, max) = chunks.iter().fold((usize::MAX, 0), |(lo, hi), c| {
                (lo.min(c.len()), hi.max(c.len()))
            });
            assert!(max - min <= 1, "{len}/{n}: {chunks:?}");
        }
    }

    #[test]
    fn disjoint_views() {
        let mut buf: Vec<u8> = (0..10).collect();
        let (a, b) = disjoint(&mut buf, 6..8, 1..3);
        assert_eq!(a, [6, 7]);
        b.copy_from_slice(&[9, 9]);
        let (a, b) = disjoint(&mut buf, 0..2, 2..4);
        assert_eq!(a, [0, 9]);
        assert_eq!(b, [9, 3]);
        let (a, b) = disjoint(&mut buf, 5..5, 5..6);
        assert!(a.is_empty());
        assert_eq!(b, [5]);
    }
}
