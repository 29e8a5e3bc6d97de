//! `{model_dir}/metrics.jsonl`: one JSON object per line, appended and flushed as training goes
//! (`train` lines every `log_every_steps`, `validation`, `checkpoint`, `resume`, `interrupt`,
//! `evaluation` events). A resumed run appends a `resume` line naming the step it continues
//! from, so readers can drop the lines a crash made obsolete.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: File,
}

impl RunLog {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(RunLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `{"event": event, "time": <unix seconds>, ...fields}` as one line.
    pub fn write(&mut self, event: &str, fields: Value) -> io::Result<()> {
        let mut line = Map::new();
        line.insert("event".into(), Value::from(event));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        line.insert("time".into(), Value::from((now * 1000.0).round() / 1000.0));
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_parse_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.jsonl");
        {
            let mut log = RunLog::open(&path).expect("open");
            log.write("train", serde_json::json!({"step": 1, "loss": 2.5}))
                .expect("write");
        }
        let mut log = RunLog::open(&path).expect("reopen");
        log.write("resume", serde_json::json!({"from_step": 1}))
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "train");
        assert_eq!(lines[0]["loss"], 2.5);
        assert_eq!(lines[1]["event"], "resume");
        assert_eq!(lines[1]["from_step"], 1);
    }
}
