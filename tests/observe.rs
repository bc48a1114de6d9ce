//! The proxy's request log over real sockets: one line per request with what the proxy did,
//! the same ids run after run and at any concurrency, rotation, a full disk that drops lines but
//! no request, and the errors of a log that cannot be written or is asked for wrongly.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use hyper::{Method, Uri};
use traceforge::observe::{LogTarget, Outputs, Rotation};
use traceforge::proxy::{self, ProxyOptions};
use traceforge::scenario::ProxyConfig;
use traceforge::server::Listening;

use crate::proxy::{demo_upstream, plan};
use crate::support::{self, bounded, client, eventually, get, loopback, send};

/// A proxy in front of `upstream` with `faults`, logging to `target`.
async fn logged_proxy(upstream: &str, faults: &str, target: &LogTarget) -> (Listening, Outputs) {
    let plan = plan(7, faults);
    let mut outputs =
        Outputs::open(7, [target]).unwrap_or_else(|(path, e)| panic!("{}: {e}", path.display()));
    let proxy = proxy::spawn(
        loopback(),
        ProxyOptions {
            upstream: upstream.parse::<Uri>().unwrap_or_else(|e| panic!("{e}")),
            plan: Arc::new(plan),
            config: ProxyConfig::default(),
            calls: None,
            observer: outputs.observer(Some(target), None).unwrap(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("spawn proxy: {e}"));
    (proxy, outputs)
}

/// Every line of a request log, parsed (each must be one JSON object).
fn lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn by_request<'a>(lines: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    let found: Vec<_> = lines.iter().filter(|l| l["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "one line for {id} in {lines:#?}");
    found[0]
}

const FAULTS: &str = r#"
[[faults]]
name = "slow"
kind = "delay"
delay = "5ms"
match = { path = "/api/fail" }
[[faults]]
name = "fail"
kind = "error"
status = 503
match = { path = "/api/fail" }

[[faults]]
name = "cut"
kind = "truncate"
after_bytes = 100
match = { path = "/api/bytes/*" }

[[faults]]
name = "boom"
kind = "reset"
match = { path = "/api/reset" }
"#;

#[tokio::test]
async fn each_request_gets_one_line_with_what_the_proxy_did() {
    let dir = tempfile::tempdir().unwrap();
    let target = LogTarget {
        path: dir.path().join("logs/requests.jsonl"),
        rotation: Rotation::Never,
    };
    let upstream = demo_upstream(Vec::new()).await;
    let (proxy, outputs) = logged_proxy(&upstream.url(), FAULTS, &target).await;
    let http = client();
    let base = proxy.url();

    let ok_reply = get(
        &http,
        &format!("{base}/api/resource?page=2"),
        &[("x-request-id", "ok-1"), ("x-trace-id", "trace-ok")],
    )
    .await;
    assert_eq!(ok_reply.status, 200);
    let upload = "u".repeat(1000);
    let echoed = send(
        &http,
        Method::POST,
        &format!("{base}/api/echo"),
        &[("x-request-id", "post-1")],
        &upload,
    )
    .await;
    assert_eq!(echoed.status, 200);
    let failed = get(
        &http,
        &format!("{base}/api/fail"),
        &[("x-request-id", "fail-1")],
    )
    .await;
    assert_eq!(failed.status, 503);
    // A cut body and a reset: the client sees a broken exchange, the log says what happened.
    for (path, id) in [("/api/bytes/5000", "cut-1"), ("/api/reset", "reset-1")] {
        let request = hyper::Request::get(format!("{base}{path}"))
            .header("x-request-id", id)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let broken = bounded(async {
            match http.request(request).await {
                Ok(response) => http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        assert!(broken.is_err(), "{path}: the exchange breaks");
    }
    proxy.shutdown().await;
    upstream.shutdown().await;
    let closed = outputs.close().await;
    assert_eq!(closed.log_lines_dropped, vec![(target.path.clone(), 0)]);

    let lines = lines(&target.path);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let ok = by_request(&lines, "ok-1");
    assert_eq!(ok["trace_id"], "trace-ok");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/api/resource?page=2");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["outcome"], "forwarded");
    assert_eq!(ok["error"], serde_json::Value::Null);
    assert_eq!(ok["faults"], serde_json::json!([]));
    assert_eq!(ok["bytes_in"], 0);
    assert_eq!(ok["bytes_out"].as_u64(), Some(ok_reply.body.len() as u64));
    assert!(
        humantime::parse_rfc3339(ok["time"].as_str().unwrap()).is_ok(),
        "{ok}"
    );
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0, "{ok}");
    assert_eq!(ok["span_id"].as_str().unwrap().len(), 16, "{ok}");
    assert!(
        ok.get("proxy").is_none(),
        "the lone proxy has no name: {ok}"
    );

    let post = by_request(&lines, "post-1");
    assert_eq!(post["bytes_in"], 1000, "{post}");
    assert_eq!(
        post["bytes_out"].as_u64(),
        Some(echoed.body.len() as u64),
        "{post}"
    );

    let fail = by_request(&lines, "fail-1");
    assert_eq!(fail["status"], 503);
    assert_eq!(fail["outcome"], "injected_error");
    assert_eq!(
        fail["faults"],
        serde_json::json!([{"rule": "slow", "kind": "delay"}, {"rule": "fail", "kind": "error"}]),
        "firing order, delays first"
    );
    assert_eq!(
        fail["bytes_out"].as_u64(),
        Some(failed.body.len() as u64),
        "{fail}"
    );
    assert!(
        fail["latency_ms"].as_f64().unwrap() >= 5.0,
        "the delay is in the latency: {fail}"
    );

    let cut = by_request(&lines, "cut-1");
    assert_eq!(cut["status"], 200);
    assert_eq!(
        cut["faults"],
        serde_json::json!([{"rule": "cut", "kind": "truncate"}])
    );
    assert_eq!(
        cut["bytes_out"], 100,
        "only what the cut let through: {cut}"
    );

    let reset = by_request(&lines, "reset-1");
    assert_eq!(reset["status"], serde_json::Value::Null, "{reset}");
    assert_eq!(reset["outcome"], "reset");
    assert_eq!(reset["error"], "reset");
    assert_eq!(reset["bytes_out"], 0);
}

/// What identifies each request in a log, sorted: ids, status and the rules that fired.
fn fingerprint(path: &Path) -> BTreeSet<String> {
    lines(path)
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {} {} {}",
                l["request_id"], l["trace_id"], l["span_id"], l["path"], l["status"], l["faults"]
            )
        })
        .collect()
}

const FLAKY: &str = r#"
name = "logged"
seed = 11

[[faults]]
name = "flaky"
kind = "error"
status = 503
probability = 0.3

[load]
requests = 60
retries = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_log_has_the_same_ids_run_after_run_and_at_any_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen: Vec<(usize, BTreeSet<String>)> = Vec::new();
    for (run, concurrency) in [1, 16, 16].into_iter().enumerate() {
        let log = dir.path().join(format!("run-{run}.jsonl"));
        let log_set = format!("proxy.log_requests={}", log.display());
        let concurrency_set = format!("load.concurrency={concurrency}");
        let played = support::play_text(FLAKY, &[&log_set, &concurrency_set]).await;
        let attempts: usize = played.outcomes.iter().map(|o| o.attempts.len()).sum();
        let fingerprint = fingerprint(&log);
        assert_eq!(fingerprint.len(), attempts, "one line per attempt");
        seen.push((concurrency, fingerprint));
    }
    let (_, first) = &seen[0];
    assert!(
        first.iter().any(|l| l.contains("flaky")),
        "some requests failed"
    );
    for (concurrency, fingerprint) in &seen[1..] {
        assert_eq!(
            fingerprint, first,
            "the log at concurrency {concurrency} differs"
        );
    }
}

#[tokio::test]
async fn rotation_puts_the_date_before_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    for (rotation, digits) in [(Rotation::Daily, 10), (Rotation::Hourly, 13)] {
        let target = LogTarget {
            path: dir.path().join(rotation.as_str()).join("requests.jsonl"),
            rotation,
        };
        let before = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
        let upstream = demo_upstream(Vec::new()).await;
        let (proxy, outputs) = logged_proxy(&upstream.url(), "", &target).await;
        let reply = get(&client(), &format!("{}/api/resource", proxy.url()), &[]).await;
        assert_eq!(reply.status, 200);
        proxy.shutdown().await;
        outputs.close().await;
        let after = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
        let names: Vec<String> = std::fs::read_dir(target.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // `2026-11-22T14:…` → `2026-11-22` (daily) or `2026-11-22-14` (hourly); a test that
        // straddles the hour may see either side of it.
        let stamp = |t: &str| t[..digits].replace('T', "-");
        let expected: BTreeSet<String> = [&before, &after]
            .iter()
            .map(|t| format!("requests.{}.jsonl", stamp(t)))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            expected.contains(&names[0]),
            "{names:?} not in {expected:?}"
        );
        let path = target.path.parent().unwrap().join(&names[0]);
        assert_eq!(lines(&path).len(), 1);
    }
}

/// `/dev/full` fails every write with ENOSPC: the proxy answers every request anyway, counts each
/// lost line, and says so when it stops.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_disk_drops_lines_and_no_request() {
    use crate::support::ServerProcess;

    let (upstream, hits) = support::counting_upstream().await;
    let mut cmd = support::bin();
    cmd.args([
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--log-requests",
        "/dev/full",
    ]);
    let proxy = ServerProcess::start(cmd);
    let http = client();
    for _ in 0..20 {
        let reply = get(&http, &format!("{}/api/resource", proxy.url), &[]).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 20);
    let metrics_url = format!("{}/metrics", proxy.url);
    eventually("20 lost lines on /metrics", || {
        let http = http.clone();
        let url = metrics_url.clone();
        async move {
            let text = get(&http, &url, &[]).await.text();
            let samples = support::parse_exposition(&text);
            support::metric(&samples, "traceforge_proxy_log_lines_dropped_total", &[]) == 20.0
        }
    })
    .await;
    let stderr = proxy.terminate();
    assert!(
        stderr.contains("the request log /dev/full lost 20 lines"),
        "{stderr}"
    );
}

#[test]
fn a_log_that_cannot_be_written_fails_the_run_and_names_the_file() {
    let out = support::bin()
        .args([
            "run",
            "scenarios/flaky-api.toml",
            "--set",
            "proxy.log_requests=/dev/null/requests.jsonl",
        ])
        .current_dir(support::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("/dev/null/requests.jsonl"),
        "the error names the file: {stderr}"
    );
}

#[test]
fn a_rotation_without_a_log_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rotated.toml");
    std::fs::write(
        &file,
        "name = \"rotated\"\n\n[proxy]\nlog_rotation = \"daily\"\n\n[load]\nrequests = 1\n",
    )
    .unwrap();
    let out = support::bin()
        .args(["validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rotated.toml:4:"),
        "file and line: {stderr}"
    );
    assert!(stderr.contains("log_requests"), "{stderr}");

    let bad =
        "name = \"rotated\"\n\n[proxy]\nlog_requests = \"r.jsonl\"\nlog_rotation = \"weekly\"\n";
    std::fs::write(&file, bad).unwrap();
    let out = support::bin()
        .args(["validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for valid in ["never", "hourly", "daily"] {
        assert!(stderr.contains(valid), "names {valid}: {stderr}");
    }

    let out = support::bin()
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--log-rotation",
            "daily",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--log-requests"), "{stderr}");
}

// ---- Spans: the load generator's and the proxy's, as an OTLP collector receives them ----

use crate::otlp_receiver::{ReceivedSpan, Receiver};

/// OTLP span kinds (the protobuf enum).
const KIND_INTERNAL: i32 = 1;
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;

/// Plays `text` with spans exported to `receiver` and the request log in `log`.
async fn play_traced(
    text: &str,
    receiver: &Receiver,
    log: &Path,
    overrides: &[&str],
) -> traceforge::runner::RunReport {
    let mut all: Vec<traceforge::scenario::Override> = overrides
        .iter()
        .map(|o| o.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    all.push(
        format!("proxy.log_requests={}", log.display())
            .parse()
            .unwrap(),
    );
    let scenario = traceforge::scenario::parse_str("traced.toml", text, &all)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap();
    let options = traceforge::runner::RunOptions {
        otlp: Some(traceforge::observe::otlp::traces_url(&receiver.url()).unwrap()),
        ..traceforge::runner::RunOptions::new(scratch.path()).accepting()
    };
    bounded(traceforge::runner::run(&scenario, &options))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn of(spans: &[ReceivedSpan], service: &str, kind: i32) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.kind == kind)
        .cloned()
        .collect()
}

/// What two runs must agree on: every span's ids, parent, service, kind, name and attributes that
/// do not measure time.
fn span_fingerprint(spans: &[ReceivedSpan]) -> BTreeSet<String> {
    spans
        .iter()
        .map(|s| {
            let mut attributes = s.attributes.clone();
            attributes.remove("http.response.body.size");
            // The servers' ports change from run to run.
            attributes.remove("url.full");
            format!(
                "{} {} {} {} {} {} {:?} {:?}",
                s.service,
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.kind,
                s.name,
                attributes,
                s.events.iter().map(|e| &e.0).collect::<Vec<_>>()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_the_request_log_carry_the_same_ids_on_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (run, concurrency) in [4, 12].into_iter().enumerate() {
        let receiver = Receiver::start().await;
        let log = dir.path().join(format!("run-{run}.jsonl"));
        let concurrency = format!("load.concurrency={concurrency}");
        let report = play_traced(FLAKY, &receiver, &log, &[&concurrency]).await;
        assert!(report.passed(), "{:?}", report.expectations);
        assert!(
            report.warnings.is_empty(),
            "nothing lost: {:?}",
            report.warnings
        );
        // The run waits for its exporters: everything is in once it returns.
        let spans = receiver.spans();
        let lines = lines(&log);
        let attempts = report.summary.attempts as usize;
        let load_roots = of(&spans, "traceforge-load", KIND_INTERNAL);
        let load_attempts = of(&spans, "traceforge-load", KIND_CLIENT);
        let servers = of(&spans, "traceforge-proxy", KIND_SERVER);
        let upstream_calls = of(&spans, "traceforge-proxy", KIND_CLIENT);
        assert_eq!(load_roots.len(), 60, "a root span per request");
        assert_eq!(load_attempts.len(), attempts, "a client span per attempt");
        assert_eq!(servers.len(), attempts, "a server span per attempt");
        assert_eq!(lines.len(), attempts, "a log line per attempt");
        let forwarded = lines.iter().filter(|l| l["outcome"] == "forwarded").count();
        assert_eq!(
            upstream_calls.len(),
            forwarded,
            "a client span per upstream call"
        );

        for line in &lines {
            // The log line and the server span: the same request, the same ids.
            let server = servers
                .iter()
                .find(|s| s.span_id == line["span_id"])
                .unwrap_or_else(|| panic!("no server span for {line}"));
            assert_eq!(server.trace_id, line["trace_id"], "{line}");
            assert_eq!(
                server.attributes["traceforge.request_id"],
                line["request_id"].as_str().unwrap()
            );
            // Its parent is the load generator's attempt, whose parent is the request's root.
            let attempt = load_attempts
                .iter()
                .find(|s| s.span_id == server.parent_span_id)
                .unwrap_or_else(|| panic!("no load span is the parent of {server:?}"));
            assert_eq!(server.parent_is_remote, Some(true));
            assert_eq!(attempt.trace_id, server.trace_id);
            assert!(
                load_roots
                    .iter()
                    .any(|r| r.span_id == attempt.parent_span_id && r.trace_id == attempt.trace_id),
                "{attempt:?}"
            );
            let fired = line["faults"].as_array().unwrap();
            if fired.is_empty() {
                assert!(server.events.is_empty(), "{server:?}");
                let call = upstream_calls
                    .iter()
                    .find(|c| c.parent_span_id == server.span_id)
                    .unwrap_or_else(|| panic!("no upstream call under {server:?}"));
                assert_eq!(call.trace_id, server.trace_id);
                assert_eq!(call.attributes["http.response.status_code"], "200");
            } else {
                assert_eq!(server.events.len(), 1, "{server:?}");
                let (name, attributes) = &server.events[0];
                assert_eq!(name, "fault.injected");
                assert_eq!(attributes["traceforge.fault.rule"], "flaky");
                assert_eq!(attributes["traceforge.fault.kind"], "error");
                assert_eq!(server.attributes["http.response.status_code"], "503");
                assert_eq!(server.status_code, 2, "an error status: {server:?}");
            }
        }
        runs.push((span_fingerprint(&spans), fingerprint(&log)));
    }
    assert_eq!(runs[0].0, runs[1].0, "the same spans on both runs");
    assert_eq!(runs[0].1, runs[1].1, "the same log on both runs");
}

/// `traceforge proxy --otlp`: a caller's `traceparent` is the server span's parent, the upstream
/// gets the proxy's client span as its parent, and SIGTERM sends every span before the exit.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_joins_its_callers_trace_and_passes_its_own_span_upstream() {
    use crate::support::ServerProcess;

    let receiver = Receiver::start().await;
    let (upstream, seen) = support::serve(|_| async { support::respond(200, &[], "ok") }).await;
    let mut cmd = support::bin();
    cmd.args([
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--fault",
        "delay:1ms",
        "--otlp",
        &receiver.url(),
    ]);
    let proxy = ServerProcess::start(cmd);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let http = client();
    for parent in ["00f067aa0ba902b7", "00f067aa0ba902b8", "00f067aa0ba902b9"] {
        let traceparent = format!("00-{trace}-{parent}-01");
        let reply = get(
            &http,
            &format!("{}/api/{parent}", proxy.url),
            &[("traceparent", &traceparent)],
        )
        .await;
        assert_eq!(reply.status, 200);
    }
    let stderr = proxy.terminate();
    assert!(!stderr.contains("warning"), "{stderr}");
    let spans = receiver.spans();
    let servers = of(&spans, "traceforge-proxy", KIND_SERVER);
    let calls = of(&spans, "traceforge-proxy", KIND_CLIENT);
    assert_eq!((servers.len(), calls.len()), (3, 3), "{spans:#?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        let parent = request.path.trim_start_matches("/api/");
        let server = servers
            .iter()
            .find(|s| s.parent_span_id == parent)
            .unwrap_or_else(|| panic!("no server span under {parent}: {servers:#?}"));
        assert_eq!(server.trace_id, trace);
        assert_eq!(server.events[0].0, "fault.injected");
        let call = calls
            .iter()
            .find(|c| c.parent_span_id == server.span_id)
            .unwrap_or_else(|| panic!("no client span under {server:?}"));
        let sent = support::header(&request.headers, "traceparent");
        assert_eq!(
            sent,
            format!("00-{trace}-{}-01", call.span_id),
            "the upstream's parent is the proxy's client span"
        );
        assert!(call.start_unix_nanos >= server.start_unix_nanos);
        assert!(call.end_unix_nanos <= server.end_unix_nanos + 1_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_refuses_spans_costs_a_warning_not_the_run() {
    let receiver = Receiver::start_failing(503).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let report = play_traced(FLAKY, &receiver, &log, &["load.requests=10"]).await;
    assert!(report.passed(), "{:?}", report.expectations);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("traceforge-proxy") && w.contains("were not exported")),
        "{:?}",
        report.warnings
    );
    assert!(!receiver.requests().is_empty(), "the exporter tried");
    assert_eq!(lines(&log).len() as u64, report.summary.attempts);
}

/// Two named proxies in a chain, sharing one log: each line names its proxy, the back proxy's
/// request is the front one's (same trace), and its server span is a child of the front proxy's
/// upstream call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_proxies_share_a_log_and_chain_their_spans() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("proxies.jsonl");
    let text = format!(
        r#"
name = "chain"
seed = 3

[[proxies]]
name = "front"
upstream = {{ url = "{{proxies.back.url}}" }}
log_requests = "{log}"
faults = ["delay:1ms"]

[[proxies]]
name = "back"
log_requests = "{log}"
log_rotation = "never"

[load]
to = "front"
requests = 12
concurrency = 4
"#,
        log = log.display()
    );
    let scenario =
        traceforge::scenario::parse_str("chain.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let receiver = Receiver::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let options = traceforge::runner::RunOptions {
        otlp: Some(traceforge::observe::otlp::traces_url(&receiver.url()).unwrap()),
        ..traceforge::runner::RunOptions::new(scratch.path()).accepting()
    };
    let report = bounded(traceforge::runner::run(&scenario, &options))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.passed(), "{:?}", report.expectations);
    let lines = lines(&log);
    let front: Vec<_> = lines.iter().filter(|l| l["proxy"] == "front").collect();
    let back: Vec<_> = lines.iter().filter(|l| l["proxy"] == "back").collect();
    assert_eq!((front.len(), back.len()), (12, 12), "{lines:#?}");
    let spans = receiver.spans();
    let front_calls = of(&spans, "traceforge-proxy-front", KIND_CLIENT);
    let back_servers = of(&spans, "traceforge-proxy-back", KIND_SERVER);
    assert_eq!((front_calls.len(), back_servers.len()), (12, 12));
    for line in &back {
        let server = back_servers
            .iter()
            .find(|s| s.span_id == line["span_id"])
            .unwrap_or_else(|| panic!("no span for {line}"));
        let call = front_calls
            .iter()
            .find(|c| c.span_id == server.parent_span_id)
            .unwrap_or_else(|| panic!("the back proxy's parent is not a front call: {server:?}"));
        assert_eq!(call.trace_id, server.trace_id);
        assert!(
            front.iter().any(|f| f["trace_id"] == line["trace_id"]),
            "the same trace in both proxies' lines: {line}"
        );
        assert_eq!(server.attributes["traceforge.proxy"], "back");
    }
}

/// On the virtual clock there are no real sockets in the run: spans still leave, from the
/// exporters' own runtime, and their times follow virtual time (an hour of it plays in a second).
#[test]
fn a_virtual_clock_run_exports_its_spans_in_virtual_time() {
    let collector = tokio::runtime::Runtime::new().unwrap();
    let receiver = collector.block_on(Receiver::start());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("virtual.jsonl");
    let text = FLAKY
        .replace("seed = 11\n", "seed = 11\n\n[run]\nclock = \"virtual\"\n")
        .replace("[load]\nrequests = 60", "[load]\nrequests = 60\nrate = 1");
    let log_set: traceforge::scenario::Override = format!("proxy.log_requests={}", log.display())
        .parse()
        .unwrap();
    let scenario = traceforge::scenario::parse_str("virtual.toml", &text, &[log_set])
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap();
    let options = traceforge::runner::RunOptions {
        otlp: Some(traceforge::observe::otlp::traces_url(&receiver.url()).unwrap()),
        ..traceforge::runner::RunOptions::new(scratch.path()).accepting()
    };
    let report = traceforge::play(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.passed(), "{:?}", report.expectations);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let spans = receiver.spans();
    let attempts = report.summary.attempts as usize;
    assert_eq!(of(&spans, "traceforge-proxy", KIND_SERVER).len(), attempts);
    let roots = of(&spans, "traceforge-load", KIND_INTERNAL);
    assert_eq!(roots.len(), 60);
    let first = roots.iter().map(|s| s.start_unix_nanos).min().unwrap();
    let last = roots.iter().map(|s| s.start_unix_nanos).max().unwrap();
    // 60 requests at one a second: the last starts 59 virtual seconds after the first.
    assert_eq!(last - first, 59_000_000_000, "{first} {last}");
    assert_eq!(lines(&log).len(), attempts);
}
