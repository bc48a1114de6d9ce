//! The serving machinery both servers share: HTTP/1.1 over any byte stream ([`serve_connection`]),
//! a TCP accept loop ([`spawn_tcp`]), and the [`Listening`] handle that stops it.
//!
//! Nothing here knows about routes or faults: the upstream and the proxy hand in a hyper service.
//! Connections are generic over `AsyncRead + AsyncWrite`, so a virtual-time mode can run the same
//! services over `tokio::io::duplex` pipes; every timer goes through tokio's clock.
//!
//! Slow clients are cut off ([`ClientTimeouts`]): hyper bounds the wait for a request head, and a
//! service that reads a body wraps it in a [`TimedBody`]. [`host_problem`] is the `Host` check both
//! servers make before anything else.
//!
//! A service that must end its own connection abruptly (the proxy's `reset` and `truncate` faults)
//! or gracefully (its `goaway` fault: an HTTP/2 GOAWAY) is served with [`serve_controlled`], which
//! hands it a [`ConnectionControl`]; the transport says how to make a close abrupt ([`Transport`]:
//! a TCP RST, or a plain close on a pipe). The control also counts the transport's flushes, for a
//! service that must know when bytes it handed over have left (an HTTP/2 stream cut after them).
//!
//! [`spawn_tls`] is the accept loop of a TLS listener: each accepted connection goes through a TLS
//! handshake (bounded by [`TLS_HANDSHAKE_TIMEOUT`]) before the same serving code sees it; a failed
//! handshake (garbage, plain HTTP, an untrusting client) closes that connection only.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How long a graceful shutdown waits for in-flight connections before cutting them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a client may take to send a request head, by default. Needs hyper's tokio timer,
/// which is why every connection is built with [`TokioTimer`].
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may leave a request body without sending a byte, by default: nginx's
/// `client_body_timeout`.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server waits on a slow client before closing its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// For a whole request head, from the moment the server waits for one: so it is also how long
    /// an idle keep-alive connection stays open. Enforced by hyper, which closes the connection.
    pub header: Duration,
    /// Between two reads of a request body (not for the whole body, like nginx's
    /// `client_body_timeout`): enforced by the service reading the body, through [`TimedBody`],
    /// which answers 408 where it still can.
    pub body: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            header: HEADER_READ_TIMEOUT,
            body: BODY_READ_TIMEOUT,
        }
    }
}

/// How long a client may take over the TLS handshake of a new connection.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The failed TLS handshakes of one listener: a count and the first reason.
#[derive(Debug, Default)]
struct HandshakeFailures {
    count: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl HandshakeFailures {
    fn record(&self, reason: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only loses the reason, never the count.
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(reason);
        }
    }

    fn get(&self) -> Option<(u64, String)> {
        let count = self.count.load(Ordering::Relaxed);
        (count > 0).then(|| {
            let first = self.first.lock().ok().and_then(|f| f.clone());
            (count, first.unwrap_or_default())
        })
    }
}

/// A running server. [`Listening::shutdown`] stops it gracefully; dropping the handle stops it at
/// once (the accept loop and every connection task are aborted, nothing is leaked).
#[derive(Debug)]
pub struct Listening {
    /// The address the server is bound to (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// Whether connections are served over TLS ([`spawn_tls`]).
    tls: bool,
    /// The TLS handshakes that failed, for a TLS listener.
    handshake_failures: Option<Arc<HandshakeFailures>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Listening {
    /// `http://<addr>` (`https://` for a TLS listener), handy for building request URLs.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// For a TLS listener, how many TLS handshakes failed so far and why the first one did; `None`
    /// when none failed (or the listener is clear text). A client that does not trust the
    /// listener's certificate shows up here and nowhere else: it never sends a request.
    pub fn handshake_failures(&self) -> Option<(u64, String)> {
        self.handshake_failures.as_ref().and_then(|f| f.get())
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

    /// Resolves when the server stops (gracefully, or its handle was dropped). For work a
    /// connection hands off and that must not outlive its server: an upgraded WebSocket.
    pub async fn fired(&mut self) {
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
/// hyper's 400 and close only their own connection. A request head must arrive within
/// [`HEADER_READ_TIMEOUT`]; [`serve_connection_with`] takes another.
pub async fn serve_connection<IO, S, B>(io: IO, service: S, shutdown: Shutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    drive(io, service, shutdown, HEADER_READ_TIMEOUT, None).await;
}

/// [`serve_connection`] with the client's header timeout from `timeouts`. The body timeout is the
/// service's to apply (see [`TimedBody`]): only it knows when it waits for a body.
pub async fn serve_connection_with<IO, S, B>(
    io: IO,
    service: S,
    shutdown: Shutdown,
    timeouts: ClientTimeouts,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    drive(io, service, shutdown, timeouts.header, None).await;
}

/// [`serve_connection`] for a service that may end its connection: `make_service` gets the
/// connection's [`ConnectionControl`]. When the service asks, the connection is dropped
/// mid-exchange: at once, with an abortive close ([`ConnectionControl::reset`]), or once every
/// byte written so far has been flushed ([`ConnectionControl::close_after_flush`]); or it is shut
/// down gracefully, the exchanges under way finishing first ([`ConnectionControl::go_away`]).
pub async fn serve_controlled<IO, S, B>(
    io: IO,
    make_service: impl FnOnce(ConnectionControl) -> S,
    shutdown: Shutdown,
    timeouts: ClientTimeouts,
) where
    IO: Transport,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let control = ConnectionControl::default();
    control.0.attached.store(true, Ordering::Release);
    let handed_back = Arc::new(std::sync::Mutex::new(None));
    let io = Controlled {
        io: Some(io),
        control: control.clone(),
        handed_back: handed_back.clone(),
        lingering: None,
    };
    let service = make_service(control.clone());
    let after = shutdown.clone();
    tokio::select! {
        biased;
        // Dropping the connection drops the in-flight service future and the transport; the
        // transport's drop makes the close abrupt when a reset was asked for, or hands the
        // transport back for a farewell.
        () = control.closing() => tracing::debug!("connection closed by the service"),
        () = drive(io, service, shutdown, timeouts.header, Some(&control)) => {}
    }
    // Nothing is left to shut down: a service task still waiting for that must not wait forever
    // (HTTP/2 streams run in tasks of their own, which can outlive the connection).
    control.shutdown_started();
    let io = handed_back.lock().ok().and_then(|mut slot| slot.take());
    if let Some(io) = io {
        farewell(io, control.take_farewell(), after).await;
    }
}

/// The longest a farewell ([`ConnectionControl::close_with`]) may take: writing its bytes to a
/// client that does not read, or waiting for one that does not close its side.
pub const FAREWELL_LIMIT: Duration = Duration::from_secs(5);

/// Writes `bytes` to the raw transport of a connection whose HTTP exchange was dropped, then
/// closes it cleanly: the write side is shut down (a FIN, after TLS's `close_notify`), and what
/// the client still sends is read and discarded until it closes its side. Closing a socket with
/// unread bytes in its receive buffer would send a RST instead of the FIN (what nginx's lingering
/// close avoids too). Bounded by [`FAREWELL_LIMIT`] and cut by the server's shutdown.
async fn farewell<IO: Transport>(mut io: IO, bytes: bytes::Bytes, mut shutdown: Shutdown) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        io.write_all(&bytes).await?;
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        while io.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    tokio::select! {
        biased;
        () = shutdown.fired() => {}
        done = tokio::time::timeout(FAREWELL_LIMIT, work) => match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "farewell cut short"),
            Err(_) => tracing::debug!("farewell timed out"),
        },
    }
}

/// Serves one connection until it ends. A graceful shutdown starts when the server stops
/// (`shutdown`) or when the service asks for it through `control`: on HTTP/2 hyper sends a GOAWAY
/// and lets the streams under way finish; on HTTP/1.1 the exchange under way finishes and the
/// connection closes.
async fn drive<IO, S, B>(
    io: IO,
    service: S,
    mut shutdown: Shutdown,
    header_timeout: Duration,
    control: Option<&ConnectionControl>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // HTTP/1.1 or HTTP/2 with prior knowledge (h2c), told apart by the first bytes; upgrades
    // (WebSockets) are kept for the service to take over.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Extended CONNECT (RFC 8441) lets an HTTP/2 client open a WebSocket on a stream.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        biased;
        result = conn.as_mut() => result,
        () = shutdown.fired() => {
            conn.as_mut().graceful_shutdown();
            if let Some(control) = control {
                control.shutdown_started();
            }
            conn.await
        }
        // Once shutting down, a server stop has nothing more to ask: its grace period bounds
        // the wait for the exchanges under way.
        () = going_away(control) => {
            conn.as_mut().graceful_shutdown();
            if let Some(control) = control {
                control.shutdown_started();
            }
            conn.await
        }
    };
    if let Err(e) = result {
        // Client-side trouble (reset, bad bytes, header timeout) is routine for a server.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves when the service asks for a graceful shutdown; never without a control.
async fn going_away(control: Option<&ConnectionControl>) {
    match control {
        Some(control) => control.going_away().await,
        None => std::future::pending().await,
    }
}

/// A byte stream a controlled connection runs on, and how to close it abruptly.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Makes the coming close abortive where the transport has such a thing. The default does
    /// nothing: the close is an ordinary end of stream.
    fn set_abortive_close(&self) {}
}

impl Transport for TcpStream {
    /// `SO_LINGER` 0: closing the socket sends a RST and discards unsent data, so the client sees
    /// "connection reset" rather than a clean end of stream.
    fn set_abortive_close(&self) {
        if let Err(e) = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(error = %e, "cannot set SO_LINGER 0; the close will be a FIN");
        }
    }
}

/// Through TLS the RST still works: the socket under the session closes abortively, with no TLS
/// `close_notify`, which is what an abrupt close is.
impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn set_abortive_close(&self) {
        self.get_ref().0.set_abortive_close();
    }
}

/// An in-memory pipe has no RST: dropping it ends the peer's stream.
impl Transport for tokio::io::DuplexStream {}

const OPEN: u8 = 0;
const CLOSE_AFTER_FLUSH: u8 = 1;
const CLOSE: u8 = 2;
const RESET: u8 = 3;
/// The service asked for a farewell: drop the HTTP connection, then write raw bytes and close.
const FAREWELL: u8 = 4;

/// The handle a service uses to end its own connection (see [`serve_controlled`]). Cloning shares
/// the connection. A control that belongs to no connection does nothing.
#[derive(Debug, Clone, Default)]
pub struct ConnectionControl(Arc<ControlState>);

#[derive(Debug, Default)]
struct ControlState {
    /// Served by [`serve_controlled`]; a control made elsewhere belongs to no connection.
    attached: AtomicBool,
    state: AtomicU8,
    notify: Notify,
    /// A graceful shutdown was asked for ([`ConnectionControl::go_away`]).
    away: AtomicBool,
    away_notify: Notify,
    /// The connection has started its graceful shutdown, or is gone.
    shut: AtomicBool,
    shut_notify: Notify,
    /// Completed flushes of the transport, counted from the start of the connection.
    flushes: AtomicU64,
    /// Tasks waiting in [`ConnectionControl::flushed_since`]: without any, a flush wakes nobody.
    flush_waiters: AtomicUsize,
    flushed: Notify,
    /// What a farewell writes ([`ConnectionControl::close_with`]).
    farewell: std::sync::Mutex<Option<bytes::Bytes>>,
    /// How long the transport waits before it shuts its write side down, in nanoseconds; 0 for
    /// not at all ([`ConnectionControl::linger`]).
    linger_nanos: AtomicU64,
}

impl ConnectionControl {
    /// Drop the connection now, abortively (TCP RST where possible): the client gets no response.
    pub fn reset(&self) {
        self.0.state.store(RESET, Ordering::Release);
        self.0.notify.notify_one();
    }

    /// Drop the connection once every byte written to it so far has been flushed to the
    /// transport: the client gets what was sent, then an end of stream. Used to cut a body.
    pub fn close_after_flush(&self) {
        // Only from OPEN: a reset, or a close already under way, stays what it is.
        let _ = self.0.state.compare_exchange(
            OPEN,
            CLOSE_AFTER_FLUSH,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Drop the HTTP connection now, with no response, and write `bytes` to the raw transport
    /// instead (empty: nothing), then close it cleanly, with a FIN (see [`farewell`]). For
    /// HTTP/1.1: on HTTP/2 this would end every stream of the connection. Asking after another
    /// close or a reset does nothing.
    pub fn close_with(&self, bytes: bytes::Bytes) {
        if let Ok(mut slot) = self.0.farewell.lock() {
            *slot = Some(bytes);
        }
        let asked = self
            .0
            .state
            .compare_exchange(OPEN, FAREWELL, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if asked {
            self.0.notify.notify_one();
        }
    }

    fn take_farewell(&self) -> bytes::Bytes {
        self.0
            .farewell
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_default()
    }

    /// Delay the close of the transport: when the connection shuts its write side down (over
    /// HTTP/1.1, once the last response of a `Connection: close` exchange is flushed), it waits
    /// `delay` first, so the client gets the whole response and its FIN only `delay` later. The
    /// longest delay asked for wins.
    pub fn linger(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.0.linger_nanos.fetch_max(nanos, Ordering::AcqRel);
    }

    /// The linger asked for, once: the transport's shutdown waits for it only the first time.
    fn take_linger(&self) -> Option<Duration> {
        let nanos = self.0.linger_nanos.swap(0, Ordering::AcqRel);
        (nanos > 0).then(|| Duration::from_nanos(nanos))
    }

    /// Shut the connection down gracefully: the exchanges under way finish, no new one starts.
    /// On HTTP/2 the client gets a GOAWAY and must open a new connection for its next request;
    /// on HTTP/1.1 the connection closes after the exchange under way. Asking again does nothing.
    ///
    /// Resolves once the shutdown has started (at once on a control that belongs to no
    /// connection): an HTTP/2 response handed to hyper after that goes out behind the GOAWAY, so
    /// the client knows not to send its next request on this connection before it has the
    /// answer to this one.
    pub async fn go_away(&self) {
        if !self.0.away.swap(true, Ordering::AcqRel) {
            self.0.away_notify.notify_one();
        }
        if !self.0.attached.load(Ordering::Acquire) {
            return;
        }
        loop {
            let notified = self.0.shut_notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.0.shut.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// The connection started its graceful shutdown, or ended: [`ConnectionControl::go_away`]
    /// has nothing more to wait for.
    fn shutdown_started(&self) {
        self.0.shut.store(true, Ordering::Release);
        self.0.shut_notify.notify_waiters();
    }

    /// How many flushes of the transport have completed so far. With
    /// [`ConnectionControl::flushed_since`]: bytes that were in the connection's write buffer
    /// when this was read are on their way once a later flush completes.
    pub fn flushes(&self) -> u64 {
        self.0.flushes.load(Ordering::SeqCst)
    }

    /// Resolves once a flush has completed after [`ConnectionControl::flushes`] returned `mark`
    /// (at once when one already has). Never resolves on a control that belongs to no connection.
    pub fn flushed_since(&self, mark: u64) -> impl Future<Output = ()> + Send + Sync + 'static {
        let state = self.0.clone();
        async move {
            let _waiting = FlushWaiter::new(&state);
            loop {
                let notified = state.flushed.notified();
                let mut notified = std::pin::pin!(notified);
                // Registered before the check, so a flush between the check and the wait still
                // wakes this task.
                notified.as_mut().enable();
                if state.flushes.load(Ordering::SeqCst) > mark {
                    return;
                }
                notified.await;
            }
        }
    }

    fn state(&self) -> u8 {
        self.0.state.load(Ordering::Acquire)
    }

    /// The transport finished a flush: a pending close-after-flush may go ahead, and tasks
    /// waiting for a flush may too.
    fn flushed(&self) {
        self.0.flushes.fetch_add(1, Ordering::SeqCst);
        // Every flush of every connection passes here: wake only when someone waits.
        if self.0.flush_waiters.load(Ordering::SeqCst) > 0 {
            self.0.flushed.notify_waiters();
        }
        let closing = self
            .0
            .state
            .compare_exchange(
                CLOSE_AFTER_FLUSH,
                CLOSE,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if closing {
            self.0.notify.notify_one();
        }
    }

    /// Resolves when the connection must be dropped.
    async fn closing(&self) {
        loop {
            // `notify_one` stores a permit when nobody waits, so no request is lost between the
            // check and the wait.
            let notified = self.0.notify.notified();
            if matches!(self.state(), CLOSE | RESET | FAREWELL) {
                return;
            }
            notified.await;
        }
    }

    /// Resolves when the service asked for a graceful shutdown.
    async fn going_away(&self) {
        loop {
            let notified = self.0.away_notify.notified();
            if self.0.away.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a task in [`ControlState::flush_waiters`] while it waits.
struct FlushWaiter<'a>(&'a ControlState);

impl<'a> FlushWaiter<'a> {
    fn new(state: &'a ControlState) -> Self {
        state.flush_waiters.fetch_add(1, Ordering::SeqCst);
        FlushWaiter(state)
    }
}

impl Drop for FlushWaiter<'_> {
    fn drop(&mut self) {
        self.0.flush_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The transport of a controlled connection: reports flushes to the control, makes the close
/// abortive on drop when the control asked for a reset, hands the transport back on drop when it
/// asked for a farewell, and holds the shutdown of its write side for a linger.
struct Controlled<IO: Transport> {
    /// Always `Some` until the drop hands it back.
    io: Option<IO>,
    control: ConnectionControl,
    /// Where the drop leaves the transport for a farewell.
    handed_back: Arc<std::sync::Mutex<Option<IO>>>,
    /// The linger under way, in `poll_shutdown`.
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO: Transport> Controlled<IO> {
    fn io(&mut self) -> io::Result<Pin<&mut IO>> {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<IO: Transport> Drop for Controlled<IO> {
    fn drop(&mut self) {
        match self.control.state() {
            RESET => {
                if let Some(io) = &self.io {
                    io.set_abortive_close();
                }
            }
            FAREWELL => {
                if let (Some(io), Ok(mut slot)) = (self.io.take(), self.handed_back.lock()) {
                    *slot = Some(io);
                }
            }
            _ => {}
        }
    }
}

impl<IO: Transport> AsyncRead for Controlled<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.io()?.poll_read(cx, buf)
    }
}

impl<IO: Transport> AsyncWrite for Controlled<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    /// hyper flushes the transport only once its own write buffer is empty, so a finished flush
    /// means every byte handed to hyper so far is on its way to the client.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = ready!(self.io()?.poll_flush(cx));
        if result.is_ok() {
            self.control.flushed();
        }
        Poll::Ready(result)
    }

    /// hyper shuts the write side down once a connection is done (after the response to a
    /// `Connection: close` exchange is flushed); a linger asked for holds that FIN back first.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(delay) = this.control.take_linger() {
            this.lingering = Some(Box::pin(tokio::time::sleep(delay)));
        }
        if let Some(sleep) = &mut this.lingering {
            ready!(sleep.as_mut().poll(cx));
            this.lingering = None;
        }
        this.io()?.poll_shutdown(cx)
    }
}

/// Why a request body could not be read: the client stalled, or sent something that is not a
/// body (bad chunk framing, a connection cut mid-body). Either way the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Nothing arrived for this long while the reader waited.
    #[error("no body bytes for {} ms", .0.as_millis())]
    Stalled(Duration),
    /// The body's own error.
    #[error("{0}")]
    Read(#[source] Box<dyn StdError + Send + Sync>),
}

impl BodyError {
    /// The `BodyError` somewhere in `error`'s source chain (it may come back wrapped by the code
    /// that read the body, such as hyper's client).
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a BodyError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<BodyError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

/// A body whose reads time out: it fails with [`BodyError::Stalled`] when its sender leaves it
/// `timeout` without a frame while the reader waits. Like nginx's `client_body_timeout` and
/// `proxy_read_timeout`, this bounds the gap between two reads, not the whole transfer, and time
/// the reader spends elsewhere (pacing a download, say) does not count.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    /// Armed while the reader waits on the sender; dropped on every frame, so a timer never
    /// outlives the wait it bounds (a paused clock would otherwise jump to it).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimedBody {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> std::fmt::Debug for TimedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("timeout", &self.timeout)
            .field("waiting", &self.sleep.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(|e| BodyError::Read(e.into()))))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
                Poll::Ready(Some(Err(BodyError::Stalled(timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why an HTTP/1.1 request must be refused for its `Host` (RFC 9112 section 3.2: none, or more
/// than one); `None` when it is fine. HTTP/1.0 may leave `Host` out.
pub fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(hyper::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some("more than one Host header"),
        (None, _) if req.version() == hyper::Version::HTTP_11 => {
            Some("an HTTP/1.1 request must carry a Host header")
        }
        _ => None,
    }
}

/// Runs an accept loop on `listener` in a new task, calling `serve` for every connection in a task
/// of its own. Returns the handle that stops it.
pub fn spawn_tcp<F, Fut>(listener: TcpListener, serve: F) -> std::io::Result<Listening>
where
    F: Fn(TcpStream, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, serve, stop_rx));
    Ok(Listening {
        addr,
        tls: false,
        handshake_failures: None,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// [`spawn_tcp`] for a TLS listener: every accepted connection is handed to `serve` once its TLS
/// handshake with `acceptor` succeeds. A handshake that fails, or takes longer than
/// [`TLS_HANDSHAKE_TIMEOUT`], closes that connection (logged at debug level); a shutdown cuts
/// handshakes under way.
pub fn spawn_tls<F, Fut>(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    serve: F,
) -> std::io::Result<Listening>
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let failures = Arc::new(HandshakeFailures::default());
    let tally = failures.clone();
    let mut listening = spawn_tcp(listener, move |stream, mut shutdown| {
        let serve = serve.clone();
        let acceptor = acceptor.clone();
        let tally = tally.clone();
        async move {
            let peer = stream.peer_addr().ok();
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = tokio::select! {
                biased;
                () = shutdown.fired() => return,
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(?peer, error = %e, "TLS handshake failed");
                        tally.record(e.to_string());
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(?peer, "TLS handshake timed out");
                        tally.record(format!("no handshake within {TLS_HANDSHAKE_TIMEOUT:?}"));
                        return;
                    }
                },
            };
            serve(stream, shutdown).await;
        }
    })?;
    listening.tls = true;
    listening.handshake_failures = Some(failures);
    Ok(listening)
}

async fn accept_loop<F, Fut>(listener: TcpListener, serve: F, mut stop: oneshot::Receiver<()>)
where
    F: Fn(TcpStream, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
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
                    let shutdown = Shutdown(Some(shutdown_rx.clone()));
                    match crate::cores::next() {
                        None => {
                            connections.spawn(serve(stream, shutdown));
                        }
                        // Served on another core's runtime: the socket leaves this reactor and
                        // joins that one, so its wake-ups stay on its thread.
                        Some(core) => match stream.into_std() {
                            Ok(stream) => {
                                let serve = serve.clone();
                                connections.spawn_on(
                                    async move {
                                        match TcpStream::from_std(stream) {
                                            Ok(stream) => serve(stream, shutdown).await,
                                            Err(e) => tracing::warn!(error = %e, "cannot serve a connection on its core"),
                                        }
                                    },
                                    &core,
                                );
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot hand a connection to its core"),
                        },
                    }
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
