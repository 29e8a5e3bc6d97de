//! The tokenizers of a translation network: read from the files the config names, or — for
//! from-scratch models — built from the training split and kept under the artefacts directory
//! (`{model_dir}/translation`), so that resuming, evaluation and every worker of a run see the
//! same ids.
//!
//! Layout of the artefacts directory:
//! ```text
//! {model_dir}/translation/text_tokenizer/{tokenizer.json, slt_text_tokenizer.json}   trained levels
//! {model_dir}/translation/gloss2ids.pkl                                               no gloss2id_file
//! ```
//! The first build trains / counts and writes them (through a temporary name and a rename, so
//! concurrent workers never read partial files and the first complete one wins); every build
//! then reads them back. A saved artefact whose settings differ from the config is an error; one
//! that differs from what the current training split would give is used (resume must see the
//! old ids) with a warning.

use std::path::{Path, PathBuf};

use super::error::{config_err, Result, TranslationError};
use crate::config::{TextTokenizerLevel, TranslationNetworkConfig};
use crate::data::g2t_gloss::G2TGlossTokenizer;
use crate::data::text_tokenizer::{TextTokenizer, TokenLevel, TokenizerOrigin, SETTINGS_FILE};

/// Folder of `model_dir` that holds the translation artefacts.
pub const ARTIFACTS_SUBDIR: &str = "translation";
/// Folder of the trained text tokenizer inside the artefacts directory.
pub const TEXT_TOKENIZER_DIR: &str = "text_tokenizer";
/// File of the built gloss vocabulary inside the artefacts directory.
pub const GLOSS_VOCAB_FILE: &str = "gloss2ids.pkl";

/// `{model_dir}/translation`.
pub fn artifacts_dir(model_dir: &Path) -> PathBuf {
    model_dir.join(ARTIFACTS_SUBDIR)
}

/// What [`super::TranslationNetwork::build`] may learn vocabularies from.
#[derive(Debug, Clone, Copy)]
pub struct TranslationSetup<'a> {
    /// Training sentences (for a trained text tokenizer); may be empty when the artefacts exist.
    pub train_texts: &'a [&'a str],
    /// Training gloss strings (for a built gloss vocabulary); may be empty likewise.
    pub train_glosses: &'a [&'a str],
    /// `{model_dir}/translation` (see [`artifacts_dir`]): where built vocabularies are saved
    /// and read back.
    pub artifacts_dir: &'a Path,
}

impl<'a> TranslationSetup<'a> {
    /// A setup without training data: vocabularies come from the config's files or from
    /// artefacts saved by an earlier build (evaluation, prediction).
    pub fn saved_only(artifacts_dir: &'a Path) -> Self {
        TranslationSetup {
            train_texts: &[],
            train_glosses: &[],
            artifacts_dir,
        }
    }
}

/// The trained level of the config, `None` for `sentencepiece`.
pub fn token_level(cfg: &TranslationNetworkConfig) -> Result<Option<TokenLevel>> {
    let text = &cfg.text_tokenizer;
    Ok(match text.level {
        TextTokenizerLevel::Sentencepiece => None,
        TextTokenizerLevel::Word => Some(TokenLevel::Word),
        TextTokenizerLevel::Char => Some(TokenLevel::Char),
        TextTokenizerLevel::Bpe => {
            let vocab_size = text
                .vocab_size
                .ok_or_else(|| config_err("TextTokenizer.vocab_size", "required for level bpe"))?;
            Some(TokenLevel::Subword { vocab_size })
        }
    })
}

/// The text tokenizer: pretrained from the config, or trained (see the module docs).
pub fn text_tokenizer(
    cfg: &TranslationNetworkConfig,
    setup: &TranslationSetup<'_>,
) -> Result<TextTokenizer> {
    let Some(level) = token_level(cfg)? else {
        return Ok(TextTokenizer::from_config(&cfg.text_tokenizer)?);
    };
    let tgt_lang = &cfg.text_tokenizer.tgt_lang;
    let dir = setup.artifacts_dir.join(TEXT_TOKENIZER_DIR);
    if !dir.join(SETTINGS_FILE).is_file() {
        if setup.train_texts.is_empty() {
            return Err(TranslationError::Artifact {
                path: dir,
                message: format!(
                    "no saved text tokenizer (level {level:?}) and no training sentences to \
                     train one"
                ),
            });
        }
        let trained = TextTokenizer::train(setup.train_texts, level, tgt_lang)?;
        publish_dir(&dir, |tmp| Ok(trained.save(tmp)?))?;
        tracing::info!(
            "trained a {level:?} text tokenizer on {} sentences ({} entries), saved to {}",
            setup.train_texts.len(),
            trained.vocab_size(),
            dir.display()
        );
    }
    let saved = TextTokenizer::load(&dir)?;
    let settings = saved.settings();
    if settings.origin != TokenizerOrigin::Trained(level) || &settings.tgt_lang != tgt_lang {
        return Err(TranslationError::Artifact {
            path: dir,
            message: format!(
                "the saved tokenizer is {:?} for '{}', the config asks for Trained({level:?}) \
                 for '{tgt_lang}'; delete the directory to train a new one",
                settings.origin, settings.tgt_lang
            ),
        });
    }
    if !setup.train_texts.is_empty() {
        let fresh = TextTokenizer::train(setup.train_texts, level, tgt_lang)?;
        if fresh.hf_tokenizer().get_vocab(true) != saved.hf_tokenizer().get_vocab(true) {
            tracing::warn!(
                "{}: the saved text vocabulary differs from one trained on the current training \
                 sentences; using the saved one (delete it to retrain)",
                dir.display()
            );
        }
    }
    Ok(saved)
}

/// The gloss tokenizer: from `gloss2id_file`, or built from the training glosses.
pub fn gloss_tokenizer(
    cfg: &TranslationNetworkConfig,
    setup: &TranslationSetup<'_>,
) -> Result<G2TGlossTokenizer> {
    let gloss_cfg = &cfg.gloss_tokenizer;
    if gloss_cfg.gloss2id_file.is_some() {
        return Ok(G2TGlossTokenizer::from_config(gloss_cfg)?);
    }
    let (src_lang, lower_case) = (&gloss_cfg.src_lang, gloss_cfg.lower_case);
    let path = setup.artifacts_dir.join(GLOSS_VOCAB_FILE);
    let build = || G2TGlossTokenizer::build(setup.train_glosses, src_lang, lower_case, &path);
    if !path.is_file() {
        if setup.train_glosses.is_empty() {
            return Err(TranslationError::Artifact {
                path: path.clone(),
                message: "no saved gloss vocabulary and no training glosses to build one \
                          (or set GlossTokenizer.gloss2id_file)"
                    .into(),
            });
        }
        let built = build()?;
        built.save(&path)?;
        tracing::info!(
            "built a gloss vocabulary of {} entries from {} training samples, saved to {}",
            built.len(),
            setup.train_glosses.len(),
            path.display()
        );
    }
    let saved = G2TGlossTokenizer::from_file(&path, src_lang, lower_case)?;
    if !setup.train_glosses.is_empty() && build()?.vocab().glosses() != saved.vocab().glosses() {
        tracing::warn!(
            "{}: the saved gloss vocabulary differs from one built from the current training \
             glosses; using the saved one (delete it to rebuild)",
            path.display()
        );
    }
    Ok(saved)
}

/// Writes a directory through `{dir}.tmp-{pid}` and a rename. When another writer got there
/// first, its (equivalent) directory is kept and ours is dropped.
fn publish_dir(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| TranslationError::Io {
            action,
            path,
            source,
        }
    };
    let name = dir.file_name().map_or_else(
        || TEXT_TOKENIZER_DIR.into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("removing a stale", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    if let Err(error) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(error);
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.join(SETTINGS_FILE).is_file() => {
            std::fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(TranslationError::Io {
                action: "renaming into place",
                path: dir.to_path_buf(),
                source,
            })
        }
    }
}
