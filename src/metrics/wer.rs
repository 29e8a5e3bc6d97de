//! Word error rate as the reference computes it (`utils/metrics.py`: `wer_list`, `wer_single`,
//! `edit_distance`, `get_alignment`).
//!
//! Tokens are Python `str.split()` words. The edit distance uses the reference's costs
//! (deletion [`COST_DEL`], insertion [`COST_INS`], substitution [`COST_SUB`]); the error counts
//! are not the minimum number of edits but whatever the reference's back-trace walks through,
//! from the bottom-right corner of the table with the priority correct, substitution,
//! insertion, deletion. Corpus WER is `Σ errors / Σ reference lengths · 100`.
//!
//! Deliberate difference: the reference stores its DP table as `uint8`, so any cell above 255
//! (e.g. two unrelated sequences of ~40+ tokens) wraps around and the back-trace follows wrong
//! values (in a random sample of such pairs, about half got different counts); with a reference
//! or hypothesis of 86+ tokens numpy 2 even raises `OverflowError` while filling the first
//! row/column. Here the table is `u32`, which gives the value the reference intends; wherever
//! the reference's table stays below 256 the two agree exactly.
use super::phoenix_cleanup::clean_phoenix_2014_trans;
use super::{check_paired, pystr, MetricsError};

/// Cost of deleting a reference word.
pub const COST_DEL: u32 = 3;
/// Cost of inserting a hypothesis word.
pub const COST_INS: u32 = 3;
/// Cost of substituting a reference word by a hypothesis word.
pub const COST_SUB: u32 = 4;

/// One step of the alignment between reference and hypothesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EditOp {
    /// `C`: the words agree.
    Correct,
    /// `S`: a reference word replaced by a different hypothesis word.
    Substitution,
    /// `I`: a hypothesis word with no reference counterpart.
    Insertion,
    /// `D`: a reference word missing from the hypothesis.
    Deletion,
}

impl EditOp {
    /// The reference's letter for this step (`C`, `S`, `I` or `D`).
    pub fn as_char(self) -> char {
        match self {
            Self::Correct => 'C',
            Self::Substitution => 'S',
            Self::Insertion => 'I',
            Self::Deletion => 'D',
        }
    }
}

/// Per-sentence result of [`wer_single`] (the reference's `wer_single` dict without the
/// pretty-printed `alignment_out`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SentenceWer {
    /// The alignment from the first to the last word (the reverse of the back-trace order).
    pub alignment: Vec<EditOp>,
    /// Number of `C` steps.
    pub num_cor: usize,
    /// Number of `D` steps.
    pub num_del: usize,
    /// Number of `I` steps.
    pub num_ins: usize,
    /// Number of `S` steps.
    pub num_sub: usize,
    /// `num_del + num_ins + num_sub`.
    pub num_err: usize,
    /// Number of reference words.
    pub num_ref: usize,
}

impl SentenceWer {
    /// This sentence's WER in percent, `None` for an empty reference.
    pub fn wer(&self) -> Option<f64> {
        (self.num_ref > 0).then(|| self.num_err as f64 / self.num_ref as f64 * 100.0)
    }
}

/// Corpus result of [`wer_list`], with the reference's keys.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WerScores {
    /// `error / ref_len · 100`.
    pub wer: f64,
    /// Total deletions.
    pub del: usize,
    /// Total insertions.
    pub ins: usize,
    /// Total substitutions.
    pub sub: usize,
    /// Total number of reference words.
    pub ref_len: usize,
    /// Total errors (`del + ins + sub`).
    pub error: usize,
}

/// Whether gloss strings get the Phoenix-2014T treatment before scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoenixCleanup {
    /// Phoenix-2014T, as prediction.py does it: references are upper-cased, then references and
    /// hypotheses both go through [`clean_phoenix_2014_trans`]. (prediction.py builds the
    /// hypothesis string upper-cased already when the gloss tokenizer is lower-case; that is
    /// the caller's business.)
    Yes,
    /// CSL-Daily: the strings are scored as given.
    No,
}

/// Scores one sentence pair like the reference's `wer_single`.
///
/// ```
/// use slt::metrics::wer::{wer_single, EditOp::*};
/// let w = wer_single("A B", "B A");
/// assert_eq!(w.alignment, [Deletion, Correct, Insertion]);
/// assert_eq!((w.num_err, w.num_ref), (2, 2));
/// ```
pub fn wer_single(reference: &str, hypothesis: &str) -> SentenceWer {
    let r: Vec<&str> = pystr::split(reference).collect();
    let h: Vec<&str> = pystr::split(hypothesis).collect();
    let table = EditTable::new(&r, &h);
    let alignment = table.back_trace(&r, &h);
    let count = |op: EditOp| alignment.iter().filter(|&&a| a == op).count();
    let (num_cor, num_del, num_ins, num_sub) = (
        count(EditOp::Correct),
        count(EditOp::Deletion),
        count(EditOp::Insertion),
        count(EditOp::Substitution),
    );
    SentenceWer {
        num_cor,
        num_del,
        num_ins,
        num_sub,
        num_err: num_del + num_ins + num_sub,
        num_ref: r.len(),
        alignment,
    }
}

/// Scores a corpus like the reference's `wer_list`, with prediction.py's preprocessing
/// chosen by `cleanup`.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the slices differ in length (the reference would
/// silently drop the surplus), [`MetricsError::Undefined`] when the references hold no word
/// at all (the reference raises `ZeroDivisionError`).
pub fn wer_list<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
    cleanup: PhoenixCleanup,
) -> Result<WerScores, MetricsError> {
    Ok(wer_list_detailed(references, hypotheses, cleanup)?.0)
}

/// [`wer_list`] plus the per-sentence results, in input order.
///
/// # Errors
/// As [`wer_list`].
pub fn wer_list_detailed<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
    cleanup: PhoenixCleanup,
) -> Result<(WerScores, Vec<SentenceWer>), MetricsError> {
    check_paired("WER", references.len(), hypotheses.len())?;
    let sentences: Vec<SentenceWer> = references
        .iter()
        .zip(hypotheses)
        .map(|(r, h)| match cleanup {
            PhoenixCleanup::Yes => wer_single(
                &clean_phoenix_2014_trans(&r.as_ref().to_uppercase()),
                &clean_phoenix_2014_trans(h.as_ref()),
            ),
            PhoenixCleanup::No => wer_single(r.as_ref(), h.as_ref()),
        })
        .collect();
    Ok((corpus_wer(&sentences)?, sentences))
}

/// Sums per-sentence results into the corpus scores (the reference's `wer_list` totals).
///
/// # Errors
/// [`MetricsError::Undefined`] when the references hold no word at all.
pub fn corpus_wer(sentences: &[SentenceWer]) -> Result<WerScores, MetricsError> {
    let mut s = WerScores::default();
    for w in sentences {
        s.del += w.num_del;
        s.ins += w.num_ins;
        s.sub += w.num_sub;
        s.error += w.num_err;
        s.ref_len += w.num_ref;
    }
    if s.ref_len == 0 {
        return Err(MetricsError::Undefined {
            metric: "WER",
            reason: "the references contain no words (division by zero)",
        });
    }
    s.wer = s.error as f64 / s.ref_len as f64 * 100.0;
    Ok(s)
}

/// The reference's `edit_distance` table, `(|r|+1) × (|h|+1)`, row-major, in `u32`.
struct EditTable {
    cols: usize,
    d: Vec<u32>,
}

impl EditTable {
    fn new(r: &[&str], h: &[&str]) -> Self {
        let cols = h.len() + 1;
        let mut d = vec![0u32; (r.len() + 1) * cols];
        for (j, cell) in d[..cols].iter_mut().enumerate() {
            *cell = j as u32 * COST_INS;
        }
        for i in 1..=r.len() {
            let (above, row) = d[(i - 1) * cols..(i + 1) * cols].split_at_mut(cols);
            row[0] = i as u32 * COST_DEL;
            for j in 1..cols {
                row[j] = if r[i - 1] == h[j - 1] {
                    above[j - 1]
                } else {
                    (above[j - 1] + COST_SUB)
                        .min(row[j - 1] + COST_INS)
                        .min(above[j] + COST_DEL)
                };
            }
        }
        Self { cols, d }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.d[i * self.cols + j]
    }

    /// The reference's `get_alignment`: walk back from the corner preferring C, S, I, D, and
    /// return the steps first-to-last. (Its `max_len` guard never fires with exact values.)
    fn back_trace(&self, r: &[&str], h: &[&str]) -> Vec<EditOp> {
        let (mut x, mut y) = (r.len(), h.len());
        let mut ops = Vec::with_capacity(x + y);
        while x > 0 || y > 0 {
            let here = self.at(x, y);
            let diagonal = (x >= 1 && y >= 1).then(|| self.at(x - 1, y - 1));
            if diagonal == Some(here) && r[x - 1] == h[y - 1] {
                ops.push(EditOp::Correct);
                (x, y) = (x - 1, y - 1);
            } else if diagonal.is_some_and(|d| here == d + COST_SUB) {
                ops.push(EditOp::Substitution);
                (x, y) = (x - 1, y - 1);
            } else if y >= 1 && (here == self.at(x, y - 1) + COST_INS || x == 0) {
                // On row 0 the insertion test always holds with exact values; `x == 0` only
                // makes that explicit so the deletion branch below always has a row to go to.
                ops.push(EditOp::Insertion);
                y -= 1;
            } else {
                ops.push(EditOp::Deletion);
                x -= 1;
            }
        }
        ops.reverse();
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::EditOp::*;
    use super::*;

    fn letters(w: &SentenceWer) -> String {
        w.alignment.iter().map(|op| op.as_char()).collect()
    }

    #[test]
    fn edge_cases() {
        let w = wer_single("A B C", "");
        assert_eq!(
            (letters(&w).as_str(), w.num_del, w.num_err, w.num_ref),
            ("DDD", 3, 3, 3)
        );
        let w = wer_single("", "A B");
        assert_eq!((letters(&w).as_str(), w.num_ins, w.num_ref), ("II", 2, 0));
        assert_eq!(w.wer(), None);
        let w = wer_single("", "");
        assert_eq!((w.alignment.len(), w.num_err), (0, 0));
        let w = wer_single(" A  B\tC ", "A B C");
        assert_eq!((letters(&w).as_str(), w.num_cor, w.num_err), ("CCC", 3, 0));
        assert_eq!(w.wer(), Some(0.0));
    }

    #[test]
    fn back_trace_priority() {
        assert_eq!(letters(&wer_single("A B C D", "A X C D")), "CSCC");
        assert_eq!(letters(&wer_single("A B", "B A")), "DCI");
        assert_eq!(letters(&wer_single("A A A", "A")), "DDC");
        // The back-trace takes the substitution at the end first, so the deletion lands before it.
        assert_eq!(letters(&wer_single("A B C", "A X")), "CDS");
    }

    #[test]
    fn long_sequences_do_not_wrap() {
        // 80 unrelated words each side: 80 substitutions cost 320, past the reference's uint8.
        let r: Vec<String> = (0..80).map(|i| format!("R{i}")).collect();
        let h: Vec<String> = (0..80).map(|i| format!("H{i}")).collect();
        let w = wer_single(&r.join(" "), &h.join(" "));
        assert_eq!((w.num_sub, w.num_del, w.num_ins, w.num_err), (80, 0, 0, 80));
        assert!(w.alignment.iter().all(|&op| op == Substitution));
    }

    #[test]
    fn corpus_totals_and_errors() {
        let s = wer_list(&["A B C", "D E"], &["A C", "D E F"], PhoenixCleanup::No).unwrap();
        assert_eq!((s.del, s.ins, s.sub, s.error, s.ref_len), (1, 1, 0, 2, 5));
        assert!((s.wer - 40.0).abs() < 1e-12);
        assert!(matches!(
            wer_list(&["A"], &["A", "B"], PhoenixCleanup::No),
            Err(MetricsError::LengthMismatch {
                references: 1,
                hypotheses: 2,
                ..
            })
        ));
        assert!(matches!(
            wer_list(&[""], &["A"], PhoenixCleanup::No),
            Err(MetricsError::Undefined { .. })
        ));
    }

    #[test]
    fn phoenix_cleanup_is_applied_to_both_sides() {
        // Reference upper-cased and cleaned; hypothesis cleaned only.
        let (s, per) = wer_list_detailed(
            &["regen __ON__ a b"],
            &["REGEN A+B __OFF__"],
            PhoenixCleanup::Yes,
        )
        .unwrap();
        assert_eq!((s.error, s.ref_len), (0, 2));
        assert_eq!(per[0].alignment, [Correct, Correct]);
        let s = wer_list(&["regen"], &["REGEN"], PhoenixCleanup::No).unwrap();
        assert_eq!(s.sub, 1);
    }
}
