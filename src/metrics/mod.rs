//! Evaluation metrics exactly as the reference computes them (spec §7).
//!
//! - [`wer`]: word error rate with the reference's Levenshtein costs (del 3, ins 3, sub 4) and
//!   back-trace counting; [`wer::wer_list`] scores a corpus the way `prediction.py` does for
//!   Phoenix-2014T (with [`phoenix_cleanup`]) and CSL-Daily (raw strings).
//! - [`bleu`]: corpus BLEU-1..4 with the semantics of the vendored sacrebleu 1.4.2
//!   `raw_corpus_bleu`.
//! - [`rouge`]: sentence-mean ROUGE-L F (β = P/R) of the vendored `Rouge.py`.
//!
//! The module is a leaf: it depends on nothing else in the crate. Python string semantics the
//! reference relies on (`str.split()`, `str.strip()`, `re`'s `\w`) are reproduced in a private
//! helper module so that every metric splits text the same way the reference does.
//!
//! ```
//! use slt::metrics::{bleu::bleu, rouge::rouge, wer::{wer_list, PhoenixCleanup}, TextLevel};
//! let refs = ["der wind weht ."];
//! let hyps = ["der wind weht ."];
//! assert!((bleu(&refs, &hyps, TextLevel::Word)?.bleu4 - 100.0).abs() < 1e-9);
//! assert!((rouge(&refs, &hyps, TextLevel::Word)? - 100.0).abs() < 1e-6);
//! assert_eq!(wer_list(&["WIND WEHEN"], &["WIND"], PhoenixCleanup::No)?.wer, 50.0);
//! # Ok::<(), slt::metrics::MetricsError>(())
//! ```
pub mod bleu;
pub mod phoenix_cleanup;
mod pystr;
pub mod rouge;
pub mod wer;

/// How sentences are split into tokens for BLEU and ROUGE (the reference's `data.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextLevel {
    /// Whitespace-separated words (Phoenix-2014T).
    #[default]
    Word,
    /// Every character is a token (CSL-Daily).
    Char,
}

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// References and hypotheses are not paired one to one.
    #[error("{metric}: {references} references but {hypotheses} hypotheses; they must be paired one to one")]
    LengthMismatch {
        /// The metric that was asked for.
        metric: &'static str,
        /// Number of reference sentences.
        references: usize,
        /// Number of hypothesis sentences.
        hypotheses: usize,
    },
    /// The metric is undefined for this corpus (the reference divides by zero here).
    #[error("{metric}: undefined for this corpus: {reason}")]
    Undefined {
        /// The metric that was asked for.
        metric: &'static str,
        /// What makes it undefined.
        reason: &'static str,
    },
    /// The Phoenix-2014 clean-up left a token that its own assertion forbids.
    #[error("Phoenix-2014 clean-up: {token} is still present after cleaning {input:?}")]
    CleanupLeftover {
        /// The forbidden token (`__LEFTHAND__`, `__EPENTHESIS__` or `__EMOTION__`).
        token: &'static str,
        /// The string that was being cleaned.
        input: String,
    },
}

/// Checks that references and hypotheses pair up one to one.
fn check_paired(
    metric: &'static str,
    references: usize,
    hypotheses: usize,
) -> Result<(), MetricsError> {
    if references == hypotheses {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            metric,
            references,
            hypotheses,
        })
    }
}
