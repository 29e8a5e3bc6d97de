//! Corpus BLEU-1..4 as the reference computes it: `utils/metrics.py: bleu` → the vendored
//! sacrebleu 1.4.2 `raw_corpus_bleu`.
//!
//! Semantics, all from that call: no tokenisation (Python `str.split()`), no lowercasing, one
//! reference per hypothesis (so the "closest" reference length is simply its length), `floor`
//! smoothing with value 0 (a zero precision stays 0 and its log is floored to −9999999999, so
//! the score collapses to 0), and `use_effective_order=True`, which in this version has no
//! effect on the returned scores. BLEU-n is cumulative:
//! `BP · exp((Σ_{k≤n} log p_k) / n)` with the precisions `p_k` in percent, so scores are 0..100.
//! At [`TextLevel::Char`] every string becomes `' '.join(list(s))` first: each non-whitespace
//! character is a token and whitespace characters vanish.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::AddAssign;

use super::{check_paired, pystr, MetricsError, TextLevel};

/// Highest n-gram order (sacrebleu's `NGRAM_ORDER`).
pub const MAX_ORDER: usize = 4;

/// sacrebleu's `my_log(0)`: the floor for the log of a zero precision.
const LOG_ZERO: f64 = -9_999_999_999.0;

/// Cumulative BLEU-1..4 in percent (the reference's `bleu1` … `bleu4`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BleuScores {
    /// BLEU with unigrams only.
    pub bleu1: f64,
    /// BLEU with 1- and 2-grams.
    pub bleu2: f64,
    /// BLEU with 1- to 3-grams.
    pub bleu3: f64,
    /// BLEU with 1- to 4-grams (the headline number).
    pub bleu4: f64,
}

impl BleuScores {
    /// `[bleu1, bleu2, bleu3, bleu4]`.
    pub fn as_array(&self) -> [f64; MAX_ORDER] {
        [self.bleu1, self.bleu2, self.bleu3, self.bleu4]
    }
}

/// BLEU's sufficient statistics. They add up over sentences, so shards of a corpus scored on
/// different workers combine with `+=` before [`BleuStats::scores`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuStats {
    /// Clipped n-gram matches per order (`correct`).
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order (`total`).
    pub total: [u64; MAX_ORDER],
    /// Hypothesis tokens (`sys_len`).
    pub sys_len: u64,
    /// Reference tokens (`ref_len`).
    pub ref_len: u64,
}

impl AddAssign for BleuStats {
    fn add_assign(&mut self, other: Self) {
        for n in 0..MAX_ORDER {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
        self.sys_len += other.sys_len;
        self.ref_len += other.ref_len;
    }
}

impl BleuStats {
    /// Modified n-gram precisions in percent (sacrebleu's `precisions`): orders from the first
    /// one without any hypothesis n-gram on stay 0.
    pub fn precisions(&self) -> [f64; MAX_ORDER] {
        let mut p = [0.0; MAX_ORDER];
        for ((p, &correct), &total) in p.iter_mut().zip(&self.correct).zip(&self.total) {
            if total == 0 {
                break;
            }
            // `floor` smoothing with value 0: a zero count gives 100·0/total = 0 as well.
            *p = 100.0 * correct as f64 / total as f64;
        }
        p
    }

    /// The brevity penalty against the summed (closest) reference length.
    pub fn brevity_penalty(&self) -> f64 {
        if self.sys_len >= self.ref_len {
            1.0
        } else if self.sys_len > 0 {
            (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
        } else {
            0.0
        }
    }

    /// Cumulative BLEU-1..4 from these statistics (sacrebleu's `compute_bleu(...).scores`).
    pub fn scores(&self) -> BleuScores {
        let bp = self.brevity_penalty();
        let logs = self
            .precisions()
            .map(|p| if p == 0.0 { LOG_ZERO } else { p.ln() });
        let mut s = [0.0; MAX_ORDER];
        for (order, score) in (1..=MAX_ORDER).zip(&mut s) {
            let sum: f64 = logs[..order].iter().sum();
            *score = bp * (sum / order as f64).exp();
        }
        BleuScores {
            bleu1: s[0],
            bleu2: s[1],
            bleu3: s[2],
            bleu4: s[3],
        }
    }
}

/// Corpus BLEU-1..4 of `hypotheses` against `references` (one reference each), like the
/// reference's `bleu(references, hypotheses, level)`.
///
/// ```
/// use slt::metrics::{bleu::bleu, TextLevel};
/// let s = bleu(&["a b c d"], &["a b c e"], TextLevel::Word)?;
/// assert!((s.bleu1 - 75.0).abs() < 1e-9);
/// assert_eq!(s.bleu4, 0.0); // no 4-gram matches: floor smoothing 0
/// # Ok::<(), slt::metrics::MetricsError>(())
/// ```
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the slices differ in length (sacrebleu raises
/// `EOFError`).
pub fn bleu<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
    level: TextLevel,
) -> Result<BleuScores, MetricsError> {
    Ok(bleu_stats(references, hypotheses, level)?.scores())
}

/// The sufficient statistics behind [`bleu`].
///
/// # Errors
/// As [`bleu`].
pub fn bleu_stats<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
    level: TextLevel,
) -> Result<BleuStats, MetricsError> {
    check_paired("BLEU", references.len(), hypotheses.len())?;
    let mut tokenizer = Tokenizer::new(level);
    let mut counter = NgramCounter::default();
    let mut stats = BleuStats::default();
    let (mut r, mut h) = (Vec::new(), Vec::new());
    for (reference, hypothesis) in references.iter().zip(hypotheses) {
        tokenizer.ids(reference.as_ref(), &mut r);
        tokenizer.ids(hypothesis.as_ref(), &mut h);
        counter.add_pair(&r, &h, &mut stats);
    }
    Ok(stats)
}

/// A small non-cryptographic hasher (the Fx multiply-rotate scheme) for interning words: the
/// keys are trusted metric inputs, and SipHash would dominate the cost of BLEU.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Turns sentences into token ids: interned words, or the characters' code points.
struct Tokenizer<'a> {
    level: TextLevel,
    words: HashMap<&'a str, u32, BuildHasherDefault<WordHasher>>,
}

impl<'a> Tokenizer<'a> {
    fn new(level: TextLevel) -> Self {
        Self {
            level,
            words: HashMap::default(),
        }
    }

    fn ids(&mut self, sentence: &'a str, out: &mut Vec<u32>) {
        out.clear();
        match self.level {
            TextLevel::Word => {
                for word in pystr::split(sentence) {
                    let next = self.words.len() as u32;
                    out.push(*self.words.entry(word).or_insert(next));
                }
            }
            // `' '.join(list(s)).split()`: whitespace characters become empty and disappear.
            TextLevel::Char => out.extend(
                sentence
                    .chars()
                    .filter(|&c| !pystr::is_space(c))
                    .map(u32::from),
            ),
        }
    }
}

/// Counts clipped n-gram matches with sorted, packed n-grams (reused buffers).
#[derive(Default)]
struct NgramCounter {
    hyp: Vec<u128>,
    reference: Vec<u128>,
}

impl NgramCounter {
    fn add_pair(&mut self, r: &[u32], h: &[u32], stats: &mut BleuStats) {
        stats.sys_len += h.len() as u64;
        stats.ref_len += r.len() as u64;
        for n in 1..=MAX_ORDER.min(h.len()) {
            pack_sorted(h, n, &mut self.hyp);
            pack_sorted(r, n, &mut self.reference);
            stats.correct[n - 1] += clipped_matches(&self.hyp, &self.reference);
            stats.total[n - 1] += self.hyp.len() as u64;
        }
    }
}

/// All n-grams of `ids` packed into one integer each (32 bits per token), sorted.
fn pack_sorted(ids: &[u32], n: usize, out: &mut Vec<u128>) {
    out.clear();
    out.extend(
        ids.windows(n)
            .map(|w| w.iter().fold(0u128, |k, &id| (k << 32) | u128::from(id))),
    );
    out.sort_unstable();
}

/// `Σ_g min(count_hyp(g), count_ref(g))` over two sorted multisets.
fn clipped_matches(hyp: &[u128], reference: &[u128]) -> u64 {
    let (mut i, mut j, mut matches) = (0, 0, 0u64);
    while i < hyp.len() && j < reference.len() {
        match hyp[i].cmp(&reference[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                matches += 1;
                i += 1;
                j += 1;
            }
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(r: &[&str], h: &[&str]) -> BleuScores {
        bleu(r, h, TextLevel::Word).unwrap()
    }

    #[test]
    fn identical_is_100_and_empty_is_0() {
        let s = word(&["der wind weht kalt ."], &["der wind weht kalt ."]);
        for v in s.as_array() {
            assert!((v - 100.0).abs() < 1e-9, "{s:?}");
        }
        assert_eq!(word(&["der wind"], &[""]), BleuScores::default());
        assert_eq!(word(&[""], &[""]), BleuScores::default());
        assert_eq!(word(&[], &[]), BleuScores::default());
    }

    #[test]
    fn clipping_brevity_and_zero_orders() {
        // "the the the" vs "the cat": unigram matches clipped to 1 of 3.
        let s = word(&["the cat"], &["the the the"]);
        assert!((s.bleu1 - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.bleu2, 0.0); // no bigram matches: log floored
                                  // Short hypothesis: BP = exp(1 - 4/2).
        let s = word(&["a b c d"], &["a b"]);
        assert!((s.bleu1 - 100.0 * (-1.0f64).exp()).abs() < 1e-9);
        assert!((s.bleu2 - 100.0 * (-1.0f64).exp()).abs() < 1e-9);
        assert_eq!(s.bleu3, 0.0); // no trigram in the hypothesis at all
                                  // Ref empty, hyp not: precision 0, BP 1.
        assert_eq!(word(&[""], &["a"]).bleu1, 0.0);
    }

    #[test]
    fn cumulative_geometric_mean() {
        // p1 = 3/4, p2 = 1/3 (ab matches; bc, cx do not), p3 = 0.
        let s = word(&["a b c d"], &["a b x c"]);
        assert!((s.bleu1 - 75.0).abs() < 1e-9);
        assert!((s.bleu2 - (75.0f64 * 100.0 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!((s.bleu3, s.bleu4), (0.0, 0.0));
    }

    #[test]
    fn char_level_drops_whitespace() {
        let a = bleu(
            &["他 今年\u{3000}四岁。"],
            &["他今年四岁。"],
            TextLevel::Char,
        )
        .unwrap();
        assert!((a.bleu4 - 100.0).abs() < 1e-9);
        let stats = bleu_stats(&["ab c"], &["abc d"], TextLevel::Char).unwrap();
        assert_eq!(
            (
                stats.sys_len,
                stats.ref_len,
                stats.total[0],
                stats.correct[0]
            ),
            (4, 3, 4, 3)
        );
    }

    #[test]
    fn stats_add_up_and_mismatch_is_an_error() {
        let refs = ["a b c", "d e f g"];
        let hyps = ["a b", "d e f x"];
        let mut sum = bleu_stats(&refs[..1], &hyps[..1], TextLevel::Word).unwrap();
        sum += bleu_stats(&refs[1..], &hyps[1..], TextLevel::Word).unwrap();
        assert_eq!(sum, bleu_stats(&refs, &hyps, TextLevel::Word).unwrap());
        assert!(bleu(&["a"], &["a", "b"], TextLevel::Word).is_err());
    }
}
