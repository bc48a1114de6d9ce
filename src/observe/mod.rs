//! What the proxy tells the outside world about each request, besides its `/metrics`: the request
//! log ([`request_log`]) and OpenTelemetry spans. [`Exchange`] is one request's record, filled in
//! by the proxy as it serves it; an [`Observer`] is where finished records go.
//!
//! Ids are deterministic: a span id is a hash of the run's seed and what identifies the request
//! (its decision key, its caller's span), never a random number, so two runs of a scenario give
//! the same trace and span ids.

pub mod exchange;
pub mod otlp;
pub mod recent;
pub mod request_log;
pub mod spans;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

pub use exchange::{Arrival, Exchange};
pub use otlp::{SpanExport, SpanSink};
pub use recent::Recent;
pub use request_log::{LogGuard, LogTarget, RequestLog, Rotation};

/// Where one proxy's finished exchanges go. Several proxies of a run share the log (each line
/// names its proxy) and the exporter.
#[derive(Debug, Clone)]
pub struct Observer {
    log: Option<RequestLog>,
    spans: Option<SpanSink>,
    /// A named proxy's name, on its log lines and spans.
    proxy: Option<Arc<str>>,
    seed: u64,
    clock: Clock,
    /// The last requests, for the control API (`GET /requests`).
    recent: Option<Arc<Recent>>,
}

/// Wall-clock time for the proxy's instants: `wall` was the time at `origin`. On the virtual
/// clock, times follow virtual time from the run's start.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: SystemTime,
    origin: Instant,
}

impl Observer {
    /// An observer that writes nothing yet, for a proxy under `seed`.
    pub fn new(seed: u64) -> Self {
        Observer {
            log: None,
            spans: None,
            proxy: None,
            seed,
            clock: Clock::now(),
            recent: None,
        }
    }

    /// Writes a line per request to `log`.
    pub fn with_log(mut self, log: RequestLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Exports a server span (and a client span for the upstream call) per request to `spans`.
    pub fn with_spans(mut self, spans: SpanSink) -> Self {
        self.spans = Some(spans);
        self
    }

    /// Names the proxy on every line and span.
    pub fn named(mut self, proxy: &str) -> Self {
        self.proxy = Some(Arc::from(proxy));
        self
    }

    /// Keeps the last requests' records in `recent` too (the control API's request history).
    pub fn with_recent(mut self, recent: Arc<Recent>) -> Self {
        self.recent = Some(recent);
        self
    }

    /// True when anything is recorded: without a log, an exporter or a history, the proxy skips
    /// the records.
    pub fn is_active(&self) -> bool {
        self.log.is_some() || self.spans.is_some() || self.recent.is_some()
    }

    /// Lines of the request log lost so far (0 without a log).
    pub fn log_lines_dropped(&self) -> u64 {
        self.log.as_ref().map_or(0, RequestLog::dropped)
    }

    /// True when spans are exported.
    pub fn exports_spans(&self) -> bool {
        self.spans.is_some()
    }

    /// Spans lost so far (0 without an exporter).
    pub fn spans_dropped(&self) -> u64 {
        self.spans.as_ref().map_or(0, SpanSink::dropped)
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.clock.wall(at)
    }

    /// A span id: the seed's hash of `parts` (never all zero).
    fn span_id(&self, parts: &[&str]) -> [u8; 8] {
        let mut all = vec!["span"];
        if let Some(proxy) = &self.proxy {
            all.push(proxy);
        }
        all.extend_from_slice(parts);
        crate::seed::span_bytes(self.seed, &all)
    }

    /// The 16 bytes of a trace id: the id itself when it is 32 hex digits (the W3C form the
    /// proxy and the load generator make), else the seed's hash of it.
    fn trace_bytes(&self, trace_id: &str) -> [u8; 16] {
        exchange::hex_id::<16>(trace_id).unwrap_or_else(|| {
            crate::seed::uuid_parts(self.seed, &["trace", trace_id]).into_bytes()
        })
    }

    fn export(&self, exchange: &Exchange, ended: Instant) {
        let Some(sink) = &self.spans else { return };
        let spans = spans::proxy_spans(
            &exchange.parts(),
            self.proxy.as_deref(),
            |at| self.wall(at),
            ended,
        );
        for span in spans {
            sink.send(span);
        }
    }
}

impl Clock {
    fn now() -> Clock {
        Clock {
            wall: SystemTime::now(),
            origin: Instant::now(),
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.origin) {
            Some(since) => self.wall + since,
            None => self.wall - self.origin.duration_since(at),
        }
    }
}

/// How long closing waits for the span exporters to send what they hold.
const EXPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The observability outputs of a run or a proxy process, opened once and shared by its proxies:
/// each distinct request-log file, and an OTLP span exporter per service name.
///
/// The exporters run on a runtime of their own (one thread): they need real sockets and a real
/// clock, which a run on the virtual clock does not have, and their batching and encoding stay
/// off the proxy's workers.
pub struct Outputs {
    seed: u64,
    clock: Clock,
    logs: Vec<(PathBuf, RequestLog, LogGuard)>,
    otlp: Option<hyper::Uri>,
    exports: Vec<(String, SpanExport)>,
    runtime: Option<ExportRuntime>,
}

/// The exporters' runtime; stopped without waiting when dropped (a run that failed before
/// closing its outputs), since dropping a runtime may not block inside another.
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl ExportRuntime {
    fn start() -> Result<ExportRuntime, String> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("traceforge-otlp")
            .enable_all()
            .build()
            .map(|runtime| ExportRuntime(Some(runtime)))
            .map_err(|e| format!("cannot start the span exporter's runtime: {e}"))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("logs", &self.logs.iter().map(|l| &l.0).collect::<Vec<_>>())
            .field("otlp", &self.otlp)
            .finish_non_exhaustive()
    }
}

/// What closing the outputs found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closed {
    /// Request-log lines lost, per file.
    pub log_lines_dropped: Vec<(PathBuf, u64)>,
    /// Spans sent and lost, per service name.
    pub spans: Vec<(String, otlp::ExportStats)>,
}

impl Closed {
    /// Warnings for the run's report: every output that lost something.
    pub fn warnings(&self) -> Vec<String> {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let logs = self
            .log_lines_dropped
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(path, n)| {
                format!(
                    "the request log {} lost {n} line{} (the disk fell behind or was full); requests were not slowed",
                    path.display(),
                    plural(*n)
                )
            });
        let spans = self
            .spans
            .iter()
            .filter(|(_, stats)| stats.dropped > 0)
            .map(|(service, stats)| {
                format!(
                    "{} span{} of {service} were not exported ({} were): the collector refused them, did not answer, or fell behind",
                    stats.dropped,
                    plural(stats.dropped),
                    stats.exported
                )
            });
        logs.chain(spans).collect()
    }
}

impl Outputs {
    /// Opens every request log in `targets` (one writer per file, whichever proxies name it).
    /// An error names the file.
    pub fn open<'a>(
        seed: u64,
        targets: impl IntoIterator<Item = &'a LogTarget>,
    ) -> Result<Outputs, (PathBuf, std::io::Error)> {
        let mut logs: Vec<(PathBuf, RequestLog, LogGuard)> = Vec::new();
        for target in targets {
            if logs.iter().any(|(path, ..)| *path == target.path) {
                continue;
            }
            let (log, guard) = request_log::open(target).map_err(|e| (target.path.clone(), e))?;
            logs.push((target.path.clone(), log, guard));
        }
        Ok(Outputs {
            seed,
            clock: Clock::now(),
            logs,
            otlp: None,
            exports: Vec::new(),
            runtime: None,
        })
    }

    /// Exports spans to the OTLP/HTTP endpoint `url` (see [`otlp::traces_url`]).
    pub fn with_otlp(mut self, url: Option<hyper::Uri>) -> Self {
        self.otlp = url;
        self
    }

    /// True when spans are exported.
    pub fn exports_spans(&self) -> bool {
        self.otlp.is_some()
    }

    /// The wall-clock time now, on the clock the proxies' spans use (virtual time on the virtual
    /// clock): where the load generator's offsets start.
    pub fn wall_now(&self) -> SystemTime {
        self.clock.wall(Instant::now())
    }

    /// Where spans of `service` go, when spans are exported: one exporter per service name,
    /// started on first use (on the current runtime).
    pub fn spans(&mut self, service: &str) -> Result<Option<SpanSink>, String> {
        let Some(url) = &self.otlp else {
            return Ok(None);
        };
        if let Some((_, export)) = self.exports.iter().find(|(name, _)| name == service) {
            return Ok(Some(export.sink()));
        }
        if self.runtime.is_none() {
            self.runtime = Some(ExportRuntime::start()?);
        }
        let handle = self
            .runtime
            .as_ref()
            .and_then(ExportRuntime::handle)
            .ok_or("the span exporter's runtime is gone")?;
        let export = {
            let _entered = handle.enter();
            SpanExport::start(url, service)?
        };
        let sink = export.sink();
        self.exports.push((service.to_string(), export));
        Ok(Some(sink))
    }

    /// The observer of a proxy whose request log is `log` (named `name`, for a named proxy), or
    /// `None` when it records nothing.
    pub fn observer(
        &mut self,
        log: Option<&LogTarget>,
        name: Option<&str>,
    ) -> Result<Option<Arc<Observer>>, String> {
        let log = log.and_then(|target| {
            self.logs
                .iter()
                .find(|(path, ..)| *path == target.path)
                .map(|(_, log, _)| log.clone())
        });
        let mut observer = Observer::new(self.seed);
        observer.clock = self.clock;
        if let Some(log) = log {
            observer = observer.with_log(log);
        }
        if let Some(spans) = self.spans(&spans::proxy_service(name))? {
            observer = observer.with_spans(spans);
        }
        if let Some(name) = name {
            observer = observer.named(name);
        }
        Ok(observer.is_active().then(|| Arc::new(observer)))
    }

    /// Sends the spans held (within a few seconds), writes what is queued for the logs (about a
    /// second at most per file), and closes every output.
    pub async fn close(self) -> Closed {
        let mut spans = Vec::new();
        for (service, export) in self.exports {
            // Awaited from here, bounded over there: the grace is timed on the exporters' runtime
            // (the virtual clock would jump over it).
            let stats = match self.runtime.as_ref().and_then(ExportRuntime::handle) {
                Some(handle) => handle
                    .spawn(export.shutdown(EXPORT_GRACE))
                    .await
                    .unwrap_or_default(),
                None => export.shutdown(EXPORT_GRACE).await,
            };
            spans.push((service, stats));
        }
        drop(self.runtime);
        // The writer threads' final flushes block: not on the runtime's own threads.
        let logs = self.logs;
        let mut closed = tokio::task::spawn_blocking(move || close_logs(logs))
            .await
            .unwrap_or_default();
        closed.spans = spans;
        closed
    }
}

fn close_logs(logs: Vec<(PathBuf, RequestLog, LogGuard)>) -> Closed {
    Closed {
        log_lines_dropped: logs
            .into_iter()
            .map(|(path, _, guard)| (path, guard.close()))
            .collect(),
        spans: Vec::new(),
    }
}
