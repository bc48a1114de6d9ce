//! The fault-injecting proxy: ids -> decide -> apply the fault -> forward -> count, one request at a
//! time, plus its own Prometheus endpoint at `GET /metrics`.
//!
//! The service is generic over the connection it serves ([`serve_connection`]) and over the
//! connector that reaches the upstream ([`Proxy::with_connector`]); TCP is what [`spawn`] uses today.
//!
//! What each fault does on the wire (see [`Effect`]):
//! - `delay`: the request waits before anything else; delays of several rules add up.
//! - `error`: a synthetic response (the rule's status, body, headers and `Retry-After`).
//! - `drop`: a synthetic `503`.
//! - `reset`: no response; the connection is closed at once, with a TCP RST (`SO_LINGER` 0).
//!   Over HTTP/2 only the request's stream is reset (RST_STREAM, INTERNAL_ERROR).
//! - `hang`: no response until the client gives up; with a cap, a synthetic `504` after it.
//! - `truncate`: the upstream's status and headers (its `Content-Length` kept), the first N body
//!   bytes, then the connection is closed. Over HTTP/2 the stream is reset instead (RST_STREAM,
//!   INTERNAL_ERROR) once those bytes are flushed.
//! - `throttle`: the upstream's body paced at N bytes per second.
//! - `stream`: a server-sent event stream passed on event by event, cut like `truncate`.
//! - `headers`: header changes on the request sent upstream, or on the response sent back.
//! - `status`: the upstream's status replaced, its headers and body kept.
//! - `rst_stream`: no response; the HTTP/2 stream is reset with the rule's code (HTTP/1.1: the
//!   connection is closed).
//! - `goaway`: forwarded and answered as usual, then the client's connection is shut down
//!   gracefully: over HTTP/2 a GOAWAY (streams under way finish, new ones are refused), over
//!   HTTP/1.1 `Connection: close` on the response.
//!
//! - `corrupt`: the upstream's body with bytes replaced (length kept), or a JSON body cut off
//!   inside a string or given a value of the wrong type (`Content-Length` set to match); see
//!   `corrupt`.
//! - `garbage`: no HTTP response: `size` seeded random bytes on the raw connection, then a clean
//!   close ([`ConnectionControl::close_with`]). Over HTTP/2 a `200` head, the bytes as the body,
//!   then the stream reset (INTERNAL_ERROR).
//! - `empty`: no response at all: the connection closed cleanly (a FIN, after reading what the
//!   client still sends, so unread bytes do not turn it into a RST). Over HTTP/2 the stream is
//!   reset with NO_ERROR before any head.
//! - `slow_read`: the client's request body read at N bytes per second (the upstream gets all of
//!   it; the client feels backpressure).
//! - `slow_close`: forwarded and answered, then over HTTP/1.1 `Connection: close` and the FIN
//!   held back by the delay ([`ConnectionControl::linger`]); over HTTP/2 the stream's end
//!   (END_STREAM) held back by the delay.
//!
//! Every fault acts on its own request only: over HTTP/2, the other streams of the connection
//! go on untouched (a `goaway` lets them finish).
//!
//! Rules with a condition on the upstream's response (`match.response_status`,
//! `match.response_header`) are decided in step 5, on the upstream's own head (before any status
//! or header rewrite), with the request's facts (`asked`). Their delays hold the head; a terminal
//! one (`error`, `drop`, `reset`) replaces the upstream's answer as a request rule's would; the
//! others join the request's steps, after them, and steps 6 to 8 apply them. A `101` is left alone.
//!
//! Headers the load generator and users rely on:
//! - [`wire::FAULT`] on every response where at least one rule fired (delays included): the
//!   fired rule names in firing order, `slow-api, api-503`. On a truncated response it comes with
//!   the head, before the cut; a reset has no response to carry it. `x-traceforge-fault-kind`
//!   gives the kind of each, in the same order (`delay, error`).
//! - [`X_FAULT_INJECTED`]` = <rule name>` on synthetic responses (error, drop, hang's 504). Unless
//!   an error rule gives its own body, the JSON body names the rule too:
//!   `{"error":"fault injected","rule":"api-503","kind":"error","status":503}`.
//! - `X-Trace-Id` and `X-Request-Id` on every response, and sent upstream (see [`crate::ids`]).
//! - The request header `x-traceforge-fault` is a control header: it is never forwarded, whether
//!   or not header-controlled faults are on. A malformed one is ignored, logged at debug level and
//!   explained in the [`wire::FAULT_ERROR`] response header.
//! - `x-traceforge-index` and `x-traceforge-attempt` key the proxy's decisions; they reach the
//!   upstream only with `forward_traceforge_headers`.
//!
//! Whose fault a failure is decides its status and its counter:
//! - the upstream's (unreachable, failed, no head in time): 502 or 504, `upstream_errors_total`;
//!   a body it stalls past the read timeout closes the client's connection mid-body.
//! - the client's (no `Host`, a malformed body, a body stalled past the client body timeout): 400
//!   or 408, `client_errors_total`, and the connection is closed when its body was the trouble.
//! - the proxy's own (no file descriptor, port or memory left for the upstream connection): 503,
//!   `proxy_errors_total`. Not 502: nothing is wrong with the upstream, and a dashboard or a retry
//!   policy that blames it would look in the wrong place. 503 says "this hop is overloaded, try
//!   again", which is what it is; nginx answers 500 here, which clients do not retry.
//!
//! The steps of a request are in [`Proxy::handle`], here; the rest by concern: `forward` (step 5:
//! what the upstream sees, its timeout, whose fault a failed exchange was), `body` (the body
//! faults and the client's upload), `corrupt` (the `corrupt` fault's bodies), `broken` (the
//! `garbage` bytes and the HTTP/2 bodies of `garbage` and `slow_close`), `headers` (hop-by-hop
//! headers) and [`metrics`]. [`control`] is the API of `traceforge proxy --control`, which changes
//! the rules while the proxy runs.

mod asked;
mod body;
mod broken;
pub mod control;
mod corrupt;
mod events;
mod forward;
mod headers;
pub mod metrics;
pub mod own;
mod websocket;

pub use headers::strip_hop_by_hop;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::fault::live::LiveRules;
use crate::fault::{Decision, Effect, ErrorReply, FaultPlan, RequestFacts, Step};
use crate::ids::{IdSource, Ids, TRACEPARENT};
use crate::observe::{Arrival, Exchange, Observer};
use crate::record::CallError;
use crate::record::calls::{CallRecorder, Slot};
use crate::scenario::ProxyConfig;
use crate::server::{self, ClientTimeouts, ConnectionControl, Listening, Shutdown};
use crate::wire;
use asked::Asked;
use body::{Cut, Ending, FaultBody, Pace, Upload};

pub use metrics::{Disposition, Metrics};

/// Marks a synthetic response (error, drop, hang's 504); its value names the rule.
pub const X_FAULT_INJECTED: HeaderName = HeaderName::from_static("x-fault-injected");

/// Response bodies: streamed from the upstream, or small synthetic ones.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The error of a streamed body: the upstream's, or its read timeout.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the proxy forwards to and which faults it injects.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `http://host:port`, optionally with a base path that prefixes every forwarded path.
    pub upstream: Uri,
    pub plan: Arc<FaultPlan>,
    pub config: ProxyConfig,
    /// A named proxy in front of a service's dependency: every call is recorded here and its
    /// decisions key on the call's trace context and ordinal (see [`crate::record::calls`]),
    /// not on `x-traceforge-index`.
    pub calls: Option<Arc<CallRecorder>>,
    /// Where each request's record goes (the request log, spans); `None` keeps no record.
    pub observer: Option<Arc<Observer>>,
}

/// The proxy's shared state, one per server: the plan, the pooled upstream client, the metrics.
#[derive(Debug)]
pub struct Proxy<C = HttpsConnector<HttpConnector>> {
    upstream: Uri,
    /// The fault rules: the starting plan, or rules the control API changes. Each request loads
    /// them once (see [`Proxy::decide`]); they also hold the clock time windows count from and
    /// the arrival count that stands in for a missing request index.
    plan: Arc<LiveRules>,
    config: ProxyConfig,
    ids: IdSource,
    client: Client<C, Upload>,
    /// HTTP/2 only: for every request with `upstream.http2` but WebSocket upgrades, and for gRPC
    /// calls that arrived over HTTP/2 (gRPC needs HTTP/2 end to end: its status travels in
    /// trailers), also to a clear-text upstream (h2c with prior knowledge).
    client_h2: Client<C, Upload>,
    /// Opens a client connection's own upstream connection for HTTP/1.1 ([`own`]); without one,
    /// every request goes through the pooled client.
    dialer: Option<own::Dialer>,
    /// Upstream connections whose client connection ended, for the next one.
    idle: Arc<own::Idle>,
    metrics: Arc<Metrics>,
    calls: Option<Arc<CallRecorder>>,
    observer: Option<Arc<Observer>>,
}

impl Proxy<HttpsConnector<HttpConnector>> {
    /// A proxy that reaches its upstream over TCP, or TLS for an `https://` upstream, trusting it
    /// as [`ProxyConfig::upstream_tls`] says.
    pub fn new(options: ProxyOptions) -> std::io::Result<Self> {
        let connector = crate::tls::https_connector(&options.config.upstream_tls)?;
        // The HTTP/2 client asks an https:// upstream for h2 alone: one that cannot speak it
        // fails the handshake rather than getting HTTP/2 bytes it cannot read.
        let connector_h2 = crate::tls::https_connector_h2(&options.config.upstream_tls)?;
        let dialer = own::Dialer::new(connector.clone());
        Ok(Self::with_connectors(options, connector, connector_h2)?.with_dialer(dialer))
    }
}

impl<C> Proxy<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A proxy that reaches its upstream through `connector` (TCP, or an in-memory transport).
    pub fn with_connector(options: ProxyOptions, connector: C) -> std::io::Result<Self> {
        Self::with_connectors(options, connector.clone(), connector)
    }

    /// A proxy whose HTTP/2 client (`upstream.http2`, gRPC) connects through `connector_h2`.
    fn with_connectors(
        options: ProxyOptions,
        connector: C,
        connector_h2: C,
    ) -> std::io::Result<Self> {
        let metrics = Metrics::new(options.plan.rules()).map_err(std::io::Error::other)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        let client_h2 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(connector_h2);
        Ok(Proxy {
            upstream: options.upstream,
            // Requests that arrive without ids get them from the plan's seed: the one seed of a run.
            ids: IdSource::new(options.plan.seed(), "proxy"),
            plan: Arc::new(LiveRules::fixed(options.plan)),
            config: options.config,
            client,
            client_h2,
            dialer: None,
            idle: Arc::default(),
            metrics: Arc::new(metrics),
            calls: options.calls,
            observer: options.observer.filter(|o| o.is_active()),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Gives each HTTP/1.1 client connection an upstream connection of its own, opened with
    /// `dialer` (the connector's own service), instead of hyper's shared pool.
    pub fn with_dialer(mut self, dialer: own::Dialer) -> Self {
        self.dialer = Some(dialer);
        self
    }

    /// Serves the rules `live` holds instead of its options' plan: the control API changes them
    /// while the proxy runs (see [`control`]).
    pub fn with_live_rules(mut self, live: Arc<LiveRules>) -> Self {
        self.plan = live;
        self
    }

    /// Answers one request on the connection `conn`. Never fails: every problem is an HTTP
    /// response, except for the faults whose point is to give none (`reset`, `hang`): their
    /// future never completes, and the connection ends it.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ConnectionControl,
    ) -> Response<ProxyBody> {
        self.respond(req, conn, &Shutdown::never(), None).await
    }

    /// [`Proxy::handle`] on a connection of a server that stops with `shutdown`: an upgraded
    /// WebSocket the request starts ends with the server.
    async fn respond(
        &self,
        mut req: Request<Incoming>,
        conn: &ConnectionControl,
        shutdown: &Shutdown,
        own: Option<&own::OwnUpstream>,
    ) -> Response<ProxyBody> {
        // A request that is not HTTP/1.1 as sent is refused before anything reads it (RFC 9112
        // section 3.2): which Host would we forward it for? Counted, since it came as traffic.
        if let Some(problem) = server::host_problem(&req) {
            let mut flight = self.metrics.start();
            let mut response = json_response(StatusCode::BAD_REQUEST, &json!({"error": problem}));
            // Like any malformed request: what else it got wrong is anyone's guess.
            close_after(&mut response);
            flight.finish(Disposition::ClientError, 400, "host");
            return full(response);
        }
        // The proxy's own endpoint, answered before anything else: it is not traffic, so it gets
        // no ids, no faults and no counts.
        if req.method() == Method::GET && req.uri().path() == "/metrics" {
            return self.metrics_response();
        }
        // A WebSocket over HTTP/2 (RFC 8441) is played as the HTTP/1.1 upgrade it stands for: the
        // same rules match it, the upstream gets an upgrade, and the client its `200` (step 9).
        let h2_websocket = crate::websocket::is_extended_connect(&req);
        if h2_websocket {
            crate::websocket::as_upgrade(&mut req);
        }
        // Other tunnels have no path to forward; refusing them plainly beats forwarding nonsense.
        if req.method() == Method::CONNECT {
            return full(json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "CONNECT is not supported by the TraceForge proxy"}),
            ));
        }
        // Counting starts now; the guard records the outcome, or a cancellation if the client
        // disconnects and hyper drops this future. It lives until the response body is done.
        let mut flight = self.metrics.start();
        // HTTP/2 streams share their connection: faults that end an exchange end only the stream.
        let http2 = req.version() == hyper::Version::HTTP_2;

        // 1. Ids first: the fault decision keys on the request id, so it must exist before step 2.
        // A named proxy also finds which load request the call belongs to, and its ordinal there.
        let ids = self.ids.assign(req.headers());
        let mut slot = self
            .calls
            .as_ref()
            .map(|calls| calls.begin(req.headers(), req.method().as_str(), &path_and_query(&req)));
        if let Some(observer) = &self.observer {
            let key = self.stream_key(&ids, slot.as_ref());
            flight.observe(Exchange::begin(
                observer,
                Arrival {
                    trace_id: &ids.trace_id,
                    request_id: &ids.request_id,
                    traceparent: req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()),
                    key: &key,
                    method: req.method().as_str(),
                    path: &path_and_query(&req),
                },
            ));
        }

        // 2. Decide: a pure function of the seed, the rule, the request id and the request index the
        // load generator sends, so arrival order cannot change it. Other clients get an arrival count.
        // A service's call is decided by its request and ordinal instead.
        let (mut decision, asked) = self.decide(&req, &ids, slot.as_ref());
        let mut fired_names: Vec<String> = match &slot {
            Some(_) => decision
                .fired_rules()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            None => Vec::new(),
        };
        if let Some(exchange) = flight.exchange() {
            exchange.fired(decision.steps.iter().map(|s| (&*s.name, s.effect.kind())));
        }
        let mut fired = decision.fired_rules().join(", ");
        let mut kinds = decision.fired_kinds().join(", ");
        for step in &decision.steps {
            self.metrics.fault_fired(&step.name, step.effect.kind());
            if matches!(step.effect, Effect::Delay(_)) {
                self.metrics.delay_fired(&step.name);
            }
        }
        if let Some(error) = &decision.header_error {
            // The header is the client's to fix; the request goes on without it.
            tracing::debug!(request_id = %ids.request_id, %error, "ignored x-traceforge-fault");
        }

        // The steps the response rules add come after these.
        let asked_steps = decision.steps.len();

        // 3. Delays add up and come before anything else, so a delayed error or body fault is slow
        // too. If the client disconnects here, hyper drops this future: nothing is forwarded and
        // the guard counts a cancellation.
        let delay = decision.total_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }

        // A WebSocket upgrade (HTTP/1.1 only: an HTTP/1.0 request cannot switch protocols) keeps its
        // `Connection: upgrade` upstream, and the client's side of it is taken now, before the
        // request is forwarded without it. Faults before forwarding apply to it as to any request.
        let upgrade = (req.version() == hyper::Version::HTTP_11 || h2_websocket)
            && crate::websocket::is_upgrade(req.method(), req.headers());
        let upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        // 4. A terminal fault answers (or refuses to answer) without forwarding.
        let (mut response, outcome, detail) = match decision.terminal() {
            Some(step) => {
                before_terminal(slot.as_mut(), step, &fired_names);
                let key = self.stream_key(&ids, slot.as_ref());
                let (response, outcome) = self.terminal(step, &key, &mut flight, conn, http2).await;
                (response, outcome, step.name.to_string())
            }
            // 5. Forward: only requests no terminal rule answered reach the upstream. Rules on
            // its response are decided when its head arrives, their steps after the request's.
            None => match self
                .forward(
                    req,
                    &ids,
                    &mut decision,
                    asked.as_ref(),
                    upgrade.is_some(),
                    flight.exchange(),
                    own,
                )
                .await
            {
                Ok((upstream, _)) if !decision.forwards() => {
                    // A response rule replaced the upstream's answer, as a terminal rule would.
                    drop(upstream);
                    (fired, kinds, fired_names) =
                        self.response_fired(&decision, asked_steps, &mut flight, slot.is_some());
                    let step = decision.steps.last().filter(|s| s.effect.is_terminal());
                    match step {
                        Some(step) => {
                            before_terminal(slot.as_mut(), step, &fired_names);
                            let key = self.stream_key(&ids, slot.as_ref());
                            let (response, outcome) =
                                self.terminal(step, &key, &mut flight, conn, http2).await;
                            (response, outcome, step.name.to_string())
                        }
                        // `forwards()` says there is one.
                        None => (
                            synthetic("response", "error", 500),
                            Disposition::InjectedError,
                            String::new(),
                        ),
                    }
                }
                Ok((mut response, switched)) => {
                    if decision.steps.len() > asked_steps {
                        (fired, kinds, fired_names) = self.response_fired(
                            &decision,
                            asked_steps,
                            &mut flight,
                            slot.is_some(),
                        );
                    }
                    if h2_websocket {
                        response = websocket::over_h2(response, switched.is_some());
                    }
                    // 9. The upstream switched protocols: join the two connections once the
                    // client has its `101` (its `200` over HTTP/2), under the stream faults that
                    // fired.
                    if let (Some(client), Some(upstream)) = (upgrade, switched) {
                        let faults = crate::fault::stream::StreamFaults::new(
                            self.plan.seed(),
                            &self.stream_key(&ids, slot.as_ref()),
                            &decision,
                        );
                        websocket::spawn_tunnel(
                            client,
                            upstream,
                            faults,
                            shutdown.clone(),
                            ids.request_id.clone(),
                        );
                    }
                    (response, Disposition::Forwarded, String::new())
                }
                Err(failure) => {
                    let (outcome, kind) = (failure.outcome(), failure.kind().to_string());
                    if outcome == Disposition::ProxyError {
                        // Unlike an upstream's failure, this one is ours to fix.
                        tracing::warn!(request_id = %ids.request_id, error = %failure, "proxy error");
                    }
                    (failure.into_response(), outcome, kind)
                }
            },
        };

        // 6. The response carries the ids, which rules fired and the configured headers, whatever
        // produced it: the client can correlate every answer, injected or not.
        let headers = response.headers_mut();
        ids.insert_into(headers);
        if !fired.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&fired) {
                headers.insert(wire::FAULT, value);
            }
            if let Ok(value) = HeaderValue::from_str(&kinds) {
                headers.insert(wire::FAULT_KIND, value);
            }
        }
        if let Some(error) = &decision.header_error {
            if let Ok(value) = HeaderValue::from_str(error) {
                headers.insert(wire::FAULT_ERROR, value);
            }
        }
        for (name, value) in &self.config.add_response_headers {
            headers.insert(name.clone(), value.clone());
        }
        // A `goaway` sends the client elsewhere after this response, whatever produced it; a
        // `101` is left alone: its connection becomes the WebSocket.
        if let Some(step) = decision.go_away() {
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                self.metrics.went_away(&step.name);
                if http2 {
                    // The GOAWAY goes out before this response, so the client knows the
                    // connection is going before it has an answer it could reuse it after. (The
                    // streams under way, this one included, still finish.)
                    conn.go_away().await;
                } else {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
        }

        // A `slow_close` holds the connection open after a forwarded response: over HTTP/1.1 the
        // response says `Connection: close` and the FIN waits (step 8 does HTTP/2).
        let slow_close = decision
            .slow_close()
            .filter(|_| outcome == Disposition::Forwarded)
            .filter(|_| response.status() != StatusCode::SWITCHING_PROTOCOLS);
        if let Some(delay) = slow_close {
            if !http2 {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                conn.linger(delay);
            }
        }

        // 7. Count when the outcome is known, at the response head.
        let status = response.status().as_u16();
        // Debug, not info: the proxy sits on the hot path of load tests.
        tracing::debug!(
            trace_id = %ids.trace_id,
            request_id = %ids.request_id,
            faults = %fired,
            status,
            "proxied request"
        );
        flight.finish(outcome, status, &detail);
        if let Some(slot) = slot.as_mut() {
            // A gRPC error comes trailers-only: its status is in the head.
            if let Some(code) = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
            {
                slot.set_grpc_status(code);
            }
            slot.finish(Some(status), None, fired_names);
        }

        // 8. Body faults apply to forwarded bodies only. The body keeps the flight and the decision
        // (its `max_active` slots) until it is done, so both cover the whole download.
        if outcome != Disposition::Forwarded {
            // A synthetic body is whole already: the record can count it now.
            flight.sent(
                hyper::body::Body::size_hint(response.body())
                    .exact()
                    .unwrap_or(0),
            );
            return response;
        }
        let corruptions: Vec<(Arc<str>, crate::spec::CorruptMode, f64)> = decision
            .corruptions()
            .map(|(rule, mode, rate)| (rule.clone(), mode, rate))
            .collect();
        if !corruptions.is_empty() {
            let key: Arc<str> = Arc::from(self.stream_key(&ids, slot.as_ref()));
            for (rule, mode, rate) in &corruptions {
                response = corrupt::apply(
                    response,
                    self.plan.seed(),
                    rule,
                    &key,
                    *mode,
                    *rate,
                    &self.metrics,
                )
                .await;
            }
        }
        let cut = self.cut(&decision, conn, http2);
        let pace = self.pace(&decision);
        let events = decision
            .stream()
            .filter(|_| events::is_event_stream(response.headers()));
        if events.is_some() {
            // A cut changes the length: the client must not wait for bytes that never come.
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
        response.map(|body| {
            let body = match events {
                Some((after_events, event_delay)) => events::EventBody::new(
                    body,
                    after_events,
                    event_delay,
                    Ending::new(conn.clone(), http2),
                )
                .boxed(),
                None => body,
            };
            let body = FaultBody::new(body, cut, pace, flight, decision).boxed();
            match slow_close {
                Some(delay) if http2 => broken::Linger::new(body, delay).boxed(),
                _ => body,
            }
        })
    }

    /// The request id stream faults key on: the one its other faults used (a named proxy's call
    /// key, or the request id).
    fn stream_key(&self, ids: &Ids, slot: Option<&Slot>) -> String {
        slot.map_or_else(|| ids.request_id.clone(), Slot::key)
    }

    /// The decision for one request, from its facts: a service's call is keyed on its load request
    /// and ordinal; anything else on its request id and the load generator's index and attempt
    /// (an arrival count for clients that send no index). With response rules in the plan, the
    /// facts are kept for them too.
    ///
    /// The rules are loaded once, here: the whole decision, the response rules' included, comes
    /// from one set of rules, the one before or the one after any change the control API makes
    /// meanwhile.
    fn decide(
        &self,
        req: &Request<Incoming>,
        ids: &Ids,
        slot: Option<&Slot>,
    ) -> (Decision, Option<Asked>) {
        let rules = self.plan.load();
        let (key, index, attempt) = match slot {
            Some(slot) => (
                std::borrow::Cow::Owned(slot.key()),
                slot.index(),
                slot.ordinal,
            ),
            None => (
                std::borrow::Cow::Borrowed(ids.request_id.as_str()),
                wire::index(req.headers()).unwrap_or_else(|| rules.arrival()),
                wire::attempt(req.headers()).unwrap_or(0),
            ),
        };
        let facts = RequestFacts {
            method: req.method(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            fault_header: self
                .config
                .header_faults
                .then(|| req.headers().get(wire::FAULT))
                .flatten(),
            request_id: &key,
            index,
            attempt,
            elapsed: rules.elapsed(),
        };
        let plan = rules.plan();
        let asked = plan
            .has_response_rules()
            .then(|| Asked::new(&facts, plan.clone()));
        (plan.decide(&facts), asked)
    }

    /// Counts the steps the response rules added to `decision` (after its first `asked`), adds
    /// them to the request's record, and gives the fired-rule texts again: the names and kinds for
    /// the response headers, and the names for a service's call (`named`), in firing order.
    fn response_fired(
        &self,
        decision: &Decision,
        asked: usize,
        flight: &mut metrics::Flight,
        named: bool,
    ) -> (String, String, Vec<String>) {
        let added = asked::response_steps(decision, asked);
        for step in added {
            self.metrics.fault_fired(&step.name, step.effect.kind());
            if matches!(step.effect, Effect::Delay(_)) {
                self.metrics.delay_fired(&step.name);
            }
        }
        if let Some(exchange) = flight.exchange() {
            exchange.fired_on_response(added.iter().map(|s| (&*s.name, s.effect.kind())));
        }
        let names = if named {
            decision
                .fired_rules()
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            Vec::new()
        };
        (
            decision.fired_rules().join(", "),
            decision.fired_kinds().join(", "),
            names,
        )
    }

    /// Applies a terminal fault: the synthetic response of an error, a drop or a capped hang.
    /// A reset over HTTP/1.1 and an uncapped hang never return: the connection ends this future.
    async fn terminal(
        &self,
        step: &Step,
        key: &str,
        flight: &mut metrics::Flight,
        conn: &ConnectionControl,
        http2: bool,
    ) -> (Response<ProxyBody>, Disposition) {
        let rule: &str = &step.name;
        match &step.effect {
            Effect::Error(reply) => (error_reply(rule, reply), Disposition::InjectedError),
            Effect::Quota(reply) => (
                error_reply_of(rule, "quota", reply),
                Disposition::InjectedError,
            ),
            Effect::Drop => (synthetic(rule, "drop", 503), Disposition::Dropped),
            Effect::RstStream { code } => {
                flight.settle(Disposition::Reset, rule);
                let mut response = synthetic(rule, "rst_stream", 500);
                // The connection code turns this marker into the reset (see `serve_connection`).
                response.extensions_mut().insert(ResetStream(*code));
                (response, Disposition::Reset)
            }
            Effect::Reset if http2 => {
                // Only this stream: the connection's other streams are not this request's.
                flight.settle(Disposition::Reset, rule);
                let mut response = synthetic(rule, "reset", 500);
                response
                    .extensions_mut()
                    .insert(ResetStream(u32::from(body::RESET_REASON)));
                (response, Disposition::Reset)
            }
            Effect::Reset => {
                // Counted before the connection goes, since this future goes with it.
                flight.settle(Disposition::Reset, rule);
                conn.reset();
                let never: Infallible = std::future::pending().await;
                match never {}
            }
            Effect::Garbage { size } => {
                // Counted before the connection goes (HTTP/1.1), since this future goes with it.
                flight.settle(Disposition::Garbage, rule);
                let bytes = broken::garbage(self.plan.seed(), rule, key, *size);
                if http2 {
                    // Random bytes on a shared connection would break its other streams: this
                    // stream gets them as its body, after a `200` head, then its reset.
                    let body = broken::GarbageBody::new(bytes, Ending::new(conn.clone(), true));
                    let mut response = Response::new(body.boxed());
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    mark_injected(response.headers_mut(), rule);
                    return (response, Disposition::Garbage);
                }
                conn.close_with(bytes);
                let never: Infallible = std::future::pending().await;
                match never {}
            }
            Effect::Empty if http2 => {
                // No head at all: the stream is reset before one, with NO_ERROR (a clean end,
                // where `reset` says INTERNAL_ERROR).
                flight.settle(Disposition::Empty, rule);
                let mut response = synthetic(rule, "empty", 500);
                response
                    .extensions_mut()
                    .insert(ResetStream(u32::from(broken::EMPTY_REASON)));
                (response, Disposition::Empty)
            }
            Effect::Empty => {
                flight.settle(Disposition::Empty, rule);
                conn.close_with(Bytes::new());
                let never: Infallible = std::future::pending().await;
                match never {}
            }
            Effect::Hang { cap } => {
                // Counted when the hang starts: it ends with the client giving up (this future is
                // dropped) or with the cap's 504, and either way it was a hang.
                flight.settle(Disposition::Hang, rule);
                match cap {
                    Some(cap) => tokio::time::sleep(*cap).await,
                    None => {
                        let never: Infallible = std::future::pending().await;
                        match never {}
                    }
                }
                (synthetic(rule, "hang", 504), Disposition::Hang)
            }
            // `Decision::terminal` never returns the others; were it to, a plain 500 says so.
            other => (
                synthetic(rule, other.kind(), 500),
                Disposition::InjectedError,
            ),
        }
    }

    /// The body cut of a forwarded response: the smallest `after_bytes` that fired, credited to
    /// the first rule that asked for it.
    fn cut(&self, decision: &Decision, conn: &ConnectionControl, http2: bool) -> Option<Cut> {
        let after_bytes = decision.truncate_after()?;
        let rule = decision.steps.iter().find_map(|s| match s.effect {
            Effect::Truncate { after_bytes: n } if n == after_bytes => Some(s.name.clone()),
            _ => None,
        })?;
        Some(Cut {
            rule,
            remaining: after_bytes,
            ending: Ending::new(conn.clone(), http2),
        })
    }

    /// The body pacing of a forwarded response: the lowest rate that fired.
    fn pace(&self, decision: &Decision) -> Option<Pace> {
        let rate = decision.throttle()?;
        if let Some(step) = decision.steps.iter().find(|s| {
            matches!(s.effect, Effect::Throttle { bytes_per_second } if bytes_per_second == rate)
        }) {
            self.metrics.body_throttled(&step.name);
        }
        Some(Pace::new(rate))
    }

    fn metrics_response(&self) -> Response<ProxyBody> {
        if let Some(observer) = &self.observer {
            self.metrics
                .observed_drops(observer.log_lines_dropped(), observer.spans_dropped());
        }
        let mut response = Response::new(Full::new(Bytes::from(self.metrics.encode())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        full(response)
    }
}

/// Records a service's call before a terminal fault that may never return (a reset, a hang).
fn before_terminal(slot: Option<&mut Slot>, step: &Step, fired_names: &[String]) {
    if let Some(slot) = slot {
        match step.effect {
            Effect::Reset | Effect::RstStream { .. } => {
                slot.finish(None, Some(CallError::Reset), fired_names.to_vec())
            }
            Effect::Garbage { .. } => {
                slot.finish(None, Some(CallError::Garbage), fired_names.to_vec())
            }
            Effect::Empty => slot.finish(None, Some(CallError::Empty), fired_names.to_vec()),
            Effect::Hang { cap: None } => {
                slot.finish(None, Some(CallError::Hang), fired_names.to_vec())
            }
            _ => {}
        }
    }
}

/// The path and query of a request, as a call record shows it.
fn path_and_query(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string())
}

/// Ends the connection after this response: the rest of the request body that failed cannot be
/// told apart from a next request.
fn close_after(response: &mut Response<Full<Bytes>>) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// A status a response can end with: hyper cannot send a 1xx as a final response, and
/// validation allows 100-599, so a 1xx becomes 500.
fn final_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The synthetic answer of a drop rule or a capped hang, and of error rules without a body of
/// their own: a JSON body naming the rule. Never forwarded.
fn synthetic(rule: &str, kind: &str, status: u16) -> Response<ProxyBody> {
    let code = final_status(status);
    let mut response = json_response(
        code,
        &json!({"error": "fault injected", "rule": rule, "kind": kind, "status": code.as_u16()}),
    );
    mark_injected(response.headers_mut(), rule);
    full(response)
}

/// The synthetic answer of an error rule: its status, its body (or the JSON one naming the rule),
/// `Retry-After`, then the rule's own headers, which win over the proxy's (`content-type`).
fn error_reply(rule: &str, reply: &ErrorReply) -> Response<ProxyBody> {
    error_reply_of(rule, "error", reply)
}

/// [`error_reply`] for a rule of `kind` (an `error`, or a `quota`'s 429).
fn error_reply_of(rule: &str, kind: &str, reply: &ErrorReply) -> Response<ProxyBody> {
    if let Some(grpc) = &reply.grpc {
        return grpc_reply(rule, reply, grpc);
    }
    let mut response = match &reply.body {
        None => synthetic(rule, kind, reply.status),
        Some(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body.clone())));
            *response.status_mut() = final_status(reply.status);
            // JSON when it is JSON, text otherwise; a rule's own content-type replaces this below.
            let content_type = if serde_json::from_str::<serde_json::Value>(body).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            mark_injected(response.headers_mut(), rule);
            full(response)
        }
    };
    let headers = response.headers_mut();
    if let Some(value) = reply.retry_after_value() {
        headers.insert(header::RETRY_AFTER, value);
    }
    for (name, value) in &reply.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// The answer of an error rule with `grpc_status`: what a gRPC server sends for a call that fails
/// at once ("trailers-only"): HTTP 200, `content-type: application/grpc`, `grpc-status` and
/// `grpc-message` (percent-encoded as gRPC asks) in the head, and no message.
fn grpc_reply(
    rule: &str,
    reply: &ErrorReply,
    grpc: &crate::fault::GrpcStatus,
) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let message = grpc
        .message
        .clone()
        .unwrap_or_else(|| format!("fault injected by TraceForge rule {rule}"));
    crate::upstream::insert_grpc_status(headers, grpc.code, Some(&message));
    mark_injected(headers, rule);
    if let Some(value) = reply.retry_after_value() {
        headers.insert(header::RETRY_AFTER, value);
    }
    for (name, value) in &reply.headers {
        headers.insert(name.clone(), value.clone());
    }
    full(response)
}

fn mark_injected(headers: &mut HeaderMap, rule: &str) {
    // Rule names are validated as header-safe; a name that is not still gets a marker.
    let value = HeaderValue::from_str(rule).unwrap_or(HeaderValue::from_static("traceforge"));
    headers.insert(X_FAULT_INJECTED, value);
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    crate::upstream::json_response(status, value)
}

fn full(response: Response<Full<Bytes>>) -> Response<ProxyBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// Marks the answer of a `rst_stream` fault, or of a `reset` over HTTP/2: reset the stream with
/// this HTTP/2 error code.
#[derive(Debug, Clone, Copy)]
struct ResetStream(u32);

/// Serves the proxy on one connection of any transport until it closes.
pub async fn serve_connection<IO, C>(io: IO, proxy: Arc<Proxy<C>>, shutdown: Shutdown)
where
    IO: server::Transport,
    C: Connect + Clone + Send + Sync + 'static,
{
    let timeouts = ClientTimeouts {
        header: proxy.config.client_header_timeout,
        body: proxy.config.client_body_timeout,
    };
    let tunnels = shutdown.clone();
    let make_service = move |conn: ConnectionControl| {
        // This client connection's upstream connection, for its HTTP/1.1 requests.
        let own = Arc::new(own::OwnUpstream::new(proxy.idle.clone()));
        service_fn(move |req| {
            let shutdown = tunnels.clone();
            let proxy = proxy.clone();
            let conn = conn.clone();
            let own = own.clone();
            async move {
                let response = proxy.respond(req, &conn, &shutdown, Some(&own)).await;
                // A `rst_stream` fault (or a `reset` over HTTP/2): an error instead of a response
                // makes hyper reset the HTTP/2 stream with the error's code (and close an
                // HTTP/1.1 connection).
                match response.extensions().get::<ResetStream>() {
                    Some(ResetStream(code)) => Err(h2::Error::from(h2::Reason::from(*code))),
                    None => Ok::<_, h2::Error>(response),
                }
            }
        })
    };
    server::serve_controlled(io, make_service, shutdown, timeouts).await;
}

/// Binds `listen` and runs the proxy until the returned handle is shut down or dropped.
pub async fn spawn(listen: SocketAddr, options: ProxyOptions) -> std::io::Result<Listening> {
    spawn_on(TcpListener::bind(listen).await?, options)
}

/// Runs the proxy on a bound listener (its address may be handed out before the proxy exists).
pub fn spawn_on(listener: TcpListener, options: ProxyOptions) -> std::io::Result<Listening> {
    let proxy = Arc::new(Proxy::new(options)?);
    server::spawn_tcp(listener, move |stream, shutdown| {
        serve_connection(stream, proxy.clone(), shutdown)
    })
}

/// [`spawn_on`] with TLS on the listener: clients speak `https://` to the proxy.
pub fn spawn_tls_on(
    listener: TcpListener,
    options: ProxyOptions,
    tls: &crate::tls::ServerTls,
) -> std::io::Result<Listening> {
    let proxy = Arc::new(Proxy::new(options)?);
    server::spawn_tls(listener, tls.acceptor.clone(), move |stream, shutdown| {
        serve_connection(stream, proxy.clone(), shutdown)
    })
}
