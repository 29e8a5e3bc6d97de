//! Pieces shared by the `slt bench` commands that race a Python baseline: the line-protocol
//! server the baseline scripts in `benches/` run as, per-step phase times and their medians.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context, Result};

/// A `benches/*.py --serve`-style script under the Python of `$SLT_PYTHON_ORACLE`, answering one
/// JSON line per command line.
pub struct PythonServer {
    name: String,
    child: Child,
    /// `None` once closed (on drop).
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl PythonServer {
    /// Starts `benches/{script}` (below the crate root) with `args`.
    pub fn spawn(script: &str, args: &[String]) -> Result<Self> {
        let python = std::env::var("SLT_PYTHON_ORACLE")
            .context("--python needs SLT_PYTHON_ORACLE (run through ./setup.sh)")?;
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches")
            .join(script);
        let mut child = Command::new(&python)
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {python} {}", path.display()))?;
        let stdin = child
            .stdin
            .take()
            .context("no stdin pipe to the Python baseline")?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout pipe from the Python baseline")?;
        Ok(PythonServer {
            name: format!("benches/{script}"),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    /// Sends one command line and reads the JSON reply; a reply with `error` becomes an error.
    pub fn request(&mut self, command: &str) -> Result<serde_json::Value> {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("{name}: stdin is closed"))?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("writing to {name} (did it exit? see its stderr above)"))?;
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from {name}"))?;
        if read == 0 {
            bail!("{name} exited during `{command}` (see its stderr above)");
        }
        let reply: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{name} answered `{}`", line.trim()))?;
        if let Some(error) = reply.get("error") {
            bail!("{name} rejected `{command}`: {error}");
        }
        Ok(reply)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        // Closing stdin ends the serve loop; wait so that no zombie is left.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Sets libtorch's intra-op thread count (`--threads`; 0 counts as 1).
pub fn set_threads(threads: usize) -> Result<()> {
    let threads = i32::try_from(threads.max(1)).context("--threads is too large")?;
    tch::set_num_threads(threads);
    Ok(())
}

/// Writes `lines` as JSON lines to `path` (`--json`), if given.
pub fn write_json_lines(path: Option<&Path>, lines: &[serde_json::Value]) -> Result<()> {
    if let Some(path) = path {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A folder under the system's temporary directory (`{prefix}-{pid}`), removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates the folder.
    pub fn create(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wall times of one training step, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub total: f64,
    /// `zero_grad`, forward and loss.
    pub forward: f64,
    pub backward: f64,
    pub optimizer: f64,
}

impl Phases {
    /// The phases of a baseline's `step` reply (`time_s`, `forward_s`, `backward_s`,
    /// `optimizer_s`).
    pub fn from_reply(reply: &serde_json::Value) -> Result<Self> {
        let get = |key: &str| {
            reply[key]
                .as_f64()
                .with_context(|| format!("the Python baseline's step reply has no {key}"))
        };
        Ok(Phases {
            total: get("time_s")?,
            forward: get("forward_s")?,
            backward: get("backward_s")?,
            optimizer: get("optimizer_s")?,
        })
    }
}

/// `times` as `0.123, 0.456` (seconds).
pub fn seconds_list(times: &[f64]) -> String {
    times
        .iter()
        .map(|t| format!("{t:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median (mean of the middle two for an even count; NaN when empty).
pub fn median(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Prints the medians of the total and of each phase as one line (`name`, `label`, then `extra`)
/// and returns the total median with the same figures as JSON.
pub fn summarize(
    name: &str,
    label: &str,
    phases: &[Phases],
    extra: &str,
) -> (f64, serde_json::Value) {
    let m = |f: fn(&Phases) -> f64| median(&phases.iter().map(f).collect::<Vec<_>>());
    let total = m(|p| p.total);
    let totals: Vec<f64> = phases.iter().map(|p| p.total).collect();
    println!(
        "{name:<7} {label:<8} median {total:>8.3} s = fwd {:.3} + bwd {:.3} + adam {:.3}  (steps {}){extra}",
        m(|p| p.forward),
        m(|p| p.backward),
        m(|p| p.optimizer),
        seconds_list(&totals),
    );
    let json = serde_json::json!({
        "median_s": total, "times_s": totals, "forward_median_s": m(|p| p.forward),
        "backward_median_s": m(|p| p.backward), "optimizer_median_s": m(|p| p.optimizer),
    });
    (total, json)
}
