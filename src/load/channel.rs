//! How a request reaches the server. An open loop sends from many short tasks through hyper's
//! pooled client; a closed-loop worker sends one request after another and keeps a connection of
//! its own, with no pool to lock and nothing to share: the path `wrk` and `oha` take, and the one
//! that lets the load generator keep up with them.
//!
//! Both go through a [`Connector`]: the [`Dial`]er's stream (TCP, or an in-memory pipe), wrapped in
//! TLS for an `https://` base, speaking HTTP/1.1 or, with `load.http2`, HTTP/2 (with prior
//! knowledge in clear text, by ALPN over TLS).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper::header::HOST;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower_service::Service;

use crate::record::{ErrorKind, Protocol};
use crate::transport::{MemoryConnector, MemoryStream};

/// A connector the load generator can use both ways: as the pooled client's connector, and to
/// open one connection at a time for a worker of its own.
pub trait Dial: Connect + Clone + Send + Sync + 'static {
    type Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static;
    fn dial(&self, uri: Uri) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Dial for HttpConnector {
    type Io = TokioIo<tokio::net::TcpStream>;
    fn dial(&self, uri: Uri) -> impl Future<Output = io::Result<Self::Io>> + Send {
        let mut connector = self.clone();
        async move { connector.call(uri).await.map_err(io::Error::other) }
    }
}

impl Dial for MemoryConnector {
    type Io = MemoryStream;
    fn dial(&self, uri: Uri) -> impl Future<Output = io::Result<Self::Io>> + Send {
        let mut connector = self.clone();
        async move { connector.call(uri).await }
    }
}

/// The ALPN names offered over TLS: `h2` first with `load.http2`, else HTTP/1.1 alone.
fn alpn(http2: bool) -> Vec<Vec<u8>> {
    if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// Opens the load generator's connections: the dialer's stream, in TLS when the base is
/// `https://`, and says which protocol to speak on it.
#[derive(Clone)]
pub struct Connector<D: Dial> {
    dialer: D,
    /// `Some` for an `https://` base.
    tls: Option<TlsConnector>,
    http2: bool,
}

impl<D: Dial> Connector<D> {
    /// A connector to `base`. An `https://` base verifies the server with `tls` (see
    /// [`crate::tls::client_config`]: the system's roots, a CA file, or nothing with `insecure`),
    /// or with the system's roots alone when `tls` is `None`. Its ALPN offer is set here.
    pub fn new(
        dialer: D,
        base: &Uri,
        tls: Option<Arc<ClientConfig>>,
        http2: bool,
    ) -> Result<Self, crate::tls::TlsError> {
        let tls = if base.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
            let config = match tls {
                Some(config) => config,
                None => Arc::new(crate::tls::client_config(
                    &crate::tls::UpstreamTls::default(),
                )?),
            };
            let mut config = ClientConfig::clone(&config);
            config.alpn_protocols = alpn(http2);
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Connector { dialer, tls, http2 })
    }

    /// Whether requests go over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// What a request is sent with before any connection says otherwise.
    pub fn asked(&self) -> Protocol {
        if self.http2 {
            Protocol::H2
        } else {
            Protocol::Http1
        }
    }

    /// Opens one connection to `uri`'s authority (TLS named after its host) and says which
    /// protocol it speaks: over TLS what ALPN chose, in clear text what was asked for.
    pub async fn open(&self, uri: Uri) -> io::Result<(LoadIo<D::Io>, Protocol)> {
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        let io = self.dialer.dial(uri).await?;
        let Some(tls) = &self.tls else {
            return Ok((LoadIo::Plain(io), self.asked()));
        };
        let name = host
            .and_then(|h| ServerName::try_from(h).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no TLS server name"))?;
        let stream = tls.connect(name, TokioIo::new(io)).await?;
        let protocol = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::H2,
            _ => Protocol::Http1,
        };
        Ok((LoadIo::Tls(Box::new(TokioIo::new(stream))), protocol))
    }

    /// hyper's pooled client over this connector, for an open loop: HTTP/2 in clear text with
    /// prior knowledge, over TLS when ALPN agrees (one connection multiplexes every request).
    pub fn pooled(self, max_idle: usize) -> Client<Self, Full<Bytes>> {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(max_idle);
        if self.http2 && self.tls.is_none() {
            builder.http2_only(true);
        }
        builder.build(self)
    }
}

impl<D: Dial> Service<Uri> for Connector<D> {
    type Response = LoadIo<D::Io>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<LoadIo<D::Io>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.open(uri).await.map(|(io, _)| io) })
    }
}

/// A load connection: the dialer's stream as it is, or in TLS.
pub enum LoadIo<I> {
    Plain(I),
    Tls(Box<TokioIo<TlsStream<TokioIo<I>>>>),
}

impl<I> Connection for LoadIo<I> {
    fn connected(&self) -> Connected {
        match self {
            LoadIo::Tls(stream) if stream.inner().get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl<I: hyper::rt::Read + hyper::rt::Write + Unpin> hyper::rt::Read for LoadIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LoadIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            LoadIo::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<I: hyper::rt::Read + hyper::rt::Write + Unpin> hyper::rt::Write for LoadIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LoadIo::Plain(io) => Pin::new(io).poll_write(cx, buf),
            LoadIo::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LoadIo::Plain(io) => Pin::new(io).poll_flush(cx),
            LoadIo::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LoadIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            LoadIo::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The sending half of a worker's connection, in the protocol it speaks.
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    async fn try_send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Full<Bytes>>>> {
        match self {
            Sender::H1(s) => s.try_send_request(request).await,
            Sender::H2(s) => s.try_send_request(request).await,
        }
    }
}

/// A worker's own connection (HTTP/1.1, or HTTP/2 with `load.http2`): opened on first use,
/// reopened after the server closes it or an exchange fails (a reset, a truncated body, a
/// timeout), and closed when dropped.
pub struct OwnConnection<D: Dial> {
    connector: Connector<D>,
    base: Uri,
    host: Option<hyper::header::HeaderValue>,
    sender: Option<Sender>,
    task: Option<JoinHandle<()>>,
}

impl<D: Dial> OwnConnection<D> {
    pub fn new(connector: Connector<D>, base: Uri) -> Self {
        let host = base
            .authority()
            .and_then(|a| hyper::header::HeaderValue::from_str(a.as_str()).ok());
        OwnConnection {
            connector,
            base,
            host,
            sender: None,
            task: None,
        }
    }

    async fn open(&mut self) -> Result<(), ErrorKind> {
        let (io, protocol) = self.connector.open(self.base.clone()).await.map_err(|e| {
            tracing::debug!(error = %e, "the load generator cannot connect");
            ErrorKind::Connect
        })?;
        let sender = match protocol {
            // `open` says HTTP/1.1 or h2; a WebSocket target opens connections of its own.
            Protocol::Http1 | Protocol::Ws => {
                let (sender, conn) = http1::handshake(io)
                    .await
                    .map_err(|e| super::classify(&e))?;
                self.task = Some(tokio::spawn(async move {
                    let _ = conn.await;
                }));
                Sender::H1(sender)
            }
            Protocol::H2 => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(|e| super::classify(&e))?;
                self.task = Some(tokio::spawn(async move {
                    let _ = conn.await;
                }));
                Sender::H2(sender)
            }
        };
        self.sender = Some(sender);
        Ok(())
    }

    /// Closes the connection: after a failed or abandoned exchange its state is unknown (a
    /// response may still be on its way), so the next request gets a fresh one.
    pub fn discard(&mut self) {
        self.sender = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Sends one request: over HTTP/1.1 in origin form with a Host header, as a browser or curl
    /// would; over HTTP/2 with the scheme and authority as pseudo-headers. A request that a reused
    /// connection could not take (the server had closed it in between) goes again on a fresh
    /// one, like hyper's pooled client does; one that was sent is never repeated.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ErrorKind> {
        let mut request = Some(request);
        let mut goaway_resends = 0;
        let mut tries = 0;
        while tries < 2 {
            tries += 1;
            let fresh = match &self.sender {
                Some(s) if !s.is_closed() => false,
                _ => {
                    self.discard();
                    self.open().await?;
                    true
                }
            };
            let Some(sender) = self.sender.as_mut() else {
                return Err(ErrorKind::Connect);
            };
            if sender.ready().await.is_err() {
                self.discard();
                if fresh {
                    return Err(ErrorKind::Reset);
                }
                continue;
            }
            let Some(mut outgoing) = request.take() else {
                return Err(ErrorKind::Reset);
            };
            if let Sender::H1(_) = sender {
                let (mut parts, body) = outgoing.into_parts();
                if let Some(pq) = parts.uri.path_and_query() {
                    parts.uri = Uri::from(pq.clone());
                }
                if let Some(host) = &self.host {
                    parts.headers.entry(HOST).or_insert_with(|| host.clone());
                }
                outgoing = Request::from_parts(parts, body);
            } else if outgoing.uri().scheme().is_none() {
                // HTTP/2 names the scheme and authority in every request.
                let pq = outgoing
                    .uri()
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str());
                if let Ok(uri) = super::join(&self.base, pq) {
                    *outgoing.uri_mut() = uri;
                }
            }
            // Over HTTP/2 a GOAWAY may end the connection under a request it never answered.
            let spare = match sender {
                Sender::H2(_) if goaway_resends < GOAWAY_RESENDS => Some(copy(&outgoing)),
                _ => None,
            };
            match sender.try_send(outgoing).await {
                Ok(response) => return Ok(response),
                Err(mut e) => {
                    let unsent = e.take_message();
                    let error = e.into_error();
                    self.discard();
                    match (unsent, spare) {
                        (Some(again), _) if !fresh => request = Some(again),
                        (_, Some(again)) if turned_away(&error) => {
                            goaway_resends += 1;
                            tries = 0;
                            request = Some(again);
                        }
                        _ => return Err(super::classify_head(&error)),
                    }
                }
            }
        }
        Err(ErrorKind::Reset)
    }
}

impl<D: Dial> Drop for OwnConnection<D> {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Where one request goes out.
pub enum Channel<'a, D: Dial> {
    /// hyper's pooled client, shared by the tasks of an open loop; `http2` when it speaks HTTP/2
    /// (only then can a GOAWAY leave a request unanswered).
    Pooled {
        client: &'a Client<Connector<D>, Full<Bytes>>,
        http2: bool,
    },
    /// A closed-loop worker's own connection.
    Own(&'a mut OwnConnection<D>),
}

/// How many times a request an HTTP/2 GOAWAY turned away is sent again, on a new connection.
const GOAWAY_RESENDS: u32 = 3;

/// A copy of a request to send again: method, URI, version, headers and body.
fn copy(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Whether an exchange failed because the server's HTTP/2 GOAWAY (with NO_ERROR: a graceful
/// close) ended the connection under it: the server is going away, not failing, and a client
/// sends such a request again on a new connection (RFC 9113 section 6.8). The stream got no
/// answer, so the request is sent again as the same attempt, with the same ids: whatever the
/// server decided for it, it decides again the same way.
fn turned_away(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        cause = err.source();
    }
    false
}

impl<D: Dial> Channel<'_, D> {
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ErrorKind> {
        match self {
            Channel::Pooled { client, http2 } => {
                let mut resends = 0;
                let mut request = request;
                loop {
                    // A copy only where a GOAWAY can turn the request away: HTTP/1.1 pays nothing.
                    let spare = (*http2 && resends < GOAWAY_RESENDS).then(|| copy(&request));
                    match client.request(request).await {
                        Ok(response) => return Ok(response),
                        Err(e) => match spare {
                            Some(again) if turned_away(&e) => {
                                resends += 1;
                                request = again;
                            }
                            _ => return Err(super::classify_client(&e)),
                        },
                    }
                }
            }
            Channel::Own(conn) => conn.send(request).await,
        }
    }

    /// After a failed or abandoned exchange: a worker's own connection is not reused.
    pub fn discard(&mut self) {
        if let Channel::Own(conn) = self {
            conn.discard();
        }
    }
}
