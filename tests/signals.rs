//! Stopping a run: SIGINT, SIGTERM and SIGHUP end `run` and `load` promptly even while every
//! request waits on a long backoff or a hung server, the outputs are complete and valid in every
//! format, the verdict is STOPPED and the exit code 3; a second signal still leaves valid files.
//! Also: a closed stdout does not panic, and a panic never passes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::support::{self, PATIENCE};

/// Requests per stopped run; every one of them is parked when the signal comes.
const REQUESTS: usize = 4;

/// A server that answers 503 to everything (so every request waits for its retry) and reports
/// each request it sees; or, with `hang`, one that never answers.
async fn parking_server(
    hang: bool,
) -> (traceforge::server::Listening, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(tx);
    let (listening, _) = support::serve(move |_seen| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(());
            if hang {
                std::future::pending::<()>().await;
            }
            support::respond(503, &[], "down")
        }
    })
    .await;
    (listening, rx)
}

/// Waits until the server has seen `n` requests: then every request of the run is parked.
async fn wait_for_requests(seen: &mut mpsc::UnboundedReceiver<()>, n: usize) {
    for i in 0..n {
        tokio::time::timeout(PATIENCE, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} of {n} requests reached the server"));
    }
}

fn scenario(dir: &Path, upstream: &str, timeout: &str) -> PathBuf {
    let file = dir.join("parked.toml");
    let text = format!(
        r#"name = "parked"
seed = 3

[upstream]
url = "{upstream}"

[load]
requests = {REQUESTS}
concurrency = {REQUESTS}
retries = 2
retry_backoff = "10m"
timeout = "{timeout}"

[expect]
success_rate = 0.5
"#
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    file
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success(), "kill -{name} failed");
}

/// Waits for the child without blocking the runtime that serves its upstream.
async fn finish(child: Child) -> Output {
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    tokio::time::timeout(PATIENCE, waited)
        .await
        .unwrap_or_else(|_| panic!("the process did not exit after the signal"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The outcomes of a file in `format`, as JSON values, checking the file is complete and valid.
fn read_outcomes(path: &Path, format: &str) -> Vec<serde_json::Value> {
    let body = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    match format {
        "json" => serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{body}")),
        "jsonl" => {
            assert!(
                body.is_empty() || body.ends_with('\n'),
                "partial line:\n{body}"
            );
            body.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
        "csv" => {
            let mut reader = csv::Reader::from_reader(body.as_bytes());
            let header: Vec<String> = reader
                .headers()
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(String::from)
                .collect();
            reader
                .records()
                .map(|r| {
                    let r = r.unwrap_or_else(|e| panic!("ragged CSV ({e}):\n{body}"));
                    assert_eq!(r.len(), header.len(), "ragged CSV:\n{body}");
                    let error = header.iter().position(|h| h == "error").unwrap_or(0);
                    serde_json::json!({ "error": r[error].to_string() })
                })
                .collect()
        }
        other => panic!("no format {other}"),
    }
}

/// Checks what a stopped `run` left behind.
fn assert_stopped_run(out: &Output, dir: &Path, format: &str, signal: &str) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{signal}\n{stdout}\n{stderr}");
    assert!(stdout.contains("STOPPED parked"), "{stdout}");
    let outcomes = read_outcomes(&dir.join(format!("out.{format}")), format);
    assert_eq!(outcomes.len(), REQUESTS, "{outcomes:?}");
    for o in &outcomes {
        assert_eq!(o["error"], "cancelled", "{o}");
    }
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap_or_else(|e| panic!("{e}"));
    let mut reader = quick_xml::Reader::from_str(&junit);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("invalid JUnit ({e}):\n{junit}"),
        }
    }
    assert!(junit.contains("stopped"), "{junit}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json")).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary["passed"], false, "{summary}");
    // The HTML report is there too, marked stopped, with what was recorded.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap_or_else(|e| panic!("{e}"));
    assert!(html.contains("data-verdict=\"stopped\""), "{html}");
    assert!(html.contains("data-chart=\"latency\""), "{html}");
}

fn start_run(dir: &Path, file: &Path, format: &str) -> Child {
    support::bin()
        .arg("run")
        .arg(file)
        .arg("--golden-dir")
        .arg(dir.join("golden"))
        .args(["--format", format, "--output"])
        .arg(dir.join(format!("out.{format}")))
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .arg("--summary-json")
        .arg(dir.join("summary.json"))
        .arg("--report")
        .arg(dir.join("report.html"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_stops_a_run_in_backoff_promptly_with_complete_files_in_every_format() {
    for sig in ["INT", "TERM", "HUP"] {
        for format in ["json", "jsonl", "csv"] {
            let (upstream, mut seen) = parking_server(false).await;
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let file = scenario(dir.path(), &upstream.url(), "10m");
            let child = start_run(dir.path(), &file, format);
            wait_for_requests(&mut seen, REQUESTS).await;
            let sent = Instant::now();
            signal(&child, sig);
            let out = finish(child).await;
            // The backoff is ten minutes: exiting within seconds shows it was cut short.
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "SIG{sig} took {:?}",
                sent.elapsed()
            );
            assert_stopped_run(&out, dir.path(), format, sig);
            assert!(
                text(&out.stdout).contains(&format!("interrupted by SIG{sig}")),
                "{}",
                text(&out.stdout)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_cuts_a_hung_response_short() {
    let (upstream, mut seen) = parking_server(true).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = scenario(dir.path(), &upstream.url(), "10m");
    let child = start_run(dir.path(), &file, "jsonl");
    wait_for_requests(&mut seen, REQUESTS).await;
    signal(&child, "TERM");
    let out = finish(child).await;
    assert_stopped_run(&out, dir.path(), "jsonl", "TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_valid_files() {
    let (upstream, mut seen) = parking_server(true).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = scenario(dir.path(), &upstream.url(), "10m");
    let child = start_run(dir.path(), &file, "json");
    wait_for_requests(&mut seen, REQUESTS).await;
    signal(&child, "TERM");
    signal(&child, "INT");
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // Whichever path finished first, the files are complete.
    let outcomes = read_outcomes(&dir.path().join("out.json"), "json");
    assert!(outcomes.len() <= REQUESTS);
    let summary =
        std::fs::read_to_string(dir.path().join("summary.json")).unwrap_or_else(|e| panic!("{e}"));
    let summary: serde_json::Value =
        serde_json::from_str(&summary).unwrap_or_else(|e| panic!("{e}: {summary}"));
    assert_eq!(summary["passed"], false);
    let html =
        std::fs::read_to_string(dir.path().join("report.html")).unwrap_or_else(|e| panic!("{e}"));
    assert!(html.contains("</html>"), "{html}");
    assert!(!html.contains("data-verdict=\"pass\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_stops_the_load_generator_with_complete_files() {
    // One worker runs the load on a current-thread runtime: the signal must still be seen.
    for (sig, format, workers) in [
        ("INT", "json", "1"),
        ("TERM", "jsonl", "2"),
        ("HUP", "csv", "1"),
    ] {
        let (upstream, mut seen) = parking_server(false).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let output = dir.path().join(format!("out.{format}"));
        let child = support::bin()
            .args(["load", "--url"])
            .arg(format!("{}/api", upstream.url()))
            .args([
                "--n",
                "4",
                "-c",
                "4",
                "--retries",
                "2",
                "--workers",
                workers,
            ])
            .args([
                "--retry-backoff-ms",
                "600000",
                "--format",
                format,
                "--output",
            ])
            .arg(&output)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        wait_for_requests(&mut seen, REQUESTS).await;
        let sent = Instant::now();
        signal(&child, sig);
        let out = finish(child).await;
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "{:?}",
            sent.elapsed()
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(&format!("stopped by SIG{sig}")), "{stderr}");
        let outcomes = read_outcomes(&output, format);
        assert_eq!(outcomes.len(), REQUESTS);
        for o in &outcomes {
            assert_eq!(o["error"], "cancelled", "{o}");
        }
    }
}

/// A quick scenario against the demo upstream that passes once accepted.
fn quick_scenario(dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nseed = 5\n\n[load]\nrequests = 20\nconcurrency = 4\n\n[expect]\nsuccess_rate = 1.0\n"
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    file
}

/// Records `file`'s golden snapshot in `golden`, so later runs of it pass.
fn accept(file: &Path, golden: &Path) {
    let accepted = support::bin()
        .arg("run")
        .arg(file)
        .arg("--golden-dir")
        .arg(golden)
        .arg("--accept")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        text(&accepted.stderr)
    );
}

#[test]
fn a_closed_stdout_is_quiet_and_every_file_is_still_finished() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = quick_scenario(dir.path(), "quick");
    let golden = dir.path().join("golden");
    accept(&file, &golden);
    let other = quick_scenario(dir.path(), "other");
    accept(&other, &golden);
    let mut child = support::bin()
        .arg("run")
        .arg(&file)
        .arg(&other)
        .arg("--golden-dir")
        .arg(&golden)
        .arg("--output")
        .arg(dir.path().join("out-{name}.json"))
        .arg("--junit")
        .arg(dir.path().join("junit.xml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the verdict, not the pipe: {stderr}"
    );
    for name in ["quick", "other"] {
        let outcomes = read_outcomes(&dir.path().join(format!("out-{name}.json")), "json");
        assert_eq!(outcomes.len(), 20);
    }
    let junit =
        std::fs::read_to_string(dir.path().join("junit.xml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(junit.contains("tests=\""), "{junit}");
    assert!(junit.contains("traceforge.other"), "{junit}");
}
