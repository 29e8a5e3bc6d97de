//! Overrides of single keys: `--set a.b.c=value` from the command line and
//! `SLT_<SECTION>__<KEY>__…=value` environment variables.
//!
//! Values are parsed by the `config` crate's YAML reader as one YAML scalar or flow value
//! (`4`, `1.0e-3`, `true`, `[0.9, 0.998]`, `{type: embedding}`, `foo`); an empty value is
//! YAML null, which clears an optional key. Path segments are matched against the keys already
//! in the tree exactly first, then case-insensitively (so `RECOGNITIONNETWORK` finds
//! `RecognitionNetwork`); keys that do not exist yet are created as written, except that keys
//! from the environment are created lower-case, or in the schema's spelling for its CamelCase
//! section names ([`CAMEL_CASE_KEYS`]). A numeric segment indexes into a list (`betas.1`).

use std::fmt;

use config::{FileFormat, Source};
use serde_json::{Map, Value};

use super::error::ConfigError;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SLT_";

/// Separator between key segments in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Top-level sections an environment variable must start with to count as an override.
pub const SECTIONS: [&str; 5] = ["task", "data", "training", "testing", "model"];

/// The schema's key names that are not lower-case; a key created from an environment variable
/// takes this spelling when it matches one ignoring case (`SLT_MODEL__VLMAPPER__TYPE` creates
/// `model.VLMapper.type`).
pub const CAMEL_CASE_KEYS: [&str; 6] = [
    "RecognitionNetwork",
    "TranslationNetwork",
    "VLMapper",
    "GlossTokenizer",
    "TextTokenizer",
    "GlossEmbedding",
];

/// Where an override came from (for messages, and for the case of created keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideOrigin {
    /// A `--set key=value` argument.
    CommandLine,
    /// An environment variable, by name.
    Environment(String),
}

/// One key override: a path into the config tree and the value to put there.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Key path segments as written (e.g. `["training", "batch_size"]`).
    pub path: Vec<String>,
    /// The value, parsed as YAML.
    pub value: Value,
    /// The value as written.
    pub raw_value: String,
    /// Where it came from.
    pub origin: OverrideOrigin,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            OverrideOrigin::CommandLine => {
                write!(f, "--set {}={}", self.path.join("."), self.raw_value)
            }
            OverrideOrigin::Environment(name) => write!(f, "{name}={}", self.raw_value),
        }
    }
}

impl Override {
    /// Parses a `--set` argument `a.b.c=value`. The key is split on `.`; everything after the
    /// first `=` is the value.
    pub fn parse(text: &str) -> Result<Override, ConfigError> {
        let syntax_error = |reason: String| ConfigError::OverrideSyntax {
            origin: format!("--set {text}"),
            reason,
        };
        let (key, raw_value) = text
            .split_once('=')
            .ok_or_else(|| syntax_error("expected `key.path=value`".to_string()))?;
        let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(syntax_error(format!(
                "key path `{key}` has an empty segment"
            )));
        }
        let value = parse_yaml_value(raw_value).map_err(syntax_error)?;
        Ok(Override {
            path,
            value,
            raw_value: raw_value.to_string(),
            origin: OverrideOrigin::CommandLine,
        })
    }

    /// Interprets one environment variable. Returns `Ok(None)` for variables that are not config
    /// overrides: names without the `SLT_` prefix, and names whose first segment is not a section
    /// (`SLT_VENV`, `SLT_FIXTURES`, …). `SLT_TASK` stands alone; the other sections need at least
    /// one key below them (`SLT_TRAINING__BATCH_SIZE`), so e.g. `SLT_DATA` is ignored.
    pub fn from_env_var(name: &str, raw_value: &str) -> Result<Option<Override>, ConfigError> {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            return Ok(None);
        };
        let segments: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
        let Some(section) = SECTIONS
            .iter()
            .find(|section| section.eq_ignore_ascii_case(segments[0]))
        else {
            return Ok(None);
        };
        let is_task = *section == "task";
        if is_task != (segments.len() == 1) {
            return Ok(None);
        }
        let syntax_error = |reason: String| ConfigError::OverrideSyntax {
            origin: name.to_string(),
            reason,
        };
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(syntax_error(format!(
                "empty key segment (segments are separated by `{ENV_SEPARATOR}`)"
            )));
        }
        let value = parse_yaml_value(raw_value).map_err(syntax_error)?;
        let path = std::iter::once(section.to_string())
            .chain(segments[1..].iter().map(|segment| segment.to_string()))
            .collect();
        Ok(Some(Override {
            path,
            value,
            raw_value: raw_value.to_string(),
            origin: OverrideOrigin::Environment(name.to_string()),
        }))
    }

    /// All config overrides among `vars` (e.g. `std::env::vars()`), sorted by variable name so
    /// the result does not depend on the environment's order.
    pub fn from_env<I, K, V>(vars: I) -> Result<Vec<Override>, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut overrides = Vec::new();
        for (name, value) in vars {
            if let Some(found) = Override::from_env_var(name.as_ref(), value.as_ref())? {
                overrides.push(found);
            }
        }
        overrides.sort_by(|a, b| a.origin_name().cmp(b.origin_name()));
        Ok(overrides)
    }

    /// Parses every `--set` argument.
    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Override>, ConfigError> {
        texts
            .iter()
            .map(|text| Override::parse(text.as_ref()))
            .collect()
    }

    fn origin_name(&self) -> &str {
        match &self.origin {
            OverrideOrigin::CommandLine => "",
            OverrideOrigin::Environment(name) => name,
        }
    }

    /// Applies the override to `root` (the whole config as a JSON tree). Returns the key path as
    /// resolved against the tree (in the file's spelling, e.g. `model.RecognitionNetwork.s3d`).
    pub(crate) fn apply(&self, root: &mut Value) -> Result<String, (String, String)> {
        let lowercase_new_keys = matches!(self.origin, OverrideOrigin::Environment(_));
        let mut resolved = String::new();
        let mut node = root;
        for (index, segment) in self.path.iter().enumerate() {
            let is_last = index + 1 == self.path.len();
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            node = match node {
                Value::Object(map) => {
                    let key = resolve_key(map, segment, lowercase_new_keys)
                        .map_err(|reason| (join_key(&resolved, segment), reason))?;
                    push_key(&mut resolved, &key);
                    if is_last {
                        map.insert(key, self.value.clone());
                        return Ok(resolved);
                    }
                    map.entry(key).or_insert(Value::Null)
                }
                Value::Array(items) => {
                    let length = items.len();
                    let item = segment
                        .parse::<usize>()
                        .ok()
                        .and_then(|position| items.get_mut(position).map(|item| (position, item)));
                    let Some((position, item)) = item else {
                        return Err((
                            resolved,
                            format!("is a list of {length}; `{segment}` is not an index into it"),
                        ));
                    };
                    resolved.push_str(&format!("[{position}]"));
                    if is_last {
                        *item = self.value.clone();
                        return Ok(resolved);
                    }
                    item
                }
                scalar => {
                    return Err((
                        resolved,
                        format!(
                            "is a {}, not a mapping with key `{segment}`",
                            kind_name(scalar)
                        ),
                    ))
                }
            };
        }
        // `path` is never empty: `parse` and `from_env_var` always produce a segment.
        Err((resolved, "empty key path".to_string()))
    }
}

fn push_key(resolved: &mut String, key: &str) {
    if !resolved.is_empty() {
        resolved.push('.');
    }
    resolved.push_str(key);
}

fn join_key(resolved: &str, key: &str) -> String {
    let mut joined = resolved.to_string();
    push_key(&mut joined, key);
    joined
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

/// Finds the existing key `segment` refers to: exact match, else the one key equal ignoring
/// ASCII case. A key that does not exist is created as written (lower-cased if asked).
fn resolve_key(
    map: &Map<String, Value>,
    segment: &str,
    lowercase_new_keys: bool,
) -> Result<String, String> {
    if map.contains_key(segment) {
        return Ok(segment.to_string());
    }
    let mut matches = map.keys().filter(|key| key.eq_ignore_ascii_case(segment));
    match (matches.next(), matches.next()) {
        (Some(key), None) => Ok(key.clone()),
        (Some(first), Some(second)) => Err(format!(
            "ambiguous: matches both `{first}` and `{second}` ignoring case"
        )),
        (None, _) if lowercase_new_keys => Ok(CAMEL_CASE_KEYS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(segment))
            .map_or_else(|| segment.to_lowercase(), |known| known.to_string())),
        (None, _) => Ok(segment.to_string()),
    }
}

/// Parses one override value with the `config` crate's YAML reader.
fn parse_yaml_value(raw: &str) -> Result<Value, String> {
    if raw.contains(['\n', '\r']) {
        return Err("the value must be on one line".to_string());
    }
    const KEY: &str = "value";
    let document = format!("{KEY}: {raw}");
    let mut parsed = config::File::from_str(&document, FileFormat::Yaml)
        .collect()
        .map_err(|error| format!("`{raw}` is not a YAML value: {error}"))?;
    if parsed.len() != 1 {
        return Err(format!("`{raw}` is not a single YAML value"));
    }
    let value = parsed
        .remove(KEY)
        .ok_or_else(|| format!("`{raw}` is not a single YAML value"))?;
    value
        .try_deserialize::<Value>()
        .map_err(|error| format!("`{raw}` cannot be represented: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_yaml_scalars_and_flow_values() {
        assert_eq!(Override::parse("a.b=4").unwrap().value, json!(4));
        assert_eq!(Override::parse("a=1.0e-3").unwrap().value, json!(1.0e-3));
        assert_eq!(Override::parse("a=true").unwrap().value, json!(true));
        assert_eq!(
            Override::parse("a=[0.9, 0.998]").unwrap().value,
            json!([0.9, 0.998])
        );
        assert_eq!(Override::parse("a=foo").unwrap().value, json!("foo"));
        assert_eq!(Override::parse("a='4'").unwrap().value, json!("4"));
        assert_eq!(Override::parse("a=").unwrap().value, Value::Null);
        assert_eq!(
            Override::parse("a={type: embedding, freeze: false}")
                .unwrap()
                .value,
            json!({"type": "embedding", "freeze": false})
        );
        assert_eq!(Override::parse("a=x=y").unwrap().value, json!("x=y"));
    }

    #[test]
    fn parse_rejects_malformed() {
        for text in ["noequals", ".a=1", "a..b=1", "a=[1, 2", "a=b: c"] {
            let error = Override::parse(text).unwrap_err().to_string();
            assert!(error.contains(&format!("--set {text}")), "{error}");
        }
        assert!(Override::parse("a=1\nb: 2").is_err());
    }

    #[test]
    fn env_vars_outside_sections_are_ignored() {
        for name in [
            "SLT_VENV",
            "SLT_FIXTURES",
            "SLT_PYTHON_ORACLE",
            "SLT_SKIP_BUILD",
            "SLT_DATA",
            "SLT_DATA_DIR",
            "SLT_TASK__X",
            "PATH",
            "slt_training__batch_size",
        ] {
            assert_eq!(Override::from_env_var(name, "1").unwrap(), None, "{name}");
        }
    }

    #[test]
    fn env_vars_in_sections_become_overrides() {
        let found = Override::from_env_var("SLT_MODEL__RECOGNITIONNETWORK__S3D__FREEZE_BLOCK", "2")
            .unwrap()
            .unwrap();
        assert_eq!(
            found.path,
            ["model", "RECOGNITIONNETWORK", "S3D", "FREEZE_BLOCK"]
        );
        assert_eq!(found.value, json!(2));
        let task = Override::from_env_var("SLT_TASK", "S2T").unwrap().unwrap();
        assert_eq!(task.path, ["task"]);
        assert_eq!(task.value, json!("S2T"));
        assert!(Override::from_env_var("SLT_TRAINING____X", "1").is_err());
    }

    #[test]
    fn apply_matches_case_insensitively_and_creates_lowercase() {
        let mut tree = json!({"model": {"RecognitionNetwork": {"s3d": {"freeze_block": 1}}}});
        let found = Override::from_env_var("SLT_MODEL__RECOGNITIONNETWORK__S3D__FREEZE_BLOCK", "2")
            .unwrap()
            .unwrap();
        assert_eq!(
            found.apply(&mut tree).unwrap(),
            "model.RecognitionNetwork.s3d.freeze_block"
        );
        assert_eq!(
            tree["model"]["RecognitionNetwork"]["s3d"]["freeze_block"],
            2
        );
        let created = Override::from_env_var("SLT_MODEL__VLMAPPER__IN_FEATURES", "512")
            .unwrap()
            .unwrap();
        assert_eq!(
            created.apply(&mut tree).unwrap(),
            "model.VLMapper.in_features"
        );
        let created = Override::from_env_var("SLT_DATA__PAD_LENGTH", "64")
            .unwrap()
            .unwrap();
        assert_eq!(created.apply(&mut tree).unwrap(), "data.pad_length");
        let mut fresh = json!({"model": {}});
        let created_cli = Override::parse("model.Foo.Bar=1").unwrap();
        assert_eq!(created_cli.apply(&mut fresh).unwrap(), "model.Foo.Bar");
        let created_env = Override::from_env_var("SLT_MODEL__FOO__BAR", "1")
            .unwrap()
            .unwrap();
        assert_eq!(created_env.apply(&mut fresh).unwrap(), "model.Foo.Bar");
        let mut fresh = json!({"model": {}});
        assert_eq!(created_env.apply(&mut fresh).unwrap(), "model.foo.bar");
    }

    #[test]
    fn apply_indexes_lists_and_rejects_scalars() {
        let mut tree = json!({"training": {"betas": [0.9, 0.998], "batch_size": 1}});
        let set = Override::parse("training.betas.1=0.99").unwrap();
        assert_eq!(set.apply(&mut tree).unwrap(), "training.betas[1]");
        assert_eq!(tree["training"]["betas"], json!([0.9, 0.99]));
        let (key, reason) = Override::parse("training.betas.2=0.5")
            .unwrap()
            .apply(&mut tree)
            .unwrap_err();
        assert_eq!(key, "training.betas");
        assert!(reason.contains("list of 2"), "{reason}");
        let (key, reason) = Override::parse("training.batch_size.x=1")
            .unwrap()
            .apply(&mut tree)
            .unwrap_err();
        assert_eq!(key, "training.batch_size");
        assert!(reason.contains("number"), "{reason}");
    }

    #[test]
    fn apply_reports_ambiguous_case() {
        let mut tree = json!({"data": {"Foo": 1, "FOO": 2}});
        let (key, reason) = Override::parse("data.foo=3")
            .unwrap()
            .apply(&mut tree)
            .unwrap_err();
        assert_eq!(key, "data.foo");
        assert!(reason.contains("ambiguous"), "{reason}");
    }

    #[test]
    fn env_overrides_are_sorted_and_displayed() {
        let found = Override::from_env([
            ("SLT_TRAINING__TOTAL_EPOCH", "3"),
            ("SLT_VENV", "/x"),
            ("SLT_TRAINING__BATCH_SIZE", "4"),
        ])
        .unwrap();
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["SLT_TRAINING__BATCH_SIZE=4", "SLT_TRAINING__TOTAL_EPOCH=3"]
        );
        assert_eq!(
            Override::parse("training.batch_size=4")
                .unwrap()
                .to_string(),
            "--set training.batch_size=4"
        );
    }
}
