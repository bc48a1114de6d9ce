//! The library's front door as a Rust user meets it: load or parse a scenario, override it, play
//! it, read the report and its outcomes; the demo upstream's test builder.

use std::time::Duration;

use traceforge::RunOptions;
use traceforge::upstream::{self, Route};

use crate::support;

#[test]
fn a_scenario_against_a_builder_upstream_plays_and_reports_its_outcomes() {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let server = runtime
        .block_on(
            upstream::builder()
                .route(
                    Route::new("/api/orders")
                        .method(hyper::Method::GET)
                        .status(503)
                        .header("retry-after", "0")
                        .body("down"),
                )
                .route(Route::new("/api/slow").latency(Duration::from_millis(20)))
                .spawn(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        r#"
            name = "builder"
            seed = 11

            [upstream]
            url = "{}"

            [load]
            requests = 12
            retries = 1
            retry_backoff = "1ms"
            targets = [{{ path = "/api/orders" }}, {{ path = "/api/slow" }}]
        "#,
        server.url()
    );
    let scenario =
        traceforge::parse_str("builder.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions::new(scratch.path())
        .accepting()
        .keeping_outcomes();
    let report = traceforge::play(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.outcomes.len(), 12);
    let indices: Vec<u64> = report.outcomes.iter().map(|o| o.index).collect();
    assert_eq!(indices, (0..12).collect::<Vec<_>>(), "in index order");
    for o in &report.outcomes {
        match o.path.as_str() {
            "/api/orders" => {
                assert_eq!(o.status, Some(503), "{o:?}");
                assert_eq!(o.attempts.len(), 2, "retried once: {o:?}");
            }
            "/api/slow" => {
                assert_eq!(o.status, Some(200), "{o:?}");
                assert!(o.latency >= Duration::from_millis(20), "{o:?}");
            }
            other => panic!("unexpected path {other}"),
        }
    }
    assert!(report.passed(), "no expectations, golden accepted");
    assert!(scratch.path().join("builder.snap").is_file());
    drop(server);
}

#[test]
fn a_shipped_scenario_loads_with_overrides_and_plays_on_its_clock() {
    let file = support::root().join("scenarios/outage-recovery-virtual.toml");
    let overrides = ["seed=1".parse().unwrap_or_else(|e| panic!("{e}"))];
    let scenario = traceforge::load(&file, &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.seed, 1);
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let report = traceforge::play(&scenario, &RunOptions::new(scratch.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    // A new seed has no golden file in the scratch folder: the report says so and fails.
    assert!(!report.passed());
    assert!(
        report.outcomes.is_empty(),
        "outcomes are kept only when asked"
    );
    assert!(report.summary.requests > 0);
}
