//! WebSockets through the proxy to the demo upstream's `/ws/echo`, driven by clients nobody here
//! wrote: Python's `websockets` package (installed with pip when missing; the tests that need it
//! say why and pass when it cannot be had) and tokio-tungstenite. Covers the plain echo, each
//! stream fault, a handshake fault, and `Upgrade` without `Connection: upgrade`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use traceforge::fault::FaultPlan;
use traceforge::scenario::ProxyConfig;
use traceforge::server::Listening;

use crate::proxy::{demo_upstream, plan, start_proxy};
use crate::support::{PATIENCE, bounded, client, raw_exchange, send};

/// The Python client: connects to `URL`, then by `MODE`:
/// - `roundtrip N`: sends `m0`..`m{N-1}` one at a time, each after the last echo; then a binary
///   message and a ping.
/// - `burst N`: sends `N` messages at once, then reads until the connection closes.
///
/// Prints one JSON object: the echoes, the close code it received, or the HTTP status that
/// refused the handshake.
const CLIENT: &str = r#"
import asyncio, json, sys
import websockets

async def main():
    url, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    headers = {"x-request-id": sys.argv[4]} if len(sys.argv) > 4 else {}
    out = {"echoes": [], "close_code": None, "status": None}
    try:
        async with websockets.connect(url, additional_headers=headers, max_queue=256,
                                      open_timeout=10, close_timeout=5, ping_interval=None) as ws:
            if mode == "roundtrip":
                for i in range(n):
                    await ws.send(f"m{i}")
                    out["echoes"].append(await asyncio.wait_for(ws.recv(), 10))
                await ws.send(b"\x00\x01\xff")
                out["binary"] = list(await asyncio.wait_for(ws.recv(), 10))
                await asyncio.wait_for(await ws.ping(), 10)
                out["pong"] = True
            else:
                for i in range(n):
                    await ws.send(f"m{i}")
                while True:
                    out["echoes"].append(await asyncio.wait_for(ws.recv(), 10))
    except websockets.exceptions.ConnectionClosed as e:
        out["close_code"] = e.rcvd.code if e.rcvd else None
    except websockets.exceptions.InvalidStatus as e:
        out["status"] = e.response.status_code
    print(json.dumps(out))

asyncio.run(main())
"#;

/// Whether Python's `websockets` can be imported, installing it with pip once if not; the reason
/// when it cannot be had.
fn python_websockets() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| crate::support::python_package("websockets", "websockets"))
        .clone()
}

/// Runs the Python client against `url` and returns what it printed; `None` (after saying why)
/// when Python's `websockets` is not available.
async fn python(url: &str, mode: &str, n: u32, request_id: Option<&str>) -> Option<Value> {
    if let Err(reason) = tokio::task::spawn_blocking(python_websockets)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        println!("skipped: Python's websockets is not available: {reason}");
        return None;
    }
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-c", CLIENT, url, mode, &n.to_string()])
        .args(request_id)
        .kill_on_drop(true);
    let output = bounded(command.output())
        .await
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// The demo upstream, and the proxy in front of it with these `[[faults]]`.
async fn proxied(seed: u64, faults_toml: &str) -> (Listening, Listening) {
    let up = demo_upstream(vec![]).await;
    let faults = if faults_toml.is_empty() {
        FaultPlan::new(seed, Vec::new())
    } else {
        plan(seed, faults_toml)
    };
    let proxy = start_proxy(&up.url(), faults, ProxyConfig::default()).await;
    (up, proxy)
}

fn ws_url(proxy: &Listening) -> String {
    format!("ws://{}/ws/echo", proxy.addr)
}

fn echoes(out: &Value) -> Vec<String> {
    out["echoes"]
        .as_array()
        .unwrap_or_else(|| panic!("no echoes in {out}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_echo_round_trip_through_the_proxy() {
    let (_up, proxy) = proxied(1, "").await;
    let Some(out) = python(&ws_url(&proxy), "roundtrip", 5, None).await else {
        return;
    };
    assert_eq!(echoes(&out), ["m0", "m1", "m2", "m3", "m4"], "{out}");
    assert_eq!(out["binary"], serde_json::json!([0, 1, 255]), "{out}");
    assert_eq!(out["pong"], true, "{out}");
    // The client closed normally: no close code was forced on it.
    assert_eq!(out["close_code"], Value::Null, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_close_after_n_messages_closes_with_1011_after_exactly_that_many() {
    // Six messages in both directions: three sends and their three echoes.
    let (_up, proxy) = proxied(
        2,
        "[[faults]]\nkind = \"ws_close\"\nafter_messages = 6\nmatch = { path = \"/ws/*\" }",
    )
    .await;
    let Some(out) = python(&ws_url(&proxy), "roundtrip", 10, None).await else {
        return;
    };
    assert_eq!(echoes(&out), ["m0", "m1", "m2"], "{out}");
    assert_eq!(out["close_code"], 1011, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_drop_at_probability_1_lets_no_echo_through() {
    // The close after a second bounds the wait for echoes that never come.
    let (_up, proxy) = proxied(
        3,
        "[[faults]]\nkind = \"ws_drop\"\nprobability = 1.0\n\n[[faults]]\nkind = \"ws_close\"\nafter_time = \"1s\"\ncode = 4000",
    )
    .await;
    let Some(out) = python(&ws_url(&proxy), "burst", 5, None).await else {
        return;
    };
    assert_eq!(echoes(&out), Vec::<String>::new(), "{out}");
    assert_eq!(out["close_code"], 4000, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_ws_drop_loses_the_same_messages_on_every_run() {
    let faults = "[[faults]]\nkind = \"ws_drop\"\nprobability = 0.4\n\n[[faults]]\nkind = \"ws_close\"\nafter_time = \"1500ms\"";
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (_up, proxy) = proxied(42, faults).await;
        let Some(out) = python(&ws_url(&proxy), "burst", 24, Some("ws-seeded")).await else {
            return;
        };
        runs.push(echoes(&out));
    }
    let kept = &runs[0];
    assert!(
        !kept.is_empty() && kept.len() < 24,
        "a 0.4 drop in each direction keeps some of 24 and loses some: {kept:?}"
    );
    assert_eq!(
        runs[0], runs[1],
        "the same seed and request id, the same drops"
    );
    // Order is kept: what arrives comes in the order it was sent.
    let indices: Vec<u32> = kept
        .iter()
        .map(|m| m.trim_start_matches('m').parse().unwrap_or(u32::MAX))
        .collect();
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_error_fault_refuses_the_upgrade_with_its_status() {
    let (_up, proxy) = proxied(
        4,
        "[[faults]]\nkind = \"error\"\nstatus = 503\nmatch = { path = \"/ws/*\" }",
    )
    .await;
    let Some(out) = python(&ws_url(&proxy), "roundtrip", 1, None).await else {
        return;
    };
    assert_eq!(out["status"], 503, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_connection_upgrade_is_a_plain_request() {
    let (_up, proxy) = proxied(5, "").await;
    // The upstream sees no upgrade (hop-by-hop `Upgrade` is stripped) and says so with a 426.
    let answer = raw_exchange(
        proxy.addr,
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    // What reaches an ordinary route has neither `Upgrade` nor `Connection`.
    let reply = send(
        &client(),
        Method::GET,
        &format!("{}/api/echo", proxy.url()),
        &[("upgrade", "websocket"), ("connection", "keep-alive")],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = &reply.json()["headers"];
    assert!(seen.get("upgrade").is_none(), "{seen}");
    assert!(seen.get("connection").is_none(), "{seen}");
}

/// A tokio-tungstenite client on a fresh TCP connection to the proxy.
async fn tungstenite_client(
    proxy: &Listening,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let (ws, response) = tokio_tungstenite::client_async(ws_url(proxy), tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tungstenite_echo_round_trip_and_ws_delay_holds_each_message() {
    bounded(async {
        // No fault: the bytes are spliced.
        let (_up, proxy) = proxied(6, "").await;
        let mut ws = tungstenite_client(&proxy).await;
        ws.send(Message::text("hello"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ws.send(Message::binary(vec![7u8; 70_000]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = ws
            .next()
            .await
            .unwrap_or_else(|| panic!("closed"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, Message::text("hello"));
        let second = ws
            .next()
            .await
            .unwrap_or_else(|| panic!("closed"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second, Message::binary(vec![7u8; 70_000]));
        ws.close(None).await.unwrap_or_else(|e| panic!("{e}"));

        // A 100 ms hold each way: an echo takes at least 200 ms.
        let (_up, proxy) = proxied(6, "[[faults]]\nkind = \"ws_delay\"\ndelay = \"100ms\"").await;
        let mut ws = tungstenite_client(&proxy).await;
        let started = Instant::now();
        ws.send(Message::text("slow"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let echo = ws
            .next()
            .await
            .unwrap_or_else(|| panic!("closed"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(echo, Message::text("slow"));
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < PATIENCE);
    })
    .await;
}

/// The error text of a scenario with these `[[faults]]`.
fn invalid(faults_toml: &str) -> String {
    let text = format!("name = \"ws-invalid\"\n{faults_toml}\n");
    match traceforge::parse_str("ws.toml", &text, &[]) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn stream_faults_are_validated_like_the_others() {
    let e = invalid("[[faults]]\nkind = \"ws_close\"\nafter_mesages = 3");
    assert!(
        e.contains("after_mesages") && e.contains("after_messages") && e.contains("ws.toml:4"),
        "{e}"
    );
    let e = invalid("[[faults]]\nkind = \"ws_close\"\nafter = \"2s\"");
    assert!(e.contains("after_time = \"2s\""), "{e}");
    let e = invalid("[[faults]]\nkind = \"ws_close\"");
    assert!(e.contains("needs `after_messages` or `after_time`"), "{e}");
    let e = invalid("[[faults]]\nkind = \"ws_close\"\nafter_messages = 2\ncode = 1006");
    assert!(
        e.contains("1006 is not a close code") && e.contains("ws.toml:5"),
        "{e}"
    );
    let e = invalid("[[faults]]\nkind = \"ws_delay\"");
    assert!(e.contains("needs `delay`"), "{e}");
    let e = invalid("[[faults]]\nkind = \"ws_delay\"\ndelay = \"10ms\"\njitter = \"1ms\"");
    assert!(
        e.contains("`jitter` does not apply to a `ws_delay` fault"),
        "{e}"
    );
    let e = invalid("[[faults]]\nkind = \"delay\"\ndelay = \"10ms\"\ncode = 1011");
    assert!(e.contains("`code` belongs to `ws_close` faults"), "{e}");
    let e = invalid("[[faults]]\nkind = \"ws_drop\"\nprobability = 1.5");
    assert!(e.contains("probability"), "{e}");
    let e = invalid("faults = [\"ws_drop:0.5\"]");
    assert!(e.contains("ws_drop"), "{e}");
}

/// A WebSocket over HTTP/2 (RFC 8441): an extended CONNECT on a prior-knowledge h2c connection to
/// `addr`, after one plain request so the server's SETTINGS (which allow it) have arrived. Returns
/// the status, the response headers and, on a `200`, the WebSocket with the connection's sender
/// (dropping the last sender ends the connection, and every stream on it).
async fn h2_websocket(addr: std::net::SocketAddr) -> (StatusCode, hyper::HeaderMap, Option<H2Ws>) {
    use http_body_util::Empty;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap_or_else(|e| panic!("h2 handshake: {e}"));
    tokio::spawn(conn);
    let warm = hyper::Request::get(format!("http://{addr}/health"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap_or_else(|e| panic!("{e}"));
    sender
        .send_request(warm)
        .await
        .unwrap_or_else(|e| panic!("plain h2 request: {e}"));
    let mut req = hyper::Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/ws/echo"))
        .header("sec-websocket-version", "13")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap_or_else(|e| panic!("{e}"));
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("extended CONNECT: {e}"));
    let (status, headers) = (response.status(), response.headers().clone());
    if status != StatusCode::OK {
        drop(sender);
        return (status, headers, None);
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .unwrap_or_else(|e| panic!("upgrade: {e}"));
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    (
        status,
        headers,
        Some(H2Ws {
            ws,
            _sender: sender,
        }),
    )
}

/// A WebSocket over an HTTP/2 stream, and the sender that keeps its connection open.
struct H2Ws {
    ws: tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    _sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
}

async fn next_message<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.next()
        .await
        .unwrap_or_else(|| panic!("closed"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_echo_directly_and_through_the_proxy() {
    bounded(async {
        let (up, proxy) = proxied(8, "").await;
        for addr in [up.addr, proxy.addr] {
            let (status, headers, ws) = h2_websocket(addr).await;
            assert_eq!(status, StatusCode::OK, "{addr}");
            // HTTP/2 has no upgrade headers, and no accept key.
            for name in ["upgrade", "connection", "sec-websocket-accept"] {
                assert!(headers.get(name).is_none(), "{name} in {headers:?}");
            }
            let mut h2 = ws.unwrap_or_else(|| panic!("no websocket"));
            let ws = &mut h2.ws;
            ws.send(Message::text("over h2"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            ws.send(Message::binary(vec![9u8; 70_000]))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(next_message(ws).await, Message::text("over h2"));
            assert_eq!(next_message(ws).await, Message::binary(vec![9u8; 70_000]));
            // The close handshake: the reply comes back before the server ends the stream, which
            // it may do with a RST_STREAM NO_ERROR once its side is done (RFC 9113 section
            // 8.1), so a flush racing it may fail: only the reply matters.
            let _ = ws.send(Message::Close(None)).await;
            assert!(
                matches!(next_message(ws).await, Message::Close(_)),
                "no Close reply from {addr}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_handshake_faults_act_on_websockets_over_http2() {
    bounded(async {
        // ws_close after 2 messages (one send, its echo): the second send gets a 1011 Close.
        let (_up, proxy) = proxied(
            9,
            "[[faults]]\nname = \"cut\"\nkind = \"ws_close\"\nafter_messages = 2\nmatch = { path = \"/ws/*\" }",
        )
        .await;
        let (status, headers, ws) = h2_websocket(proxy.addr).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers.get("x-traceforge-fault").map(|v| v.as_bytes()),
            Some(&b"cut"[..])
        );
        let mut h2 = ws.unwrap_or_else(|| panic!("no websocket"));
        let ws = &mut h2.ws;
        ws.send(Message::text("one"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next_message(ws).await, Message::text("one"));
        let _ = ws.send(Message::text("two")).await;
        match next_message(ws).await {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1011),
            other => panic!("expected a Close with 1011, got {other:?}"),
        }

        // A handshake error: the extended CONNECT is refused with the rule's status.
        let (_up, proxy) = proxied(
            9,
            "[[faults]]\nkind = \"error\"\nstatus = 503\nmatch = { path = \"/ws/*\" }",
        )
        .await;
        let (status, _, ws) = h2_websocket(proxy.addr).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(ws.is_none());
    })
    .await;
}
