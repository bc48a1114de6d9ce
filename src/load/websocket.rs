//! WebSocket targets: one attempt is one connection. The upgrade request carries the attempt's
//! ids like any request (so the proxy keys its per-connection decisions on them); after the `101`
//! the messages go out one at a time, each expected back from an echo server, and a Close ends
//! the connection. The load generator's attempt loop calls [`send`] for a target with a
//! `websocket` table.
//!
//! What is recorded must not depend on timing, so the messages are never pipelined: a fault that
//! closes after N messages (both directions counted) then always cuts the same echo. Message `k`
//! waits for its echo, or for `echo_timeout` when it was lost, before message `k + 1` goes; after
//! the last one (and its echo, or its wait) comes the Close. The echo server answers in order, so
//! a message is known lost when a later echo arrived without its own; the last one is lost when
//! its wait passed and the close handshake then completed normally without its echo. An echo that
//! comes after its wait still counts, so a wait that is too short for the round trip costs
//! nothing but order: results stay the same as long as `echo_timeout` is longer than a round
//! trip (held `ws_delay`s included). The attempt's timeout bounds the whole connection.

use std::collections::VecDeque;
use std::io;

use futures_util::{SinkExt, StreamExt};
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::{Connector, Dial, Ids, LoadOptions, Sent, Target, join, request_head};
use crate::record::{ErrorKind, Protocol, WS_NORMAL_CLOSE, WsEnd, WsSession};
use crate::wire;

/// The close code a Close frame without one stands for (RFC 6455 section 7.1.5).
const NO_STATUS: u16 = 1005;

/// One attempt of a WebSocket target: handshake, messages, close.
pub(super) async fn send<D: Dial>(
    connector: &Connector<D>,
    options: &LoadOptions,
    target: &Target,
    ws: &super::WsTarget,
    ids: &Ids<'_>,
    stop: &CancellationToken,
) -> Sent {
    let mut sent = Sent::new(ids.request_id);
    sent.protocol = Some(Protocol::Ws);
    let started = Instant::now();
    let Some((uri, request)) = upgrade_request(options, target, ids) else {
        sent.attempt.error = Some(ErrorKind::Protocol);
        return sent;
    };
    let mut state = State::default();
    let attempt = async {
        let io = match connector.open(uri).await {
            Ok((io, _)) => io,
            Err(e) => {
                tracing::debug!(error = %e, "the load generator cannot connect");
                state.error = Some(ErrorKind::Connect);
                return;
            }
        };
        let handshake =
            tokio_tungstenite::client_async_with_config(request, TokioIo::new(io), None).await;
        let mut stream = match handshake {
            Ok((stream, response)) => {
                state.head(response.status().as_u16(), response.headers());
                stream
            }
            Err(tungstenite::Error::Http(response)) => {
                // Refused (an injected 503, a 426 from a route that is not a WebSocket): an
                // answer like any other, retried by the same policy.
                state.head(response.status().as_u16(), response.headers());
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket handshake failed");
                state.error = Some(classify(&e));
                return;
            }
        };
        let session = state.session.insert(WsSession {
            messages: ws.messages,
            sent: 0,
            echoed: 0,
            lost: Vec::new(),
            close_code: None,
            closed_by_peer: false,
            // What a connection the attempt's timeout cuts short ends as.
            end: WsEnd::Timeout,
        });
        let mut talk = Talk {
            ws,
            seed: options.seed,
            index: ids.index,
            session,
            bytes: &mut state.bytes,
            waiting: VecDeque::new(),
        };
        talk.converse(&mut stream).await;
    };
    let finished = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        done = tokio::time::timeout(options.load.timeout, attempt) => Some(done.is_ok()),
    };
    sent.attempt.latency = started.elapsed();
    sent.attempt.status = state.status;
    sent.attempt.bytes = state.bytes;
    (sent.attempt.faults, sent.attempt.fault_kinds) = state.faults;
    sent.trace_id = state.trace_id;
    sent.retry_after = state.retry_after;
    sent.attempt.error = match (finished, state.session.as_mut()) {
        (None, session) => {
            if let Some(session) = session {
                session.end = WsEnd::Cancelled;
            }
            Some(ErrorKind::Cancelled)
        }
        // Not a `101`: the answer says it all, or the error before it.
        (_, None) if state.status.is_some() => None,
        (Some(false), None) => Some(ErrorKind::Timeout),
        (Some(_), None) => state.error,
        (Some(_), Some(session)) => session.error(),
    };
    sent.attempt.websocket = state.session;
    sent
}

/// Where to connect (the `http://` or `https://` URI), and the upgrade request: the attempt's
/// head (ids, the target's headers) plus the handshake's own headers, for the same URI as
/// `ws://` or `wss://` (tungstenite wants one of those). `None` when the path does not make a
/// URI (validation refuses such paths).
fn upgrade_request(
    options: &LoadOptions,
    target: &Target,
    ids: &Ids<'_>,
) -> Option<(hyper::Uri, hyper::Request<()>)> {
    let uri = join(&options.base, &target.path).ok()?;
    let mut parts = hyper::http::uri::Parts::from(uri.clone());
    let scheme = if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
        "wss"
    } else {
        "ws"
    };
    parts.scheme = Some(scheme.parse().ok()?);
    let ws_uri = hyper::Uri::from_parts(parts).ok()?;
    let host = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    let key = HeaderValue::from_str(&tungstenite::handshake::client::generate_key()).ok()?;
    let mut request = request_head(options, target, ids, ws_uri, ());
    let headers = request.headers_mut();
    headers.append(header::HOST, host);
    headers.append(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.append(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.append(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    headers.append(header::SEC_WEBSOCKET_KEY, key);
    Some((uri, request))
}

/// What an attempt learned, kept outside its future so a timeout or a stop leaves it readable.
#[derive(Default)]
struct State {
    status: Option<u16>,
    faults: (Vec<String>, Vec<String>),
    trace_id: Option<String>,
    retry_after: Option<std::time::Duration>,
    error: Option<ErrorKind>,
    session: Option<WsSession>,
    bytes: u64,
}

impl State {
    /// The handshake's answer: its status, the rules the proxy says fired, the ids.
    fn head(&mut self, status: u16, headers: &hyper::HeaderMap) {
        self.status = Some(status);
        self.faults = (wire::fault_names(headers), wire::fault_kinds(headers));
        self.trace_id = headers
            .get(super::X_TRACE_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::parse_retry_after(v, std::time::SystemTime::now()));
    }
}

/// One connection's messages: what was sent and still waits for its echo, and the record.
struct Talk<'a> {
    ws: &'a super::WsTarget,
    seed: u64,
    index: u64,
    session: &'a mut WsSession,
    bytes: &'a mut u64,
    /// Sent messages without an echo yet, in order: their numbers and contents.
    waiting: VecDeque<(u64, Vec<u8>)>,
}

/// What one read from the connection brought.
enum Heard {
    /// The echo of this message.
    Echo(u64),
    /// Nothing that matters here (a ping, a pong).
    Nothing,
    /// The connection is over; [`WsSession::end`] says how.
    End,
}

impl Talk<'_> {
    async fn converse<S>(&mut self, stream: &mut WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        for number in 0..self.ws.messages {
            let payload = self.ws.message(self.seed, self.index, number);
            let message = if self.ws.binary {
                Message::binary(payload.clone())
            } else {
                Message::text(String::from_utf8_lossy(&payload).into_owned())
            };
            if let Err(e) = stream.send(message).await {
                self.broken(stream, &e).await;
                return;
            }
            self.session.sent += 1;
            self.waiting.push_back((number, payload));
            // The last message waits for its echo too: a proxy may answer our Close on its own
            // hop at once, and an echo still on its way would then never arrive.
            let deadline = Instant::now() + self.ws.echo_timeout;
            loop {
                let next = tokio::select! {
                    biased;
                    next = stream.next() => next,
                    () = tokio::time::sleep_until(deadline) => break,
                };
                match self.heard(next, false) {
                    Heard::Echo(n) if n == number => break,
                    Heard::Echo(_) | Heard::Nothing => {}
                    Heard::End => return self.after_peer_close(stream).await,
                }
            }
        }
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if let Err(e) = stream.close(Some(normal)).await {
            self.broken(stream, &e).await;
            return;
        }
        // Echoes still on their way count; the reply to our Close ends the talk.
        while let Heard::Echo(_) | Heard::Nothing = self.heard(stream.next().await, true) {}
        if self.session.end == WsEnd::Closed && self.session.close_code == Some(WS_NORMAL_CLOSE) {
            // Past their wait, and the connection closed normally without their echo.
            self.session
                .lost
                .extend(self.waiting.drain(..).map(|(n, _)| n));
        }
    }

    /// Reads one item: an echo is matched to the earliest message waiting with its contents (the
    /// messages waiting before it are lost: the server answers in order), a Close ends the talk.
    fn heard(&mut self, next: Option<Result<Message, tungstenite::Error>>, closing: bool) -> Heard {
        let (bytes, binary) = match &next {
            Some(Ok(Message::Text(text))) => (text.as_bytes(), false),
            Some(Ok(Message::Binary(data))) => (&data[..], true),
            Some(Ok(Message::Close(frame))) => {
                self.session.end = WsEnd::Closed;
                self.session.close_code =
                    Some(frame.as_ref().map_or(NO_STATUS, |f| u16::from(f.code)));
                self.session.closed_by_peer = !closing;
                return Heard::End;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                return Heard::Nothing;
            }
            Some(Err(e)) => {
                self.session.end = end_of(e);
                return Heard::End;
            }
            None => {
                self.session.end = WsEnd::Reset;
                return Heard::End;
            }
        };
        let found = (binary == self.ws.binary)
            .then(|| self.waiting.iter().position(|(_, p)| p == bytes))
            .flatten();
        let Some(at) = found else {
            self.session.end = WsEnd::Mismatch;
            return Heard::End;
        };
        *self.bytes += bytes.len() as u64;
        let lost = self.waiting.drain(..at).map(|(n, _)| n);
        self.session.lost.extend(lost);
        let (number, _) = self.waiting.pop_front().unwrap_or_default();
        self.session.echoed += 1;
        Heard::Echo(number)
    }

    /// The talk ended before our Close: send the reply to a peer's Close (tungstenite queued
    /// it), or a Close after a wrong echo, and go.
    async fn after_peer_close<S>(&mut self, stream: &mut WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.session.end {
            WsEnd::Closed => {
                let _ = stream.flush().await;
            }
            WsEnd::Mismatch => {
                let _ = stream.close(None).await;
            }
            _ => {}
        }
    }

    /// A write failed: the peer's Close may be waiting to be read, and it says more than the
    /// failed write does.
    async fn broken<S>(&mut self, stream: &mut WebSocketStream<S>, error: &tungstenite::Error)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.session.end = end_of(error);
        while let Heard::Echo(_) | Heard::Nothing = self.heard(stream.next().await, false) {}
    }
}

/// How a connection that failed with `e` ended.
fn end_of(e: &tungstenite::Error) -> WsEnd {
    match e {
        tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => WsEnd::Timeout,
        _ => WsEnd::Reset,
    }
}

/// A handshake that failed without an HTTP answer.
fn classify(e: &tungstenite::Error) -> ErrorKind {
    match e {
        tungstenite::Error::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
            _ => ErrorKind::Protocol,
        },
        // The server closed the connection before a whole answer (a `reset` fault).
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HandshakeIncomplete) => {
            ErrorKind::Reset
        }
        _ => ErrorKind::Protocol,
    }
}
