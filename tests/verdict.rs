//! Exit codes never lie (a panic is tested in its own binary, `tests/panic.rs`): latencies beyond an
//! hour are measured as they are, outputs get their folders and never overwrite what the run reads,
//! and golden/ and static/ are found from any working directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use traceforge::runner::{self, RunOptions};

use crate::support;

#[test]
fn latencies_beyond_an_hour_are_measured_not_clamped() {
    let text = r#"
        name = "two-hours"
        seed = 1

        [run]
        clock = "virtual"

        [[faults]]
        kind = "delay"
        delay = "140m"

        [load]
        requests = 2
        concurrency = 2
        timeout = "3h"

        [expect]
        latency = { max = "< 2h" }
    "#;
    let scenario = traceforge::scenario::parse_str("two-hours.toml", text, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions::new(scratch.path().to_path_buf()).accepting();
    let report = runner::run_virtual(&scenario, &options).unwrap_or_else(|e| panic!("{e}"));
    let max = report.summary.latency.max();
    let expected = Duration::from_secs(140 * 60);
    assert!(
        max >= expected && max <= expected + expected / 1000,
        "{max:?}"
    );
    let bound = report
        .expectations
        .iter()
        .find(|v| v.name == "latency.max")
        .unwrap_or_else(|| panic!("{:?}", report.expectations));
    assert!(
        !bound.passed,
        "a 140-minute latency passed `< 2h`: {bound:?}"
    );
    assert!(!report.passed());
}

// ---- outputs and paths, through the binary ----

fn outcomes_in(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .len()
}

fn quick(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!("name = \"{name}\"\nseed = 9\n\n[load]\nrequests = 5\nconcurrency = 2\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    file
}

fn run_in(cwd: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    support::bin()
        .current_dir(cwd)
        .arg("run")
        .args(args)
        .env_remove("CI")
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn outputs_get_their_folders_created() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch.path();
    let file = quick(dir, "quick");
    let out = run_in(
        dir,
        &[
            file.as_os_str(),
            "--accept".as_ref(),
            "--output".as_ref(),
            "results/deep/{name}.json".as_ref(),
            "--junit".as_ref(),
            "reports/junit/run.xml".as_ref(),
            "--summary-json".as_ref(),
            "reports/json/summary.json".as_ref(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(outcomes_in(&dir.join("results/deep/quick.json")), 5);
    assert!(dir.join("reports/junit/run.xml").is_file());
    assert!(dir.join("reports/json/summary.json").is_file());
}

#[test]
fn an_output_may_not_overwrite_a_scenario_or_golden_file_of_the_run() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch.path();
    let file = quick(dir, "quick");
    let accepted = run_in(dir, &[file.as_os_str(), "--accept".as_ref()]);
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        text(&accepted.stderr)
    );
    let scenario_before = std::fs::read(&file).unwrap_or_default();
    let golden = dir.join("golden/quick.snap");
    let golden_before = std::fs::read(&golden).unwrap_or_default();
    assert!(!golden_before.is_empty());
    for (flag, target) in [
        ("--output", "quick.toml"),
        ("--output", "./golden/quick.snap"),
        ("--junit", "golden/quick.snap"),
        ("--summary-json", "quick.toml"),
    ] {
        let out = run_in(dir, &[file.as_os_str(), flag.as_ref(), target.as_ref()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {target}: {stderr}");
        assert!(stderr.contains("writing it would destroy it"), "{stderr}");
    }
    assert_eq!(std::fs::read(&file).unwrap_or_default(), scenario_before);
    assert_eq!(std::fs::read(&golden).unwrap_or_default(), golden_before);
}

#[test]
fn two_scenarios_with_one_name_are_refused() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch.path();
    let a = quick(&dir.join("a"), "same");
    let b = quick(&dir.join("b"), "same");
    let out = run_in(dir, &[a.as_os_str(), b.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("both named \"same\""), "{stderr}");
    assert!(!dir.join("golden").exists(), "nothing was run");
}

#[test]
fn golden_files_are_found_beside_the_scenario_folder_from_anywhere() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let project = scratch.path().join("project");
    let file = quick(&project.join("scenarios"), "quick");
    let accepted = run_in(&project, &[file.as_os_str(), "--accept".as_ref()]);
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        text(&accepted.stderr)
    );
    assert!(project.join("golden/quick.snap").is_file());

    let elsewhere = scratch.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap_or_else(|e| panic!("{e}"));
    let out = run_in(&elsewhere, &[project.join("scenarios").as_os_str()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "golden files: {}",
            project.join("golden").display()
        )),
        "{stdout}"
    );
    assert!(
        !elsewhere.join("golden").exists(),
        "a stray golden/ was left"
    );
}
