//! Spans out over OTLP/HTTP (protobuf), to any OpenTelemetry collector.
//!
//! The proxy and the load generator know a request's span only once it is over, and its ids are
//! the deterministic ones they computed, not ones a tracer would pick. So there is no SDK tracer
//! here: a caller builds a [`FinishedSpan`] and hands it to a [`SpanSink`]; this module converts
//! it to the SDK's `SpanData` and the official `opentelemetry-otlp` exporter encodes and sends it,
//! so a collector receives exactly what OpenTelemetry's own SDKs send.
//!
//! - [`traces_url`] turns a collector's base URL (`http://localhost:4318`) into its traces
//!   endpoint (`/v1/traces`), as `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL with a path is used as
//!   given.
//! - [`SpanExport::start`] starts one pipeline per service name (`service.name` in the resource,
//!   scope `traceforge`): a bounded queue of [`QUEUE_CAPACITY`] spans and one tokio task that
//!   sends batches of up to [`BATCH_SIZE`] spans, at most [`BATCH_DELAY`] after the first span of
//!   a batch was queued, one batch at a time.
//! - [`SpanSink::send`] is for the hot path: it never waits and never fails. A full queue drops
//!   the span and counts it. A batch the collector does not take (unreachable, an error status,
//!   no answer within [`EXPORT_TIMEOUT`]) is counted as dropped too, and the first such failure is
//!   logged as a warning; later ones only at debug level, so a collector that is down does not
//!   flood the log. The exporter retries what OTLP says is worth retrying (429, 502, 503, 504 and
//!   network errors, honouring `Retry-After`) within that same timeout.
//! - [`SpanExport::shutdown`] sends what is still queued, within the time it is given, and returns
//!   the counts: every span sent is either exported or dropped.
//!
//! Requests go through hyper-util's client (HTTP/1.1 or HTTP/2, `https://` with the system's
//! roots). As in every OTLP exporter, `OTEL_EXPORTER_OTLP_HEADERS` (or `..._TRACES_HEADERS`) adds
//! request headers, an authorization token say, and `OTEL_RESOURCE_ATTRIBUTES` adds resource
//! attributes; the endpoint, protocol and timeout are this module's and no variable changes them.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response, ResponseBodyTooLarge};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How many spans wait in a pipeline's queue at most; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 8192;

/// The most spans one export request carries.
pub const BATCH_SIZE: usize = 512;

/// How long a batch waits for more spans after its first one, so a short run exports promptly.
pub const BATCH_DELAY: Duration = Duration::from_millis(200);

/// The most one batch's export takes, retries included; past it the batch is dropped.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response body read from a collector (the official HTTP clients' limit). OTLP
/// answers are a few bytes; a larger one fails the export instead of filling memory.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// One finished span, as the proxy or load generator knows it after the fact.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span, and whether it lives in another process (came in a `traceparent`).
    pub parent: Option<([u8; 8], bool)>,
    /// [`SpanKind::Server`] for a request received, [`SpanKind::Client`] for one sent.
    pub kind: SpanKind,
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// (name, time, attributes)
    pub events: Vec<(String, SystemTime, Vec<KeyValue>)>,
    /// `Some(message)` sets status Error with that description; `None` leaves it Unset.
    pub error: Option<String>,
}

/// `http://host:port` → `http://host:port/v1/traces` (the OTLP/HTTP default path, as the spec says
/// for `OTEL_EXPORTER_OTLP_ENDPOINT`); a URL with a path other than `/` is used as given. Anything
/// but an absolute `http://` or `https://` URL is an error whose message says what is valid.
pub fn traces_url(url: &str) -> Result<hyper::Uri, String> {
    let invalid = |why: &str| {
        format!(
            "invalid OTLP endpoint {url:?}: {why}; expected an absolute http:// or https:// URL, \
             such as http://localhost:4318 (spans go to its /v1/traces) or \
             https://collector.example/v1/traces"
        )
    };
    let uri: hyper::Uri = url.trim().parse().map_err(|e| invalid(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(&format!("the scheme {other:?} is not supported"))),
        None => return Err(invalid("it has no scheme")),
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(invalid("it has no host"));
    };
    if authority.host().is_empty() {
        return Err(invalid("it has no host"));
    }
    if !matches!(uri.path(), "" | "/") {
        return Ok(uri);
    }
    let path = match uri.query() {
        Some(query) => format!("/v1/traces?{query}"),
        None => "/v1/traces".to_string(),
    };
    hyper::Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| invalid(&format!("{e}")))
}

/// What a pipeline did with the spans it was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans a collector accepted (answered 2xx to).
    pub exported: u64,
    /// Spans lost: the queue was full, their export failed, or shutdown ran out of time.
    pub dropped: u64,
}

/// The export pipeline of one service name: a bounded queue and one tokio task that batches.
/// Dropped without [`shutdown`](SpanExport::shutdown), its task still sends what is queued, for
/// at most [`EXPORT_TIMEOUT`], and nobody learns the counts.
pub struct SpanExport {
    sink: SpanSink,
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<()>,
}

impl fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanExport")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl SpanExport {
    /// Starts the task on the current tokio runtime. `service_name` goes in the resource
    /// (`service.name`), instrumentation scope name "traceforge" with the crate version. `url` is
    /// the traces endpoint itself (see [`traces_url`]). Fails outside a tokio runtime, or when the
    /// exporter cannot be built (the message says why).
    pub fn start(url: &hyper::Uri, service_name: &str) -> Result<SpanExport, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "OTLP export needs a tokio runtime".to_string())?;
        let client = HyperClient::new(EXPORT_TIMEOUT)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.to_string())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client)
            .build()
            .map_err(|e| format!("cannot set up OTLP export to {url}: {e}"))?;
        let resource = Resource::builder()
            .with_service_name(service_name.to_string())
            .build();
        exporter.set_resource(&resource);

        let (queue, spans) = mpsc::channel(QUEUE_CAPACITY);
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = oneshot::channel();
        let worker = Worker {
            spans,
            exporter,
            scope: InstrumentationScope::builder("traceforge")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            url: url.to_string(),
            counts: counts.clone(),
            pending: 0,
            warned: false,
        };
        let task = runtime.spawn(worker.run(stopped));
        Ok(SpanExport {
            sink: SpanSink { queue, counts },
            stop,
            task,
        })
    }

    /// A handle that queues spans into this pipeline.
    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Sends what is queued (bounded: at most `within`), stops the task, and returns the counts.
    /// A span still queued or in flight when `within` is over counts as dropped, and so does any
    /// span sent to a [`SpanSink`] afterwards.
    pub async fn shutdown(self, within: Duration) -> ExportStats {
        // The task bounds its own work by `within`; an error means it is already gone.
        let _ = self.stop.send(within);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the OTLP export task ended abnormally");
        }
        self.sink.counts.stats()
    }
}

/// Queues finished spans for export. Cheap to clone; never blocks, never fails: a full queue drops
/// the span and counts it.
#[derive(Clone)]
pub struct SpanSink {
    queue: mpsc::Sender<FinishedSpan>,
    counts: Arc<Counts>,
}

impl fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanSink")
            .field("stats", &self.counts.stats())
            .finish()
    }
}

impl SpanSink {
    /// Queues `span` for export, or drops it (and counts it) if the queue is full or the pipeline
    /// has shut down.
    pub fn send(&self, span: FinishedSpan) {
        if self.queue.try_send(span).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans dropped so far: the queue was full, their export failed, or shutdown ran out of time.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Counts {
    exported: AtomicU64,
    dropped: AtomicU64,
}

impl Counts {
    fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The pipeline's task: owns the queue's receiving end and the exporter.
struct Worker {
    spans: mpsc::Receiver<FinishedSpan>,
    exporter: opentelemetry_otlp::SpanExporter,
    scope: InstrumentationScope,
    url: String,
    counts: Arc<Counts>,
    /// Spans taken off the queue and not yet counted as exported or dropped.
    pending: u64,
    warned: bool,
}

impl Worker {
    async fn run(mut self, stop: oneshot::Receiver<Duration>) {
        let closing = CancellationToken::new();
        {
            let work = self.batches(&closing);
            tokio::pin!(work);
            tokio::select! {
                () = &mut work => {}
                within = stop => {
                    // Dropped without a shutdown: flush for as long as one export may take.
                    let within = within.unwrap_or(EXPORT_TIMEOUT);
                    closing.cancel();
                    match tokio::time::Instant::now().checked_add(within) {
                        Some(deadline) => {
                            let _ = tokio::time::timeout_at(deadline, work).await;
                        }
                        None => work.await,
                    }
                }
            }
        }
        // Out of time, or done: whatever was not exported is dropped.
        self.spans.close();
        let mut left = self.pending;
        while self.spans.try_recv().is_ok() {
            left += 1;
        }
        self.pending = 0;
        if left > 0 {
            self.counts.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::debug!(
                spans = left,
                url = %self.url,
                "OTLP export stopped before these spans were sent"
            );
        }
        let _ = self.exporter.shutdown();
    }

    /// Exports batches until the queue is closed (`closing`, or every sender gone) and empty.
    async fn batches(&mut self, closing: &CancellationToken) {
        let mut batch: Vec<FinishedSpan> = Vec::with_capacity(BATCH_SIZE);
        let mut closed = false;
        loop {
            // The first span of a batch, or the signal to stop taking more.
            tokio::select! {
                biased;
                () = closing.cancelled(), if !closed => {
                    self.spans.close();
                    closed = true;
                    continue;
                }
                taken = self.spans.recv_many(&mut batch, BATCH_SIZE) => {
                    if taken == 0 {
                        return;
                    }
                }
            }
            self.pending = batch.len() as u64;
            // More, until the batch is full, BATCH_DELAY has passed, or (closed) the queue is empty.
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < BATCH_SIZE {
                let room = BATCH_SIZE - batch.len();
                tokio::select! {
                    biased;
                    () = closing.cancelled(), if !closed => {
                        self.spans.close();
                        closed = true;
                    }
                    taken = self.spans.recv_many(&mut batch, room) => {
                        self.pending = batch.len() as u64;
                        if taken == 0 {
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(deadline), if !closed => break,
                }
            }
            self.export(std::mem::take(&mut batch)).await;
            batch.reserve(BATCH_SIZE);
        }
    }

    async fn export(&mut self, batch: Vec<FinishedSpan>) {
        let count = batch.len() as u64;
        let data = batch
            .into_iter()
            .map(|span| span_data(span, &self.scope))
            .collect();
        let outcome = match tokio::time::timeout(EXPORT_TIMEOUT, self.exporter.export(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
        };
        self.pending = 0;
        match outcome {
            Ok(()) => {
                self.counts.exported.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                self.counts.dropped.fetch_add(count, Ordering::Relaxed);
                if self.warned {
                    tracing::debug!(
                        url = %self.url,
                        spans = count,
                        %error,
                        "OTLP export failed; spans dropped"
                    );
                } else {
                    self.warned = true;
                    tracing::warn!(
                        url = %self.url,
                        spans = count,
                        %error,
                        "OTLP export failed; these spans are dropped (further failures are logged \
                         at debug level only)"
                    );
                }
            }
        }
    }
}

/// The SDK's form of `span`: what the exporter encodes.
fn span_data(span: FinishedSpan, scope: &InstrumentationScope) -> SpanData {
    let mut events = SpanEvents::default();
    for (name, time, attributes) in span.events {
        events.events.push(Event::new(name, time, attributes, 0));
    }
    let (parent_span_id, parent_span_is_remote) = match span.parent {
        Some((id, remote)) => (SpanId::from_bytes(id), remote),
        None => (SpanId::INVALID, false),
    };
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(span.trace_id),
            SpanId::from_bytes(span.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id,
        parent_span_is_remote,
        span_kind: span.kind,
        name: Cow::Owned(span.name),
        start_time: span.start,
        end_time: span.end,
        attributes: span.attributes,
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: match span.error {
            Some(message) => Status::error(message),
            None => Status::Unset,
        },
        instrumentation_scope: scope.clone(),
    }
}

/// The exporter's HTTP client: hyper-util's, over the same connector the proxy uses for
/// upstreams (plain TCP for `http://`, rustls for `https://`). Each request, body included, is
/// bounded by a timeout; the exporter itself only bounds its retries.
#[derive(Clone)]
struct HyperClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HyperClient {
    fn new(timeout: Duration) -> Result<HyperClient, String> {
        let connector = crate::tls::https_connector(&crate::tls::UpstreamTls::default())
            .map_err(|e| format!("cannot set up TLS for OTLP export: {e}"))?;
        Ok(HyperClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }
}

#[async_trait]
impl HttpClient for HyperClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = hyper::Request::from_parts(parts, Full::new(body));
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| -> HttpError {
                    if e.is::<LengthLimitError>() {
                        Box::new(ResponseBodyTooLarge::new())
                    } else {
                        e
                    }
                })?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| -> HttpError { format!("no answer within {:?}", self.timeout).into() })?
    }
}
