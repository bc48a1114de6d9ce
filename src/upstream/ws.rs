//! `/ws/echo`: a WebSocket echo, over an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT (RFC
//! 8441). Text and binary messages come back as they were sent, pings get their pong, a Close
//! gets its reply. A request that is not a WebSocket upgrade gets `426
//! Upgrade Required`, one with a missing or unsupported key or version a `400`.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::json_response;
use crate::server::Shutdown;
use crate::websocket;

/// The route's path.
pub const PATH: &str = "/ws/echo";

/// Answers the handshake with `101` and echoes on the upgraded connection in a task that ends
/// with the client or the server.
pub fn echo(mut req: Request<Incoming>, shutdown: Shutdown) -> Response<Full<Bytes>> {
    if websocket::is_extended_connect(&req) {
        return echo_over_h2(req, shutdown);
    }
    if req.version() != hyper::Version::HTTP_11
        || !websocket::is_upgrade(req.method(), req.headers())
    {
        let mut response = json_response(
            StatusCode::UPGRADE_REQUIRED,
            &json!({"error": "this route speaks WebSocket: send a GET with `Connection: upgrade` and `Upgrade: websocket`"}),
        );
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (version_ok, key) else {
        let mut response = json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "a WebSocket handshake needs `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`"}),
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    spawn_echo(hyper::upgrade::on(&mut req), shutdown);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    websocket::insert_upgrade_headers(headers);
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A WebSocket over HTTP/2 (RFC 8441): version 13 is all the handshake checks, and a `200`
/// opens the stream (no key, no accept).
fn echo_over_h2(mut req: Request<Incoming>, shutdown: Shutdown) -> Response<Full<Bytes>> {
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut response = json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "a WebSocket over HTTP/2 needs `Sec-WebSocket-Version: 13`"}),
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    spawn_echo(hyper::upgrade::on(&mut req), shutdown);
    Response::new(Full::new(Bytes::new()))
}

/// Echoes on the upgraded connection, once the response has switched it, in a task that ends
/// with the client or the server.
fn spawn_echo(upgrade: hyper::upgrade::OnUpgrade, mut shutdown: Shutdown) {
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = shutdown.fired() => {}
            () = async {
                match upgrade.await {
                    Ok(upgraded) => echo_messages(TokioIo::new(upgraded)).await,
                    Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                }
            } => {}
        }
    });
}

async fn echo_messages<IO>(io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(next) = stream.next().await {
        let message = match next {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            // Pings are answered and Closes replied to by tungstenite as it reads.
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "websocket echo ended with an error");
                return;
            }
        };
        if stream.send(message).await.is_err() {
            return;
        }
    }
    // The close handshake is done: end the byte stream cleanly too (over HTTP/2, END_STREAM
    // rather than a reset of a stream the client may still be flushing its Close on).
    let _ = tokio::io::AsyncWriteExt::shutdown(stream.get_mut()).await;
}
