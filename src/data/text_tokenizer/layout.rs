//! Pure sequence logic of the text tokenizer: the mBART target layout (labels, shift-right) and
//! the text post-processing of decoding (joining pieces, HF clean-up, the German period rule).

use serde::{Deserialize, Serialize};

use crate::data::gloss::is_python_whitespace;

/// Padded decoder targets of a batch, row-major `[batch, max_len]` (slrt-spec §4.2).
///
/// Every row is built from `[w…, </s>, lang]` padded with `<pad>` to the longest row:
/// `labels = [w…, </s>, pad…]` (the language token replaced by pad) and
/// `decoder_input_ids = [lang, w…, </s>, (lang), pad…]` (mBART's shift-right: the last non-pad
/// token wraps around to position 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetBatch {
    /// Targets of the loss; pad marks ignored positions.
    pub labels: Vec<i64>,
    /// Teacher-forcing inputs of the decoder.
    pub decoder_input_ids: Vec<i64>,
    /// Non-pad labels per row: number of text tokens + 1 (`</s>`).
    pub lengths: Vec<i64>,
    /// Row length: the longest text + 2 (0 only for an empty batch).
    pub max_len: usize,
}

impl TargetBatch {
    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// Labels of row `i`.
    pub fn labels_row(&self, i: usize) -> Option<&[i64]> {
        self.slice(&self.labels, i)
    }

    /// Decoder inputs of row `i`.
    pub fn decoder_input_row(&self, i: usize) -> Option<&[i64]> {
        self.slice(&self.decoder_input_ids, i)
    }

    fn slice<'a>(&self, data: &'a [i64], i: usize) -> Option<&'a [i64]> {
        if i >= self.batch_size() {
            return None;
        }
        data.get(i * self.max_len..(i + 1) * self.max_len)
    }

    /// `(labels, decoder_input_ids)` as `[batch, max_len]` int64 tensors on `device`.
    pub fn to_tensors(&self, device: tch::Device) -> (tch::Tensor, tch::Tensor) {
        let shape = [self.batch_size() as i64, self.max_len as i64];
        let labels = tch::Tensor::from_slice(&self.labels).view(shape);
        let inputs = tch::Tensor::from_slice(&self.decoder_input_ids).view(shape);
        (labels.to_device(device), inputs.to_device(device))
    }
}

/// Builds the batch from rows that already end with `[</s>, lang]` (model ids).
pub(super) fn target_batch(rows: Vec<Vec<i64>>, pad: i64, lang: i64) -> TargetBatch {
    let max_len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut labels = Vec::with_capacity(rows.len() * max_len);
    let mut decoder_input_ids = Vec::with_capacity(rows.len() * max_len);
    let mut lengths = Vec::with_capacity(rows.len());
    for mut row in rows {
        row.resize(max_len, pad);
        let row_labels: Vec<i64> = row
            .iter()
            .map(|&id| if id == lang { pad } else { id })
            .collect();
        lengths.push(row_labels.iter().filter(|&&id| id != pad).count() as i64);
        labels.extend(row_labels);
        decoder_input_ids.extend(shift_right(&row, pad));
    }
    TargetBatch {
        labels,
        decoder_input_ids,
        lengths,
        max_len,
    }
}

/// mBART's `shift_tokens_right`: the token at index (number of non-pad tokens − 1) goes to
/// position 0 and everything else moves one place right (the last position drops out).
pub(super) fn shift_right(row: &[i64], pad: i64) -> Vec<i64> {
    if row.is_empty() {
        return Vec::new();
    }
    let non_pad = row.iter().filter(|&&id| id != pad).count();
    let start = row[non_pad.saturating_sub(1)];
    std::iter::once(start)
        .chain(row[..row.len() - 1].iter().copied())
        .collect()
}

/// How decoded tokens become a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeStyle {
    /// Sentencepiece pieces: concatenate, `▁` → space, strip (the slow `MBartTokenizer`).
    Pieces,
    /// Words: join with one space.
    Words,
    /// Characters: concatenate.
    Chars,
}

/// Joins the (non-special) tokens of one sequence.
pub(super) fn join_tokens<S: AsRef<str>>(tokens: &[S], style: DecodeStyle) -> String {
    match style {
        DecodeStyle::Pieces => {
            let joined: String = tokens.iter().map(AsRef::as_ref).collect();
            joined
                .replace('\u{2581}', " ")
                .trim_matches(is_python_whitespace)
                .to_owned()
        }
        DecodeStyle::Words => tokens
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(" "),
        DecodeStyle::Chars => tokens.iter().map(AsRef::as_ref).collect(),
    }
}

/// Hugging Face's `clean_up_tokenization` (transformers 4.11, applied by `batch_decode` with
/// the default `clean_up_tokenization_spaces=True`): the same replacements in the same order.
pub fn clean_up_tokenization(text: &str) -> String {
    const RULES: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    RULES
        .iter()
        .fold(text.to_owned(), |s, (from, to)| s.replace(from, to))
}

/// The reference's German fix after decoding: a string longer than 2 characters that ends in
/// `.` not preceded by a space gets ` .` instead (Phoenix texts end with " .").
pub fn german_final_period(text: &str) -> String {
    let mut chars = text.chars().rev();
    let (last, before) = (chars.next(), chars.next());
    if text.chars().count() > 2 && last == Some('.') && before != Some(' ') {
        format!("{} .", &text[..text.len() - 1])
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec_example() {
        // rows: [w…, </s>=2, de_DE=6]; pad 1.
        let rows = vec![vec![10, 11, 12, 2, 6], vec![20, 2, 6], vec![30, 31, 2, 6]];
        let batch = target_batch(rows, 1, 6);
        assert_eq!(batch.max_len, 5);
        assert_eq!(batch.lengths, vec![4, 2, 3]);
        #[rustfmt::skip]
        assert_eq!(batch.labels, vec![
            10, 11, 12, 2, 1,
            20, 2, 1, 1, 1,
            30, 31, 2, 1, 1,
        ]);
        // The longest row loses its trailing language token; shorter rows keep it (the
        // reference's quirk, harmless because the labels there are pad).
        #[rustfmt::skip]
        assert_eq!(batch.decoder_input_ids, vec![
            6, 10, 11, 12, 2,
            6, 20, 2, 6, 1,
            6, 30, 31, 2, 6,
        ]);
        assert_eq!(batch.labels_row(1), Some(&[20, 2, 1, 1, 1][..]));
        assert_eq!(batch.decoder_input_row(2), Some(&[6, 30, 31, 2, 6][..]));
        assert_eq!(batch.labels_row(3), None);
        let empty = target_batch(Vec::new(), 1, 6);
        assert_eq!((empty.batch_size(), empty.max_len), (0, 0));
    }

    #[test]
    fn shift_right_wraps_the_last_non_pad_token() {
        assert_eq!(shift_right(&[5, 7, 9, 1, 1], 1), vec![9, 5, 7, 9, 1]);
        assert_eq!(shift_right(&[5, 7, 9], 1), vec![9, 5, 7]);
        assert_eq!(shift_right(&[4], 1), vec![4]);
        assert_eq!(shift_right(&[], 1), Vec::<i64>::new());
    }

    #[test]
    fn tensors_have_batch_shape() {
        let batch = target_batch(vec![vec![10, 2, 6], vec![2, 6]], 1, 6);
        let (labels, inputs) = batch.to_tensors(tch::Device::Cpu);
        assert_eq!((labels.size(), inputs.size()), (vec![2, 3], vec![2, 3]));
        let flat = |t: tch::Tensor| Vec::<i64>::try_from(t.view(-1)).expect("int64");
        assert_eq!(flat(labels), batch.labels);
        assert_eq!(flat(inputs), batch.decoder_input_ids);
    }

    #[test]
    fn joins_tokens_per_style() {
        let pieces = [
            "\u{2581}regen",
            "\u{2581}im",
            "\u{2581}nord",
            "en",
            "\u{2581}.",
        ];
        assert_eq!(
            join_tokens(&pieces, DecodeStyle::Pieces),
            "regen im norden ."
        );
        assert_eq!(
            join_tokens(&["\u{2581}", "a\u{2581}"], DecodeStyle::Pieces),
            "a"
        );
        assert_eq!(
            join_tokens(&["es", "regnet", "."], DecodeStyle::Words),
            "es regnet ."
        );
        assert_eq!(
            join_tokens(&["你", "们", "好"], DecodeStyle::Chars),
            "你们好"
        );
        assert_eq!(join_tokens::<&str>(&[], DecodeStyle::Words), "");
    }

    #[test]
    fn clean_up_follows_hugging_face() {
        assert_eq!(
            clean_up_tokenization("regen im norden ."),
            "regen im norden."
        );
        assert_eq!(
            clean_up_tokenization("ja , nein ? doch ! it 's i 'm we 've they 're do n't"),
            "ja, nein? doch! it's i'm we've they're don't"
        );
        // Python's str.replace is left to right without overlap; so is Rust's (outputs checked
        // with transformers' clean_up_tokenization).
        assert_eq!(clean_up_tokenization("a  . b ' c"), "a . b'c");
        assert_eq!(clean_up_tokenization("a ' b"), "a'b");
    }

    #[test]
    fn german_period_rule() {
        assert_eq!(german_final_period("regen im norden."), "regen im norden .");
        assert_eq!(german_final_period("regen ."), "regen .");
        assert_eq!(german_final_period("a."), "a.");
        assert_eq!(german_final_period("ab."), "ab .");
        assert_eq!(german_final_period("öä."), "öä .");
        assert_eq!(german_final_period("regen"), "regen");
        assert_eq!(german_final_period(""), "");
    }
}
