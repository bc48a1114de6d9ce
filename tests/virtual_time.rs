//! Virtual time: the same upstream, proxy and load generator over in-memory pipes on a paused
//! clock. Latencies are exact, time windows are exact, and an hour plays in moments.

use std::time::Duration;

use traceforge::record::{ErrorKind, Outcome};
use traceforge::runner::{self, RunOptions, RunReport};

use crate::support::root;

/// Plays scenario text with `[run] clock = "virtual"` added; returns the report and the outcomes
/// in index order.
fn play_virtual(text: &str, set: &[&str]) -> (RunReport, Vec<Outcome>) {
    let text = format!("{text}\n[run]\nclock = \"virtual\"\n");
    let overrides: Vec<traceforge::scenario::Override> = set
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let scenario = traceforge::scenario::parse_str("virtual.toml", &text, &overrides)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = scratch.path().join("outcomes.json");
    let options = RunOptions {
        output: Some(output.clone()),
        static_dir: Some(root().join("static")),
        ..RunOptions::new(scratch.path().to_path_buf()).accepting()
    };
    let report = runner::run_virtual(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    let mut outcomes: Vec<Outcome> =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    outcomes.sort_by_key(|o| o.index);
    (report, outcomes)
}

#[test]
fn a_delay_of_123ms_takes_exactly_123ms_per_attempt() {
    let text = r#"
        name = "exact"
        seed = 5
        faults = ["delay:123ms"]
        [load]
        requests = 50
        concurrency = 8
    "#;
    let (report, outcomes) = play_virtual(text, &[]);
    assert_eq!(report.summary.requests, 50);
    assert_eq!(outcomes.len(), 50);
    for o in &outcomes {
        assert_eq!(o.attempts.len(), 1);
        assert_eq!(o.attempts[0].latency, Duration::from_millis(123), "{o:?}");
        assert_eq!(o.latency, Duration::from_millis(123), "{o:?}");
    }
    // Closed loop at concurrency 8: request i starts at (i / 8) * 123ms, exactly.
    let starts: Vec<Duration> = outcomes.iter().map(|o| o.start).collect();
    for (i, start) in starts.iter().enumerate() {
        assert_eq!(
            *start,
            Duration::from_millis(123 * (i as u64 / 8)),
            "request {i}"
        );
    }
    let body = report.body.unwrap_or_default();
    assert!(body.contains("attempts: 200 [delay-1] 123ms"), "{body}");
    assert!(body.contains("clock:        virtual"), "{body}");
}

#[test]
fn an_open_loop_of_10_per_second_for_60_seconds_sends_exactly_600_requests_on_schedule() {
    let text = r#"
        name = "rate"
        seed = 1
        [load]
        rate = 10
        duration = "60s"
    "#;
    let (report, outcomes) = play_virtual(text, &[]);
    assert_eq!(report.summary.requests, 600);
    assert_eq!(outcomes.len(), 600);
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.index, i as u64);
        assert_eq!(o.scheduled, Duration::from_millis(100 * i as u64));
        assert_eq!(o.start, o.scheduled, "request {i} started late");
    }
    assert_eq!(report.summary.late, 0);
}

#[test]
fn time_windows_are_exact_on_the_virtual_clock() {
    // Requests every 100ms; the outage covers [2s, 5s): exactly requests 20..50.
    let text = r#"
        name = "window"
        seed = 3
        [[faults]]
        name = "outage"
        kind = "error"
        status = 503
        from = "2s"
        until = "5s"
        [load]
        rate = 10
        duration = "8s"
    "#;
    let (_, outcomes) = play_virtual(text, &[]);
    assert_eq!(outcomes.len(), 80);
    for o in &outcomes {
        let inside = (20..50).contains(&o.index);
        assert_eq!(o.status, Some(if inside { 503 } else { 200 }), "{o:?}");
    }
}

#[test]
fn hangs_end_in_exact_client_timeouts_and_retries_back_off_exactly() {
    let text = r#"
        name = "hang"
        seed = 9
        [[faults]]
        kind = "hang"
        attempts = 1
        [load]
        requests = 20
        concurrency = 4
        timeout = "300ms"
        retries = 1
        retry_backoff = "50ms"
    "#;
    let (report, outcomes) = play_virtual(text, &[]);
    assert_eq!(report.summary.success_rate(), Some(1.0));
    for o in &outcomes {
        assert_eq!(o.attempts.len(), 2, "{o:?}");
        assert_eq!(o.attempts[0].error, Some(ErrorKind::Timeout));
        assert_eq!(o.attempts[0].latency, Duration::from_millis(300));
        assert_eq!(o.attempts[1].status, Some(200));
        assert_eq!(o.latency, Duration::from_millis(350), "{o:?}");
    }
}

#[test]
fn throttled_downloads_take_the_same_exact_time_run_after_run() {
    let text = r#"
        name = "throttle"
        seed = 2
        [[faults]]
        kind = "throttle"
        bytes_per_second = 8192
        [load]
        requests = 6
        concurrency = 3
        timeout = "10s"
        targets = [{ path = "/api/bytes/16384" }]
    "#;
    let (first, a) = play_virtual(text, &[]);
    let (second, b) = play_virtual(text, &[]);
    assert_eq!(first.body, second.body);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.attempts[0].bytes, 16384);
        // 16 KiB at 8 KiB/s: two seconds, give or take the pacing of the first piece.
        assert!(x.latency >= Duration::from_millis(1800), "{x:?}");
        assert!(x.latency <= Duration::from_millis(2100), "{x:?}");
        assert_eq!(x.latency, y.latency);
    }
}

#[test]
fn closed_loops_are_byte_identical_at_concurrency_1_and_64_and_run_after_run() {
    let text = std::fs::read_to_string(root().join("scenarios/flaky-api.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let one = play_virtual(&text, &["load.concurrency=1"]).0.body;
    let many = play_virtual(&text, &["load.concurrency=64"]).0.body;
    let again = play_virtual(&text, &["load.concurrency=64"]).0.body;
    assert!(one.as_deref().is_some_and(|b| b.contains("#0199 ")));
    assert!(
        one.as_deref()
            .is_some_and(|b| b.contains("latency:      p50"))
    );
    assert_eq!(one, many);
    assert_eq!(many, again);
}

#[test]
fn the_shipped_hour_long_scenario_simulates_an_hour() {
    let scenario =
        traceforge::scenario::load(&root().join("scenarios/outage-recovery-virtual.toml"), &[])
            .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions::new(scratch.path().to_path_buf()).accepting();
    let report = runner::run_virtual(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.summary.requests, 1800);
    assert!(
        report.summary.elapsed >= Duration::from_secs(3590),
        "{:?}",
        report.summary.elapsed
    );
    assert!(
        report
            .summary
            .faults
            .get("outage")
            .is_some_and(|n| *n > 300)
    );
    assert!(report.passed(), "{:?}", report.expectations);
}

#[test]
fn the_virtual_clock_cannot_reach_an_external_upstream() {
    let text =
        "name = \"x\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[run]\nclock = \"virtual\"\n";
    let err = traceforge::scenario::parse_str("x.toml", text, &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("run.clock: the virtual clock cannot reach an external upstream"),
        "{err}"
    );
    assert!(err.contains("x.toml:5:9"), "{err}");
}
