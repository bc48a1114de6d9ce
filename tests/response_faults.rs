//! Rules conditioned on the upstream's response (`match.response_status`,
//! `match.response_header`) over real sockets: a real upstream answers 200 on some paths and
//! 5xx (with headers) on others, and each rule must act on exactly the answers it names, after
//! they arrive: rewrite, delay, cut, replace, reset; with probability and `first` still applied
//! and its steps listed after the request's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use tokio::time::Instant;
use traceforge::scenario::ProxyConfig;
use traceforge::server::Listening;

use crate::proxy::{plan, scrape, start_proxy};
use crate::support::{Seen, client, get, header, metric, respond, serve};

/// A 1000-byte 503 body, for cuts.
fn big_body() -> String {
    "0123456789".repeat(100)
}

/// The upstream: `/ok` 200, `/down` 503 (`x-cache: miss`), `/broken` 500 (`x-origin: legacy`),
/// `/missing` 404, `/big-down` a 503 of 1000 bytes.
async fn upstream() -> (Listening, Arc<Mutex<Vec<Seen>>>) {
    serve(|seen: Seen| async move {
        match seen.path.as_str() {
            "/ok" => respond(200, &[("content-type", "text/plain")], "fine"),
            "/down" => respond(503, &[("x-cache", "miss")], "down for maintenance"),
            "/broken" => respond(500, &[("x-origin", "legacy")], "broken"),
            "/big-down" => respond(503, &[], &big_body()),
            _ => respond(404, &[], "no such thing"),
        }
    })
    .await
}

/// The upstream and a proxy in front of it with `faults` (TOML).
async fn setup(faults: &str) -> (Listening, Listening, Arc<Mutex<Vec<Seen>>>) {
    let (up, seen) = upstream().await;
    let proxy = start_proxy(&up.url(), plan(5, faults), ProxyConfig::default()).await;
    (up, proxy, seen)
}

fn hits(seen: &Mutex<Vec<Seen>>, path: &str) -> usize {
    seen.lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter(|s| s.path == path)
        .count()
}

/// Sends a raw `GET path` on a fresh connection and reads until the proxy closes or resets it.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (Vec<u8>, Option<std::io::Error>) {
    crate::faults::raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_class_rewrite_hits_only_the_upstreams_5xx_answers() {
    let faults = r#"
[[faults]]
name = "to-502"
kind = "status"
status = 502
match = { response_status = "5xx" }
"#;
    let (_up, proxy, _seen) = setup(faults).await;
    let c = client();
    let base = proxy.url();

    let ok = get(&c, &format!("{base}/ok"), &[]).await;
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "fine"));
    assert_eq!(ok.header("x-traceforge-fault"), None);

    // The upstream's own 5xx become 502, their bodies and headers kept.
    let down = get(&c, &format!("{base}/down"), &[]).await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    assert_eq!(down.text(), "down for maintenance");
    assert_eq!(down.header("x-cache"), Some("miss"));
    assert_eq!(down.header("x-traceforge-fault"), Some("to-502"));
    assert_eq!(down.header("x-traceforge-fault-kind"), Some("status"));
    let broken = get(&c, &format!("{base}/broken"), &[]).await;
    assert_eq!(
        (broken.status, broken.text().as_str()),
        (StatusCode::BAD_GATEWAY, "broken")
    );

    let missing = get(&c, &format!("{base}/missing"), &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("x-traceforge-fault"), None);

    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_faults_total",
            &[("rule", "to-502"), ("kind", "status")]
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_and_mixed_lists_match_exactly_their_statuses() {
    let faults = r#"
[[faults]]
name = "listed"
kind = "status"
status = 504
match = { response_status = [500, 503] }

[[faults]]
name = "mixed"
kind = "headers"
target = "response"
set = { "x-mixed" = "1" }
match = { response_status = [404, "5XX"] }
"#;
    let (_up, proxy, _seen) = setup(faults).await;
    let c = client();
    let base = proxy.url();
    for (path, status, fired) in [
        ("/ok", 200, None),
        ("/down", 504, Some("listed, mixed")),
        ("/broken", 504, Some("listed, mixed")),
        ("/missing", 404, Some("mixed")),
    ] {
        let reply = get(&c, &format!("{base}{path}"), &[]).await;
        assert_eq!(reply.status.as_u16(), status, "{path}");
        assert_eq!(reply.header("x-traceforge-fault"), fired, "{path}");
        assert_eq!(
            reply.header("x-mixed").is_some(),
            fired.is_some(),
            "{path}: the mixed list"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_conditions_match_the_upstreams_response_headers() {
    let faults = r#"
[[faults]]
name = "legacy"
kind = "headers"
target = "response"
set = { "x-legacy-seen" = "1" }
match = { response_header = { "X-Origin" = "legacy" } }

[[faults]]
name = "any-cache"
kind = "status"
status = 599
match = { response_header = { "x-cache" = "*" } }
"#;
    let (_up, proxy, _seen) = setup(faults).await;
    let c = client();
    let base = proxy.url();

    let broken = get(&c, &format!("{base}/broken"), &[]).await;
    assert_eq!(broken.status.as_u16(), 500);
    assert_eq!(broken.header("x-legacy-seen"), Some("1"));
    assert_eq!(broken.header("x-traceforge-fault"), Some("legacy"));

    let down = get(&c, &format!("{base}/down"), &[]).await;
    assert_eq!(down.status.as_u16(), 599);
    assert_eq!(down.header("x-legacy-seen"), None);

    let ok = get(&c, &format!("{base}/ok"), &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-traceforge-fault"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_delay_holds_only_the_matching_responses() {
    let delay = Duration::from_millis(400);
    let faults = r#"
[[faults]]
name = "slow-errors"
kind = "delay"
delay = "400ms"
match = { response_status = "5xx" }
"#;
    let (_up, proxy, seen) = setup(faults).await;
    let c = client();
    let base = proxy.url();

    // Warm the connections so the comparison is the delay's, not a handshake's.
    get(&c, &format!("{base}/missing"), &[]).await;

    let started = Instant::now();
    let ok = get(&c, &format!("{base}/ok"), &[]).await;
    let ok_took = started.elapsed();
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok_took < delay, "an unmatched answer took {ok_took:?}");

    let started = Instant::now();
    let down = get(&c, &format!("{base}/down"), &[]).await;
    let down_took = started.elapsed();
    assert_eq!(down.status.as_u16(), 503);
    assert_eq!(down.header("x-traceforge-fault-kind"), Some("delay"));
    assert!(down_took >= delay, "a matched answer took {down_took:?}");
    assert!(
        down_took < delay * 10,
        "a matched answer took {down_took:?}"
    );
    // The request went upstream at once: the hold is on the response.
    let entry = seen
        .lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .find(|s| s.path == "/down")
        .map(|s| s.at)
        .unwrap_or_else(|| panic!("the upstream never saw /down"));
    let reached = entry.duration_since(started.into_std());
    assert!(
        reached < delay,
        "the request reached the upstream after {reached:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_cuts_a_matching_body_and_leaves_the_others_whole() {
    let faults = r#"
[[faults]]
name = "cut-errors"
kind = "truncate"
after_bytes = 10
match = { response_status = 503 }
"#;
    let (_up, proxy, _seen) = setup(faults).await;

    let (bytes, _) = raw_get(proxy.addr, "/big-down").await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text:?}"));
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    assert!(head.contains("cut-errors"), "{head}");
    assert_eq!(body, &big_body()[..10]);

    let ok = get(&client(), &format!("{}/ok", proxy.url()), &[]).await;
    assert_eq!(ok.text(), "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_replaces_the_upstreams_answer() {
    let faults = r#"
[[faults]]
name = "mask"
kind = "error"
status = 500
body = "masked by the proxy"
match = { response_status = 503, path = "/down" }
"#;
    let (_up, proxy, seen) = setup(faults).await;
    let c = client();
    let reply = get(&c, &format!("{}/down", proxy.url()), &[]).await;
    assert_eq!(reply.status.as_u16(), 500);
    assert_eq!(reply.text(), "masked by the proxy");
    assert_eq!(reply.header("x-fault-injected"), Some("mask"));
    assert_eq!(reply.header("x-traceforge-fault"), Some("mask"));
    assert_eq!(
        reply.header("x-cache"),
        None,
        "nothing of the upstream's answer"
    );
    // Unlike a request rule, it let the request through first.
    assert_eq!(hits(&seen, "/down"), 1);
    // The request condition holds too: another 503 path is not masked.
    let big = get(&c, &format!("{}/big-down", proxy.url()), &[]).await;
    assert_eq!(big.status.as_u16(), 503);
    assert_eq!(big.text(), big_body());

    let m = scrape(&proxy).await;
    assert_eq!(
        metric(&m, "traceforge_proxy_injected_errors_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_replaces_a_matching_response_with_a_closed_connection() {
    let faults = r#"
[[faults]]
name = "rst-on-500"
kind = "reset"
match = { response_status = 500 }
"#;
    let (_up, proxy, seen) = setup(faults).await;
    let (bytes, error) = raw_get(proxy.addr, "/broken").await;
    assert!(
        bytes.is_empty(),
        "got bytes: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    match error {
        Some(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        None if cfg!(target_os = "linux") => panic!("a clean EOF instead of a reset"),
        None => {}
    }
    assert_eq!(hits(&seen, "/broken"), 1);
    let down = get(&client(), &format!("{}/down", proxy.url()), &[]).await;
    assert_eq!(down.status.as_u16(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_garbage_and_corrupt_act_on_matching_responses_only() {
    let faults = r#"
[[faults]]
name = "vanish-on-503"
kind = "empty"
match = { path = "/down", response_status = 503 }

[[faults]]
name = "noise-on-500"
kind = "garbage"
size = 300
match = { response_status = 500 }

[[faults]]
name = "flip-on-503"
kind = "corrupt"
rate = 1.0
match = { path = "/big-down", response_status = "5xx" }
"#;
    let (_up, proxy, seen) = setup(faults).await;
    // `empty`: the upstream answered, and the client gets a clean close with nothing at all.
    let (bytes, error) = raw_get(proxy.addr, "/down").await;
    assert!(bytes.is_empty() && error.is_none(), "{bytes:?} {error:?}");
    assert_eq!(hits(&seen, "/down"), 1);
    // `garbage`: exactly `size` bytes that are not an HTTP response, then the close.
    let (bytes, _) = raw_get(proxy.addr, "/broken").await;
    assert_eq!(bytes.len(), 300);
    assert!(!bytes.starts_with(b"HTTP/"));
    assert_eq!(hits(&seen, "/broken"), 1);
    // `corrupt` at rate 1: every byte of the upstream's 503 body differs, its length kept.
    let big = get(&client(), &format!("{}/big-down", proxy.url()), &[]).await;
    assert_eq!(big.status.as_u16(), 503);
    assert_eq!(header(&big.headers, "x-traceforge-fault"), "flip-on-503");
    let original = big_body();
    assert_eq!(big.body.len(), original.len());
    assert!(
        big.body
            .iter()
            .zip(original.as_bytes())
            .all(|(a, b)| a != b)
    );
    // A 200 meets none of them.
    let ok = get(&client(), &format!("{}/ok", proxy.url()), &[]).await;
    assert_eq!((ok.status.as_u16(), &ok.body[..]), (200, &b"fine"[..]));
}

/// Which of `n` requests (index and request id given) to `path` the proxy's rules changed.
async fn fired_indices(proxy: &Listening, path: &str, n: u64) -> Vec<u64> {
    let c = client();
    let mut fired = Vec::new();
    for i in 0..n {
        let index = i.to_string();
        let id = format!("req-{i}");
        let reply = get(
            &c,
            &format!("{}{path}", proxy.url()),
            &[("x-traceforge-index", &index), ("x-request-id", &id)],
        )
        .await;
        if reply.header("x-traceforge-fault").is_some() {
            fired.push(i);
        }
    }
    fired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probability_and_first_still_apply_to_response_rules() {
    let faults = r#"
[[faults]]
name = "first-two"
kind = "status"
status = 502
first = 2
match = { response_status = 503, path = "/down" }

[[faults]]
name = "coin"
kind = "status"
status = 599
probability = 0.5
match = { response_status = 500 }
"#;
    let (up, proxy, _seen) = setup(faults).await;
    // `first` counts by request index: the first two requests, then never again.
    assert_eq!(fired_indices(&proxy, "/down", 6).await, [0, 1]);

    // The roll is drawn from the seed, the rule and the request id: the same ones fire on
    // another proxy with the same seed, and about half do.
    let once = fired_indices(&proxy, "/broken", 40).await;
    let other = start_proxy(&up.url(), plan(5, faults), ProxyConfig::default()).await;
    let again = fired_indices(&other, "/broken", 40).await;
    assert_eq!(once, again);
    assert!((8..=32).contains(&once.len()), "{once:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fired_rules_list_the_request_steps_then_the_response_steps() {
    // The response rule comes first in the file; it fires after the upstream answers.
    let faults = r#"
[[faults]]
name = "to-502"
kind = "status"
status = 502
match = { response_status = "5xx" }

[[faults]]
name = "slow"
kind = "delay"
delay = "1ms"

[[faults]]
name = "tag"
kind = "headers"
target = "request"
set = { "x-tagged" = "1" }
"#;
    let (_up, proxy, seen) = setup(faults).await;
    let reply = get(&client(), &format!("{}/down", proxy.url()), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        reply.header("x-traceforge-fault"),
        Some("slow, tag, to-502")
    );
    assert_eq!(
        reply.header("x-traceforge-fault-kind"),
        Some("delay, headers, status")
    );
    let tagged = seen
        .lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .any(|s| s.headers.get("x-tagged").is_some());
    assert!(tagged, "the request rules applied to the forwarded request");
}

#[test]
fn a_kind_that_cannot_act_on_a_response_is_a_located_error_naming_the_allowed_kinds() {
    let text =
        "name = \"x\"\n\n[[faults]]\nkind = \"hang\"\nmatch = { response_status = \"5xx\" }\n";
    let error = match traceforge::scenario::parse_str("scenario.toml", text, &[]) {
        Ok(_) => panic!("a hang on the response validated"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(
            "faults[0].kind: a `hang` fault cannot have a condition on the upstream's response"
        ),
        "{error}"
    );
    assert!(error.contains("--> scenario.toml:4:8"), "{error}");
    assert!(
        error.contains(
            "its kind must be `delay`, `status`, `truncate`, `throttle`, `headers`, `corrupt`, `error`, `reset`, `drop`, `empty` or `garbage`"
        ),
        "{error}"
    );

    // A request header rewrite cannot wait for the response either; bad statuses and classes
    // are pointed at.
    for (line, want, at) in [
        (
            "kind = \"headers\"\ntarget = \"request\"\nset = { a = \"1\" }\nmatch = { response_status = 503 }",
            "faults[0].target: the request has gone upstream",
            "scenario.toml:5:10",
        ),
        (
            "kind = \"status\"\nstatus = 500\nmatch = { response_status = [500, 700] }",
            "700 is not an HTTP status: they go from 100 to 599",
            "scenario.toml:6:35",
        ),
        (
            "kind = \"status\"\nstatus = 500\nmatch = { response_status = \"6xx\" }",
            "`6xx` is not a status class",
            "scenario.toml:6:29",
        ),
        (
            "kind = \"status\"\nstatus = 500\nmatch = { response_header = { \"bad name\" = \"1\" } }",
            "`bad name` is not a valid header name",
            "scenario.toml:6:",
        ),
    ] {
        let text = format!("name = \"x\"\n\n[[faults]]\n{line}\n");
        let error = match traceforge::scenario::parse_str("scenario.toml", &text, &[]) {
            Ok(_) => panic!("{line}: validated"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(want), "{line}: {error}");
        assert!(error.contains(at), "{line}: {error}");
    }
}
