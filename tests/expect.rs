//! Expectations: each kind passes and fails on purpose-built scenarios (real sockets, the demo
//! upstream), and names that refer to nothing are validation errors with pinned messages.

use traceforge::expect::Verdict;
use traceforge::scenario;

use crate::support::play_text;

/// Every /api attempt is delayed by 20ms; every second /api request fails with 503 (fault
/// decisions are seeded, so the split is the same every run); static pages are untouched.
const BASE: &str = r#"
name = "expectations"
seed = 11

[[faults]]
name = "slow-api"
kind = "delay"
delay = "20ms"
match = { path = "/api/*" }

[[faults]]
name = "api-503"
kind = "error"
status = 503
probability = 0.5
match = { path = "/api/*" }

[load]
requests = 30
concurrency = 6
targets = [{ path = "/api/resource" }, { path = "/static/index.html" }]
"#;

/// Plays BASE with overrides and returns the verdicts.
async fn verdicts(set: &[&str]) -> Vec<Verdict> {
    play_text(BASE, set).await.report.expectations
}

fn find<'a>(verdicts: &'a [Verdict], name: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no verdict {name} in {verdicts:?}"))
}

/// Each pair: an expectation that must pass on BASE, and one that must fail; the verdict name.
const CASES: &[(&str, &str, &str)] = &[
    (
        "expect.status={\"503\"={min_count=1}, \"2xx\"={min_share=0.3}}",
        "expect.status={\"503\"={max_share=0.01}}",
        "status.503",
    ),
    (
        "expect.status={\"5xx\"={max_count=30}}",
        "expect.status={\"5xx\"={max_count=0}}",
        "status.5xx",
    ),
    (
        "expect.latency={p50=\"< 10s\"}",
        "expect.latency={p50=\"< 1us\"}",
        "latency.p50",
    ),
    (
        "expect.latency={max={min=\"20ms\"}}",
        "expect.latency={max={max=\"1us\"}}",
        "latency.max",
    ),
    (
        "expect.retries={max=0}",
        "expect.retries={min=1}",
        "retries",
    ),
    ("expect.late={max=0}", "expect.late={min=5}", "late"),
    (
        "expect.faults={api-503={min=1}}",
        "expect.faults={api-503={max=0}}",
        "faults.api-503",
    ),
    (
        "expect.targets=[{path=\"/static/index.html\", success_rate=1.0, latency={p99=\"< 10s\"}}]",
        "expect.targets=[{path=\"/api/resource\", success_rate=1.0}]",
        "targets[/api/resource].success_rate",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_expectation_kind_passes_and_fails_on_purpose() {
    for (pass, fail, name) in CASES {
        let v = verdicts(&[pass]).await;
        assert!(
            !v.is_empty() && v.iter().all(|v| v.passed),
            "{pass} should pass: {v:?}"
        );
        let v = verdicts(&[fail]).await;
        let failed = find(&v, name);
        assert!(!failed.passed, "{fail} should fail: {v:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_honoured_and_a_too_strict_rate_fails() {
    let v = verdicts(&[
        "expect.delays_honoured=[\"slow-api\"]",
        "expect.success_rate=0.5",
    ])
    .await;
    let d = find(&v, "delays_honoured.slow-api");
    assert!(d.passed, "{d:?}");
    assert_eq!(d.threshold, "every attempt >= 20ms");
    assert!(d.measured.starts_with("shortest "), "{d:?}");
    assert!(find(&v, "success_rate").passed);
    let v = verdicts(&["expect.success_rate=1.0"]).await;
    assert!(!find(&v, "success_rate").passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_expectation_fails_the_run_even_when_the_golden_matches() {
    // play_text accepts the golden file; the report still fails on the expectation.
    let played = play_text(BASE, &["expect.latency={p50=\"< 1us\"}"]).await;
    assert!(
        played
            .report
            .golden
            .as_ref()
            .is_some_and(traceforge::golden::Comparison::passed)
    );
    assert!(!played.report.passed());
}

fn error(set: &[&str]) -> String {
    let overrides: Vec<scenario::Override> = set
        .iter()
        .map(|o| o.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    match scenario::parse_str("expect.toml", BASE, &overrides) {
        Ok(_) => panic!("{set:?} should be rejected"),
        // As the CLI prints it.
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn an_unknown_rule_is_an_error_with_a_suggestion() {
    assert_eq!(
        error(&["expect.faults={api-530={min=1}}"]),
        "\
error: expect.faults.api-530: there is no fault rule named `api-530`
 --> --set expect.faults={api-530={min=1}}:1:24
  |
1 | expect.faults={api-530={min=1}}
  |                        ^^^^^^^ unknown rule
  |
  = note: the override was applied to expect.toml
  = help: did you mean `api-503`? rules in this scenario: `slow-api`, `api-503`"
    );
}

#[test]
fn unknown_statuses_targets_and_non_delay_rules_are_errors() {
    assert_eq!(
        error(&["expect.status={\"5x\"={max_share=0.1}}"]),
        "\
error: expect.status.5x: `5x` is not a status, a status class, a transport error or a WebSocket error
 --> --set expect.status={\"5x\"={max_share=0.1}}:1:21
  |
1 | expect.status={\"5x\"={max_share=0.1}}
  |                     ^^^^^^^^^^^^^^^ unknown result
  |
  = note: the override was applied to expect.toml
  = help: did you mean `5xx`? keys are statuses (100 to 599) or 1xx, 2xx, 3xx, 4xx, 5xx, timeout, connect, reset, protocol, ws_closed, ws_missing_echo, ws_mismatch, empty"
    );
    let target = error(&["expect.targets=[{path=\"/api/resorce\", success_rate=1.0}]"]);
    assert!(
        target.contains(
            "error: expect.targets[0].path: `/api/resorce` is not a path in `load.targets`"
        ),
        "{target}"
    );
    assert!(
        target.contains("help: did you mean `/api/resource`? target paths: `/api/resource`, `/static/index.html`"),
        "{target}"
    );
    let delay = error(&["expect.delays_honoured=[\"api-503\"]"]);
    assert!(
        delay.contains(
            "error: expect.delays_honoured[0]: `api-503` is not a delay rule (its kind is `error`)"
        ),
        "{delay}"
    );
    let statistic = error(&["expect.latency={p99x=\"< 1s\"}"]);
    assert!(
        statistic.contains("`p99x` is not a latency statistic"),
        "{statistic}"
    );
    let empty = error(&["expect.retries={}"]);
    assert!(
        empty.contains("expect.retries: this bound says nothing"),
        "{empty}"
    );
}

#[test]
fn contradictory_load_profiles_are_located_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["load.rate=10", "load.duration=\"1s\""],
            "load.duration: `duration` and `requests` both say when an open loop ends",
        ),
        (
            &["load.duration=\"1s\""],
            "load.duration: `duration` and `requests` both say when a closed loop ends",
        ),
        (
            &["load.rate=10", "load.requests=5", "load.concurrency=2"],
            "load.concurrency: `concurrency` does not apply to an open loop (`rate`)",
        ),
        (
            &[
                "load.stages=[{duration=\"1s\", rate=5}, {duration=\"1s\", concurrency=2}]",
                "load.requests=1",
            ],
            "load.requests: `requests` cannot be used with `stages`",
        ),
        (
            &["load.retries=1", "load.retry.max=2"],
            "load.retry.max: `load.retries` and `load.retry.max` say the same thing",
        ),
        (&["load.retry.on=[\"5xy\"]"], "help: did you mean `5xx`?"),
        (
            &["load.max_in_flight=5"],
            "load.max_in_flight: `max_in_flight` applies to open loops",
        ),
    ];
    for (set, wanted) in cases {
        let e = error(set);
        assert!(e.contains(wanted), "{set:?}: wanted {wanted:?} in\n{e}");
    }
    // Mixed stages are pointed at the stage that breaks the pattern.
    let mixed = error(&[
        "load.requests=1",
        "load.stages=[{duration=\"1s\", rate=5}, {duration=\"1s\", concurrency=2}]",
    ]);
    assert!(
        mixed.contains("load.stages[1].concurrency: stages are all `rate` or all `concurrency`"),
        "{mixed}"
    );
}
