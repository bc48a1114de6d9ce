//! The `stream` fault on a server-sent event stream (`text/event-stream`): the body is passed on
//! event by event, each held `event_delay` when one is set, and cut after `after_events` whole
//! events (the connection is then closed, as a real dropped stream would be; over HTTP/2 only the
//! request's stream is reset, see [`Ending`]). Nothing is held
//! back that the fault does not ask for: with only a cut, bytes go on as they come, and the count
//! of events is kept as they pass. An event ends at a blank line (`\n\n`, `\r\n\r\n` or a mix).

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::body::Ending;
use super::{BoxError, ProxyBody};

/// True for a `text/event-stream` response.
pub(crate) fn is_event_stream(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Finds event boundaries in a byte stream and says what may go, up to the cut.
#[derive(Debug)]
struct Splitter {
    after_events: Option<u64>,
    /// Hand out whole events one by one (for a delay), instead of chunks as they come.
    whole: bool,
    /// Events seen.
    events: u64,
    /// Whether the last byte seen ended a line (a `\r` does not change it).
    at_line_start: bool,
    /// With `whole`: the bytes of the event being read.
    partial: BytesMut,
    /// The cut was reached: nothing more goes.
    cut: bool,
}

impl Splitter {
    fn new(after_events: Option<u64>, whole: bool) -> Self {
        Splitter {
            after_events,
            whole,
            events: 0,
            at_line_start: true,
            partial: BytesMut::new(),
            cut: after_events == Some(0),
        }
    }

    /// What of `chunk` may go on, in order: whole events one by one when `whole`, else the
    /// chunk as it came (up to the cut's blank line).
    fn take(&mut self, chunk: &Bytes, out: &mut VecDeque<Bytes>) {
        if self.cut {
            return;
        }
        let mut start = 0;
        for (i, byte) in chunk.iter().enumerate() {
            match byte {
                b'\n' if self.at_line_start => {
                    // A blank line: the end of an event.
                    self.events += 1;
                    if self.whole {
                        self.partial.extend_from_slice(&chunk[start..=i]);
                        out.push_back(self.partial.split().freeze());
                        start = i + 1;
                    }
                    if self.after_events.is_some_and(|n| self.events >= n) {
                        if !self.whole {
                            out.push_back(chunk.slice(start..=i));
                        }
                        self.cut = true;
                        return;
                    }
                }
                b'\n' => self.at_line_start = true,
                b'\r' => {}
                _ => self.at_line_start = false,
            }
        }
        if self.whole {
            self.partial.extend_from_slice(&chunk[start..]);
        } else if start < chunk.len() {
            out.push_back(chunk.slice(start..));
        }
    }

    /// The rest of an unfinished event, when the stream ends.
    fn rest(&mut self) -> Option<Bytes> {
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }
}

/// A forwarded event stream with the `stream` fault applied.
pub(crate) struct EventBody {
    inner: ProxyBody,
    splitter: Splitter,
    event_delay: Option<Duration>,
    ending: Ending,
    /// Bytes ready to go, each after its delay when one is set.
    ready: VecDeque<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
    cutting: bool,
    upstream_done: bool,
}

impl EventBody {
    pub(crate) fn new(
        inner: ProxyBody,
        after_events: Option<u64>,
        event_delay: Option<Duration>,
        ending: Ending,
    ) -> Self {
        EventBody {
            inner,
            splitter: Splitter::new(after_events, event_delay.is_some()),
            event_delay,
            ending,
            ready: VecDeque::new(),
            sleep: None,
            cutting: false,
            upstream_done: false,
        }
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.cutting {
                // Like a truncated body: never end it; the connection goes, or the HTTP/2 stream
                // is reset, once what was sent is flushed.
                return this.ending.poll_end(cx);
            }
            if !this.ready.is_empty() {
                if let Some(delay) = this.event_delay {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
                    ready!(sleep.as_mut().poll(cx));
                    this.sleep = None;
                }
                if let Some(bytes) = this.ready.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
            }
            if this.splitter.cut {
                this.cutting = true;
                continue;
            }
            if this.upstream_done {
                // What is left of an unfinished event goes as it is.
                if let Some(rest) = this.splitter.rest() {
                    this.ready.push_back(rest);
                    continue;
                }
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => this.splitter.take(&chunk, &mut this.ready),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.upstream_done = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.splitter.cut
            && self.ready.is_empty()
            && self.splitter.partial.is_empty()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // A cut changes the length; an event stream has none anyway.
        SizeHint::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(after: Option<u64>, whole: bool, chunks: &[&'static str]) -> (Vec<String>, bool) {
        let mut splitter = Splitter::new(after, whole);
        let mut out = VecDeque::new();
        for chunk in chunks {
            splitter.take(&Bytes::from_static(chunk.as_bytes()), &mut out);
        }
        out.extend(splitter.rest());
        let texts = out
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        (texts, splitter.cut)
    }

    #[test]
    fn a_cut_lets_whole_events_through_and_nothing_after() {
        let (out, cut) = run(
            Some(2),
            false,
            &["data: a\n\nda", "ta: b\r\n\r\ndata: c\n\n"],
        );
        assert_eq!(out.concat(), "data: a\n\ndata: b\r\n\r\n");
        assert!(cut);
        let (out, cut) = run(Some(0), false, &["data: a\n\n"]);
        assert!(out.is_empty() && cut);
    }

    #[test]
    fn without_a_delay_bytes_go_as_they_come() {
        let (out, cut) = run(Some(5), false, &["data: a\n", "\nda"]);
        assert_eq!(out, ["data: a\n", "\nda"]);
        assert!(!cut);
    }

    #[test]
    fn with_a_delay_events_go_whole_one_by_one() {
        let (out, _) = run(None, true, &["data: a\n\ndata: b", "\n\ndata: c"]);
        assert_eq!(out, ["data: a\n\n", "data: b\n\n", "data: c"]);
    }
}
