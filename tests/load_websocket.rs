//! The load generator's WebSocket targets over real sockets: straight to the demo upstream's
//! `/ws/echo` (every message echoed), through the proxy under `ws_close` and `ws_drop` (the
//! outcome says what became of each message, and which ones `ws_drop` took is exactly what the
//! proxy's seeded decisions say), a refused upgrade retried, `wss://` through a TLS listener, the
//! `traceforge load` flags, the virtual clock, and the shipped scenario's golden body at
//! concurrency 1 and 64, run after run.

use std::path::Path;

use hyper::Method;
use hyper::header::{HeaderMap, HeaderValue};
use traceforge::fault::stream::{Direction, StreamFaults};
use traceforge::fault::{FaultPlan, RequestFacts};
use traceforge::record::{ErrorKind, Outcome, Protocol, WsEnd, WsSession};
use traceforge::runner::{self, RunOptions};
use traceforge::scenario::ProxyConfig;
use traceforge::server::Listening;
use traceforge::tls::ServerCert;

use crate::proxy::{demo_upstream, plan, start_proxy};
use crate::support::{bin, bounded, root};

/// The seed of the load generator's ids in these tests.
const SEED: u64 = 5;

/// Plays `load` against `base` (trusting `ca` for an https base); outcomes in index order.
async fn play(base: &str, load: &str, ca: Option<&Path>) -> Vec<Outcome> {
    crate::load_protocols::play_seeded(SEED, base, load, ca).await
}

/// `n` connections to `/ws/echo` with this `websocket` table, at concurrency 4.
fn echo_load(n: u64, websocket: &str, extra: &str) -> String {
    format!(
        "requests = {n}\nconcurrency = 4\nclient_trace = true\n{extra}\ntargets = [{{ path = \"/ws/echo\", websocket = {websocket} }}]"
    )
}

/// The last attempt's WebSocket session.
fn session(o: &Outcome) -> &WsSession {
    o.attempts
        .last()
        .and_then(|a| a.websocket.as_ref())
        .unwrap_or_else(|| panic!("no WebSocket session in {o:?}"))
}

/// The demo upstream and the proxy in front of it with these `[[faults]]`, seeded with `seed`.
async fn proxied(seed: u64, faults_toml: &str) -> (Listening, Listening, FaultPlan) {
    let up = demo_upstream(vec![]).await;
    let faults = plan(seed, faults_toml);
    let proxy = start_proxy(&up.url(), faults.clone(), ProxyConfig::default()).await;
    (up, proxy, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_comes_back_from_the_demo_upstream() {
    let up = demo_upstream(vec![]).await;
    for (websocket, binary) in [
        ("{ messages = 5 }", false),
        ("{ messages = 3, size = 70000, binary = true }", true),
    ] {
        let outcomes = play(&up.url(), &echo_load(12, websocket, ""), None).await;
        assert_eq!(outcomes.len(), 12);
        for o in &outcomes {
            assert_eq!(o.protocol, Protocol::Ws, "{o:?}");
            assert_eq!((o.status, o.error), (Some(101), None), "{o:?}");
            assert!(o.succeeded(), "{o:?}");
            assert_eq!(o.trace_id, traceforge::seed::trace_id(SEED, o.index));
            let a = &o.attempts[0];
            assert_eq!(a.request_id, traceforge::seed::request_id(SEED, o.index, 0));
            let ws = session(o);
            let n = if binary { 3 } else { 5 };
            assert_eq!((ws.messages, ws.sent, ws.echoed), (n, n, n), "{ws:?}");
            assert_eq!(
                (ws.end, ws.close_code),
                (WsEnd::Closed, Some(1000)),
                "{ws:?}"
            );
            assert!(ws.lost.is_empty() && !ws.closed_by_peer, "{ws:?}");
            assert_eq!(a.bytes, n * if binary { 70_000 } else { 32 });
            assert_eq!(ws.label(), format!("ws {n}/{n} echoed"));
            // The JSON outputs say "ws"; an HTTP/1.1 outcome still says nothing of it.
            let json = serde_json::to_value(o).unwrap_or_default();
            assert_eq!(json["protocol"], "ws", "{json}");
            assert_eq!(json["attempts"][0]["websocket"]["echoed"], n, "{json}");
        }
    }
    let http = play(&up.url(), "requests = 2\nconcurrency = 1", None).await;
    let json = serde_json::to_string(&http[0]).unwrap_or_default();
    assert!(
        !json.contains("protocol") && !json.contains("websocket"),
        "{json}"
    );

    // A route that does not speak WebSocket answers the upgrade with an ordinary status: not a
    // success, and no session.
    let refused = play(
        &up.url(),
        "requests = 2\nconcurrency = 1\ntargets = [{ path = \"/api/resource\", websocket = {} }]",
        None,
    )
    .await;
    for o in &refused {
        assert_eq!((o.status, o.error), (Some(200), None), "{o:?}");
        assert!(!o.succeeded(), "{o:?}");
        assert!(o.attempts[0].websocket.is_none(), "{o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_close_cuts_each_connection_after_the_same_echo() {
    let (_up, proxy, _) = proxied(
        1,
        "[[faults]]\nname = \"cut\"\nkind = \"ws_close\"\nafter_messages = 5\ncode = 1011",
    )
    .await;
    let outcomes = play(&proxy.url(), &echo_load(16, "{ messages = 5 }", ""), None).await;
    assert_eq!(outcomes.len(), 16);
    for o in &outcomes {
        // Five messages passed: m0, its echo, m1, its echo, m2 on its way up; then the close.
        let ws = session(o);
        assert_eq!((o.status, o.error), (Some(101), Some(ErrorKind::WsClosed)));
        assert_eq!(o.attempts[0].faults, ["cut"], "{o:?}");
        assert_eq!(ws.echoed, 2, "{ws:?}");
        assert_eq!(ws.sent, 3, "{ws:?}");
        assert_eq!(
            (ws.end, ws.close_code),
            (WsEnd::Closed, Some(1011)),
            "{ws:?}"
        );
        assert!(ws.closed_by_peer, "{ws:?}");
        assert_eq!(ws.label(), "ws 2/5 echoed, closed 1011");
        assert!(!o.succeeded());
        assert_eq!(o.final_label(), "ws_closed");
    }
    // After all the echoes: a success that shows its close code.
    let (_up, proxy, _) = proxied(
        1,
        "[[faults]]\nname = \"cut\"\nkind = \"ws_close\"\nafter_messages = 6\ncode = 4000",
    )
    .await;
    for o in play(&proxy.url(), &echo_load(8, "{ messages = 3 }", ""), None).await {
        let ws = session(&o);
        assert!(o.succeeded(), "{o:?}");
        assert_eq!(ws.label(), "ws 3/3 echoed, closed 4000");
    }
}

/// The messages of request `index` whose echo the proxy's `ws_drop` decisions take: its message
/// `k` is the client's `k`th; the upstream's echoes are numbered by what reached it.
fn expected_lost(plan: &FaultPlan, index: u64, messages: u64) -> Vec<u64> {
    let id = traceforge::seed::request_id(SEED, index, 0);
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    let mut facts = RequestFacts::new(&Method::GET, "/ws/echo", &id);
    facts.headers = &headers;
    facts.index = index;
    let faults = StreamFaults::new(plan.seed(), &id, &plan.decide(&facts))
        .unwrap_or_else(|| panic!("ws_drop fires for every connection"));
    let mut upstream = 0;
    let mut lost = Vec::new();
    for k in 0..messages {
        if faults.fate(Direction::Client, k).dropped_by.is_some() {
            lost.push(k);
            continue;
        }
        if faults
            .fate(Direction::Upstream, upstream)
            .dropped_by
            .is_some()
        {
            lost.push(k);
        }
        upstream += 1;
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_drop_loses_exactly_the_messages_the_seed_says() {
    let (_up, proxy, faults) = proxied(
        9,
        "[[faults]]\nname = \"lose\"\nkind = \"ws_drop\"\nprobability = 0.3",
    )
    .await;
    let load = echo_load(12, "{ messages = 6, echo_timeout = \"300ms\" }", "");
    let outcomes = play(&proxy.url(), &load, None).await;
    let mut some_lost = false;
    for o in &outcomes {
        let ws = session(o);
        let lost = expected_lost(&faults, o.index, 6);
        assert_eq!(ws.lost, lost, "#{}: {ws:?}", o.index);
        assert_eq!(ws.echoed, 6 - lost.len() as u64, "{ws:?}");
        assert_eq!(ws.sent, 6);
        assert_eq!((ws.end, ws.close_code), (WsEnd::Closed, Some(1000)));
        assert_eq!(o.attempts[0].faults, ["lose"]);
        if lost.is_empty() {
            assert!(o.succeeded(), "{o:?}");
        } else {
            some_lost = true;
            assert_eq!(o.error, Some(ErrorKind::WsMissingEcho), "{o:?}");
            let shown: Vec<String> = lost.iter().map(u64::to_string).collect();
            assert!(
                ws.label().ends_with(&format!(", lost {}", shown.join(" "))),
                "{}",
                ws.label()
            );
        }
    }
    assert!(some_lost, "p=0.3 over 72 round trips lost nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_retried_like_any_5xx() {
    let (_up, proxy, _) = proxied(
        3,
        "[[faults]]\nname = \"refuse\"\nkind = \"error\"\nstatus = 503\nprobability = 0.5\nmatch = { path = \"/ws/*\" }",
    )
    .await;
    let load = echo_load(
        16,
        "{ messages = 2 }",
        "retries = 4\nretry_backoff = \"5ms\"",
    );
    let outcomes = play(&proxy.url(), &load, None).await;
    let mut retried = 0;
    for o in &outcomes {
        let (last, before) = o.attempts.split_last().unwrap_or_else(|| panic!("{o:?}"));
        for a in before {
            assert_eq!(a.status, Some(503), "{o:?}");
            assert_eq!(a.faults, ["refuse"], "{o:?}");
            assert!(a.websocket.is_none());
        }
        retried += usize::from(!before.is_empty());
        // Each attempt is a connection of its own, under its own request id.
        for (attempt, a) in o.attempts.iter().enumerate() {
            let id = traceforge::seed::request_id(SEED, o.index, attempt as u32);
            assert_eq!(a.request_id, id);
        }
        if last.status == Some(101) {
            assert!(o.succeeded(), "{o:?}");
            assert_eq!(session(o).echoed, 2);
        } else {
            assert_eq!(o.attempts.len(), 5, "{o:?}");
        }
    }
    assert!(retried > 0, "no upgrade was refused at p=0.5");

    // Without retries a refused upgrade is the request's result.
    let once = play(&proxy.url(), &echo_load(16, "{ messages = 2 }", ""), None).await;
    assert!(
        once.iter()
            .any(|o| o.status == Some(503) && !o.succeeded() && o.protocol == Protocol::Ws)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_goes_through_a_tls_listener_trusted_by_its_ca() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tls = traceforge::tls::server(&ServerCert::Generate {
        dir: dir.path().to_path_buf(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = tls.ca_file.clone().unwrap_or_else(|| panic!("no CA file"));
    let up = traceforge::upstream::builder()
        .tls(tls)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(up.url().starts_with("https://"));
    // HTTP/2 for the HTTP targets does not change the WebSocket's HTTP/1.1 upgrade.
    let load = echo_load(8, "{ messages = 4 }", "http2 = true");
    for o in play(&up.url(), &load, Some(&ca)).await {
        assert!(o.succeeded(), "{o:?}");
        assert_eq!(o.protocol, Protocol::Ws);
        assert_eq!(session(&o).echoed, 4);
    }
    // Untrusted: no connection.
    for o in play(&up.url(), &echo_load(2, "{}", ""), None).await {
        assert_eq!(o.error, Some(ErrorKind::Connect), "{o:?}");
    }

    // `traceforge load --url wss://...` with the CA file.
    let url = up.url().replacen("https://", "wss://", 1) + "/ws/echo";
    let out = dir.path().join("wss.jsonl");
    let run = load_cli(&[
        "--url",
        &url,
        "--ca",
        &ca.display().to_string(),
        "--n",
        "4",
        "--ws-messages",
        "3",
        "--output",
        &out.display().to_string(),
        "--format",
        "jsonl",
    ])
    .await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(lines.lines().count(), 4);
    for line in lines.lines() {
        let o: Outcome = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(o.succeeded() && session(&o).echoed == 3, "{o:?}");
    }
}

/// `traceforge load` with `args`, off the runtime's threads (the servers it loads run on them).
async fn load_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || bin().arg("load").args(&args).output());
    bounded(run)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceforge_load_takes_ws_urls_and_ws_flags() {
    let up = demo_upstream(vec![]).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("ws://{}/ws/echo", up.addr);
    let csv = dir.path().join("out.csv");
    let args = [
        "--url",
        &url,
        "--n",
        "6",
        "-c",
        "3",
        "--ws-messages",
        "4",
        "--ws-size",
        "16",
        "--ws-binary",
        "--ws-echo-timeout-ms",
        "500",
        "--output",
        &csv.display().to_string(),
        "--format",
        "csv",
    ];
    let run = load_cli(&args).await;
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", text(&run.stderr));
    assert!(stdout.contains("statuses:     101=6"), "{stdout}");
    assert!(stdout.contains("succeeded:    6 (100.0%)"), "{stdout}");
    let mut reader = csv::Reader::from_path(&csv).unwrap_or_else(|e| panic!("{e}"));
    let header: Vec<String> = reader
        .headers()
        .map(|h| h.iter().map(String::from).collect())
        .unwrap_or_default();
    assert_eq!(header, traceforge::record::writer::CSV_HEADER);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap_or(usize::MAX);
    let rows: Vec<csv::StringRecord> = reader.records().filter_map(Result::ok).collect();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert_eq!(&row[column("protocol")], "ws");
        assert_eq!(&row[column("ws_sent")], "4");
        assert_eq!(&row[column("ws_echoed")], "4");
        assert_eq!(&row[column("ws_close_code")], "1000");
        assert_eq!(&row[column("ws_end")], "closed");
        assert_eq!(&row[column("status")], "101");
    }

    // Refusals name the flag and say what would be valid.
    let http = format!("http://{}/ws/echo", up.addr);
    let cases: [(&[&str], &str); 4] = [
        (
            &["--url", &http, "--ws-messages", "3"],
            "--ws-messages: only for a ws:// or wss:// --url",
        ),
        (
            &["--url", &url, "--ws-size", "4"],
            "--ws-size: must be between 8 and 16777216 bytes, found 4",
        ),
        (
            &["--url", &url, "--ws-messages", "100001"],
            "--ws-messages: must be between 0 and 100000, found 100001",
        ),
        (
            &["--url", &url, "--method", "POST"],
            "--method: a WebSocket target opens with a GET, not POST",
        ),
    ];
    for (args, message) in cases {
        let run = load_cli(args).await;
        assert_eq!(run.status.code(), Some(2), "{message}");
        let stderr = text(&run.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

/// A scenario with WebSocket targets and every stream fault, small enough for the tests.
const SCENARIO: &str = r#"name = "ws-test"
seed = 11

[[faults]]
name = "lose"
kind = "ws_drop"
probability = 0.1

[[faults]]
name = "cut"
kind = "ws_close"
after_messages = 7
code = 1011
probability = 0.3

[[faults]]
name = "refuse"
kind = "error"
status = 503
probability = 0.1
match = { path = "/ws/*" }

[load]
requests = 20
concurrency = 4
retries = 2
retry_backoff = "10ms"
client_trace = true
targets = [{ path = "/ws/echo", websocket = { messages = 5, echo_timeout = "300ms" } }]
"#;

/// The golden body of `text` played with `overrides`, on the clock it asks for.
fn body(text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<traceforge::scenario::Override> = overrides
        .iter()
        .map(|o| o.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let scenario = traceforge::scenario::parse_str("ws.toml", text, &overrides)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions::new(scratch.path().to_path_buf()).accepting();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let report =
        runner::play_scenario(&runtime, &scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    report.body.unwrap_or_default()
}

#[test]
fn the_virtual_clock_plays_websockets_with_the_same_results_and_exact_waits() {
    let real = body(SCENARIO, &[]);
    let text = format!("{SCENARIO}\n[run]\nclock = \"virtual\"\n");
    let virtual_body = body(&text, &[]);
    assert!(
        virtual_body.contains("clock:        virtual"),
        "{virtual_body}"
    );
    // The same lines, with each attempt's exact latency: a lost message costs its echo timeout.
    let lines = |b: &str| -> Vec<String> {
        b.lines()
            .filter(|l| l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    let strip = |b: &str| -> Vec<String> {
        lines(b)
            .into_iter()
            .map(|l| {
                l.split(" -> ")
                    .map(|a| a.rsplit_once(' ').map_or(a, |(head, _)| head).to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            })
            .collect()
    };
    assert_eq!(lines(&real).len(), 20);
    assert_eq!(lines(&real), strip(&virtual_body), "{real}\n{virtual_body}");
    for line in virtual_body.lines().filter(|l| l.starts_with('#')) {
        let last = line.rsplit(" -> ").next().unwrap_or_default();
        let ms: u64 = last
            .rsplit_once(' ')
            .and_then(|(_, t)| t.strip_suffix("ms"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no exact latency in {line}"));
        assert_eq!(ms % 300, 0, "{line}");
    }
    assert_eq!(virtual_body, body(&text, &["load.concurrency=1"]));
}

#[test]
fn the_shipped_scenario_is_the_same_at_concurrency_1_and_64_run_after_run() {
    let file = root().join("scenarios/websocket-echo.toml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let golden = std::fs::read_to_string(root().join("golden/websocket-echo.snap"))
        .unwrap_or_else(|e| panic!("{e}"));
    let golden = traceforge::golden::body_of(&golden).trim_end().to_string();
    for concurrency in ["1", "64", "64"] {
        let set = format!("load.concurrency={concurrency}");
        let body = body(&text, &[&set]);
        assert_eq!(body.trim_end(), golden, "at concurrency {concurrency}");
    }
    assert!(golden.contains("closed 1011"), "{golden}");
    assert!(golden.contains(", lost "), "{golden}");
    assert!(golden.contains("503 [refuse-upgrade] -> 101"), "{golden}");
}

/// The rendered error of a scenario whose only target is this WebSocket target.
fn invalid(target: &str) -> String {
    let text = format!("name = \"ws\"\n[load]\ntargets = [{target}]\n");
    match traceforge::parse_str("ws.toml", &text, &[]) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_websocket_targets_are_located_errors_that_say_what_is_valid() {
    let e = invalid("{ path = \"/ws/echo\", websocket = { mesages = 3 } }");
    assert!(
        e.contains("ws.toml:3:47") && e.contains("did you mean `messages`?"),
        "{e}"
    );
    let e = invalid("{ path = \"/ws/echo\", websocket = { size = 4 } }");
    assert!(
        e.contains("load.targets[0].websocket.size: must be between 8 and 16777216 bytes, found 4")
            && e.contains("ws.toml:3:"),
        "{e}"
    );
    let e = invalid("{ path = \"/ws/echo\", method = \"POST\", websocket = {} }");
    assert!(
        e.contains("a WebSocket target opens with a GET, not POST")
            && e.contains("remove `method`"),
        "{e}"
    );
    let e = invalid("{ path = \"/ws/echo\", body = \"x\", websocket = {} }");
    assert!(
        e.contains("a WebSocket target sends no request body"),
        "{e}"
    );
    let e =
        invalid("{ path = \"/ws/echo\", headers = { Sec-WebSocket-Key = \"k\" }, websocket = {} }");
    assert!(
        e.contains("`sec-websocket-key` cannot be set on a WebSocket target"),
        "{e}"
    );
    let e = invalid("{ path = \"/ws/echo\", websocket = { echo_timeout = \"0s\" } }");
    assert!(e.contains("`echo_timeout` must be longer than zero"), "{e}");
    let e = invalid("{ path = \"/ws/echo\", websocket = { messages = 100001 } }");
    assert!(e.contains("must be between 0 and 100000"), "{e}");
}
