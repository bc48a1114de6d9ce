//! Every input the fuzzers ever crashed on, replayed through the same target functions
//! (`fuzz/src/lib.rs`, included here as plain source, so no AFL is needed): once fixed, a crash
//! stays fixed. `fuzz/run.sh` adds new crashes to `fuzz/regressions/<target>/`.

use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
mod targets;

/// Replays the files of `folder/<target>/` through its target, at most `most` of them per target
/// spread evenly over the sorted list; returns how many ran and the ones that panicked.
fn replay(folder: &Path, most: usize) -> (usize, Vec<String>) {
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
        files.retain(|f| f.is_file() && !hidden(f));
        let step = files.len().div_ceil(most.max(1)).max(1);
        for file in files.into_iter().step_by(step) {
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
    let (_, failed) = replay(&crate::support::root().join("fuzz/regressions"), usize::MAX);
    assert!(
        failed.is_empty(),
        "fuzz regressions fail again: {failed:#?}"
    );
}

#[test]
fn a_sample_of_the_fuzz_corpus_passes() {
    // The corpus covers each target's paths; a sample of it (campaigns grow it to thousands of
    // files) doubles as a check that the targets themselves still build and run.
    let (replayed, failed) = replay(&crate::support::root().join("fuzz/corpus"), 100);
    assert!(replayed > 0, "no corpus found");
    assert!(failed.is_empty(), "corpus inputs fail: {failed:#?}");
}

/// Inputs a campaign kept whose cause is not fixed yet; each is described in
/// `fuzz/known/README.md`. `cargo test --test tests known_fuzz -- --ignored` replays them; once
/// one passes, move it to `fuzz/regressions/<target>/` so it stays fixed.
#[test]
#[ignore = "open fuzz findings; see fuzz/known/README.md"]
fn known_fuzz_findings_are_fixed() {
    let (replayed, failed) = replay(&crate::support::root().join("fuzz/known"), usize::MAX);
    assert!(replayed > 0, "no known findings left: remove this test");
    assert!(failed.is_empty(), "still failing: {failed:#?}");
}
