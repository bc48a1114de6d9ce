//! The demo upstream over real sockets: routes, ids, static-file containment, malformed bytes,
//! scenario routes and shutdown.

use std::path::Path;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use traceforge::scenario::Route;
use traceforge::server::Listening;
use traceforge::upstream::{self, UpstreamOptions};

use crate::support::{self, client, get, loopback, raw_exchange, send};

async fn start(options: UpstreamOptions) -> Listening {
    upstream::spawn(loopback(), options)
        .await
        .unwrap_or_else(|e| panic!("spawn upstream: {e}"))
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_generates_ids_when_absent_and_reports_them_in_headers_and_body() {
    let server = start(UpstreamOptions::default()).await;
    let reply = get(&client(), &format!("{}/api/resource", server.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let trace = reply.header("x-trace-id").unwrap_or_default().to_string();
    let request = reply.header("x-request-id").unwrap_or_default().to_string();
    assert!(is_lower_hex(&trace, 32), "trace id {trace:?}");
    assert_eq!(
        uuid::Uuid::parse_str(&request)
            .map(|u| u.get_version_num())
            .ok(),
        Some(4)
    );
    let body = reply.json();
    assert_eq!(body["trace_id"], trace.as_str());
    assert_eq!(body["request_id"], request.as_str());
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let timestamp = body["timestamp"].as_str().unwrap_or_default();
    assert!(
        timestamp.ends_with('Z') && timestamp.contains('T'),
        "{timestamp}"
    );

    // A second request without ids gets different ones.
    let again = get(&client(), &format!("{}/api/resource", server.url()), &[]).await;
    assert_ne!(again.header("x-request-id"), Some(request.as_str()));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_from_the_client_are_kept_everywhere() {
    let server = start(UpstreamOptions::default()).await;
    let ids = [("x-trace-id", "trace-abc"), ("x-request-id", "req-123")];
    for path in ["/api/resource", "/", "/nope", "/api/echo"] {
        let reply = get(&client(), &format!("{}{path}", server.url()), &ids).await;
        assert_eq!(reply.header("x-trace-id"), Some("trace-abc"), "{path}");
        assert_eq!(reply.header("x-request-id"), Some("req-123"), "{path}");
    }
    let body = get(&client(), &format!("{}/api/resource", server.url()), &ids)
        .await
        .json();
    assert_eq!(
        (&body["trace_id"], &body["request_id"]),
        (&"trace-abc".into(), &"req-123".into())
    );

    // A W3C traceparent supplies the trace id when X-Trace-Id is absent.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = get(
        &client(),
        &format!("{}/api/resource", server.url()),
        &[("traceparent", tp)],
    )
    .await;
    assert_eq!(
        reply.header("x-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_ids_of_its_request_and_escapes_them() {
    let server = start(UpstreamOptions::default()).await;
    for path in ["/", "/static/index.html"] {
        let reply = get(
            &client(),
            &format!("{}{path}", server.url()),
            &[
                ("x-request-id", "<script>x</script>"),
                ("x-trace-id", "t-1"),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let html = reply.text();
        assert!(html.contains("TraceForge"), "{html}");
        assert!(html.contains(">t-1<"), "trace id not shown: {html}");
        assert!(
            html.contains("&lt;script&gt;x&lt;/script&gt;"),
            "request id not escaped"
        );
        assert!(
            !html.contains("<script>x"),
            "raw markup from a header reached the page"
        );
        assert!(!html.contains("{{"), "placeholder left: {html}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_reports_method_path_query_headers_and_body_length() {
    let server = start(UpstreamOptions::default()).await;
    let url = format!("{}/api/echo?a=1&b=two", server.url());
    let reply = send(
        &client(),
        Method::POST,
        &url,
        &[("x-custom", "yes")],
        "hello world",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/api/echo");
    assert_eq!(body["query"], "a=1&b=two");
    assert_eq!(body["body_length"], 11);
    assert_eq!(body["headers"]["x-custom"], "yes");

    let reply = get(&client(), &format!("{}/api/echo", server.url()), &[]).await;
    let body = reply.json();
    assert_eq!(
        (body["method"].as_str(), body["body_length"].as_u64()),
        (Some("GET"), Some(0))
    );
    assert!(body["query"].is_null());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let server = start(UpstreamOptions::default()).await;
    let reply = get(&client(), &format!("{}/no/such/thing", server.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "not found");
    assert!(reply.header("x-request-id").is_some());

    let reply = send(
        &client(),
        Method::DELETE,
        &format!("{}/api/resource", server.url()),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    server.shutdown().await;
}

fn route(path: &str, methods: Vec<Method>, status: u16, body: &str, latency: Duration) -> Route {
    Route {
        path: path.to_string(),
        methods,
        status: StatusCode::from_u16(status).unwrap_or_else(|e| panic!("{e}")),
        body: body.to_string(),
        headers: vec![(
            HeaderName::from_static("x-route"),
            HeaderValue::from_static("custom"),
        )],
        latency,
        grpc: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_routes_answer_with_their_status_body_headers_and_latency() {
    let latency = Duration::from_millis(120);
    let server = start(UpstreamOptions {
        routes: vec![
            route("/api/report", vec![], 201, r#"{"report":"ready"}"#, latency),
            route(
                "/only-post",
                vec![Method::POST],
                202,
                "posted",
                Duration::ZERO,
            ),
        ],
        ..UpstreamOptions::default()
    })
    .await;
    let started = tokio::time::Instant::now();
    let reply = get(&client(), &format!("{}/api/report", server.url()), &[]).await;
    assert!(
        started.elapsed() >= latency,
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.text(), r#"{"report":"ready"}"#);
    assert_eq!(reply.header("x-route"), Some("custom"));
    assert!(reply.header("x-trace-id").is_some());

    let post = send(
        &client(),
        Method::POST,
        &format!("{}/only-post", server.url()),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (post.status, post.text().as_str()),
        (StatusCode::ACCEPTED, "posted")
    );
    let other = get(&client(), &format!("{}/only-post", server.url()), &[]).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

/// A static root with a file, a subdirectory, and symlinks that lead outside it.
fn static_tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("static");
    let write =
        |path: &Path, text: &str| std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(root.join("sub")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.join("private")).unwrap_or_else(|e| panic!("{e}"));
    write(&root.join("index.html"), "<p>disk page {{request_id}}</p>");
    write(&root.join("hello.txt"), "hello");
    write(&root.join("sub").join("style.css"), "p{}");
    write(&dir.join("secret.txt"), "SECRET");
    write(&dir.join("private").join("secret.txt"), "SECRET");
    #[cfg(unix)]
    {
        let link = |target: &Path, at: &Path| {
            std::os::unix::fs::symlink(target, at).unwrap_or_else(|e| panic!("{e}"))
        };
        link(&dir.join("secret.txt"), &root.join("link-out.txt"));
        link(&dir.join("private"), &root.join("linkdir"));
        link(&root.join("hello.txt"), &root.join("link-in.txt"));
    }
    root
}

/// The status code of a raw GET, so no client library normalises the path first.
async fn raw_status(server: &Listening, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let response = raw_exchange(server.addr, request.as_bytes()).await;
    response.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_from_inside_the_root_only() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = static_tree(dir.path());
    let server = start(UpstreamOptions {
        static_dir: Some(root),
        ..UpstreamOptions::default()
    })
    .await;
    let ok = get(
        &client(),
        &format!("{}/static/hello.txt", server.url()),
        &[],
    )
    .await;
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "hello"));
    assert_eq!(ok.header("content-type"), Some("text/plain; charset=utf-8"));
    let css = get(
        &client(),
        &format!("{}/static/sub/style.css", server.url()),
        &[],
    )
    .await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    // The page comes from the directory when it has one, placeholders filled in.
    let page = get(
        &client(),
        &format!("{}/", server.url()),
        &[("x-request-id", "r1")],
    )
    .await;
    assert_eq!(page.text(), "<p>disk page r1</p>");
    #[cfg(unix)]
    {
        let inside = get(
            &client(),
            &format!("{}/static/link-in.txt", server.url()),
            &[],
        )
        .await;
        assert_eq!(
            inside.text(),
            "hello",
            "a symlink that stays inside is fine"
        );
    }

    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/sub/../../secret.txt",
        "/static/sub/%2e%2e/%2e%2e/secret.txt",
        "/static/./hello.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/..\\secret.txt",
        "/static/%5c..%5csecret.txt",
        "/static/hello.txt%00.png",
        "/static/%zz",
        "/static/sub",
        "/static/",
        "/static/link-out.txt",
        "/static/linkdir/secret.txt",
        "/etc/passwd",
        "/../secret.txt",
    ] {
        assert_eq!(
            raw_status(&server, path).await,
            "HTTP/1.1 404 Not Found",
            "{path}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_static_dir_only_the_built_in_page_is_served() {
    let server = start(UpstreamOptions {
        static_dir: Some("/definitely/not/here".into()),
        ..UpstreamOptions::default()
    })
    .await;
    let page = get(
        &client(),
        &format!("{}/static/index.html", server.url()),
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("TraceForge"));
    let other = get(
        &client(),
        &format!("{}/static/hello.txt", server.url()),
        &[],
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_get_a_400_and_the_server_keeps_serving() {
    let server = start(UpstreamOptions::default()).await;
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
    ] {
        let response = raw_exchange(server.addr, garbage).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{garbage:?} -> {response:?}"
        );
    }
    let reply = get(&client(), &format!("{}/api/resource", server.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_drop_both_stop_the_server() {
    let server = start(UpstreamOptions::default()).await;
    let addr = server.addr;
    // A pooled keep-alive connection is open: graceful shutdown must still finish promptly.
    let pooled = client();
    assert_eq!(
        get(&pooled, &format!("http://{addr}/"), &[]).await.status,
        StatusCode::OK
    );
    support::bounded(server.shutdown()).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );

    let server = start(UpstreamOptions::default()).await;
    let addr = server.addr;
    drop(server);
    support::eventually("the dropped server to stop accepting", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_answers_exactly_n_bytes_and_refuses_bad_sizes() {
    let server = start(UpstreamOptions::default()).await;
    let c = client();
    for n in [0usize, 1, 17, 16384] {
        let reply = get(&c, &format!("{}/api/bytes/{n}", server.url()), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), n);
        assert_eq!(reply.header("content-length"), Some(n.to_string().as_str()));
        assert_eq!(
            reply.header("content-type"),
            Some("application/octet-stream")
        );
        assert!(
            reply
                .body
                .iter()
                .zip(b"0123456789abcdef".iter().cycle())
                .all(|(a, b)| a == b)
        );
    }
    for bad in ["x", "-1", "", "99999999999"] {
        let reply = get(&c, &format!("{}/api/bytes/{bad}", server.url()), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Sizes up to MAX_BYTES (gigabytes, for streaming benchmarks) are served; a HEAD announces
    // the length without producing the body.
    let max = upstream::MAX_BYTES;
    assert!(max >= 1 << 30, "{max}");
    let head = raw_exchange(
        server.addr,
        format!("HEAD /api/bytes/{max} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {max}")), "{head}");
    let above = raw_status(&server, &format!("/api/bytes/{}", max + 1)).await;
    assert!(above.starts_with("HTTP/1.1 400"), "{above}");
    let reply = send(
        &c,
        Method::POST,
        &format!("{}/api/bytes/3", server.url()),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    server.shutdown().await;
}

/// Everything the server sends until it closes the connection, within PATIENCE.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    support::bounded(async {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

async fn connect_and_send(addr: std::net::SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_after_the_configured_timeouts() {
    let server = start(UpstreamOptions {
        client_timeouts: traceforge::server::ClientTimeouts {
            header: Duration::from_millis(200),
            body: Duration::from_millis(200),
        },
        ..UpstreamOptions::default()
    })
    .await;
    // A body that stops after 3 of its 100 bytes: a 408, and the connection closed. The test
    // keeps its end open, so only the server can have closed it.
    let mut stalled = connect_and_send(
        server.addr,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    )
    .await;
    let response = read_to_close(&mut stalled).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    // A head that never ends: the connection is closed.
    let mut slow_head = connect_and_send(server.addr, b"GET / HTTP/1.1\r\nHo").await;
    read_to_close(&mut slow_head).await;
    // A malformed chunked body is the client's: 400, not a hang or a 500.
    let response = raw_exchange(
        server.addr,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    // Everyone else is still served.
    let reply = get(&client(), &format!("{}/api/resource", server.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_without_exactly_one_host_gets_a_400() {
    let server = start(UpstreamOptions::default()).await;
    for request in [
        &b"GET /api/resource HTTP/1.1\r\n\r\n"[..],
        b"GET /api/resource HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let response = raw_exchange(server.addr, request).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("Host"), "{response}");
    }
    let response = raw_exchange(server.addr, b"GET /api/resource HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_streamed_as_they_are_read_not_loaded_whole() {
    use std::io::{Seek, SeekFrom, Write};
    use tokio::io::AsyncReadExt;
    // Far larger than what the socket buffers can hold, so a server that streams has read only
    // the start of the file when the client has read only the start of the response.
    const SIZE: usize = 32 * 1024 * 1024;
    const TAIL: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("big.bin");
    std::fs::write(&path, vec![b'a'; SIZE]).unwrap_or_else(|e| panic!("{e}"));
    let server = start(UpstreamOptions {
        static_dir: Some(dir.path().to_path_buf()),
        ..UpstreamOptions::default()
    })
    .await;
    let mut stream = connect_and_send(
        server.addr,
        b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, mut body) = support::read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {SIZE}")), "{head}");
    // The end of the file changes (same length) while the response is under way: a streamed
    // response sends the new end, one read whole before the head went out the old one.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{e}"));
    file.seek(SeekFrom::Start((SIZE - TAIL) as u64))
        .and_then(|_| file.write_all(&vec![b'z'; TAIL]))
        .and_then(|()| file.sync_all())
        .unwrap_or_else(|e| panic!("{e}"));
    support::bounded(stream.read_to_end(&mut body))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body.len(), SIZE);
    assert!(
        body[SIZE - TAIL..].iter().all(|b| *b == b'z'),
        "the old tail was sent"
    );
    assert!(body[..SIZE - TAIL].iter().all(|b| *b == b'a'));
    server.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_logged_at_debug_level_not_info() {
    let mut cmd = support::bin();
    cmd.args([
        "upstream",
        "--listen",
        "127.0.0.1:0",
        "--static-dir",
        "/nonexistent",
    ])
    .env_remove("RUST_LOG");
    let process = support::ServerProcess::start(cmd);
    let reply = get(&client(), &format!("{}/api/resource", process.url), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let stderr = process.terminate();
    // The default filter is info: no line per request.
    assert!(!stderr.contains("upstream request"), "{stderr}");
    assert!(stderr.contains("shutting down the upstream"), "{stderr}");
}
