//! Starting, watching and stopping the processes a run depends on.
//!
//! This module owns the life of a child process: its command line (an argv, never a shell), its
//! environment (the parent's plus additions), its working directory, the log file that captures
//! its stdout and stderr, the check that says it is ready, and its end. It is the groundwork for
//! services declared in a scenario; the runner will call [`Service::spawn`] for each of them,
//! fail the run when [`Running::exited`] resolves mid-load, and [`Running::stop`] them on every
//! way out. It knows nothing of scenarios.
//!
//! Every service runs in a process group of its own, so stopping it reaches whatever it forked:
//! [`Running::stop`] sends SIGTERM to the group, waits up to the service's stop timeout, then
//! sends SIGKILL to the group. Dropping a [`Running`] without stopping it sends SIGKILL to the
//! group, so no process outlives the handle, even on a panic or a cancelled run.
//!
//! Unix only: process groups and signals have no portable equivalent.
//!
//! ```no_run
//! use std::time::Duration;
//! use traceforge::service::{Ready, Service};
//!
//! # async fn demo() -> Result<(), traceforge::service::ServiceError> {
//! let api = Service::new("api", "python3", "logs/api.log")
//!     .args(["-m", "http.server", "--bind", "127.0.0.1", "8080"])
//!     .env("PYTHONUNBUFFERED", "1")
//!     .ready(Ready::Http { url: "http://127.0.0.1:8080".into(), path: "/".into() })
//!     .ready_timeout(Duration::from_secs(10))
//!     .spawn()
//!     .await?;
//! // ... play the load; `api.exited()` resolves if it dies meanwhile ...
//! api.stop().await?;
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout, timeout_at};

/// How long a service may take to become ready unless [`Service::ready_timeout`] says otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped service has between SIGTERM and SIGKILL unless [`Service::stop_timeout`]
/// says otherwise.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How many lines of a service's output an error quotes.
pub const TAIL_LINES: usize = 20;

/// How often readiness and the end of a process group are polled.
const POLL: Duration = Duration::from_millis(20);
/// The longest one HTTP readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long processes have to disappear after SIGKILL before stopping gives up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// When a service counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// A GET of `url` joined with `path` answers 2xx or 3xx (plain HTTP).
    Http {
        /// The service's base URL, such as `http://127.0.0.1:8080`.
        url: String,
        /// The path to poll, such as `/health`.
        path: String,
    },
    /// A TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// This text appears in the service's captured output (stdout or stderr).
    Log(String),
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Http { url, path } => write!(f, "GET {} answering 2xx or 3xx", join(url, path)),
            Ready::Tcp(addr) => write!(f, "a TCP connection to {addr}"),
            Ready::Log(text) => write!(f, "{text:?} in its output"),
        }
    }
}

/// A process to start: what [`Service::spawn`] needs, built like [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct Service {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    log: PathBuf,
    ready: Option<Ready>,
    ready_timeout: Duration,
    stop_timeout: Duration,
}

impl Service {
    /// A service called `name` (used in every error) that runs `program` (looked up in `PATH`
    /// like [`std::process::Command`], never through a shell) and writes its stdout and stderr to
    /// `log`, which is truncated, and whose folder is created if needed.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<OsString>,
        log: impl Into<PathBuf>,
    ) -> Self {
        Service {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log: log.into(),
            ready: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable on top of the parent's environment.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the service in `dir` instead of the parent's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Waits for `ready` before [`Service::spawn`] returns. Without it, a service is ready as
    /// soon as it has started.
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = Some(ready);
        self
    }

    /// How long the service may take to become ready ([`DEFAULT_READY_TIMEOUT`] otherwise).
    pub fn ready_timeout(mut self, limit: Duration) -> Self {
        self.ready_timeout = limit;
        self
    }

    /// How long [`Running::stop`] waits after SIGTERM before SIGKILL ([`DEFAULT_STOP_TIMEOUT`]
    /// otherwise).
    pub fn stop_timeout(mut self, grace: Duration) -> Self {
        self.stop_timeout = grace;
        self
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the service in a process group of its own, with its stdout and stderr captured
    /// (interleaved as written) to its log file, and waits until it is ready.
    ///
    /// A service that exits before it is ready, or is not ready in time, is stopped (its whole
    /// group) and reported with its exit status and the last lines of its output. If this future
    /// is dropped before it completes, the group is killed.
    pub async fn spawn(&self) -> Result<Running, ServiceError> {
        let probe_uri = match &self.ready {
            Some(Ready::Http { url, path }) => {
                Some(http_uri(url, path).map_err(|problem| ServiceError::Config {
                    name: self.name.clone(),
                    problem,
                })?)
            }
            _ => None,
        };
        let log_error = |source| ServiceError::Log {
            name: self.name.clone(),
            path: self.log.clone(),
            source,
        };
        if let Some(dir) = self.log.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(log_error)?;
        }
        let stdout = tokio::fs::File::create(&self.log)
            .await
            .map_err(log_error)?;
        let stdout = stdout.into_std().await;
        let stderr = stdout.try_clone().map_err(log_error)?;

        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        let spawn_error = |source| ServiceError::Spawn {
            name: self.name.clone(),
            program: self.program.to_string_lossy().into_owned(),
            source,
        };
        let child = command.spawn().map_err(spawn_error)?;
        let pid = child.id().and_then(|id| i32::try_from(id).ok());
        let Some(pid) = pid else {
            // Only a process that was already reaped has no id; spawn never returns one.
            return Err(spawn_error(io::Error::other("the new process has no id")));
        };
        let mut running = Running {
            name: self.name.clone(),
            log: self.log.clone(),
            stop_timeout: self.stop_timeout,
            pgid: Pid::from_raw(pid),
            child,
            stopped: false,
        };
        live(pid, true);
        let Some(ready) = &self.ready else {
            return Ok(running);
        };

        let early = tokio::select! {
            biased;
            status = running.child.wait() => Some(status),
            ready = timeout(self.ready_timeout, probe(ready, probe_uri, &self.log)) => match ready {
                Ok(()) => return Ok(running),
                Err(_) => None,
            },
        };
        let stopped = running.shutdown().await;
        let last_lines = last_lines(&self.log).await;
        Err(match early {
            Some(Ok(status)) => ServiceError::ExitedEarly {
                name: self.name.clone(),
                status,
                log: self.log.clone(),
                last_lines,
            },
            Some(Err(source)) => ServiceError::Wait {
                name: self.name.clone(),
                source,
            },
            None => ServiceError::NotReady {
                name: self.name.clone(),
                ready: ready.clone(),
                waited: self.ready_timeout,
                status: stopped.map(|s| s.status).ok(),
                log: self.log.clone(),
                last_lines,
            },
        })
    }
}

/// A started service. Stop it with [`Running::stop`]; dropping it kills its process group.
#[derive(Debug)]
pub struct Running {
    name: String,
    log: PathBuf,
    stop_timeout: Duration,
    pgid: Pid,
    child: Child,
    stopped: bool,
}

/// How a service ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// The exit status of the process that was started (the group's leader).
    pub status: ExitStatus,
    /// Whether the group outlived the stop timeout and was sent SIGKILL.
    pub killed: bool,
}

impl Running {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id of the started process, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self.pgid.as_raw().unsigned_abs()
    }

    /// Resolves when the started process exits, with the error that says so (its status and the
    /// last lines of its output). Cancel-safe, so a run can select on it while the load plays.
    /// Whatever the process forked may still be running: [`Running::stop`] or dropping the
    /// handle ends it.
    pub async fn exited(&mut self) -> ServiceError {
        match self.child.wait().await {
            Ok(status) => ServiceError::Died {
                name: self.name.clone(),
                status,
                log: self.log.clone(),
                last_lines: last_lines(&self.log).await,
            },
            Err(source) => ServiceError::Wait {
                name: self.name.clone(),
                source,
            },
        }
    }

    /// Stops the service: SIGTERM to its process group, up to the stop timeout for every process
    /// in it to end, then SIGKILL to the group. Reaps the started process.
    pub async fn stop(mut self) -> Result<Stopped, ServiceError> {
        self.shutdown().await
    }

    async fn shutdown(&mut self) -> Result<Stopped, ServiceError> {
        let wait_error = |source| ServiceError::Wait {
            name: self.name.clone(),
            source,
        };
        signal_group(self.pgid, Signal::SIGTERM);
        let deadline = Instant::now() + self.stop_timeout;
        let mut status = match timeout_at(deadline, self.child.wait()).await {
            Ok(status) => Some(status.map_err(wait_error)?),
            Err(_) => None,
        };
        if let Some(status) = status {
            if wait_for_group(self.pgid, deadline).await {
                self.stopped = true;
                return Ok(Stopped {
                    status,
                    killed: false,
                });
            }
        }

        signal_group(self.pgid, Signal::SIGKILL);
        let deadline = Instant::now() + KILL_WAIT;
        if status.is_none() {
            status = match timeout_at(deadline, self.child.wait()).await {
                Ok(status) => Some(status.map_err(wait_error)?),
                Err(_) => None,
            };
        }
        let gone = wait_for_group(self.pgid, deadline).await;
        match status {
            Some(status) if gone => {
                self.stopped = true;
                Ok(Stopped {
                    status,
                    killed: true,
                })
            }
            _ => Err(wait_error(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "process group {} still has processes {KILL_WAIT:?} after SIGKILL",
                    self.pgid
                ),
            ))),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            // Tokio reaps the dropped child in the background.
            signal_group(self.pgid, Signal::SIGKILL);
        }
        live(self.pgid.as_raw(), false);
    }
}

/// The process groups of every [`Running`] not yet dropped, for [`kill_all`].
static LIVE: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn live(pgid: i32, alive: bool) {
    let mut groups = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if alive {
        groups.push(pgid);
    } else {
        groups.retain(|g| *g != pgid);
    }
}

/// Sends SIGKILL to the process group of every service still running in this process. For a
/// forced exit (a second signal, `std::process::exit`), where no destructor runs: without it the
/// services would outlive the tool that started them.
pub fn kill_all() {
    let groups = std::mem::take(
        &mut *LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for pgid in groups {
        signal_group(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Why a service could not be started, did not become ready, died, or could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service's options cannot work (such as a readiness URL that is not plain HTTP).
    #[error("service `{name}`: {problem}")]
    Config {
        /// The service.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// Its log file could not be created.
    #[error("service `{name}`: cannot create its log file {}: {source}", path.display())]
    Log {
        /// The service.
        name: String,
        /// The log file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Its program could not be started.
    #[error("service `{name}`: cannot start `{program}`: {source}")]
    Spawn {
        /// The service.
        name: String,
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// It exited before it was ready.
    #[error(
        "service `{name}` exited before it was ready ({status}){}",
        tail(log, last_lines)
    )]
    ExitedEarly {
        /// The service.
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its output, at most [`TAIL_LINES`].
        last_lines: Vec<String>,
    },
    /// It was not ready in time, and was stopped.
    #[error(
        "service `{name}` was not ready within {waited:?} (waited for {ready}); stopped: {}{}",
        status.map_or_else(|| "no exit status".to_string(), |s| s.to_string()),
        tail(log, last_lines)
    )]
    NotReady {
        /// The service.
        name: String,
        /// What it was waited for.
        ready: Ready,
        /// How long.
        waited: Duration,
        /// How it ended when stopped, if it could be reaped.
        status: Option<ExitStatus>,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its output, at most [`TAIL_LINES`].
        last_lines: Vec<String>,
    },
    /// It exited while it was meant to be running.
    #[error("service `{name}` exited ({status}){}", tail(log, last_lines))]
    Died {
        /// The service.
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its output, at most [`TAIL_LINES`].
        last_lines: Vec<String>,
    },
    /// Waiting for it failed, or its processes outlived SIGKILL.
    #[error("service `{name}`: cannot wait for it to end: {source}")]
    Wait {
        /// The service.
        name: String,
        /// Why.
        source: io::Error,
    },
}

/// The part of a message that quotes a service's last lines.
fn tail(log: &Path, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("; its log {} is empty", log.display());
    }
    let mut out = format!("; last lines of {}:", log.display());
    for line in lines {
        out.push_str("\n  | ");
        out.push_str(line);
    }
    out
}

/// The last [`TAIL_LINES`] lines of `log` (from its last 64 KiB), or a line saying why it could
/// not be read.
async fn last_lines(log: &Path) -> Vec<String> {
    const WINDOW: u64 = 64 * 1024;
    let read = async {
        let mut file = tokio::fs::File::open(log).await?;
        let len = file.metadata().await?.len();
        let start = len.saturating_sub(WINDOW);
        file.seek(io::SeekFrom::Start(start)).await?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await?;
        io::Result::Ok((start > 0, bytes))
    };
    match read.await {
        Ok((cut, bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<&str> = text.lines().collect();
            if cut && !lines.is_empty() {
                lines.remove(0); // began mid-line
            }
            let from = lines.len().saturating_sub(TAIL_LINES);
            lines[from..].iter().map(|l| l.to_string()).collect()
        }
        Err(e) => vec![format!("(cannot read {}: {e})", log.display())],
    }
}

/// `url` and `path` as one URI, or why not.
fn http_uri(url: &str, path: &str) -> Result<Uri, String> {
    let joined = join(url, path);
    let uri: Uri = joined
        .parse()
        .map_err(|e| format!("readiness URL {joined:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!(
            "readiness URL {joined:?} must be http://host:port/path"
        ));
    }
    Ok(uri)
}

fn join(url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Polls until `ready` holds. Never returns otherwise: the caller bounds it.
async fn probe(ready: &Ready, uri: Option<Uri>, log: &Path) {
    match (ready, uri) {
        (Ready::Http { .. }, Some(uri)) => {
            let client = Client::builder(TokioExecutor::new())
                .build::<_, Empty<Bytes>>(HttpConnector::new());
            loop {
                let answer = timeout(PROBE_TIMEOUT, client.get(uri.clone())).await;
                if let Ok(Ok(response)) = answer {
                    let status = response.status();
                    if status.is_success() || status.is_redirection() {
                        return;
                    }
                }
                sleep(POLL).await;
            }
        }
        (Ready::Tcp(addr), _) => loop {
            if let Ok(Ok(_)) = timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                return;
            }
            sleep(POLL).await;
        },
        (Ready::Log(text), _) => {
            let mut watch = LogWatch::new(text.as_bytes());
            loop {
                if watch.found(log).await {
                    return;
                }
                sleep(POLL).await;
            }
        }
        // `spawn` parses the URI of every HTTP check before it starts anything.
        (Ready::Http { .. }, None) => std::future::pending().await,
    }
}

/// Looks for a text in a growing file, reading each byte once.
struct LogWatch<'a> {
    needle: &'a [u8],
    offset: u64,
    /// The end of what was read, short of a whole needle, so a match across reads is seen.
    carry: Vec<u8>,
}

impl<'a> LogWatch<'a> {
    fn new(needle: &'a [u8]) -> Self {
        LogWatch {
            needle,
            offset: 0,
            carry: Vec::new(),
        }
    }

    async fn found(&mut self, log: &Path) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        let read = async {
            let mut file = tokio::fs::File::open(log).await?;
            file.seek(io::SeekFrom::Start(self.offset)).await?;
            let mut fresh = Vec::new();
            file.read_to_end(&mut fresh).await?;
            io::Result::Ok(fresh)
        };
        let Ok(fresh) = read.await else {
            return false;
        };
        self.offset += fresh.len() as u64;
        self.carry.extend_from_slice(&fresh);
        if self
            .carry
            .windows(self.needle.len())
            .any(|w| w == self.needle)
        {
            return true;
        }
        let keep = self.needle.len() - 1;
        let cut = self.carry.len().saturating_sub(keep);
        self.carry.drain(..cut);
        false
    }
}

/// Sends `signal` to the process group; a group that no longer exists is not an error.
fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(%pgid, ?signal, error = %e, "cannot signal a service's process group")
        }
    }
}

/// Polls until no live process is left in the group, up to `deadline`; whether none is.
async fn wait_for_group(pgid: Pid, deadline: Instant) -> bool {
    loop {
        let alive = tokio::task::spawn_blocking(move || group_alive(pgid)).await;
        if !alive.unwrap_or(true) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL).await;
    }
}

/// Whether the process group has a process that has not exited.
///
/// A zombie still counts as a member for `kill`, and a process whose parent died is reaped by
/// the init process, which in some containers never reaps. So when the group still answers,
/// Linux's `/proc` says whether any member is more than a zombie.
fn group_alive(pgid: Pid) -> bool {
    match killpg(pgid, None) {
        Err(Errno::ESRCH) => false,
        Ok(()) => live_member(pgid).unwrap_or(true),
        Err(_) => true,
    }
}

/// Whether `/proc` lists a process of group `pgid` that is not a zombie; `None` where there is no
/// `/proc` to read. It reads files, so async code calls it on the blocking pool.
#[cfg(target_os = "linux")]
fn live_member(pgid: Pid) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // Gone since the listing: not a member any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        if group == Some(pgid.as_raw()) && !matches!(state, Some("Z" | "X")) {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(not(target_os = "linux"))]
fn live_member(_pgid: Pid) -> Option<bool> {
    None
}
