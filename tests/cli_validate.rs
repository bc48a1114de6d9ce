//! The `traceforge` binary as CI and people call it: `validate` reports every file and exits 2 on
//! any invalid one, `schema` prints the committed schema, `--help` documents the exit codes.

use std::path::Path;
use std::process::Output;

use crate::support;

fn traceforge(args: &[&str]) -> Output {
    support::bin()
        .args(args)
        .current_dir(support::root())
        .output()
        .expect("the traceforge binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path.display().to_string()
}

const MISSPELLED: &str = "name = \"typo\"\n\n[load]\nrequests = 5\nconcurency = 2\n";

#[test]
fn shipped_scenarios_validate() {
    let files: Vec<String> = support::scenario_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = traceforge(&args);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let shown = stdout(&out);
    for file in &files {
        assert!(
            shown.contains(&format!("ok: {file} (")),
            "{file} not reported:\n{shown}"
        );
    }
    assert_eq!(stderr(&out), "");
}

#[test]
fn misspelled_key_exits_2_with_a_located_suggestion() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "typo.toml", MISSPELLED);
    let out = traceforge(&["validate", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!(
            "\
error: load: unknown key `concurency`
 --> {file}:5:1
  |
5 | concurency = 2
  | ^^^^^^^^^^ unknown key
  |
  = help: did you mean `concurrency`? valid keys here: `requests`, `duration`, `concurrency`, `rate`, `stages`, `max_in_flight`, `retries`, `retry_backoff`, `retry`, `timeout`, `client_trace`, `http2`, `targets`, `to`, `command`, `env`, `cwd`
"
        )
    );
}

#[test]
fn every_file_is_reported_not_just_the_first_failure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write(dir.path(), "bad.toml", MISSPELLED);
    let good = write(dir.path(), "good.toml", "name = \"good\"\n");
    let also_bad = write(dir.path(), "also-bad.toml", "name = \"bad one\"\n");
    let out = traceforge(&["validate", &bad, &good, &also_bad]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stdout(&out),
        format!("ok: {good} (good: 0 fault rules, 100 requests at concurrency 10)\n")
    );
    let err = stderr(&out);
    assert!(err.contains(&format!(" --> {bad}:5:1\n")), "{err}");
    assert!(err.contains(&format!(" --> {also_bad}:1:8\n")), "{err}");
    assert!(
        err.find(&bad) < err.find(&also_bad),
        "files are reported in order:\n{err}"
    );
}

#[test]
fn missing_file_exits_2_and_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.toml").display().to_string();
    let out = traceforge(&["validate", &missing, "scenarios/flaky-api.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!("error: cannot read {missing}: ")),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("ok: scenarios/flaky-api.toml"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn overrides_on_the_command_line_are_validated() {
    let out = traceforge(&[
        "validate",
        "scenarios/flaky-api.toml",
        "--set",
        "load.concurrency=64",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("at concurrency 64)"),
        "{}",
        stdout(&out)
    );

    let out = traceforge(&[
        "validate",
        "scenarios/flaky-api.toml",
        "--set",
        "load.concurrency=0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(" --> --set load.concurrency=0:1:18\n"),
        "{}",
        stderr(&out)
    );

    let out = traceforge(&[
        "validate",
        "scenarios/flaky-api.toml",
        "--set",
        "load.concurrency",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed --set is a usage error"
    );
    assert!(stderr(&out).contains("KEY=VALUE"), "{}", stderr(&out));
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = traceforge(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(support::root().join("traceforge.schema.json"))
        .expect("read the committed schema");
    assert!(
        stdout(&out) == committed,
        "`traceforge schema` differs from traceforge.schema.json; run `cargo run -- schema > traceforge.schema.json`"
    );
}

#[test]
fn run_with_an_invalid_scenario_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "typo.toml", MISSPELLED);
    let out = traceforge(&["run", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(" --> {file}:5:1\n")),
        "{}",
        stderr(&out)
    );

    let out = traceforge(&[
        "run",
        "scenarios/flaky-api.toml",
        "--set",
        "faults.0.probability=2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["validate"][..],
        &["frobnicate"],
        &["run", "x.toml", "--format", "xml"],
    ] {
        let out = traceforge(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [&["--help"][..], &["validate", "--help"], &["run", "--help"]] {
        let out = traceforge(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = stdout(&out);
        for line in [
            "Exit codes:",
            "  0  pass",
            "  1  a run failed its expectations or its golden snapshot",
            "  2  invalid scenario or usage; nothing was run",
            "  3  runtime failure",
        ] {
            assert!(help.contains(line), "{args:?} lacks {line:?}:\n{help}");
        }
    }
}

/// `traceforge load` with `flags` against a port nothing listens on: these must be refused before
/// a request is sent.
fn load_refused(flags: &[&str]) -> String {
    let mut args = vec!["load", "--url", "http://127.0.0.1:9/api"];
    args.extend_from_slice(flags);
    let out = traceforge(&args);
    assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
    assert_eq!(stdout(&out), "", "{flags:?}: nothing runs");
    stderr(&out)
}

#[test]
fn load_flags_whose_timetable_cannot_be_played_exit_2() {
    assert_eq!(
        load_refused(&["--rate", "1e-300", "--n", "2"]),
        "error: --rate: at 1e-300 requests per second, 2 requests take longer than the maximum of 7 days\n  = help: raise `--rate` or lower `--n`: at this rate 7 days hold at most 1 request\n"
    );
    assert_eq!(
        load_refused(&["--rate", "1000000", "--duration", "101s"]),
        "error: --rate x --duration: this load profile sends 101000000 requests; at most 100000000 are allowed\n"
    );
}

#[test]
fn load_flags_are_held_to_the_caps_of_the_scenario_file() {
    for (flags, expected) in [
        (
            &["--retries", "4294967295"][..],
            "error: --retries: must be between 0 and 20, found 4294967295\n",
        ),
        (
            &["--n", "100000001"],
            "error: --n: must be between 1 and 100000000, found 100000001\n",
        ),
        (
            &["--concurrency", "10001"],
            "error: --concurrency: must be between 1 and 10000, found 10001\n",
        ),
        (
            &["--rate", "5", "--concurrency", "1000001"],
            "error: --concurrency: must be between 1 and 1000000, found 1000001\n",
        ),
        (
            &["--timeout-ms", "604800001"],
            "error: --timeout-ms: `604800001ms` is longer than the maximum of 7 days\n",
        ),
        (
            &["--retry-backoff-ms", "18446744073709551615"],
            "error: --retry-backoff-ms: `18446744073709551615ms` is longer than the maximum of 7 days\n",
        ),
        (
            &["--rate", "1e300"],
            "error: --rate: must be more than 0 and at most 1000000 requests per second, found 1e300\n",
        ),
    ] {
        assert_eq!(load_refused(flags), expected, "{flags:?}");
    }
}

/// The flags and `[load]` share one validator: a value the file refuses, the flag refuses with
/// the same words, and a flag that sets two ends of the load is refused as the file refuses both
/// keys.
#[test]
fn load_flags_and_the_load_table_refuse_with_the_same_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (flags, table, flag, message) in [
        (
            &["--method", "FOO"][..],
            "[[load.targets]]\npath = \"/api\"\nmethod = \"FOO\"\n",
            "--method",
            "`FOO` is not an HTTP method",
        ),
        (
            &["--method", "GTE"],
            "[[load.targets]]\npath = \"/api\"\nmethod = \"GTE\"\n",
            "--method",
            "did you mean `GET`?",
        ),
        (
            &["--retries", "21"],
            "[load]\nretries = 21\n",
            "--retries",
            "must be between 0 and 20, found 21",
        ),
        (
            &["--timeout-ms", "0"],
            "[load]\ntimeout = \"0ms\"\n",
            "--timeout-ms",
            "the request timeout must be longer than zero",
        ),
        (
            &["--n", "5", "--duration", "1s"],
            "[load]\nrequests = 5\nduration = \"1s\"\n",
            "--duration",
            "both say when a closed loop ends",
        ),
    ] {
        let file = write(dir.path(), "load.toml", &format!("name = \"x\"\n{table}"));
        let validated = traceforge(&["validate", &file]);
        assert_eq!(validated.status.code(), Some(2), "{table}");
        assert!(
            stderr(&validated).contains(message),
            "{table}: {}",
            stderr(&validated)
        );
        let err = load_refused(flags);
        assert!(
            err.starts_with(&format!("error: {flag}: ")),
            "{flags:?}: {err}"
        );
        assert!(err.contains(message), "{flags:?}: {err}");
    }
}

#[test]
fn workers_are_held_between_1_and_1024_on_every_command() {
    for command in ["run", "load", "proxy", "upstream"] {
        for workers in ["0", "20000"] {
            let out = traceforge(&[command, "--workers", workers]);
            assert_eq!(out.status.code(), Some(2), "{command} --workers {workers}");
            let err = stderr(&out);
            assert!(
                err.starts_with(&format!(
                    "error: invalid value '{workers}' for '--workers <N>': {workers} is not in 1..=1024\n"
                )),
                "{command} --workers {workers}: {err}"
            );
        }
    }
}

#[test]
fn load_urls_with_credentials_or_bad_ports_exit_2() {
    for (url, expected) in [
        (
            "http://admin:hunter2@127.0.0.1:9/api",
            "error: --url: `http://***@127.0.0.1:9/api` carries a user name or password (remove the part before `@`: TraceForge does not send credentials from a URL, and they would end up in the Host header and in logs)\n",
        ),
        (
            "http://127.0.0.1:99999/api",
            "error: --url: `http://127.0.0.1:99999/api` has an invalid port `99999` (ports run from 1 to 65535)\n",
        ),
    ] {
        let out = traceforge(&["load", "--url", url, "--n", "1"]);
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert_eq!(stderr(&out), expected);
        assert_eq!(stdout(&out), "", "nothing runs");
    }
}

#[test]
fn an_override_error_names_the_scenario_it_was_applied_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write(dir.path(), "a.toml", "name = \"a\"\n");
    let b = write(dir.path(), "b.toml", "name = \"b\"\n");
    let folder = dir.path().display().to_string();
    let out = traceforge(&["run", &folder, "--set", "load.concurrency=0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let block = |file: &str| {
        format!(
            "\
error: load.concurrency: must be between 1 and 10000, found 0
 --> --set load.concurrency=0:1:18
  |
1 | load.concurrency=0
  |                  ^ out of range
  |
  = note: the override was applied to {file}
"
        )
    };
    assert_eq!(
        stderr(&out),
        format!(
            "{}{}error: nothing was run: fix the scenario errors above\n",
            block(&a),
            block(&b)
        )
    );
}

#[test]
fn validate_reads_folders_the_way_run_does() {
    let out = traceforge(&["validate", "scenarios"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = stdout(&out);
    for file in support::scenario_files() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            shown.contains(&format!("ok: scenarios/{name} (")),
            "{name} not reported:\n{shown}"
        );
    }
    let empty = tempfile::tempdir().expect("temp dir");
    let out = traceforge(&["validate", &empty.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} holds no .toml scenario\n",
            empty.path().display()
        )
    );
}

#[test]
fn validate_stops_quietly_when_stdout_is_closed() {
    // Many files, so the reader is gone long before the last line is written.
    let files = support::scenario_files();
    let mut child = support::bin()
        .arg("validate")
        .args(std::iter::repeat_n(&files, 10).flatten())
        .current_dir(support::root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the traceforge binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("it exits");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}
