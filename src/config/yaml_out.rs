//! A small block-YAML writer for the effective config (written next to checkpoints).
//!
//! Mappings are written in block style, lists and empty mappings in flow style, strings plain
//! when that cannot change their meaning and JSON-quoted otherwise. The output is read back by
//! [`super::SltConfig::load`] to an equal config (tested).

use serde_json::{Map, Value};

/// Writes `root` as a YAML document, top-level keys in `first_keys` order, then the rest.
pub(crate) fn write_document(root: &Map<String, Value>, first_keys: &[&str]) -> String {
    let mut out = String::new();
    for key in first_keys {
        if let Some(value) = root.get(*key) {
            write_entry(key, value, 0, &mut out);
        }
    }
    for (key, value) in root {
        if !first_keys.contains(&key.as_str()) {
            write_entry(key, value, 0, &mut out);
        }
    }
    out
}

fn write_entry(key: &str, value: &Value, indent: usize, out: &mut String) {
    out.push_str(&" ".repeat(indent));
    out.push_str(&scalar_text(key));
    out.push(':');
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            for (child_key, child) in map {
                write_entry(child_key, child, indent + 2, out);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&flow_text(other));
            out.push('\n');
        }
    }
}

fn flow_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number_text(number),
        Value::String(text) => scalar_text(text),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(flow_text).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(key, item)| format!("{}: {}", scalar_text(key), flow_text(item)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// A number as YAML; exponent floats get a `.0` mantissa (`1.0e-8`) so YAML 1.1 readers such
/// as PyYAML also see a float.
fn number_text(number: &serde_json::Number) -> String {
    let text = number.to_string();
    match text.split_once('e') {
        Some((mantissa, exponent)) if !mantissa.contains('.') => {
            format!("{mantissa}.0e{exponent}")
        }
        _ => text,
    }
}

/// A string as a YAML scalar: plain when it is made only of `[A-Za-z0-9_./-]`, starts with a
/// letter, `_` or `/`, and is not a YAML keyword; JSON-quoted otherwise.
fn scalar_text(text: &str) -> String {
    const KEYWORDS: [&str; 9] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n"];
    let plain = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !KEYWORDS.iter().any(|word| word.eq_ignore_ascii_case(text))
        && text.parse::<f64>().is_err();
    if plain {
        text.to_string()
    } else {
        // A JSON string literal is a valid YAML double-quoted scalar.
        Value::String(text.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_mappings_and_flow_lists() {
        let root = json!({
            "model": {"s3d": {"use_block": 4}},
            "task": "S2G",
            "data": {"betas": [0.9, 0.998], "empty": {}, "name": "phoenix-2014t"},
        });
        let Value::Object(root) = root else {
            unreachable!("literal is an object")
        };
        let text = write_document(&root, &["task", "data"]);
        assert_eq!(
            text,
            "task: S2G\ndata:\n  betas: [0.9, 0.998]\n  empty: {}\n  name: phoenix-2014t\n\
             model:\n  s3d:\n    use_block: 4\n"
        );
    }

    #[test]
    fn exponent_floats_keep_a_mantissa_dot() {
        assert_eq!(flow_text(&json!(1e-8)), "1.0e-8");
        assert_eq!(flow_text(&json!(2.5e-20)), "2.5e-20");
        assert_eq!(flow_text(&json!(0.001)), "0.001");
        assert_eq!(flow_text(&json!(40)), "40");
    }

    #[test]
    fn quotes_strings_that_would_change_meaning() {
        assert_eq!(scalar_text("data/x.train"), "data/x.train");
        assert_eq!(scalar_text("true"), "\"true\"");
        assert_eq!(scalar_text("No"), "\"No\"");
        assert_eq!(scalar_text("inf"), "\"inf\"");
        assert_eq!(scalar_text("4"), "\"4\"");
        assert_eq!(scalar_text("0x1F"), "\"0x1F\"");
        assert_eq!(scalar_text("a b"), "\"a b\"");
        assert_eq!(scalar_text("a: b"), "\"a: b\"");
        assert_eq!(scalar_text(""), "\"\"");
        assert_eq!(scalar_text("#x"), "\"#x\"");
    }
}
