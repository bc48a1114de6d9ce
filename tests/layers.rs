//! Nothing below the reports uses them: only the CLI (above them) names `crate::report`.
//!
//! `.ci/module-graph.py` finds import cycles, which catches most upward uses, but not all: a
//! module the reports do not reach (such as `schema`) could use them without closing a cycle, and
//! the script skips test code. This checks the direction itself, test code included, so that a
//! new `use` pointing up fails here. That the reports never use the CLI needs no check: the CLI
//! is binary-only, so the library cannot name it.

use std::path::{Path, PathBuf};

use crate::support::root;

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            out.push((path, text));
        }
    }
    out
}

/// The top-level module a file belongs to: `report` for `src/report/json.rs`, `runner` for
/// `src/runner.rs`.
fn module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative.components().next().map(|c| c.as_os_str());
    let first = first.unwrap_or_default().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Whether `code` names the `report` module from the crate root: `crate::report`, or `report`
/// inside a `use crate::{...}` group.
fn names_report(code: &str) -> bool {
    if code.contains("crate::report") {
        return true;
    }
    code.match_indices("crate::{").any(|(at, _)| {
        let group = &code[at + "crate::{".len()..];
        let group = &group[..group.find("};").unwrap_or(group.len())];
        group
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "report")
    })
}

#[test]
fn nothing_below_the_reports_uses_them() {
    let src = root().join("src");
    let mut wrong = Vec::new();
    for (file, text) in sources(&src) {
        if matches!(
            module(&src, &file).as_str(),
            "report" | "cli" | "main" | "lib"
        ) {
            continue;
        }
        // Doc comments may name any module; only code makes a dependency.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        if names_report(&code) {
            wrong.push(file.display().to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "files below the reports that use them:\n{}",
        wrong.join("\n")
    );
    assert!(
        !src.join("cli/report.rs").exists(),
        "reports live in src/report/, not in the CLI"
    );
}

#[test]
fn a_grouped_use_names_the_module_too() {
    assert!(names_report("use crate::report::text;"));
    assert!(names_report(
        "use crate::{\n    record,\n    report::{self, Played},\n};"
    ));
    assert!(!names_report(
        "use crate::{record, runner::RunReport};\nlet report = 1;"
    ));
}
