//! The text reports `traceforge run` prints: after each scenario its summary, verdict table and
//! golden result ([`write_report`]); after several, one line per scenario ([`write_results`]).

use std::io::{self, Write};

use super::Played;
use crate::expect;
use crate::golden;
use crate::runner::RunReport;

/// The report of one scenario: summary, expectations, golden comparison, then the verdict line
/// (`PASS name`, `FAIL name: why`). `signal` names what stopped the run, when something did.
pub fn write_report<W: Write>(
    w: &mut W,
    report: &RunReport,
    signal: Option<&str>,
) -> io::Result<()> {
    for line in report.summary.render_table().lines() {
        writeln!(w, "    {line}")?;
    }
    if let Some((path, n)) = &report.output {
        writeln!(w, "    outcomes:     {n} written to {}", path.display())?;
    }
    for (name, path) in &report.logs {
        writeln!(w, "    log:          {name} -> {}", path.display())?;
    }
    for warning in &report.warnings {
        writeln!(w, "    warning: {warning}")?;
    }
    if !report.expectations.is_empty() {
        writeln!(w)?;
        write_verdicts(w, &report.expectations)?;
    }
    writeln!(w)?;
    match &report.shard {
        Some((shard, bundle)) if !report.interrupted => writeln!(
            w,
            "    shard {shard}: wrote the bundle {}; `traceforge merge` checks the golden file and the expectations on all the shards' bundles",
            bundle.display()
        )?,
        _ => write_golden(w, report.golden.as_ref(), signal)?,
    }
    let verdict = report.verdict();
    // A shard is not judged: "done" says it played its share, not that the run passed.
    let label = match (&report.shard, &verdict) {
        (Some(_), crate::runner::RunVerdict::Passed) => "done",
        _ => verdict.label(),
    };
    write!(w, "{} {}", label.to_ascii_uppercase(), report.scenario)?;
    if let Some((shard, _)) = &report.shard {
        write!(w, " (shard {shard})")?;
    }
    let why = verdict.reason();
    if !why.is_empty() {
        write!(w, ": {why}")?;
    }
    writeln!(w)
}

/// [`write_report`] into a string, for output that is both printed and kept (JUnit carries it).
pub fn report_string(report: &RunReport, signal: Option<&str>) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_report(&mut out, report, signal);
    String::from_utf8_lossy(&out).into_owned()
}

/// What the golden comparison found; `None` when the run was interrupted and not compared.
fn write_golden<W: Write>(
    w: &mut W,
    golden: Option<&golden::Comparison>,
    signal: Option<&str>,
) -> io::Result<()> {
    match golden {
        None => {
            let by = signal.map(|s| format!(" by {s}")).unwrap_or_default();
            writeln!(w, "    golden: not compared (the run was interrupted{by})")
        }
        Some(golden::Comparison::Matched { path }) => {
            writeln!(w, "    golden: matches {}", path.display())
        }
        Some(golden::Comparison::Accepted { path }) => {
            writeln!(w, "    golden: accepted, wrote {}", path.display())
        }
        Some(golden::Comparison::Missing { path, new }) => {
            writeln!(w, "    golden: {} does not exist yet", path.display())?;
            if let Some(new) = new {
                writeln!(w, "    wrote {} for review", new.display())?;
            }
            writeln!(
                w,
                "    hint: review and accept with `cargo insta review`, or re-run with --accept"
            )
        }
        Some(golden::Comparison::Mismatch { path, new, diff }) => {
            writeln!(w, "    golden: this run differs from {}", path.display())?;
            for line in diff.lines() {
                writeln!(w, "    {line}")?;
            }
            match new {
                Some(new) => writeln!(
                    w,
                    "    wrote {} for review: `cargo insta review` (or re-run with --accept)",
                    new.display()
                ),
                None => writeln!(
                    w,
                    "    (CI is set: no .snap.new written; pass --write-new to get one)"
                ),
            }
        }
    }
}

/// The verdict table: one row per expectation, columns as wide as their longest cell.
pub fn write_verdicts<W: Write>(w: &mut W, verdicts: &[expect::Verdict]) -> io::Result<()> {
    let width = |f: fn(&expect::Verdict) -> &str, title: &str| {
        verdicts
            .iter()
            .map(|v| f(v).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let name = width(|v| &v.name, "expectation");
    let threshold = width(|v| &v.threshold, "threshold");
    let measured = width(|v| &v.measured, "measured");
    writeln!(
        w,
        "    {:<name$}  {:<threshold$}  {:<measured$}  result",
        "expectation", "threshold", "measured"
    )?;
    for v in verdicts {
        writeln!(
            w,
            "    {:<name$}  {:<threshold$}  {:<measured$}  {}",
            v.name,
            v.threshold,
            v.measured,
            if v.passed { "pass" } else { "FAIL" }
        )?;
    }
    Ok(())
}

/// The closing table of a run of several scenarios: one row per scenario, then the counts.
pub fn write_results<W: Write>(w: &mut W, played: &[Played]) -> io::Result<()> {
    let width = played
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(w, "{:<width$}  result   details", "scenario")?;
    let mut passed = 0;
    for p in played {
        let verdict = p.verdict();
        if verdict.passed() {
            passed += 1;
        }
        let label = verdict.label().to_ascii_uppercase();
        let row = format!("{:<width$}  {label:<7}  {}", p.name, verdict.reason());
        writeln!(w, "{}", row.trim_end())?;
    }
    writeln!(w, "{passed} passed, {} failed", played.len() - passed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{expectation, played, report};

    fn text(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_verdict_table_is_as_wide_as_its_longest_cells() {
        let verdicts = [
            expectation("success_rate", true),
            expectation("status.200", false),
        ];
        assert_eq!(
            text(|w| write_verdicts(w, &verdicts)),
            "    expectation   threshold  measured     result
    success_rate  >= 50.0%   100.0%       pass
    status.200    <= 0       10 (100.0%)  FAIL
"
        );
    }

    #[test]
    fn a_report_ends_with_its_golden_result_and_verdict() {
        let r = report(
            vec![expectation("status.200", false)],
            Some(golden::Comparison::Mismatch {
                path: "golden/checkout.snap".into(),
                new: None,
                diff: "-seed: 1\n+seed: 2\n".to_string(),
            }),
        );
        let out = text(|w| write_report(w, &r, None));
        assert_eq!(out, report_string(&r, None));
        let tail: Vec<&str> = out.lines().skip_while(|l| !l.is_empty()).collect();
        assert_eq!(
            tail.join("\n"),
            "
    expectation  threshold  measured     result
    status.200   <= 0       10 (100.0%)  FAIL

    golden: this run differs from golden/checkout.snap
    -seed: 1
    +seed: 2
    (CI is set: no .snap.new written; pass --write-new to get one)
FAIL checkout: status.200 <= 0 (measured 10 (100.0%)); golden snapshot differs"
        );
        assert!(out.starts_with("    requests:     10\n"), "{out}");
    }

    #[test]
    fn an_interrupted_report_says_what_stopped_it() {
        let mut r = report(Vec::new(), None);
        r.interrupted = true;
        let out = text(|w| write_report(w, &r, Some("SIGINT")));
        assert!(
            out.ends_with(
                "\n    golden: not compared (the run was interrupted by SIGINT)
STOPPED checkout: interrupted after 10 requests\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn the_results_table_has_a_row_per_scenario_and_the_counts() {
        let matched = Some(golden::Comparison::Matched {
            path: "golden/a.snap".into(),
        });
        let played = [
            played("a", Ok(report(Vec::new(), matched))),
            played(
                "fails-expect",
                Ok(report(vec![expectation("status.200", false)], None)),
            ),
            played("c", Err("the upstream is unreachable".to_string())),
        ];
        assert_eq!(
            text(|w| write_results(w, &played)),
            "scenario      result   details
a             PASS
fails-expect  FAIL     status.200 <= 0 (measured 10 (100.0%))
c             ERROR    the upstream is unreachable
1 passed, 2 failed
"
        );
    }
}
