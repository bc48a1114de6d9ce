//! Every input the fuzzers ever crashed on, replayed through the same target functions
//! (`fuzz/src/lib.rs`, included here as plain source, so no AFL is needed): once fixed, a crash
//! stays fixed. `fuzz/run.sh` adds new crashes to `fuzz/regressions/<target>/`.

use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
mod targets;

/// Replays every file of `folder/<target>/` through its target; returns the files that panic.
fn replay(folder: &Path) -> (usize, Vec<String>) {
    let mut replayed = 0;
    let mut failed = Vec::new();
    for (name, target) in targets::TARGETS {
        let Ok(entries) = std::fs::read_dir(folder.join(name)) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        // `.gitkeep` and other dotfiles hold no input.
        let hidden = |f: &Path| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        };
        for file in files.into_iter().filter(|f| f.is_file() && !hidden(f)) {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            replayed += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    (replayed, failed)
}

#[test]
fn every_fuzz_regression_input_passes() {
    let (_, failed) = replay(&crate::support::root().join("fuzz/regressions"));
    assert!(
        failed.is_empty(),
        "fuzz regressions fail again: {failed:#?}"
    );
}

#[test]
fn every_fuzz_seed_input_passes() {
    // The seed corpus covers each target's happy paths; it doubles as a smoke test that the
    // targets themselves still build and run.
    let (replayed, failed) = replay(&crate::support::root().join("fuzz/corpus"));
    assert!(replayed > 0, "no corpus found");
    assert!(failed.is_empty(), "corpus inputs fail: {failed:#?}");
}

/// Crashes found by fuzzing whose fix belongs to work still under way; each file names the bug
/// in `fuzz/known/README.md`. Run with `--ignored` to see whether they are fixed; once they
/// pass, move them to `fuzz/regressions/`.
#[test]
#[ignore = "known crashes, fixed elsewhere; see fuzz/known/README.md"]
fn known_fuzz_crashes_are_fixed() {
    let (replayed, failed) = replay(&crate::support::root().join("fuzz/known"));
    assert!(replayed > 0, "no known crashes left: remove this test");
    assert!(failed.is_empty(), "still crashing: {failed:#?}");
}
