//! Broken responses and slow connections through the proxy, over real sockets: `corrupt` (bytes,
//! the same whatever the chunking; JSON, cut or mistyped), `garbage` (random bytes, then a close),
//! `empty` (a clean close with nothing), `slow_read` (the upload read at a pace) and `slow_close`
//! (the FIN held back); each terminal kind over HTTP/2 beside an intact neighbour stream; and
//! what the load generator records for each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use h2::Reason;
use http_body_util::BodyExt;
use hyper::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use traceforge::record::ErrorKind;
use traceforge::scenario::ProxyConfig;
use traceforge::server::Listening;

use crate::h2_faults::{Neighbour, connect, exchange, start};
use crate::proxy::{demo_upstream, plan, scrape, start_proxy};
use crate::support::{self, bounded, client, loopback, metric, respond, send, serve};

/// The body the byte-corruption upstream serves: 50 000 bytes.
fn original() -> Vec<u8> {
    (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A raw upstream that answers every request with [`original`], written in pieces of the
/// `x-chunk` request header's size (each flushed on its own), then closes the connection.
async fn chunking_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (head, _) = support::read_head(&mut stream).await;
                let chunk = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-chunk: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(usize::MAX)
                    .max(1);
                let body = original();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for piece in body.chunks(chunk) {
                    if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_bytes_are_the_same_for_a_request_whatever_the_chunking_and_keep_the_length() {
    let up = chunking_upstream().await;
    let faults = r#"
[[faults]]
name = "flip"
kind = "corrupt"
rate = 0.05
"#;
    let proxy = start_proxy(
        &format!("http://{up}"),
        plan(9, faults),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    let url = format!("{}/download", proxy.url());
    let fetch = |id: &'static str, chunk: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            send(
                &c,
                Method::GET,
                &url,
                &[("x-request-id", id), ("x-chunk", chunk)],
                "",
            )
            .await
        }
    };
    let first = fetch("req-a", "50000").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-length"), Some("50000"));
    assert_eq!(first.header("x-traceforge-fault-kind"), Some("corrupt"));
    let body = original();
    assert_eq!(first.body.len(), body.len());
    let changed = first.body.iter().zip(&body).filter(|(a, b)| a != b).count();
    // 5% of 50 000 is 2 500; the draw is binomial, its standard deviation about 49.
    assert!((2000..=3000).contains(&changed), "{changed} bytes changed");
    for chunk in ["50000", "1000", "4096", "777"] {
        let again = fetch("req-a", chunk).await;
        assert_eq!(again.body, first.body, "chunks of {chunk}");
    }
    let other = fetch("req-b", "50000").await;
    assert_ne!(other.body, first.body, "another request, other bytes");
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_corrupted_total",
            &[("rule", "flip"), ("mode", "bytes")]
        ),
        6.0
    );
}

const JSON: &str = r#"{"id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "tags": ["math", "engines"], "active": true, "score": 9.5}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_json_cuts_a_string_or_changes_a_type_with_a_matching_content_length() {
    let (up, _) =
        serve(|_| async { respond(200, &[("content-type", "application/json")], JSON) }).await;
    let faults = r#"
[[faults]]
name = "bad-json"
kind = "corrupt"
mode = "json"
match = { path = "/json" }

[[faults]]
name = "bad-text"
kind = "corrupt"
mode = "json"
rate = 1.0
match = { path = "/text" }
"#;
    let proxy = start_proxy(&up.url(), plan(4, faults), ProxyConfig::default()).await;
    let c = client();
    let original: serde_json::Value = serde_json::from_str(JSON).unwrap_or_else(|e| panic!("{e}"));
    let (mut cut, mut mistyped) = (0, 0);
    for i in 0..16 {
        let id = format!("json-{i}");
        let url = format!("{}/json", proxy.url());
        let reply = send(&c, Method::GET, &url, &[("x-request-id", &id)], "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str()),
            "{id}"
        );
        assert_eq!(reply.header("x-traceforge-fault"), Some("bad-json"));
        match serde_json::from_slice::<serde_json::Value>(&reply.body) {
            // Cut off inside a string: a prefix of the original that ends inside quotes.
            Err(e) => {
                assert!(e.is_eof(), "{id}: {e}: {}", reply.text());
                assert!(JSON.as_bytes().starts_with(&reply.body), "{}", reply.text());
                let quotes = reply.body.iter().filter(|b| **b == b'"').count();
                assert_eq!(quotes % 2, 1, "{id} ends inside a string: {}", reply.text());
                cut += 1;
            }
            // Still JSON, but exactly one value changed type.
            Ok(value) => {
                let (Some(got), Some(want)) = (value.as_object(), original.as_object()) else {
                    panic!("{id}: {value}");
                };
                assert_eq!(
                    got.keys().collect::<Vec<_>>(),
                    want.keys().collect::<Vec<_>>()
                );
                let differ: Vec<&String> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(*v))
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(differ.len(), 1, "{id}: {value}");
                mistyped += 1;
            }
        }
        let again = send(&c, Method::GET, &url, &[("x-request-id", &id)], "").await;
        assert_eq!(
            again.body, reply.body,
            "{id} is broken the same way every time"
        );
    }
    assert!(cut > 0 && mistyped > 0, "cut {cut}, mistyped {mistyped}");

    // Not JSON: bytes mode, here every byte replaced, the length kept.
    let (up_text, _) =
        serve(|_| async { respond(200, &[("content-type", "text/plain")], "plain words") }).await;
    let proxy_text = start_proxy(&up_text.url(), plan(4, faults), ProxyConfig::default()).await;
    let reply = send(
        &c,
        Method::GET,
        &format!("{}/text", proxy_text.url()),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.body.len(), "plain words".len());
    assert!(reply.body.iter().zip(b"plain words").all(|(a, b)| a != b));
    let m = scrape(&proxy_text).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_corrupted_total",
            &[("rule", "bad-text"), ("mode", "bytes")]
        ),
        1.0
    );
}

/// One proxy in front of the demo upstream with every wire fault, chosen by `x-case`.
const CASES: &str = r#"
[[faults]]
name = "junk"
kind = "garbage"
size = 3000
match = { headers = { "x-case" = "garbage" } }

[[faults]]
name = "nothing"
kind = "empty"
match = { headers = { "x-case" = "empty" } }

[[faults]]
name = "lingering"
kind = "slow_close"
delay = "400ms"
match = { headers = { "x-case" = "slow_close" } }
"#;

async fn setup() -> (Listening, Listening, Arc<std::sync::atomic::AtomicUsize>) {
    let (up, hits) = support::counting_upstream().await;
    let proxy = start_proxy(&up.url(), plan(2, CASES), ProxyConfig::default()).await;
    (up, proxy, hits)
}

/// Sends `GET /api/resource` with `x-case: case` and the request id on a fresh connection, and
/// reads until the proxy closes it: what came, and how the read ended.
async fn raw(
    addr: SocketAddr,
    case: &str,
    id: &str,
    body: usize,
) -> (Vec<u8>, std::io::Result<()>) {
    bounded(async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let method = if body > 0 { "POST" } else { "GET" };
        let head = format!(
            "{method} /api/resource HTTP/1.1\r\nHost: x\r\nx-case: {case}\r\nx-request-id: {id}\r\ncontent-length: {body}\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        stream
            .write_all(&vec![b'x'; body])
            .await
            .unwrap_or_else(|e| panic!("write the body: {e}"));
        let mut out = Vec::new();
        let ended = stream.read_to_end(&mut out).await.map(|_| ());
        (out, ended)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_sends_size_random_bytes_then_closes_and_empty_closes_with_nothing() {
    let (_up, proxy, hits) = setup().await;
    let (junk, ended) = raw(proxy.addr, "garbage", "junk-1", 0).await;
    assert!(ended.is_ok(), "a clean close, not a reset: {ended:?}");
    assert_eq!(junk.len(), 3000);
    assert!(!junk.starts_with(b"HTTP/"), "{:?}", &junk[..16]);
    let (again, _) = raw(proxy.addr, "garbage", "junk-1", 0).await;
    assert_eq!(again, junk, "the same request id gets the same bytes");
    let (other, _) = raw(proxy.addr, "garbage", "junk-2", 0).await;
    assert_ne!(other, junk);

    // Nothing at all, and a FIN: `read` returns 0, not "connection reset". With a request body
    // the proxy never read, too (a close over unread bytes would be a RST).
    for body in [0, 300_000] {
        let (nothing, ended) = raw(proxy.addr, "empty", "empty-1", body).await;
        assert!(ended.is_ok(), "body {body}: {ended:?}");
        assert!(nothing.is_empty(), "body {body}: {nothing:?}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "neither was forwarded"
    );
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_garbage_total", &[("rule", "junk")]),
        3.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_empty_total", &[("rule", "nothing")]),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_sends_the_whole_response_then_the_fin_only_after_the_delay() {
    let (_up, proxy, _) = setup().await;
    bounded(async {
        let mut stream = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .write_all(b"GET /api/resource HTTP/1.1\r\nHost: x\r\nx-case: slow_close\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let (head, mut body) = support::read_head(&mut stream).await;
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            head.contains("x-traceforge-fault-kind: slow_close"),
            "{head}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        let mut buf = [0u8; 4096];
        while body.len() < length {
            let n = stream
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(n > 0, "closed before the body was complete");
            body.extend_from_slice(&buf[..n]);
        }
        let complete = Instant::now();
        let n = stream
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 0, "nothing after the response");
        let held = complete.elapsed();
        // The proxy's timer starts after its last flush, before the client read the last byte.
        assert!(
            held >= Duration::from_millis(350),
            "the FIN came after {held:?}"
        );
        assert!(held < Duration::from_secs(5), "the FIN came after {held:?}");
    })
    .await;
}

/// An upstream that records, for each request, when its first and last body bytes arrived.
async fn timing_upstream() -> (
    Listening,
    tokio::sync::mpsc::UnboundedReceiver<(usize, Duration)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listening = traceforge::server::spawn_tcp(listener, move |stream, shutdown| {
        let tx = tx.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let tx = tx.clone();
            async move {
                let mut body = req.into_body();
                let (mut first, mut last, mut len) = (None, Instant::now(), 0);
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { break };
                    if let Some(data) = frame.data_ref() {
                        first.get_or_insert_with(Instant::now);
                        last = Instant::now();
                        len += data.len();
                    }
                }
                let span = first.map_or(Duration::ZERO, |f| last.duration_since(f));
                let _ = tx.send((len, span));
                Ok::<_, std::convert::Infallible>(respond(200, &[], "got it"))
            }
        });
        traceforge::server::serve_connection(stream, service, shutdown)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (listening, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_read_paces_the_upload_and_the_upstream_gets_every_byte() {
    let (up, mut seen) = timing_upstream().await;
    let faults = r#"
[[faults]]
name = "slow-upload"
kind = "slow_read"
bytes_per_second = 10000
match = { method = "POST" }
"#;
    let proxy = start_proxy(&up.url(), plan(1, faults), ProxyConfig::default()).await;
    let c = client();
    let body = "u".repeat(10_000);
    let started = Instant::now();
    let reply = send(
        &c,
        Method::POST,
        &format!("{}/upload", proxy.url()),
        &[],
        &body,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-traceforge-fault-kind"), Some("slow_read"));
    let (len, span) = bounded(seen.recv())
        .await
        .unwrap_or_else(|| panic!("the upstream saw nothing"));
    assert_eq!(len, 10_000, "every byte went upstream");
    // 10 000 bytes at 10 000 B/s: a second, the first tenth released after 100ms.
    assert!(
        span >= Duration::from_millis(800),
        "the upstream got it all in {span:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "the upload took {took:?}"
    );
    // A GET with no body is not slowed.
    let quick = send(&c, Method::GET, &format!("{}/x", proxy.url()), &[], "").await;
    assert_eq!(quick.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_garbage_and_empty_end_only_their_stream_and_slow_close_holds_its_end() {
    let up = demo_upstream(vec![]).await;
    let proxy = start_proxy(&up.url(), plan(2, CASES), ProxyConfig::default()).await;
    let addr = proxy.addr;
    let (send, conn) = connect(addr).await;

    // garbage: a 200 head, the random bytes as the body, then INTERNAL_ERROR.
    let neighbour = Neighbour::open(&send, addr).await;
    let got = exchange(&send, addr, "/api/resource", "garbage").await;
    assert_eq!(got.status(), Some(200));
    assert_eq!(got.header("x-traceforge-fault-kind"), "garbage");
    assert_eq!(got.body.len(), 3000);
    assert_eq!(
        got.reason(),
        Some(Reason::INTERNAL_ERROR),
        "{:?}",
        got.error
    );
    neighbour.finish("garbage").await;

    // empty: no head at all, the stream reset with NO_ERROR.
    let neighbour = Neighbour::open(&send, addr).await;
    let got = exchange(&send, addr, "/api/resource", "empty").await;
    assert!(got.head.is_none());
    assert!(got.body.is_empty());
    assert_eq!(got.reason(), Some(Reason::NO_ERROR), "{:?}", got.error);
    neighbour.finish("empty").await;

    // slow_close: the whole body, then the end of the stream only after the delay.
    let neighbour = Neighbour::open(&send, addr).await;
    let response = bounded(start(&send, addr, "/api/resource", "slow_close").await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut last = Instant::now();
    let mut got = Vec::new();
    while let Some(chunk) = bounded(body.data()).await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
        if !chunk.is_empty() {
            last = Instant::now();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
    }
    let held = last.elapsed();
    assert!(
        held >= Duration::from_millis(350),
        "the stream ended {held:?} after its body"
    );
    let json: serde_json::Value = serde_json::from_slice(&got).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.is_object(), "{json}");
    neighbour.finish("slow_close").await;

    // The connection itself never went.
    let got = exchange(&send, addr, "/api/resource", "none").await;
    assert_eq!(got.status(), Some(200));
    assert!(!conn.is_finished(), "the connection ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_records_garbage_as_protocol_and_empty_as_empty() {
    let text = r#"
name = "broken"
seed = 3

[[faults]]
name = "junk"
kind = "garbage"
until_request = 2

[[faults]]
name = "nothing"
kind = "empty"
from_request = 2

[load]
requests = 4
concurrency = 2
retries = 0
targets = [{ path = "/api/resource" }]
"#;
    for http2 in ["load.http2=false", "load.http2=true"] {
        let played = support::play_text(text, &[http2]).await;
        let errors: Vec<Option<ErrorKind>> = played.outcomes.iter().map(|o| o.error).collect();
        // Over HTTP/1.1 the random bytes are not a response (`protocol`); over HTTP/2 they come
        // as a body after a `200` head, then a reset stream (`protocol` too). An empty response
        // is `empty` either way: a clean close, or a stream reset with NO_ERROR before any head.
        let want = [
            Some(ErrorKind::Protocol),
            Some(ErrorKind::Protocol),
            Some(ErrorKind::Empty),
            Some(ErrorKind::Empty),
        ];
        assert_eq!(errors, want, "{http2}");
    }
}

#[test]
fn the_new_fields_are_checked_where_they_are_written() {
    for (fault, want) in [
        (
            "kind = \"corrupt\"\nrate = 0.0",
            "`rate` must be above 0 and at most 1, found 0",
        ),
        (
            "kind = \"corrupt\"\nrate = 1.5",
            "`rate` must be above 0 and at most 1, found 1.5",
        ),
        (
            "kind = \"corrupt\"\nmode = \"xml\"",
            "valid values here: `bytes`, `json`",
        ),
        (
            "kind = \"garbage\"\nsize = 0",
            "`size` must be from 1 to 1048576 (1 MiB), found 0",
        ),
        ("kind = \"garbage\"\nsize = 2000000", "found 2000000"),
        (
            "kind = \"slow_read\"",
            "a `slow_read` fault needs `bytes_per_second`",
        ),
        (
            "kind = \"slow_read\"\nbytes_per_second = 0",
            "would never read the body",
        ),
        (
            "kind = \"slow_close\"",
            "a `slow_close` fault needs `delay`",
        ),
        (
            "kind = \"slow_close\"\ndelay = \"2s..1s\"",
            "the range 2s..1s runs backwards",
        ),
        (
            "kind = \"empty\"\nsize = 10",
            "`size` does not apply to an `empty` fault",
        ),
        (
            "kind = \"garbage\"\nrate = 0.5",
            "`rate` belongs to `corrupt` faults",
        ),
        (
            "kind = \"throttle\"\nbytes_per_second = 1\nmode = \"json\"",
            "`mode` does not apply to a `throttle` fault",
        ),
    ] {
        let text = format!("name = \"checks\"\n\n[[faults]]\n{fault}\n");
        let error = match traceforge::parse_str("checks.toml", &text, &[]) {
            Ok(_) => panic!("{fault}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(want), "{fault}: {error}");
        // Located: the file, and a line inside the fault's table.
        assert!(
            ["checks.toml:4:", "checks.toml:5:", "checks.toml:6:"]
                .iter()
                .any(|at| error.contains(at)),
            "{fault}: {error}"
        );
    }
    // The defaults: bytes at 1%, 1024 garbage bytes.
    let s = traceforge::parse_str(
        "ok.toml",
        "name = \"ok\"\n[[faults]]\nkind = \"corrupt\"\n[[faults]]\nkind = \"garbage\"\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.faults[0].to_string(),
        "corrupt-1 (corrupt bytes rate 0.01)"
    );
    assert_eq!(s.faults[1].to_string(), "garbage-2 (garbage 1024 bytes)");
}
