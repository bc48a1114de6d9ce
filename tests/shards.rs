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

/// Validates a manifest offline against the Kubernetes 1.30 schemas (strict: no unknown field)
/// with Python's `kubernetes-validate`, and returns it as JSON.
const VALIDATE: &str = r#"
import json, sys, yaml, kubernetes_validate
doc = yaml.safe_load(sys.stdin.read())
kubernetes_validate.validate(doc, "1.30.0", strict=True)
print(json.dumps(doc))
"#;

fn validated(manifest: &[u8]) -> Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(manifest).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "the manifest does not validate: {}\n{}",
        text(&out.stderr),
        text(manifest)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
}

/// The container arguments of a Job manifest, with the pod's `$(JOB_COMPLETION_INDEX)` and the
/// bundles' volume made local.
fn pod_args(job: &Value, index: Option<u32>, volume: &Path) -> Vec<String> {
    job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap_or_else(|| panic!("no args in {job}"))
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap_or_else(|| panic!("{a} is not a string"));
            let a = match index {
                Some(k) => a.replace("$(JOB_COMPLETION_INDEX)", &k.to_string()),
                None => a.to_string(),
            };
            a.replace(traceforge::k8s::BUNDLES, &volume.display().to_string())
        })
        .collect()
}

/// The manifests validate against the Kubernetes schemas; the shards' Job is Indexed with N
/// completions and N in parallel; and its pods' commands, played here one per index as the Job
/// controller would start them, then the merge Job's command, give the single run's verdict.
#[test]
fn the_k8s_manifests_validate_and_their_commands_play_the_sharded_run() {
    if let Err(why) = support::python_package("kubernetes_validate", "kubernetes-validate") {
        eprintln!(
            "the_k8s_manifests_validate_and_their_commands_play_the_sharded_run: skipped: {why}"
        );
        return;
    }
    let file = "scenarios/retry-first-n.toml";
    let manifest = |extra: &[&str]| {
        let mut args = vec![
            "k8s",
            file,
            "--shards",
            "3",
            "--image",
            "registry.example/traceforge:1",
        ];
        args.extend(extra);
        let out = traceforge(&args).output().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        validated(&out.stdout)
    };
    let shards = manifest(&[]);
    let merge = manifest(&["--merge"]);
    assert_eq!(shards["kind"], "Job");
    assert_eq!(shards["spec"]["completionMode"], "Indexed");
    assert_eq!(shards["spec"]["completions"], 3);
    assert_eq!(shards["spec"]["parallelism"], 3);
    let pod = &shards["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example/traceforge:1"
    );
    assert_eq!(merge["spec"]["completions"], 1);

    let volume = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for k in 0..3 {
        let args = pod_args(&shards, Some(k), volume.path());
        assert!(args.contains(&format!("{k}/3")), "{args:?}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = traceforge(&args).output().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "pod {k}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let args = pod_args(&merge, None, volume.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = traceforge(&args).output().unwrap_or_else(|e| panic!("{e}"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("golden: matches golden/retry-first-n.snap"),
        "{stdout}"
    );
    let reports = std::fs::read_dir(volume.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .next()
        .map(|d| d.path())
        .unwrap_or_else(|| panic!("no bundle folder"));
    for name in ["junit.xml", "summary.json", "outcomes.json"] {
        assert!(
            reports.join(name).is_file(),
            "no {name} in {}",
            reports.display()
        );
    }
}

/// Bundles that do not make one complete run are refused, naming the problem, with exit 2.
#[test]
fn a_missing_duplicated_or_unfinished_shard_is_refused_by_name() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bundle = |k: u32| {
        scratch
            .path()
            .join(format!("b{k}.jsonl"))
            .display()
            .to_string()
    };
    for k in 0..3 {
        let out = traceforge(&[
            "run",
            "scenarios/total-outage.toml",
            "--shard",
            &format!("{k}/3"),
            "--bundle",
            &bundle(k),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let merge = |bundles: &[String]| {
        let mut args = vec!["merge"];
        args.extend(bundles.iter().map(String::as_str));
        let out = traceforge(&args).output().unwrap_or_else(|e| panic!("{e}"));
        (out.status.code(), text(&out.stderr))
    };
    let (code, err) = merge(&[bundle(0), bundle(2)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("shard 1/3 is missing"), "{err}");
    let (code, err) = merge(&[bundle(0), bundle(1), bundle(1), bundle(2)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("shard 1/3 is given twice"), "{err}");
    // A shard that died mid-run left outcomes and no trailer.
    let full = std::fs::read_to_string(bundle(2)).unwrap_or_else(|e| panic!("{e}"));
    let cut: String = full.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(bundle(2), cut).unwrap_or_else(|e| panic!("{e}"));
    let (code, err) = merge(&[bundle(0), bundle(1), bundle(2)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a complete bundle"), "{err}");
    // Another scenario's shard.
    let other = scratch.path().join("other.jsonl").display().to_string();
    let out = traceforge(&[
        "run",
        "scenarios/total-outage.toml",
        "--set",
        "seed=99",
        "--shard",
        "2/3",
        "--bundle",
        &other,
    ])
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, err) = merge(&[bundle(0), bundle(1), other]);
    assert_eq!(code, Some(2));
    assert!(err.contains("are not shards of one run"), "{err}");
}

/// A retried pod replays its index: on the virtual clock its bundle is the same, byte for byte.
#[test]
fn a_replayed_shard_writes_the_same_bundle() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut bundles = Vec::new();
    for attempt in 0..2 {
        let path = scratch.path().join(format!("try-{attempt}.jsonl"));
        let out = traceforge(&[
            "run",
            "scenarios/outage-recovery-virtual.toml",
            "--shard",
            "1/4",
            "--bundle",
            &path.display().to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        bundles.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(!bundles[0].is_empty());
    assert!(
        bundles[0] == bundles[1],
        "the replayed shard's bundle differs"
    );
}

/// `validate --shards N` says what would not merge exactly, and refuses a client command.
#[test]
fn validate_with_shards_names_what_would_not_be_exact() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let loose = scratch.path().join("loose.toml");
    std::fs::write(
        &loose,
        "name = \"loose\"\n[[faults]]\nname = \"capped\"\nkind = \"delay\"\ndelay = \"10ms\"\nmax_active = 2\n[load]\nduration = \"2s\"\nconcurrency = 4\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let loose = loose.display().to_string();
    let out = traceforge(&["validate", &loose, "--shards", "3"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("warning: as 3 shards: a closed loop for 2s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule `capped`: `max_active = 2`") && stdout.contains("up to 6 at once"),
        "{stdout}"
    );

    let out = traceforge(&["validate", "scenarios/flaky-api.toml", "--shards", "4"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("4 shards merge exactly"));

    let out = traceforge(&[
        "validate",
        "scenarios/grpc-unavailable.toml",
        "--shards",
        "2",
    ])
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("only the built-in load generator can be sharded"),
        "{}",
        text(&out.stderr)
    );
    let out = traceforge(&[
        "run",
        "scenarios/grpc-unavailable.toml",
        "--shard",
        "0/2",
        "--bundle",
        &scratch.path().join("b.jsonl").display().to_string(),
    ])
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
