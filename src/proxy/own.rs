//! An upstream connection of each client connection's own, for HTTP/1.1 requests: the path
//! nginx's `keepalive` upstreams take. A client connection sends one request at a time, so the
//! upstream connection it used last is free again by its next request: no pool to lock, no key to
//! hash, no task per request to hand the connection back. When the client connection ends, its
//! upstream connection waits in a short idle list for the next client connection (so clients
//! that close after every request do not cost a connect each).
//!
//! HTTP/2 clients (many streams at once), WebSocket upgrades and HTTP/2 upstreams stay on hyper's
//! pooled client.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response, Uri};

use super::body::Upload;

/// A connection to the upstream, whatever carries it (TCP, TLS, an in-memory pipe).
pub trait UpstreamIo: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static {}
impl<T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static> UpstreamIo for T {}

/// Why a connection could not be opened: the connector's own error, its causes kept.
pub type DialError = Box<dyn std::error::Error + Send + Sync>;

type Dialing = Pin<Box<dyn Future<Output = Result<Box<dyn UpstreamIo>, DialError>> + Send>>;

/// Opens a connection to the upstream at a URI.
#[derive(Clone)]
pub struct Dialer(Arc<dyn Fn(Uri) -> Dialing + Send + Sync>);

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer")
    }
}

impl Dialer {
    /// Dials through a connector service (hyper-util's `HttpConnector`, hyper-rustls's
    /// `HttpsConnector`, the in-memory transport's connector).
    pub fn new<S, T>(connector: S) -> Self
    where
        S: tower_service::Service<Uri, Response = T> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        T: UpstreamIo,
    {
        Dialer(Arc::new(move |uri| {
            let mut connector = connector.clone();
            Box::pin(async move {
                let io = connector.call(uri).await.map_err(Into::into)?;
                Ok(Box::new(io) as Box<dyn UpstreamIo>)
            })
        }))
    }
}

type Sender = http1::SendRequest<Upload>;

/// How many upstream connections wait for a client connection at most.
const IDLE_MAX: usize = 256;

/// The upstream connections no client connection holds, ready for the next one.
#[derive(Debug, Default)]
pub(crate) struct Idle(Mutex<Vec<Sender>>);

impl Idle {
    fn take(&self) -> Option<Sender> {
        let mut idle = self.0.lock().ok()?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.0.lock() {
            if idle.len() < IDLE_MAX {
                idle.push(sender);
            }
        }
    }
}

/// Why a request could not be sent on an own connection.
#[derive(Debug)]
pub(crate) enum OwnError {
    /// No connection could be opened: the upstream is unreachable.
    Connect(DialError),
    /// The exchange failed once sent (or the connection could not start).
    Exchange(hyper::Error),
}

/// One client connection's upstream connection.
#[derive(Debug)]
pub(crate) struct OwnUpstream {
    sender: Mutex<Option<Sender>>,
    idle: Arc<Idle>,
}

impl OwnUpstream {
    pub(crate) fn new(idle: Arc<Idle>) -> Self {
        OwnUpstream {
            sender: Mutex::new(None),
            idle,
        }
    }

    /// Sends `req` (its URI in origin form) and waits for the response head. The connection used
    /// last is used again while it is open; a closed one is replaced, and a request that the
    /// upstream's closing connection never took is sent once more on a new one.
    pub(crate) async fn send(
        &self,
        dialer: &Dialer,
        authority: &Uri,
        mut req: Request<Upload>,
    ) -> Result<Response<Incoming>, OwnError> {
        let held = self.sender.lock().ok().and_then(|mut s| s.take());
        let mut sender = match held.or_else(|| self.idle.take()) {
            Some(mut sender) => match sender.ready().await {
                Ok(()) => sender,
                Err(_) => open(dialer, authority).await?,
            },
            None => open(dialer, authority).await?,
        };
        let mut fresh = false;
        loop {
            match sender.try_send_request(req).await {
                Ok(response) => {
                    if let Ok(mut slot) = self.sender.lock() {
                        *slot = Some(sender);
                    }
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    // Never sent: the connection closed before it took the request.
                    Some(unsent) if !fresh => {
                        req = unsent;
                        sender = open(dialer, authority).await?;
                        fresh = true;
                    }
                    _ => return Err(OwnError::Exchange(e.into_error())),
                },
            }
        }
    }
}

impl Drop for OwnUpstream {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.get_mut().ok().and_then(Option::take) {
            self.idle.give(sender);
        }
    }
}

/// Opens a connection and starts driving it on the current runtime.
async fn open(dialer: &Dialer, authority: &Uri) -> Result<Sender, OwnError> {
    let io = (dialer.0)(authority.clone())
        .await
        .map_err(OwnError::Connect)?;
    let (mut sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(OwnError::Exchange)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    sender.ready().await.map_err(OwnError::Exchange)?;
    Ok(sender)
}
