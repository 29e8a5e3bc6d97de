//! CTC prefix beam search, reproducing TensorFlow's `tf.nn.ctc_beam_search_decoder` bit for
//! bit (C++ `CTCBeamSearchDecoder` with the default scorer, `merge_repeated=False`,
//! `top_paths=1`), as the reference's `RecognitionNetwork.decode` calls it.
//!
//! What is reproduced, and why it matters for exact parity:
//! * per frame, TF normalises the logits with a float32 log-softmax computed as
//!   `max + log(Σ exp(x_j − max))`, summing in its class order — which, because the reference
//!   rotates the classes so that blank (model id 0) is last, is model ids `1..V` then `0`;
//! * beam entries hold `total`, `blank` and `label` log-probabilities updated with the same
//!   float expressions in the same order (`LogSumExp(a, b) = max + log1p(exp(min − max))`);
//! * the beam is a `gtl::TopN` whose tie-breaking comes from libstdc++'s unstable
//!   `std::sort`/heap algorithms ([`super::stl`], ported from the `top_n.h` that TF 2.21 ships;
//!   the older `TopN` in earlier TF releases breaks exact ties differently, so results on
//!   exactly tied scores may differ from TF 2.2, the reference's version, which could not be
//!   checked here); entries are visited in TF's order, new
//!   children replace the current bottom entry (which is "deactivated"), and an entry whose
//!   parent left the beam no longer receives probability from it (TF's "hibernating" search);
//! * the result is the best of the final leaves chosen through a `TopN(1)`, exactly as
//!   `TopPaths` does, including for beam width 1 (which is not greedy best-path decoding).
//!
//! One quirk matters a lot: when TF expands a prefix and meets a child that has just been pushed
//! out of the beam *in this same step* (it was the bottom), it re-scores it as a new prefix and,
//! if it does not qualify, resets its `oldp` as well — so that prefix is not expanded later in
//! the step even though it was a branch. Children that TF would create and immediately
//! deactivate are otherwise never materialised here (no observable effect), so a step costs
//! O(beam · V) float operations plus a hash look-up per accepted candidate; once the beam is
//! full, a branch that cannot beat its bottom even with the best label is skipped whole.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::stl::TopN;
use super::CtcError;

const LOG_ZERO: f32 = f32::NEG_INFINITY;
/// Label of the root entry (TF uses −1; no model id can equal it).
const ROOT_LABEL: u32 = u32::MAX;
/// Parent of the root entry.
const NO_PARENT: u32 = u32::MAX;

/// TF's `LogSumExp` for float: `max + log1pf(expf(min − max))`, `−inf` acting as zero.
#[inline]
fn log_sum_exp(a: f32, b: f32) -> f32 {
    if a == LOG_ZERO {
        b
    } else if b == LOG_ZERO {
        a
    } else if a > b {
        a + (b - a).exp().ln_1p()
    } else {
        b + (a - b).exp().ln_1p()
    }
}

/// `BeamProbability`: log-probabilities of a prefix ending in blank, in its last label, and
/// their sum.
#[derive(Clone, Copy, Debug)]
struct Prob {
    total: f32,
    blank: f32,
    label: f32,
}

impl Prob {
    const ZERO: Prob = Prob {
        total: LOG_ZERO,
        blank: LOG_ZERO,
        label: LOG_ZERO,
    };
}

/// One node of the prefix trie (`BeamEntry`).
#[derive(Clone, Copy, Debug)]
struct Entry {
    parent: u32,
    label: u32,
    oldp: Prob,
    newp: Prob,
}

impl Entry {
    fn active(&self) -> bool {
        self.newp.total != LOG_ZERO
    }
}

/// Multiplicative hasher for the `(parent, label)` keys of the trie.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (k ^ (k >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k >> 32);
    }
}

type ChildMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

fn child_key(parent: u32, label: u32) -> u64 {
    (u64::from(parent) << 32) | u64::from(label)
}

/// TF's `BeamComparer`: `a` ranks above `b` iff its total log-probability is larger.
fn greater(entries: &[Entry]) -> impl Fn(u32, u32) -> bool + '_ {
    move |a, b| entries[a as usize].newp.total > entries[b as usize].newp.total
}

/// `a > b` as TF's float comparisons use it (false when either is NaN).
#[inline]
fn beats(a: f32, b: f32) -> bool {
    a > b
}

/// TF's `is_candidate`: a prefix with log-probability `total` may enter the beam if it is
/// non-zero and the beam has room or its bottom is worse. Peeking may reorder the beam.
fn is_candidate(entries: &[Entry], leaves: &mut TopN, beam_width: usize, total: f32) -> bool {
    total > LOG_ZERO
        && (leaves.size() < beam_width
            || leaves
                .peek_bottom(&greater(entries))
                .is_some_and(|i| total > entries[i as usize].newp.total))
}

/// The best path found by [`CtcBeamDecoder::decode`].
#[derive(Clone, Debug, PartialEq)]
pub struct BeamPath {
    /// Model ids of the path (blank is 0 and never appears), **before** merging consecutive
    /// duplicates (TF runs with `merge_repeated=False`; the reference merges afterwards).
    pub ids: Vec<usize>,
    /// TF's score of the path (`log_probability` output): the prefix probability in log space.
    pub log_probability: f32,
}

/// A reusable TensorFlow-exact CTC beam-search decoder (one sequence at a time; keep one per
/// thread to reuse its buffers).
#[derive(Debug)]
pub struct CtcBeamDecoder {
    beam_width: usize,
    entries: Vec<Entry>,
    children: ChildMap,
    leaves: TopN,
    top_paths: TopN,
    branches: Vec<u32>,
    scratch: Vec<u32>,
    special: Vec<(u32, u32)>,
    log_probs: Vec<f32>,
}

impl CtcBeamDecoder {
    /// A decoder keeping `beam_width` prefixes per frame (TF requires `beam_width >= 1`).
    pub fn new(beam_width: usize) -> Result<Self, CtcError> {
        if beam_width == 0 {
            return Err(CtcError::BeamWidth(beam_width));
        }
        Ok(Self {
            beam_width,
            entries: Vec::new(),
            children: ChildMap::default(),
            leaves: TopN::new(beam_width),
            top_paths: TopN::new(1),
            branches: Vec::new(),
            scratch: Vec::new(),
            special: Vec::new(),
            log_probs: Vec::new(),
        })
    }

    /// The beam width this decoder was built with.
    pub fn beam_width(&self) -> usize {
        self.beam_width
    }

    /// Decodes one sequence: `logits` holds `t` frames of `v` raw logits (row-major `[t, v]`,
    /// model layout: blank = id 0). Only the first `t` frames are read, so pass the valid
    /// length. Returns the best path in model ids (not merged) and its TF score.
    pub fn decode(&mut self, logits: &[f32], t: usize, v: usize) -> Result<BeamPath, CtcError> {
        let needed = t.checked_mul(v).ok_or_else(|| CtcError::Shape {
            what: "logits",
            expected: "t * v to fit in memory".into(),
            got: format!("t = {t}, v = {v}"),
        })?;
        if v == 0 || logits.len() < needed || v > u32::MAX as usize - 1 {
            return Err(CtcError::Shape {
                what: "logits",
                expected: format!("at least t * v = {t} * {v} values with 1 <= v < 2^32 - 1"),
                got: format!("{} values", logits.len()),
            });
        }
        self.reset();
        for frame in logits[..needed].chunks_exact(v) {
            self.step(frame);
        }
        Ok(self.best_path())
    }

    /// `CTCBeamSearchDecoder::Reset`: a fresh trie whose root (the empty prefix) has
    /// probability one and is the only leaf.
    fn reset(&mut self) {
        self.entries.clear();
        self.children.clear();
        self.leaves.reset();
        self.entries.push(Entry {
            parent: NO_PARENT,
            label: ROOT_LABEL,
            oldp: Prob::ZERO,
            newp: Prob {
                total: 0.0,
                blank: 0.0,
                label: LOG_ZERO,
            },
        });
        let entries = &self.entries;
        self.leaves.push(0, &greater(entries));
    }

    /// `CTCBeamSearchDecoder::Step` for one frame of model-layout logits.
    fn step(&mut self, x: &[f32]) {
        let v = x.len();
        // TF's raw input is the rotated frame [x_1, …, x_{V-1}, x_0]; the max is order-free,
        // the float sum is not.
        let max_coeff = x.iter().fold(LOG_ZERO, |m, &a| if a > m { a } else { m });
        let mut sum = 0.0f32;
        for &a in &x[1..] {
            sum += (a - max_coeff).exp();
        }
        sum += (x[0] - max_coeff).exp();
        let norm_offset = max_coeff + sum.ln();
        let blank_logit = x[0];
        self.log_probs.clear();
        self.log_probs.extend(x.iter().map(|&a| a - norm_offset));
        let max_label = self.log_probs[1..]
            .iter()
            .fold(LOG_ZERO, |m, &a| if a > m { a } else { m });

        let w = self.beam_width;
        let Self {
            entries,
            children,
            leaves,
            branches,
            special,
            log_probs,
            ..
        } = self;

        leaves.extract_into(branches, &greater(entries));
        for &b in branches.iter() {
            let e = &mut entries[b as usize];
            e.oldp = e.newp;
        }

        // Existing prefixes: extend by their own label or by blank.
        for &b in branches.iter() {
            let e = entries[b as usize];
            let mut newp = e.newp;
            if e.parent != NO_PARENT {
                let p = entries[e.parent as usize];
                if p.active() {
                    let previous = if e.label == p.label {
                        p.oldp.blank
                    } else {
                        p.oldp.total
                    };
                    newp.label = log_sum_exp(newp.label, previous);
                }
                newp.label += log_probs[e.label as usize];
            }
            newp.blank = e.oldp.total + blank_logit - norm_offset;
            newp.total = log_sum_exp(newp.blank, newp.label);
            entries[b as usize].newp = newp;
            leaves.push(b, &greater(entries));
        }

        // New prefixes: every branch (best first) extended by every non-blank label.
        for &b in branches.iter() {
            let Entry {
                label: b_label,
                oldp,
                ..
            } = entries[b as usize];
            if !is_candidate(entries, leaves, w, oldp.total) {
                continue;
            }
            // Children of `b` that are themselves branches of this step. TF resets a child it
            // revisits and rejects (`oldp` included), and such a child's `oldp` is still read
            // when its own turn comes below; any other child's `oldp` is dead, so for the
            // remaining labels a rejected child need not be looked up at all.
            special.clear();
            special.extend(
                branches
                    .iter()
                    .filter(|&&o| entries[o as usize].parent == b)
                    .map(|&o| (entries[o as usize].label, o)),
            );
            special.sort_unstable();
            // Every extension scores at most `oldp.total + max_label` (float addition is
            // monotonic and `blank <= total`). Once the beam is full with a known bottom, and
            // that bound cannot beat it, no child can enter (the bottom only rises): only the
            // resets TF performs on rejected in-step children remain to be done.
            if leaves.size() >= w && !leaves.is_unordered() {
                let bottom = entries[leaves.unsorted()[0] as usize].newp.total;
                if !beats(oldp.total + max_label, bottom) {
                    for &(_, c) in special.iter() {
                        if !entries[c as usize].active() {
                            entries[c as usize].oldp = Prob::ZERO;
                            entries[c as usize].newp = Prob::ZERO;
                        }
                    }
                    continue;
                }
            }
            let mut next_special = 0;
            for (label, &lp) in (1u32..).zip(&log_probs[1..v]) {
                let previous = if label == b_label {
                    oldp.blank
                } else {
                    oldp.total
                };
                let total = lp + previous;
                let existing = if special.get(next_special).is_some_and(|s| s.0 == label) {
                    next_special += 1;
                    Some(special[next_special - 1].1)
                } else {
                    if !beats(total, LOG_ZERO) {
                        continue;
                    }
                    // While the beam's bottom is known, peeking has no side effect: reject
                    // early without touching the trie.
                    if leaves.size() >= w && !leaves.is_unordered() {
                        let bottom = leaves.unsorted()[0];
                        if !beats(total, entries[bottom as usize].newp.total) {
                            continue;
                        }
                    }
                    children.get(&child_key(b, label)).copied()
                };
                if existing.is_some_and(|c| entries[c as usize].active()) {
                    continue;
                }
                if !is_candidate(entries, leaves, w, total) {
                    if let Some(c) = existing {
                        entries[c as usize].oldp = Prob::ZERO;
                        entries[c as usize].newp = Prob::ZERO;
                    }
                    continue;
                }
                if leaves.size() >= w {
                    // Bottom is no longer in the beam search: reset its probability.
                    let bottom = leaves.peek_bottom(&greater(entries));
                    if let Some(bottom) = bottom {
                        entries[bottom as usize].newp = Prob::ZERO;
                    }
                }
                let c = existing.unwrap_or_else(|| {
                    let c = entries.len() as u32;
                    entries.push(Entry {
                        parent: b,
                        label,
                        oldp: Prob::ZERO,
                        newp: Prob::ZERO,
                    });
                    children.insert(child_key(b, label), c);
                    c
                });
                entries[c as usize].newp = Prob {
                    total,
                    blank: LOG_ZERO,
                    label: total,
                };
                leaves.push(c, &greater(entries));
            }
        }
    }

    /// `TopPaths(1)`: the leaves, in storage order, go through a `TopN(1)`.
    fn best_path(&mut self) -> BeamPath {
        let Self {
            entries,
            leaves,
            top_paths,
            scratch,
            ..
        } = self;
        top_paths.reset();
        for &e in leaves.unsorted() {
            top_paths.push(e, &greater(entries));
        }
        top_paths.extract_into(scratch, &greater(entries));
        let mut ids = Vec::new();
        let mut log_probability = LOG_ZERO;
        if let Some(&best) = scratch.first() {
            log_probability = entries[best as usize].newp.total;
            let mut node = best;
            while entries[node as usize].parent != NO_PARENT {
                ids.push(entries[node as usize].label as usize);
                node = entries[node as usize].parent;
            }
            ids.reverse();
        }
        BeamPath {
            ids,
            log_probability,
        }
    }
}

/// Merges consecutive equal ids (`itertools.groupby` in the reference's `ctc_decode_func`).
pub fn merge_repeats(ids: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::with_capacity(ids.len());
    for &id in ids {
        if out.last() != Some(&id) {
            out.push(id);
        }
    }
    out
}

/// The reference's decoding of one sequence: TF beam search on `t` frames of `v` raw logits
/// (row-major `[t, v]`, blank = model id 0), then duplicates merged. Returns model ids.
pub fn ctc_beam_search(
    logits: &[f32],
    t: usize,
    v: usize,
    beam_width: usize,
) -> Result<Vec<usize>, CtcError> {
    let path = CtcBeamDecoder::new(beam_width)?.decode(logits, t, v)?;
    Ok(merge_repeats(&path.ids))
}
