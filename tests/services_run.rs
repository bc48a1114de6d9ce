//! Services in the loop, played end to end through real processes and real sockets: the shipped
//! checkout example behind a named payments proxy (`scenarios/checkout-payments.toml`), its
//! determinism across concurrencies and runs, the expectations that catch a broken service, the
//! warning for a service that drops the trace context, a client command as the load, and every way
//! a run with services can end leaving no process behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use traceforge::golden::Comparison;
use traceforge::runner::{self, RunOptions, RunReport, RunVerdict};
use traceforge::scenario::{self, Override};

use crate::support::{self, PATIENCE};

fn shipped(name: &str) -> PathBuf {
    support::root().join("scenarios").join(name)
}

fn overrides(set: &[&str]) -> Vec<Override> {
    set.iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

/// Plays a scenario file against the repository's golden files, writing nothing.
fn play(file: &Path, set: &[&str], logs: &Path) -> RunReport {
    let scenario =
        scenario::load(file, &overrides(set)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut options = RunOptions::new(support::root().join("golden")).keeping_outcomes();
    options.logs = logs.to_path_buf();
    runner::play(&scenario, &options).unwrap_or_else(|e| panic!("{e}"))
}

fn failed_names(report: &RunReport) -> Vec<String> {
    report
        .expectations
        .iter()
        .filter(|v| !v.passed)
        .map(|v| v.name.clone())
        .collect()
}

#[test]
fn the_checkout_golden_is_the_same_at_concurrency_1_8_and_64_and_run_after_run() {
    let logs = tempfile::tempdir().unwrap();
    let file = shipped("checkout-payments.toml");
    let mut bodies = Vec::new();
    for concurrency in ["1", "8", "64", "64"] {
        let set = format!("load.concurrency={concurrency}");
        let report = play(&file, &[&set], logs.path());
        assert_eq!(
            report.verdict(),
            RunVerdict::Passed,
            "at concurrency {concurrency}: {:?}\n{}",
            report.expectations,
            report.body.as_deref().unwrap_or_default()
        );
        assert!(
            matches!(report.golden, Some(Comparison::Matched { .. })),
            "{:?}",
            report.golden
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // Every request's charges are in its outcome, in order, and the service retried the 503s.
        let amplified = report
            .outcomes
            .iter()
            .filter(|o| o.calls.get("payments").is_some_and(|c| c.len() > 1))
            .count();
        assert!(amplified > 0, "no request needed a retry of its charge");
        for o in &report.outcomes {
            let calls = &o.calls["payments"];
            let ordinals: Vec<u32> = calls.iter().map(|c| c.ordinal).collect();
            assert_eq!(ordinals, (0..calls.len() as u32).collect::<Vec<_>>());
            // The service's answer follows from its calls: 200 once a charge went through.
            let charged = calls.iter().any(|c| c.status == Some(200));
            assert_eq!(o.status, Some(if charged { 200 } else { 502 }), "{o:?}");
        }
        bodies.push(report.body.unwrap_or_default());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn calls_per_request_catches_a_service_that_retries_too_much() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::bin()
        .args(["run", "--golden-dir"])
        .arg(dir.path())
        .arg("--logs")
        .arg(dir.path())
        .arg(shipped("checkout-payments.toml"))
        .args([
            "--set",
            "services.0.env.RETRIES=\"10\"",
            "--set",
            "services.0.env.BACKOFF_MS=\"1\"",
            "--set",
            "proxies.0.faults.0.probability=0.6",
        ])
        .env_remove("CI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("proxies.payments.calls_per_request"))
        .unwrap_or_else(|| panic!("no verdict line for calls_per_request:\n{stdout}"));
    assert!(line.contains("<= 3"), "{line}");
    assert!(line.contains("FAIL"), "{line}");
}

#[test]
fn a_service_that_drops_the_trace_context_is_warned_about_and_its_calls_are_marked() {
    let logs = tempfile::tempdir().unwrap();
    let report = play(
        &shipped("checkout-payments.toml"),
        &["services.0.env.PROPAGATE=\"0\"", "load.requests=20"],
        logs.path(),
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].starts_with("payments: "));
    assert!(report.warnings[0].contains("traceparent"));
    assert!(report.outcomes.iter().all(|o| o.calls.is_empty()));
    let body = report.body.clone().unwrap_or_default();
    let marked = body
        .lines()
        .filter(|l| l.contains("decided by arrival order: not deterministic"))
        .count();
    assert!(marked >= 20, "{body}");
    // Nothing can be said about amplification without attribution.
    let failed = failed_names(&report);
    assert!(
        failed.contains(&"proxies.payments.calls_per_request".to_string()),
        "{failed:?}"
    );
}

#[test]
fn a_proxy_nobody_called_fails_the_run_and_names_its_placeholder() {
    let logs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bypass.toml");
    let text = std::fs::read_to_string(shipped("checkout-payments.toml"))
        .unwrap()
        .replace(
            "{scenario_dir}",
            &support::root().join("scenarios").display().to_string(),
        )
        .replace("name = \"checkout-payments\"", "name = \"bypass\"")
        + "\n[[proxies]]\nname = \"inventory\"\n";
    std::fs::write(&file, text).unwrap();
    let report = play(&file, &["load.requests=5"], logs.path());
    let unseen = report
        .expectations
        .iter()
        .find(|v| v.name == "proxies.inventory")
        .unwrap_or_else(|| panic!("{:?}", report.expectations));
    assert!(!unseen.passed);
    assert!(unseen.measured.contains("{proxies.inventory.url}"));
    assert!(unseen.measured.contains("bypassed"));
    assert!(matches!(report.verdict(), RunVerdict::Failed(_)));
}

#[test]
fn a_client_command_is_the_load_and_its_exit_status_is_part_of_the_verdict() {
    let logs = tempfile::tempdir().unwrap();
    let report = play(&shipped("checkout-client.toml"), &[], logs.path());
    assert_eq!(
        report.verdict(),
        RunVerdict::Passed,
        "{:?}",
        report.expectations
    );
    let client = report
        .expectations
        .iter()
        .find(|v| v.name == "load.command")
        .unwrap_or_else(|| panic!("{:?}", report.expectations));
    assert!(client.passed);
    assert!(report.summary.proxies["payments"].calls >= 20);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The client's own trace contexts key the calls: no arrival-ordered line.
    let body = report.body.clone().unwrap_or_default();
    assert!(!body.contains("arrival #"), "{body}");
    assert!(body.contains("payments: trace "), "{body}");
    assert!(report.logs.iter().any(|(name, _)| name == "load"));

    let failing = play(
        &shipped("checkout-client.toml"),
        &["load.env.MIN_SUCCESS=\"1.01\""],
        logs.path(),
    );
    let client = failing
        .expectations
        .iter()
        .find(|v| v.name == "load.command")
        .unwrap_or_else(|| panic!("{:?}", failing.expectations));
    assert!(!client.passed);
    assert!(client.measured.contains("FAIL"), "{}", client.measured);
    // The calls are keyed on the client's own trace contexts: the same on every run.
    assert_eq!(failing.body, report.body);
}

// ---- every way out leaves no process behind ----

/// A scenario whose only service runs `script` (Python) through `sh`, which first appends its pid
/// (the process group's leader, once `exec`ed) to `pids`.
fn scenario_with(dir: &Path, name: &str, script: &str, extra: &str) -> PathBuf {
    let script_path = dir.join(format!("{name}.py"));
    std::fs::write(&script_path, script).unwrap();
    let pids = dir.join(format!("{name}.pids"));
    let file = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"name = "{name}"
seed = 1

[[services]]
name = "svc"
command = ["sh", "-c", "echo $$ >> '{pids}'; exec python3 '{script}'"]
env = {{ PORT = "{{port}}" }}
{extra}

[[proxies]]
name = "deps"
[expect.proxies.deps]
requests = {{ min = 0 }}

[load]
to = "svc"
requests = 400
concurrency = 4
"#,
        pids = pids.display(),
        script = script_path.display(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A server that answers `/` with 200 and exits with status 9 after `after` requests (never, with 0).
fn dying_server(after: u32) -> String {
    format!(
        r#"
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
served = 0
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        global served
        served += 1
        if {after} and served > {after}:
            print("giving up after", served - 1, "requests", flush=True)
            os._exit(9)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
print("listening", flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#
    )
}

fn pids(dir: &Path, name: &str) -> Vec<u32> {
    std::fs::read_to_string(dir.join(format!("{name}.pids")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// True while `pid` is a live process (a zombie waiting for its reaper does not count).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn run_cli(file: &Path, dir: &Path, extra: &[&str]) -> Output {
    support::bin()
        .args(["run", "--golden-dir"])
        .arg(dir)
        .arg("--logs")
        .arg(dir)
        .arg(file)
        .args(extra)
        .env_remove("CI")
        .output()
        .unwrap()
}

#[test]
fn a_service_that_exits_at_start_is_exit_3_with_its_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_with(
        dir.path(),
        "early",
        "print('cannot read config: no such file', flush=True)\nraise SystemExit(4)\n",
        "",
    );
    let out = run_cli(&file, dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("service `svc`"), "{stderr}");
    assert!(stderr.contains("exit status: 4"), "{stderr}");
    assert!(stderr.contains("cannot read config"), "{stderr}");
    for pid in pids(dir.path(), "early") {
        assert!(!alive(pid), "{pid} outlived the run");
    }
}

#[test]
fn a_service_never_ready_is_stopped_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_with(
        dir.path(),
        "sleepy",
        "import time\nprint('warming up', flush=True)\ntime.sleep(120)\n",
        "ready = { tcp = true, timeout = \"500ms\" }",
    );
    let started = Instant::now();
    let out = run_cli(&file, dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("was not ready within"), "{stderr}");
    assert!(stderr.contains("warming up"), "{stderr}");
    assert!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
    let pids = pids(dir.path(), "sleepy");
    assert_eq!(pids.len(), 1);
    assert!(!alive(pids[0]), "{} outlived the run", pids[0]);
}

#[test]
fn a_service_that_dies_mid_run_is_exit_3_and_the_outputs_are_complete() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_with(
        dir.path(),
        "dying",
        &dying_server(25),
        "ready = { log = \"listening\" }",
    );
    let output = dir.path().join("out.json");
    let junit = dir.path().join("junit.xml");
    let summary = dir.path().join("summary.json");
    let out = run_cli(
        &file,
        dir.path(),
        &[
            "--output",
            output.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("service `svc`"), "{stderr}");
    assert!(stderr.contains("exit status: 9"), "{stderr}");
    assert!(stderr.contains("giving up after 25 requests"), "{stderr}");
    let outcomes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert!(outcomes.as_array().is_some_and(|a| a.len() >= 25));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(doc["scenarios"][0]["result"], "error");
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<error"));
    for pid in pids(dir.path(), "dying") {
        assert!(!alive(pid), "{pid} outlived the run");
    }
}

#[test]
fn ctrl_c_stops_the_run_and_every_service_it_started() {
    let dir = tempfile::tempdir().unwrap();
    // A service that answers slowly, so the run is mid-load when the signal comes.
    let script = r#"
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        print("request", flush=True)
        time.sleep(0.5)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
print("listening", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
    let file = scenario_with(
        dir.path(),
        "slow",
        script,
        "ready = { log = \"listening\" }",
    );
    let output = dir.path().join("out.json");
    let mut child = support::bin()
        .args(["run", "--golden-dir"])
        .arg(dir.path())
        .arg("--logs")
        .arg(dir.path())
        .arg(&file)
        .arg("--output")
        .arg(&output)
        .env_remove("CI")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The service's log says when the load has reached it.
    let log = dir.path().join("slow").join("svc.log");
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("request")) {
        assert!(
            Instant::now() < deadline,
            "the load never reached the service"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
    let outcomes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert!(outcomes.is_array());
    let pids = pids(dir.path(), "slow");
    assert_eq!(pids.len(), 1);
    assert!(!alive(pids[0]), "{} outlived the run", pids[0]);
}

/// The protocol scenarios hold their golden files whatever the concurrency: the checkout service
/// charging over TLS at 1 and 64 load workers, and the gRPC client with 1 and 8 calls in flight.
/// Each call's faults are keyed on its request (or its trace context), never on arrival order.
#[test]
fn the_https_and_grpc_goldens_are_the_same_at_any_concurrency() {
    let logs = tempfile::tempdir().unwrap();
    let https = shipped("https-dependency.toml");
    for concurrency in ["1", "64"] {
        let set = format!("load.concurrency={concurrency}");
        let report = play(&https, &[&set], logs.path());
        assert_eq!(
            report.verdict(),
            RunVerdict::Passed,
            "https-dependency at concurrency {concurrency}: {:?}\n{:?}\n{}",
            report.expectations,
            report.golden,
            report.body.as_deref().unwrap_or_default()
        );
    }
    if let Err(why) = support::python_package("grpc", "grpcio") {
        eprintln!("the gRPC half is skipped: {why}");
        return;
    }
    let grpc = shipped("grpc-unavailable.toml");
    for concurrency in ["1", "8"] {
        let set = format!("load.env.CONCURRENCY=\"{concurrency}\"");
        let report = play(&grpc, &[&set], logs.path());
        assert_eq!(
            report.verdict(),
            RunVerdict::Passed,
            "grpc-unavailable with {concurrency} calls in flight: {:?}\n{:?}\n{}",
            report.expectations,
            report.golden,
            report.body.as_deref().unwrap_or_default()
        );
        let log = logs.path().join("grpc-unavailable").join("load.log");
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            log.contains(&format!("{concurrency} in flight at most")),
            "{log}"
        );
    }
}
