//! How a request reaches the server. An open loop sends from many short tasks through hyper's
//! pooled client; a closed-loop worker sends one request after another and keeps a connection of
//! its own, with no pool to lock and nothing to share: the path `wrk` and `oha` take, and the one
//! that lets the load generator keep up with them.

use std::future::Future;
use std::io;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::record::ErrorKind;
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

/// A worker's own HTTP/1.1 connection: opened on first use, reopened after the server closes it
/// or an exchange fails (a reset, a truncated body, a timeout), and closed when dropped.
pub struct OwnConnection<D: Dial> {
    dialer: D,
    base: Uri,
    host: Option<hyper::header::HeaderValue>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
    task: Option<JoinHandle<()>>,
}

impl<D: Dial> OwnConnection<D> {
    pub fn new(dialer: D, base: Uri) -> Self {
        let host = base
            .authority()
            .and_then(|a| hyper::header::HeaderValue::from_str(a.as_str()).ok());
        OwnConnection {
            dialer,
            base,
            host,
            sender: None,
            task: None,
        }
    }

    async fn open(&mut self) -> Result<(), ErrorKind> {
        let io = self
            .dialer
            .dial(self.base.clone())
            .await
            .map_err(|_| ErrorKind::Connect)?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| super::classify(&e))?;
        self.task = Some(tokio::spawn(async move {
            let _ = conn.await;
        }));
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

    /// Sends one request in origin form with a Host header, as a browser or curl would. A request
    /// that a reused connection could not take (the server had closed it in between) goes again
    /// on a fresh one, like hyper's pooled client does; one that was sent is never repeated.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ErrorKind> {
        let (mut parts, body) = request.into_parts();
        if let Some(pq) = parts.uri.path_and_query() {
            parts.uri = Uri::from(pq.clone());
        }
        if let Some(host) = &self.host {
            parts.headers.entry(HOST).or_insert_with(|| host.clone());
        }
        let mut request = Request::from_parts(parts, body);
        for _ in 0..2 {
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
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut e) => {
                    let unsent = e.take_message();
                    let error = e.into_error();
                    self.discard();
                    match unsent {
                        Some(again) if !fresh => request = again,
                        _ => return Err(super::classify(&error)),
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
    /// hyper's pooled client, shared by the tasks of an open loop.
    Pooled(&'a Client<D, Full<Bytes>>),
    /// A closed-loop worker's own connection.
    Own(&'a mut OwnConnection<D>),
}

impl<D: Dial> Channel<'_, D> {
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ErrorKind> {
        match self {
            Channel::Pooled(client) => client
                .request(request)
                .await
                .map_err(|e| super::classify_client(&e)),
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
