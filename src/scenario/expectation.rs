//! The validated `[expect]` table: every name resolved (rules, statuses, target paths), every
//! bound parsed. [`crate::expect::check`] evaluates it on a run's summary.

use std::fmt;
use std::time::Duration;

use crate::record::ErrorKind;
use crate::spec::duration::format_duration;

/// Thresholds checked after the run, in the order they are reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    pub success_rate: Option<f64>,
    pub status: Vec<StatusBound>,
    pub latency: Vec<LatencyBound>,
    pub retries: Option<CountRange>,
    pub late: Option<CountRange>,
    /// Per rule name: attempts on which it fired.
    pub faults: Vec<(String, CountRange)>,
    /// Per delay rule name: the least delay every attempt it fired on must show.
    pub delays: Vec<(String, Duration)>,
    pub targets: Vec<TargetExpectations>,
    /// `[expect.proxies.NAME]`, in name order.
    pub proxies: Vec<ProxyExpectations>,
}

impl Expectations {
    pub fn is_empty(&self) -> bool {
        *self == Expectations::default()
    }
}

/// Expectations on the requests of one target path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetExpectations {
    pub path: String,
    pub success_rate: Option<f64>,
    pub status: Vec<StatusBound>,
    pub latency: Vec<LatencyBound>,
}

/// Expectations on the calls one named proxy served (`[expect.proxies.NAME]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyExpectations {
    pub proxy: String,
    /// How many calls the proxy served in all.
    pub requests: Option<CountRange>,
    /// The most calls made through the proxy for one load request (retry amplification).
    pub calls_per_request: Option<CountRange>,
    /// Final results of calls, like `[expect] status`.
    pub status: Vec<StatusBound>,
    /// Per rule name of this proxy: calls on which it fired.
    pub faults: Vec<(String, CountRange)>,
    /// Latency of calls, as the proxy measured them (to the response head).
    pub latency: Vec<LatencyBound>,
}

impl ProxyExpectations {
    /// True when the proxy may see no traffic: `requests` says so explicitly.
    pub fn allows_zero(&self) -> bool {
        self.requests.is_some_and(|r| r.contains(0))
    }
}

/// Which final results a status bound counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKey {
    Status(u16),
    /// By the first digit: `5` for `5xx`.
    Class(u16),
    Error(ErrorKind),
}

impl fmt::Display for ResultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultKey::Status(s) => write!(f, "{s}"),
            ResultKey::Class(c) => write!(f, "{c}xx"),
            ResultKey::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Bounds on how many requests ended with `key`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusBound {
    pub key: ResultKey,
    pub min_count: Option<u64>,
    pub max_count: Option<u64>,
    pub min_share: Option<f64>,
    pub max_share: Option<f64>,
}

/// Inclusive bounds on a count.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CountRange {
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl CountRange {
    pub fn contains(&self, n: u64) -> bool {
        self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m)
    }
}

impl fmt::Display for CountRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => write!(f, "{lo}..={hi}"),
            (Some(lo), None) => write!(f, ">= {lo}"),
            (None, Some(hi)) => write!(f, "<= {hi}"),
            (None, None) => f.write_str("any"),
        }
    }
}

/// Which latency statistic a bound applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// A quantile in `(0, 1]`, written `p99`, `p99.9`.
    Quantile(f64),
    Mean,
    Max,
}

/// A comparison written in a latency bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn holds(self, measured: Duration, bound: Duration) -> bool {
        match self {
            Op::Lt => measured < bound,
            Op::Le => measured <= bound,
            Op::Gt => measured > bound,
            Op::Ge => measured >= bound,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// `p99 < 800ms`: the key as written, the statistic, and the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBound {
    pub key: String,
    pub statistic: Statistic,
    pub op: Op,
    pub bound: Duration,
}

impl LatencyBound {
    pub fn threshold(&self) -> String {
        format!("{} {}", self.op.as_str(), format_duration(self.bound))
    }
}
