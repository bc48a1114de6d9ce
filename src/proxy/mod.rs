//! The fault-injecting proxy: ids -> decide -> apply the fault -> forward -> count, one request at a
//! time, plus its own Prometheus endpoint at `GET /metrics`.
//!
//! The service is generic over the connection it serves ([`serve_connection`]) and over the
//! connector that reaches the upstream ([`Proxy::with_connector`]); TCP is what [`spawn`] uses today.
//!
//! Headers the load generator and users rely on:
//! - [`X_TRACEFORGE_FAULT`] on every response where at least one rule fired (delays included): the
//!   fired rule names in firing order, `slow-api, api-503`.
//! - [`X_FAULT_INJECTED`]` = traceforge` on synthetic responses (injected errors and drops), whose JSON
//!   body names the rule: `{"error":"fault injected","rule":"api-503","kind":"error","status":503}`.
//! - `X-Trace-Id` and `X-Request-Id` on every response, and sent upstream (see [`crate::ids`]).

mod headers;
pub mod metrics;

pub use headers::strip_hop_by_hop;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::fault::{self, Effect, FaultPlan, RequestFacts};
use crate::ids::{IdSource, Ids};
use crate::scenario::ProxyConfig;
use crate::server::{self, Listening, Shutdown};

pub use metrics::{Metrics, Outcome};

/// The fired rule names, in firing order, comma-separated.
pub const X_TRACEFORGE_FAULT: HeaderName = HeaderName::from_static("x-traceforge-fault");
/// Marks a synthetic response (injected error or drop); its value is always `traceforge`.
pub const X_FAULT_INJECTED: HeaderName = HeaderName::from_static("x-fault-injected");

/// Response bodies: streamed from the upstream, or small synthetic ones.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What the proxy forwards to and which faults it injects.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `http://host:port`, optionally with a base path that prefixes every forwarded path.
    pub upstream: Uri,
    pub plan: Arc<FaultPlan>,
    pub config: ProxyConfig,
    /// Seeds the ids of requests that arrive without them.
    pub seed: u64,
}

/// The proxy's shared state, one per server: the plan, the pooled upstream client, the metrics.
#[derive(Debug)]
pub struct Proxy<C = HttpConnector> {
    upstream: Uri,
    plan: Arc<FaultPlan>,
    config: ProxyConfig,
    ids: IdSource,
    client: Client<C, ProxyBody>,
    metrics: Metrics,
    /// When the proxy started: time windows in fault rules count from here.
    started: tokio::time::Instant,
    /// Stands in for the request index when a client does not send `x-traceforge-index`.
    arrivals: std::sync::atomic::AtomicU64,
}

impl Proxy<HttpConnector> {
    /// A proxy that reaches its upstream over TCP.
    pub fn new(options: ProxyOptions) -> std::io::Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self::with_connector(options, connector)
    }
}

impl<C> Proxy<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A proxy that reaches its upstream through `connector` (TCP, or an in-memory transport).
    pub fn with_connector(options: ProxyOptions, connector: C) -> std::io::Result<Self> {
        let metrics = Metrics::new(options.plan.rules()).map_err(std::io::Error::other)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Proxy {
            upstream: options.upstream,
            plan: options.plan,
            config: options.config,
            ids: IdSource::new(options.seed, "proxy"),
            client,
            metrics,
            started: tokio::time::Instant::now(),
            arrivals: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Answers one request. Never fails: every problem is an HTTP response.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        // The proxy's own endpoint, answered before anything else: it is not traffic, so it gets
        // no ids, no faults and no counts.
        if req.method() == Method::GET && req.uri().path() == "/metrics" {
            return self.metrics_response();
        }
        // Tunnels have no path to forward; refusing them plainly beats forwarding nonsense.
        if req.method() == Method::CONNECT {
            return full(json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "CONNECT is not supported by the TraceForge proxy"}),
            ));
        }
        // Counting starts now; the guard records the outcome, or a cancellation if the client
        // disconnects and hyper drops this future.
        let flight = self.metrics.start();

        // 1. Ids first: the fault decision keys on the request id, so it must exist before step 2.
        let ids = self.ids.assign(req.headers());

        // 2. Decide: a pure function of the seed, the rule, the request id and the request index the
        // load generator sends, so arrival order cannot change it. Other clients get an arrival count.
        let index = fault::index_from_headers(req.headers()).unwrap_or_else(|| {
            self.arrivals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        });
        let facts = RequestFacts {
            method: req.method(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            request_id: &ids.request_id,
            index,
            attempt: fault::attempt_from_headers(req.headers()).unwrap_or(0),
            elapsed: self.started.elapsed(),
        };
        let decision = self.plan.decide(&facts);
        let fired = decision.fired_rules();

        // 3. Apply: delays add up and come before anything else, so a delayed error is slow too.
        for step in &decision.steps {
            if matches!(step.effect, Effect::Delay(_)) {
                self.metrics.delay_fired(&step.name);
            }
        }
        let delay = decision.total_delay();
        if !delay.is_zero() {
            // If the client disconnects here, hyper drops this future: nothing is forwarded and
            // the guard counts a cancellation.
            tokio::time::sleep(delay).await;
        }
        let (mut response, outcome, detail) = match decision.terminal() {
            Some(step) => {
                let rule: &str = &step.name;
                let (status, kind, outcome) = match &step.effect {
                    Effect::Error(reply) => (reply.status, "error", Outcome::InjectedError),
                    _ => (503, "drop", Outcome::Dropped),
                };
                (synthetic(rule, kind, status), outcome, rule.to_string())
            }
            // 4. Forward: only requests no terminal rule answered reach the upstream.
            None => match self.forward(req, &ids).await {
                Ok(response) => (response, Outcome::Forwarded, String::new()),
                Err(failure) => {
                    let kind = failure.kind().to_string();
                    (failure.into_response(), Outcome::UpstreamError, kind)
                }
            },
        };

        // The response carries the ids, which rules fired and the configured headers, whatever
        // produced it: the client can correlate every answer, injected or not.
        let headers = response.headers_mut();
        ids.insert_into(headers);
        if !fired.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&fired.join(", ")) {
                headers.insert(X_TRACEFORGE_FAULT, value);
            }
        }
        for (name, value) in &self.config.add_response_headers {
            headers.insert(name.clone(), value.clone());
        }

        // 5. Count last, when the outcome is known.
        let status = response.status().as_u16();
        // Debug, not info: the proxy sits on the hot path of load tests.
        tracing::debug!(
            trace_id = %ids.trace_id,
            request_id = %ids.request_id,
            faults = %fired.join(", "),
            status,
            "proxied request"
        );
        flight.finish(outcome, status, &detail);
        response
    }

    fn metrics_response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(Full::new(Bytes::from(self.metrics.encode())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        full(response)
    }

    /// Sends the request on to the upstream and returns its response, hop-by-hop headers removed.
    async fn forward(
        &self,
        req: Request<Incoming>,
        ids: &Ids,
    ) -> Result<Response<ProxyBody>, ForwardError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = self.upstream_uri(&parts.uri)?;
        // The upstream connection is ours, not the client's: its framing and options are ours too.
        headers::strip_hop_by_hop(&mut parts.headers);
        // Like nginx's default `proxy_pass`: the upstream sees its own name in Host.
        if let Some(host) = self
            .upstream
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
        ids.insert_into(&mut parts.headers);
        parts.version = Version::HTTP_11;
        let upstream_req = Request::from_parts(parts, body.boxed());

        let timeout = self.config.upstream_timeout;
        let response = match tokio::time::timeout(timeout, self.client.request(upstream_req)).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(if e.is_connect() {
                    ForwardError::Unreachable(error_chain(&e))
                } else {
                    ForwardError::Failed(error_chain(&e))
                });
            }
            Err(_) => return Err(ForwardError::Timeout(timeout)),
        };
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }

    /// The upstream's scheme and authority, its base path, then the request's path and query.
    fn upstream_uri(&self, original: &Uri) -> Result<Uri, ForwardError> {
        let base = self.upstream.path().trim_end_matches('/');
        let path_and_query = original.path_and_query().map_or("/", |pq| pq.as_str());
        let scheme = self.upstream.scheme_str().unwrap_or("http");
        let authority = self
            .upstream
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        format!("{scheme}://{authority}{base}{path_and_query}")
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| ForwardError::Failed(e.to_string()))
    }
}

/// Why forwarding failed, and the response that says so.
#[derive(Debug)]
enum ForwardError {
    /// Could not connect (refused, unresolvable, unreachable): 502.
    Unreachable(String),
    /// Connected, but the exchange failed (reset, malformed response): 502.
    Failed(String),
    /// No response head within the configured timeout: 504.
    Timeout(std::time::Duration),
}

impl ForwardError {
    /// The `kind` label of `traceforge_proxy_upstream_errors_total`.
    fn kind(&self) -> &'static str {
        match self {
            ForwardError::Unreachable(_) => "unreachable",
            ForwardError::Failed(_) => "failed",
            ForwardError::Timeout(_) => "timeout",
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        let response = match self {
            ForwardError::Unreachable(detail) => json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": "upstream unreachable", "detail": detail}),
            ),
            ForwardError::Failed(detail) => json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": "upstream request failed", "detail": detail}),
            ),
            ForwardError::Timeout(timeout) => json_response(
                StatusCode::GATEWAY_TIMEOUT,
                &json!({
                    "error": "upstream timeout",
                    "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                }),
            ),
        };
        full(response)
    }
}

/// The synthetic answer of an error or drop rule; never forwarded.
fn synthetic(rule: &str, kind: &str, status: u16) -> Response<ProxyBody> {
    // hyper cannot send a 1xx as a final response; validation allows 100-599, so fall back to 500.
    let code = StatusCode::from_u16(status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(
        code,
        &json!({"error": "fault injected", "rule": rule, "kind": kind, "status": code.as_u16()}),
    );
    response
        .headers_mut()
        .insert(X_FAULT_INJECTED, HeaderValue::from_static("traceforge"));
    full(response)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    crate::upstream::json_response(status, value)
}

fn full(response: Response<Full<Bytes>>) -> Response<ProxyBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// An error and its sources on one line: hyper's top-level messages alone say little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Serves the proxy on one connection of any transport until it closes.
pub async fn serve_connection<IO, C>(io: IO, proxy: Arc<Proxy<C>>, shutdown: Shutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Connect + Clone + Send + Sync + 'static,
{
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req).await) }
    });
    server::serve_connection(io, service, shutdown).await;
}

/// Binds `listen` and runs the proxy until the returned handle is shut down or dropped.
pub async fn spawn(listen: SocketAddr, options: ProxyOptions) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(listen).await?;
    let proxy = Arc::new(Proxy::new(options)?);
    server::spawn_tcp(listener, move |stream, shutdown| {
        serve_connection(stream, proxy.clone(), shutdown)
    })
}
