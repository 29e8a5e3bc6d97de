//! ROUGE-L as the reference reports it: `utils/metrics.py: rouge` → the vendored
//! `utils/external_metrics/Rouge.py` (`rouge_l_sentence_level`, F score), averaged over
//! sentences.
//!
//! Per sentence: `P = LCS/|hyp|`, `R = LCS/|ref|`, `β = P/(R + 1e-12)`,
//! `F = (1+β²)·R·P / (R + β²·P + 1e-12)`. The corpus score is the arithmetic mean of the
//! sentence scores (numpy's pairwise summation, reproduced bit for bit), times 100. This is
//! *not* the β = 1.2 `mscoco_rouge` of the reference's dead `rouge_deprecated`.
//!
//! Tokens: the reference joins the tokens with `' '` and `Rouge.py` splits again on single
//! spaces (`split(" ")`), which has two visible consequences, both reproduced:
//! - an empty sentence becomes one empty token, so an empty hypothesis scores 0 against a
//!   non-empty reference, but an empty hypothesis against an empty reference scores ≈ 1
//!   (`F = (1+β²)/(1+β²+1e-12)`);
//! - at [`TextLevel::Char`] (tokens are the characters of `list(s)`) a space character turns
//!   into two empty tokens.
use super::{check_paired, pystr, MetricsError, TextLevel};

/// Corpus ROUGE-L F in percent, like the reference's `rouge(references, hypotheses, level)`.
///
/// ```
/// use slt::metrics::{rouge::rouge, TextLevel};
/// let f = rouge(&["a b c d"], &["a c d e f"], TextLevel::Word)?;
/// // LCS 3, P = 3/5, R = 3/4.
/// assert!((f - 65.079_365_079).abs() < 1e-6);
/// # Ok::<(), slt::metrics::MetricsError>(())
/// ```
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the slices differ in length, and
/// [`MetricsError::Undefined`] for an empty corpus (the reference fails to unpack the mean of
/// nothing).
pub fn rouge<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
    level: TextLevel,
) -> Result<f64, MetricsError> {
    check_paired("ROUGE-L", references.len(), hypotheses.len())?;
    if references.is_empty() {
        return Err(MetricsError::Undefined {
            metric: "ROUGE-L",
            reason: "no sentences to average",
        });
    }
    let mut lcs = LcsScratch::default();
    let (mut r, mut h) = (Vec::new(), Vec::new());
    let scores: Vec<f64> = references
        .iter()
        .zip(hypotheses)
        .map(|(reference, hypothesis)| {
            tokens(reference.as_ref(), level, &mut r);
            tokens(hypothesis.as_ref(), level, &mut h);
            f_lcs(lcs.len(&h, &r), r.len(), h.len())
        })
        .collect();
    Ok(pairwise_sum(&scores) / scores.len() as f64 * 100.0)
}

/// Sentence-level ROUGE-L F (in 0..1) of one pair, as `Rouge.py` computes it.
pub fn rouge_l_sentence(reference: &str, hypothesis: &str, level: TextLevel) -> f64 {
    let (mut r, mut h) = (Vec::new(), Vec::new());
    tokens(reference, level, &mut r);
    tokens(hypothesis, level, &mut h);
    f_lcs(LcsScratch::default().len(&h, &r), r.len(), h.len())
}

/// The tokens `Rouge.py` sees: `' '.join(tokens).split(" ")`.
fn tokens<'a>(s: &'a str, level: TextLevel, out: &mut Vec<&'a str>) {
    out.clear();
    match level {
        TextLevel::Word => out.extend(pystr::split(s)),
        TextLevel::Char => {
            for (i, c) in s.char_indices() {
                if c == ' ' {
                    // "x␣ ␣y" splits into "x", "", "", "y".
                    out.extend(["", ""]);
                } else {
                    out.push(&s[i..i + c.len_utf8()]);
                }
            }
        }
    }
    if out.is_empty() {
        out.push("");
    }
}

/// `_f_p_r_lcs(llcs, m, n)[0]` with `m` reference and `n` hypothesis tokens (both ≥ 1 here).
fn f_lcs(lcs: usize, m: usize, n: usize) -> f64 {
    let r = lcs as f64 / m as f64;
    let p = lcs as f64 / n as f64;
    let beta = p / (r + 1e-12);
    // Python's `beta ** 2` calls libm `pow`, which is not always the correctly rounded
    // `beta * beta`; hiding the constant keeps LLVM from folding the call into a product.
    let beta2 = beta.powf(std::hint::black_box(2.0));
    let num = (1.0 + beta2) * r * p;
    let denom = r + beta2 * p;
    num / (denom + 1e-12)
}

/// Length of the longest common subsequence, one DP row at a time (reused buffer).
#[derive(Default)]
struct LcsScratch {
    row: Vec<u32>,
}

impl LcsScratch {
    fn len(&mut self, x: &[&str], y: &[&str]) -> usize {
        self.row.clear();
        self.row.resize(y.len() + 1, 0);
        for xi in x {
            let mut diagonal = 0; // table[i-1][j-1]
            for (j, yj) in y.iter().enumerate() {
                let above = self.row[j + 1]; // table[i-1][j]
                self.row[j + 1] = if xi == yj {
                    diagonal + 1
                } else {
                    above.max(self.row[j])
                };
                diagonal = above;
            }
        }
        self.row[y.len()] as usize
    }
}

/// numpy's `pairwise_sum` for a contiguous float64 array (what `np.mean` sums with).
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        // numpy starts from -0.0 here; it only matters for an all-negative-zero input.
        a.iter().fold(-0.0, |s, &x| s + x)
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (k, rk) in r.iter_mut().enumerate() {
                *rk += a[i + k];
            }
            i += 8;
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            s += x;
        }
        s
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sentences_follow_split_on_space() {
        let word = |r: &str, h: &str| rouge_l_sentence(r, h, TextLevel::Word);
        assert_eq!(word("a b", ""), 0.0);
        assert_eq!(word("", "a b"), 0.0);
        let both_empty = word("", "");
        assert!(both_empty > 0.999_999 && both_empty < 1.0, "{both_empty}");
        assert!((word("a b c", "a b c") - 1.0).abs() < 1e-9);
        assert!((word(" a  b ", "a\tb") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn char_level_tokens() {
        let mut out = Vec::new();
        tokens("a b", TextLevel::Char, &mut out);
        assert_eq!(out, ["a", "", "", "b"]);
        // Same as the literal `' '.join(list(s)).split(' ')`.
        for s in ["", " ", "  ", "a", " a", "a  b ", "他 今\t年"] {
            let joined = s.chars().map(String::from).collect::<Vec<_>>().join(" ");
            let mut expected: Vec<&str> = joined.split(' ').collect();
            if s.is_empty() {
                expected = vec![""];
            }
            tokens(s, TextLevel::Char, &mut out);
            assert_eq!(out, expected, "{s:?}");
        }
    }

    #[test]
    fn lcs_and_f_score() {
        let mut scratch = LcsScratch::default();
        assert_eq!(scratch.len(&["a", "b", "c", "d"], &["a", "c", "d", "e"]), 3);
        assert_eq!(scratch.len(&["a"], &["b"]), 0);
        // P = 3/5, R = 3/4: F = (1+β²)RP/(R+β²P) with β = P/R.
        let (p, r) = (0.6, 0.75);
        let beta2 = (p / r) * (p / r);
        let expected = (1.0 + beta2) * r * p / (r + beta2 * p);
        assert!((f_lcs(3, 4, 5) - expected).abs() < 1e-9);
    }

    #[test]
    fn corpus_mean_and_errors() {
        let f = rouge(&["a b", "c d"], &["a b", "x y"], TextLevel::Word).unwrap();
        assert!((f - 50.0).abs() < 1e-6);
        assert!(rouge::<&str, &str>(&[], &[], TextLevel::Word).is_err());
        assert!(rouge(&["a"], &["a", "b"], TextLevel::Word).is_err());
    }

    #[test]
    fn pairwise_sum_matches_plain_sum_closely() {
        let a: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
        let plain: f64 = a.iter().sum();
        assert!((pairwise_sum(&a) - plain).abs() < 1e-12);
        assert_eq!(pairwise_sum(&[1.0, 2.0]), 3.0);
    }
}
