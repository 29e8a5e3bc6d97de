//! The Gloss2Text input tokenizer (the reference's `GlossTokenizer_G2T`, slrt-spec §4.3).
//!
//! A gloss string is split like Python's `str.split()`, every gloss is lower-cased (by default)
//! and looked up in the mBART gloss vocabulary (`gloss2ids.pkl`; unknown glosses become
//! `<unk>`), and `</s>` plus the source-language token (`de_DGS`, `zh_CSL`) are appended. A batch
//! is padded to its longest row with `<pad>`; the attention mask is 1 on the glosses and the two
//! suffix tokens, 0 on padding.
//!
//! ```no_run
//! use slt::data::g2t_gloss::G2TGlossTokenizer;
//! let tok = G2TGlossTokenizer::from_file("data/phoenix-2014t/gloss2ids.pkl".as_ref(), "de_DGS", true)?;
//! let batch = tok.encode_batch(&["JETZT WETTER", "REGEN"]);
//! assert_eq!(batch.row(1).unwrap()[1..], [2, 8, 1]); // regen </s> de_DGS <pad>
//! # Ok::<(), slt::data::g2t_gloss::G2TGlossError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::gloss::{split_python_whitespace, GlossError, GlossVocab};
use crate::config::TranslationGlossTokenizerConfig;

/// Why a G2T gloss tokenizer could not be built.
#[derive(Debug, Error)]
pub enum G2TGlossError {
    /// The vocabulary file could not be read or is malformed.
    #[error(transparent)]
    Vocab(#[from] GlossError),
    /// `GlossTokenizer.gloss2id_file` is not set (the vocabulary is to be built instead).
    #[error(
        "GlossTokenizer.gloss2id_file is not set: build the vocabulary from the training \
         glosses (G2TGlossTokenizer::build)"
    )]
    NoVocabularyFile,
    /// A built vocabulary could not be written.
    #[error("{}: cannot write the gloss vocabulary: {message}", .path.display())]
    Write {
        /// The target file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A token the tokenizer needs is not in the vocabulary.
    #[error("{}: the vocabulary has no '{token}' token ({role})", .path.display())]
    MissingToken {
        /// The vocabulary file.
        path: PathBuf,
        /// The absent token.
        token: String,
        /// What the token is used for.
        role: &'static str,
    },
}

/// Special tokens of a vocabulary built by [`G2TGlossTokenizer::build`], ids 0..4 (mBART's
/// order); the source-language token follows with id 4.
pub const BUILT_SPECIALS: [&str; 4] = ["<s>", "<pad>", "</s>", "<unk>"];

/// A padded G2T input batch, row-major `[batch, max_len]` (the reference's `input_ids` and
/// `attention_mask`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G2TBatch {
    /// Gloss ids + `[</s>, src_lang]`, each row padded with `<pad>`.
    pub input_ids: Vec<i64>,
    /// 1 on the real positions (glosses and the two suffix tokens), 0 on padding.
    pub attention_mask: Vec<i64>,
    /// Real positions per row: number of glosses + 2.
    pub lengths: Vec<i64>,
    /// Row length: the longest row (0 only for an empty batch).
    pub max_len: usize,
}

impl G2TBatch {
    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// Ids of row `i` including padding.
    pub fn row(&self, i: usize) -> Option<&[i64]> {
        self.slice(&self.input_ids, i)
    }

    /// Attention mask of row `i`.
    pub fn mask_row(&self, i: usize) -> Option<&[i64]> {
        self.slice(&self.attention_mask, i)
    }

    fn slice<'a>(&self, data: &'a [i64], i: usize) -> Option<&'a [i64]> {
        if i >= self.batch_size() {
            return None;
        }
        data.get(i * self.max_len..(i + 1) * self.max_len)
    }

    /// `(input_ids, attention_mask)` as `[batch, max_len]` int64 tensors on `device`.
    pub fn to_tensors(&self, device: tch::Device) -> (tch::Tensor, tch::Tensor) {
        let shape = [self.batch_size() as i64, self.max_len as i64];
        let ids = tch::Tensor::from_slice(&self.input_ids).view(shape);
        let mask = tch::Tensor::from_slice(&self.attention_mask).view(shape);
        (ids.to_device(device), mask.to_device(device))
    }
}

/// Gloss strings → mBART encoder input ids for Gloss2Text.
#[derive(Debug, Clone)]
pub struct G2TGlossTokenizer {
    vocab: GlossVocab,
    lower_case: bool,
    src_lang: String,
    pad_id: i64,
    eos_id: i64,
    unk_id: i64,
    lang_id: i64,
}

impl G2TGlossTokenizer {
    /// Wraps a vocabulary. `</s>`, `<pad>`, `<unk>` and `src_lang` must be in it.
    pub fn new(vocab: GlossVocab, src_lang: &str, lower_case: bool) -> Result<Self, G2TGlossError> {
        let required = |token: &str, role| {
            vocab.id(token).ok_or_else(|| G2TGlossError::MissingToken {
                path: vocab.source().to_path_buf(),
                token: token.to_owned(),
                role,
            })
        };
        let eos_id = required("</s>", "end of the gloss sequence")?;
        let pad_id = required("<pad>", "padding")?;
        let unk_id = required("<unk>", "unknown glosses")?;
        let lang_id = required(src_lang, "source language, config src_lang")?;
        Ok(Self {
            vocab,
            lower_case,
            src_lang: src_lang.to_owned(),
            pad_id,
            eos_id,
            unk_id,
            lang_id,
        })
    }

    /// Reads the vocabulary at `path` and wraps it (see [`G2TGlossTokenizer::new`]).
    pub fn from_file(path: &Path, src_lang: &str, lower_case: bool) -> Result<Self, G2TGlossError> {
        Self::new(GlossVocab::read(path)?, src_lang, lower_case)
    }

    /// Builds the tokenizer of `TranslationNetwork.GlossTokenizer` from its `gloss2id_file`
    /// ([`G2TGlossError::NoVocabularyFile`] when the config leaves it out).
    pub fn from_config(cfg: &TranslationGlossTokenizerConfig) -> Result<Self, G2TGlossError> {
        let path = cfg
            .gloss2id_file
            .as_deref()
            .ok_or(G2TGlossError::NoVocabularyFile)?;
        Self::from_file(path, &cfg.src_lang, cfg.lower_case)
    }

    /// Builds a vocabulary from training gloss strings: [`BUILT_SPECIALS`] get ids 0..4,
    /// `src_lang` id 4, then every gloss (lower-cased if `lower_case`) by decreasing frequency,
    /// ties in code-point order. `source` names the vocabulary in messages (e.g. the file it
    /// will be saved to).
    pub fn build(
        glosses: &[&str],
        src_lang: &str,
        lower_case: bool,
        source: impl Into<PathBuf>,
    ) -> Result<Self, G2TGlossError> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for line in glosses {
            for gloss in split_python_whitespace(line) {
                let gloss = if lower_case {
                    gloss.to_lowercase()
                } else {
                    gloss.to_owned()
                };
                *counts.entry(gloss).or_default() += 1;
            }
        }
        let specials: Vec<&str> = BUILT_SPECIALS.iter().copied().chain([src_lang]).collect();
        let mut ranked: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(gloss, _)| !specials.contains(&gloss.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let entries = specials
            .iter()
            .map(|s| s.to_string())
            .chain(ranked.into_iter().map(|(gloss, _)| gloss))
            .enumerate()
            .map(|(id, gloss)| (gloss, id as i64));
        Self::new(
            GlossVocab::from_entries(source, entries)?,
            src_lang,
            lower_case,
        )
    }

    /// Writes the vocabulary as a pickled `{gloss: id}` dict (the reference's `gloss2ids.pkl`
    /// format, readable by [`G2TGlossTokenizer::from_file`]) through a temporary file and a
    /// rename, so readers never see a partial file.
    pub fn save(&self, path: &Path) -> Result<(), G2TGlossError> {
        let write_err = |message: String| G2TGlossError::Write {
            path: path.to_path_buf(),
            message,
        };
        let dict: BTreeMap<&str, i64> = self
            .vocab
            .glosses()
            .iter()
            .enumerate()
            .map(|(id, gloss)| (gloss.as_str(), id as i64))
            .collect();
        let bytes = serde_pickle::to_vec(&dict, serde_pickle::SerOptions::new())
            .map_err(|e| write_err(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| write_err(e.to_string()))?;
        }
        let name = path.file_name().map_or_else(
            || "gloss2ids.pkl".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let tmp = path.with_file_name(format!("{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| write_err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_err(e.to_string())
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &GlossVocab {
        &self.vocab
    }

    /// Number of rows the gloss embedding needs (vocabulary size).
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// Always false for a valid tokenizer (it has at least the four required tokens).
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// Whether glosses are lower-cased before lookup.
    pub fn lower_case(&self) -> bool {
        self.lower_case
    }

    /// The source-language token appended after `</s>`.
    pub fn src_lang(&self) -> &str {
        &self.src_lang
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Id of `</s>`.
    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    /// Id of `<unk>`.
    pub fn unk_id(&self) -> i64 {
        self.unk_id
    }

    /// Id of the source-language token.
    pub fn lang_id(&self) -> i64 {
        self.lang_id
    }

    /// Id of one gloss (lower-cased first if configured); `<unk>` when unknown.
    pub fn gloss_id(&self, gloss: &str) -> i64 {
        let id = if self.lower_case {
            self.vocab.id(&gloss.to_lowercase())
        } else {
            self.vocab.id(gloss)
        };
        id.unwrap_or(self.unk_id)
    }

    /// Ids of one gloss string followed by `</s>` and the language token.
    pub fn encode(&self, glosses: &str) -> Vec<i64> {
        split_python_whitespace(glosses)
            .map(|g| self.gloss_id(g))
            .chain([self.eos_id, self.lang_id])
            .collect()
    }

    /// Encodes a batch, padding every row to the longest with `<pad>`.
    pub fn encode_batch(&self, batch: &[&str]) -> G2TBatch {
        let rows: Vec<Vec<i64>> = batch.iter().map(|g| self.encode(g)).collect();
        let max_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len() * max_len);
        let mut attention_mask = Vec::with_capacity(rows.len() * max_len);
        let mut lengths = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = max_len - row.len();
            lengths.push(row.len() as i64);
            attention_mask.extend(std::iter::repeat_n(1, row.len()));
            attention_mask.extend(std::iter::repeat_n(0, pad));
            input_ids.extend(row);
            input_ids.extend(std::iter::repeat_n(self.pad_id, pad));
        }
        G2TBatch {
            input_ids,
            attention_mask,
            lengths,
            max_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An mBART-style gloss vocabulary (same layout as `gloss2ids.pkl`).
    fn vocab(extra: &[&str]) -> GlossVocab {
        let tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "zh_CN", "de_DE"];
        let entries = tokens
            .iter()
            .chain(extra)
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as i64));
        GlossVocab::from_entries("mem/gloss2ids.pkl", entries).expect("valid vocab")
    }

    fn tokenizer() -> G2TGlossTokenizer {
        let v = vocab(&["zh_CSL", "de_DGS", "regen", "morgen", "mäßig"]);
        G2TGlossTokenizer::new(v, "de_DGS", true).expect("all tokens present")
    }

    #[test]
    fn appends_eos_and_language_and_maps_oov_to_unk() {
        let tok = tokenizer();
        assert_eq!(
            (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.lang_id()),
            (1, 2, 3, 8)
        );
        assert_eq!(tok.encode("REGEN MORGEN"), vec![9, 10, 2, 8]);
        assert_eq!(tok.encode(" MäSSIG\tMÄßIG SCHNEE "), vec![3, 11, 3, 2, 8]);
        assert_eq!(tok.encode(""), vec![2, 8]);
        let exact = G2TGlossTokenizer::new(tok.vocab().clone(), "de_DGS", false).expect("valid");
        assert_eq!(exact.encode("REGEN regen"), vec![3, 9, 2, 8]);
    }

    #[test]
    fn batch_pads_with_pad_and_masks_real_positions() {
        let tok = tokenizer();
        let batch = tok.encode_batch(&["REGEN", "MORGEN REGEN SCHNEE", ""]);
        assert_eq!(batch.max_len, 5);
        assert_eq!(batch.lengths, vec![3, 5, 2]);
        assert_eq!(
            batch.input_ids,
            vec![9, 2, 8, 1, 1, 10, 9, 3, 2, 8, 2, 8, 1, 1, 1]
        );
        assert_eq!(
            batch.attention_mask,
            vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
        );
        assert_eq!(batch.row(2), Some(&[2, 8, 1, 1, 1][..]));
        assert_eq!(batch.mask_row(0), Some(&[1, 1, 1, 0, 0][..]));
        assert_eq!((batch.row(3), batch.mask_row(3)), (None, None));
        let empty = tok.encode_batch(&[]);
        assert_eq!((empty.batch_size(), empty.max_len), (0, 0));
    }

    #[test]
    fn tensors_have_batch_shape() {
        let batch = tokenizer().encode_batch(&["REGEN", "MORGEN REGEN"]);
        let (ids, mask) = batch.to_tensors(tch::Device::Cpu);
        assert_eq!(ids.size(), [2, 4]);
        assert_eq!(mask.size(), [2, 4]);
        assert_eq!(
            Vec::<i64>::try_from(ids.view(-1)).expect("i64"),
            batch.input_ids
        );
        assert_eq!(
            Vec::<i64>::try_from(mask.view(-1)).expect("i64"),
            batch.attention_mask
        );
    }

    #[test]
    fn built_vocabulary_ranks_by_frequency_and_round_trips() {
        let glosses = ["REGEN MORGEN REGEN", "morgen SCHNEE", "<UNK> REGEN"];
        let tok = G2TGlossTokenizer::build(&glosses, "de_DGS", true, "mem/built.pkl")
            .expect("valid vocabulary");
        let order: Vec<&str> = tok.vocab().glosses().iter().map(String::as_str).collect();
        assert_eq!(
            order,
            ["<s>", "<pad>", "</s>", "<unk>", "de_DGS", "regen", "morgen", "schnee"]
        );
        assert_eq!(
            (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.lang_id()),
            (1, 2, 3, 4)
        );
        assert_eq!(tok.encode("REGEN HAGEL"), vec![5, 3, 2, 4]);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/gloss2ids.pkl");
        tok.save(&path).expect("save");
        let back = G2TGlossTokenizer::from_file(&path, "de_DGS", true).expect("read back");
        assert_eq!(back.vocab().glosses(), tok.vocab().glosses());
        let cfg = TranslationGlossTokenizerConfig {
            gloss2id_file: None,
            src_lang: "de_DGS".into(),
            lower_case: true,
        };
        assert!(matches!(
            G2TGlossTokenizer::from_config(&cfg),
            Err(G2TGlossError::NoVocabularyFile)
        ));
    }

    #[test]
    fn missing_tokens_name_file_and_token() {
        let err = G2TGlossTokenizer::new(vocab(&["zh_CSL"]), "de_DGS", true).expect_err("no lang");
        assert_eq!(
            err.to_string(),
            "mem/gloss2ids.pkl: the vocabulary has no 'de_DGS' token \
             (source language, config src_lang)"
        );
        let entries =
            [("<pad>", 0), ("</s>", 1), ("de_DGS", 2)].map(|(t, i)| (t.to_string(), i as i64));
        let v = GlossVocab::from_entries("mem/v.pkl", entries).expect("valid");
        let err = G2TGlossTokenizer::new(v, "de_DGS", true).expect_err("no unk");
        assert!(
            err.to_string()
                .starts_with("mem/v.pkl: the vocabulary has no '<unk>' token"),
            "{err}"
        );
    }
}
