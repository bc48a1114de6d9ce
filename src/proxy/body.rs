//! The bodies the proxy passes along. [`FaultBody`]: a forwarded response with the body faults
//! applied, `truncate` (send the first N bytes, then have the connection closed, or on HTTP/2 the
//! stream reset: see [`Ending`]) and `throttle` (pace the bytes); it also keeps the request's
//! [`Flight`] and fault decision alive until the body is done, so `in_flight` and the `max_active`
//! slots cover the whole download, not just the response head. [`Upload`]: a request body on its
//! way to the upstream, which tells the forwarder when the proxy is waiting on the client rather
//! than on the upstream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use tokio::time::{Instant, Sleep};

use super::metrics::Flight;
use super::{BoxError, ProxyBody};
use crate::fault::Decision;
use crate::server::{BodyError, ConnectionControl, TimedBody};

/// A client's request body on its way to the upstream, read with the client body timeout. It
/// records in [`UploadProgress`] when it last moved and whether the proxy is waiting on the client,
/// so the upstream timeout can leave out the client's time.
#[derive(Debug)]
pub(crate) struct Upload {
    inner: TimedBody<Incoming>,
    progress: Arc<UploadProgress>,
    /// The request's record counts the body's bytes here, when it is observed.
    bytes: Option<Arc<AtomicU64>>,
    /// A `slow_read` fault: the body is read at this pace. The client feels it as backpressure:
    /// hyper reads from the connection only as fast as the body is polled.
    pace: Option<Pace>,
    /// A chunk of at most one pacing quantum, waiting for its release time.
    held: Option<Bytes>,
    /// The rest of the chunk `held` came from.
    rest: Option<Bytes>,
}

impl Upload {
    pub(crate) fn new(
        body: Incoming,
        timeout: Duration,
        bytes: Option<Arc<AtomicU64>>,
    ) -> (Self, Arc<UploadProgress>) {
        let progress = Arc::new(UploadProgress {
            origin: Instant::now(),
            last_micros: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
        });
        let upload = Upload {
            inner: TimedBody::new(body, timeout),
            progress: progress.clone(),
            bytes,
            pace: None,
            held: None,
            rest: None,
        };
        (upload, progress)
    }

    /// Reads the body at `pace` (a `slow_read` fault).
    pub(crate) fn pace(&mut self, pace: Pace) {
        self.pace = Some(pace);
    }

    /// The next chunk of a paced body: at most one quantum, once the pace allows it. The time
    /// spent waiting on the pace counts as waiting on the client (the upstream is not late).
    fn poll_paced(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.held.is_none() {
            let chunk = match self.rest.take() {
                Some(rest) => rest,
                None => {
                    let polled = Pin::new(&mut self.inner).poll_frame(cx);
                    self.progress.moved(polled.is_pending());
                    match ready!(polled) {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(chunk) => chunk,
                            Err(frame) => return Poll::Ready(Some(Ok(frame))),
                        },
                        other => return Poll::Ready(other),
                    }
                }
            };
            let mut head = chunk;
            if let Some(pace) = &self.pace {
                if head.len() > pace.quantum {
                    self.rest = Some(head.split_off(pace.quantum));
                }
            }
            self.held = Some(head);
        }
        if let (Some(pace), Some(held)) = (&mut self.pace, &self.held) {
            let len = held.len();
            let released = pace.poll_release(cx, len);
            self.progress.moved(released.is_pending());
            ready!(released);
            pace.sent = pace.sent.saturating_add(len as u64);
        }
        match self.held.take() {
            Some(chunk) => {
                if let Some(bytes) = &self.bytes {
                    bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Pending,
        }
    }

    /// Bytes read from the client but not yet passed on.
    fn pending(&self) -> u64 {
        [&self.held, &self.rest]
            .into_iter()
            .flatten()
            .map(|b| b.len() as u64)
            .sum()
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.pace.is_some() {
            return self.poll_paced(cx);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.progress.moved(polled.is_pending());
        if let (Some(bytes), Poll::Ready(Some(Ok(frame)))) = (&self.bytes, &polled) {
            if let Some(data) = frame.data_ref() {
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        let pending = self.pending();
        if pending == 0 {
            return hint;
        }
        let mut adjusted = SizeHint::new();
        adjusted.set_lower(hint.lower().saturating_add(pending));
        if let Some(upper) = hint.upper() {
            adjusted.set_upper(upper.saturating_add(pending));
        }
        adjusted
    }
}

/// Where an upload stands, shared between the body and the forwarder awaiting the response head.
#[derive(Debug)]
pub(crate) struct UploadProgress {
    origin: Instant,
    /// When the upload last moved or waited on the client, in microseconds since `origin`.
    last_micros: AtomicU64,
    waiting_on_client: AtomicBool,
}

impl UploadProgress {
    fn moved(&self, waiting_on_client: bool) {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_micros.store(micros, Ordering::Relaxed);
        self.waiting_on_client
            .store(waiting_on_client, Ordering::Relaxed);
    }

    /// When a wait for the upstream that started at the upload's last move would end: `timeout`
    /// from now while the proxy waits on the client (the client body timeout covers that time).
    pub(crate) fn upstream_deadline(&self, timeout: Duration) -> Instant {
        if self.waiting_on_client.load(Ordering::Relaxed) {
            return Instant::now() + timeout;
        }
        let last = Duration::from_micros(self.last_micros.load(Ordering::Relaxed));
        self.origin + last + timeout
    }
}

/// A body cut: how many bytes may still go, and how the exchange ends after them.
#[derive(Debug)]
pub(crate) struct Cut {
    pub(crate) rule: Arc<str>,
    pub(crate) remaining: u64,
    pub(crate) ending: Ending,
}

/// The HTTP/2 error code a cut or reset stream is reset with: INTERNAL_ERROR, what a server or
/// proxy sends when it cannot finish a response (nginx does the same when its upstream dies
/// mid-body); clients report it as a failed stream, not as a refusal they may retry.
pub(crate) const RESET_REASON: h2::Reason = h2::Reason::INTERNAL_ERROR;

/// How a body cut short ends its exchange, once the bytes it let through are on their way.
///
/// HTTP/1.1 has one exchange at a time on a connection, and ending a body early would make hyper
/// end the message cleanly (or report the short body before flushing it): the connection is
/// closed once what was sent is flushed, and the body never ends.
///
/// HTTP/2 streams share the connection, so only the request's stream is reset (RST_STREAM with
/// [`RESET_REASON`]). A reset discards whatever the stream still has queued in h2, so it must
/// wait until the bytes sent before it have left: the body first sends an empty DATA frame whose
/// buffer tells when h2 lets go of it, which h2 does only once it has moved it, and so every
/// frame of the stream queued before it, into the connection's write buffer (a stream's frames
/// leave in order); the next flush of the transport after that puts them on the wire, and then
/// the body fails with the reset.
pub(crate) struct Ending {
    control: ConnectionControl,
    http2: bool,
    state: EndingState,
}

enum EndingState {
    Open,
    /// HTTP/1.1: the connection closes once flushed; the body waits for that.
    Closing,
    /// HTTP/2: the marker frame is sent; waiting for it to leave and for a flush after that.
    Draining(Pin<Box<dyn Future<Output = ()> + Send + Sync>>),
    /// HTTP/2: the reset error was handed to hyper.
    Reset,
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            EndingState::Open => "open",
            EndingState::Closing => "closing",
            EndingState::Draining(_) => "draining",
            EndingState::Reset => "reset",
        };
        f.debug_struct("Ending")
            .field("http2", &self.http2)
            .field("state", &state)
            .finish()
    }
}

impl Ending {
    /// The ending of a body on the connection `control`; `http2` for a request that came over
    /// HTTP/2.
    pub(crate) fn new(control: ConnectionControl, http2: bool) -> Self {
        Ending {
            control,
            http2,
            state: EndingState::Open,
        }
    }

    /// What the body gives hyper from the moment it must end here, in place of its own frames:
    /// never anything on HTTP/1.1 (the connection goes); on HTTP/2 the marker frame, then the
    /// stream's reset once the bytes before it are flushed.
    pub(crate) fn poll_end(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match &mut self.state {
                EndingState::Open if !self.http2 => {
                    self.control.close_after_flush();
                    self.state = EndingState::Closing;
                }
                EndingState::Open => {
                    let (released_tx, released) = tokio::sync::oneshot::channel();
                    let control = self.control.clone();
                    self.state = EndingState::Draining(Box::pin(async move {
                        // The marker's buffer is dropped with a count of flushes; a dropped
                        // sender cannot happen (the drop sends), but would mean "now" too.
                        let mark = released.await.unwrap_or_else(|_| control.flushes());
                        control.flushed_since(mark).await;
                    }));
                    let marker = Bytes::from_owner(Marker {
                        released: Some(released_tx),
                        control: self.control.clone(),
                    });
                    return Poll::Ready(Some(Ok(Frame::data(marker))));
                }
                EndingState::Closing | EndingState::Reset => return Poll::Pending,
                EndingState::Draining(sent) => {
                    ready!(sent.as_mut().poll(cx));
                    self.state = EndingState::Reset;
                    // hyper resets the stream with the code of the h2 error it finds.
                    return Poll::Ready(Some(Err(Box::new(h2::Error::from(RESET_REASON)))));
                }
            }
        }
    }
}

/// The buffer of the empty DATA frame an HTTP/2 cut sends before its reset: when h2 drops it,
/// it says how many flushes the connection had completed then (see [`Ending`]).
struct Marker {
    released: Option<tokio::sync::oneshot::Sender<u64>>,
    control: ConnectionControl,
}

impl AsRef<[u8]> for Marker {
    fn as_ref(&self) -> &[u8] {
        &[]
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if let Some(released) = self.released.take() {
            let _ = released.send(self.control.flushes());
        }
    }
}

/// Body pacing at a fixed rate: chunk `k` is released when the bytes up to and including it fit
/// the rate since the first chunk was asked for, so a body of `n` bytes takes at least
/// `n / bytes_per_second`, whatever chunk sizes the upstream used.
#[derive(Debug)]
pub(crate) struct Pace {
    bytes_per_second: u64,
    /// The largest chunk sent at once: about a tenth of a second of bytes, so the pacing is smooth
    /// without waking the task for every few bytes.
    quantum: usize,
    start: Option<Instant>,
    sent: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    pub(crate) fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1);
        Pace {
            bytes_per_second: rate,
            quantum: usize::try_from(rate / 10)
                .unwrap_or(usize::MAX)
                .clamp(1, 16 * 1024),
            start: None,
            sent: 0,
            sleep: None,
        }
    }

    /// Ready when `len` more bytes may go.
    fn poll_release(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<()> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let total = self.sent.saturating_add(len as u64);
        let due = start + Duration::from_secs_f64(total as f64 / self.bytes_per_second as f64);
        if Instant::now() >= due {
            self.sleep = None;
            return Poll::Ready(());
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        sleep.as_mut().reset(due);
        ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        Poll::Ready(())
    }
}

/// A forwarded response body with its body faults.
pub(crate) struct FaultBody {
    inner: ProxyBody,
    cut: Option<Cut>,
    pace: Option<Pace>,
    /// A chunk of at most one pacing quantum, waiting for its release time.
    held: Option<Bytes>,
    /// The rest of the upstream chunk `held` came from.
    rest: Option<Bytes>,
    /// The upstream sent more than the cut allows: once `held` and `rest` are out, cut.
    overflow: bool,
    /// The allowed bytes are out: the connection is being closed.
    cutting: bool,
    /// Held for their `Drop`s: `in_flight` and the `max_active` slots end with the body.
    flight: Flight,
    _decision: Decision,
}

impl FaultBody {
    pub(crate) fn new(
        inner: ProxyBody,
        cut: Option<Cut>,
        pace: Option<Pace>,
        flight: Flight,
        decision: Decision,
    ) -> Self {
        FaultBody {
            inner,
            cut,
            pace,
            held: None,
            rest: None,
            overflow: false,
            cutting: false,
            flight,
            _decision: decision,
        }
    }

    /// The part of an upstream chunk the cut lets through, or `None` when the body must be cut now.
    fn admit(&mut self, mut chunk: Bytes) -> Option<Bytes> {
        let Some(cut) = &mut self.cut else {
            return Some(chunk);
        };
        if cut.remaining == 0 && !chunk.is_empty() {
            return None;
        }
        let allowed = usize::try_from(cut.remaining).unwrap_or(usize::MAX);
        if chunk.len() > allowed {
            chunk.truncate(allowed);
            self.overflow = true;
        }
        cut.remaining = cut.remaining.saturating_sub(chunk.len() as u64);
        Some(chunk)
    }

    /// What a cut body gives hyper: its ending's frames.
    fn end(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.cut {
            Some(cut) => cut.ending.poll_end(cx),
            None => Poll::Pending,
        }
    }

    /// Stops the body here: from now on its [`Ending`] speaks for it. Counted only now, so a body
    /// that fits under the limit is not counted as truncated.
    fn start_cut(&mut self) {
        self.cutting = true;
        if let Some(cut) = &self.cut {
            self.flight.metrics().body_truncated(&cut.rule);
        }
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.cutting {
            // Never end a cut body: ending it early makes hyper report the short body as an error
            // (dropping bytes it has not flushed yet), or end a chunked body cleanly. The
            // connection is dropped instead, or the HTTP/2 stream reset, once the allowed bytes
            // are flushed.
            return this.end(cx);
        }
        if this.held.is_none() {
            let chunk = match this.rest.take() {
                Some(rest) => rest,
                None if this.overflow => {
                    this.start_cut();
                    return this.end(cx);
                }
                None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(chunk) => match this.admit(chunk) {
                            Some(chunk) => chunk,
                            None => {
                                this.start_cut();
                                return this.end(cx);
                            }
                        },
                        // Trailers pass as they are.
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                    Some(Err(e)) => {
                        if let Some(BodyError::Stalled(_)) = BodyError::find(e.as_ref()) {
                            this.flight.metrics().upstream_read_timed_out();
                        }
                        // hyper ends the client's connection mid-body: the client sees a short body.
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => return Poll::Ready(None),
                },
            };
            let mut head = chunk;
            if let Some(pace) = &this.pace {
                if head.len() > pace.quantum {
                    this.rest = Some(head.split_off(pace.quantum));
                }
            }
            this.held = Some(head);
        }
        if let (Some(pace), Some(held)) = (&mut this.pace, &this.held) {
            let len = held.len();
            ready!(pace.poll_release(cx, len));
            pace.sent = pace.sent.saturating_add(len as u64);
        }
        match this.held.take() {
            Some(chunk) => {
                this.flight.sent(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.cutting
            && !self.overflow
            && self.held.is_none()
            && self.rest.is_none()
            && self.inner.is_end_stream()
    }

    /// The upstream's size: a cut body still announces its full length (the kept
    /// `Content-Length` is how the client can tell the body is short).
    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        let pending = [&self.held, &self.rest]
            .into_iter()
            .flatten()
            .map(|b| b.len() as u64)
            .sum::<u64>();
        if pending == 0 {
            return hint;
        }
        let mut adjusted = SizeHint::new();
        adjusted.set_lower(hint.lower().saturating_add(pending));
        if let Some(upper) = hint.upper() {
            adjusted.set_upper(upper.saturating_add(pending));
        }
        adjusted
    }
}
