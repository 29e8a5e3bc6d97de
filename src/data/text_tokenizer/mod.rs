//! The Gloss2Text / Sign2Text text tokenizer (the reference's `TextTokenizer`, slrt-spec §4.2,
//! §4.6), built on Hugging Face `tokenizers`.
//!
//! Two ways to get one:
//! - **pretrained mBART** ([`TextTokenizer::pretrained`], [`TextTokenizer::from_config`]): the
//!   `tokenizer.json` of an mBART directory plus the reference's prune map (`map_ids.pkl`,
//!   [`PruneMap`]). Targets are tokenised like `as_target_tokenizer()` (pieces + `[</s>,
//!   tgt_lang]`), mapped through the prune map (unknown → `<unk>`, counted and logged), and
//!   decoded like the slow `MBartTokenizer` + HF clean-up + the German final-period rule;
//! - **from scratch** ([`TextTokenizer::train`]): word, character or subword level trained on
//!   the training sentences, ids `<s>`0 `<pad>`1 `</s>`2 `<unk>`3 `tgt_lang`4 …; decoding joins
//!   the tokens back (word level gives the training text back exactly). [`TextTokenizer::save`]
//!   and [`TextTokenizer::load`] keep it in a directory (`tokenizer.json` + [`SETTINGS_FILE`]).
//!
//! Both produce the same [`TargetBatch`] layout (`labels = [w…, </s>, pad…]`,
//! `decoder_input_ids = [lang, w…, </s>, …]`) and decode generated sequences that start with
//! the decoder start token (`lang_id`).
//!
//! ```
//! use slt::data::text_tokenizer::{TextTokenizer, TokenLevel};
//! let train = ["es regnet .", "morgen schneit es ."];
//! let tok = TextTokenizer::train(&train, TokenLevel::Word, "de_DE")?;
//! let batch = tok.encode_targets(&["es schneit ."])?;
//! assert_eq!(batch.decoder_input_row(0).unwrap()[0], tok.lang_id());
//! assert_eq!(tok.decode(&[batch.decoder_input_ids.clone()]), ["es schneit ."]);
//! # Ok::<(), slt::data::text_tokenizer::TextTokenizerError>(())
//! ```

mod layout;
mod prune;
mod scratch;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokenizers::Tokenizer;

pub use layout::{clean_up_tokenization, german_final_period, DecodeStyle, TargetBatch};
pub use prune::PruneMap;
pub use scratch::{TokenLevel, BASE_SPECIALS};

use crate::config::{TextTokenizerConfig, TextTokenizerLevel};

/// Name of the Hugging Face tokenizer file in a tokenizer directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Name of slt's settings file next to it (written by [`TextTokenizer::save`]).
pub const SETTINGS_FILE: &str = "slt_text_tokenizer.json";

/// Why a text tokenizer could not be built, loaded, saved or used.
#[derive(Debug, Error)]
pub enum TextTokenizerError {
    /// A file could not be read or written.
    #[error("{}: cannot read or write: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// `tokenizers` could not parse or write a tokenizer file.
    #[error("{}: {message}", .path.display())]
    TokenizerFile {
        /// The `tokenizer.json`.
        path: PathBuf,
        /// What `tokenizers` reported.
        message: String,
    },
    /// A directory has no `tokenizer.json`.
    #[error(
        "{}: no {TOKENIZER_FILE}; slt needs the fast-tokenizer file (convert once with \
         transformers: MBartTokenizerFast.from_pretrained(dir).save_pretrained(dir))",
        .dir.display()
    )]
    NoTokenizerJson {
        /// The directory.
        dir: PathBuf,
    },
    /// The settings file is missing fields or not JSON.
    #[error("{}: bad settings: {source}", .path.display())]
    Settings {
        /// The settings file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The prune map is malformed or inconsistent with the tokenizer.
    #[error("{}: {detail}", .path.display())]
    PruneMap {
        /// The prune map file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A token the tokenizer needs is not in its vocabulary.
    #[error("{}: the vocabulary has no '{token}' token ({role})", .path.display())]
    MissingToken {
        /// The tokenizer file (or training description).
        path: PathBuf,
        /// The absent token.
        token: String,
        /// What it is used for.
        role: &'static str,
    },
    /// Training was asked for nothing or failed inside `tokenizers`.
    #[error("training a {level:?} tokenizer: {message}")]
    Train {
        /// The requested level.
        level: TokenLevel,
        /// What went wrong.
        message: String,
    },
    /// A trained level was asked for without training sentences.
    #[error(
        "TextTokenizer level {level:?} is learnt from the training sentences; \
         it cannot be read from the config alone"
    )]
    NeedsTraining {
        /// The configured level.
        level: TextTokenizerLevel,
    },
    /// `tokenizers` failed on an input sentence.
    #[error("cannot tokenise {text:?}: {message}")]
    Encode {
        /// The sentence.
        text: String,
        /// What `tokenizers` reported.
        message: String,
    },
}

/// Where the vocabulary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerOrigin {
    /// A pretrained (mBART) tokenizer file.
    Pretrained,
    /// Trained by slt at this level.
    Trained(TokenLevel),
}

/// slt's settings of a tokenizer ([`SETTINGS_FILE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSettings {
    /// Where the vocabulary came from.
    pub origin: TokenizerOrigin,
    /// Target language token (decoder start), e.g. `de_DE`.
    pub tgt_lang: String,
    /// How decoded tokens are joined.
    pub decode_style: DecodeStyle,
    /// Apply HF's `clean_up_tokenization` after joining.
    pub clean_up_tokenization: bool,
    /// Apply the reference's German final-period rule last.
    pub german_final_period: bool,
    /// `(original id, model id)` pairs when the model vocabulary is pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_map: Option<Vec<(u32, i64)>>,
}

/// Sentences ↔ decoder targets and generated ids ↔ sentences.
#[derive(Debug)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    settings: TokenizerSettings,
    prune: Option<PruneMap>,
    /// Names the vocabulary in messages.
    source: PathBuf,
    /// Tokenizer (original) ids of `</s>`, the language token and `<unk>`.
    eos_orig: u32,
    lang_orig: u32,
    unk_orig: u32,
    /// Tokenizer ids skipped when decoding (special added tokens).
    special_orig: HashSet<u32>,
    pad_id: i64,
    eos_id: i64,
    lang_id: i64,
    unk_id: i64,
    vocab_size: usize,
    /// Tokenizer ids that the prune map lacks, seen while encoding.
    unknown_ids: AtomicU64,
}

impl Clone for TextTokenizer {
    fn clone(&self) -> Self {
        Self {
            tokenizer: self.tokenizer.clone(),
            settings: self.settings.clone(),
            prune: self.prune.clone(),
            source: self.source.clone(),
            eos_orig: self.eos_orig,
            lang_orig: self.lang_orig,
            unk_orig: self.unk_orig,
            special_orig: self.special_orig.clone(),
            pad_id: self.pad_id,
            eos_id: self.eos_id,
            lang_id: self.lang_id,
            unk_id: self.unk_id,
            vocab_size: self.vocab_size,
            unknown_ids: AtomicU64::new(self.unknown_ids.load(Ordering::Relaxed)),
        }
    }
}

impl TextTokenizer {
    /// A pretrained mBART tokenizer: `tokenizer` is a `tokenizer.json` or a directory holding
    /// one; `prune_map` the reference's `map_ids.pkl` (or `None` for an unpruned vocabulary).
    /// Decoding applies HF's clean-up, and the German period rule when `tgt_lang` contains "de".
    pub fn pretrained(
        tokenizer: &Path,
        prune_map: Option<&Path>,
        tgt_lang: &str,
    ) -> Result<Self, TextTokenizerError> {
        let file = if tokenizer.is_dir() {
            let file = tokenizer.join(TOKENIZER_FILE);
            if !file.is_file() {
                return Err(TextTokenizerError::NoTokenizerJson {
                    dir: tokenizer.to_path_buf(),
                });
            }
            file
        } else {
            tokenizer.to_path_buf()
        };
        let hf = read_tokenizer(&file)?;
        let prune = prune_map.map(PruneMap::read).transpose()?;
        let settings = TokenizerSettings {
            origin: TokenizerOrigin::Pretrained,
            tgt_lang: tgt_lang.to_owned(),
            decode_style: DecodeStyle::Pieces,
            clean_up_tokenization: true,
            german_final_period: tgt_lang.contains("de"),
            prune_map: None,
        };
        Self::assemble(hf, settings, prune, file)
    }

    /// The tokenizer of `TranslationNetwork.TextTokenizer` (pretrained mBART + prune map).
    /// Trained levels (`word`, `char`, `bpe`) are an error here: they need the training
    /// sentences ([`TextTokenizer::train`]).
    pub fn from_config(cfg: &TextTokenizerConfig) -> Result<Self, TextTokenizerError> {
        match cfg.level {
            TextTokenizerLevel::Sentencepiece => Self::pretrained(
                &cfg.pretrained_model_name_or_path,
                cfg.prune_map_file(),
                &cfg.tgt_lang,
            ),
            level => Err(TextTokenizerError::NeedsTraining { level }),
        }
    }

    /// Trains a tokenizer on `texts` (the training sentences). Ids: `<s>`0 `<pad>`1 `</s>`2
    /// `<unk>`3 `tgt_lang`4, then the learnt tokens.
    pub fn train(
        texts: &[&str],
        level: TokenLevel,
        tgt_lang: &str,
    ) -> Result<Self, TextTokenizerError> {
        let train_error = |message: String| TextTokenizerError::Train { level, message };
        if texts.is_empty() {
            return Err(train_error("no training sentences".into()));
        }
        if BASE_SPECIALS.contains(&tgt_lang) {
            return Err(train_error(format!(
                "the language token '{tgt_lang}' collides with a base special token"
            )));
        }
        let specials: Vec<String> = BASE_SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain([tgt_lang.to_owned()])
            .collect();
        let hf = scratch::train(texts, level, &specials).map_err(|e| train_error(e.to_string()))?;
        let settings = TokenizerSettings {
            origin: TokenizerOrigin::Trained(level),
            tgt_lang: tgt_lang.to_owned(),
            decode_style: level.decode_style(),
            clean_up_tokenization: false,
            german_final_period: false,
            prune_map: None,
        };
        let source = PathBuf::from(format!("<{} training sentences>", texts.len()));
        Self::assemble(hf, settings, None, source)
    }

    /// Writes `tokenizer.json` and [`SETTINGS_FILE`] into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), TextTokenizerError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TextTokenizerError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let file = dir.join(TOKENIZER_FILE);
        self.tokenizer
            .save(&file, true)
            .map_err(|e| TextTokenizerError::TokenizerFile {
                path: file.clone(),
                message: e.to_string(),
            })?;
        let mut settings = self.settings.clone();
        settings.prune_map = self.prune.as_ref().map(PruneMap::pairs);
        let path = dir.join(SETTINGS_FILE);
        let json = serde_json::to_string_pretty(&settings).map_err(|source| {
            TextTokenizerError::Settings {
                path: path.clone(),
                source,
            }
        })?;
        std::fs::write(&path, json + "\n").map_err(io_err(&path))
    }

    /// Reads a directory written by [`TextTokenizer::save`].
    pub fn load(dir: &Path) -> Result<Self, TextTokenizerError> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| TextTokenizerError::Io {
            path: path.clone(),
            source,
        })?;
        let mut settings: TokenizerSettings =
            serde_json::from_str(&text).map_err(|source| TextTokenizerError::Settings {
                path: path.clone(),
                source,
            })?;
        let prune = settings
            .prune_map
            .take()
            .map(|pairs| {
                let pairs = pairs.into_iter().map(|(o, n)| (i64::from(o), n));
                PruneMap::from_pairs(&path, pairs)
            })
            .transpose()?;
        let file = dir.join(TOKENIZER_FILE);
        Self::assemble(read_tokenizer(&file)?, settings, prune, file)
    }

    /// Looks up the special tokens and checks the prune map against the vocabulary.
    fn assemble(
        tokenizer: Tokenizer,
        settings: TokenizerSettings,
        prune: Option<PruneMap>,
        source: PathBuf,
    ) -> Result<Self, TextTokenizerError> {
        let lookup = |token: &str, role| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| TextTokenizerError::MissingToken {
                    path: source.clone(),
                    token: token.to_owned(),
                    role,
                })
        };
        let [bos, pad, eos, unk] = BASE_SPECIALS;
        let bos_orig = lookup(bos, "start of sequence")?;
        let pad_orig = lookup(pad, "padding")?;
        let eos_orig = lookup(eos, "end of sequence")?;
        let unk_orig = lookup(unk, "unknown pieces")?;
        let lang_orig = lookup(&settings.tgt_lang, "target language, decoder start")?;
        let to_model = |orig: u32| -> Result<i64, TextTokenizerError> {
            let Some(map) = &prune else {
                return Ok(i64::from(orig));
            };
            map.prune(orig).ok_or_else(|| TextTokenizerError::PruneMap {
                path: map.source().to_path_buf(),
                detail: format!("has no entry for token id {orig}"),
            })
        };
        if let Some(map) = &prune {
            // The reference asserts that these keep their ids.
            for (token, orig) in [
                (bos, bos_orig),
                (pad, pad_orig),
                (eos, eos_orig),
                (unk, unk_orig),
            ] {
                let new = to_model(orig)?;
                if new != i64::from(orig) {
                    return Err(TextTokenizerError::PruneMap {
                        path: map.source().to_path_buf(),
                        detail: format!("'{token}' ({orig}) must keep its id, but maps to {new}"),
                    });
                }
            }
        }
        let mut special_orig: HashSet<u32> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        special_orig.extend([bos_orig, pad_orig, eos_orig, unk_orig, lang_orig]);
        let vocab_size = prune.as_ref().map_or_else(
            || tokenizer.get_vocab_size(true),
            PruneMap::pruned_vocab_size,
        );
        Ok(Self {
            pad_id: to_model(pad_orig)?,
            eos_id: to_model(eos_orig)?,
            lang_id: to_model(lang_orig)?,
            unk_id: to_model(unk_orig)?,
            tokenizer,
            settings,
            prune,
            source,
            eos_orig,
            lang_orig,
            unk_orig,
            special_orig,
            vocab_size,
            unknown_ids: AtomicU64::new(0),
        })
    }

    /// Id of `<pad>` (also the ignore index of the loss).
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Id of `</s>`.
    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    /// Id of the target-language token: the decoder start (`sos_index` of the reference).
    pub fn lang_id(&self) -> i64 {
        self.lang_id
    }

    /// Id of `<unk>`.
    pub fn unk_id(&self) -> i64 {
        self.unk_id
    }

    /// Rows of the model's embedding / output layer (pruned size when pruned).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The settings (origin, language, decoding rules).
    pub fn settings(&self) -> &TokenizerSettings {
        &self.settings
    }

    /// The prune map, if the vocabulary is pruned.
    pub fn prune_map(&self) -> Option<&PruneMap> {
        self.prune.as_ref()
    }

    /// The underlying Hugging Face tokenizer (original ids).
    pub fn hf_tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// How many tokens so far had no prune-map entry and became `<unk>`.
    pub fn unknown_pruned_count(&self) -> u64 {
        self.unknown_ids.load(Ordering::Relaxed)
    }

    /// Model id of a tokenizer id (through the prune map; unknown → `<unk>`, counted).
    fn to_model_id(&self, orig: u32) -> i64 {
        let Some(map) = &self.prune else {
            return i64::from(orig);
        };
        map.prune(orig).unwrap_or_else(|| {
            let n = self.unknown_ids.fetch_add(1, Ordering::Relaxed) + 1;
            let token = self.tokenizer.id_to_token(orig).unwrap_or_default();
            tracing::warn!(
                "token {orig} ({token:?}) is not in the prune map {}; using <unk> ({n} so far)",
                map.source().display()
            );
            self.unk_id
        })
    }

    /// Tokenizer id of a model id (unknown → `<unk>`; ids beyond the vocabulary have no token
    /// and are skipped by [`TextTokenizer::decode_ids`] like `<unk>`).
    fn to_original_id(&self, id: i64) -> u32 {
        match &self.prune {
            Some(map) => map.original(id),
            None => u32::try_from(id).ok(),
        }
        .unwrap_or(self.unk_orig)
    }

    /// Model ids of one sentence followed by `</s>` and the language token.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TextTokenizerError> {
        let encoding =
            self.tokenizer
                .encode(text, false)
                .map_err(|e| TextTokenizerError::Encode {
                    text: text.to_owned(),
                    message: e.to_string(),
                })?;
        Ok(encoding
            .get_ids()
            .iter()
            .chain(&[self.eos_orig, self.lang_orig])
            .map(|&id| self.to_model_id(id))
            .collect())
    }

    /// Decoder targets of a batch of sentences, padded to the longest (`padding='longest'`).
    pub fn encode_targets(&self, texts: &[&str]) -> Result<TargetBatch, TextTokenizerError> {
        let rows = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(layout::target_batch(rows, self.pad_id, self.lang_id))
    }

    /// Sentences of generated sequences (each starting with the decoder start token, which is
    /// dropped); special tokens are skipped, then the decoding rules of the settings apply.
    pub fn decode(&self, sequences: &[Vec<i64>]) -> Vec<String> {
        sequences
            .iter()
            .map(|s| self.decode_ids(s.get(1..).unwrap_or_default()))
            .collect()
    }

    /// The sentence of `ids` as they are (no first token dropped).
    pub fn decode_ids(&self, ids: &[i64]) -> String {
        let tokens: Vec<String> = ids
            .iter()
            .map(|&id| self.to_original_id(id))
            .filter(|orig| !self.special_orig.contains(orig))
            .filter_map(|orig| self.tokenizer.id_to_token(orig))
            .collect();
        let mut text = layout::join_tokens(&tokens, self.settings.decode_style);
        if self.settings.clean_up_tokenization {
            text = clean_up_tokenization(&text);
        }
        if self.settings.german_final_period {
            text = german_final_period(&text);
        }
        text
    }
}

/// Reads a `tokenizer.json`.
fn read_tokenizer(file: &Path) -> Result<Tokenizer, TextTokenizerError> {
    if !file.is_file() {
        return Err(TextTokenizerError::Io {
            path: file.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        });
    }
    Tokenizer::from_file(file).map_err(|e| TextTokenizerError::TokenizerFile {
        path: file.to_path_buf(),
        message: format!("not a readable tokenizer file: {e}"),
    })
}

#[cfg(test)]
mod tests;
