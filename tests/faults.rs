//! Every fault kind, matcher and timing rule over real sockets: each test fails if the fault does
//! not happen as specified. Timing asserts are lower bounds, with generous upper bounds only where
//! the issue asks for a duration ("about 2 s").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use traceforge::fault::{FaultPlan, RequestFacts};
use traceforge::load::LoadOptions;
use traceforge::record::{ErrorKind, Outcome};
use traceforge::runner::{self, RunOptions};
use traceforge::scenario::{ProxyConfig, Route};
use traceforge::server::Listening;

use crate::proxy::{demo_upstream, plan, scrape, start_proxy};
use crate::support::{bounded, client, counting_upstream, eventually, get, loopback, metric};

/// A demo-upstream route answering `GET path` with `size` bytes of text.
fn big_route(path: &str, size: usize) -> Route {
    Route {
        path: path.to_string(),
        methods: Vec::new(),
        status: StatusCode::OK,
        body: "0123456789abcdef".repeat(size / 16 + 1)[..size].to_string(),
        headers: Vec::new(),
        latency: Duration::ZERO,
        grpc: None,
    }
}

/// A proxy with `faults` (TOML) in front of the demo upstream with `routes`.
async fn setup(seed: u64, faults: &str, routes: Vec<Route>) -> (Listening, Listening) {
    let up = demo_upstream(routes).await;
    let proxy = start_proxy(&up.url(), plan(seed, faults), ProxyConfig::default()).await;
    (up, proxy)
}

/// Sends raw bytes on a fresh connection and reads until the server closes or resets it.
pub(crate) async fn raw(
    addr: std::net::SocketAddr,
    request: &str,
) -> (Vec<u8>, Option<std::io::Error>) {
    bounded(async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e)),
            }
        }
    })
    .await
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// The samples every test checks: the outcome families add up to the requests, nothing in flight.
async fn assert_settled(proxy: &Listening) -> Vec<crate::support::Sample> {
    eventually("in_flight to return to 0", || async move {
        metric(&scrape(proxy).await, "traceforge_proxy_in_flight", &[]) == 0.0
    })
    .await;
    let m = scrape(proxy).await;
    let outcomes: f64 = [
        "traceforge_proxy_forwarded_total",
        "traceforge_proxy_dropped_total",
        "traceforge_proxy_injected_errors_total",
        "traceforge_proxy_upstream_errors_total",
        "traceforge_proxy_cancelled_total",
        "traceforge_proxy_resets_total",
        "traceforge_proxy_hangs_total",
    ]
    .iter()
    .map(|name| metric(&m, name, &[]))
    .sum();
    assert_eq!(
        metric(&m, "traceforge_proxy_requests_total", &[]),
        outcomes,
        "every request ends in exactly one outcome"
    );
    m
}

// ---- reset ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_closes_the_connection_with_no_response() {
    let (up, hits) = counting_upstream().await;
    let faults = "[[faults]]\nname = \"rst\"\nkind = \"reset\"\nmatch = { path = \"/api/*\" }";
    let proxy = start_proxy(&up.url(), plan(1, faults), ProxyConfig::default()).await;

    // A raw socket reads no byte at all: a reset (or, on platforms without RST, a bare EOF).
    let (bytes, error) = raw(proxy.addr, &get_request("/api/resource")).await;
    assert!(
        bytes.is_empty(),
        "got bytes: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    match error {
        Some(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        // Linux honours SO_LINGER 0: the close must be a RST, not a FIN.
        None if cfg!(target_os = "linux") => panic!("a clean EOF instead of a reset"),
        None => {}
    }

    // hyper's client gets an error, not a response.
    let request = Request::get(format!("{}/api/resource", proxy.url()))
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|e| panic!("{e}"));
    let result = bounded(client().request(request)).await;
    assert!(result.is_err(), "a reset gave a response: {result:?}");

    // Other paths pass; the upstream never saw a reset request.
    let ok = get(&client(), &format!("{}/other", proxy.url()), &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_resets_total", &[("rule", "rst")]),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_faults_total",
            &[("rule", "rst"), ("kind", "reset")]
        ),
        2.0
    );
    assert_eq!(metric(&m, "traceforge_proxy_cancelled_total", &[]), 0.0);
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- hang ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_without_a_cap_never_answers_until_the_client_gives_up() {
    let (up, hits) = counting_upstream().await;
    let proxy = start_proxy(
        &up.url(),
        plan(2, "[[faults]]\nname = \"stuck\"\nkind = \"hang\""),
        ProxyConfig::default(),
    )
    .await;
    let started = Instant::now();
    let request = Request::get(format!("{}/api/resource", proxy.url()))
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = client();
    let result = tokio::time::timeout(Duration::from_millis(300), c.request(request)).await;
    assert!(
        result.is_err(),
        "the client's own timeout must fire: {result:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a hung request was forwarded"
    );
    // The client dropped its connection: the proxy lets go of the request, no task is left.
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_hangs_total", &[("rule", "stuck")]),
        1.0
    );
    assert_eq!(metric(&m, "traceforge_proxy_cancelled_total", &[]), 0.0);
    bounded(proxy.shutdown()).await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_with_a_cap_answers_504_after_the_cap() {
    let (up, hits) = counting_upstream().await;
    let faults = "[[faults]]\nname = \"slow-gw\"\nkind = \"hang\"\ncap = \"300ms\"";
    let proxy = start_proxy(&up.url(), plan(3, faults), ProxyConfig::default()).await;
    let started = Instant::now();
    let reply = get(&client(), &format!("{}/api/resource", proxy.url()), &[]).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "took only {took:?}");
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.header("x-fault-injected"), Some("slow-gw"));
    assert_eq!(reply.header("x-traceforge-fault"), Some("slow-gw"));
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "fault injected", "rule": "slow-gw", "kind": "hang", "status": 504})
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_hangs_total", &[("rule", "slow-gw")]),
        1.0
    );
    assert_eq!(
        metric(&m, "traceforge_proxy_responses_total", &[("status", "504")]),
        1.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- truncate ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_sends_the_head_then_exactly_n_body_bytes_then_closes() {
    let faults = r#"
[[faults]]
name = "cut"
kind = "truncate"
after_bytes = 100
match = { path = "/big" }
"#;
    let (up, proxy) = setup(
        4,
        faults,
        vec![big_route("/big", 1000), big_route("/small", 60)],
    )
    .await;

    // Raw: the head with the full Content-Length and the fault header, 100 bytes, then the close.
    let (bytes, _) = raw(proxy.addr, &get_request("/big")).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head_lc = head.to_ascii_lowercase();
    assert!(head_lc.contains("content-length: 1000"), "{head}");
    assert!(head_lc.contains("x-traceforge-fault: cut"), "{head}");
    assert_eq!(body.len(), 100, "{body:?}");
    assert_eq!(body, &big_route("/big", 100).body);

    // hyper's client: a response with status and headers, then a body error.
    let request = Request::get(format!("{}/big", proxy.url()))
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|e| panic!("{e}"));
    let response = bounded(client().request(request))
        .await
        .unwrap_or_else(|e| panic!("the head should arrive: {e}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("x-traceforge-fault")
            .map(|v| v.as_bytes()),
        Some(&b"cut"[..])
    );
    let body = bounded(response.into_body().collect()).await;
    assert!(body.is_err(), "a truncated body read cleanly");

    // A body under the limit passes whole and is not counted as truncated.
    let reply = get(&client(), &format!("{}/small", proxy.url()), &[]).await;
    assert_eq!(reply.body.len(), 60);
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_truncated_total", &[("rule", "cut")]),
        2.0
    );
    assert_eq!(metric(&m, "traceforge_proxy_forwarded_total", &[]), 3.0);
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_generator_sees_a_truncated_body_as_a_reset_with_the_rule_named() {
    let text = r#"
name = "truncated"
seed = 5
[upstream]
routes = [{ path = "/data", body = "0123456789012345678901234567890123456789" }]
[[faults]]
name = "cut"
kind = "truncate"
after_bytes = 10
[load]
requests = 4
concurrency = 2
targets = [{ path = "/data" }]
"#;
    let outcomes = play_scenario(text).await;
    for o in &outcomes {
        assert_eq!(o.error, Some(ErrorKind::Reset), "{o:?}");
        assert_eq!(o.attempts[0].faults, ["cut"], "{o:?}");
    }
}

// ---- throttle ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_at_20_kb_per_second_takes_about_2_seconds_for_40_kb() {
    let faults = r#"
[[faults]]
name = "slow-link"
kind = "throttle"
bytes_per_second = 20480
match = { path = "/download" }
"#;
    let route = big_route("/download", 40 * 1024);
    let (up, proxy) = setup(6, faults, vec![route.clone()]).await;
    let started = Instant::now();
    let reply = get(&client(), &format!("{}/download", proxy.url()), &[]).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1800), "took only {took:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), route.body, "pacing must not change the bytes");
    assert_eq!(reply.header("x-traceforge-fault"), Some("slow-link"));
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_throttled_total",
            &[("rule", "slow-link")]
        ),
        1.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_throttle_leaves_nothing_in_flight() {
    let faults = "[[faults]]\nkind = \"throttle\"\nbytes_per_second = 1000";
    let (up, proxy) = setup(7, faults, vec![big_route("/download", 100_000)]).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(get_request("/download").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 512];
    let n = bounded(stream.read(&mut buf)).await.unwrap_or(0);
    assert!(n > 0, "the head should arrive at once");
    let p = &proxy;
    eventually("the download to be in flight", || async move {
        metric(&scrape(p).await, "traceforge_proxy_in_flight", &[]) == 1.0
    })
    .await;
    drop(stream);
    assert_settled(&proxy).await;
    bounded(proxy.shutdown()).await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_and_truncate_compose_with_a_delay() {
    let faults = r#"
[[faults]]
kind = "delay"
delay = "200ms"
[[faults]]
kind = "throttle"
bytes_per_second = 1000
[[faults]]
kind = "truncate"
after_bytes = 300
"#;
    let (up, proxy) = setup(8, faults, vec![big_route("/d", 5000)]).await;
    let started = Instant::now();
    let (bytes, _) = raw(proxy.addr, &get_request("/d")).await;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.contains("delay-1, throttle-2, truncate-3"), "{head}");
    assert_eq!(body.len(), 300);
    // 200ms of delay, then 300 bytes at 1000 B/s.
    assert!(took >= Duration::from_millis(480), "took only {took:?}");
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- error, headers, status ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rule_sends_its_own_body_headers_and_retry_after() {
    let (up, hits) = counting_upstream().await;
    let faults = r#"
[[faults]]
name = "limited"
kind = "error"
status = 429
body = "slow down"
headers = { "content-type" = "text/plain", "x-quota" = "0" }
retry_after = "2s"
match = { path = "/limited" }

[[faults]]
name = "json-body"
kind = "error"
status = 503
body = '{"maintenance":true}'
match = { path = "/json" }
"#;
    let proxy = start_proxy(&up.url(), plan(9, faults), ProxyConfig::default()).await;
    let reply = get(&client(), &format!("{}/limited", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.text(), "slow down");
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.header("x-quota"), Some("0"));
    assert_eq!(reply.header("x-fault-injected"), Some("limited"));
    assert_eq!(reply.header("x-traceforge-fault"), Some("limited"));

    let reply = get(&client(), &format!("{}/json", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), serde_json::json!({"maintenance": true}));
    assert_eq!(reply.header("retry-after"), None);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_injected_errors_total",
            &[("rule", "limited"), ("status", "429")]
        ),
        1.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_change_the_request_upstream_and_the_response_downstream() {
    let faults = r#"
[[faults]]
name = "req-headers"
kind = "headers"
target = "request"
add = { "x-added" = "yes" }
set = { "x-replaced" = "new" }
remove = ["x-secret"]

[[faults]]
name = "resp-headers"
kind = "headers"
target = "response"
add = { "x-chaos" = "1" }
set = { "cache-control" = "no-store" }
remove = ["content-type"]
"#;
    let (up, proxy) = setup(10, faults, vec![]).await;
    let reply = get(
        &client(),
        &format!("{}/api/echo", proxy.url()),
        &[
            ("x-replaced", "old"),
            ("x-secret", "hunter2"),
            ("x-traceforge-fault", "error:500"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-added"], "yes");
    assert_eq!(seen["x-replaced"], "new");
    assert!(seen.get("x-secret").is_none(), "{seen}");
    assert!(
        seen.get("x-traceforge-fault").is_none(),
        "the control header reached the upstream: {seen}"
    );
    assert_eq!(reply.header("x-chaos"), Some("1"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("content-type"), None);
    assert_eq!(
        reply.header("x-traceforge-fault"),
        Some("req-headers, resp-headers")
    );
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_header_rewrites_total",
            &[("rule", "req-headers"), ("target", "request")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_header_rewrites_total",
            &[("rule", "resp-headers"), ("target", "response")]
        ),
        1.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_rule_replaces_the_status_and_keeps_headers_and_body() {
    let faults = "[[faults]]\nname = \"lie\"\nkind = \"status\"\nstatus = 500\nmatch = { path = \"/api/*\" }";
    let (up, proxy) = setup(11, faults, vec![]).await;
    let reply = get(&client(), &format!("{}/api/resource", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json()["message"],
        "hello from the TraceForge demo upstream"
    );
    assert_eq!(reply.header("x-traceforge-fault"), Some("lie"));
    assert_eq!(reply.header("x-fault-injected"), None, "not synthetic");
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_status_rewrites_total",
            &[("rule", "lie"), ("status", "500")]
        ),
        1.0
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- matching ----

/// Whether a request to `path` with `headers` gets the rule (the `x-traceforge-fault` header).
async fn fires(proxy: &Listening, method: Method, path: &str, headers: &[(&str, &str)]) -> bool {
    let reply = crate::support::send(
        &client(),
        method,
        &format!("{}{path}", proxy.url()),
        headers,
        "",
    )
    .await;
    reply.header("x-traceforge-fault").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_conditions_on_headers_query_and_methods_must_all_hold() {
    let faults = r#"
[[faults]]
name = "value"
kind = "status"
status = 299
match = { path = "/v", headers = { "x-user" = "42" } }

[[faults]]
name = "presence"
kind = "status"
status = 299
match = { path = "/p", headers = { "x-canary" = "*" } }

[[faults]]
name = "query"
kind = "status"
status = 299
match = { path = "/q", query = { debug = "1" } }

[[faults]]
name = "methods"
kind = "status"
status = 299
match = { path = "/m", method = ["POST", "PUT"] }

[[faults]]
name = "all"
kind = "status"
status = 299
match = { path = "/all/*", method = "GET", headers = { "x-user" = "42" }, query = { id = "*" } }
"#;
    let (up, proxy) = setup(12, faults, vec![]).await;
    let p = &proxy;
    assert!(fires(p, Method::GET, "/v", &[("x-user", "42")]).await);
    assert!(!fires(p, Method::GET, "/v", &[("x-user", "43")]).await);
    assert!(!fires(p, Method::GET, "/v", &[]).await);
    assert!(fires(p, Method::GET, "/p", &[("x-canary", "anything")]).await);
    assert!(!fires(p, Method::GET, "/p", &[]).await);
    assert!(fires(p, Method::GET, "/q?debug=1", &[]).await);
    assert!(fires(p, Method::GET, "/q?a=b&debug=1", &[]).await);
    assert!(!fires(p, Method::GET, "/q?debug=0", &[]).await);
    assert!(!fires(p, Method::GET, "/q", &[]).await);
    assert!(fires(p, Method::POST, "/m", &[]).await);
    assert!(fires(p, Method::PUT, "/m", &[]).await);
    assert!(!fires(p, Method::GET, "/m", &[]).await);
    let user = [("x-user", "42")];
    assert!(fires(p, Method::GET, "/all/x?id=3", &user).await);
    assert!(
        !fires(p, Method::POST, "/all/x?id=3", &user).await,
        "method"
    );
    assert!(!fires(p, Method::GET, "/all/x", &user).await, "query");
    assert!(!fires(p, Method::GET, "/all/x?id=3", &[]).await, "header");
    assert!(!fires(p, Method::GET, "/other?id=3", &user).await, "path");
    proxy.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probability_decisions_are_per_request_and_exactly_those_of_the_plan() {
    let faults = r#"
[[faults]]
name = "coin"
kind = "error"
status = 500
probability = 0.3
"#;
    let seed = 13;
    let (up, proxy) = setup(seed, faults, vec![]).await;
    let expected_plan = plan(seed, faults);
    let c = client();
    let mut fired = 0;
    for i in 0..120u64 {
        let id = format!("req-{i}");
        let index = i.to_string();
        let reply = get(
            &c,
            &format!("{}/api/resource", proxy.url()),
            &[("x-request-id", &id), ("x-traceforge-index", &index)],
        )
        .await;
        let mut facts = RequestFacts::new(&Method::GET, "/api/resource", &id);
        facts.index = i;
        let expected = expected_plan.decide(&facts);
        let got = reply.header("x-traceforge-fault").is_some();
        assert_eq!(got, !expected.is_empty(), "request {id}");
        assert_eq!(got, reply.status == StatusCode::INTERNAL_SERVER_ERROR);
        fired += usize::from(got);
    }
    assert!((15..=60).contains(&fired), "{fired} of 120 at p=0.3");
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- deterministic patterns, with the load generator ----

/// Plays a scenario's load through a proxy with its faults (ranks from its load profile) in front
/// of its demo upstream; returns the outcomes in index order.
async fn play_scenario(text: &str) -> Vec<Outcome> {
    let scenario = traceforge::parse_str("test.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let up = demo_upstream(scenario.upstream.routes.clone()).await;
    let proxy = traceforge::proxy::spawn(
        loopback(),
        traceforge::proxy::ProxyOptions {
            upstream: up.url().parse().unwrap_or_else(|e| panic!("{e}")),
            plan: Arc::new(scenario.fault_plan()),
            config: scenario.proxy.clone(),
            calls: None,
            observer: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions::new("");
    let load = LoadOptions {
        base: proxy.url().parse().unwrap_or_else(|e| panic!("{e}")),
        seed: scenario.seed,
        load: scenario.load.clone(),
        tls: None,
        calls: None,
    };
    let mut outcomes = Vec::new();
    bounded(runner::play_load(load, &options, |o| {
        outcomes.push(o.clone())
    }))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_settled(&proxy).await;
    proxy.shutdown().await;
    up.shutdown().await;
    outcomes.sort_by_key(|o| o.index);
    outcomes
}

/// The indices whose first attempt got `rule`.
fn faulted(outcomes: &[Outcome], rule: &str) -> Vec<u64> {
    outcomes
        .iter()
        .filter(|o| o.attempts[0].faults.iter().any(|f| f == rule))
        .map(|o| o.index)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_every_and_after_count_matching_requests_by_index() {
    let text = r#"
name = "patterns"
seed = 14

[[faults]]
name = "first-5"
kind = "status"
status = 201
first = 5

[[faults]]
name = "every-4"
kind = "headers"
target = "response"
add = { "x-every" = "1" }
every = 4

[[faults]]
name = "after-17"
kind = "headers"
target = "response"
add = { "x-after" = "1" }
after = 17

[load]
requests = 20
concurrency = 8
targets = [{ path = "/api/resource" }]
"#;
    let outcomes = play_scenario(text).await;
    assert_eq!(outcomes.len(), 20);
    assert_eq!(faulted(&outcomes, "first-5"), [0, 1, 2, 3, 4]);
    assert_eq!(faulted(&outcomes, "every-4"), [0, 4, 8, 12, 16]);
    assert_eq!(faulted(&outcomes, "after-17"), [17, 18, 19]);
    for o in &outcomes {
        let want = if o.index < 5 { 201 } else { 200 };
        assert_eq!(o.status, Some(want), "{o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_counts_only_requests_that_match_the_rule() {
    let text = r#"
name = "first-matching"
seed = 15

[[faults]]
name = "first-api"
kind = "error"
status = 503
first = 3
match = { path = "/api/*" }

[load]
requests = 30
concurrency = 6
targets = [{ path = "/api/resource" }, { path = "/" }]
"#;
    let outcomes = play_scenario(text).await;
    let api: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.path.starts_with("/api/"))
        .map(|o| o.index)
        .collect();
    assert_eq!(faulted(&outcomes, "first-api"), api[..3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_1_fails_every_request_once_and_its_retry_succeeds() {
    let text = r#"
name = "fail-once"
seed = 16

[[faults]]
name = "once"
kind = "error"
status = 503
attempts = 1

[load]
requests = 25
concurrency = 5
retries = 2
retry_backoff = "1ms"
targets = [{ path = "/api/resource" }]
"#;
    let outcomes = play_scenario(text).await;
    for o in &outcomes {
        let results: Vec<Option<u16>> = o.attempts.iter().map(|a| a.status).collect();
        assert_eq!(results, [Some(503), Some(200)], "{o:?}");
        assert_eq!(o.attempts[0].faults, ["once"]);
        assert!(o.attempts[1].faults.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_windows_fault_exactly_the_requests_in_them() {
    let text = r#"
name = "window"
seed = 17

[[faults]]
name = "outage"
kind = "drop"
from_request = 10
until_request = 20

[load]
requests = 30
concurrency = 7
targets = [{ path = "/api/resource" }]
"#;
    let outcomes = play_scenario(text).await;
    assert_eq!(faulted(&outcomes, "outage"), (10..20).collect::<Vec<u64>>());
    for o in &outcomes {
        let want = if (10..20).contains(&o.index) {
            503
        } else {
            200
        };
        assert_eq!(o.status, Some(want));
    }
}

// ---- time windows ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_window_faults_requests_inside_it_and_none_after() {
    let faults = r#"
[[faults]]
name = "blip"
kind = "error"
status = 503
from = "300ms"
until = "800ms"
"#;
    let up = demo_upstream(vec![]).await;
    // The proxy's clock starts while it is spawned, between these two instants.
    let before = Instant::now();
    let proxy = start_proxy(&up.url(), plan(18, faults), ProxyConfig::default()).await;
    let spawned = before.elapsed();
    let margin = Duration::from_millis(40);
    let c = client();
    let (mut early, mut inside, mut late) = (0, 0, 0);
    while before.elapsed() < Duration::from_millis(1300) {
        let sent = before.elapsed();
        let reply = get(&c, &format!("{}/api/resource", proxy.url()), &[]).await;
        let done = before.elapsed();
        let faulted = reply.status == StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(faulted, reply.header("x-traceforge-fault") == Some("blip"));
        // The proxy decided at an elapsed time within [sent - spawned, done].
        let earliest = sent.saturating_sub(spawned);
        if done + margin < Duration::from_millis(300) {
            assert!(!faulted, "faulted before the window: sent at {sent:?}");
            early += 1;
        } else if earliest >= Duration::from_millis(300) + margin
            && done + margin < Duration::from_millis(800)
        {
            assert!(faulted, "not faulted inside the window: sent at {sent:?}");
            inside += 1;
        } else if earliest >= Duration::from_millis(800) + margin {
            assert!(!faulted, "faulted after the window: sent at {sent:?}");
            late += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        early > 0 && inside > 0 && late > 0,
        "{early} {inside} {late}"
    );
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- max_active ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_1_delays_one_request_at_a_time() {
    let faults = r#"
[[faults]]
name = "slow"
kind = "delay"
delay = "1s"
max_active = 1
"#;
    let (up, proxy) = setup(19, faults, vec![]).await;
    let url = format!("{}/api/resource", proxy.url());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let url = url.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let reply = get(&client(), &url, &[]).await;
            (
                reply.header("x-traceforge-fault").is_some(),
                started.elapsed(),
            )
        });
    }
    let mut delayed = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (fired, took) = result.unwrap_or_else(|e| panic!("{e}"));
        if fired {
            assert!(took >= Duration::from_secs(1));
            delayed.push(took);
        }
    }
    assert_eq!(delayed.len(), 1, "{delayed:?}");
    // Once the slot is free, the next request gets the fault again.
    let started = Instant::now();
    let reply = get(&client(), &url, &[]).await;
    assert_eq!(reply.header("x-traceforge-fault"), Some("slow"));
    assert!(started.elapsed() >= Duration::from_secs(1));
    proxy.shutdown().await;
    up.shutdown().await;
}

// ---- header-controlled faults ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_header_applies_to_its_request_only_when_enabled() {
    let up = demo_upstream(vec![]).await;
    let seed = 20;
    let on = ProxyConfig {
        header_faults: true,
        ..ProxyConfig::default()
    };
    let plan_on = FaultPlan::new(seed, Vec::new());
    let proxy = start_proxy(&up.url(), plan_on, on).await;
    let c = client();
    let echo = format!("{}/api/echo", proxy.url());

    let reply = get(&c, &echo, &[("x-traceforge-fault", "error:418")]).await;
    assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(reply.header("x-traceforge-fault"), Some("header"));
    assert_eq!(reply.header("x-fault-injected"), Some("header"));
    // Only that request: the next one, without the header, passes.
    let reply = get(&c, &echo, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-traceforge-fault"), None);
    // A forwarded header fault: applied, and the header still never reaches the upstream.
    let started = Instant::now();
    let reply = get(&c, &echo, &[("x-traceforge-fault", "delay:100ms")]).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(reply.header("x-traceforge-fault"), Some("header"));
    assert!(reply.json()["headers"].get("x-traceforge-fault").is_none());
    // A malformed one is ignored and explained.
    let reply = get(&c, &echo, &[("x-traceforge-fault", "explode:now")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("x-traceforge-fault-error").is_some());
    assert!(reply.json()["headers"].get("x-traceforge-fault").is_none());
    let m = assert_settled(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_faults_total",
            &[("rule", "header"), ("kind", "error")]
        ),
        1.0
    );
    proxy.shutdown().await;

    // Off (the default): the header does nothing and never reaches the upstream.
    let proxy = start_proxy(
        &up.url(),
        FaultPlan::new(seed, Vec::new()),
        ProxyConfig::default(),
    )
    .await;
    let reply = get(
        &c,
        &format!("{}/api/echo", proxy.url()),
        &[("x-traceforge-fault", "error:418")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-traceforge-fault"), None);
    assert!(reply.json()["headers"].get("x-traceforge-fault").is_none());
    proxy.shutdown().await;
    up.shutdown().await;
}
