//! Shrinking a failing seed (`traceforge::explore::shrink`): real plays on the virtual clock, the
//! written `.min.toml` loaded and played again, its golden file checked by the binary, and every
//! shipped scenario's spec surviving the TOML round trip the shrinker's variants go through.

use std::path::{Path, PathBuf};

use traceforge::explore::shrink::{self, Step};
use traceforge::explore::{self, Base, Trial};
use traceforge::spec::{FaultEntry, FaultSpec, ScenarioSpec};

use crate::support::{bin, root, scenario_files};

/// 60 requests, 20% of them answered 503 by the proxy, one retry: a request fails when both of
/// its attempts draw a 503 (4%), so most seeds break `success_rate = 1.0` and some do not. The
/// delay rule has nothing to do with it.
const FLAKY: &str = r#"
name = "shrink-flaky"
description = "A 503 two attempts in a row breaks a perfect success rate"
seed = 1

[run]
clock = "virtual"

[upstream]
routes = [{ path = "/api", latency = "10ms", body = "ok" }]

[[faults]]
name = "api-503"
kind = "error"
status = 503
probability = 0.2

[[faults]]
name = "jitter"
kind = "delay"
delay = "1ms..5ms"
probability = 0.5

[load]
requests = 60
concurrency = 4
retries = 1
retry_backoff = "10ms"
targets = [{ path = "/api" }]

[expect]
success_rate = 1.0
latency = { p50 = "< 1s" }
"#;

fn base(dir: &Path) -> Base {
    let file = dir.join("shrink-flaky.toml");
    std::fs::write(&file, FLAKY).unwrap_or_else(|e| panic!("{e}"));
    Base::read(&file, Vec::new())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn rule<'a>(spec: &'a ScenarioSpec, name: &str) -> Option<&'a FaultSpec> {
    spec.faults.iter().find_map(|e| {
        let t = match e {
            FaultEntry::Table(t) => t,
            FaultEntry::Compact { spec, .. } => spec,
        };
        (t.name.as_deref() == Some(name)).then_some(t)
    })
}

/// The seeds of 0..20 that break the scenario, and those that hold.
fn scan(base: &Base, scratch: &Path) -> (Vec<u64>, Vec<u64>) {
    let (mut broke, mut held) = (Vec::new(), Vec::new());
    for seed in 0..20 {
        let scenario = base.with_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        match explore::trial(&scenario, scratch) {
            Trial::Held => held.push(seed),
            Trial::Broke(v) => {
                assert_eq!(v[0].name, "success_rate");
                broke.push(seed);
            }
            Trial::Error(e) => panic!("seed {seed}: {e}"),
        }
    }
    (broke, held)
}

#[test]
fn a_failing_seed_shrinks_to_a_smaller_scenario_that_fails_the_same_way() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let scratch = work.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
    let scenarios = work.path().join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap_or_else(|e| panic!("{e}"));
    let base = base(&scenarios);

    // Deterministic: the same seeds break every time (pinned).
    let (broke, held) = scan(&base, &scratch);
    assert_eq!(
        broke,
        vec![
            0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19
        ]
    );
    assert_eq!(held, vec![6, 10]);
    let seed = broke[0];

    let mut steps: Vec<Step> = Vec::new();
    let shrunk = shrink::shrink(&base, seed, &scratch, &mut |s| steps.push(s.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = steps.iter().map(|s| s.what.as_str()).collect();

    // Smaller: fewer requests, the unrelated rule gone, no larger probability or retries.
    let requests = shrunk.spec.load.requests.unwrap_or(0);
    assert!(
        (1..60).contains(&requests),
        "{requests} requests: {lines:#?}"
    );
    assert!(rule(&shrunk.spec, "jitter").is_none(), "{lines:#?}");
    let p = rule(&shrunk.spec, "api-503")
        .and_then(|r| r.probability)
        .and_then(|p| p.fixed())
        .unwrap_or_else(|| panic!("api-503 is needed: {lines:#?}"));
    assert!(p <= 0.2, "probability {p}");
    assert!(shrunk.spec.load.retries.unwrap_or(0) <= 1);
    assert_eq!(shrunk.seed, seed);
    assert_eq!(shrunk.spec.seed, seed);
    assert_eq!(shrunk.spec.name, "shrink-flaky-min");
    assert_eq!(shrunk.failing[0], "success_rate");
    assert!(shrunk.steps > 1 && shrunk.steps <= shrink::MAX_TRIALS);
    // Every step was reported, kept or not, and the kept ones are what was removed.
    assert!(
        lines.iter().any(|l| l.starts_with("requests 60 -> 30")),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"rule `jitter` dropped: still fails"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("rule `api-503` dropped: `success_rate` holds")),
        "{lines:#?}"
    );
    assert!(steps.iter().any(|s| !s.kept));
    // The last step plays the minimal scenario as written.
    let last = steps.last().map(|s| s.what.as_str()).unwrap_or_default();
    assert!(
        last.starts_with("shrink-flaky-min as written breaks `success_rate` (measured "),
        "{last}"
    );
    assert!(
        shrunk
            .removed
            .contains(&format!("requests 60 -> {requests}"))
    );
    assert!(
        shrunk
            .removed
            .contains(&"rule `jitter` dropped".to_string())
    );

    // The header says where it came from, what fails and what went.
    let header: Vec<&str> = shrunk
        .text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect();
    assert!(
        header[0].starts_with("# Shrunk by traceforge explore from "),
        "{header:#?}"
    );
    assert!(header[0].ends_with(&format!("shrink-flaky.toml, seed {seed}.")));
    assert!(
        header[1].starts_with("# Fails: success_rate (measured "),
        "{header:#?}"
    );
    assert!(header[1].ends_with("expected >= 100.0%)"), "{header:#?}");
    assert!(
        header
            .iter()
            .any(|l| l.starts_with("# Removed: requests 60 -> "))
    );
    assert!(
        header
            .iter()
            .any(|l| l.contains("fails until the bug is fixed"))
    );

    // Written, loaded as a file and played again: the same expectation breaks.
    let golden = work.path().join("golden");
    let (file, snap) = shrink::write_with_golden(&shrunk, &base, &scenarios, &golden)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file, scenarios.join("shrink-flaky.min.toml"));
    assert_eq!(snap, golden.join("shrink-flaky-min.snap"));
    let loaded = traceforge::scenario::load(&file, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.seed, seed);
    assert_eq!(loaded.spec.load.requests, Some(requests));
    let again = explore::trial(&loaded, &scratch);
    assert_eq!(again.broken().first(), Some(&"success_rate"), "{again:?}");
    assert_eq!(
        again.broken(),
        shrunk
            .failing
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    // `traceforge run` on it: the golden file matches, the expectation fails, exit 1.
    let run = bin()
        .arg("run")
        .arg(&file)
        .arg("--golden-dir")
        .arg(&golden)
        .current_dir(work.path())
        .env_remove("CI")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("golden: matches {}", snap.display())),
        "{stdout}\n{stderr}"
    );
    let all = format!("{stdout}{stderr}").to_lowercase();
    assert!(!all.contains("mismatch"), "{stdout}\n{stderr}");
    assert!(!golden.join("shrink-flaky-min.snap.new").exists());
    assert!(all.contains("success_rate"), "{stdout}\n{stderr}");

    // Run from the scenario's project folder, `write` puts the golden file where `run` looks.
    let here = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        shrink::golden_dir_for(&file),
        if here.join("golden").is_dir() {
            PathBuf::from("golden")
        } else {
            work.path().join("scenarios").join("..").join("golden")
        }
    );
}

#[test]
fn a_seed_that_holds_is_refused() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let base = base(work.path());
    let mut steps = 0;
    let err = shrink::shrink(&base, 6, work.path(), &mut |_| steps += 1)
        .err()
        .unwrap_or_else(|| panic!("seed 6 holds: shrinking it must fail"));
    assert!(err.contains("seed 6 does not fail"), "{err}");
    assert!(err.contains("every expectation held"), "{err}");
    assert_eq!(steps, 0);
}

/// What `.min.toml` files are made of: every shipped scenario's spec, written as TOML and read
/// again, is the same scenario.
#[test]
fn every_shipped_scenario_round_trips_through_its_spec() {
    let mut differ = Vec::new();
    for file in scenario_files() {
        let (base, scenario) =
            Base::read(&file, Vec::new()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        match base.from_spec(&scenario.spec) {
            Ok(again) if again.digest() == scenario.digest() => {}
            Ok(_) => differ.push(format!("{}: another digest", file.display())),
            Err(e) => differ.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
    assert!(root().join("scenarios").is_dir());
}

/// An open loop given as rate x duration is written as the same requests, then cut; a rule a phase
/// and an expectation name goes with both.
#[test]
fn an_open_loop_shrinks_by_requests_and_a_dropped_rule_takes_its_phase_and_expectation() {
    let text = r#"
name = "shrink-window"
seed = 3
faults = [
  { name = "outage", kind = "error", status = 503, from = "2s", until = "3s" },
  "delay:1ms:0.5",
]

[run]
clock = "virtual"

[upstream]
routes = [{ path = "/api", latency = "5ms" }]

[[phases]]
until = 50
enable = ["delay-2"]

[load]
rate = 10.0
duration = "10s"
targets = [{ path = "/api" }]

[expect]
success_rate = 0.95
faults = { "delay-2" = { min = 1 } }
"#;
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = work.path().join("window.toml");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let (base, _) = Base::read(&file, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let mut steps: Vec<Step> = Vec::new();
    let shrunk = shrink::shrink(&base, 3, work.path(), &mut |s| steps.push(s.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = steps.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(
        lines[0], "duration 10s at rate 10/s -> requests 100: still fails",
        "{lines:#?}"
    );
    assert!(shrunk.spec.load.duration.is_none());
    let requests = shrunk.spec.load.requests.unwrap_or(0);
    assert!((1..100).contains(&requests), "{requests}: {lines:#?}");
    // A lower rate puts an early request in the outage: fewer requests are needed.
    let rate = shrunk.spec.load.rate.unwrap_or(f64::MAX);
    assert!(rate < 10.0, "{rate}");
    assert!(
        shrunk.removed.contains(&format!("rate 10 -> {rate}")),
        "{:?}",
        shrunk.removed
    );
    assert!(rule(&shrunk.spec, "delay-2").is_none(), "{lines:#?}");
    assert!(rule(&shrunk.spec, "outage").is_some(), "{lines:#?}");
    assert!(shrunk.spec.phases.is_empty());
    assert!(shrunk.spec.expect.faults.is_empty());
    assert_eq!(shrunk.failing, vec!["success_rate".to_string()]);
    assert!(
        shrunk.removed[0].starts_with("duration 10s at rate 10/s -> requests "),
        "{:?}",
        shrunk.removed
    );
    assert!(
        shrunk
            .removed
            .contains(&"rule `delay-2` dropped".to_string())
    );
    // The text validates and plays the same.
    let again = traceforge::scenario::parse_str("min.toml", &shrunk.text, &[])
        .unwrap_or_else(|e| panic!("{e}\n{}", shrunk.text));
    assert_eq!(
        explore::trial(&again, work.path()).broken(),
        vec!["success_rate"]
    );
}

/// Rules of named proxies shrink too; on the real clock the shrinker says it is slow, and
/// request-index rules (`every`) replay exactly.
#[test]
fn rules_of_named_proxies_shrink_on_the_real_clock() {
    let text = r#"
name = "shrink-proxies"
seed = 1

[[proxies]]
name = "payments"
upstream = { routes = [{ path = "/charge" }] }

[[proxies.faults]]
name = "slow"
kind = "delay"
delay = "1ms"
first = 2

[[proxies.faults]]
name = "pay-503"
kind = "error"
status = 503
every = 4

[[proxies]]
name = "stock"
upstream = { routes = [{ path = "/stock" }] }

[[proxies.faults]]
name = "slow"
kind = "delay"
delay = "1ms"

[[phases]]
until = 10
enable = ["slow"]

[load]
to = "payments"
requests = 20
concurrency = 2
targets = [{ path = "/charge" }]

[expect]
success_rate = 1.0
"#;
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = work.path().join("proxies.toml");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let (base, _) = Base::read(&file, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let mut steps: Vec<Step> = Vec::new();
    let shrunk = shrink::shrink(&base, 1, work.path(), &mut |s| steps.push(s.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = steps.iter().map(|s| s.what.as_str()).collect();
    assert!(
        lines[0].starts_with("the scenario runs on the real clock"),
        "{lines:#?}"
    );
    assert!(!steps[0].kept);
    let requests = shrunk.spec.load.requests.unwrap_or(0);
    assert!(requests < 20, "{requests}: {lines:#?}");
    let payments = &shrunk.spec.proxies[0];
    let names: Vec<String> = payments
        .faults
        .iter()
        .filter_map(|e| match e {
            FaultEntry::Table(t) => t.name.clone(),
            FaultEntry::Compact { spec, .. } => spec.name.clone(),
        })
        .collect();
    assert_eq!(names, vec!["pay-503".to_string()], "{lines:#?}");
    assert!(shrunk.spec.proxies[1].faults.is_empty(), "{lines:#?}");
    // The phase went with the last rule named `slow`.
    assert!(shrunk.spec.phases.is_empty(), "{lines:#?}");
    assert!(
        shrunk
            .removed
            .contains(&"rule `slow` of proxy `payments` dropped".to_string()),
        "{:?}",
        shrunk.removed
    );
    assert!(
        shrunk
            .removed
            .contains(&"rule `slow` of proxy `stock` dropped".to_string())
    );
}
