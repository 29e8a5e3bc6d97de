//! Reading: the `config` crate parses the YAML file into its value tree, which is turned into a
//! JSON tree (keys keep their case), overrides are applied to that tree, and the result is
//! deserialised with `serde_path_to_error` so errors name the full key path.
//!
//! The `config` crate's own deserializer is not used for the typed structs because it coerces
//! types (a string `"4"` or a float `4.7` would be accepted as an integer); the JSON tree gives
//! serde's strict, standard messages (``invalid type: string "four", expected usize``).

use std::path::Path;

use config::{FileFormat, Source};
use serde_json::{Map, Value};

use super::error::ConfigError;
use super::overrides::Override;
use super::schema::SltConfig;

/// Where the YAML text comes from.
pub(crate) enum YamlSource<'a> {
    /// A file on disk.
    File(&'a Path),
    /// Text held in memory.
    Text(&'a str),
}

/// Reads the document with the `config` crate and converts it to a JSON tree.
pub(crate) fn read_tree(source: YamlSource<'_>, file: &Path) -> Result<Value, ConfigError> {
    let collected = match source {
        YamlSource::File(path) => config::File::from(path)
            .format(FileFormat::Yaml)
            .required(true)
            .collect(),
        YamlSource::Text(text) => config::File::from_str(text, FileFormat::Yaml).collect(),
    };
    let table = collected.map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let mut root = Map::new();
    for (key, value) in table {
        let converted = value
            .try_deserialize::<Value>()
            .map_err(|error| ConfigError::Value {
                file: file.to_path_buf(),
                key: key.clone(),
                message: error.to_string(),
            })?;
        root.insert(key, converted);
    }
    Ok(Value::Object(root))
}

/// An override as applied: the key path it resolved to and how to describe it.
pub(crate) struct AppliedOverride {
    key: String,
    description: String,
}

/// Applies `overrides` in order (later ones win).
pub(crate) fn apply_overrides(
    tree: &mut Value,
    overrides: &[Override],
    file: &Path,
) -> Result<Vec<AppliedOverride>, ConfigError> {
    overrides
        .iter()
        .map(|item| {
            item.apply(tree)
                .map(|key| AppliedOverride {
                    key,
                    description: item.to_string(),
                })
                .map_err(|(key, reason)| ConfigError::OverrideApply {
                    file: file.to_path_buf(),
                    origin: item.to_string(),
                    key,
                    reason,
                })
        })
        .collect()
}

/// Deserialises the tree; errors name the key path, and the override that set it if any.
pub(crate) fn deserialize_tree(
    tree: Value,
    file: &Path,
    applied: &[AppliedOverride],
) -> Result<SltConfig, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = error.inner().to_string();
        let (key, message) = match missing_field_name(&message) {
            Some(field) if path.is_empty() => (field.to_string(), "missing required key".into()),
            Some(field) => (format!("{path}.{field}"), "missing required key".into()),
            None if path.is_empty() => ("(top level)".to_string(), message),
            None => (path, message),
        };
        let note = applied
            .iter()
            .rev()
            .find(|item| {
                key == item.key
                    || key.starts_with(&format!("{}.", item.key))
                    || key.starts_with(&format!("{}[", item.key))
            })
            .map(|item| format!("value set by {}", item.description));
        ConfigError::Schema {
            file: file.to_path_buf(),
            key,
            message,
            note,
        }
    })
}

/// The field name of serde's ``missing field `name` `` message.
fn missing_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn tree_keeps_key_case_and_types() {
        let text = "model:\n  RecognitionNetwork:\n    s3d: {use_block: 4}\n  pe: True\n  lr: 1.0e-3\n  name: foo\n  empty:\n";
        let tree = read_tree(YamlSource::Text(text), &PathBuf::from("t.yaml")).unwrap();
        assert_eq!(tree["model"]["RecognitionNetwork"]["s3d"]["use_block"], 4);
        assert_eq!(tree["model"]["pe"], true);
        assert_eq!(tree["model"]["lr"], 1.0e-3);
        assert_eq!(tree["model"]["name"], "foo");
        assert_eq!(tree["model"]["empty"], Value::Null);
    }

    #[test]
    fn unreadable_yaml_names_the_file() {
        let error = read_tree(YamlSource::Text("a: [1, 2"), &PathBuf::from("bad.yaml"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("bad.yaml: cannot read config"), "{error}");
        let error = read_tree(
            YamlSource::File(Path::new("/nonexistent/x.yaml")),
            Path::new("/nonexistent/x.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("/nonexistent/x.yaml: cannot read config"),
            "{error}"
        );
    }

    #[test]
    fn missing_field_message_is_parsed() {
        assert_eq!(missing_field_name("missing field `task`"), Some("task"));
        assert_eq!(missing_field_name("invalid type"), None);
    }
}
