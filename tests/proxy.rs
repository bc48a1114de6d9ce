//! The fault-injecting proxy over real sockets, in front of the demo upstream or a counting one:
//! ids, each fault kind, seeded decisions at two concurrencies, hop-by-hop headers, metrics,
//! malformed bytes, disconnects mid-delay, 502 and 504.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use tokio::io::AsyncWriteExt;
use traceforge::fault::{FaultPlan, RequestFacts};
use traceforge::proxy::{self, ProxyOptions};
use traceforge::scenario::{ProxyConfig, Route};
use traceforge::server::Listening;
use traceforge::upstream::{self, UpstreamOptions};

use crate::support::{
    self, bounded, client, counting_upstream, eventually, get, loopback, metric, parse_exposition,
    raw_exchange, send,
};

/// The fault rules of a scenario snippet (`[[faults]]` tables or compact strings), validated.
pub(crate) fn plan(seed: u64, faults_toml: &str) -> FaultPlan {
    let text = format!("name = \"proxy-test\"\nseed = {seed}\n{faults_toml}\n");
    let scenario = traceforge::parse_str("test", &text, &[])
        .unwrap_or_else(|e| panic!("invalid test scenario: {e}"));
    FaultPlan::new(seed, scenario.faults)
}

pub(crate) async fn start_proxy(upstream: &str, plan: FaultPlan, config: ProxyConfig) -> Listening {
    let upstream: Uri = upstream.parse().unwrap_or_else(|e| panic!("{e}"));
    proxy::spawn(
        loopback(),
        ProxyOptions {
            upstream,
            plan: Arc::new(plan),
            config,
            calls: None,
            observer: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("spawn proxy: {e}"))
}

pub(crate) async fn demo_upstream(routes: Vec<Route>) -> Listening {
    upstream::spawn(
        loopback(),
        UpstreamOptions {
            routes,
            ..UpstreamOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("spawn upstream: {e}"))
}

pub(crate) async fn scrape(proxy: &Listening) -> Vec<support::Sample> {
    let reply = get(&client(), &format!("{}/metrics", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    parse_exposition(&reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_generated_when_absent_kept_when_present_and_the_same_upstream_and_downstream() {
    let up = demo_upstream(vec![]).await;
    let seed = 11;
    let proxy = start_proxy(
        &up.url(),
        FaultPlan::new(seed, Vec::new()),
        ProxyConfig::default(),
    )
    .await;
    let echo = format!("{}/api/echo", proxy.url());
    let c = client();

    // Absent: generated, returned, and exactly what the upstream saw.
    let reply = get(&c, &echo, &[]).await;
    let trace = reply.header("x-trace-id").unwrap_or_default().to_string();
    let request = reply.header("x-request-id").unwrap_or_default().to_string();
    assert_eq!(trace.len(), 32, "{trace}");
    assert!(uuid::Uuid::parse_str(&request).is_ok(), "{request}");
    let seen = reply.json();
    assert_eq!(seen["headers"]["x-trace-id"], trace.as_str());
    assert_eq!(seen["headers"]["x-request-id"], request.as_str());
    // The trace id of a request with no trace context is derived from its request id.
    let derived = traceforge::seed::uuid(seed, &format!("proxy/trace/{request}"))
        .simple()
        .to_string();
    assert_eq!(trace, derived);

    // Present: kept untouched on both sides.
    let reply = get(
        &c,
        &echo,
        &[("x-trace-id", "t-42"), ("x-request-id", "r-42")],
    )
    .await;
    assert_eq!(
        (reply.header("x-trace-id"), reply.header("x-request-id")),
        (Some("t-42"), Some("r-42"))
    );
    let seen = reply.json();
    assert_eq!(
        (
            &seen["headers"]["x-trace-id"],
            &seen["headers"]["x-request-id"]
        ),
        (&"t-42".into(), &"r-42".into())
    );

    // Only a request id: the trace id is derived from it, the same in any order or run.
    let reply = get(&c, &echo, &[("x-request-id", "r-7")]).await;
    let expected = traceforge::seed::uuid(seed, "proxy/trace/r-7")
        .simple()
        .to_string();
    assert_eq!(reply.header("x-trace-id"), Some(expected.as_str()));
    assert_eq!(reply.json()["headers"]["x-trace-id"], expected.as_str());

    // A W3C traceparent is forwarded and supplies the trace id.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply = get(&c, &echo, &[("traceparent", tp)]).await;
    assert_eq!(
        reply.header("x-trace-id"),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    let seen = reply.json();
    assert_eq!(seen["headers"]["traceparent"], tp);
    assert_eq!(
        seen["headers"]["x-trace-id"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    // No fault fired, so no fault header.
    assert_eq!(reply.header("x-traceforge-fault"), None);
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_rule_holds_every_matched_response_for_at_least_its_delay() {
    let up = demo_upstream(vec![]).await;
    let delay = Duration::from_millis(150);
    let proxy = start_proxy(
        &up.url(),
        plan(1, r#"faults = ["delay:150ms:/api"]"#),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    for _ in 0..4 {
        let started = tokio::time::Instant::now();
        let reply = get(&c, &format!("{}/api/resource", proxy.url()), &[]).await;
        let took = started.elapsed();
        assert!(took >= delay, "a delayed response took only {took:?}");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-traceforge-fault"), Some("delay-1"));
        assert_eq!(
            reply.header("x-fault-injected"),
            None,
            "a delay is not a synthetic response"
        );
    }
    let unmatched = get(&c, &format!("{}/", proxy.url()), &[]).await;
    assert_eq!(unmatched.header("x-traceforge-fault"), None);
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_rule_of_one_answers_503_and_the_upstream_sees_nothing() {
    let (up, hits) = counting_upstream().await;
    let proxy = start_proxy(
        &up.url(),
        plan(3, r#"faults = ["drop:1.0"]"#),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    for path in ["/", "/api/resource", "/anything?x=1"] {
        let reply = send(
            &c,
            Method::POST,
            &format!("{}{path}", proxy.url()),
            &[],
            "body",
        )
        .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.header("x-fault-injected"), Some("drop-1"));
        assert_eq!(reply.header("x-traceforge-fault"), Some("drop-1"));
        assert!(reply.header("x-request-id").is_some());
        let body = reply.json();
        assert_eq!(body["error"], "fault injected");
        assert_eq!(
            (&body["rule"], &body["kind"], &body["status"]),
            (&"drop-1".into(), &"drop".into(), &503.into())
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a dropped request reached the upstream"
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fired_rules_are_listed_in_firing_order_and_the_error_body_names_its_rule() {
    let (up, hits) = counting_upstream().await;
    let faults = r#"
[[faults]]
name = "slow-api"
kind = "delay"
delay = "20ms"
match = { path = "/api/*" }

[[faults]]
name = "api-503"
kind = "error"
status = 503
match = { path = "/api/*" }
"#;
    let config = ProxyConfig {
        add_response_headers: vec![(
            HeaderName::from_static("x-chaos"),
            HeaderValue::from_static("on"),
        )],
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(&up.url(), plan(5, faults), config).await;
    let reply = get(&client(), &format!("{}/api/resource", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.header("x-traceforge-fault"),
        Some("slow-api, api-503")
    );
    assert_eq!(reply.header("x-fault-injected"), Some("api-503"));
    assert_eq!(
        reply.header("x-chaos"),
        Some("on"),
        "configured headers go on synthetic responses too"
    );
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "fault injected", "rule": "api-503", "kind": "error", "status": 503})
    );
    let passed = get(&client(), &format!("{}/other", proxy.url()), &[]).await;
    assert_eq!(
        (passed.status, passed.header("x-chaos")),
        (StatusCode::OK, Some("on"))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
    up.shutdown().await;
}

/// Sends the 1000 seeded request ids through `proxy`, `concurrency` at a time; returns id -> status.
async fn statuses(proxy: &Listening, ids: &[String], concurrency: usize) -> BTreeMap<String, u16> {
    let c = client();
    let url = format!("{}/api/resource", proxy.url());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = Arc::new(ids.to_vec());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (c, url, next, ids) = (c.clone(), url.clone(), next.clone(), ids.clone());
        workers.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(id) = ids.get(i) else { break };
                let reply = get(&c, &url, &[("x-request-id", id)]).await;
                assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
                seen.push((id.clone(), reply.status.as_u16()));
            }
            seen
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = bounded(workers.join_next()).await {
        out.extend(joined.unwrap_or_else(|e| panic!("worker failed: {e}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_half_the_time_is_about_half_and_the_same_ids_get_the_same_decisions_at_any_concurrency()
 {
    let seed = 2024;
    let faults = r#"faults = ["error:503:0.5"]"#;
    let ids: Vec<String> = (0..1000)
        .map(|i| traceforge::seed::request_id(seed, i, 0))
        .collect();

    let (up, hits) = counting_upstream().await;
    let proxy = start_proxy(&up.url(), plan(seed, faults), ProxyConfig::default()).await;
    let first = statuses(&proxy, &ids, 32).await;
    proxy.shutdown().await;
    assert_eq!(first.len(), 1000);
    let errors = first.values().filter(|s| **s == 503).count();
    // Binomial(1000, 0.5): sd ~= 15.8, so +-4 sd is 437..=563.
    assert!((437..=563).contains(&errors), "{errors} of 1000 were 503");
    assert!(first.values().all(|s| *s == 503 || *s == 200));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1000 - errors,
        "only passed requests reach the upstream"
    );

    // A fresh proxy, another concurrency: the same ids get the same answers.
    let proxy = start_proxy(&up.url(), plan(seed, faults), ProxyConfig::default()).await;
    let second = statuses(&proxy, &ids, 3).await;
    assert_eq!(first, second, "decisions changed with concurrency");
    // And they are exactly what the pure decision function says.
    let reference = plan(seed, faults);
    for (id, status) in &first {
        let decided = reference.decide(&RequestFacts::new(&Method::GET, "/api/resource", id));
        assert_eq!(decided.terminal().is_some(), *status == 503, "{id}");
    }
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_reach_neither_the_upstream_nor_the_client() {
    let hop_route = Route {
        path: "/hop".into(),
        methods: vec![],
        status: StatusCode::OK,
        body: "hop".into(),
        headers: [
            ("connection", "x-resp-secret"),
            ("x-resp-secret", "upstream-only"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic realm=\"up\""),
            ("trailer", "x-checksum"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("x-end-to-end", "kept"),
        ]
        .into_iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect(),
        latency: Duration::ZERO,
        grpc: None,
    };
    let up = demo_upstream(vec![hop_route]).await;
    let proxy = start_proxy(&up.url(), FaultPlan::default(), ProxyConfig::default()).await;

    // Client -> upstream, over raw bytes so nothing between the test and the proxy rewrites them.
    let request = "GET /api/echo HTTP/1.1\r\n\
        Host: proxy.test\r\n\
        Connection: close, X-Req-Secret\r\n\
        X-Req-Secret: client-only\r\n\
        Keep-Alive: timeout=5\r\n\
        Proxy-Connection: keep-alive\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
        TE: trailers\r\n\
        Trailer: x-checksum\r\n\
        Upgrade: h2c\r\n\
        X-End-To-End: kept\r\n\r\n";
    let response = raw_exchange(proxy.addr, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let seen: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    let headers = seen["headers"].as_object().cloned().unwrap_or_default();
    for hop in [
        "connection",
        "x-req-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            !headers.contains_key(hop),
            "`{hop}` reached the upstream: {headers:?}"
        );
    }
    assert_eq!(
        headers.get("x-end-to-end").and_then(|v| v.as_str()),
        Some("kept")
    );
    let upstream_authority = up.addr.to_string();
    assert_eq!(
        headers.get("host").and_then(|v| v.as_str()),
        Some(upstream_authority.as_str())
    );

    // Upstream -> client.
    let reply = get(&client(), &format!("{}/hop", proxy.url()), &[]).await;
    assert_eq!(reply.text(), "hop");
    for hop in [
        "connection",
        "x-resp-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "te",
        "transfer-encoding",
    ] {
        assert!(
            reply.headers.get(hop).is_none(),
            "`{hop}` reached the client: {:?}",
            reply.headers
        );
    }
    assert_eq!(reply.header("x-end-to-end"), Some("kept"));
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_was_sent_and_parse_as_prometheus_text() {
    let (up, hits) = counting_upstream().await;
    let faults = r#"
[[faults]]
name = "slow"
kind = "delay"
delay = "5ms"
match = { path = "/api/slow" }

[[faults]]
name = "boom"
kind = "error"
status = 500
match = { path = "/api/err" }

[[faults]]
name = "gone"
kind = "drop"
match = { path = "/api/drop" }
"#;
    let proxy = start_proxy(&up.url(), plan(9, faults), ProxyConfig::default()).await;
    let c = client();
    for (path, times) in [
        ("/api/slow", 3),
        ("/api/err", 2),
        ("/api/drop", 4),
        ("/ok", 5),
    ] {
        for _ in 0..times {
            get(&c, &format!("{}{path}", proxy.url()), &[]).await;
        }
    }
    let reply = get(&c, &format!("{}/metrics", proxy.url()), &[]).await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        reply.header("x-request-id"),
        None,
        "/metrics is not traffic"
    );
    let m = parse_exposition(&reply.text());
    let v = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels);
    assert_eq!(v("traceforge_proxy_requests_total", &[]), 14.0);
    assert_eq!(v("traceforge_proxy_forwarded_total", &[]), 8.0);
    assert_eq!(
        v("traceforge_proxy_delayed_total", &[("rule", "slow")]),
        3.0
    );
    assert_eq!(
        v(
            "traceforge_proxy_injected_errors_total",
            &[("rule", "boom"), ("status", "500")]
        ),
        2.0
    );
    assert_eq!(
        v("traceforge_proxy_dropped_total", &[("rule", "gone")]),
        4.0
    );
    assert_eq!(v("traceforge_proxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(v("traceforge_proxy_cancelled_total", &[]), 0.0);
    assert_eq!(v("traceforge_proxy_in_flight", &[]), 0.0);
    assert_eq!(
        v("traceforge_proxy_responses_total", &[("status", "200")]),
        8.0
    );
    assert_eq!(
        v("traceforge_proxy_responses_total", &[("status", "503")]),
        4.0
    );
    assert_eq!(
        v("traceforge_proxy_request_duration_seconds_count", &[]),
        14.0
    );
    assert_eq!(
        v(
            "traceforge_proxy_request_duration_seconds_bucket",
            &[("outcome", "dropped"), ("le", "+Inf")]
        ),
        4.0
    );
    // Every rule has a series, and the upstream saw exactly the forwarded requests (not /metrics).
    assert_eq!(hits.load(Ordering::SeqCst), 8);
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_get_a_400_and_the_proxy_keeps_serving() {
    let (up, hits) = counting_upstream().await;
    let proxy = start_proxy(&up.url(), FaultPlan::default(), ProxyConfig::default()).await;
    let response = raw_exchange(
        proxy.addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
    let response = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost x\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
    let reply = get(&client(), &format!("{}/", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_delay_is_counted_as_cancelled_and_never_forwarded() {
    let (up, hits) = counting_upstream().await;
    let proxy = start_proxy(
        &up.url(),
        plan(4, r#"faults = ["delay:30s:/slow"]"#),
        ProxyConfig::default(),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = &proxy;
    eventually("the request to be in flight", || async move {
        metric(&scrape(p).await, "traceforge_proxy_in_flight", &[]) == 1.0
    })
    .await;
    drop(stream);
    eventually("the abandoned request to be counted", || async move {
        let m = scrape(p).await;
        metric(&m, "traceforge_proxy_in_flight", &[]) == 0.0
            && metric(&m, "traceforge_proxy_cancelled_total", &[]) == 1.0
    })
    .await;
    let m = scrape(&proxy).await;
    assert_eq!(metric(&m, "traceforge_proxy_requests_total", &[]), 1.0);
    assert_eq!(
        metric(&m, "traceforge_proxy_delayed_total", &[("rule", "delay-1")]),
        1.0
    );
    assert_eq!(metric(&m, "traceforge_proxy_forwarded_total", &[]), 0.0);
    assert_eq!(
        metric(&m, "traceforge_proxy_request_duration_seconds_count", &[]),
        0.0
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // Shutdown finishes promptly: no task is left waiting out the 30s delay.
    bounded(proxy.shutdown()).await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_502_with_a_json_body() {
    // A port that was just free: bind, note it, release it.
    let dead = {
        let listener = tokio::net::TcpListener::bind(loopback())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    };
    let proxy = start_proxy(
        &format!("http://{dead}"),
        FaultPlan::default(),
        ProxyConfig::default(),
    )
    .await;
    let reply = get(
        &client(),
        &format!("{}/api/resource", proxy.url()),
        &[("x-request-id", "r-502")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-request-id"), Some("r-502"));
    assert_eq!(reply.json()["error"], "upstream unreachable");
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_upstream_errors_total",
            &[("kind", "unreachable")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_responses_total", &[("status", "502")]),
        1.0
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_a_504_after_the_configured_timeout() {
    let slow = Route {
        path: "/slow".into(),
        methods: vec![],
        status: StatusCode::OK,
        body: "late".into(),
        headers: vec![],
        latency: Duration::from_secs(10),
        grpc: None,
    };
    let up = demo_upstream(vec![slow]).await;
    let timeout = Duration::from_millis(100);
    let config = ProxyConfig {
        upstream_timeout: timeout,
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(&up.url(), FaultPlan::default(), config).await;
    let started = tokio::time::Instant::now();
    let reply = get(&client(), &format!("{}/slow", proxy.url()), &[]).await;
    assert!(started.elapsed() >= timeout);
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.json()["error"], "upstream timeout");
    assert_eq!(reply.json()["timeout_ms"], 100);
    // Fast routes still pass.
    let fast = get(&client(), &format!("{}/api/resource", proxy.url()), &[]).await;
    assert_eq!(fast.status, StatusCode::OK);
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_upstream_errors_total",
            &[("kind", "timeout")]
        ),
        1.0
    );
    proxy.shutdown().await;
    bounded(up.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_through_and_metrics_are_not_forwarded() {
    let (up_counting, hits) = counting_upstream().await;
    let proxy = start_proxy(
        &up_counting.url(),
        FaultPlan::default(),
        ProxyConfig::default(),
    )
    .await;
    scrape(&proxy).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "GET /metrics was forwarded");
    proxy.shutdown().await;

    let up = demo_upstream(vec![]).await;
    let proxy = start_proxy(&up.url(), FaultPlan::default(), ProxyConfig::default()).await;
    let body = "x".repeat(256 * 1024);
    let reply = send(
        &client(),
        Method::PUT,
        &format!("{}/api/echo?q=1", proxy.url()),
        &[],
        &body,
    )
    .await;
    let seen = reply.json();
    assert_eq!(
        (&seen["method"], &seen["query"], &seen["body_length"]),
        (&"PUT".into(), &"q=1".into(), &(256 * 1024).into())
    );
    proxy.shutdown().await;
    up.shutdown().await;
    up_counting.shutdown().await;
}

// ---- Timeouts ----

/// A raw client connection to `addr` that has sent `bytes`.
async fn raw_client(addr: std::net::SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    stream
}

/// Everything the peer sends until it closes the connection, within PATIENCE.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    bounded(async {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        out
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_mid_body_is_cut_off_after_the_read_timeout() {
    // A head announcing 100 bytes, 5 of them, then silence with the connection open.
    let up = support::raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello").await;
    let config = ProxyConfig {
        upstream_read_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(&format!("http://{up}"), FaultPlan::default(), config).await;
    let mut stream = raw_client(proxy.addr, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let response = String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned();
    // The client got the head and the bytes that came, then the connection closed: a short body.
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("content-length: 100"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_upstream_read_timeouts_total", &[]),
        1.0
    );
    assert_eq!(metric(&m, "traceforge_proxy_in_flight", &[]), 0.0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_body_gets_a_408_and_its_connection_closed() {
    let up = demo_upstream(vec![]).await;
    let config = ProxyConfig {
        client_body_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(&up.url(), FaultPlan::default(), config).await;
    // 3 of the 100 bytes announced, then nothing; the test holds the connection open.
    let mut stream = raw_client(
        proxy.addr,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    )
    .await;
    let response = String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    assert!(response.contains("request body timeout"), "{response}");
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_client_errors_total",
            &[("kind", "body_timeout")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_upstream_errors_total", &[]),
        0.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_head_is_disconnected_after_the_header_timeout() {
    let (up, hits) = counting_upstream().await;
    let config = ProxyConfig {
        client_header_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(&up.url(), FaultPlan::default(), config).await;
    let mut stream = raw_client(proxy.addr, b"GET / HTTP/1.1\r\nHo").await;
    // Closed by the proxy, without forwarding anything.
    read_to_close(&mut stream).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upload_is_not_an_upstream_timeout() {
    let up = demo_upstream(vec![]).await;
    let config = ProxyConfig {
        upstream_timeout: Duration::from_millis(500),
        client_body_timeout: Duration::from_secs(10),
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(&up.url(), FaultPlan::default(), config).await;
    let mut stream = raw_client(
        proxy.addr,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
    )
    .await;
    // The client is the slow one here: four bytes over well beyond the upstream timeout. The
    // pauses are the behaviour under test, not a synchronisation.
    for byte in [b"a", b"b", b"c", b"d"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream
            .write_all(byte)
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
    }
    let response = String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"body_length\":4"), "{response}");
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- Whose fault: client, upstream or proxy ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_body_is_the_clients_fault_not_the_upstreams() {
    let up = demo_upstream(vec![]).await;
    let proxy = start_proxy(&up.url(), FaultPlan::default(), ProxyConfig::default()).await;
    let response = raw_exchange(
        proxy.addr,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("malformed request body"), "{response}");
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_client_errors_total",
            &[("kind", "body")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_upstream_errors_total", &[]),
        0.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_responses_total", &[("status", "400")]),
        1.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_refused_with_400_and_never_forwarded() {
    let (up, hits) = counting_upstream().await;
    let proxy = start_proxy(&up.url(), FaultPlan::default(), ProxyConfig::default()).await;
    for request in [
        &b"GET /api/resource HTTP/1.1\r\n\r\n"[..],
        b"GET /api/resource HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let response = raw_exchange(proxy.addr, request).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("Host"), "{response}");
    }
    // HTTP/1.0 may leave Host out.
    let response = raw_exchange(proxy.addr, b"GET /api/resource HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_client_errors_total",
            &[("kind", "host")]
        ),
        2.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_beside_transfer_encoding_is_not_passed_on() {
    // The upstream claims 5 bytes and sends a chunked body of 10: the chunking is what counts.
    let up = support::raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
    )
    .await;
    let proxy = start_proxy(
        &format!("http://{up}"),
        FaultPlan::default(),
        ProxyConfig::default(),
    )
    .await;
    // Two requests on one connection: the second answer must start where the first ended.
    let mut stream = raw_client(
        proxy.addr,
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let response = String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned();
    assert!(
        !response.to_ascii_lowercase().contains("content-length: 5"),
        "{response}"
    );
    let answers: Vec<&str> = response.matches("HTTP/1.1 200 OK").collect();
    assert_eq!(answers.len(), 2, "{response}");
    assert_eq!(response.matches("0123456789").count(), 2, "{response}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generators_headers_reach_the_upstream_only_when_asked() {
    let up = demo_upstream(vec![]).await;
    let sent = [
        ("x-traceforge-index", "7"),
        ("x-traceforge-attempt", "1"),
        ("x-kept", "yes"),
    ];
    for forward in [false, true] {
        let config = ProxyConfig {
            forward_traceforge_headers: forward,
            ..ProxyConfig::default()
        };
        let proxy = start_proxy(&up.url(), FaultPlan::default(), config).await;
        let seen = get(&client(), &format!("{}/api/echo", proxy.url()), &sent)
            .await
            .json();
        let headers = &seen["headers"];
        assert_eq!(headers["x-kept"], "yes");
        let expected = |v: &str| {
            if forward {
                serde_json::Value::from(v)
            } else {
                serde_json::Value::Null
            }
        };
        assert_eq!(headers["x-traceforge-index"], expected("7"), "{seen}");
        assert_eq!(headers["x-traceforge-attempt"], expected("1"), "{seen}");
        proxy.shutdown().await;
    }
    up.shutdown().await;
}

/// Runs `traceforge proxy` with at most `fds` open file descriptors.
#[cfg(target_os = "linux")]
fn proxy_with_fd_limit(fds: u32, upstream: &str) -> support::ServerProcess {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_traceforge"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--upstream", upstream])
        .env_remove("RUST_LOG")
        .env_remove("UPSTREAM_BASE_URL");
    support::ServerProcess::start(cmd)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_the_proxys_error_not_the_upstreams() {
    use tokio::io::AsyncReadExt;
    let (up, hits) = counting_upstream().await;
    let limit = 64;
    let proxy = proxy_with_fd_limit(limit, &up.url());
    // The limit caps descriptor numbers: count those below it (one inherited from the test
    // harness may sit above).
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", proxy.child.id()))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|fd| *fd < limit)
            .count()
    };
    // Keep-alive connections that each hold one of the proxy's descriptors (a /metrics answer
    // proves the proxy accepted it), until exactly one is left.
    let mut held = Vec::new();
    while open_fds() + 1 < limit as usize {
        let mut stream = raw_client(proxy.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, _) = support::read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(stream);
    }
    // Accepting this one takes the last descriptor; the upstream connection finds none.
    let response = raw_exchange(
        proxy.addr,
        b"GET /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("proxy out of resources"), "{response}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // Counted as the proxy's error, on a connection that is already open.
    let mut stream = held.pop().unwrap_or_else(|| panic!("no connection held"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut text = String::new();
    bounded(stream.read_to_string(&mut text)).await.ok();
    let body = text
        .rsplit_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let m = parse_exposition(body);
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_proxy_errors_total",
            &[("kind", "resources")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_upstream_errors_total", &[]),
        0.0
    );
    drop(held);
    drop(proxy);
    up.shutdown().await;
}

/// A bare upstream that counts the connections and requests it gets; with `close`, it answers
/// `Connection: close` and closes after each response.
async fn connection_counting_upstream(
    close: bool,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let response: &'static [u8] = if close {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    };
    support::counted_raw_upstream(response, close).await
}

/// One client connection to the proxy, sending requests one after another.
async fn client_connection(
    proxy: &Listening,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(connection);
    sender
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) -> StatusCode {
    use http_body_util::BodyExt;
    let req = hyper::Request::get("/api/resource")
        .header("host", "proxy")
        .body(http_body_util::Empty::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let response = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .to_bytes();
    assert_eq!(&body[..], b"ok");
    status
}

#[tokio::test]
async fn each_client_connection_keeps_one_upstream_connection_for_all_its_requests() {
    let (addr, connections, requests) = connection_counting_upstream(false).await;
    let proxy = start_proxy(
        &format!("http://{addr}"),
        FaultPlan::new(1, Vec::new()),
        ProxyConfig::default(),
    )
    .await;
    // Two client connections open at once, three requests each, interleaved: two upstream
    // connections, each used again for its client's every request.
    let (mut a, mut b) = (
        client_connection(&proxy).await,
        client_connection(&proxy).await,
    );
    for _ in 0..3 {
        assert_eq!(get_on(&mut a).await, StatusCode::OK);
        assert_eq!(get_on(&mut b).await, StatusCode::OK);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    drop((a, b));
    // A client connection opened after they ended takes one of theirs when the proxy has seen
    // them end, or opens one of its own (when it comes first): one connection at most, whichever
    // way the race goes, for all three requests.
    let mut c = client_connection(&proxy).await;
    for _ in 0..3 {
        assert_eq!(get_on(&mut c).await, StatusCode::OK);
    }
    assert_eq!(requests.load(Ordering::SeqCst), 9);
    assert!(connections.load(Ordering::SeqCst) <= 3);
}

#[tokio::test]
async fn an_upstream_that_closes_after_each_response_gets_a_new_connection_for_the_next() {
    let (addr, connections, requests) = connection_counting_upstream(true).await;
    let proxy = start_proxy(
        &format!("http://{addr}"),
        FaultPlan::new(1, Vec::new()),
        ProxyConfig::default(),
    )
    .await;
    let mut a = client_connection(&proxy).await;
    for _ in 0..5 {
        assert_eq!(get_on(&mut a).await, StatusCode::OK);
    }
    assert_eq!(requests.load(Ordering::SeqCst), 5);
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}
