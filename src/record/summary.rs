//! The run's aggregate: counts in sorted maps (stable output) and HDR latency histograms of fixed
//! size, so memory stays flat however many requests a run makes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Outcome;
use super::calls::{Call, Unattributed};
use crate::spec::duration::format_millis;

/// Requests that start more than this far behind their intended send time are counted as late.
/// Tokio's timer has 1ms granularity and a loaded machine adds a few ms of scheduling jitter, so a
/// lower threshold would count noise.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// Latencies are recorded in microseconds with 3 significant digits; a histogram is sized for an
/// hour unless the run says it can take longer ([`Latency::up_to`]).
const DEFAULT_HIGHEST: Duration = Duration::from_secs(3600);

/// A latency histogram, sized once for the longest latency the run can produce (so memory stays
/// flat whatever the request count). A longer value than planned grows the histogram rather than
/// being clamped: a bound like `max = "< 2h"` must see the real value.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Option<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::up_to(DEFAULT_HIGHEST)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A histogram travels (in a shard's result bundle) in the standard HdrHistogram V2 encoding, as
/// base64 text: any HdrHistogram library reads it, and adding the decoded histograms is exact.
impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use hdrhistogram::serialization::Serializer as _;
        match &self.histogram {
            None => s.serialize_none(),
            Some(h) => {
                let mut bytes = Vec::new();
                hdrhistogram::serialization::V2Serializer::new()
                    .serialize(h, &mut bytes)
                    .map_err(|e| serde::ser::Error::custom(format!("{e:?}")))?;
                s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Latency, D::Error> {
        use base64::Engine as _;
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(Latency { histogram: None });
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        let mut histogram: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| serde::de::Error::custom(format!("not an HdrHistogram: {e:?}")))?;
        histogram.auto(true);
        Ok(Latency {
            histogram: Some(histogram),
        })
    }
}

impl Latency {
    /// Adds every value of `other` (histograms of one run share their bounds).
    pub fn merge(&mut self, other: &Latency) {
        if let (Some(mine), Some(theirs)) = (self.histogram.as_mut(), other.histogram.as_ref()) {
            // Auto-resizing histograms take any value; an error would only drop counts.
            let _ = mine.add(theirs);
        }
    }

    /// A histogram that holds latencies up to `highest` exactly (3 significant digits).
    pub fn up_to(highest: Duration) -> Self {
        // HDR needs a highest value of at least twice the lowest (1 µs).
        let highest = micros(highest).max(2);
        let histogram = Histogram::new_with_bounds(1, highest, 3).ok().map(|mut h| {
            h.auto(true);
            h
        });
        Latency { histogram }
    }

    pub fn record(&mut self, d: Duration) {
        if let Some(h) = self.histogram.as_mut() {
            // A zero latency counts as the lowest trackable value (1 µs); anything longer than
            // planned grows the histogram.
            let us = micros(d).max(1);
            if h.record(us).is_err() {
                h.saturating_record(us);
            }
        }
    }

    /// The highest value this histogram can hold without growing (for tests and reports).
    pub fn highest_trackable(&self) -> Duration {
        self.histogram
            .as_ref()
            .map_or(Duration::ZERO, |h| Duration::from_micros(h.high()))
    }

    pub fn count(&self) -> u64 {
        self.histogram.as_ref().map_or(0, Histogram::len)
    }

    /// The latency at quantile `q` in `[0, 1]`; zero when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        match self.histogram.as_ref() {
            Some(h) if !h.is_empty() => Duration::from_micros(h.value_at_quantile(q)),
            _ => Duration::ZERO,
        }
    }

    pub fn max(&self) -> Duration {
        match self.histogram.as_ref() {
            Some(h) if !h.is_empty() => Duration::from_micros(h.max()),
            _ => Duration::ZERO,
        }
    }

    pub fn min(&self) -> Duration {
        match self.histogram.as_ref() {
            Some(h) if !h.is_empty() => Duration::from_micros(h.min()),
            _ => Duration::ZERO,
        }
    }

    pub fn mean(&self) -> Duration {
        match self.histogram.as_ref() {
            Some(h) if !h.is_empty() => Duration::from_micros(h.mean().round() as u64),
            _ => Duration::ZERO,
        }
    }
}

/// Milliseconds rounded to the microsecond, for machine-readable reports.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Aggregates of the requests sent to one target path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetSummary {
    pub requests: u64,
    pub succeeded: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency: Latency,
}

impl TargetSummary {
    fn new(highest: Duration) -> Self {
        TargetSummary {
            latency: Latency::up_to(highest),
            ..TargetSummary::default()
        }
    }

    fn push(&mut self, o: &Outcome) {
        self.requests += 1;
        if o.succeeded() {
            self.succeeded += 1;
        }
        // A WebSocket that got its `101` but not all its echoes counts as its error.
        match (o.status, o.error) {
            (_, Some(e)) => *self.errors.entry(e.to_string()).or_default() += 1,
            (Some(s), None) => *self.statuses.entry(s).or_default() += 1,
            (None, None) => {}
        }
        self.latency.record(o.latency);
    }

    /// Adds the counts of `other`, the same target's requests counted elsewhere (another shard).
    fn merge(&mut self, other: &TargetSummary) {
        self.requests += other.requests;
        self.succeeded += other.succeeded;
        add_counts(&mut self.statuses, &other.statuses);
        add_counts(&mut self.errors, &other.errors);
        self.latency.merge(&other.latency);
    }

    /// Share of requests that succeeded, in `[0, 1]`; `None` when there were none: no requests
    /// is not a success rate of 100%.
    pub fn success_rate(&self) -> Option<f64> {
        share(self.succeeded, self.requests)
    }
}

fn add_counts<K: Ord + Clone>(to: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *to.entry(k.clone()).or_default() += v;
    }
}

fn share(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// Aggregates of the calls one named proxy served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProxySummary {
    /// Every call, attributed or not.
    pub calls: u64,
    /// The answers the proxy gave (upstream or injected).
    pub statuses: BTreeMap<u16, u64>,
    /// Calls that got no answer: `reset`, `hang`, `cancelled`.
    pub errors: BTreeMap<String, u64>,
    /// Calls on which each of its rules fired.
    pub faults: BTreeMap<String, u64>,
    /// Arrival to response head.
    pub latency: Latency,
    /// The most calls one load request caused at this proxy (retry amplification).
    pub max_per_request: u64,
    /// Calls whose trace context named no load request (keyed on that context).
    pub unattributed_traced: u64,
    /// Calls with no trace context at all (decided by arrival order).
    pub unattributed_untraced: u64,
}

impl ProxySummary {
    fn new(highest: Duration) -> Self {
        ProxySummary {
            latency: Latency::up_to(highest),
            ..ProxySummary::default()
        }
    }

    fn push(&mut self, call: &Call) {
        self.calls += 1;
        match (call.status, call.error) {
            (Some(s), _) => *self.statuses.entry(s).or_default() += 1,
            (None, Some(e)) => *self.errors.entry(e.as_str().to_string()).or_default() += 1,
            (None, None) => {}
        }
        for rule in &call.faults {
            match self.faults.get_mut(rule) {
                Some(n) => *n += 1,
                None => {
                    self.faults.insert(rule.clone(), 1);
                }
            }
        }
        self.latency.record(call.latency);
    }

    /// Adds the counts of `other`, the same proxy's calls counted elsewhere.
    pub fn merge(&mut self, other: &ProxySummary) {
        self.calls += other.calls;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
        self.max_per_request = self.max_per_request.max(other.max_per_request);
        self.unattributed_traced += other.unattributed_traced;
        self.unattributed_untraced += other.unattributed_untraced;
    }

    /// Calls no load request claimed.
    pub fn unattributed(&self) -> u64 {
        self.unattributed_traced + self.unattributed_untraced
    }
}

/// Aggregates of a run. It serializes whole (histograms in the HdrHistogram V2 encoding) for a
/// shard's result bundle, and [`Summary::merge`] adds shards' summaries into the run's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Logical requests recorded.
    pub requests: u64,
    /// Requests whose final status is 2xx or 3xx.
    pub succeeded: u64,
    /// Every attempt, retries included.
    pub attempts: u64,
    pub retries: u64,
    /// Final statuses of requests.
    pub statuses: BTreeMap<u16, u64>,
    /// Final errors of requests that got no response.
    pub errors: BTreeMap<String, u64>,
    /// Attempts on which each fault rule fired.
    pub faults: BTreeMap<String, u64>,
    /// Per logical request from its intended send time, backoff included.
    pub latency: Latency,
    /// Per logical request from its actual start, backoff included.
    pub service: Latency,
    /// Per attempt.
    pub attempt_latency: Latency,
    /// Requests that started more than [`LATE_AFTER`] behind schedule.
    pub late: u64,
    /// The most any request started behind schedule.
    #[serde(with = "super::micros")]
    pub max_late: Duration,
    /// Per target path.
    pub targets: BTreeMap<String, TargetSummary>,
    /// Per fault rule: the shortest attempt on which it fired.
    #[serde(with = "micros_map")]
    pub fault_min_latency: BTreeMap<String, Duration>,
    /// From the start of the run to the end of the last request.
    #[serde(with = "super::micros")]
    pub elapsed: Duration,
    /// What the latency histograms were sized for.
    #[serde(with = "super::micros")]
    pub highest: Duration,
    /// Per named proxy (services in the loop): the calls it served.
    pub proxies: BTreeMap<String, ProxySummary>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary::for_latencies_up_to(DEFAULT_HIGHEST)
    }
}

impl Summary {
    /// An empty summary whose histograms hold latencies up to `highest` without growing.
    pub fn for_latencies_up_to(highest: Duration) -> Self {
        Summary {
            requests: 0,
            succeeded: 0,
            attempts: 0,
            retries: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            faults: BTreeMap::new(),
            latency: Latency::up_to(highest),
            service: Latency::up_to(highest),
            attempt_latency: Latency::up_to(highest),
            late: 0,
            max_late: Duration::ZERO,
            targets: BTreeMap::new(),
            fault_min_latency: BTreeMap::new(),
            elapsed: Duration::ZERO,
            highest,
            proxies: BTreeMap::new(),
        }
    }

    /// Adds `other`, a summary of other requests of the same run (another shard's): counts add
    /// up, histograms are added bucket by bucket, extremes take the extreme. The result is the
    /// summary one process playing both sets of requests would have made.
    pub fn merge(&mut self, other: &Summary) {
        self.requests += other.requests;
        self.succeeded += other.succeeded;
        self.attempts += other.attempts;
        self.retries += other.retries;
        add_counts(&mut self.statuses, &other.statuses);
        add_counts(&mut self.errors, &other.errors);
        add_counts(&mut self.faults, &other.faults);
        self.latency.merge(&other.latency);
        self.service.merge(&other.service);
        self.attempt_latency.merge(&other.attempt_latency);
        self.late += other.late;
        self.max_late = self.max_late.max(other.max_late);
        for (path, t) in &other.targets {
            let highest = self.highest;
            self.targets
                .entry(path.clone())
                .or_insert_with(|| TargetSummary::new(highest))
                .merge(t);
        }
        for (rule, min) in &other.fault_min_latency {
            let mine = self.fault_min_latency.entry(rule.clone()).or_insert(*min);
            *mine = (*mine).min(*min);
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        self.merge_proxies(&other.proxies);
    }

    /// Makes sure `proxy` has an entry, so a proxy that saw nothing still shows, with zero calls.
    pub fn declare_proxy(&mut self, proxy: &str) {
        self.proxy_mut(proxy);
    }

    fn proxy_mut(&mut self, proxy: &str) -> &mut ProxySummary {
        let highest = self.highest;
        self.proxies
            .entry(proxy.to_string())
            .or_insert_with(|| ProxySummary::new(highest))
    }

    /// Adds the calls counted in `proxies` (per named proxy) to this summary's.
    pub fn merge_proxies(&mut self, proxies: &BTreeMap<String, ProxySummary>) {
        for (name, p) in proxies {
            self.proxy_mut(name).merge(p);
        }
    }

    /// Adds a call no load request claimed.
    pub fn push_unattributed(&mut self, u: &Unattributed) {
        let p = self.proxy_mut(&u.proxy);
        p.push(&u.call);
        if u.context.is_some() {
            p.unattributed_traced += 1;
        } else {
            p.unattributed_untraced += 1;
        }
    }

    pub fn push(&mut self, o: &Outcome) {
        self.requests += 1;
        if o.succeeded() {
            self.succeeded += 1;
        }
        self.attempts += o.attempts.len() as u64;
        self.retries += o.retries();
        // A WebSocket that got its `101` but not all its echoes counts as its error.
        match (o.status, o.error) {
            (_, Some(e)) => *self.errors.entry(e.to_string()).or_default() += 1,
            (Some(s), None) => *self.statuses.entry(s).or_default() += 1,
            (None, None) => {}
        }
        for a in &o.attempts {
            for rule in &a.faults {
                // Look up before inserting: a rule name is cloned once per run, not per attempt.
                match self.faults.get_mut(rule) {
                    Some(n) => *n += 1,
                    None => {
                        self.faults.insert(rule.clone(), 1);
                    }
                }
                match self.fault_min_latency.get_mut(rule) {
                    Some(min) => *min = (*min).min(a.latency),
                    None => {
                        self.fault_min_latency.insert(rule.clone(), a.latency);
                    }
                }
            }
            self.attempt_latency.record(a.latency);
        }
        self.latency.record(o.latency);
        self.service.record(o.service);
        let late = o.late_by();
        if late > LATE_AFTER {
            self.late += 1;
        }
        self.max_late = self.max_late.max(late);
        // Get first: cloning the path for every request would allocate a million times.
        match self.targets.get_mut(&o.path) {
            Some(t) => t.push(o),
            None => self
                .targets
                .entry(o.path.clone())
                .or_insert_with(|| TargetSummary::new(self.highest))
                .push(o),
        }
        self.elapsed = self.elapsed.max(o.scheduled + o.latency);
        for (proxy, calls) in &o.calls {
            let p = self.proxy_mut(proxy);
            for call in calls {
                p.push(call);
            }
            p.max_per_request = p.max_per_request.max(calls.len() as u64);
        }
    }

    /// Share of requests that succeeded, in `[0, 1]`; `None` when there were none.
    pub fn success_rate(&self) -> Option<f64> {
        share(self.succeeded, self.requests)
    }

    /// The counts, without any wall-clock value: what the golden snapshot records.
    pub fn render_counts(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "requests:     {}", self.requests);
        let _ = writeln!(
            out,
            "succeeded:    {} ({})",
            self.succeeded,
            percent(self.success_rate())
        );
        let _ = writeln!(
            out,
            "attempts:     {} ({} retries)",
            self.attempts, self.retries
        );
        let _ = writeln!(
            out,
            "statuses:     {}",
            join_counts(self.statuses.iter().map(|(k, v)| (k.to_string(), *v)))
        );
        if !self.errors.is_empty() {
            let _ = writeln!(
                out,
                "errors:       {}",
                join_counts(self.errors.iter().map(|(k, v)| (k.clone(), *v)))
            );
        }
        let _ = writeln!(
            out,
            "faults:       {}",
            if self.faults.is_empty() {
                "none".to_string()
            } else {
                join_counts(self.faults.iter().map(|(k, v)| (k.clone(), *v)))
            }
        );
        out.push_str(&self.render_calls());
        out
    }

    /// One line per named proxy: its calls, their results and fired rules, without wall-clock values.
    pub fn render_calls(&self) -> String {
        let mut out = String::new();
        for (name, p) in &self.proxies {
            let mut results: Vec<(String, u64)> = p
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            results.extend(p.errors.iter().map(|(k, v)| (k.clone(), *v)));
            let _ = write!(out, "calls:        {name}: {}", p.calls);
            if p.calls > p.unattributed() {
                let _ = write!(out, " (at most {} per request)", p.max_per_request);
            }
            if !results.is_empty() {
                let _ = write!(out, "  results {}", join_counts(results.into_iter()));
            }
            if !p.faults.is_empty() {
                let _ = write!(
                    out,
                    "  faults {}",
                    join_counts(p.faults.iter().map(|(k, v)| (k.clone(), *v)))
                );
            }
            if p.unattributed() > 0 {
                let _ = write!(out, "  unclaimed {}", p.unattributed());
            }
            out.push('\n');
        }
        out
    }

    /// The latency percentiles of requests (from their scheduled time, retries included).
    pub fn render_latency(&self) -> String {
        let l = &self.latency;
        format!(
            "latency:      p50 {}  p90 {}  p99 {}  max {}\n",
            format_millis(l.quantile(0.5)),
            format_millis(l.quantile(0.9)),
            format_millis(l.quantile(0.99)),
            format_millis(l.max())
        )
    }

    /// The readable table printed after every run: counts plus latencies.
    pub fn render_table(&self) -> String {
        let mut out = self.render_counts();
        out.push_str(&self.render_latency());
        if self.service.count() > 0 && self.max_late > LATE_AFTER {
            let s = &self.service;
            let _ = writeln!(
                out,
                "service time: p50 {}  p90 {}  p99 {}  max {}",
                format_millis(s.quantile(0.5)),
                format_millis(s.quantile(0.9)),
                format_millis(s.quantile(0.99)),
                format_millis(s.max())
            );
            let _ = writeln!(
                out,
                "late starts:  {} (more than 10ms behind schedule; worst {})",
                self.late,
                format_millis(self.max_late)
            );
        }
        let rate = if self.elapsed.is_zero() {
            0.0
        } else {
            self.attempts as f64 / self.elapsed.as_secs_f64()
        };
        let _ = writeln!(
            out,
            "elapsed:      {} ({rate:.0} attempts/s)",
            format_millis(self.elapsed)
        );
        out
    }
}

fn percent(share: Option<f64>) -> String {
    match share {
        Some(share) => format!("{:.1}%", share * 100.0),
        None => "no requests".to_string(),
    }
}

fn join_counts(items: impl Iterator<Item = (String, u64)>) -> String {
    let parts: Vec<String> = items.map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_histogram() {
        let mut l = Latency::default();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let p50 = l.quantile(0.5).as_millis();
        assert!((49..=51).contains(&p50), "{p50}");
        assert!(l.max() >= Duration::from_millis(100));
        assert_eq!(l.count(), 100);
        assert_eq!(Latency::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn latencies_beyond_the_planned_range_are_kept_not_clamped() {
        let two_hours = Duration::from_secs(2 * 3600);
        let mut l = Latency::default();
        l.record(two_hours);
        let max = l.max();
        // 3 significant digits: within 0.1%.
        assert!(
            max >= two_hours && max <= two_hours + two_hours / 1000,
            "{max:?}"
        );
        let sized = Latency::up_to(Duration::from_secs(7 * 24 * 3600));
        assert!(sized.highest_trackable() >= Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn no_requests_have_no_success_rate() {
        let s = Summary::default();
        assert_eq!(s.success_rate(), None);
        assert!(s.render_counts().contains("succeeded:    0 (no requests)"));
    }
}

/// A map of durations as microseconds.
mod micros_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|(k, d)| (k, u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        Ok(BTreeMap::<String, u64>::deserialize(d)?
            .into_iter()
            .map(|(k, us)| (k, Duration::from_micros(us)))
            .collect())
    }
}
