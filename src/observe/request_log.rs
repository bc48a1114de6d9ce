//! The proxy's request log: one JSON line per request, written off the request path.
//!
//! Lines go through `tracing-appender`'s non-blocking writer to a file it rotates (never, hourly or
//! daily). A request never waits on the disk: a line is handed to a bounded queue that a writer
//! thread drains. When the queue is full (a slow disk) the line is dropped; when the write fails
//! (a full disk, a removed folder) the line is lost too. Both are counted ([`RequestLog::dropped`])
//! and exported as `traceforge_proxy_log_lines_dropped_total`.
//!
//! File names: with rotation `never` the log is the path given. With `hourly` or `daily`, the
//! date goes between the file's stem and its extension: `logs/requests.jsonl` becomes
//! `logs/requests.2026-11-22.jsonl` (daily) or `logs/requests.2026-11-22-14.jsonl` (hourly, UTC).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{self, RollingFileAppender};

/// How many lines may wait for the disk before new ones are dropped.
const QUEUE_LINES: usize = 64 * 1024;

/// When the log starts a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    /// One file, the path given.
    #[default]
    Never,
    Hourly,
    Daily,
}

impl Rotation {
    pub const NAMES: [&'static str; 3] = ["never", "hourly", "daily"];

    pub fn as_str(self) -> &'static str {
        match self {
            Rotation::Never => "never",
            Rotation::Hourly => "hourly",
            Rotation::Daily => "daily",
        }
    }
}

impl std::str::FromStr for Rotation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(Rotation::Never),
            "hourly" => Ok(Rotation::Hourly),
            "daily" => Ok(Rotation::Daily),
            other => Err(format!(
                "unknown log rotation `{other}`; valid values: {}",
                Rotation::NAMES.join(", ")
            )),
        }
    }
}

impl std::fmt::Display for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the request log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub path: PathBuf,
    pub rotation: Rotation,
}

/// A handle that writes lines to the log; cheap to clone, shared by every proxy of a run.
#[derive(Clone)]
pub struct RequestLog {
    writer: NonBlocking,
    queue_full: ErrorCounter,
    failed: Arc<AtomicU64>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Keeps the writer thread; [`LogGuard::close`] (or dropping it) writes what is queued, waiting
/// about a second at most, and stops it.
pub struct LogGuard {
    guard: WorkerGuard,
    log: RequestLog,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").finish_non_exhaustive()
    }
}

impl LogGuard {
    /// Flushes and stops the writer; returns how many lines were dropped over the log's life.
    pub fn close(self) -> u64 {
        let LogGuard { guard, log } = self;
        drop(guard);
        log.dropped()
    }
}

/// Opens (creating its folder) the log at `target`; lines are appended to an existing file.
pub fn open(target: &LogTarget) -> std::io::Result<(RequestLog, LogGuard)> {
    let (dir, prefix, suffix) = split(&target.path)?;
    std::fs::create_dir_all(&dir)?;
    let appender = match target.rotation {
        // The path as given, not `prefix.suffix` rebuilt: a name with several dots stays whole.
        Rotation::Never => rolling::never(&dir, target.path.file_name().unwrap_or_default()),
        rotation => {
            let mut builder = RollingFileAppender::builder()
                .rotation(match rotation {
                    Rotation::Hourly => rolling::Rotation::HOURLY,
                    _ => rolling::Rotation::DAILY,
                })
                .filename_prefix(prefix);
            if let Some(suffix) = suffix {
                builder = builder.filename_suffix(suffix);
            }
            builder.build(&dir).map_err(std::io::Error::other)?
        }
    };
    let failed = Arc::new(AtomicU64::new(0));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("traceforge-request-log")
        .finish(Counting {
            inner: appender,
            failed: failed.clone(),
        });
    let log = RequestLog {
        queue_full: writer.error_counter(),
        writer,
        failed,
    };
    Ok((
        log.clone(),
        LogGuard {
            guard,
            log: log.clone(),
        },
    ))
}

/// The folder, the file name's stem and its extension (if any) of a log path.
fn split(path: &Path) -> std::io::Result<(PathBuf, String, Option<String>)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            )
        })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => {
            (dir, stem.to_string(), Some(ext.to_string()))
        }
        _ => (dir, name.to_string(), None),
    })
}

impl RequestLog {
    /// Queues one line (a newline is added). Never blocks: a full queue drops it, counted.
    pub fn write_line(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        // `NonBlocking` writes through `&mut`; a clone is one queue handle more, not a copy.
        let mut writer = self.writer.clone();
        // Lossy mode turns a full queue into a counted drop; an `Err` is a stopped writer thread.
        if writer.write_all(&line).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines lost so far: dropped from a full queue, or not written (a full disk).
    pub fn dropped(&self) -> u64 {
        let queue_full = u64::try_from(self.queue_full.dropped_lines()).unwrap_or(u64::MAX);
        queue_full.saturating_add(self.failed.load(Ordering::Relaxed))
    }
}

/// The file writer under the queue: a failed write loses its line, counted, and the next line is
/// tried afresh (the disk may have room again).
struct Counting {
    inner: RollingFileAppender,
    failed: Arc<AtomicU64>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The worker hands over one whole line per `write_all`; a partial line is not a line.
        if self.inner.write_all(buf).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A failed flush has nothing left to lose: every line was counted when written.
        let _ = self.inner.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_the_extension() {
        let (dir, stem, ext) = split(Path::new("logs/requests.jsonl")).unwrap();
        assert_eq!(
            (dir, stem.as_str(), ext.as_deref()),
            (PathBuf::from("logs"), "requests", Some("jsonl"))
        );
        let (dir, stem, ext) = split(Path::new("requests")).unwrap();
        assert_eq!(
            (dir, stem.as_str(), ext),
            (PathBuf::from("."), "requests", None)
        );
        assert!(split(Path::new("/")).is_err());
    }

    #[test]
    fn rotation_names_round_trip() {
        for name in Rotation::NAMES {
            assert_eq!(name.parse::<Rotation>().unwrap().as_str(), name);
        }
        let error = "weekly".parse::<Rotation>().unwrap_err();
        assert!(error.contains("never, hourly, daily"), "{error}");
    }
}
