//! Every shipped scenario, played in-process, matches its committed golden file, checked by insta
//! itself: this proves the files `traceforge run` writes are the files `cargo insta` reads.

use std::path::{Path, PathBuf};

use traceforge::runner::{self, RunOptions};

#[path = "common/python.rs"]
mod python;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Plays a scenario and returns its golden body; nothing is written to the real golden folder.
fn play(file: &Path, scratch: &Path) -> (String, String) {
    let scenario = traceforge::scenario::load(file, &[]).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        static_dir: Some(root().join("static")),
        ..RunOptions::new(scratch.to_path_buf()).accepting()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let report = runner::play_scenario(&runtime, &scenario, &options)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (scenario.name, report.body.unwrap_or_default())
}

#[test]
fn shipped_scenarios_match_their_golden_files() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("scenarios"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the shipped scenarios, found {files:?}"
    );
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for file in files {
        if let Err(reason) = python_clients(&file) {
            println!("skipped {}: {reason}", file.display());
            continue;
        }
        let (name, body) = play(&file, scratch.path());
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(root().join("golden"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(name.as_str(), body));
    }
}

/// The Python packages the client script of a scenario imports, installed with pip once if
/// missing; the reason when they cannot be had (no registry), so the scenario is skipped, saying so.
fn python_clients(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let needs = [
        ("examples/grpc/", "grpc", "grpcio"),
        ("examples/websocket/", "websockets", "websockets"),
    ];
    for (script, module, package) in needs {
        if !text.contains(script) {
            continue;
        }
        python::python_package(module, package).map_err(|why| {
            format!("its client needs Python's `{package}`, which could not be had: {why}")
        })?;
    }
    Ok(())
}
