//! The bodies the proxy passes along. [`FaultBody`]: a forwarded response with the body faults
//! applied, `truncate` (send the first N bytes, then have the connection closed) and `throttle`
//! (pace the bytes); it also keeps the request's [`Flight`] and fault decision alive until the body
//! is done, so `in_flight` and the `max_active` slots cover the whole download, not just the
//! response head. [`Upload`]: a request body on its way to the upstream, which tells the forwarder
//! when the proxy is waiting on the client rather than on the upstream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future as _;
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
}

impl Upload {
    pub(crate) fn new(body: Incoming, timeout: Duration) -> (Self, Arc<UploadProgress>) {
        let progress = Arc::new(UploadProgress {
            origin: Instant::now(),
            last_micros: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
        });
        let upload = Upload {
            inner: TimedBody::new(body, timeout),
            progress: progress.clone(),
        };
        (upload, progress)
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.progress.moved(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

/// A body cut: how many bytes may still go, and the connection to close after them.
#[derive(Debug)]
pub(crate) struct Cut {
    pub(crate) rule: Arc<str>,
    pub(crate) remaining: u64,
    pub(crate) control: ConnectionControl,
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

    /// Stops the body here and has the connection closed once what was sent is flushed. Counted
    /// only now, so a body that fits under the limit is not counted as truncated.
    fn start_cut(&mut self) {
        self.cutting = true;
        if let Some(cut) = &self.cut {
            self.flight.metrics().body_truncated(&cut.rule);
            cut.control.close_after_flush();
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
            // connection is dropped instead, once the allowed bytes are flushed.
            return Poll::Pending;
        }
        if this.held.is_none() {
            let chunk = match this.rest.take() {
                Some(rest) => rest,
                None if this.overflow => {
                    this.start_cut();
                    return Poll::Pending;
                }
                None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(chunk) => match this.admit(chunk) {
                            Some(chunk) => chunk,
                            None => {
                                this.start_cut();
                                return Poll::Pending;
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
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
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
