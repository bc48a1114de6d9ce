//! The serving machinery both servers share: HTTP/1.1 over any byte stream ([`serve_connection`]),
//! a TCP accept loop ([`spawn_tcp`]), and the [`Listening`] handle that stops it.
//!
//! Nothing here knows about routes or faults: the upstream and the proxy hand in a hyper service.
//! Connections are generic over `AsyncRead + AsyncWrite`, so a virtual-time mode can run the same
//! services over `tokio::io::duplex` pipes; every timer goes through tokio's clock.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How long a graceful shutdown waits for in-flight connections before cutting them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a client may take to send a request head. Needs hyper's tokio timer, which is why
/// every connection is built with [`TokioTimer`].
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server. [`Listening::shutdown`] stops it gracefully; dropping the handle stops it at
/// once (the accept loop and every connection task are aborted, nothing is leaked).
#[derive(Debug)]
pub struct Listening {
    /// The address the server is bound to (the real port when asked for port 0).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Listening {
    /// `http://<addr>`, handy for building request URLs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (idle keep-alive connections close at once),
    /// and returns when every connection is done or [`SHUTDOWN_GRACE`] has passed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The accept task bounds its own wait; a join error means it was already aborted.
            let _ = task.await;
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the accept task drops its `JoinSet`, which aborts every connection task.
            task.abort();
        }
    }
}

/// Fires when the server that owns a connection starts a graceful shutdown. A connection served
/// outside an accept loop (an in-memory pipe, a test) uses [`Shutdown::never`].
#[derive(Debug, Clone)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

impl Shutdown {
    /// A signal that never fires.
    pub fn never() -> Self {
        Shutdown(None)
    }

    async fn fired(&mut self) {
        match &mut self.0 {
            // A dropped sender also means "stop": the server is gone.
            Some(rx) => {
                let _ = rx.wait_for(|stop| *stop).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Serves HTTP/1.1 on one connection of any transport until the client closes it, the connection
/// fails, or `shutdown` fires (then the request in flight finishes first). Malformed requests get
/// hyper's 400 and close only their own connection.
pub async fn serve_connection<IO, S, B>(io: IO, service: S, mut shutdown: Shutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        biased;
        result = conn.as_mut() => result,
        () = shutdown.fired() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Client-side trouble (reset, bad bytes, header timeout) is routine for a server.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Runs an accept loop on `listener` in a new task, calling `serve` for every connection in a task
/// of its own. Returns the handle that stops it.
pub fn spawn_tcp<F, Fut>(listener: TcpListener, serve: F) -> std::io::Result<Listening>
where
    F: Fn(TcpStream, Shutdown) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, serve, stop_rx));
    Ok(Listening {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

async fn accept_loop<F, Fut>(listener: TcpListener, serve: F, mut stop: oneshot::Receiver<()>)
where
    F: Fn(TcpStream, Shutdown) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // A sent stop or a dropped sender both end the loop.
            _ = &mut stop => break,
            // Reap finished connections so the set does not grow with every connection ever served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small request/response exchanges suffer from Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream, Shutdown(Some(shutdown_rx.clone()))));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = shutdown_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    // Dropping the set aborts whatever is left.
}
