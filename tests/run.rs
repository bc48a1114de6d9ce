//! `traceforge run` end to end: determinism across concurrency and runs, golden verdicts and exit
//! codes, streamed output files, and the standalone load generator.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use traceforge::record::Outcome;
use traceforge::runner::{self, RunOptions, RunReport};
use traceforge::scenario::Override;

use crate::support::{bin, root};

fn overrides(pairs: &[&str]) -> Vec<Override> {
    pairs
        .iter()
        .map(|p| p.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Plays a scenario in-process with overrides; golden files go to a scratch folder.
fn play(file: &str, set: &[&str]) -> RunReport {
    let scenario = traceforge::scenario::load(&root().join(file), &overrides(set))
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        static_dir: Some(root().join("static")),
        ..RunOptions::new(scratch.path().to_path_buf()).accepting()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runner::play_scenario(&runtime, &scenario, &options).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn shipped() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("scenarios"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| format!("scenarios/{}", e.file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_is_identical_at_concurrency_1_and_64_and_run_after_run() {
    for file in shipped() {
        let scenario =
            traceforge::scenario::load(&root().join(&file), &[]).unwrap_or_else(|e| panic!("{e}"));
        if scenario
            .topology
            .as_ref()
            .is_some_and(|t| t.client.is_some())
        {
            // The user's client is the load: its concurrency is its own (tests/services_run.rs
            // plays it twice).
            continue;
        }
        // Fewer requests keep concurrency 1 quick; the property is the same at any size. An open
        // loop is capped by `max_in_flight` instead: 40 requests in 100ms, at most 1 or 64 in flight.
        let virtual_clock = scenario.clock == traceforge::scenario::Clock::Virtual;
        let sets: [Vec<&str>; 3] = if virtual_clock && scenario.load.profile.is_open() {
            // On the virtual clock a whole run takes moments: play it as shipped, with caps on
            // requests in flight that never bind, and once more.
            [vec![], vec!["load.max_in_flight=5000"], vec![]]
        } else if scenario.load.profile.is_open() {
            let stages =
                "load.stages=[{duration=\"0s\", rate=400}, {duration=\"100ms\", rate=400}]";
            [
                vec![stages, "load.max_in_flight=1"],
                vec![stages, "load.max_in_flight=64"],
                vec![stages, "load.max_in_flight=7"],
            ]
        } else {
            [
                vec!["load.requests=40", "load.concurrency=1"],
                vec!["load.requests=40", "load.concurrency=64"],
                vec!["load.requests=40", "load.concurrency=7"],
            ]
        };
        let one = play(&file, &sets[0]).body;
        let many = play(&file, &sets[1]).body;
        let again = play(&file, &sets[2]).body;
        assert!(
            one.as_deref().is_some_and(|b| b.contains("#0039 ")),
            "{file}: {one:?}"
        );
        if virtual_clock {
            assert!(
                one.as_deref()
                    .is_some_and(|b| b.contains("clock:        virtual"))
            );
        }
        assert_eq!(one, many, "{file}: concurrency 1 and 64 differ");
        assert_eq!(one, again, "{file}: a second run differs");
    }
}

#[test]
fn flaky_api_shows_faults_retries_and_recoveries() {
    let report = play("scenarios/flaky-api.toml", &[]);
    let s = &report.summary;
    assert_eq!(s.requests, 200);
    assert!(s.retries > 0, "no retries in {s:?}");
    assert!(s.faults.get("api-503").is_some_and(|n| *n > 0), "{s:?}");
    assert!(s.faults.get("slow-api").is_some_and(|n| *n > 0), "{s:?}");
    assert!(
        report.expectations.iter().all(|v| v.passed),
        "{:?}",
        report.expectations
    );
    let body = report.body.unwrap_or_default();
    assert!(
        body.contains("503 [api-503] -> 200"),
        "a retried 503 that recovered:\n{body}"
    );
}

fn run_cli(args: &[&str], ci: bool) -> Output {
    let mut cmd = bin();
    cmd.current_dir(root()).args(["run"]).args(args);
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    cmd.output().unwrap_or_else(|e| panic!("{e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn copy_golden(name: &str, dir: &Path) {
    std::fs::copy(
        root().join("golden").join(format!("{name}.snap")),
        dir.join(format!("{name}.snap")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_shipped_scenario_passes_and_a_changed_seed_fails_with_a_diff_and_a_snap_new() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let golden = dir.path().to_string_lossy().into_owned();
    copy_golden("total-outage", dir.path());

    let pass = run_cli(
        &["scenarios/total-outage.toml", "--golden-dir", &golden],
        false,
    );
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}{}",
        text(&pass.stdout),
        text(&pass.stderr)
    );
    assert!(text(&pass.stdout).contains("PASS total-outage"));

    let fail = run_cli(
        &[
            "scenarios/total-outage.toml",
            "--golden-dir",
            &golden,
            "--set",
            "seed=7",
        ],
        false,
    );
    let out = text(&fail.stdout);
    assert_eq!(fail.status.code(), Some(1), "{out}");
    assert!(
        out.contains("--- golden") && out.contains("+++ this run"),
        "{out}"
    );
    assert!(
        out.contains("-seed:         1") && out.contains("+seed:         7"),
        "{out}"
    );
    let new = dir.path().join("total-outage.snap.new");
    let written =
        std::fs::read_to_string(&new).unwrap_or_else(|e| panic!("{}: {e}", new.display()));
    assert!(
        written.starts_with("---\nsource: traceforge run\n"),
        "{written}"
    );
    assert!(written.contains("\nseed:         7\n"), "{written}");

    // Passing again removes the stale .snap.new.
    let pass = run_cli(
        &["scenarios/total-outage.toml", "--golden-dir", &golden],
        false,
    );
    assert_eq!(pass.status.code(), Some(0));
    assert!(!new.exists());

    // Under CI nothing is written unless asked.
    let ci = run_cli(
        &[
            "scenarios/total-outage.toml",
            "--golden-dir",
            &golden,
            "--set",
            "seed=7",
        ],
        true,
    );
    assert_eq!(ci.status.code(), Some(1));
    assert!(!new.exists());
    let ci = run_cli(
        &[
            "scenarios/total-outage.toml",
            "--golden-dir",
            &golden,
            "--set",
            "seed=7",
            "--write-new",
        ],
        true,
    );
    assert_eq!(ci.status.code(), Some(1));
    assert!(new.exists());
}

#[test]
fn a_missing_golden_fails_until_accepted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let golden = dir.path().to_string_lossy().into_owned();
    let first = run_cli(
        &["scenarios/total-outage.toml", "--golden-dir", &golden],
        false,
    );
    assert_eq!(first.status.code(), Some(1));
    assert!(text(&first.stdout).contains("does not exist yet"));
    assert!(text(&first.stdout).contains("--accept"));
    let accept = run_cli(
        &[
            "scenarios/total-outage.toml",
            "--golden-dir",
            &golden,
            "--accept",
        ],
        false,
    );
    assert_eq!(accept.status.code(), Some(0), "{}", text(&accept.stdout));
    assert!(dir.path().join("total-outage.snap").exists());
    let again = run_cli(
        &["scenarios/total-outage.toml", "--golden-dir", &golden],
        false,
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert!(text(&again.stdout).contains("golden: matches"));
}

#[test]
fn a_failed_expectation_fails_the_run_even_when_the_golden_matches() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let golden = dir.path().to_string_lossy().into_owned();
    copy_golden("total-outage", dir.path());
    let out = run_cli(
        &[
            "scenarios/total-outage.toml",
            "--golden-dir",
            &golden,
            "--set",
            "expect.success_rate=0.9",
        ],
        false,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("golden: matches"), "{stdout}");
    assert!(
        stdout.contains("FAIL total-outage: success_rate >= 90.0%"),
        "{stdout}"
    );
}

#[test]
fn invalid_scenarios_run_nothing_and_exit_2() {
    let out = run_cli(
        &["scenarios/total-outage.toml", "--set", "load.concurrency=0"],
        false,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("load.concurrency"));
    assert!(!text(&out.stdout).contains("==>"));
}

fn outputs(format: &str, path: &Path) -> Output {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    copy_golden("total-outage", dir.path());
    run_cli(
        &[
            "scenarios/total-outage.toml",
            "--golden-dir",
            &dir.path().to_string_lossy(),
            "--output",
            &path.to_string_lossy(),
            "--format",
            format,
        ],
        false,
    )
}

#[test]
fn outcomes_are_written_as_json_jsonl_and_csv() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let json = dir.path().join("out.json");
    assert_eq!(outputs("json", &json).status.code(), Some(0));
    let all: Vec<Outcome> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 40);
    let mut indexes: Vec<u64> = all.iter().map(|o| o.index).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..40).collect::<Vec<_>>());
    let api: Vec<&Outcome> = all.iter().filter(|o| o.path == "/api/resource").collect();
    assert!(!api.is_empty());
    for o in api {
        assert_eq!(o.status, Some(503));
        assert_eq!(o.attempts.len(), 2, "retries = 1");
        assert!(
            o.attempts
                .iter()
                .all(|a| a.faults == vec!["drop-1".to_string()])
        );
        // The proxy names each fired rule's kind too, in the same order.
        assert!(o.attempts.iter().all(|a| a.fault_kinds == ["drop"]));
        assert_ne!(o.attempts[0].request_id, o.attempts[1].request_id);
        assert_eq!(o.trace_id.len(), 32);
    }

    let jsonl = dir.path().join("out.jsonl");
    assert_eq!(outputs("jsonl", &jsonl).status.code(), Some(0));
    let lines = std::fs::read_to_string(&jsonl).unwrap_or_default();
    assert_eq!(lines.lines().count(), 40);
    for line in lines.lines() {
        serde_json::from_str::<Outcome>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    let csv_path = dir.path().join("out.csv");
    assert_eq!(outputs("csv", &csv_path).status.code(), Some(0));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap_or_else(|e| panic!("{e}"));
    let headers = reader.headers().unwrap_or_else(|e| panic!("{e}")).clone();
    assert_eq!(&headers[0], "index");
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(rows.len(), 40);
}

#[test]
fn several_scenarios_need_a_name_placeholder_in_the_output_path() {
    let out = run_cli(
        &[
            "scenarios/total-outage.toml",
            "scenarios/slow-upstream.toml",
            "--output",
            "x.json",
        ],
        false,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("{name}"));
}

#[test]
fn folders_run_every_scenario_with_a_final_table() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        root().join("scenarios/total-outage.toml"),
        scenarios.join("a.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    copy_golden("total-outage", dir.path());
    let out = run_cli(
        &[
            &scenarios.to_string_lossy(),
            "--golden-dir",
            &dir.path().to_string_lossy(),
        ],
        false,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("PASS total-outage"));
}

/// Spawns the demo upstream in a runtime of its own and returns it with its address.
fn demo_upstream() -> (tokio::runtime::Runtime, traceforge::server::Listening) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let listening = runtime
        .block_on(traceforge::upstream::spawn(
            "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            traceforge::upstream::UpstreamOptions {
                routes: vec![],
                static_dir: None,
                seed: 3,
                ..Default::default()
            },
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    (runtime, listening)
}

#[test]
fn the_standalone_load_generator_writes_json_and_csv_with_the_classic_flags() {
    let (_runtime, upstream) = demo_upstream();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/api/resource", upstream.addr);
    for format in ["json", "csv"] {
        let out_path = dir.path().join(format!("results.{format}"));
        let out = bin()
            .args([
                "load",
                "--url",
                &url,
                "--n",
                "25",
                "--concurrency",
                "5",
                "--retries",
                "1",
            ])
            .args([
                "--retry-backoff-ms",
                "10",
                "--client-trace",
                "--seed",
                "9",
                "--format",
                format,
            ])
            .args(["--output", &out_path.to_string_lossy()])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("requests:     25"),
            "{}",
            text(&out.stdout)
        );
        if format == "json" {
            let all: Vec<Outcome> =
                serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(all.len(), 25);
            for o in &all {
                assert_eq!(o.status, Some(200));
                assert_eq!(o.trace_id, traceforge::seed::trace_id(9, o.index));
                assert_eq!(
                    o.attempts[0].request_id,
                    traceforge::seed::request_id(9, o.index, 0)
                );
            }
        } else {
            let mut reader = csv::Reader::from_path(&out_path).unwrap_or_else(|e| panic!("{e}"));
            let headers: Vec<String> = reader
                .headers()
                .map(|h| h.iter().map(String::from).collect())
                .unwrap_or_default();
            for column in [
                "index",
                "status",
                "attempts",
                "latency_ms",
                "trace_id",
                "request_id",
            ] {
                assert!(
                    headers.iter().any(|h| h == column),
                    "{column} missing from {headers:?}"
                );
            }
            let rows: Vec<csv::StringRecord> = reader.records().filter_map(Result::ok).collect();
            assert_eq!(rows.len(), 25);
            let status = headers.iter().position(|h| h == "status").unwrap_or(0);
            assert!(rows.iter().all(|r| &r[status] == "200"));
        }
    }
}

#[test]
fn the_standalone_load_generator_plays_an_open_loop_with_rate() {
    let (_runtime, upstream) = demo_upstream();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out_path = dir.path().join("open.json");
    let url = format!("http://{}/api/resource", upstream.addr);
    let out = bin()
        .args([
            "load",
            "--url",
            &url,
            "--rate",
            "200",
            "--duration",
            "100ms",
        ])
        .args(["--output", &out_path.to_string_lossy()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut all: Vec<Outcome> =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    all.sort_by_key(|o| o.index);
    assert_eq!(all.len(), 20, "200/s x 100ms");
    for o in &all {
        assert_eq!(o.scheduled.as_micros(), u128::from(o.index) * 5000);
    }
    let bad = bin()
        .args(["load", "--url", &url, "--rate", "0"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--rate"));
}

#[test]
fn the_standalone_load_generator_rejects_bad_flags() {
    let out = bin()
        .args(["load", "--url", "ftp://x"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("http://"));
}

#[test]
fn recorded_attempts_agree_with_the_proxy_metrics() {
    use crate::support::{client, get, metric, parse_exposition};
    use traceforge::fault::FaultPlan;
    use traceforge::load::LoadOptions;
    use traceforge::proxy::{self, ProxyOptions};

    // A 30% drop rule and two retries: every attempt the recorder saw, the proxy counted.
    let text = r#"
        name = "drops"
        seed = 11
        faults = ["drop:0.3"]
        [load]
        requests = 300
        concurrency = 16
        retries = 2
        retry_backoff = "1ms"
        client_trace = true
    "#;
    let scenario =
        traceforge::scenario::parse_str("drops.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let upstream = traceforge::upstream::spawn(crate::support::loopback(), Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let proxy = proxy::spawn(
            crate::support::loopback(),
            ProxyOptions {
                upstream: upstream.url().parse().unwrap_or_else(|e| panic!("{e}")),
                plan: Arc::new(FaultPlan::new(scenario.seed, scenario.faults.clone())),
                config: scenario.proxy.clone(),
                calls: None,
                observer: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut outcomes = Vec::new();
        let options = RunOptions::new("");
        let load = LoadOptions {
            base: proxy.url().parse().unwrap_or_else(|e| panic!("{e}")),
            seed: scenario.seed,
            load: scenario.load.clone(),
            tls: None,
            calls: None,
        };
        let (summary, _) = runner::play_load(load, &options, |o| outcomes.push(o.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let samples = parse_exposition(
            &get(&client(), &format!("{}/metrics", proxy.url()), &[])
                .await
                .text(),
        );

        let attempts: Vec<_> = outcomes.iter().flat_map(|o| &o.attempts).collect();
        let dropped = attempts.iter().filter(|a| a.faults == ["drop-1"]).count() as f64;
        assert_eq!(summary.attempts as usize, attempts.len());
        assert_eq!(
            metric(&samples, "traceforge_proxy_requests_total", &[]),
            attempts.len() as f64
        );
        assert_eq!(
            metric(
                &samples,
                "traceforge_proxy_dropped_total",
                &[("rule", "drop-1")]
            ),
            dropped
        );
        assert_eq!(
            metric(&samples, "traceforge_proxy_forwarded_total", &[]),
            attempts.len() as f64 - dropped
        );
        // Every dropped attempt was a 503 and was retried unless it was the last one allowed.
        assert!(
            attempts
                .iter()
                .filter(|a| a.faults == ["drop-1"])
                .all(|a| a.status == Some(503))
        );
        for o in &outcomes {
            let last = o.attempts.last().unwrap_or_else(|| panic!("no attempts"));
            assert_eq!(o.status, last.status);
            let drops = o.attempts.iter().filter(|a| a.status == Some(503)).count();
            assert!(
                o.attempts.len() == drops + 1 || (o.attempts.len() == 3 && drops == 3),
                "{o:?}"
            );
        }
        let final_503 = outcomes.iter().filter(|o| o.status == Some(503)).count();
        assert_eq!(
            summary.statuses.get(&503).copied().unwrap_or(0) as usize,
            final_503
        );
        // About 0.3^3 of 300 requests fail every attempt; allow wide bounds, the exact value is seeded.
        assert!(final_503 < 30, "{final_503}");
        assert!(dropped > 60.0 && dropped < 160.0, "{dropped}");
        proxy.shutdown().await;
        upstream.shutdown().await;
    });
}
