//! Text tokenizers trained from the training sentences (no pretrained mBART): word level
//! (whitespace split, like the reference's `level: word`), character level (for Chinese) and
//! subword level (BPE over sentencepiece-style `▁` words). Special tokens come first, so ids
//! mirror mBART's layout: `<s>`0 `<pad>`1 `</s>`2 `<unk>`3, then the target-language token.

use serde::{Deserialize, Serialize};
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::metaspace::{Metaspace, PrependScheme};
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::fixed_length::FixedLength;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{AddedToken, Tokenizer};

use super::layout::DecodeStyle;

/// `<s>`, `<pad>`, `</s>`, `<unk>`: the first four ids of every tokenizer slt builds.
pub const BASE_SPECIALS: [&str; 4] = ["<s>", "<pad>", "</s>", "<unk>"];

/// Granularity of a tokenizer trained from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenLevel {
    /// Whitespace-separated words (Phoenix texts are tokenised and lower-cased, " ." included).
    Word,
    /// Single characters, whitespace dropped (CSL-Daily texts have none).
    Char,
    /// BPE pieces of `▁`-prefixed words, at most `vocab_size` entries including specials.
    Subword {
        /// Target vocabulary size.
        vocab_size: usize,
    },
}

impl TokenLevel {
    /// How decoded tokens are joined.
    pub(super) fn decode_style(self) -> DecodeStyle {
        match self {
            TokenLevel::Word => DecodeStyle::Words,
            TokenLevel::Char => DecodeStyle::Chars,
            TokenLevel::Subword { .. } => DecodeStyle::Pieces,
        }
    }
}

/// Trains a tokenizer on `texts`; `specials` get ids `0..specials.len()` in order.
pub(super) fn train(
    texts: &[&str],
    level: TokenLevel,
    specials: &[String],
) -> tokenizers::Result<Tokenizer> {
    let specials: Vec<AddedToken> = specials
        .iter()
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    let unk = BASE_SPECIALS[3].to_owned();
    let metaspace = || Metaspace::new('\u{2581}', PrependScheme::Always, true);
    let (mut tokenizer, mut trainer): (Tokenizer, TrainerWrapper) = match level {
        TokenLevel::Word | TokenLevel::Char => {
            let mut tokenizer = Tokenizer::new(WordLevel::builder().unk_token(unk).build()?);
            if level == TokenLevel::Word {
                tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
            } else {
                tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                    WhitespaceSplit.into(),
                    FixedLength::new(1).into(),
                ])));
                tokenizer.with_decoder(Some(Fuse::new()));
            }
            let trainer = WordLevelTrainer::builder()
                .vocab_size(usize::MAX)
                .min_frequency(0)
                .show_progress(false)
                .special_tokens(specials)
                .build()?;
            (tokenizer, trainer.into())
        }
        TokenLevel::Subword { vocab_size } => {
            let mut tokenizer = Tokenizer::new(BPE::builder().unk_token(unk).build()?);
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                WhitespaceSplit.into(),
                metaspace().into(),
            ])));
            tokenizer.with_decoder(Some(metaspace()));
            let trainer = BpeTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(0)
                .show_progress(false)
                .special_tokens(specials)
                .build();
            (tokenizer, trainer.into())
        }
    };
    tokenizer.train(&mut trainer, texts.iter().copied())?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> Vec<String> {
        BASE_SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(["de_DE".to_owned()])
            .collect()
    }

    fn tokens(tok: &Tokenizer, text: &str) -> Vec<String> {
        tok.encode(text, false)
            .expect("encode")
            .get_tokens()
            .to_vec()
    }

    #[test]
    fn word_level_orders_specials_then_frequency() {
        let texts = ["es regnet .", "es schneit .", "morgen regnet es ."];
        let tok = train(&texts, TokenLevel::Word, &specials()).expect("train");
        let ids: Vec<Option<u32>> = ["<s>", "<pad>", "</s>", "<unk>", "de_DE", "."]
            .iter()
            .map(|t| tok.token_to_id(t))
            .collect();
        // "." and "es" occur 3 times; ties are ordered by the word.
        assert_eq!(ids, [0, 1, 2, 3, 4, 5].map(Some));
        assert_eq!(tok.token_to_id("es"), Some(6));
        assert_eq!(tok.token_to_id("regnet"), Some(7));
        assert_eq!(tok.get_vocab_size(true), 10);
        assert_eq!(tokens(&tok, "es hagelt ."), ["es", "<unk>", "."]);
    }

    #[test]
    fn char_level_splits_every_character() {
        let tok = train(&["你们好！", "好的"], TokenLevel::Char, &specials()).expect("train");
        assert_eq!(tok.get_vocab_size(true), 5 + 5);
        assert_eq!(tokens(&tok, "你好 的吗"), ["你", "好", "的", "<unk>"]);
    }

    #[test]
    fn subword_level_respects_vocab_size_and_is_deterministic() {
        let texts = [
            "regen im norden .",
            "regen im süden .",
            "nordwind und regen .",
        ];
        let level = TokenLevel::Subword { vocab_size: 40 };
        let tok = train(&texts, level, &specials()).expect("train");
        assert!(
            tok.get_vocab_size(true) <= 40,
            "{}",
            tok.get_vocab_size(true)
        );
        assert_eq!(tok.token_to_id("de_DE"), Some(4));
        assert_eq!(tokens(&tok, "regen ."), ["\u{2581}regen", "\u{2581}."]);
        assert_eq!(tokens(&tok, "x")[1], "<unk>");
        let again = train(&texts, level, &specials()).expect("train");
        assert_eq!(
            tok.to_string(false).expect("json"),
            again.to_string(false).expect("json")
        );
    }
}
