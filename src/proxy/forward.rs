//! Step 5 of the proxy: forwarding a request no terminal fault answered. Owns what the upstream
//! sees (its URI, Host, the headers stripped or rewritten), the wait for its response head under
//! the upstream timeout, and [`ForwardError`]: whose fault a failed exchange was, with the status
//! and counter that say so. Called only by [`Proxy::handle`].

use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::Connect;
use serde_json::json;

use super::asked::Asked;
use super::body::{Upload, UploadProgress};
use super::own::{OwnError, OwnUpstream};
use super::{
    BoxError, Disposition, Proxy, ProxyBody, close_after, final_status, full, headers,
    json_response,
};
use crate::fault::{Decision, Effect, HeaderSide};
use crate::ids::{Ids, TRACEPARENT};
use crate::observe::Exchange;
use crate::server::{self, BodyError};
use crate::websocket;
use crate::wire;

impl<C> Proxy<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Sends the request on to the upstream and returns its response, hop-by-hop headers removed.
    /// For a WebSocket `upgrade` request, `Connection: upgrade` and `Upgrade: websocket` go on
    /// both ways, and when the upstream switches protocols (`101`) its upgraded connection comes
    /// back too, for the proxy to join to the client's.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward(
        &self,
        req: Request<Incoming>,
        ids: &Ids,
        decision: &mut Decision,
        asked: Option<&Asked>,
        upgrade: bool,
        mut exchange: Option<&mut Exchange>,
        own: Option<&OwnUpstream>,
    ) -> Result<(Response<ProxyBody>, Option<OnUpgrade>), ForwardError> {
        let (mut parts, body) = req.into_parts();
        // An HTTP/1.x client sends one request at a time: its own upstream connection will do.
        let one_at_a_time = parts.version != Version::HTTP_2;
        parts.uri = self.upstream_uri(&parts.uri)?;
        // The upstream connection is ours, not the client's: its framing and options are ours too.
        // A Content-Length sent with Transfer-Encoding is not the body's length (RFC 9112 section
        // 6.3); hyper drops it from requests already, and this keeps it so whatever parsed them.
        headers::drop_length_beside_transfer_encoding(&mut parts.headers);
        // gRPC over HTTP/2 stays HTTP/2 to the upstream, with the `te: trailers` gRPC requires
        // (hop-by-hop in HTTP/1.1, but a promise about this exchange in HTTP/2).
        let grpc =
            parts.version == Version::HTTP_2 && crate::fault::matcher::is_grpc(&parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        if grpc {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if upgrade {
            websocket::insert_upgrade_headers(&mut parts.headers);
        }
        // Like nginx's default `proxy_pass`: the upstream sees its own name in Host.
        if let Some(host) = self
            .upstream
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
        ids.insert_into(&mut parts.headers);
        // A control header for this proxy, not for the upstream, whether or not it was honoured.
        parts.headers.remove(wire::FAULT);
        // The load generator's bookkeeping, read in step 2; an upstream that sees them could act
        // on them, which a client without TraceForge would never make it do.
        if !self.config.forward_traceforge_headers {
            parts.headers.remove(wire::INDEX);
            parts.headers.remove(wire::ATTEMPT);
        }
        // Request header faults last, so a rule can change anything the upstream sees.
        self.rewrite_headers(decision, HeaderSide::Request, &mut parts.headers);
        // HTTP/2 upstream when asked for (`upstream.http2`), except for a WebSocket upgrade,
        // an HTTP/1.1 mechanism; and always for gRPC that came over HTTP/2.
        let http2 = grpc || (self.config.upstream_http2 && !upgrade);
        parts.version = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // A body still coming from the client is read with the client body timeout, and the time
        // spent waiting on it is left out of the upstream timeout below.
        if let Some(exchange) = exchange.as_deref_mut() {
            // With spans exported, the upstream's parent is the proxy's client span.
            if let Some(traceparent) = exchange.forwarding(&parts.uri.to_string()) {
                if let Ok(value) = HeaderValue::from_str(&traceparent) {
                    parts.headers.insert(TRACEPARENT, value);
                }
            }
        }
        let counter = exchange.as_deref().map(Exchange::bytes_in);
        let (mut body, progress) = Upload::new(body, self.config.client_body_timeout, counter);
        if let Some(rate) = decision.slow_read() {
            body.pace(super::body::Pace::new(rate));
        }
        let progress = (!body.is_end_stream()).then_some(progress);
        let own = own
            .zip(self.dialer.as_ref())
            .filter(|_| one_at_a_time && !http2 && !upgrade);
        let mut response = match own {
            Some((own, dialer)) => {
                // On a connection of its own, the request line carries the origin form.
                if let Some(origin) = parts.uri.path_and_query().cloned() {
                    parts.uri = Uri::from(origin);
                }
                let upstream_req = Request::from_parts(parts, body);
                self.await_head(
                    own.send(dialer, &self.upstream, upstream_req),
                    progress.as_deref(),
                )
                .await?
                .map_err(|e| ForwardError::from_own(&e))?
            }
            None => {
                let upstream_req = Request::from_parts(parts, body);
                self.await_head(
                    if http2 {
                        self.client_h2.request(upstream_req)
                    } else {
                        self.client.request(upstream_req)
                    },
                    progress.as_deref(),
                )
                .await?
                .map_err(|e| ForwardError::from_client(&e))?
            }
        };
        if let Some(exchange) = exchange {
            exchange.upstream_answered(response.status().as_u16());
        }
        let switched = (upgrade && websocket::is_switch(response.status(), response.headers()))
            .then(|| hyper::upgrade::on(&mut response));
        let (mut parts, body) = response.into_parts();
        headers::drop_length_beside_transfer_encoding(&mut parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        if switched.is_some() {
            websocket::insert_upgrade_headers(&mut parts.headers);
        }
        // Rules on the upstream's response see its own head, before any rewrite; a `101` is left
        // alone. Their delays hold the head here; a terminal one replaces the response, which
        // the caller answers (this one goes unread).
        if let Some(asked) = asked.filter(|_| switched.is_none()) {
            let response =
                asked
                    .plan()
                    .decide_response(&asked.facts(), parts.status.as_u16(), &parts.headers);
            let delay = response.total_delay();
            decision.extend_response(response);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if !decision.forwards() {
                return Ok((
                    Response::from_parts(parts, body.map_err(BoxError::from).boxed()),
                    None,
                ));
            }
        }
        // The upstream's answer as the faults reshape it; the proxy's own headers (ids, fired
        // rules) go on after, so a rule cannot hide them from the load generator. A `101` keeps
        // its status: the client's connection switches protocols with it.
        if let Some(status) = decision.status_rewrite().filter(|_| switched.is_none()) {
            parts.status = final_status(status);
            if let Some(step) = decision
                .steps
                .iter()
                .rev()
                .find(|s| matches!(s.effect, Effect::Status(_)))
            {
                self.metrics
                    .status_rewritten(&step.name, parts.status.as_u16());
            }
        }
        self.rewrite_headers(decision, HeaderSide::Response, &mut parts.headers);
        // An upstream that stalls mid-body must not hold the client forever.
        let body = server::TimedBody::new(body, self.config.upstream_read_timeout)
            .map_err(BoxError::from)
            .boxed();
        Ok((Response::from_parts(parts, body), switched))
    }

    /// Waits for the upstream's response head for at most the upstream timeout, counted from the
    /// last move of the request body: a client slowly sending its body is the client body
    /// timeout's business, not a slow upstream.
    async fn await_head<F, T>(
        &self,
        request: F,
        upload: Option<&UploadProgress>,
    ) -> Result<T, ForwardError>
    where
        F: std::future::Future<Output = T>,
    {
        let timeout = self.config.upstream_timeout;
        let mut request = std::pin::pin!(request);
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                biased;
                response = &mut request => return Ok(response),
                () = tokio::time::sleep_until(deadline) => {
                    match upload.map(|u| u.upstream_deadline(timeout)) {
                        Some(later) if later > deadline => deadline = later,
                        _ => return Err(ForwardError::Timeout(timeout)),
                    }
                }
            }
        }
    }

    /// Applies the header rules of `target`, in firing order, counting each rule that changed something.
    fn rewrite_headers(&self, decision: &Decision, target: HeaderSide, headers: &mut HeaderMap) {
        for step in &decision.steps {
            if let Effect::Headers { target: t, ops } = &step.effect {
                if *t == target {
                    for op in ops.iter() {
                        op.apply(headers);
                    }
                    self.metrics.headers_rewritten(&step.name, target);
                }
            }
        }
    }

    /// The upstream's scheme and authority, its base path, then the request's path and query.
    fn upstream_uri(&self, original: &Uri) -> Result<Uri, ForwardError> {
        let base = self.upstream.path().trim_end_matches('/');
        // The common case, an upstream without a base path: reuse the parsed parts, no formatting.
        if base.is_empty() {
            let mut parts = hyper::http::uri::Parts::default();
            parts.scheme = Some(
                self.upstream
                    .scheme()
                    .cloned()
                    .unwrap_or(hyper::http::uri::Scheme::HTTP),
            );
            parts.authority = self.upstream.authority().cloned();
            parts.path_and_query = Some(
                original
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
            );
            return Uri::from_parts(parts).map_err(|e| ForwardError::Internal(e.to_string()));
        }
        let path_and_query = original.path_and_query().map_or("/", |pq| pq.as_str());
        let scheme = self.upstream.scheme_str().unwrap_or("http");
        let authority = self
            .upstream
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        format!("{scheme}://{authority}{base}{path_and_query}")
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| ForwardError::Internal(e.to_string()))
    }
}

/// Why forwarding failed, whose fault it was, and the response that says so.
#[derive(Debug, thiserror::Error)]
pub(super) enum ForwardError {
    /// Could not connect (refused, unresolvable, unreachable): 502.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// Connected, but the exchange failed (reset, malformed response): 502.
    #[error("upstream request failed: {0}")]
    Failed(String),
    /// No response head within the configured timeout: 504.
    #[error("upstream timeout")]
    Timeout(std::time::Duration),
    /// The client's request body was malformed or cut off: 400.
    #[error("bad request body: {0}")]
    ClientBody(String),
    /// The client left its request body without a byte for the client body timeout: 408.
    #[error("request body timeout")]
    ClientStalled(std::time::Duration),
    /// The proxy could not get a file descriptor, a port or memory for the upstream: 503.
    #[error("out of resources: {0}")]
    Resources(String),
    /// A bug of the proxy's: 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ForwardError {
    /// Whose fault a failed exchange with the upstream was.
    fn from_client(e: &hyper_util::client::legacy::Error) -> Self {
        Self::classify(e, e.is_connect())
    }

    /// [`ForwardError::from_client`] for a request sent on a client connection's own upstream
    /// connection.
    fn from_own(e: &OwnError) -> Self {
        match e {
            OwnError::Connect(e) => Self::classify(&**e, true),
            OwnError::Exchange(e) => Self::classify(e, false),
        }
    }

    /// Whose fault the failed exchange `e` was: the client's body, the proxy's resources, an
    /// upstream it could not reach (`connect`: no connection was made), or a failed exchange.
    fn classify(e: &(dyn std::error::Error + 'static), connect: bool) -> Self {
        match BodyError::find(e) {
            Some(BodyError::Stalled(timeout)) => return ForwardError::ClientStalled(*timeout),
            Some(BodyError::Read(source)) => {
                return ForwardError::ClientBody(error_chain(&**source));
            }
            None => {}
        }
        let detail = error_chain(e);
        if out_of_resources(e) {
            ForwardError::Resources(detail)
        } else if connect {
            ForwardError::Unreachable(detail)
        } else {
            ForwardError::Failed(detail)
        }
    }

    pub(super) fn outcome(&self) -> Disposition {
        match self {
            ForwardError::Unreachable(_) | ForwardError::Failed(_) | ForwardError::Timeout(_) => {
                Disposition::UpstreamError
            }
            ForwardError::ClientBody(_) | ForwardError::ClientStalled(_) => {
                Disposition::ClientError
            }
            ForwardError::Resources(_) | ForwardError::Internal(_) => Disposition::ProxyError,
        }
    }

    /// The `kind` label of the outcome's counter: `upstream_errors_total`, `client_errors_total`
    /// or `proxy_errors_total`.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            ForwardError::Unreachable(_) => "unreachable",
            ForwardError::Failed(_) => "failed",
            ForwardError::Timeout(_) => "timeout",
            ForwardError::ClientBody(_) => "body",
            ForwardError::ClientStalled(_) => "body_timeout",
            ForwardError::Resources(_) => "resources",
            ForwardError::Internal(_) => "internal",
        }
    }

    pub(super) fn into_response(self) -> Response<ProxyBody> {
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
            ForwardError::ClientBody(detail) => {
                let mut response = json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "malformed request body", "detail": detail}),
                );
                close_after(&mut response);
                response
            }
            ForwardError::ClientStalled(timeout) => {
                let mut response = json_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &json!({
                        "error": "request body timeout",
                        "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    }),
                );
                close_after(&mut response);
                response
            }
            ForwardError::Resources(detail) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "proxy out of resources", "detail": detail}),
            ),
            ForwardError::Internal(detail) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "proxy internal error", "detail": detail}),
            ),
        };
        full(response)
    }
}

/// True when an error comes from the proxy's host running out of something a connection needs:
/// file descriptors (`EMFILE`, `ENFILE`), local ports (`EADDRNOTAVAIL`), buffers (`ENOBUFS`) or
/// memory.
fn out_of_resources(e: &(dyn std::error::Error + 'static)) -> bool {
    // The same numbers on Linux, the BSDs and macOS.
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    #[cfg(target_os = "linux")]
    const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    const ENOBUFS: i32 = 55;
    let mut current = Some(e);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let kind = matches!(
                io.kind(),
                std::io::ErrorKind::OutOfMemory | std::io::ErrorKind::AddrNotAvailable
            );
            return kind || matches!(io.raw_os_error(), Some(ENFILE | EMFILE | ENOBUFS));
        }
        current = e.source();
    }
    false
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
