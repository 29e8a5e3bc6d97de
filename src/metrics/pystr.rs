//! The few Python `str`/`re` semantics the reference's metrics depend on.
//!
//! - `str.split()` / `str.strip()` use Python's whitespace set (`str.isspace`): Rust's
//!   `char::is_whitespace` (Unicode `White_Space`) plus the separators U+001C..U+001F.
//! - `re`'s `\w` on `str` patterns is `str.isalnum()` or `_`. It is computed as
//!   `char::is_alphanumeric` (Unicode `Alphabetic` or `Numeric`) or `_`, minus the circled and
//!   squared Latin letters (`Ⓐ`, `🅐`, …: `Alphabetic` symbols that Python does not count). The
//!   one difference left are the ~1,300 combining marks with `Other_Alphabetic` (Indic vowel
//!   signs, U+0345, …), which Rust calls alphabetic and Python does not; std has no general
//!   category table to exclude them, and glosses never contain them.

/// Python's `str.isspace()` for one character.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` (no argument): runs of whitespace separate, no empty tokens.
pub(crate) fn split(s: &str) -> Split<'_> {
    Split { rest: s }
}

/// Iterator of [`split`]; decodes only non-ASCII bytes.
pub(crate) struct Split<'a> {
    rest: &'a str,
}

/// Byte length of the leading character of `s` if it is whitespace, else `None`.
fn leading_space(s: &str) -> Option<usize> {
    let b = *s.as_bytes().first()?;
    if b.is_ascii() {
        (matches!(b, b'\t'..=b'\r' | 0x1c..=b' ')).then_some(1)
    } else {
        s.chars()
            .next()
            .filter(|&c| is_space(c))
            .map(char::len_utf8)
    }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while let Some(w) = leading_space(self.rest) {
            self.rest = &self.rest[w..];
        }
        if self.rest.is_empty() {
            return None;
        }
        let mut end = 0;
        while end < self.rest.len() && leading_space(&self.rest[end..]).is_none() {
            let b = self.rest.as_bytes()[end];
            end += match b {
                0..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }
}

/// Python's `str.strip()` (no argument).
pub(crate) fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python `re`'s `\w` for `str` patterns (see the module docs for the one approximation).
pub(crate) fn is_word(c: char) -> bool {
    // Other_Alphabetic symbols (category So): not alphanumeric for Python.
    const ALPHABETIC_SYMBOLS: [(char, char); 4] = [
        ('\u{24b6}', '\u{24e9}'),
        ('\u{1f130}', '\u{1f149}'),
        ('\u{1f150}', '\u{1f169}'),
        ('\u{1f170}', '\u{1f189}'),
    ];
    c == '_'
        || (c.is_alphanumeric()
            && !ALPHABETIC_SYMBOLS
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&c)))
}

/// Python `re`'s `\b` at byte offset `i` of `s` (a char boundary): exactly one of the characters
/// before and after `i` is a word character (the string's ends count as non-word).
pub(crate) fn is_word_boundary(s: &str, i: usize) -> bool {
    let before = s[..i].chars().next_back().is_some_and(is_word);
    let after = s[i..].chars().next().is_some_and(is_word);
    before != after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_python_whitespace() {
        let s = " a\tb\u{1f}c\u{3000}d\u{a0}e  \n";
        assert_eq!(split(s).collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
        assert_eq!(split("").count(), 0);
        assert_eq!(split(" \u{1c} ").count(), 0);
        // U+200B (zero width space) is not whitespace in Python.
        assert_eq!(split("a\u{200b}b").count(), 1);
        // Same as filtering std's char-wise split, on every kind of character.
        let mixed = "\u{85}ä b\u{2000}\u{1680}ö\u{7f}\u{1b}x\u{2028}\u{1f600} \r\n";
        let expected: Vec<&str> = mixed.split(is_space).filter(|t| !t.is_empty()).collect();
        assert_eq!(split(mixed).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn strip_and_word_boundaries() {
        assert_eq!(strip("\u{1d} A B \u{2028}"), "A B");
        assert!(is_word('Ä') && is_word('_') && is_word('7') && is_word('²'));
        assert!(!is_word('-') && !is_word(' ') && !is_word('+') && !is_word('Ⓐ'));
        let s = "ÜB-X";
        assert!(is_word_boundary(s, 0));
        assert!(!is_word_boundary(s, 2)); // inside "ÜB"
        assert!(is_word_boundary(s, 3)); // before '-'
        assert!(is_word_boundary(s, 4)); // after '-'
        assert!(is_word_boundary(s, s.len()));
        assert!(!is_word_boundary("", 0));
    }
}
