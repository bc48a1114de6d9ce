//! A run as a story in time: outcomes folded, one by one as they arrive, into time buckets of
//! run time (virtual time on the virtual clock), for the HTML report's charts. Like
//! [`super::Summary`] it keeps aggregates only, never outcomes: at most [`MAX_BUCKETS`] buckets,
//! each with counts and a small HDR histogram, so memory stays flat however long the run.
//!
//! - A request counts in the bucket of its intended send time (`scheduled`): its final result and
//!   its latency (retries and backoff included).
//! - An attempt counts in the bucket of the time it was sent (`Attempt::start`): attempts, retries
//!   and the fault rules that fired on it. A service's calls through a named proxy carry no time of
//!   their own; their rules count at their request's send time, as `proxy/rule`.
//!
//! Buckets start as wide as the planned duration over [`PLANNED_BUCKETS`] (a round value), and
//! double when a time falls past the last one, adjacent pairs added together. Doubling from a
//! width aligned at zero gives exactly the buckets that width would have had from the start, so
//! the result does not depend on the order outcomes arrive in.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Outcome;

/// The most buckets a timeline holds; a later time doubles the width instead.
pub const MAX_BUCKETS: usize = 240;

/// A planned duration is cut into this many buckets (at most), leaving room for the requests
/// that end after it.
pub const PLANNED_BUCKETS: u64 = 120;

/// Per-bucket latency histograms keep 2 significant digits (1%): plenty for a chart, and small
/// (about 27 KB for a range of an hour).
const SIGNIFICANT_DIGITS: u8 = 2;

/// The first width when nothing is planned (a closed loop of N requests).
const UNPLANNED_WIDTH: Duration = Duration::from_millis(1);

/// One slice of run time.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// Requests whose intended send time falls in this bucket.
    pub requests: u64,
    /// Their final results as people read them (`200`, `503`, `timeout`).
    pub results: BTreeMap<String, u64>,
    /// Attempts sent in this bucket, first attempts included.
    pub attempts: u64,
    /// Attempts sent in this bucket that were retries.
    pub retries: u64,
    /// Attempts (or calls) sent in this bucket on which each rule fired.
    pub faults: BTreeMap<String, u64>,
    /// The latency of the requests sent in this bucket, in microseconds.
    latency: Option<Histogram<u64>>,
}

impl Bucket {
    /// The latency at quantile `q` of the requests sent in this bucket; `None` when there were none.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| Duration::from_micros(h.value_at_quantile(q)))
    }

    fn add(&mut self, other: Bucket) {
        self.requests += other.requests;
        self.attempts += other.attempts;
        self.retries += other.retries;
        add_counts(&mut self.results, &other.results);
        add_counts(&mut self.faults, &other.faults);
        match (self.latency.as_mut(), other.latency) {
            // Histograms of one timeline share their bounds and grow on demand.
            (Some(mine), Some(theirs)) => {
                let _ = mine.add(&theirs);
            }
            (None, theirs) => self.latency = theirs,
            (Some(_), None) => {}
        }
    }
}

/// What one fault rule did over the whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleStats {
    /// Attempts (or calls) it fired on.
    pub fired: u64,
    /// Its kind (`delay`, `error`, ...), as the proxy reported it.
    pub kind: String,
    /// The results of those attempts (`503`, `200`, `reset`).
    pub results: BTreeMap<String, u64>,
}

/// The time-bucketed aggregates of a run.
#[derive(Debug, Clone)]
pub struct Timeline {
    width: Duration,
    buckets: Vec<Bucket>,
    /// What the latency histograms are sized for, in microseconds.
    highest_us: u64,
    /// The latest time anything ended: the right end of the time axis.
    end: Duration,
    rules: BTreeMap<String, RuleStats>,
    /// Per named proxy: requests by the number of calls their service made through it.
    calls_per_request: BTreeMap<String, BTreeMap<u64, u64>>,
}

impl Timeline {
    /// An empty timeline for a run planned to last `planned` (`None` when it is not known in
    /// advance), whose latencies go up to `highest`.
    pub fn new(planned: Option<Duration>, highest: Duration) -> Self {
        let width = planned
            .map(|p| round_width(p / PLANNED_BUCKETS as u32))
            .unwrap_or(UNPLANNED_WIDTH)
            .max(Duration::from_micros(1));
        Timeline {
            width,
            buckets: Vec::new(),
            highest_us: micros(highest).max(2),
            end: Duration::ZERO,
            rules: BTreeMap::new(),
            calls_per_request: BTreeMap::new(),
        }
    }

    /// Makes sure `proxy` shows in [`Timeline::calls_per_request`], so requests that made no call
    /// through it count (as 0 calls).
    pub fn declare_proxy(&mut self, proxy: &str) {
        self.calls_per_request.entry(proxy.to_string()).or_default();
    }

    /// Folds one outcome in.
    pub fn push(&mut self, o: &Outcome) {
        let highest = self.highest_us;
        let sent = self.bucket_mut(o.scheduled);
        sent.requests += 1;
        count(&mut sent.results, &o.final_label());
        if sent.latency.is_none() {
            sent.latency = histogram(highest);
        }
        if let Some(h) = sent.latency.as_mut() {
            h.saturating_record(micros(o.latency).max(1));
        }
        for (n, a) in o.attempts.iter().enumerate() {
            // Files written before attempts had a start time say 0: the request's start is the
            // best guess then.
            let at = a.start.max(o.start);
            let b = self.bucket_mut(at);
            b.attempts += 1;
            if n > 0 {
                b.retries += 1;
            }
            for rule in &a.faults {
                count(&mut b.faults, rule);
            }
            let result = attempt_result(a.status, a.error.map(|e| e.as_str()));
            for (i, rule) in a.faults.iter().enumerate() {
                let kind = a.fault_kinds.get(i).map_or("", String::as_str);
                self.fired(rule, kind, &result);
            }
            self.end = self.end.max(at + a.latency);
        }
        for (proxy, calls) in &o.calls {
            for call in calls {
                let result = call.result();
                for rule in &call.faults {
                    let key = format!("{proxy}/{rule}");
                    count(&mut self.bucket_mut(o.scheduled).faults, &key);
                    self.fired(&key, "", &result);
                }
            }
        }
        let declared: Vec<String> = self
            .calls_per_request
            .keys()
            .filter(|p| !o.calls.contains_key(*p))
            .cloned()
            .collect();
        for proxy in declared {
            count_n(&mut self.calls_per_request, &proxy, 0);
        }
        for (proxy, calls) in &o.calls {
            count_n(&mut self.calls_per_request, proxy, calls.len() as u64);
        }
        self.end = self.end.max(o.scheduled + o.latency);
    }

    fn fired(&mut self, rule: &str, kind: &str, result: &str) {
        let stats = match self.rules.get_mut(rule) {
            Some(s) => s,
            None => self.rules.entry(rule.to_string()).or_default(),
        };
        stats.fired += 1;
        if stats.kind.is_empty() && !kind.is_empty() {
            stats.kind = kind.to_string();
        }
        count(&mut stats.results, result);
    }

    /// The bucket `at` falls in, doubling the width until it fits.
    fn bucket_mut(&mut self, at: Duration) -> &mut Bucket {
        let mut index = self.index(at);
        while index >= MAX_BUCKETS {
            self.coarsen();
            index = self.index(at);
        }
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        &mut self.buckets[index]
    }

    fn index(&self, at: Duration) -> usize {
        let i = at.as_nanos() / self.width.as_nanos().max(1);
        usize::try_from(i).unwrap_or(usize::MAX)
    }

    /// Doubles the width: buckets 2k and 2k+1 become bucket k.
    fn coarsen(&mut self) {
        self.width = self.width.saturating_mul(2);
        let old = std::mem::take(&mut self.buckets);
        let mut pairs = old.into_iter();
        while let Some(mut first) = pairs.next() {
            if let Some(second) = pairs.next() {
                first.add(second);
            }
            self.buckets.push(first);
        }
    }

    /// The width of every bucket.
    pub fn width(&self) -> Duration {
        self.width
    }

    /// The buckets from time zero; bucket `i` covers `[i * width, (i + 1) * width)`. Trailing
    /// empty buckets are not there.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// The latest time a request or attempt ended.
    pub fn end(&self) -> Duration {
        self.end
    }

    /// Per fault rule (`proxy/rule` for a named proxy's rules): what it did over the run.
    pub fn rules(&self) -> &BTreeMap<String, RuleStats> {
        &self.rules
    }

    /// Per named proxy: how many requests made 0, 1, 2, ... calls through it.
    pub fn calls_per_request(&self) -> &BTreeMap<String, BTreeMap<u64, u64>> {
        &self.calls_per_request
    }
}

/// `503`, `timeout`: an attempt's result as people read it.
fn attempt_result(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => "none".to_string(),
    }
}

/// A round bucket width at least `d`: 1, 2 or 5 times a power of ten below a second; whole
/// seconds, minutes and hours (1, 2, 5, 10, 15, 30 of them) above.
fn round_width(d: Duration) -> Duration {
    const STEPS: [u64; 16] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 18000, 36000,
    ];
    if d <= Duration::from_secs(1) {
        let us = micros(d).max(1);
        let mut unit = 1u64;
        loop {
            for step in [1, 2, 5] {
                if step * unit >= us {
                    return Duration::from_micros(step * unit);
                }
            }
            unit *= 10;
        }
    }
    STEPS
        .iter()
        .map(|&s| Duration::from_secs(s))
        .find(|&s| s >= d)
        .unwrap_or_else(|| Duration::from_secs(d.as_secs() + 1))
}

/// A bucket's latency histogram; `None` only if HDR refused the bounds, which `highest_us >= 2`
/// rules out.
fn histogram(highest_us: u64) -> Option<Histogram<u64>> {
    let mut h = Histogram::new_with_bounds(1, highest_us, SIGNIFICANT_DIGITS).ok()?;
    // A latency past the planned range grows the histogram instead of being dropped.
    h.auto(true);
    Some(h)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    // Look up before inserting: a key is cloned once per run, not once per request.
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

fn count_n(map: &mut BTreeMap<String, BTreeMap<u64, u64>>, proxy: &str, n: u64) {
    if let Some(counts) = map.get_mut(proxy) {
        *counts.entry(n).or_default() += 1;
    } else {
        map.entry(proxy.to_string()).or_default().insert(n, 1);
    }
}

fn add_counts(to: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *to.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::calls::Call;
    use crate::record::{Attempt, ErrorKind};

    fn attempt(start_s: u64, status: Option<u16>, faults: &[&str]) -> Attempt {
        Attempt {
            request_id: String::new(),
            status,
            error: status.is_none().then_some(ErrorKind::Timeout),
            faults: faults.iter().map(|f| f.to_string()).collect(),
            fault_kinds: faults.iter().map(|_| "error".to_string()).collect(),
            bytes: 0,
            latency: Duration::from_millis(10),
            start: Duration::from_secs(start_s),
            websocket: None,
        }
    }

    fn outcome(index: u64, at_s: u64, latency_ms: u64, attempts: Vec<Attempt>) -> Outcome {
        let last = attempts.last().cloned();
        Outcome {
            index,
            method: "GET".into(),
            path: "/api".into(),
            status: last.as_ref().and_then(|a| a.status),
            error: last.as_ref().and_then(|a| a.error),
            trace_id: String::new(),
            attempts,
            start: Duration::from_secs(at_s),
            scheduled: Duration::from_secs(at_s),
            latency: Duration::from_millis(latency_ms),
            service: Duration::from_millis(latency_ms),
            protocol: Default::default(),
            calls: BTreeMap::new(),
        }
    }

    /// Six requests over a minute planned as one: 0.5 s buckets.
    fn hand_built() -> Vec<Outcome> {
        vec![
            outcome(0, 0, 20, vec![attempt(0, Some(200), &[])]),
            outcome(1, 0, 40, vec![attempt(0, Some(200), &["slow"])]),
            // A 503 at 10 s retried at 12 s: the request counts at 10 s, the retry at 12 s.
            outcome(
                2,
                10,
                2010,
                vec![
                    attempt(10, Some(503), &["outage"]),
                    attempt(12, Some(200), &[]),
                ],
            ),
            outcome(
                3,
                10,
                4010,
                vec![
                    attempt(10, Some(503), &["outage"]),
                    attempt(12, Some(503), &["outage"]),
                    attempt(14, None, &[]),
                ],
            ),
            outcome(4, 30, 10, vec![attempt(30, Some(200), &[])]),
            outcome(5, 59, 10, vec![attempt(59, Some(404), &[])]),
        ]
    }

    fn timeline(outcomes: &[Outcome]) -> Timeline {
        let mut t = Timeline::new(Some(Duration::from_secs(60)), Duration::from_secs(60));
        for o in outcomes {
            t.push(o);
        }
        t
    }

    /// `(bucket, requests, attempts, retries)` of every non-empty bucket.
    fn counts(t: &Timeline) -> Vec<(usize, u64, u64, u64)> {
        t.buckets()
            .iter()
            .enumerate()
            .filter(|(_, b)| b.requests + b.attempts > 0)
            .map(|(i, b)| (i, b.requests, b.attempts, b.retries))
            .collect()
    }

    #[test]
    fn requests_count_at_their_send_time_and_attempts_at_theirs() {
        let t = timeline(&hand_built());
        assert_eq!(t.width(), Duration::from_millis(500));
        assert_eq!(
            counts(&t),
            vec![
                (0, 2, 2, 0),
                (20, 2, 2, 0),
                (24, 0, 2, 2),
                (28, 0, 1, 1),
                (60, 1, 1, 0),
                (118, 1, 1, 0),
            ]
        );
        let b = &t.buckets()[20];
        assert_eq!(
            b.results,
            BTreeMap::from([("200".into(), 1), ("timeout".into(), 1)])
        );
        assert_eq!(b.faults, BTreeMap::from([("outage".into(), 2)]));
        assert_eq!(
            t.buckets()[24].faults,
            BTreeMap::from([("outage".into(), 1)])
        );
        assert_eq!(t.buckets()[0].faults, BTreeMap::from([("slow".into(), 1)]));
        // Percentiles per bucket: 20 ms and 40 ms sent together (2 significant digits).
        let p50 = t.buckets()[0].quantile(0.5).map(|d| d.as_millis());
        assert_eq!(p50, Some(20));
        let p99 = t.buckets()[0].quantile(0.99).map(|d| d.as_millis());
        assert_eq!(p99, Some(40));
        assert_eq!(t.buckets()[24].quantile(0.5), None);
        assert_eq!(t.end(), Duration::from_millis(59_010));
        let outage = &t.rules()["outage"];
        assert_eq!(outage.fired, 3);
        assert_eq!(outage.kind, "error");
        assert_eq!(outage.results, BTreeMap::from([("503".into(), 3)]));
    }

    #[test]
    fn a_time_past_the_last_bucket_doubles_the_width_as_if_it_had_been_chosen_first() {
        let mut late = hand_built();
        // 200 s: past 240 buckets of 0.5 s, so the width doubles to 1 s.
        late.push(outcome(6, 200, 10, vec![attempt(200, Some(200), &[])]));
        let t = timeline(&late);
        assert_eq!(t.width(), Duration::from_secs(1));
        assert_eq!(
            counts(&t),
            vec![
                (0, 2, 2, 0),
                (10, 2, 2, 0),
                (12, 0, 2, 2),
                (14, 0, 1, 1),
                (30, 1, 1, 0),
                (59, 1, 1, 0),
                (200, 1, 1, 0),
            ]
        );
        // In any order: the same buckets.
        late.reverse();
        let reversed = timeline(&late);
        assert_eq!(counts(&reversed), counts(&t));
        assert_eq!(reversed.buckets()[10].results, t.buckets()[10].results);
        assert_eq!(
            reversed.buckets()[10].quantile(0.9),
            t.buckets()[10].quantile(0.9)
        );
    }

    #[test]
    fn widths_are_round_and_an_unplanned_run_starts_at_a_millisecond() {
        let width = |s: u64| Timeline::new(Some(Duration::from_secs(s)), Duration::from_secs(1));
        assert_eq!(width(3600).width(), Duration::from_secs(30));
        assert_eq!(width(3598).width(), Duration::from_secs(30));
        assert_eq!(width(10).width(), Duration::from_millis(100));
        assert_eq!(width(86_400).width(), Duration::from_secs(900));
        let unplanned = Timeline::new(None, Duration::from_secs(1));
        assert_eq!(unplanned.width(), Duration::from_millis(1));
    }

    #[test]
    fn calls_per_request_count_requests_that_made_none() {
        let mut t = timeline(&[]);
        t.declare_proxy("payments");
        let call = |faults: Vec<String>| Call {
            ordinal: 0,
            method: "POST".into(),
            path: "/charge".into(),
            status: Some(503),
            error: None,
            faults,
            grpc_status: None,
            latency: Duration::from_millis(1),
        };
        let mut two = outcome(0, 1, 10, vec![attempt(1, Some(200), &[])]);
        two.calls.insert(
            "payments".into(),
            vec![call(vec!["pay-503".into()]), call(vec![])],
        );
        t.push(&two);
        t.push(&outcome(1, 1, 10, vec![attempt(1, Some(200), &[])]));
        assert_eq!(
            t.calls_per_request()["payments"],
            BTreeMap::from([(0, 1), (2, 1)])
        );
        assert_eq!(t.rules()["payments/pay-503"].fired, 1);
        assert_eq!(t.buckets()[2].faults["payments/pay-503"], 1);
    }
}
