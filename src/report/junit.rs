//! The `--junit` file, built with `quick-junit` (which escapes and drops what XML cannot hold):
//! one `<testsuite name="traceforge">`; per scenario one `<testcase>` named after it carrying its
//! overall verdict, then one `<testcase>` per expectation.

use std::io::{self, Write};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::Played;
use crate::runner::{Reason, RunVerdict};

const SUITE: &str = "traceforge";

/// Writes the JUnit file. A scenario's test case fails (`<failure>`, typed `golden`,
/// `expectation` or `golden+expectation`, its message every reason) when it ran and did not
/// pass, and errs (`<error>`, typed `stopped` or `error`) when it was interrupted or could not
/// run; it carries what was printed for it as its output. Each expectation's test case is named
/// `<scenario>: <expectation> <threshold>` and fails when the expectation did not hold.
pub fn write_junit<W: Write>(w: &mut W, played: &[Played]) -> io::Result<()> {
    let mut suite = TestSuite::new(SUITE);
    let mut total = Duration::ZERO;
    for p in played {
        let classname = format!("{SUITE}.{}", p.name);
        let time = p
            .result
            .as_ref()
            .map_or(Duration::ZERO, |r| r.summary.elapsed);
        total += time;
        let mut case = TestCase::new(p.name.as_str(), scenario_status(p));
        case.set_classname(classname.as_str())
            .set_time(time)
            .set_system_out(p.text.as_str());
        case.extra
            .insert("file".into(), p.file.display().to_string().into());
        suite.add_test_case(case);
        let Ok(report) = &p.result else { continue };
        for v in &report.expectations {
            let status = if v.passed {
                TestCaseStatus::success()
            } else {
                let message = format!("{} {}: measured {}", v.name, v.threshold, v.measured);
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(message.as_str())
                    .set_type("expectation")
                    .set_description(message);
                status
            };
            let mut case = TestCase::new(format!("{}: {} {}", p.name, v.name, v.threshold), status);
            case.set_classname(classname.as_str())
                .set_time(Duration::ZERO);
            suite.add_test_case(case);
        }
    }
    suite.set_time(total);
    let mut report = Report::new(SUITE);
    report.set_time(total).add_test_suite(suite);
    report.serialize(&mut *w).map_err(io::Error::other)?;
    writeln!(w)
}

/// The status of a scenario's own test case, from its verdict.
fn scenario_status(p: &Played) -> TestCaseStatus {
    let verdict = p.verdict();
    let (kind, ty) = match &verdict {
        RunVerdict::Passed => return TestCaseStatus::success(),
        RunVerdict::Failed(reasons) => (NonSuccessKind::Failure, failure_type(reasons)),
        RunVerdict::Stopped(_) | RunVerdict::Error(_) => (NonSuccessKind::Error, verdict.label()),
    };
    let mut status = TestCaseStatus::non_success(kind);
    status
        .set_message(verdict.reason())
        .set_type(ty)
        .set_description(p.text.as_str());
    status
}

fn failure_type(reasons: &[Reason]) -> &'static str {
    let golden = reasons
        .iter()
        .any(|r| matches!(r, Reason::GoldenDiffers | Reason::GoldenMissing));
    let expectation = reasons.iter().any(|r| matches!(r, Reason::Expectation(_)));
    match (golden, expectation) {
        (true, true) => "golden+expectation",
        (true, false) => "golden",
        _ => "expectation",
    }
}

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;

    use super::*;
    use crate::golden;
    use crate::report::tests::{expectation, played, report};

    /// Every element as its name and attributes, in document order.
    fn elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut out = Vec::new();
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => return out,
                Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap_or_else(|e| panic!("{e}"));
                            let value = a
                                .normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .unwrap_or_else(|e| panic!("{e}"))
                                .into_owned();
                            (a.key.as_ref().to_string(), value)
                        })
                        .collect();
                    out.push((e.name().as_ref().to_string(), attrs));
                }
                Ok(_) => {}
                Err(e) => panic!("not XML: {e}\n{xml}"),
            }
        }
    }

    fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> &'a str {
        attrs
            .iter()
            .find(|(k, _)| k == name)
            .map_or_else(|| panic!("no {name} in {attrs:?}"), |(_, v)| v.as_str())
    }

    #[test]
    fn scenarios_and_expectations_are_test_cases_with_typed_failures() {
        let matched = Some(golden::Comparison::Matched {
            path: "golden/a.snap".into(),
        });
        let missing = Some(golden::Comparison::Missing {
            path: "golden/b.snap".into(),
            new: None,
        });
        let mut stopped = report(Vec::new(), None);
        stopped.interrupted = true;
        let played = [
            played(
                "a",
                Ok(report(vec![expectation("success_rate", true)], matched)),
            ),
            played(
                "b",
                Ok(report(vec![expectation("status.200", false)], missing)),
            ),
            played("c", Ok(stopped)),
            played(
                "d",
                Err("the upstream is unreachable\u{1b}[0m\u{1}".to_string()),
            ),
        ];
        let mut out = Vec::new();
        write_junit(&mut out, &played).unwrap_or_else(|e| panic!("{e}"));
        let xml = String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"));
        let elements = elements(&xml);
        let names: Vec<&str> = elements.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "testsuites",
                "testsuite", //
                "testcase",
                "system-out",
                "testcase", // a, its expectation
                "testcase",
                "failure",
                "system-out",
                "testcase",
                "failure", // b
                "testcase",
                "error",
                "system-out", // c
                "testcase",
                "error",
                "system-out", // d
            ],
            "{xml}"
        );
        for (_, attrs) in &elements[..2] {
            assert_eq!(attr(attrs, "name"), "traceforge");
            assert_eq!(attr(attrs, "tests"), "6");
            assert_eq!(attr(attrs, "failures"), "2");
            assert_eq!(attr(attrs, "errors"), "2");
            assert_eq!(attr(attrs, "time"), "4.500");
        }
        let a = &elements[2].1;
        assert_eq!(attr(a, "name"), "a");
        assert_eq!(attr(a, "classname"), "traceforge.a");
        assert_eq!(attr(a, "file"), "scenarios/a.toml");
        assert_eq!(attr(a, "time"), "1.500");
        assert_eq!(attr(&elements[4].1, "name"), "a: success_rate >= 50.0%");
        let b = &elements[6].1;
        assert_eq!(attr(b, "type"), "golden+expectation");
        assert_eq!(
            attr(b, "message"),
            "status.200 <= 0 (measured 10 (100.0%)); no golden snapshot yet"
        );
        assert_eq!(attr(&elements[8].1, "name"), "b: status.200 <= 0");
        let expectation = &elements[9].1;
        assert_eq!(attr(expectation, "type"), "expectation");
        assert_eq!(
            attr(expectation, "message"),
            "status.200 <= 0: measured 10 (100.0%)"
        );
        assert_eq!(attr(&elements[11].1, "type"), "stopped");
        let d = &elements[14].1;
        assert_eq!(attr(d, "type"), "error");
        // Escape sequences and control characters cannot be held in XML 1.0.
        assert_eq!(attr(d, "message"), "the upstream is unreachable");
        assert!(xml.contains("    report of a &lt;&amp;&gt;\n"), "{xml}");
    }
}
