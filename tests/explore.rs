//! `traceforge explore` as CI calls it: the same table for the same command at any `--jobs`, the
//! failing seeds of the shipped retry-budget scenario pinned (the determinism contract: they change
//! only when what a seed decides changes), exit codes, `--summary-json`, a time budget, a signal,
//! and shrinking the first failing seed to a `.min.toml` that fails the same way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

const RETRY_BUDGET: &str = "scenarios/explore-retry-budget.toml";

/// The seeds of 1..=200 for which three attempts of some request of explore-retry-budget all get
/// the 503. A change here is a change of what a seed means: say so in the changelog.
const FAILING: [u64; 11] = [5, 13, 56, 68, 82, 86, 95, 97, 124, 126, 132];

fn traceforge(args: &[&str]) -> Output {
    support::bin()
        .args(args)
        .current_dir(support::root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("the traceforge binary runs: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    let body = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}\n{body}", path.display()))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

#[test]
fn two_hundred_seeds_give_the_pinned_failures_and_the_same_table_at_any_jobs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let json = dir.path().join("summary.json");
    let json_arg = json.display().to_string();
    let two = traceforge(&[
        "explore",
        RETRY_BUDGET,
        "--seeds",
        "1..200",
        "--jobs",
        "2",
        "--no-shrink",
        "--summary-json",
        &json_arg,
    ]);
    let table = text(&two.stdout);
    assert_eq!(two.status.code(), Some(1), "{table}\n{}", text(&two.stderr));
    let listed: Vec<String> = FAILING[..10].iter().map(u64::to_string).collect();
    let expected = format!(
        "==> explore explore-retry-budget ({RETRY_BUDGET})
    clock:   virtual
    seeds:   1..200 (200 tried of 200)
    held:    189
    failed:  11
    errors:  0

    failing expectations:
    success_rate: broken by 11 seeds: {}, ...
        seed 5: measured 95.0%, expected >= 100.0%
    FAILED: 11 seeds broke an expectation
",
        listed.join(", ")
    );
    assert_eq!(table, expected);

    let summary = read_json(&json);
    assert_eq!(summary["scenario"], "explore-retry-budget");
    assert_eq!(summary["clock"], "virtual");
    assert_eq!(
        summary["seeds"],
        serde_json::json!({ "from": 1, "to": 200, "tried": 200 })
    );
    assert_eq!(summary["held"], 189);
    assert_eq!(summary["cut"], serde_json::Value::Null);
    assert_eq!(summary["errors"], serde_json::json!([]));
    assert_eq!(summary["shrunk"], serde_json::Value::Null);
    let failed = summary["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("{summary}"));
    let seeds: Vec<u64> = failed.iter().filter_map(|f| f["seed"].as_u64()).collect();
    assert_eq!(seeds, FAILING);
    for f in failed {
        assert_eq!(f["expectations"][0]["name"], "success_rate", "{f}");
        assert_eq!(f["expectations"][0]["threshold"], ">= 100.0%", "{f}");
    }

    // One worker, and again: the same table, byte for byte.
    let one = traceforge(&[
        "explore",
        RETRY_BUDGET,
        "--seeds",
        "1..200",
        "--jobs",
        "1",
        "--no-shrink",
    ]);
    assert_eq!(one.status.code(), Some(1));
    assert_eq!(text(&one.stdout), table);
}

#[test]
fn a_failing_seed_alone_fails_and_a_holding_one_passes() {
    let failing = traceforge(&["explore", RETRY_BUDGET, "--seeds", "5", "--no-shrink"]);
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing.stderr));
    assert!(text(&failing.stdout).contains("broken by 1 seed: 5\n"));
    // Seeds 14..=55 all hold.
    let held = traceforge(&["explore", RETRY_BUDGET, "--seeds", "14..=55", "--jobs", "2"]);
    let shown = text(&held.stdout);
    assert_eq!(
        held.status.code(),
        Some(0),
        "{shown}\n{}",
        text(&held.stderr)
    );
    assert!(
        shown.contains("seeds:   14..55 (42 tried of 42)"),
        "{shown}"
    );
    assert!(shown.contains("held:    42\n"), "{shown}");
    assert!(
        shown.contains("HELD: every seed tried held its expectations"),
        "{shown}"
    );
    // A seed that holds has nothing to shrink: no search, no file, exit 0.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out_arg = dir.path().display().to_string();
    let held = traceforge(&["explore", RETRY_BUDGET, "--shrink", "1", "--out", &out_arg]);
    let shown = text(&held.stdout);
    assert_eq!(held.status.code(), Some(0), "{shown}");
    assert_eq!(
        shown,
        "seed 1 of explore-retry-budget: every expectation held; nothing to shrink\n"
    );
    assert!(std::fs::read_dir(dir.path()).is_ok_and(|mut d| d.next().is_none()));
}

#[test]
fn a_scenario_that_always_holds_exits_0() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = write(
        dir.path(),
        "steady.toml",
        "name = \"steady\"\n[run]\nclock = \"virtual\"\n[[faults]]\nname = \"slow\"\nkind = \"delay\"\ndelay = \"1ms..5ms\"\nprobability = 0.5\n[load]\nrequests = 10\nconcurrency = 2\n[expect]\nsuccess_rate = 1.0\n",
    );
    let json = dir.path().join("out").join("s.json");
    let json_arg = json.display().to_string();
    let out = traceforge(&[
        "explore",
        &file,
        "--seeds",
        "1..50",
        "--summary-json",
        &json_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("held:    50\n"));
    let summary = read_json(&json);
    assert_eq!(summary["held"], 50);
    assert_eq!(summary["failed"], serde_json::json!([]));
    // Nothing failed, so nothing was shrunk or written beside the scenario.
    assert_eq!(summary["shrunk"], serde_json::Value::Null);
    assert!(!dir.path().join("steady.min.toml").exists());
}

#[test]
fn invalid_input_exits_2_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = write(
        dir.path(),
        "typo.toml",
        "name = \"typo\"\n\n[load]\nrequests = 5\nconcurency = 2\n",
    );
    let out = traceforge(&["explore", &file, "--seeds", "1..10"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{file}:5:1")), "{err}");
    assert!(err.contains("concurrency"), "a suggestion: {err}");

    for bad in ["10..1", "1..x", "one", "1.."] {
        let out = traceforge(&["explore", RETRY_BUDGET, "--seeds", bad]);
        assert_eq!(out.status.code(), Some(2), "--seeds {bad}");
        assert_eq!(text(&out.stdout), "");
        assert!(
            text(&out.stderr).contains("--seeds"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = traceforge(&["explore", RETRY_BUDGET, "--time-budget", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = traceforge(&["explore", RETRY_BUDGET, "--shrink", "5", "--no-shrink"]);
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn a_seed_that_cannot_be_played_is_an_error_and_exits_3() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = write(
        dir.path(),
        "dead.toml",
        "name = \"dead-service\"\n[[services]]\nname = \"dead\"\ncommand = [\"sh\", \"-c\", \"exit 7\"]\nenv = { PORT = \"{port}\" }\nready = { http = \"/health\", timeout = \"5s\" }\n[load]\nto = \"dead\"\nrequests = 2\n",
    );
    let logs = dir.path().join("logs");
    let json = dir.path().join("s.json");
    let (logs_arg, json_arg) = (logs.display().to_string(), json.display().to_string());
    let out = traceforge(&[
        "explore",
        &file,
        "--seeds",
        "1..2",
        "--logs",
        &logs_arg,
        "--summary-json",
        &json_arg,
    ]);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("real clock: each seed plays in real time; slower"),
        "{shown}"
    );
    assert!(shown.contains("errors:  2\n"), "{shown}");
    assert!(
        shown.contains("seed 1: service `dead` exited before it was ready"),
        "{shown}"
    );
    assert!(text(&out.stderr).contains("every seed starts the scenario's services afresh"));
    // Each seed's services log in a folder of their own.
    assert!(
        logs.join("explore/seed-1/logs/dead-service/dead.log")
            .exists()
    );
    assert!(
        logs.join("explore/seed-2/logs/dead-service/dead.log")
            .exists()
    );
    let summary = read_json(&json);
    assert_eq!(summary["errors"][1]["seed"], 2);
    assert_eq!(summary["failed"], serde_json::json!([]));
}

#[test]
fn a_time_budget_stops_taking_seeds_and_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let json = dir.path().join("s.json");
    let json_arg = json.display().to_string();
    let started = Instant::now();
    let out = traceforge(&[
        "explore",
        "scenarios/outage-recovery-virtual.toml",
        "--seeds",
        "1..1000000",
        "--jobs",
        "2",
        "--time-budget",
        "300ms",
        "--no-shrink",
        "--summary-json",
        &json_arg,
    ]);
    assert!(started.elapsed() < Duration::from_secs(60));
    let shown = text(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{shown}\n{}",
        text(&out.stderr)
    );
    assert!(shown.contains("time budget reached"), "{shown}");
    let summary = read_json(&json);
    assert_eq!(summary["cut"], "time_budget");
    let tried = summary["seeds"]["tried"].as_u64().unwrap_or(0);
    assert!((1..1_000_000).contains(&tried), "{summary}");
    assert!(
        shown.contains(&format!("({tried} tried of 1000000)")),
        "{shown}"
    );
}

#[cfg(unix)]
#[test]
fn a_signal_stops_the_search_promptly_and_never_passes() {
    let mut child = support::bin()
        .args([
            "explore",
            "scenarios/outage-recovery-virtual.toml",
            "--seeds",
            "1..1000000",
            "--jobs",
            "2",
        ])
        .current_dir(support::root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    // The handlers are in place once it says what it explores.
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut lines = BufReader::new(stderr).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("explore said nothing"));
    assert!(
        first.starts_with("exploring outage-recovery-virtual"),
        "{first}"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success());
    let sent = Instant::now();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(sent.elapsed() < Duration::from_secs(10), "not prompt");
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{shown}\n{rest:?}");
    assert!(shown.contains("stopped by SIGINT: "), "{shown}");
    assert!(shown.contains("seeds:   1..1000000 ("), "{shown}");
}

/// Needs the shrinker (`explore::shrink`): the whole proof of the issue.
#[test]
fn the_first_failing_seed_shrinks_to_a_smaller_scenario_that_fails_the_same_way() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let json = dir.path().join("s.json");
    let out_dir = dir.path().join("min");
    let (json_arg, out_arg) = (json.display().to_string(), out_dir.display().to_string());
    // Never the repository's golden folder: a test writes nothing there.
    let golden_arg = dir.path().join("golden").display().to_string();
    let out = traceforge(&[
        "explore",
        RETRY_BUDGET,
        "--seeds",
        "1..200",
        "--jobs",
        "2",
        "--out",
        &out_arg,
        "--golden-dir",
        &golden_arg,
        "--summary-json",
        &json_arg,
    ]);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}\n{}", text(&out.stderr));
    assert!(shown.contains("    shrunk seed 5 in "), "{shown}");
    let summary = read_json(&json);
    let shrunk = &summary["shrunk"];
    assert_eq!(shrunk["seed"], 5, "{summary}");
    assert_eq!(shrunk["failing"][0], "success_rate", "{summary}");
    let min = out_dir.join("explore-retry-budget.min.toml");
    assert_eq!(shrunk["file"], min.display().to_string());
    let min_arg = min.display().to_string();
    let golden = shrunk["golden"]
        .as_str()
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(Path::new(golden).exists(), "{golden}");
    assert!(Path::new(golden).starts_with(dir.path()), "{golden}");

    // It validates, and played on its own it fails the same expectation.
    let valid = traceforge(&["validate", &min_arg]);
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid.stderr));
    // Its golden file is where `write` put it.
    let golden_dir = Path::new(golden)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let run = traceforge(&["run", &min_arg, "--golden-dir", &golden_dir]);
    let report = text(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{report}\n{}",
        text(&run.stderr)
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("success_rate") && l.contains("FAIL")),
        "{report}"
    );

    // Smaller: fewer requests, no larger probabilities, no more rules.
    let original = traceforge::scenario::load(&support::root().join(RETRY_BUDGET), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let small = traceforge::scenario::load(&min, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(small.seed, 5);
    let count = |s: &traceforge::scenario::Scenario| s.load.profile.fixed_count().unwrap_or(0);
    assert!(
        count(&small) < count(&original),
        "{} requests",
        count(&small)
    );
    assert!(small.faults.len() <= original.faults.len());
    for rule in &small.faults {
        let before = original
            .faults
            .iter()
            .find(|r| r.name == rule.name)
            .unwrap_or_else(|| panic!("a rule that was not there"));
        assert!(rule.probability <= before.probability, "{}", rule.name);
    }
}

/// Every way a scenario breaks gets its own minimal scenario: the first failing seed for its
/// first broken expectation, then, for each other expectation that broke, the first seed that
/// broke it, each in a file (and with a golden file) of its own.
#[test]
fn every_expectation_that_broke_is_shrunk_on_its_own() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let json = dir.path().join("s.json");
    let (out_arg, golden_arg, json_arg) = (
        dir.path().join("min").display().to_string(),
        dir.path().join("golden").display().to_string(),
        json.display().to_string(),
    );
    let out = traceforge(&[
        "explore",
        RETRY_BUDGET,
        "--seeds",
        "1..60",
        "--set",
        "expect.retries={max=5}",
        "--out",
        &out_arg,
        "--golden-dir",
        &golden_arg,
        "--summary-json",
        &json_arg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let summary = read_json(&json);
    let all = summary["shrunk_all"]
        .as_array()
        .unwrap_or_else(|| panic!("{summary}"));
    let shrunk: Vec<(u64, String, String)> = all
        .iter()
        .map(|s| {
            (
                s["seed"].as_u64().unwrap_or_default(),
                s["failing"][0].as_str().unwrap_or_default().to_string(),
                s["file"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // `retries` breaks first (seed 4); `success_rate` first breaks at seed 5.
    assert_eq!(
        shrunk
            .iter()
            .map(|(seed, name, _)| (*seed, name.as_str()))
            .collect::<Vec<_>>(),
        [(4, "retries"), (5, "success_rate")],
        "{summary}"
    );
    assert_eq!(summary["shrunk"], all[0]);
    assert!(shrunk[0].2.ends_with("explore-retry-budget.min.toml"));
    assert!(
        shrunk[1]
            .2
            .ends_with("explore-retry-budget.success-rate.min.toml")
    );
    for (_, name, file) in &shrunk {
        let run = traceforge(&["run", file, "--golden-dir", &golden_arg]);
        let shown = text(&run.stdout);
        assert_eq!(run.status.code(), Some(1), "{file}: {shown}");
        assert!(shown.contains("golden: matches"), "{file}: {shown}");
        assert!(shown.contains("FAIL explore-retry-budget"), "{shown}");
        assert!(shown.contains(name.as_str()), "{file}: {shown}");
    }
}
