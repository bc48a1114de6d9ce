//! Expectations: the thresholds of a scenario's `[expect]` table, evaluated on the run's summary
//! into one [`Verdict`] per threshold, in the order the verdict table shows them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::record::Summary;
use crate::record::summary::{Latency, ProxySummary};
use crate::scenario::Expectations;
use crate::scenario::expectation::{
    LatencyBound, ProxyExpectations, ResultKey, Statistic, StatusBound,
};
use crate::spec::duration::{format_duration, format_millis};

/// One expectation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The expectation, named like its key in the scenario (`success_rate`, `status.503`,
    /// `latency.p99`, `targets[/api/resource].latency.p99`).
    pub name: String,
    /// The threshold, readable (`>= 95.0%`).
    pub threshold: String,
    /// What the run measured, readable (`97.5%`).
    pub measured: String,
    pub passed: bool,
}

/// Evaluates every expectation on the summary, in a stable order.
pub fn check(expect: &Expectations, summary: &Summary) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if let Some(min) = expect.success_rate {
        verdicts.push(success_rate("success_rate", min, summary.success_rate()));
    }
    let results = Results {
        requests: summary.requests,
        statuses: &summary.statuses,
        errors: &summary.errors,
    };
    for b in &expect.status {
        status(&mut verdicts, "status", b, &results);
    }
    for b in &expect.latency {
        verdicts.push(latency("latency", b, &summary.latency));
    }
    if let Some(range) = expect.retries {
        verdicts.push(Verdict {
            name: "retries".into(),
            threshold: range.to_string(),
            measured: summary.retries.to_string(),
            passed: range.contains(summary.retries),
        });
    }
    if let Some(range) = expect.late {
        verdicts.push(Verdict {
            name: "late".into(),
            threshold: range.to_string(),
            measured: summary.late.to_string(),
            passed: range.contains(summary.late),
        });
    }
    for (rule, range) in &expect.faults {
        let n = summary.faults.get(rule).copied().unwrap_or(0);
        verdicts.push(Verdict {
            name: format!("faults.{rule}"),
            threshold: range.to_string(),
            measured: format!("{n} attempts"),
            passed: range.contains(n),
        });
    }
    for (rule, min) in &expect.delays {
        let (measured, passed) = match summary.fault_min_latency.get(rule) {
            // Vacuously true: pair it with `faults.<rule> = { min = 1 }` to require firing.
            None => ("never fired".to_string(), true),
            Some(shortest) => (
                format!("shortest {}", format_millis(*shortest)),
                shortest >= min,
            ),
        };
        verdicts.push(Verdict {
            name: format!("delays_honoured.{rule}"),
            threshold: format!("every attempt >= {}", format_duration(*min)),
            measured,
            passed,
        });
    }
    for t in &expect.targets {
        let prefix = format!("targets[{}]", t.path);
        let empty = Default::default();
        let target = summary.targets.get(&t.path).unwrap_or(&empty);
        if let Some(min) = t.success_rate {
            verdicts.push(success_rate(
                &format!("{prefix}.success_rate"),
                min,
                target.success_rate(),
            ));
        }
        let results = Results {
            requests: target.requests,
            statuses: &target.statuses,
            errors: &target.errors,
        };
        for b in &t.status {
            status(&mut verdicts, &format!("{prefix}.status"), b, &results);
        }
        for b in &t.latency {
            verdicts.push(latency(&format!("{prefix}.latency"), b, &target.latency));
        }
    }
    for p in &expect.proxies {
        proxy(&mut verdicts, p, summary);
    }
    verdicts
}

/// `[expect.proxies.NAME]`: the calls one named proxy served.
fn proxy(out: &mut Vec<Verdict>, p: &ProxyExpectations, summary: &Summary) {
    let prefix = format!("proxies.{}", p.proxy);
    let empty = ProxySummary::default();
    let s = summary.proxies.get(&p.proxy).unwrap_or(&empty);
    if let Some(range) = p.requests {
        out.push(Verdict {
            name: format!("{prefix}.requests"),
            threshold: range.to_string(),
            measured: format!("{} calls", s.calls),
            passed: range.contains(s.calls),
        });
    }
    if let Some(range) = p.calls_per_request {
        // Calls tied to no request say nothing about amplification: all of them unclaimed is no data.
        let attributed = s.calls - s.unattributed();
        out.push(Verdict {
            name: format!("{prefix}.calls_per_request"),
            threshold: range.to_string(),
            measured: if attributed == 0 && s.calls > 0 {
                "no call was tied to a load request (no trace context passed on)".to_string()
            } else {
                format!("at most {} for one request", s.max_per_request)
            },
            passed: range.contains(s.max_per_request) && (attributed > 0 || s.calls == 0),
        });
    }
    let results = Results {
        requests: s.calls,
        statuses: &s.statuses,
        errors: &s.errors,
    };
    for b in &p.status {
        status(out, &format!("{prefix}.status"), b, &results);
    }
    for (rule, range) in &p.faults {
        let n = s.faults.get(rule).copied().unwrap_or(0);
        out.push(Verdict {
            name: format!("{prefix}.faults.{rule}"),
            threshold: range.to_string(),
            measured: format!("{n} calls"),
            passed: range.contains(n),
        });
    }
    for b in &p.latency {
        out.push(latency(&format!("{prefix}.latency"), b, &s.latency));
    }
}

/// A declared proxy that served no call fails the run, unless its `requests` expectation allows
/// zero: the service under test most likely called its dependency directly, so none of the
/// proxy's faults were ever tested. One failing verdict per such proxy.
///
/// Each proxy comes with the TLS handshakes its listener saw fail (count, first reason): a
/// client that reached a TLS proxy but did not trust its certificate did not bypass it, and the
/// verdict says what to fix instead.
pub fn unseen_proxies<'a>(
    proxies: impl IntoIterator<Item = (&'a str, Option<&'a (u64, String)>)>,
    expect: &Expectations,
    summary: &Summary,
) -> Vec<Verdict> {
    proxies
        .into_iter()
        .filter(|(name, _)| summary.proxies.get(*name).is_none_or(|p| p.calls == 0))
        .filter(|(name, _)| {
            !expect
                .proxies
                .iter()
                .any(|p| p.proxy == *name && p.allows_zero())
        })
        .map(|(name, handshakes)| Verdict {
            name: format!("proxies.{name}"),
            threshold: "at least 1 call".to_string(),
            measured: match handshakes {
                Some((count, first)) => format!(
                    "no calls, and {count} TLS handshake{} failed (the first: {first}): the service reached the proxy but does not trust its certificate; give it {{proxies.{name}.ca_file}} (for example in SSL_CERT_FILE, REQUESTS_CA_BUNDLE or NODE_EXTRA_CA_CERTS)",
                    if *count == 1 { "" } else { "s" }
                ),
                None => format!(
                    "no calls: the service probably bypassed the proxy; give it {{proxies.{name}.url}} as its dependency's address (or allow it with [expect.proxies.{name}] requests = {{ min = 0 }})"
                ),
            },
            passed: false,
        })
        .collect()
}

fn success_rate(name: &str, min: f64, rate: Option<f64>) -> Verdict {
    let threshold = format!(">= {:.1}%", min * 100.0);
    match rate {
        Some(rate) => Verdict {
            name: name.into(),
            threshold,
            measured: format!("{:.1}%", rate * 100.0),
            // A tiny tolerance: 0.95 written in a file must accept 190 of 200.
            passed: rate + 1e-12 >= min,
        },
        // No requests measured nothing: a success rate cannot pass on no data.
        None => Verdict {
            name: name.into(),
            threshold,
            measured: "no requests".to_string(),
            passed: false,
        },
    }
}

/// Final results of a set of requests.
struct Results<'a> {
    requests: u64,
    statuses: &'a BTreeMap<u16, u64>,
    errors: &'a BTreeMap<String, u64>,
}

impl Results<'_> {
    fn count(&self, key: ResultKey) -> u64 {
        match key {
            ResultKey::Status(s) => self.statuses.get(&s).copied().unwrap_or(0),
            ResultKey::Class(c) => self
                .statuses
                .iter()
                .filter(|(s, _)| **s / 100 == c)
                .map(|(_, n)| n)
                .sum(),
            ResultKey::Error(e) => self.errors.get(e.as_str()).copied().unwrap_or(0),
        }
    }
}

/// One verdict per bound written (`min_count`, `max_share`, ...), so the table says which failed.
fn status(out: &mut Vec<Verdict>, prefix: &str, b: &StatusBound, results: &Results<'_>) {
    let n = results.count(b.key);
    let share = if results.requests == 0 {
        0.0
    } else {
        n as f64 / results.requests as f64
    };
    let measured = format!("{n} ({:.1}%)", share * 100.0);
    let name = format!("{prefix}.{}", b.key);
    let mut push = |threshold: String, passed: bool| {
        out.push(Verdict {
            name: name.clone(),
            threshold,
            measured: measured.clone(),
            passed,
        })
    };
    if let Some(min) = b.min_count {
        push(format!(">= {min}"), n >= min);
    }
    if let Some(max) = b.max_count {
        push(format!("<= {max}"), n <= max);
    }
    if let Some(min) = b.min_share {
        push(format!(">= {:.1}%", min * 100.0), share + 1e-12 >= min);
    }
    if let Some(max) = b.max_share {
        push(format!("<= {:.1}%", max * 100.0), share <= max + 1e-12);
    }
}

fn latency(prefix: &str, b: &LatencyBound, l: &Latency) -> Verdict {
    let measured = match b.statistic {
        Statistic::Quantile(q) => l.quantile(q),
        Statistic::Mean => l.mean(),
        Statistic::Max => l.max(),
    };
    Verdict {
        name: format!("{prefix}.{}", b.key),
        threshold: b.threshold(),
        measured: if l.count() == 0 {
            "no requests".to_string()
        } else {
            format_millis(measured)
        },
        // No requests measured nothing: a latency bound cannot pass on no data.
        passed: l.count() > 0 && b.op.holds(round_us(measured), b.bound),
    }
}

/// The histogram reports microseconds; compare in the same unit.
fn round_us(d: Duration) -> Duration {
    Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::expectation::{CountRange, Op};

    fn expect_rate(rate: f64) -> Expectations {
        Expectations {
            success_rate: Some(rate),
            ..Expectations::default()
        }
    }

    #[test]
    fn success_rate_passes_at_and_above_the_threshold() {
        let mut s = Summary {
            requests: 200,
            succeeded: 190,
            ..Summary::default()
        };
        let at = check(&expect_rate(0.95), &s);
        assert!(at[0].passed);
        s.succeeded = 189;
        let below = check(&expect_rate(0.95), &s);
        assert!(!below[0].passed);
        assert_eq!(below[0].measured, "94.5%");
    }

    #[test]
    fn statuses_count_by_code_class_and_error() {
        let mut s = Summary {
            requests: 10,
            ..Summary::default()
        };
        s.statuses.insert(200, 6);
        s.statuses.insert(503, 3);
        s.errors.insert("timeout".into(), 1);
        let bound = |key, max_share| StatusBound {
            key,
            min_count: None,
            max_count: None,
            min_share: None,
            max_share: Some(max_share),
        };
        let e = Expectations {
            status: vec![
                bound(ResultKey::Class(5), 0.3),
                bound(ResultKey::Status(503), 0.2),
                bound(ResultKey::Error(crate::record::ErrorKind::Timeout), 0.1),
            ],
            retries: Some(CountRange {
                min: None,
                max: Some(0),
            }),
            ..Expectations::default()
        };
        let v = check(&e, &s);
        let passed: Vec<(&str, bool)> = v.iter().map(|v| (v.name.as_str(), v.passed)).collect();
        assert_eq!(
            passed,
            [
                ("status.5xx", true),
                ("status.503", false),
                ("status.timeout", true),
                ("retries", true)
            ]
        );
        assert_eq!(v[1].measured, "3 (30.0%)");
    }

    #[test]
    fn latency_bounds_need_data_and_compare_as_written() {
        let mut s = Summary::default();
        let b = LatencyBound {
            key: "p99".into(),
            statistic: Statistic::Quantile(0.99),
            op: Op::Lt,
            bound: Duration::from_millis(800),
        };
        let e = Expectations {
            latency: vec![b],
            ..Expectations::default()
        };
        assert!(!check(&e, &s)[0].passed, "no data is not a pass");
        s.latency.record(Duration::from_millis(10));
        assert!(check(&e, &s)[0].passed);
        s.latency.record(Duration::from_millis(900));
        s.latency.record(Duration::from_millis(900));
        let v = &check(&e, &s)[0];
        assert!(!v.passed);
        assert_eq!(v.threshold, "< 800ms");
    }
}
