//! Virtual time: the same scenario over in-memory pipes on a paused clock, with exact latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use traceforge::golden::Policy;
use traceforge::record::{Format, Outcome};
use traceforge::runner::{self, RunOptions, RunReport};

use crate::support::root;

fn play_virtual(text: &str, set: &[&str]) -> (RunReport, Vec<Outcome>) {
    let overrides: Vec<traceforge::scenario::Override> = set
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let scenario = traceforge::scenario::parse_str("virtual.toml", text, &overrides)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = scratch.path().join("outcomes.json");
    let options = RunOptions {
        output: Some(output.clone()),
        format: Format::Json,
        golden_dir: scratch.path().to_path_buf(),
        golden: Policy {
            accept: true,
            write_new: false,
        },
        static_dir: Some(root().join("static")),
        progress: Arc::new(AtomicU64::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let report = runner::run_virtual(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    let outcomes = serde_json::from_str(&std::fs::read_to_string(&output).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
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
    let started = std::time::Instant::now();
    let (report, outcomes) = play_virtual(text, &[]);
    assert_eq!(report.summary.requests, 50);
    assert_eq!(outcomes.len(), 50);
    for o in &outcomes {
        assert_eq!(o.attempts.len(), 1);
        assert_eq!(o.attempts[0].latency, Duration::from_millis(123), "{o:?}");
        assert_eq!(o.latency, Duration::from_millis(123), "{o:?}");
    }
    // Closed loop at concurrency 8: request i starts at (i / 8) * 123ms, exactly.
    let mut starts: Vec<Duration> = outcomes.iter().map(|o| o.start).collect();
    starts.sort();
    assert_eq!(starts.last().copied(), Some(Duration::from_millis(123 * 6)));
    // 50 requests of 123ms at concurrency 8 is 861ms of virtual time; far less in real time.
    assert!(started.elapsed() < Duration::from_secs(30));
}
