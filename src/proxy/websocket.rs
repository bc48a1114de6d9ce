//! Step 9 of the proxy: an upgraded WebSocket. When the client asked for an upgrade and the
//! upstream answered `101`, both connections are handed over by hyper and joined here, in a task
//! that ends with either side, or with the server ([`Shutdown`]).
//!
//! Without stream faults the two connections are spliced byte for byte. With them, the proxy
//! speaks WebSocket on both sides (tokio-tungstenite) so the faults act per message
//! ([`crate::fault::stream`] decides what happens to each):
//! - text and binary messages are passed on, dropped (`ws_drop`), or held (`ws_delay`; order is
//!   kept within a direction: a message is never passed on before one that arrived earlier);
//! - a Close frame from one side is passed on to the other after the messages before it; the
//!   side that sent it gets its reply from the proxy at once (the WebSocket library answers a
//!   Close as it reads it), so messages the other side still had on the way back are not
//!   delivered: a client that closes first learns nothing more. (Spliced, without stream
//!   faults, the close handshake is end to end.)
//! - pings are answered by the proxy on each hop (they are not forwarded), pongs are not forwarded;
//! - `ws_close` sends a Close frame with its code to both sides, waits a moment for their replies,
//!   and ends the connections.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::header;
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::fault::stream::{Close, Direction, StreamFaults};
use crate::server::Shutdown;

use super::ProxyBody;

/// The upstream's answer to a WebSocket the client opened over HTTP/2 (RFC 8441), where success
/// is a `200` and the upgrade headers do not exist: a `101` becomes a `200` without them, and a
/// `2xx` that did not switch protocols a `502`, since the client would take it for an open
/// WebSocket. Other answers (a refusal, an injected error) pass as they are.
pub(super) fn over_h2(response: Response<ProxyBody>, switched: bool) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    if switched {
        parts.status = StatusCode::OK;
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            parts.headers.remove(name);
        }
        return Response::from_parts(parts, body);
    }
    if !parts.status.is_success() {
        return Response::from_parts(parts, body);
    }
    let status = parts.status.as_u16();
    super::full(super::json_response(
        StatusCode::BAD_GATEWAY,
        &serde_json::json!({
            "error": format!("the upstream answered {status} to a WebSocket upgrade instead of switching protocols")
        }),
    ))
}

/// How long a `ws_close` waits for the two sides to answer its Close frames.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Joins the client's and the upstream's upgraded connections in a task of its own.
pub(super) fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    faults: Option<StreamFaults>,
    mut shutdown: Shutdown,
    request_id: String,
) {
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = shutdown.fired() => {
                tracing::debug!(%request_id, "websocket closed: the proxy is stopping");
            }
            () = tunnel(client, upstream, faults, &request_id) => {}
        }
    });
}

async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    faults: Option<StreamFaults>,
    request_id: &str,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(%request_id, error = %e, "websocket upgrade failed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match faults {
        None => {
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%request_id, error = %e, "websocket ended with an error");
            }
        }
        Some(faults) => {
            let client = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
            let upstream = WebSocketStream::from_raw_socket(upstream, Role::Client, None).await;
            relay(client, upstream, &faults, request_id).await;
        }
    }
}

/// Messages waiting to be passed on in one direction, each with the instant it is due.
#[derive(Default)]
struct Queue {
    items: VecDeque<(Instant, Message)>,
    /// The messages that arrived from this side so far: the next one's index.
    arrived: u64,
    /// Still reading from this side.
    open: bool,
    /// This side sent a Close frame.
    closed: bool,
}

impl Queue {
    fn new() -> Self {
        Queue {
            open: true,
            ..Queue::default()
        }
    }

    /// Queues a message due `delay` from now, never before the one ahead of it: order is kept.
    fn push(&mut self, delay: Duration, message: Message) {
        let mut due = Instant::now() + delay;
        if let Some((last, _)) = self.items.back() {
            due = due.max(*last);
        }
        self.items.push_back((due, message));
    }

    fn due(&self) -> Option<Instant> {
        self.items.front().map(|(due, _)| *due)
    }
}

/// Passes messages between the two sides under the stream faults until both are done.
async fn relay<C, U>(
    client: WebSocketStream<C>,
    upstream: WebSocketStream<U>,
    faults: &StreamFaults,
    request_id: &str,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = client.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    // Messages from the client (on their way upstream), and from the upstream.
    let (mut up, mut down) = (Queue::new(), Queue::new());
    let close = faults.close();
    let deadline = close.and_then(|c| c.after_time).map(|t| Instant::now() + t);
    let mut passed: u64 = 0;
    let far = || Instant::now() + Duration::from_secs(86_400);
    loop {
        if !up.open && !down.open && up.items.is_empty() && down.items.is_empty() {
            return;
        }
        let (up_due, down_due) = (up.due(), down.due());
        let delivered = tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline.unwrap_or_else(far)), if deadline.is_some() => {
                break;
            }
            () = tokio::time::sleep_until(up_due.unwrap_or_else(far)), if up_due.is_some() => {
                deliver(&mut up, &mut to_upstream).await
            }
            () = tokio::time::sleep_until(down_due.unwrap_or_else(far)), if down_due.is_some() => {
                deliver(&mut down, &mut to_client).await
            }
            next = from_client.next(), if up.open => {
                arrive(&mut up, next, faults, Direction::Client, request_id);
                false
            }
            next = from_upstream.next(), if down.open => {
                arrive(&mut down, next, faults, Direction::Upstream, request_id);
                false
            }
        };
        if delivered {
            passed += 1;
            if close
                .and_then(|c| c.after_messages)
                .is_some_and(|n| passed >= n)
            {
                break;
            }
        }
    }
    // Only a `ws_close` breaks out of the loop.
    let Some(close) = close else { return };
    tracing::debug!(%request_id, rule = %close.rule, passed, "ws_close");
    let _ = to_client.send(Message::Close(Some(frame(close)))).await;
    let _ = to_upstream.send(Message::Close(Some(frame(close)))).await;
    // Each side answers with its own Close, then ends; a side that does not is not waited for long.
    let drain = async {
        tokio::join!(
            async { while from_client.next().await.is_some() {} },
            async { while from_upstream.next().await.is_some() {} },
        )
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

fn frame(close: &Close) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(close.code),
        reason: format!("traceforge ws_close {}", close.rule).into(),
    }
}

/// One item read from a side: a message to queue (or drop), a Close to pass on, or the end.
fn arrive(
    queue: &mut Queue,
    next: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    faults: &StreamFaults,
    direction: Direction,
    request_id: &str,
) {
    match next {
        Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
            let index = queue.arrived;
            queue.arrived += 1;
            let fate = faults.fate(direction, index);
            match fate.dropped_by {
                Some(rule) => tracing::debug!(
                    %request_id, %rule, direction = direction.as_str(), index, "ws_drop"
                ),
                None => queue.push(fate.delay, message),
            }
        }
        // After the messages before it; the side's stream ends once the close handshake is done.
        Some(Ok(close @ Message::Close(_))) => {
            queue.closed = true;
            queue.push(Duration::ZERO, close);
        }
        // Pings are answered on this hop by tungstenite; pongs and raw frames go no further.
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
        Some(Err(e)) => {
            tracing::debug!(%request_id, direction = direction.as_str(), error = %e, "websocket read failed");
            gone(queue);
        }
        None => gone(queue),
    }
}

/// A side that ended without a Close frame (its connection dropped): the other side gets one,
/// so it does not wait forever.
fn gone(queue: &mut Queue) {
    queue.open = false;
    if !queue.closed {
        queue.closed = true;
        queue.push(Duration::ZERO, Message::Close(None));
    }
}

/// Passes the message at the front of `queue` on; true when it was a text or binary message.
/// A side that cannot take it any more (closed, gone) gets nothing else.
async fn deliver<S>(queue: &mut Queue, sink: &mut S) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    let Some((_, message)) = queue.items.pop_front() else {
        return false;
    };
    let counts = matches!(message, Message::Text(_) | Message::Binary(_));
    if sink.send(message).await.is_err() {
        queue.items.clear();
        return false;
    }
    counts
}
