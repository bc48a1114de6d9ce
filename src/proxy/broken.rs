//! Broken answers: the bytes of a `garbage` fault, the HTTP/2 stream body that carries them
//! ([`GarbageBody`]), and the HTTP/2 body of a `slow_close` fault whose end is held back
//! ([`Linger`]). Over HTTP/1.1 both act on the connection itself, through
//! [`crate::server::ConnectionControl`] (`close_with`, `linger`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use rand::RngCore;
use std::future::Future;
use tokio::time::Sleep;

use super::body::Ending;
use super::{BoxError, ProxyBody};
use crate::seed;

/// The HTTP/2 error code an `empty` fault resets its stream with, before any head: NO_ERROR, the
/// stream's counterpart of a clean close (where a `reset` sends INTERNAL_ERROR).
pub(crate) const EMPTY_REASON: h2::Reason = h2::Reason::NO_ERROR;

/// The `size` random bytes a `garbage` rule sends for a request, from the stream
/// `seed::rng_parts(seed, ["garbage", <rule>, <request key>])`: the same bytes for the same
/// request, run after run. The first byte is never `H`, CR or LF, so the bytes can never start an
/// HTTP/1.x status line (a client might otherwise wait for the rest of one).
pub(crate) fn garbage(seed: u64, rule: &str, key: &str, size: u64) -> Bytes {
    let mut rng = seed::rng_parts(seed, &["garbage", rule, key]);
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    if let Some(first) = bytes.first_mut() {
        if matches!(*first, b'H' | b'\r' | b'\n') {
            *first ^= 0x80;
        }
    }
    Bytes::from(bytes)
}

/// An HTTP/2 `garbage` answer's body: the random bytes, then the stream's reset once they are
/// flushed (see [`Ending`]). Never ends cleanly.
pub(crate) struct GarbageBody {
    bytes: Option<Bytes>,
    ending: Ending,
}

impl GarbageBody {
    pub(crate) fn new(bytes: Bytes, ending: Ending) -> Self {
        GarbageBody {
            bytes: Some(bytes).filter(|b| !b.is_empty()),
            ending,
        }
    }
}

impl Body for GarbageBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.bytes.take() {
            Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None => self.ending.poll_end(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// An HTTP/2 `slow_close` body: the response's frames as they come, but its end (the last
/// frame's END_STREAM, or the trailers) only `delay` after the last data frame.
pub(crate) struct Linger {
    inner: ProxyBody,
    delay: Duration,
    state: LingerState,
}

enum LingerState {
    Streaming,
    /// The inner body ended (with these trailers, if any): waiting out the delay.
    Holding(Pin<Box<Sleep>>, Option<Frame<Bytes>>),
    Done,
}

impl Linger {
    pub(crate) fn new(inner: ProxyBody, delay: Duration) -> Self {
        Linger {
            inner,
            delay,
            state: LingerState::Streaming,
        }
    }
}

impl Body for Linger {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                LingerState::Streaming => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) if frame.is_data() => return Poll::Ready(Some(Ok(frame))),
                    Some(Ok(trailers)) => {
                        let sleep = Box::pin(tokio::time::sleep(this.delay));
                        this.state = LingerState::Holding(sleep, Some(trailers));
                    }
                    Some(Err(e)) => {
                        this.state = LingerState::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => {
                        let sleep = Box::pin(tokio::time::sleep(this.delay));
                        this.state = LingerState::Holding(sleep, None);
                    }
                },
                LingerState::Holding(sleep, trailers) => {
                    ready!(sleep.as_mut().poll(cx));
                    let trailers = trailers.take();
                    this.state = LingerState::Done;
                    return Poll::Ready(trailers.map(Ok));
                }
                LingerState::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, LingerState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_seeded_sized_and_never_starts_a_status_line() {
        let a = garbage(1, "junk", "req-1", 4096);
        assert_eq!(a.len(), 4096);
        assert_eq!(a, garbage(1, "junk", "req-1", 4096));
        assert_ne!(a, garbage(1, "junk", "req-2", 4096));
        for i in 0..2000 {
            let one = garbage(3, "junk", &i.to_string(), 1);
            assert!(!matches!(one[0], b'H' | b'\r' | b'\n'), "{one:?}");
        }
    }
}
