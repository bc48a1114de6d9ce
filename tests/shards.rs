//! Sharded runs, played as a cluster would play them: each shard a separate `traceforge run
//! --shard K/4` process writing its bundle, then `traceforge merge`. The merged golden body,
//! summary JSON and JUnit verdicts must be the single-machine run's: for a closed loop, an open
//! loop, and on the virtual clock, where even the HDR percentiles must be equal.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use quick_xml::events::Event;
use serde_json::Value;

use crate::support;

const SHARDS: u32 = 4;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `traceforge ARGS` from the repository root, where the scenario paths the bundles record
/// resolve.
fn traceforge(args: &[&str]) -> std::process::Command {
    let mut cmd = support::bin();
    cmd.current_dir(support::root())
        .args(args)
        .env_remove("CI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finished(child: Child, what: &str) -> Output {
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The summary JSON without what the wall clock decides (`*_ms` latencies and times, lateness);
/// on the virtual clock, everything is kept.
fn comparable(mut summary: Value, exact: bool) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|k, _| !(k.ends_with("_ms") || k == "late" || k == "measured"));
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    if !exact {
        strip(&mut summary);
    }
    summary
}

/// `(test case name, passed)` of every JUnit test case, in order.
fn junit_verdicts(path: &Path) -> Vec<(String, bool)> {
    let xml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut cases: Vec<(String, bool)> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                "testcase" => {
                    let name = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == "name")
                        .map(|a| a.value.to_string())
                        .unwrap_or_default();
                    cases.push((name, true));
                }
                "failure" | "error" => {
                    if let Some(last) = cases.last_mut() {
                        last.1 = false;
                    }
                }
                _ => {}
            },
            Ok(_) => {}
            Err(e) => panic!("{} is not XML: {e}", path.display()),
        }
    }
    assert!(!cases.is_empty(), "no test case in {}", path.display());
    cases
}

/// Plays `scenario` whole and as four shard processes, merges, and compares.
fn single_and_sharded_agree(scenario: &str, exact: bool) {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let at = |name: &str| scratch.path().join(name).display().to_string();
    let file = format!("scenarios/{scenario}.toml");

    let single = traceforge(&[
        "run",
        &file,
        "--summary-json",
        &at("single.json"),
        "--junit",
        &at("single.xml"),
    ])
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(single.status.code(), Some(0), "{}", text(&single.stdout));

    // Four processes at once, as four pods would run, starting their load together.
    let bundles: Vec<PathBuf> = (0..SHARDS)
        .map(|k| scratch.path().join(format!("shard-{k}.jsonl")))
        .collect();
    let shards: Vec<Child> = (0..SHARDS)
        .map(|k| {
            traceforge(&[
                "run",
                &file,
                "--shard",
                &format!("{k}/{SHARDS}"),
                "--bundle",
                &bundles[k as usize].display().to_string(),
                "--start-at",
                "+1s",
            ])
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    for (k, child) in shards.into_iter().enumerate() {
        let out = finished(child, "shard");
        assert_eq!(
            out.status.code(),
            Some(0),
            "shard {k}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    let mut merge_args = vec!["merge".to_string()];
    // In reverse: a merge takes the bundles in any order.
    merge_args.extend(bundles.iter().rev().map(|b| b.display().to_string()));
    merge_args.extend([
        "--summary-json".into(),
        at("merged.json"),
        "--junit".into(),
        at("merged.xml"),
    ]);
    let args: Vec<&str> = merge_args.iter().map(String::as_str).collect();
    let merged = traceforge(&args).output().unwrap_or_else(|e| panic!("{e}"));
    let stdout = text(&merged.stdout);
    assert_eq!(
        merged.status.code(),
        Some(0),
        "{stdout}{}",
        text(&merged.stderr)
    );
    // The shipped golden file: the single run matched it (exit 0), and so does the merge.
    assert!(
        stdout.contains(&format!("golden: matches golden/{scenario}.snap")),
        "{stdout}"
    );

    let json = |name: &str| -> Value {
        let raw = std::fs::read_to_string(at(name)).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        comparable(json("merged.json"), exact),
        comparable(json("single.json"), exact),
        "the merged summary differs from the single run's"
    );
    assert_eq!(
        junit_verdicts(Path::new(&at("merged.xml"))),
        junit_verdicts(Path::new(&at("single.xml")))
    );
}

#[test]
fn four_shards_of_a_closed_loop_merge_into_the_single_run() {
    single_and_sharded_agree("flaky-api", false);
}

#[test]
fn four_shards_of_an_open_loop_merge_into_the_single_run() {
    single_and_sharded_agree("ramp-up", false);
}

#[test]
fn four_shards_on_the_virtual_clock_merge_into_the_single_run_percentiles_included() {
    single_and_sharded_agree("outage-recovery-virtual", true);
}
