//! The layers point down, checked on the source so that a new `use` breaking them fails here:
//! the reports never reach up into the CLI, and only the CLI (above them) uses the reports.

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

#[test]
fn reports_never_use_the_cli_and_nothing_below_them_uses_reports() {
    let src = root().join("src");
    let mut wrong = Vec::new();
    for (file, text) in sources(&src) {
        let module = module(&src, &file);
        // Doc comments may name any module; only code makes a dependency.
        let code = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with("//"));
        for (n, line) in code {
            let up = match module.as_str() {
                "report" => line.contains("crate::cli") || line.contains("super::super"),
                "cli" | "main" => false,
                _ => line.contains("crate::report"),
            };
            if up {
                wrong.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses that point up:\n{}",
        wrong.join("\n")
    );
    assert!(
        !src.join("cli/report.rs").exists(),
        "reports live in src/report/, not in the CLI"
    );
}
