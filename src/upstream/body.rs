//! The demo upstream's response bodies: small ones in memory, and the two that can be large,
//! static files and `/api/bytes/<n>`, produced a chunk at a time as the client reads, so a
//! download holds one chunk in memory whatever the size, and a slow reader holds the file's
//! bytes in the kernel's buffers, not ours.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::future::Future as _;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// The most a streamed body holds in memory at once.
const CHUNK: usize = 64 * 1024;

/// `0123456789abcdef` over one chunk; a multiple of 16 long, so consecutive chunks continue it.
static PATTERN: [u8; CHUNK] = {
    let digits = b"0123456789abcdef";
    let mut chunk = [0u8; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        chunk[i] = digits[i % 16];
        i += 1;
    }
    chunk
};

/// A response body of the demo upstream.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Built whole: JSON, the page, scenario routes.
    Full(Full<Bytes>),
    /// A static file, read a chunk at a time.
    File(FileBody),
    /// `n` bytes of the `0123456789abcdef` pattern, without building them.
    Pattern { remaining: u64 },
    /// Server-sent events, one at a time (`/api/events`).
    Events(EventsBody),
    /// A gRPC answer: the length-prefixed message (if any), then the trailers.
    Grpc {
        message: Option<Bytes>,
        trailers: Option<hyper::HeaderMap>,
    },
}

/// `count` server-sent events, the first at once and each next one `interval` later:
/// `id: <n>`, `event: tick`, `data: {"n":<n>,"of":<count>}`, then a blank line.
#[derive(Debug)]
pub struct EventsBody {
    next: u64,
    count: u64,
    interval: std::time::Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl EventsBody {
    pub fn new(count: u64, interval: std::time::Duration) -> Self {
        EventsBody {
            next: 0,
            count,
            interval,
            sleep: None,
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.next >= self.count {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
        }
        let n = self.next;
        self.next += 1;
        self.sleep = (self.next < self.count).then(|| Box::pin(tokio::time::sleep(self.interval)));
        let event = format!(
            "id: {n}\nevent: tick\ndata: {{\"n\":{n},\"of\":{}}}\n\n",
            self.count
        );
        Poll::Ready(Some(Bytes::from(event)))
    }
}

impl From<Full<Bytes>> for UpstreamBody {
    fn from(body: Full<Bytes>) -> Self {
        UpstreamBody::Full(body)
    }
}

impl UpstreamBody {
    /// `len` bytes of `0123456789abcdef` repeated.
    pub fn pattern(len: u64) -> Self {
        UpstreamBody::Pattern { remaining: len }
    }
}

/// A file sent as it is read. Its length is fixed when it is opened and announced as the
/// `Content-Length`: a file that grows meanwhile is cut there, one that shrinks ends the body with
/// an error (the client sees a short body, never bytes of another length than announced).
#[derive(Debug)]
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    /// The chunk being read; kept across polls, since the file may answer later.
    buf: Vec<u8>,
}

impl FileBody {
    pub fn new(file: tokio::fs::File, len: u64) -> Self {
        FileBody {
            file,
            remaining: len,
            buf: Vec::new(),
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining).unwrap_or(CHUNK).min(CHUNK);
        self.buf.resize(want, 0);
        let mut read = ReadBuf::new(&mut self.buf);
        if let Err(e) = ready!(Pin::new(&mut self.file).poll_read(cx, &mut read)) {
            return Poll::Ready(Some(Err(e)));
        }
        let n = read.filled().len();
        if n == 0 {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was being sent",
            ))));
        }
        self.remaining -= n as u64;
        let mut chunk = std::mem::take(&mut self.buf);
        chunk.truncate(n);
        Poll::Ready(Some(Ok(Bytes::from(chunk))))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            UpstreamBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            UpstreamBody::File(file) => file.poll_chunk(cx).map_ok(Frame::data),
            UpstreamBody::Pattern { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = usize::try_from(*remaining).unwrap_or(CHUNK).min(CHUNK);
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..n])))))
            }
            UpstreamBody::Events(events) => {
                events.poll_event(cx).map(|e| e.map(|b| Ok(Frame::data(b))))
            }
            UpstreamBody::Grpc { message, trailers } => {
                if let Some(message) = message.take() {
                    return Poll::Ready(Some(Ok(Frame::data(message))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Full(full) => full.is_end_stream(),
            UpstreamBody::File(file) => file.remaining == 0,
            UpstreamBody::Pattern { remaining } => *remaining == 0,
            UpstreamBody::Events(events) => events.next >= events.count,
            UpstreamBody::Grpc { message, trailers } => message.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full(full) => full.size_hint(),
            UpstreamBody::File(file) => SizeHint::with_exact(file.remaining),
            UpstreamBody::Pattern { remaining } => SizeHint::with_exact(*remaining),
            UpstreamBody::Events(_) | UpstreamBody::Grpc { .. } => SizeHint::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_pattern_continues_across_chunks() {
        let len = CHUNK as u64 * 2 + 5;
        let body = UpstreamBody::pattern(len);
        assert_eq!(body.size_hint().exact(), Some(len));
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let expected: Vec<u8> = b"0123456789abcdef"
            .iter()
            .copied()
            .cycle()
            .take(bytes.len())
            .collect();
        assert_eq!(bytes.len() as u64, len);
        assert!(bytes == expected);
    }
}
