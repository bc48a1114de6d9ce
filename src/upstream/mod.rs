//! The demo upstream: the page in `static/`, `/api/resource`, `/api/echo`, `/api/bytes/<n>`,
//! `/api/events` (server-sent events at an interval), the WebSocket echo `/ws/echo`, the
//! scenario's extra routes, and a 404 for the rest. Every response carries `X-Trace-Id` and `X-Request-Id`.
//!
//! [`spawn`] serves it over TCP; [`serve_connection`] serves one connection of any transport, so a
//! virtual-time mode can run it over in-memory pipes.
//!
//! Static files and `/api/bytes/<n>` are streamed ([`UpstreamBody`]); request bodies are read with
//! the client body timeout (a 408 when the client stalls); an HTTP/1.1 request without `Host` gets
//! a 400. Each request is logged at debug level: the upstream sits on the hot path of load tests.

mod body;
mod static_files;
mod ws;

pub use body::{EventsBody, FileBody, UpstreamBody};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::ids::{IdSource, Ids};
pub use crate::scenario::Route;
use crate::server::{self, BodyError, ClientTimeouts, Listening, Shutdown, TimedBody};

/// The page served at `/` when no static directory is given, or it has no `index.html`.
pub const BUILTIN_INDEX: &str = include_str!("../../static/index.html");

/// What the demo upstream serves.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Extra routes from the scenario; they take precedence over the built-in ones.
    pub routes: Vec<Route>,
    /// Where `/static/...` files come from. `None` or a missing directory: only the built-in page.
    pub static_dir: Option<PathBuf>,
    /// Seeds the ids of requests that arrive without them.
    pub seed: u64,
    /// How long a client may take over a request head, or stall a request body.
    pub client_timeouts: ClientTimeouts,
}

/// The upstream's shared state, one per server.
#[derive(Debug)]
pub struct Upstream {
    routes: Vec<Route>,
    /// Canonical, so containment checks compare like with like.
    static_root: Option<PathBuf>,
    ids: IdSource,
    client_timeouts: ClientTimeouts,
    /// The page's template, read once ([`Upstream::reading_the_page_once`]); `None`: read from
    /// the static root on every request.
    page: Option<Page>,
}

impl Upstream {
    pub fn new(options: UpstreamOptions) -> Self {
        let static_root = options
            .static_dir
            .and_then(|dir| std::fs::canonicalize(dir).ok())
            .filter(|dir| dir.is_dir());
        Upstream {
            routes: options.routes,
            static_root,
            ids: IdSource::new(options.seed, "upstream"),
            client_timeouts: options.client_timeouts,
            page: None,
        }
    }

    /// The same upstream, with the page of `/` read now (blocking, like [`Upstream::new`]) rather
    /// than on every request: a virtual-time run serves it from memory, instead of a round trip
    /// through the blocking pool per request that also holds the paused clock back. The page is
    /// then the one on disk when the run began; a file that cannot be read is the built-in page,
    /// as on a request.
    pub fn reading_the_page_once(mut self) -> Self {
        let from_disk = self
            .static_root
            .as_ref()
            .and_then(|root| std::fs::read_to_string(root.join("index.html")).ok());
        self.page = Some(Page::new(from_disk.as_deref().unwrap_or(BUILTIN_INDEX)));
        self
    }

    /// Answers one request. Never fails: every problem is an HTTP response.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<UpstreamBody> {
        self.respond(req, &Shutdown::never()).await
    }

    /// [`Upstream::handle`] on a connection of a server that stops with `shutdown`: a WebSocket
    /// echo the request starts ends with the server.
    async fn respond(&self, req: Request<Incoming>, shutdown: &Shutdown) -> Response<UpstreamBody> {
        // The id middleware: whatever the route, the response carries the request's ids.
        let ids = self.ids.assign(req.headers());
        let method = req.method().clone();
        // For the log line: a clone shares the URI's bytes, where the path as a `String` would be
        // an allocation per request for a line that is off by default.
        let uri = req.uri().clone();
        let mut response = match server::host_problem(&req) {
            // Before routing: a server must refuse such a request whatever it asks for.
            Some(problem) => {
                let mut response =
                    json_response(StatusCode::BAD_REQUEST, &json!({"error": problem}));
                // Like any malformed request: what else it got wrong is anyone's guess.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response.map(Into::into)
            }
            None => self.route(req, &ids, shutdown).await,
        };
        ids.insert_into(response.headers_mut());
        // Debug, not info: a line per request is megabytes a minute under load.
        tracing::debug!(
            trace_id = %ids.trace_id,
            request_id = %ids.request_id,
            %method,
            path = %uri.path(),
            status = response.status().as_u16(),
            "upstream request"
        );
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        ids: &Ids,
        shutdown: &Shutdown,
    ) -> Response<UpstreamBody> {
        let path = req.uri().path();
        // Scenario routes first, so a scenario can reshape even the built-in paths.
        let route = self
            .routes
            .iter()
            .find(|r| r.path == path && (r.methods.is_empty() || r.methods.contains(req.method())));
        // The routes that read the request body themselves.
        match route {
            Some(route) => {
                if let Some(grpc) = &route.grpc {
                    return grpc_route(req, route, grpc, self.client_timeouts.body).await;
                }
            }
            // Any method on the echo route: tests and users use it to see exactly what arrived.
            None if path == "/api/echo" => {
                return echo(req, self.client_timeouts.body).await.map(Into::into);
            }
            None if path == ws::PATH => return ws::echo(req, shutdown.clone()).map(Into::into),
            None => {}
        }
        // Every other answer comes after the request body is read (and dropped): an answer sent
        // over an unread body leaves the connection unusable, and a client that pooled it (a
        // proxy) would fail its next request on it.
        let (parts, body) = req.into_parts();
        if let Err(e) = drain(body, self.client_timeouts.body).await {
            return unreadable_body(&e).map(Into::into);
        }
        if let Some(route) = route {
            return scenario_route(route).await.map(Into::into);
        }
        let path = parts.uri.path();
        let known = matches!(
            path,
            "/" | "/static/index.html" | "/api/resource" | EVENTS_PATH
        ) || path.starts_with("/static/")
            || path.starts_with(BYTES_PREFIX);
        if !known {
            return not_found(path).map(Into::into);
        }
        if let Some(refusal) = refuse_method(&parts.method, &[Method::GET, Method::HEAD]) {
            return refusal.map(Into::into);
        }
        match path {
            "/" | "/static/index.html" => self.page(ids).await.map(Into::into),
            "/api/resource" => json_response(
                StatusCode::OK,
                &json!({
                    "message": "hello from the TraceForge demo upstream",
                    "timestamp": rfc3339_now(),
                    "trace_id": ids.trace_id,
                    "request_id": ids.request_id,
                }),
            )
            .map(Into::into),
            EVENTS_PATH => events_response(parts.uri.query()),
            _ if path.starts_with(BYTES_PREFIX) => bytes_response(path),
            _ => self.static_file(path).await,
        }
    }

    async fn page(&self, ids: &Ids) -> Response<Full<Bytes>> {
        // Ids can come from client headers: escape them before they go into HTML.
        let (trace_id, request_id) = (escape_html(&ids.trace_id), escape_html(&ids.request_id));
        let html = match (&self.page, &self.static_root) {
            (Some(page), _) => page.fill(&trace_id, &request_id),
            (None, root) => {
                let from_disk = match root {
                    Some(root) => tokio::fs::read_to_string(root.join("index.html"))
                        .await
                        .ok(),
                    None => None,
                };
                fill_page(
                    from_disk.as_deref().unwrap_or(BUILTIN_INDEX),
                    &trace_id,
                    &request_id,
                )
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(html)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }

    /// A file under the static root, streamed: reading it whole first would hold every
    /// download's file in memory at once.
    async fn static_file(&self, path: &str) -> Response<UpstreamBody> {
        let Some(root) = &self.static_root else {
            return not_found(path).map(Into::into);
        };
        let rest = path.strip_prefix("/static/").unwrap_or_default();
        let Some(file) = static_files::resolve(root, rest).await else {
            return not_found(path).map(Into::into);
        };
        // The length of the file as opened, not as resolved: it is what the body will send.
        let opened = match tokio::fs::File::open(&file).await {
            Ok(opened) => opened,
            Err(_) => return not_found(path).map(Into::into),
        };
        let len = match opened.metadata().await {
            Ok(metadata) if metadata.is_file() => metadata.len(),
            _ => return not_found(path).map(Into::into),
        };
        let mut response = Response::new(UpstreamBody::File(FileBody::new(opened, len)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(static_files::content_type(&file)),
        );
        response
    }
}

/// The page with its ids filled in: `{{trace_id}}`, then `{{request_id}}` in what that gave.
fn fill_page(template: &str, trace_id: &str, request_id: &str) -> String {
    template
        .replace(TRACE_SLOT, trace_id)
        .replace(REQUEST_SLOT, request_id)
}

const TRACE_SLOT: &str = "{{trace_id}}";
const REQUEST_SLOT: &str = "{{request_id}}";

/// A page template cut at its slots once, so filling it in is a few copies rather than two
/// searches through the whole page per request.
#[derive(Debug)]
struct Page {
    template: String,
    /// The template cut at each `{{trace_id}}`; each piece cut at each `{{request_id}}`.
    pieces: Vec<Vec<String>>,
}

impl Page {
    fn new(template: &str) -> Page {
        Page {
            template: template.to_string(),
            pieces: template
                .split(TRACE_SLOT)
                .map(|piece| piece.split(REQUEST_SLOT).map(str::to_string).collect())
                .collect(),
        }
    }

    /// What [`fill_page`] makes of the template. Cutting first gives the same text when the
    /// trace id cannot take part in a `{{request_id}}` of the first pass's result: two or more
    /// characters among hex digits and `-` (any id the load generator or this upstream makes)
    /// match no two neighbouring characters of the slot. Any other trace id takes the long way.
    fn fill(&self, trace_id: &str, request_id: &str) -> String {
        let inert =
            trace_id.len() >= 2 && trace_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !inert {
            return fill_page(&self.template, trace_id, request_id);
        }
        let mut out = String::with_capacity(self.template.len() + 2 * request_id.len() + 64);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.push_str(trace_id);
            }
            for (j, part) in piece.iter().enumerate() {
                if j > 0 {
                    out.push_str(request_id);
                }
                out.push_str(part);
            }
        }
        out
    }
}

/// Serves the upstream on one connection of any transport until it closes.
pub async fn serve_connection<IO>(io: IO, upstream: Arc<Upstream>, shutdown: Shutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeouts = upstream.client_timeouts;
    let echoes = shutdown.clone();
    let service = service_fn(move |req| {
        let upstream = upstream.clone();
        let shutdown = echoes.clone();
        async move { Ok::<_, Infallible>(upstream.respond(req, &shutdown).await) }
    });
    server::serve_connection_with(io, service, shutdown, timeouts).await;
}

/// Binds `listen` and serves the demo upstream until the returned handle is shut down or dropped.
pub async fn spawn(listen: SocketAddr, options: UpstreamOptions) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(listen).await?;
    let upstream = Arc::new(Upstream::new(options));
    server::spawn_tcp(listener, move |stream, shutdown| {
        serve_connection(stream, upstream.clone(), shutdown)
    })
}

/// [`spawn`] with TLS on the listener: clients speak `https://` to the demo upstream.
pub async fn spawn_tls(
    listen: SocketAddr,
    options: UpstreamOptions,
    tls: &crate::tls::ServerTls,
) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(listen).await?;
    let upstream = Arc::new(Upstream::new(options));
    server::spawn_tls(listener, tls.acceptor.clone(), move |stream, shutdown| {
        serve_connection(stream, upstream.clone(), shutdown)
    })
}

/// A demo upstream for Rust tests, spawned on `127.0.0.1:0`:
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use traceforge::upstream::{self, Route};
/// let server = upstream::builder()
///     .route(Route::new("/api/orders").status(503).body("down"))
///     .spawn()
///     .await?;
/// println!("serving on {}", server.url());
/// # Ok(()) }
/// ```
pub fn builder() -> Builder {
    Builder::default()
}

/// Builds a demo upstream; see [`builder`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    options: UpstreamOptions,
    tls: Option<crate::tls::ServerTls>,
}

impl Builder {
    /// Adds a route; routes take precedence over the built-in ones, in the order added.
    pub fn route(mut self, route: Route) -> Self {
        self.options.routes.push(route);
        self
    }

    /// Serves `/static/...` (and `/`) from this folder.
    pub fn static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.static_dir = Some(dir.into());
        self
    }

    /// Seeds the ids given to requests that arrive without them.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.seed = seed;
        self
    }

    /// Serves over TLS with this configuration (see [`crate::tls::server`]).
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Binds `127.0.0.1:0` and serves until the returned handle is shut down or dropped.
    pub async fn spawn(self) -> std::io::Result<Listening> {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        match &self.tls {
            Some(tls) => spawn_tls(listen, self.options, tls).await,
            None => spawn(listen, self.options).await,
        }
    }
}

impl Route {
    /// A route for `path` (a glob such as `/api/*` works too), any method, answering 200 with an
    /// empty body at once.
    pub fn new(path: impl Into<String>) -> Route {
        Route {
            path: path.into(),
            methods: Vec::new(),
            status: StatusCode::OK,
            body: String::new(),
            headers: Vec::new(),
            latency: std::time::Duration::ZERO,
            grpc: None,
        }
    }

    /// Only this method (call again for more).
    pub fn method(mut self, method: Method) -> Route {
        self.methods.push(method);
        self
    }

    /// The response status; a code that is not a valid status is ignored.
    pub fn status(mut self, status: u16) -> Route {
        if let Ok(status) = StatusCode::from_u16(status) {
            self.status = status;
        }
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Route {
        self.body = body.into();
        self
    }

    /// A response header; a name or value that is not valid HTTP is ignored.
    pub fn header(mut self, name: &str, value: &str) -> Route {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.push((name, value));
        }
        self
    }

    /// Wait this long before answering.
    pub fn latency(mut self, latency: std::time::Duration) -> Route {
        self.latency = latency;
        self
    }
}

async fn scenario_route(route: &Route) -> Response<Full<Bytes>> {
    if !route.latency.is_zero() {
        tokio::time::sleep(route.latency).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(route.body.clone())));
    *response.status_mut() = route.status;
    let headers = response.headers_mut();
    if !route.body.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    // `insert` for the first value of a name (replacing the default), `append` for repeats.
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &route.headers {
        if seen.insert(name.clone()) {
            headers.insert(name.clone(), value.clone());
        } else {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

/// The answer to a request whose body stalled (408) or broke (400). The connection is closed
/// after it: the rest of that body cannot be told apart from a next request.
fn unreadable_body(e: &BodyError) -> Response<Full<Bytes>> {
    let status = match e {
        BodyError::Stalled(_) => StatusCode::REQUEST_TIMEOUT,
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = json_response(
        status,
        &json!({"error": "could not read the request body", "detail": e.to_string()}),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads a request body to its end, keeping nothing, with `timeout` between two reads.
async fn drain(body: Incoming, timeout: std::time::Duration) -> Result<(), BodyError> {
    let mut body = TimedBody::new(body, timeout);
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// gRPC's `grpc-message` is percent-encoded: everything outside printable ASCII, and `%`.
const GRPC_MESSAGE_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// Writes a gRPC status into `headers` (trailers, or the head of a trailers-only answer):
/// `grpc-status`, and `grpc-message` percent-encoded as gRPC asks.
pub(crate) fn insert_grpc_status(headers: &mut hyper::HeaderMap, code: u8, message: Option<&str>) {
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Some(text) = message {
        let encoded = percent_encoding::utf8_percent_encode(text, GRPC_MESSAGE_ESCAPES).to_string();
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            headers.insert("grpc-message", value);
        }
    }
}

/// A unary gRPC method: the call's message is read (and dropped), then the fixed answer goes
/// out: HTTP 200, `application/grpc`, the length-prefixed response message when the status is 0,
/// and `grpc-status` (and `grpc-message`) in the trailers. A call whose body stalls or breaks is
/// answered `grpc-status: 13` (INTERNAL) at once.
async fn grpc_route(
    req: Request<Incoming>,
    route: &Route,
    grpc: &crate::scenario::GrpcRoute,
    body_timeout: std::time::Duration,
) -> Response<UpstreamBody> {
    if !route.latency.is_zero() {
        tokio::time::sleep(route.latency).await;
    }
    let read = TimedBody::new(req.into_body(), body_timeout)
        .collect()
        .await;
    let (status, message) = match read {
        Ok(_) => (grpc.status, grpc.message.clone()),
        Err(e) => (13, Some(format!("cannot read the request: {e}"))),
    };
    let mut trailers = hyper::HeaderMap::new();
    insert_grpc_status(&mut trailers, status, message.as_deref());
    let framed = (status == 0).then(|| {
        let len = u32::try_from(grpc.response.len()).unwrap_or(u32::MAX);
        let mut framed = Vec::with_capacity(grpc.response.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&grpc.response);
        Bytes::from(framed)
    });
    let mut response = Response::new(UpstreamBody::Grpc {
        message: framed,
        trailers: Some(trailers),
    });
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    for (name, value) in &route.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// `/api/echo`: what arrived (its HTTP version too), the body counted as it streams by. A client
/// that stalls its body for `body_timeout` gets a 408, one that sends a malformed body a 400, and
/// the connection is closed: the rest of that body cannot be told apart from a next request.
async fn echo(req: Request<Incoming>, body_timeout: std::time::Duration) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut body = TimedBody::new(body, body_timeout);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    // Count the body as it streams by instead of buffering it.
    let mut body_length: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_length += data.len() as u64;
                }
            }
            Err(e) => return unreadable_body(&e),
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_length": body_length,
            // How the request came (`HTTP/1.1`, `HTTP/2.0`): through a proxy, how it forwards.
            "version": format!("{:?}", parts.version),
        }),
    )
}

/// The 405 to send when the request's method is not one of `methods`.
fn refuse_method(method: &Method, methods: &[Method]) -> Option<Response<Full<Bytes>>> {
    if methods.contains(method) {
        return None;
    }
    let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method not allowed", "allow": list}),
    );
    if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}

/// `GET /api/bytes/<n>`: a body of exactly `n` bytes, for downloads that body faults (`throttle`,
/// `truncate`) can work on without a scenario carrying a large body.
const BYTES_PREFIX: &str = "/api/bytes/";

/// The largest `/api/bytes/<n>`: big enough for any download test, streaming benchmarks of a
/// gigabyte or more included. The body is produced as it is sent, so the size costs no memory.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// `n` bytes of `0123456789abcdef` repeated, as `application/octet-stream`, produced as they are
/// sent; a 400 for a size that is not a number or above [`MAX_BYTES`].
fn bytes_response(path: &str) -> Response<UpstreamBody> {
    let size = path
        .strip_prefix(BYTES_PREFIX)
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n <= MAX_BYTES);
    let Some(size) = size else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": format!("/api/bytes/<n> takes a byte count from 0 to {MAX_BYTES}")}),
        )
        .map(Into::into);
    };
    let mut response = Response::new(UpstreamBody::pattern(size));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `GET /api/events?count=N&interval=MS`: `N` server-sent events (default 10, at most
/// [`MAX_EVENTS`]), the first at once and one every `MS` milliseconds after it (default 100, at
/// most a minute), as `text/event-stream`; a 400 for anything else in the query.
const EVENTS_PATH: &str = "/api/events";

/// The most events `/api/events` sends.
pub const MAX_EVENTS: u64 = 100_000;

fn events_response(query: Option<&str>) -> Response<UpstreamBody> {
    let (mut count, mut interval) = (10u64, 100u64);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parsed = value.parse::<u64>().ok();
        match (key, parsed) {
            ("count", Some(n)) if n <= MAX_EVENTS => count = n,
            ("interval", Some(ms)) if ms <= 60_000 => interval = ms,
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("/api/events takes count=0..{MAX_EVENTS} and interval=0..60000 (milliseconds)")}),
                )
                .map(Into::into);
            }
        }
    }
    let mut response = Response::new(UpstreamBody::Events(body::EventsBody::new(
        count,
        std::time::Duration::from_millis(interval),
    )));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not found", "path": path}),
    )
}

pub(crate) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The current UTC time as RFC 3339 with milliseconds, such as `2025-01-31T12:00:00.123Z`.
fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_cut_once_fills_in_as_the_two_replacements_do() {
        let templates = [
            BUILTIN_INDEX,
            "",
            "no slots",
            "{{trace_id}}{{request_id}}{{trace_id}}",
            "{{{{trace_id}}}} {{request_id}}{{request_id}} {{trace_id}}_id}}",
            "{{req{{trace_id}}uest_id}} and {{{{trace_id}}",
        ];
        let traces = [
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "b048577f-d679-4141-8b1b-935caefed53b",
            "",
            "e",
            "request_id",
            "{{request_id}}",
            "quest_id}}",
            "{{req",
        ];
        for template in templates {
            let page = Page::new(template);
            for trace in traces {
                for request in ["r-1", "{{trace_id}}", ""] {
                    assert_eq!(
                        page.fill(trace, request),
                        fill_page(template, trace, request),
                        "{template:?} {trace:?} {request:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let now = rfc3339_now();
        assert_eq!(now.len(), "2025-01-31T12:00:00.123Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
        assert!(humantime::parse_rfc3339(&now).is_ok(), "{now}");
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
