//! Worker output: one reader thread per worker stream copies lines to the rank's log file
//! (`{log_dir}/rank{r}.log`, stdout and stderr together), to the console with a `[rank{r}]: `
//! prefix (for the ranks selected by `--ranks-to-console`), and into an in-memory ring buffer of
//! the last [`TAIL_LINES`] lines, so the exit summary can show a failing rank's last words even
//! without `--log-dir`.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How many lines of each rank's output the exit summary shows.
pub const TAIL_LINES: usize = 20;
/// Longest line kept in the ring buffer (longer ones are cut, the log file keeps them whole).
const MAX_TAIL_LINE_CHARS: usize = 1000;
/// A "line" without a newline is emitted once it reaches this size, so that a worker printing
/// an endless progress bar cannot make the launcher buffer without bound.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Which ranks echo their output to the launcher's console (`--ranks-to-console`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RankFilter {
    /// Every rank (the default).
    All,
    /// No rank: output goes only to log files and the ring buffer.
    None,
    /// The listed global ranks.
    Ranks(BTreeSet<u32>),
}

/// Error parsing a `--ranks-to-console` value.
#[derive(Debug, thiserror::Error)]
#[error("invalid rank list {spec:?}: {reason} (expected `all`, `none`, or ranks like `0,2,4-7`)")]
pub struct RankFilterError {
    spec: String,
    reason: String,
}

impl FromStr for RankFilter {
    type Err = RankFilterError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| RankFilterError {
            spec: spec.to_string(),
            reason,
        };
        match spec.trim() {
            "all" => return Ok(Self::All),
            "none" | "" => return Ok(Self::None),
            _ => {}
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|e| err(format!("{:?} is not a rank: {e}", s.trim())))
        };
        let mut ranks = BTreeSet::new();
        for part in spec.split(',') {
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (parse(lo)?, parse(hi)?);
                    if lo > hi {
                        return Err(err(format!("empty range {lo}-{hi}")));
                    }
                    ranks.extend(lo..=hi);
                }
                None => {
                    ranks.insert(parse(part)?);
                }
            }
        }
        Ok(Self::Ranks(ranks))
    }
}

impl fmt::Display for RankFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::None => f.write_str("none"),
            Self::Ranks(r) => {
                let list: Vec<String> = r.iter().map(u32::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

impl RankFilter {
    /// Whether `rank` echoes to the console.
    pub fn contains(&self, rank: u32) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Ranks(r) => r.contains(&rank),
        }
    }

    /// The largest rank named explicitly, for validation against the world size.
    pub fn max_rank(&self) -> Option<u32> {
        match self {
            Self::Ranks(r) => r.last().copied(),
            _ => None,
        }
    }
}

/// Which worker stream a line came from; decides the console stream it is echoed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The worker's stdout (echoed to the launcher's stdout).
    Stdout,
    /// The worker's stderr (echoed to the launcher's stderr).
    Stderr,
}

/// Everything one rank writes, shared by its reader threads across restarts.
pub struct RankLog {
    rank: u32,
    echo: bool,
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<File>,
    tail: VecDeque<String>,
    write_failed: bool,
}

impl RankLog {
    /// Creates the log of `rank`: truncates `{log_dir}/rank{rank}.log` when a directory is given
    /// (the directory must exist), and echoes to the console when `echo` is set.
    pub fn open(rank: u32, log_dir: Option<&Path>, echo: bool) -> io::Result<Arc<Self>> {
        let path = log_dir.map(|d| d.join(format!("rank{rank}.log")));
        let file = match &path {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(Arc::new(Self {
            rank,
            echo,
            path,
            inner: Mutex::new(Inner {
                file,
                tail: VecDeque::with_capacity(TAIL_LINES),
                write_failed: false,
            }),
        }))
    }

    /// The log file, when `--log-dir` was given.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Marks the start of restart `restart_count` in the log file and forgets the ring buffer,
    /// so the exit summary shows the output of the attempt that failed.
    pub fn begin_restart(&self, restart_count: u32) {
        let mut inner = self.lock();
        inner.tail.clear();
        let line = format!(
            "----- slt-launch: restart {restart_count} (TORCHELASTIC_RESTART_COUNT={restart_count}) -----\n"
        );
        inner.write_file(line.as_bytes(), self.rank);
    }

    /// The last (up to [`TAIL_LINES`]) lines of output, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.lock().tail.iter().cloned().collect()
    }

    /// Records one line (with its newline, if it had one).
    pub fn push_line(&self, stream: Stream, line: &[u8]) {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let mut text = String::from_utf8_lossy(body).into_owned();
        if text.chars().count() > MAX_TAIL_LINE_CHARS {
            text = text.chars().take(MAX_TAIL_LINE_CHARS).collect::<String>() + " […]";
        }
        {
            let mut inner = self.lock();
            inner.write_file(line, self.rank);
            if !line.ends_with(b"\n") {
                inner.write_file(b"\n", self.rank);
            }
            if inner.tail.len() == TAIL_LINES {
                inner.tail.pop_front();
            }
            inner.tail.push_back(text);
        }
        if self.echo {
            // Write errors on the console (closed pipe, full disk) must not stop the reader:
            // the worker would then block on a full pipe.
            let prefix = format!("[rank{}]: ", self.rank);
            let _ = match stream {
                Stream::Stdout => echo(io::stdout().lock(), &prefix, body),
                Stream::Stderr => echo(io::stderr().lock(), &prefix, body),
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the buffer inconsistent in a way that
        // matters for logging, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn write_file(&mut self, bytes: &[u8], rank: u32) {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(bytes) {
                if !self.write_failed {
                    self.write_failed = true;
                    say(format_args!("cannot write the log of rank {rank}: {e}"));
                }
            }
        }
    }
}

/// Prints a launcher message, `slt-launch: …`, on stderr. Unlike `eprintln!` it never panics
/// (a closed stderr must not take the supervisor down while workers run).
pub fn say(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "slt-launch: {args}");
}

fn echo(mut out: impl Write, prefix: &str, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(prefix.len() + body.len() + 1);
    buf.extend_from_slice(prefix.as_bytes());
    buf.extend_from_slice(body);
    buf.push(b'\n');
    out.write_all(&buf)?;
    out.flush()
}

/// A reader thread copying one worker stream into a [`RankLog`].
pub struct Reader {
    handle: JoinHandle<()>,
}

impl Reader {
    /// Starts a thread that reads `source` to EOF, one line at a time.
    pub fn spawn(
        source: impl Read + Send + 'static,
        stream: Stream,
        log: Arc<RankLog>,
    ) -> io::Result<Self> {
        let name = format!("slt-launch-rank{}-{stream:?}", log.rank);
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || copy_lines(source, stream, &log))?;
        Ok(Self { handle })
    }

    /// Whether the stream reached EOF (or failed) and all its lines were recorded.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Waits until every reader finished or `timeout` passed; returns whether all finished.
///
/// A reader stays open as long as *any* process holds the pipe, e.g. a grandchild that left
/// the worker's process group, so waiting must be bounded.
pub fn wait_readers<'a>(readers: impl IntoIterator<Item = &'a Reader>, timeout: Duration) -> bool {
    let readers: Vec<&Reader> = readers.into_iter().collect();
    let deadline = Instant::now() + timeout;
    loop {
        if readers.iter().all(|r| r.is_finished()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn copy_lines(mut source: impl Read, stream: Stream, log: &RankLog) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match source.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos + 1;
            log.push_line(stream, &pending[start..end]);
            start = end;
        }
        while pending.len() - start >= MAX_LINE_BYTES {
            log.push_line(stream, &pending[start..start + MAX_LINE_BYTES]);
            start += MAX_LINE_BYTES;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        log.push_line(stream, &pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_filter_parses_lists_and_ranges() {
        assert_eq!("all".parse::<RankFilter>().ok(), Some(RankFilter::All));
        assert_eq!("none".parse::<RankFilter>().ok(), Some(RankFilter::None));
        let f: RankFilter = "0, 2,4-6".parse().expect("valid list");
        assert_eq!(f.to_string(), "0,2,4,5,6");
        assert!(f.contains(5) && !f.contains(1) && !f.contains(7));
        assert_eq!(f.max_rank(), Some(6));
        assert!(RankFilter::All.contains(123));
        assert!(!RankFilter::None.contains(0));
    }

    #[test]
    fn rank_filter_rejects_garbage() {
        for bad in ["x", "1,,2", "3-1", "-1", "1-"] {
            let err = bad.parse::<RankFilter>().expect_err(bad);
            assert!(err.to_string().contains("expected `all`"), "{err}");
        }
    }

    #[test]
    fn ring_buffer_keeps_last_lines_and_file_keeps_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = RankLog::open(3, Some(dir.path()), false).expect("open");
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        copy_lines(text.as_bytes(), Stream::Stdout, &log);
        let tail = log.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.first().map(String::as_str), Some("line 30"));
        assert_eq!(tail.last().map(String::as_str), Some("line 49"));
        let path = log.path().expect("path").to_path_buf();
        assert!(path.ends_with("rank3.log"));
        assert_eq!(std::fs::read_to_string(path).expect("read"), text);
    }

    #[test]
    fn partial_and_overlong_lines_are_bounded() {
        let log = RankLog::open(0, None, false).expect("open");
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"\nlast words without newline");
        copy_lines(&data[..], Stream::Stderr, &log);
        let tail = log.tail();
        assert_eq!(
            tail.len(),
            3,
            "{:?}",
            tail.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(tail[0].ends_with(" […]"));
        assert_eq!(tail[1], "x".repeat(10));
        assert_eq!(tail[2], "last words without newline");
    }

    #[test]
    fn restart_marker_clears_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = RankLog::open(1, Some(dir.path()), false).expect("open");
        log.push_line(Stream::Stdout, b"attempt 0\n");
        log.begin_restart(1);
        log.push_line(Stream::Stdout, b"attempt 1\n");
        assert_eq!(log.tail(), vec!["attempt 1".to_string()]);
        let text = std::fs::read_to_string(dir.path().join("rank1.log")).expect("read");
        assert!(
            text.contains("attempt 0\n----- slt-launch: restart 1"),
            "{text}"
        );
    }
}
