//! Errors of config loading, overriding and validation.
//!
//! Every variant that concerns a config file names the file; every variant that concerns a value
//! names its key path (`training.optimization.betas[1]`, `model.RecognitionNetwork.s3d.use_block`).

use std::fmt;
use std::path::PathBuf;

/// One semantic problem found by validation: the key path it concerns and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationProblem {
    /// Dotted key path, in the file's spelling (e.g. `model.RecognitionNetwork.s3d.freeze_block`).
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ValidationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All validation problems of one config, displayed as `key: message; key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationProblems(pub Vec<ValidationProblem>);

impl fmt::Display for ValidationProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `config` crate could not read or parse the file (missing file, YAML syntax error,
    /// top level not a mapping).
    #[error("{}: cannot read config: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// What the `config` crate reported.
        #[source]
        source: config::ConfigError,
    },

    /// A value read by the `config` crate could not be represented (e.g. a non-finite float
    /// where the tree needs a number).
    #[error("{}: {key}: {message}", file.display())]
    Value {
        /// The config file.
        file: PathBuf,
        /// Key path of the value.
        key: String,
        /// What is wrong.
        message: String,
    },

    /// A `--set key=value` string or an `SLT_…` variable is malformed.
    #[error("invalid override {origin}: {reason}")]
    OverrideSyntax {
        /// Where the override came from, e.g. `--set training.batch_size` or
        /// `SLT_TRAINING__BATCH_SIZE`.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An override could not be applied to the file's tree (e.g. it descends into a scalar).
    #[error("{}: cannot apply {origin}: {key}: {reason}", file.display())]
    OverrideApply {
        /// The config file.
        file: PathBuf,
        /// Where the override came from.
        origin: String,
        /// Key path up to the point where applying failed.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// The tree does not match the schema: unknown key, wrong type, missing required key,
    /// unknown enum value.
    #[error("{}: {key}: {message}{}", file.display(), note_suffix(note))]
    Schema {
        /// The config file.
        file: PathBuf,
        /// Key path of the offending value (for a missing key: the key that is missing).
        key: String,
        /// What serde reported (e.g. ``unknown field `batch_sise`, expected one of …``).
        message: String,
        /// Set when the offending value came from an override, e.g.
        /// `value set by --set training.batch_size=four`.
        note: Option<String>,
    },

    /// The config is well-formed but semantically invalid (task needs a missing section,
    /// out-of-range value, …).
    #[error("{}: {problems}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Every problem found.
        problems: ValidationProblems,
    },

    /// The config could not be written out (e.g. a path that is not valid UTF-8).
    #[error("cannot write config: {reason}")]
    Serialize {
        /// What serde reported.
        reason: String,
    },
}

fn note_suffix(note: &Option<String>) -> String {
    match note {
        Some(note) => format!(" ({note})"),
        None => String::new(),
    }
}

impl ConfigError {
    /// The validation problems, when this is [`ConfigError::Invalid`].
    pub fn problems(&self) -> &[ValidationProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => &problems.0,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem_with_file_and_key() {
        let error = ConfigError::Invalid {
            file: PathBuf::from("x.yaml"),
            problems: ValidationProblems(vec![
                ValidationProblem {
                    key: "training.batch_size".into(),
                    message: "must be > 0".into(),
                },
                ValidationProblem {
                    key: "training.validation.freq".into(),
                    message: "must be > 0".into(),
                },
            ]),
        };
        assert_eq!(
            error.to_string(),
            "x.yaml: training.batch_size: must be > 0; training.validation.freq: must be > 0"
        );
        assert_eq!(error.problems().len(), 2);
    }

    #[test]
    fn schema_error_shows_override_note() {
        let error = ConfigError::Schema {
            file: PathBuf::from("x.yaml"),
            key: "training.batch_size".into(),
            message: "invalid type".into(),
            note: Some("value set by --set training.batch_size=four".into()),
        };
        assert_eq!(
            error.to_string(),
            "x.yaml: training.batch_size: invalid type (value set by --set training.batch_size=four)"
        );
    }
}
