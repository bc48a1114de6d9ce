//! The HTML report (`run --report`, `traceforge report`) as a person sees it: the same bytes from a
//! run, from its saved outcomes and from a sharded run's bundles; opened in headless Chromium with
//! no console error, no request beyond the file, and every chart drawn; services in the loop get
//! their topology.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{self, bin, root};

const OUTAGE: &str = "scenarios/outage-recovery-virtual.toml";

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A scratch golden folder holding the shipped golden file of `name`, so that nothing a test
/// does can write into the repository's.
fn golden(dir: &Path, name: &str) -> PathBuf {
    let golden = dir.join("golden");
    std::fs::create_dir_all(&golden).unwrap();
    let snap = format!("{name}.snap");
    std::fs::copy(root().join("golden").join(&snap), golden.join(&snap)).unwrap();
    golden
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `run OUTAGE --report` into `dir/name`, with more flags.
fn run_report(dir: &Path, name: &str, more: &[&str]) -> String {
    let report = dir.join(name);
    ok(&bin()
        .current_dir(root())
        .args(["run", OUTAGE, "--golden-dir"])
        .arg(dir.join("golden"))
        .arg("--report")
        .arg(&report)
        .args(more)
        .env("CI", "true")
        .output()
        .unwrap());
    read(&report)
}

#[test]
fn a_virtual_run_has_one_report_from_the_run_its_outcomes_and_its_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    golden(d, "outage-recovery-virtual");
    let outcomes = d.join("outcomes.jsonl");
    let outcomes = outcomes.to_str().unwrap();
    let first = run_report(d, "run.html", &["--output", outcomes, "--format", "jsonl"]);
    assert!(first.len() < 2 * 1024 * 1024, "{} bytes", first.len());
    for part in [
        "<h2>outage-recovery-virtual <span class=\"verdict pass\">PASS</span>",
        "seed 2024",
        "virtual clock",
        "data-golden=\"matched\"",
        "<td>faults.outage</td><td>&gt;= 300</td>",
        "data-chart=\"latency\"",
        "data-chart=\"requests\"",
        "data-chart=\"percentiles\"",
        "<td>outage</td><td>error</td>",
    ] {
        assert!(first.contains(part), "no {part:?} in the report");
    }
    assert!(!first.contains("data-chart=\"topology\""));
    assert!(
        !first.contains("http://") && !first.contains("https://") || !first.contains("<script")
    );
    assert!(!first.contains("<script"), "a report needs no script");

    // Run after run: the same bytes.
    assert!(
        run_report(d, "again.html", &[]) == first,
        "two runs, two reports"
    );

    // From the saved outcomes: the same bytes.
    let rebuilt = d.join("rebuilt.html");
    let stdout = ok(&bin()
        .current_dir(root())
        .args(["report", outcomes, "--scenario", OUTAGE, "--golden-dir"])
        .arg(d.join("golden"))
        .arg("-o")
        .arg(&rebuilt)
        .output()
        .unwrap());
    assert!(stdout.contains("outage-recovery-virtual: pass"), "{stdout}");
    assert!(
        read(&rebuilt) == first,
        "the report from the outcomes differs"
    );

    // From the bundles of two shards: the same bytes again.
    let mut bundles = Vec::new();
    for k in 0..2 {
        let bundle = d.join(format!("shard-{k}.jsonl"));
        ok(&bin()
            .current_dir(root())
            .args(["run", OUTAGE, "--shard", &format!("{k}/2"), "--bundle"])
            .arg(&bundle)
            .arg("--golden-dir")
            .arg(d.join("golden"))
            .env("CI", "true")
            .output()
            .unwrap());
        bundles.push(bundle);
    }
    let merged = d.join("merged.html");
    ok(&bin()
        .current_dir(root())
        .arg("report")
        .args(&bundles)
        .arg("--golden-dir")
        .arg(d.join("golden"))
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap());
    assert!(
        read(&merged) == first,
        "the report from the bundles differs"
    );

    // And `merge --report`, which judges the bundles: the same bytes once more.
    let judged = d.join("judged.html");
    ok(&bin()
        .current_dir(root())
        .arg("merge")
        .args(&bundles)
        .arg("--golden-dir")
        .arg(d.join("golden"))
        .arg("--report")
        .arg(&judged)
        .env("CI", "true")
        .output()
        .unwrap());
    assert!(
        read(&judged) == first,
        "the report of merge --report differs"
    );
}

#[test]
fn report_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = dir.path().join("o.csv");
    std::fs::write(&outcomes, "index,method\n0,GET\n").unwrap();
    let out = bin()
        .current_dir(root())
        .arg("report")
        .arg(&outcomes)
        .arg("-o")
        .arg(dir.path().join("r.html"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--scenario FILE"));
    let out = bin()
        .current_dir(root())
        .arg("report")
        .arg(&outcomes)
        .args(["--scenario", OUTAGE, "-o"])
        .arg(dir.path().join("r.html"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("o.csv:1: CSV outcomes cannot be read back"),
        "{stderr}"
    );
    assert!(!dir.path().join("r.html").exists());
}

/// Why Chromium cannot be driven here, if it cannot.
fn chromium() -> Result<(), String> {
    let found = ["chromium", "chromium-browser"].iter().any(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        return Err("no chromium (apt-get install -y chromium)".into());
    }
    support::python_package("websockets", "websockets")
}

#[test]
fn a_person_sees_every_chart_of_the_outage_in_chromium() {
    if let Err(why) = chromium() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    golden(dir.path(), "outage-recovery-virtual");
    run_report(dir.path(), "report.html", &[]);
    let shot =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-outage-recovery-virtual.png");
    let out = std::process::Command::new("python3")
        .arg(root().join("tests/report_browser.py"))
        .arg(dir.path().join("report.html"))
        .arg(&shot)
        .output()
        .unwrap();
    let stdout = ok(&out);
    let page: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
    assert_eq!(
        page["requests"],
        serde_json::json!([]),
        "a self-contained page fetches nothing: {page}"
    );
    assert_eq!(page["verdicts"], serde_json::json!(["pass"]), "{page}");
    let charts = page["charts"].as_array().unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["latency", "requests", "percentiles"], "{page}");
    for c in charts {
        assert!(c["width"].as_f64().unwrap() > 600.0, "{c}");
        assert!(c["height"].as_f64().unwrap() > 300.0, "{c}");
        assert!(c["shapes"].as_u64().unwrap() > 50, "{c}");
        assert!(c["texts"].as_u64().unwrap() > 10, "{c}");
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

#[cfg(unix)]
#[test]
fn services_in_the_loop_get_their_topology_and_calls_per_request() {
    let dir = tempfile::tempdir().unwrap();
    golden(dir.path(), "checkout-payments");
    let report = dir.path().join("report.html");
    ok(&bin()
        .current_dir(root())
        .args(["run", "scenarios/checkout-payments.toml", "--golden-dir"])
        .arg(dir.path().join("golden"))
        .arg("--logs")
        .arg(dir.path().join("logs"))
        .arg("--report")
        .arg(&report)
        .env("CI", "true")
        .output()
        .unwrap());
    let html = read(&report);
    for part in [
        "data-chart=\"topology\"",
        ">\ncheckout\n</text>",
        ">\npayments\n</text>",
        "200 requests",
        // minijinja escapes `/` in HTML.
        "<td>payments&#x2f;pay-503</td><td>error</td>",
        "<h3>Calls through the named proxies</h3>",
    ] {
        assert!(html.contains(part), "no {part:?} in the report");
    }
}
