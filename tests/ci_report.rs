//! CI ergonomics through the binary: `run --junit` parses as XML with the right counts,
//! `--summary-json` has its documented fields, and `init` writes a scenario (either template)
//! that validates and refuses to overwrite it.

use std::path::Path;
use std::process::Output;

use quick_xml::events::Event;

use crate::support::{bin, root};

const FAILS: &str = r#"#:schema ../traceforge.schema.json
name = "fails-expect"
seed = 2
[load]
requests = 10
concurrency = 2
[expect]
success_rate = 0.5
status = { "200" = { max_count = 0 } }
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .arg("run")
        .args(args)
        .env_remove("CI")
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A folder with a passing scenario and one whose expectation fails, golden files accepted.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        root().join("scenarios/total-outage.toml"),
        scenarios.join("a.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(scenarios.join("b.toml"), FAILS).unwrap_or_else(|e| panic!("{e}"));
    let accepted = run_in(dir.path(), &["scenarios", "--accept"]);
    assert_eq!(accepted.status.code(), Some(1), "b fails its expectation");
    dir
}

/// The attributes of an element, as (name, value) pairs.
fn attributes(e: &quick_xml::events::BytesStart<'_>) -> Vec<(String, String)> {
    e.attributes()
        .map(|a| {
            let a = a.unwrap_or_else(|e| panic!("{e}"));
            (
                a.key.as_ref().to_string(),
                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .into_owned(),
            )
        })
        .collect()
}

fn attr(attrs: &[(String, String)], name: &str) -> String {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} in {attrs:?}"))
}

#[test]
fn junit_and_summary_json_report_every_scenario_and_expectation() {
    let dir = project();
    let out = run_in(
        dir.path(),
        &[
            "scenarios",
            "--junit",
            "report.xml",
            "--summary-json",
            "summary.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // JUnit: 2 scenario cases + 3 expectation cases; b fails as a scenario and in one expectation.
    let xml =
        std::fs::read_to_string(dir.path().join("report.xml")).unwrap_or_else(|e| panic!("{e}"));
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut suites, mut cases, mut failures, mut errors) = (0, 0, 0, 0);
    let mut suite_attrs = Vec::new();
    let mut case_names = Vec::new();
    let mut failure_messages = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                "testsuite" => {
                    suites += 1;
                    suite_attrs = attributes(&e);
                }
                "testcase" => {
                    cases += 1;
                    case_names.push(attr(&attributes(&e), "name"));
                }
                "failure" => {
                    failures += 1;
                    failure_messages.push(attr(&attributes(&e), "message"));
                }
                "error" => errors += 1,
                _ => {}
            },
            Ok(_) => {}
            Err(e) => panic!("report.xml is not XML: {e}\n{xml}"),
        }
    }
    assert_eq!((suites, cases, failures, errors), (1, 5, 2, 0), "{xml}");
    assert_eq!(attr(&suite_attrs, "tests"), "5");
    assert_eq!(attr(&suite_attrs, "failures"), "2");
    assert_eq!(attr(&suite_attrs, "errors"), "0");
    assert_eq!(
        case_names,
        [
            "total-outage",
            "total-outage: success_rate >= 0.0%",
            "fails-expect",
            "fails-expect: success_rate >= 50.0%",
            "fails-expect: status.200 <= 0",
        ]
    );
    assert_eq!(
        failure_messages,
        [
            "status.200 <= 0 (measured 10 (100.0%))",
            "status.200 <= 0: measured 10 (100.0%)"
        ]
    );

    // The summary: versioned, every scenario with its summary, verdicts and golden result.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("summary.json")).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["version"], 1);
    assert_eq!(json["passed"], false);
    let scenarios = json["scenarios"].as_array().cloned().unwrap_or_default();
    assert_eq!(scenarios.len(), 2);
    let a = &scenarios[0];
    assert_eq!(a["name"], "total-outage");
    assert_eq!(a["file"], "scenarios/a.toml");
    assert_eq!(a["result"], "pass");
    assert_eq!(a["golden"]["result"], "matched");
    assert_eq!(a["summary"]["requests"], 40);
    assert_eq!(a["summary"]["statuses"]["503"], 23);
    assert!(a["summary"]["latency_ms"]["p99"].as_f64().is_some());
    assert!(
        a["summary"]["targets"]["/api/resource"]["requests"]
            .as_u64()
            .is_some()
    );
    let b = &scenarios[1];
    assert_eq!(b["result"], "fail");
    assert_eq!(b["reason"], "status.200 <= 0 (measured 10 (100.0%))");
    assert_eq!(b["expectations"][1]["name"], "status.200");
    assert_eq!(b["expectations"][1]["passed"], false);
    assert_eq!(b["expectations"][0]["passed"], true);
}

#[test]
fn init_writes_a_valid_scenario_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("scenarios")).unwrap_or_else(|e| panic!("{e}"));
    let init = |name: &str| {
        bin()
            .current_dir(dir.path())
            .args(["init", name])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let first = init("checkout-api");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let path = dir.path().join("scenarios/checkout-api.toml");
    let written = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(written.starts_with("#:schema ../traceforge.schema.json\n"));
    assert!(written.contains("name = \"checkout-api\""));
    let validate = bin()
        .current_dir(dir.path())
        .args(["validate", "scenarios/checkout-api.toml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        text(&validate.stderr)
    );

    std::fs::write(&path, "# mine\n").unwrap_or_else(|e| panic!("{e}"));
    let again = init("checkout-api");
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        "# mine\n"
    );

    for bad in ["../escape", "a/b", ".hidden", ""] {
        let out = init(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    assert!(!dir.path().join("escape.toml").exists());

    // Without a scenarios/ folder the file goes in the current folder.
    let flat = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = bin()
        .current_dir(flat.path())
        .args(["init", "solo"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0));
    let solo = std::fs::read_to_string(flat.path().join("solo.toml")).unwrap_or_default();
    assert!(
        solo.starts_with("#:schema traceforge.schema.json\n"),
        "{solo}"
    );
}

#[test]
fn init_service_template_writes_a_valid_scenario() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("scenarios")).unwrap_or_else(|e| panic!("{e}"));
    let out = bin()
        .current_dir(dir.path())
        .args(["init", "--template", "service", "my-service"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join("scenarios/my-service.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(written.starts_with("#:schema ../traceforge.schema.json\n"));
    assert!(written.contains("name = \"my-service\""));
    assert!(written.contains("[[services]]"));
    assert!(written.contains("[expect.proxies.payments]"));
    let validate = bin()
        .current_dir(dir.path())
        .args(["validate", "scenarios/my-service.toml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}{}",
        text(&validate.stdout),
        text(&validate.stderr)
    );
    assert!(
        text(&validate.stdout).contains("1 service, 1 proxy"),
        "{}",
        text(&validate.stdout)
    );

    // An unknown template is a usage error that names the ones there are.
    let bad = bin()
        .current_dir(dir.path())
        .args(["init", "--template", "nope", "other"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("service"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!dir.path().join("scenarios/other.toml").exists());
}
