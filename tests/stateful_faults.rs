//! Faults that depend on where a request falls in the run: `quota` (429 over a fixed window of
//! requests or time, per header value), ramps of `probability` and `delay`, and `bursts` (fixed
//! and Markov). Through real sockets, or whole runs played in-process (the virtual clock where
//! time matters); each test pins the exact requests affected.

use std::collections::BTreeSet;
use std::time::Duration;

use hyper::StatusCode;
use traceforge::fault::FaultPlan;
use traceforge::record::Outcome;
use traceforge::scenario::ProxyConfig;

use crate::proxy::{demo_upstream, plan, scrape, start_proxy};
use crate::support::{client, get, metric, play_text, root};

/// Plays scenario text on the virtual clock (`[run] clock = "virtual"` in the text); returns the
/// outcomes in index order.
fn play_virtual(text: &str, set: &[&str]) -> Vec<Outcome> {
    let overrides: Vec<traceforge::scenario::Override> = set
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let scenario = traceforge::scenario::parse_str("virtual.toml", text, &overrides)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.clock, traceforge::scenario::Clock::Virtual);
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = scratch.path().join("outcomes.json");
    let options = traceforge::runner::RunOptions {
        output: Some(output.clone()),
        static_dir: Some(root().join("static")),
        ..traceforge::runner::RunOptions::new(scratch.path().to_path_buf()).accepting()
    };
    traceforge::runner::run_virtual(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    let mut outcomes: Vec<Outcome> =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    outcomes.sort_by_key(|o| o.index);
    outcomes
}

/// The indices whose final status is `status`.
fn with_status(outcomes: &[Outcome], status: u16) -> BTreeSet<u64> {
    outcomes
        .iter()
        .filter(|o| o.status == Some(status))
        .map(|o| o.index)
        .collect()
}

/// The indices on which `rule` fired on any attempt.
fn fired(outcomes: &[Outcome], rule: &str) -> BTreeSet<u64> {
    outcomes
        .iter()
        .filter(|o| {
            o.attempts
                .iter()
                .any(|a| a.faults.iter().any(|f| f == rule))
        })
        .map(|o| o.index)
        .collect()
}

// ---- quota ----

const QUOTA_BY_REQUESTS: &str = r#"
name = "quota"
seed = 5

[[faults]]
name = "api-quota"
kind = "quota"
limit = 3
window = 10
match = { path = "/api/*" }

[load]
requests = 100
targets = [{ path = "/api/resource", weight = 2 }, { path = "/static/index.html" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_by_requests_refuses_the_same_requests_at_any_concurrency() {
    let one = play_text(QUOTA_BY_REQUESTS, &["load.concurrency=1"]).await;
    let many = play_text(QUOTA_BY_REQUESTS, &["load.concurrency=64"]).await;
    assert_eq!(one.outcomes.len(), 100);
    // Expected: in each window of 10 indices, the /api requests after the first 3 get a 429.
    let mut expected = BTreeSet::new();
    for window in 0..10u64 {
        let api: Vec<u64> = one
            .outcomes
            .iter()
            .filter(|o| o.index / 10 == window && o.path.starts_with("/api"))
            .map(|o| o.index)
            .collect();
        expected.extend(api.iter().skip(3));
    }
    assert!(expected.len() > 20, "{expected:?}");
    assert_eq!(with_status(&one.outcomes, 429), expected);
    assert_eq!(with_status(&many.outcomes, 429), expected);
    assert_eq!(fired(&many.outcomes, "api-quota"), expected);
    assert_eq!(
        one.report.summary.faults.get("api-quota").copied(),
        Some(expected.len() as u64)
    );
    let kinds: BTreeSet<&str> = many
        .outcomes
        .iter()
        .flat_map(|o| o.attempts.iter())
        .flat_map(|a| a.fault_kinds.iter().map(String::as_str))
        .collect();
    assert_eq!(kinds, BTreeSet::from(["quota"]));
    // Everything else went through.
    assert_eq!(with_status(&many.outcomes, 200).len() + expected.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_says_when_to_retry_and_names_its_rule_and_its_limit() {
    let up = demo_upstream(vec![]).await;
    let faults = r#"
[[faults]]
name = "by-index"
kind = "quota"
limit = 2
window = 5
match = { path = "/" }

[[faults]]
name = "by-index-custom"
kind = "quota"
limit = 1
window = 5
retry_after = "2.5s"
match = { path = "/api/resource" }
"#;
    let proxy = start_proxy(&up.url(), plan(3, faults), ProxyConfig::default()).await;
    let c = client();
    let mut statuses = Vec::new();
    for index in 0..10u64 {
        let i = index.to_string();
        let reply = get(
            &c,
            &format!("{}/", proxy.url()),
            &[("x-traceforge-index", &i)],
        )
        .await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(reply.header("retry-after"), Some("1"), "a request window");
            assert_eq!(reply.header("ratelimit-limit"), Some("2"));
            assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
            assert_eq!(reply.header("ratelimit-reset"), Some("1"));
            assert_eq!(reply.header("x-fault-injected"), Some("by-index"));
            let body = reply.json();
            assert_eq!(body["rule"], "by-index");
            assert_eq!(body["kind"], "quota");
            assert_eq!(body["status"], 429);
        }
    }
    // No load profile: every index counts, two per window of five.
    assert_eq!(statuses, [200, 200, 429, 429, 429, 200, 200, 429, 429, 429]);
    // The same index again (a retry) is over quota again: the index decides.
    let again = get(
        &c,
        &format!("{}/", proxy.url()),
        &[("x-traceforge-index", "3"), ("x-traceforge-attempt", "1")],
    )
    .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    let custom = get(
        &c,
        &format!("{}/api/resource", proxy.url()),
        &[("x-traceforge-index", "1")],
    )
    .await;
    assert_eq!(custom.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(custom.header("retry-after"), Some("3"), "2.5s rounded up");
    let m = scrape(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_injected_errors_total",
            &[("rule", "by-index"), ("status", "429")]
        ),
        7.0
    );
    assert_eq!(
        metric(
            &m,
            "traceforge_proxy_faults_total",
            &[("rule", "by-index"), ("kind", "quota")]
        ),
        7.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_header_quotas_count_each_key_apart() {
    let up = demo_upstream(vec![]).await;
    let faults = r#"
[[faults]]
name = "per-key"
kind = "quota"
limit = 2
window = 1000
per_header = "x-api-key"
"#;
    let proxy = start_proxy(&up.url(), plan(3, faults), ProxyConfig::default()).await;
    let c = client();
    let mut seen = Vec::new();
    for (index, key) in ["a", "a", "b", "a", "", "b", "", "b", "", "a"]
        .into_iter()
        .enumerate()
    {
        let i = index.to_string();
        let mut headers = vec![("x-traceforge-index", i.as_str())];
        if !key.is_empty() {
            headers.push(("x-api-key", key));
        }
        let reply = get(&c, &format!("{}/", proxy.url()), &headers).await;
        seen.push((key, reply.status.as_u16()));
    }
    assert_eq!(
        seen,
        [
            ("a", 200),
            ("a", 200),
            ("b", 200),
            ("a", 429),
            ("", 200),
            ("b", 200),
            ("", 200),
            ("b", 429),
            ("", 429),
            ("a", 429)
        ],
        "two per key, requests without the header sharing one bucket"
    );
    // The next window of 1000 indices starts afresh for every key.
    let next = get(
        &c,
        &format!("{}/", proxy.url()),
        &[("x-traceforge-index", "1000"), ("x-api-key", "a")],
    )
    .await;
    assert_eq!(next.status, StatusCode::OK);
}

const QUOTA_BY_TIME: &str = r#"
name = "quota-time"
seed = 8

[run]
clock = "virtual"

[[faults]]
name = "per-second"
kind = "quota"
limit = 4
window = "1s"

[load]
rate = 10
duration = "3s"
timeout = "5s"
targets = [{ path = "/api/resource" }]
"#;

#[test]
fn a_quota_by_time_lets_the_limit_through_each_window_on_the_virtual_clock() {
    let played = play_virtual(QUOTA_BY_TIME, &[]);
    assert_eq!(played.len(), 30);
    let refused = with_status(&played, 429);
    // Ten requests a second, four let through in each second.
    let expected: BTreeSet<u64> = (0..30).filter(|i| i % 10 >= 4).collect();
    assert_eq!(refused, expected);
    let again = play_virtual(QUOTA_BY_TIME, &[]);
    assert_eq!(with_status(&again, 429), expected);

    // A client that honours `Retry-After` waits until the window ends, rounded up to a second:
    // refused at 0.4s, it comes back at 1.4s.
    let retried = play_virtual(
        QUOTA_BY_TIME,
        &[
            "load.retry.max=1",
            "load.retry.on=[429]",
            "load.retry.backoff=\"10ms\"",
        ],
    );
    let o = &retried[4];
    assert_eq!(o.attempts.len(), 2, "{o:?}");
    assert_eq!(o.attempts[0].status, Some(429));
    assert_eq!(
        o.attempts[1].start - o.attempts[0].start,
        Duration::from_secs(1),
        "{o:?}"
    );
}

// ---- ramps ----

const RAMP: &str = r#"
name = "ramp"
seed = 13

[[faults]]
name = "degrading"
kind = "error"
status = 503
probability = { from = 0.0, to = 1.0, over = 100 }

[load]
requests = 160
concurrency = 64
targets = [{ path = "/api/resource" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probability_ramp_fires_more_and_more_and_only_adds_requests() {
    let ramp = play_text(RAMP, &[]).await;
    let fired = with_status(&ramp.outcomes, 503);
    let quarter = |q: u64| fired.iter().filter(|&&i| i / 25 == q).count();
    let counts: Vec<usize> = (0..4).map(quarter).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]) && counts[0] < counts[3],
        "{counts:?}"
    );
    assert!(counts[0] <= 8, "{counts:?}");
    assert!((100..160).all(|i| fired.contains(&i)), "from `over` on: 1");
    assert!(!fired.contains(&0), "at 0: 0");
    // The roll is the rule's usual draw: against a fixed 0.5, the ramp fires a subset below the
    // midpoint and a superset above it.
    let fixed = play_text(
        &RAMP.replace("{ from = 0.0, to = 1.0, over = 100 }", "0.5"),
        &[],
    )
    .await;
    let half = with_status(&fixed.outcomes, 503);
    for i in 0..100u64 {
        if i <= 50 && fired.contains(&i) {
            assert!(half.contains(&i), "{i} fired at p <= 0.5 but not at 0.5");
        }
        if i >= 50 && half.contains(&i) {
            assert!(fired.contains(&i), "{i} fired at 0.5 but not at p >= 0.5");
        }
    }
    // The same at concurrency 1.
    let one = play_text(RAMP, &["load.concurrency=1"]).await;
    assert_eq!(with_status(&one.outcomes, 503), fired);
}

#[test]
fn a_delay_ramp_holds_each_request_for_its_point_on_the_line() {
    let text = r#"
name = "delay-ramp"
seed = 2

[run]
clock = "virtual"

[[faults]]
name = "slower"
kind = "delay"
delay = { from = "0ms", to = "100ms", over = 50 }

[load]
requests = 60
concurrency = 1
targets = [{ path = "/" }]
"#;
    let played = play_virtual(text, &[]);
    assert_eq!(played.len(), 60);
    let first = played[0].attempts[0].latency;
    for o in &played {
        let delay = Duration::from_millis(2 * o.index.min(50));
        assert_eq!(
            o.attempts[0].latency,
            first + delay,
            "request {}: {:?}",
            o.index,
            o.attempts[0]
        );
    }
}

// ---- bursts ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_bursts_by_requests_fire_on_then_off() {
    let text = r#"
name = "bursts"
seed = 4

[[faults]]
name = "bursty"
kind = "error"
status = 503
bursts = { on = 3, off = 2 }

[load]
requests = 40
concurrency = 64
targets = [{ path = "/" }]
"#;
    let played = play_text(text, &[]).await;
    let expected: BTreeSet<u64> = (0..40).filter(|i| i % 5 < 3).collect();
    assert_eq!(with_status(&played.outcomes, 503), expected);
}

const MARKOV: &str = r#"
name = "markov"
seed = 17

[[faults]]
name = "flapping"
kind = "error"
status = 503
bursts = { mean_on = 4, mean_off = 6 }

[load]
requests = 200
targets = [{ path = "/" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markov_bursts_by_requests_are_the_same_at_any_concurrency_and_run_after_run() {
    let one = play_text(MARKOV, &["load.concurrency=1"]).await;
    let many = play_text(MARKOV, &["load.concurrency=64"]).await;
    let again = play_text(MARKOV, &["load.concurrency=64"]).await;
    let on = with_status(&one.outcomes, 503);
    assert!(on.contains(&0), "the chain starts on");
    assert!(
        (30..=140).contains(&on.len()),
        "about 40% of 200: {}",
        on.len()
    );
    // Runs of on and off: more than a couple of each.
    let switches = (1..200u64)
        .filter(|i| on.contains(i) != on.contains(&(i - 1)))
        .count();
    assert!(switches >= 10, "{switches} switches");
    assert_eq!(with_status(&many.outcomes, 503), on);
    assert_eq!(with_status(&again.outcomes, 503), on);
    // The plan computes the same chain without any run: the state is a function of the seed.
    let scenario = traceforge::parse_str("m.toml", MARKOV, &[]).unwrap_or_else(|e| panic!("{e}"));
    let plan = FaultPlan::new(17, scenario.faults);
    let method = hyper::Method::GET;
    let computed: BTreeSet<u64> = (0..200u64)
        .rev()
        .filter(|&index| {
            let id = traceforge::seed::request_id(17, index, 0);
            !plan
                .decide(&traceforge::fault::RequestFacts {
                    index,
                    ..traceforge::fault::RequestFacts::new(&method, "/", &id)
                })
                .is_empty()
        })
        .collect();
    assert_eq!(computed, on);
}

// ---- validation ----

fn error_of(faults: &str) -> String {
    let text = format!("name = \"v\"\n{faults}");
    match traceforge::parse_str("v.toml", &text, &[]) {
        Ok(_) => panic!("expected an error for {faults}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn stateful_fields_are_checked_where_they_are_written() {
    let e =
        error_of("[[faults]]\nkind = \"error\"\nstatus = 503\nbursts = { on = 10, off = \"2m\" }");
    assert!(e.contains("faults[0].bursts.off"), "{e}");
    assert!(e.contains("both must be requests"), "{e}");
    assert!(e.contains("v.toml:5:"), "{e}");

    let e = error_of("[[faults]]\nkind = \"drop\"\nbursts = { on = 10, mean_off = 5 }");
    assert!(e.contains("not both"), "{e}");

    let e = error_of("[[faults]]\nkind = \"drop\"\nbursts = { on = 10 }");
    assert!(e.contains("missing `off`"), "{e}");

    let e = error_of(
        "[[faults]]\nkind = \"drop\"\nprobability = { from = 0.0, to = 1.5, over = \"10m\" }",
    );
    assert!(e.contains("faults[0].probability.to"), "{e}");
    assert!(e.contains("between 0 and 1, found 1.5"), "{e}");

    let e =
        error_of("[[faults]]\nkind = \"drop\"\nprobability = { from = 0.0, to = 1.0, over = 0 }");
    assert!(e.contains("faults[0].probability.over"), "{e}");
    assert!(e.contains("above zero"), "{e}");

    let e = error_of("[[faults]]\nkind = \"quota\"\nlimit = 5");
    assert!(e.contains("needs `limit` and `window`"), "{e}");

    let e = error_of("[[faults]]\nkind = \"quota\"\nlimit = 0\nwindow = \"1s\"");
    assert!(e.contains("faults[0].limit"), "{e}");

    let e = error_of("[[faults]]\nkind = \"error\"\nstatus = 503\nlimit = 5");
    assert!(
        e.contains("`limit` does not apply to an `error` fault"),
        "{e}"
    );

    let e = error_of(
        "[[faults]]\nkind = \"ws_drop\"\nprobability = { from = 0.0, to = 1.0, over = 10 }",
    );
    assert!(e.contains("cannot ramp"), "{e}");

    let e = error_of(
        "[[faults]]\nkind = \"ws_delay\"\ndelay = { from = \"1ms\", to = \"5ms\", over = 10 }",
    );
    assert!(e.contains("not a ramp"), "{e}");

    let e =
        error_of("[[faults]]\nkind = \"drop\"\nbursts = { mean_on = \"10us\", mean_off = \"1s\" }");
    assert!(e.contains("at least 1ms"), "{e}");
}
