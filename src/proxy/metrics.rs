//! The proxy's Prometheus metrics, in a registry of its own (several proxies share a test process),
//! and the [`Flight`] guard that counts each request's outcome exactly once.
//!
//! Counting rules, so the numbers add up:
//! - `requests_total` counts a request when it arrives (after `/metrics`, which is not traffic).
//! - `faults_total{rule,kind}` counts every rule that fired, of every kind, when it is decided;
//!   `delayed_total{rule}` counts a delay rule when it fires, before the wait.
//! - every request ends in exactly one of `forwarded_total`, `dropped_total{rule}`,
//!   `injected_errors_total{rule,status}`, `upstream_errors_total{kind}` (the upstream failed),
//!   `client_errors_total{kind}` (the client did: no `Host`, a malformed or stalled body),
//!   `proxy_errors_total{kind}` (the proxy itself: out of file descriptors, say),
//!   `resets_total{rule}` (closed with no response), `hangs_total{rule}` (counted when the hang
//!   starts, whether it ends with the client giving up or with the cap's 504),
//!   `garbage_total{rule}` (random bytes instead of a response), `empty_total{rule}` (closed
//!   cleanly with no response) or `cancelled_total` (the client went away before any of those:
//!   the guard counts it on drop). So at rest, `requests_total` equals the sum of those eleven,
//!   and `in_flight` is 0.
//! - what a forwarded response went through: `truncated_total{rule}` (bodies actually cut: a body
//!   shorter than the limit is not), `throttled_total{rule}` (bodies paced),
//!   `header_rewrites_total{rule,target}`, `status_rewrites_total{rule,status}`, and
//!   `upstream_read_timeouts_total` (bodies the upstream stalled past the read timeout: the
//!   client's connection was closed mid-body).
//! - `corrupted_total{rule,mode}`: response bodies a `corrupt` rule changed, by the mode applied.
//! - `goaways_total{rule}`: client connections a `goaway` rule shut down gracefully after the
//!   response (an HTTP/2 GOAWAY, or `Connection: close` on HTTP/1.1).
//! - `log_lines_dropped_total` and `spans_dropped_total`: request-log lines and spans lost so
//!   that no request waits on a slow disk or collector (see [`crate::observe`]).
//! - `in_flight` covers a request from arrival until its response body is done (or the client has
//!   gone), so a throttled download counts for as long as it streams.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::time::Instant;

use crate::fault::{FaultAction, FaultRule, HeaderSide};
use crate::observe::Exchange;

/// Latency buckets, in seconds: from sub-millisecond loopback hops to the default 30s timeout.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How the proxy disposed of a request (forwarded, answered with a fault, failed); labels the
/// latency histogram. Not the load generator's [`crate::record::Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Forwarded,
    Dropped,
    InjectedError,
    UpstreamError,
    /// A `reset` fault closed the connection without a response.
    Reset,
    /// A `hang` fault held the request (the client gave up, or the cap's 504 went out).
    Hang,
    /// The client's request could not be served as sent (400, 408): not the upstream's failure.
    ClientError,
    /// The proxy failed on its own account (out of file descriptors, say): not the upstream's.
    ProxyError,
    /// A `garbage` fault sent random bytes instead of a response.
    Garbage,
    /// An `empty` fault closed the connection (or the HTTP/2 stream) with no response.
    Empty,
}

impl Disposition {
    const ALL: [Disposition; 10] = [
        Disposition::Forwarded,
        Disposition::Dropped,
        Disposition::InjectedError,
        Disposition::UpstreamError,
        Disposition::Reset,
        Disposition::Hang,
        Disposition::ClientError,
        Disposition::ProxyError,
        Disposition::Garbage,
        Disposition::Empty,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Disposition::Forwarded => "forwarded",
            Disposition::Dropped => "dropped",
            Disposition::InjectedError => "injected_error",
            Disposition::UpstreamError => "upstream_error",
            Disposition::Reset => "reset",
            Disposition::Hang => "hang",
            Disposition::ClientError => "client_error",
            Disposition::ProxyError => "proxy_error",
            Disposition::Garbage => "garbage",
            Disposition::Empty => "empty",
        }
    }
}

/// Every metric the proxy exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounter,
    forwarded: IntCounter,
    delayed: IntCounterVec,
    dropped: IntCounterVec,
    injected_errors: IntCounterVec,
    upstream_errors: IntCounterVec,
    client_errors: IntCounterVec,
    proxy_errors: IntCounterVec,
    upstream_read_timeouts: IntCounter,
    cancelled: IntCounter,
    faults: IntCounterVec,
    resets: IntCounterVec,
    hangs: IntCounterVec,
    truncated: IntCounterVec,
    throttled: IntCounterVec,
    goaways: IntCounterVec,
    garbage: IntCounterVec,
    empty: IntCounterVec,
    corrupted: IntCounterVec,
    /// Request-log lines and spans lost (see [`Metrics::observed_drops`]).
    log_lines_dropped: IntCounter,
    spans_dropped: IntCounter,
    /// Held while the two above catch up with their sources, so two scrapes cannot both add.
    drops_sync: Arc<std::sync::Mutex<()>>,
    header_rewrites: IntCounterVec,
    status_rewrites: IntCounterVec,
    responses: IntCounterVec,
    /// `responses` by status, resolved once: a label lookup hashes and locks on every request.
    by_status: Arc<[std::sync::OnceLock<IntCounter>]>,
    in_flight: IntGauge,
    duration: HistogramVec,
    /// `duration` by outcome, resolved at startup for the same reason, in `Disposition::ALL` order.
    by_outcome: Arc<[prometheus::Histogram]>,
}

impl Metrics {
    /// Registers every metric, with a zero series for each rule so dashboards see them before they fire.
    pub fn new(rules: &[FaultRule]) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let requests = counter(
            "traceforge_proxy_requests_total",
            "Requests received (the proxy's own /metrics excluded).",
        )?;
        let forwarded = counter(
            "traceforge_proxy_forwarded_total",
            "Requests forwarded that got an upstream response.",
        )?;
        let delayed = counter_vec(
            "traceforge_proxy_delayed_total",
            "Delay rules fired, by rule.",
            &["rule"],
        )?;
        let dropped = counter_vec(
            "traceforge_proxy_dropped_total",
            "Requests dropped with a 503 and not forwarded, by rule.",
            &["rule"],
        )?;
        let injected_errors = counter_vec(
            "traceforge_proxy_injected_errors_total",
            "Synthetic error responses, by rule and status.",
            &["rule", "status"],
        )?;
        let upstream_errors = counter_vec(
            "traceforge_proxy_upstream_errors_total",
            "Forwarding failures: unreachable or failed (502), timeout (504).",
            &["kind"],
        )?;
        let client_errors = counter_vec(
            "traceforge_proxy_client_errors_total",
            "Requests refused for the client's fault: no or several Host headers (400), a malformed or cut-off body (400), a body stalled past the client body timeout (408).",
            &["kind"],
        )?;
        let proxy_errors = counter_vec(
            "traceforge_proxy_proxy_errors_total",
            "Requests the proxy failed on its own account: out of file descriptors, ports or memory (503), an internal error (500).",
            &["kind"],
        )?;
        let upstream_read_timeouts = counter(
            "traceforge_proxy_upstream_read_timeouts_total",
            "Forwarded response bodies the upstream stalled past the upstream read timeout; the client's connection was closed mid-body.",
        )?;
        let cancelled = counter(
            "traceforge_proxy_cancelled_total",
            "Requests abandoned by their client before the proxy answered.",
        )?;
        let faults = counter_vec(
            "traceforge_proxy_faults_total",
            "Fault rules fired, by rule and kind (every kind; a request can fire several).",
            &["rule", "kind"],
        )?;
        let resets = counter_vec(
            "traceforge_proxy_resets_total",
            "Connections closed abruptly with no response by a reset rule, by rule.",
            &["rule"],
        )?;
        let hangs = counter_vec(
            "traceforge_proxy_hangs_total",
            "Requests held unanswered by a hang rule (until the client gave up or the cap's 504), by rule.",
            &["rule"],
        )?;
        let truncated = counter_vec(
            "traceforge_proxy_truncated_total",
            "Response bodies cut short by a truncate rule (bodies under the limit are not counted), by rule.",
            &["rule"],
        )?;
        let throttled = counter_vec(
            "traceforge_proxy_throttled_total",
            "Response bodies paced by a throttle rule, by rule.",
            &["rule"],
        )?;
        let goaways = counter_vec(
            "traceforge_proxy_goaways_total",
            "Client connections shut down gracefully after a response by a goaway rule (an HTTP/2 GOAWAY, or Connection: close on HTTP/1.1), by rule.",
            &["rule"],
        )?;
        let garbage = counter_vec(
            "traceforge_proxy_garbage_total",
            "Requests answered with random bytes instead of a response by a garbage rule, by rule.",
            &["rule"],
        )?;
        let empty = counter_vec(
            "traceforge_proxy_empty_total",
            "Connections (HTTP/2: streams) closed cleanly with no response by an empty rule, by rule.",
            &["rule"],
        )?;
        let corrupted = counter_vec(
            "traceforge_proxy_corrupted_total",
            "Response bodies a corrupt rule changed, by rule and the mode applied (json, or bytes, also for a json rule that fell back).",
            &["rule", "mode"],
        )?;
        let log_lines_dropped = counter(
            "traceforge_proxy_log_lines_dropped_total",
            "Request-log lines lost: dropped while the disk fell behind, or not written (a full disk).",
        )?;
        let spans_dropped = counter(
            "traceforge_proxy_spans_dropped_total",
            "Spans not exported: dropped while the exporter fell behind, or refused by the collector.",
        )?;
        let header_rewrites = counter_vec(
            "traceforge_proxy_header_rewrites_total",
            "Requests or responses whose headers a headers rule changed, by rule and target.",
            &["rule", "target"],
        )?;
        let status_rewrites = counter_vec(
            "traceforge_proxy_status_rewrites_total",
            "Upstream statuses replaced by a status rule, by rule and new status.",
            &["rule", "status"],
        )?;
        let responses = counter_vec(
            "traceforge_proxy_responses_total",
            "Responses sent, by status.",
            &["status"],
        )?;
        let in_flight = IntGauge::with_opts(Opts::new(
            "traceforge_proxy_in_flight",
            "Requests being handled right now.",
        ))?;
        registry.register(Box::new(in_flight.clone()))?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "traceforge_proxy_request_duration_seconds",
                "Time from arrival to response head, injected delays included, by outcome.",
            )
            .buckets(BUCKETS.to_vec()),
            &["outcome"],
        )?;
        registry.register(Box::new(duration.clone()))?;

        for kind in ["unreachable", "failed", "timeout"] {
            upstream_errors.with_label_values(&[kind]);
        }
        for kind in ["host", "body", "body_timeout"] {
            client_errors.with_label_values(&[kind]);
        }
        for kind in ["resources", "internal"] {
            proxy_errors.with_label_values(&[kind]);
        }
        let metrics = Metrics {
            registry,
            requests,
            forwarded,
            delayed,
            dropped,
            injected_errors,
            upstream_errors,
            client_errors,
            proxy_errors,
            upstream_read_timeouts,
            cancelled,
            faults,
            resets,
            hangs,
            truncated,
            throttled,
            goaways,
            garbage,
            empty,
            corrupted,
            log_lines_dropped,
            spans_dropped,
            drops_sync: Arc::new(std::sync::Mutex::new(())),
            header_rewrites,
            status_rewrites,
            by_status: (0..600).map(|_| std::sync::OnceLock::new()).collect(),
            by_outcome: Disposition::ALL
                .iter()
                .map(|o| duration.with_label_values(&[o.label()]))
                .collect(),
            responses,
            in_flight,
            duration,
        };
        for rule in rules {
            metrics.add_rule(rule);
        }
        Ok(metrics)
    }

    /// Creates the zero series of a rule's counters, so dashboards see it before it fires: for
    /// every rule at the start, and for rules added while the proxy runs (the control API).
    pub fn add_rule(&self, rule: &FaultRule) {
        let name = rule.name.as_str();
        self.faults.with_label_values(&[name, rule.action.kind()]);
        match &rule.action {
            FaultAction::Delay(_) => {
                self.delayed.with_label_values(&[name]);
            }
            FaultAction::Drop => {
                self.dropped.with_label_values(&[name]);
            }
            FaultAction::Error(reply) | FaultAction::Quota(reply) => {
                self.injected_errors
                    .with_label_values(&[name, &reply.status.to_string()]);
            }
            FaultAction::Reset => {
                self.resets.with_label_values(&[name]);
            }
            FaultAction::Hang { .. } => {
                self.hangs.with_label_values(&[name]);
            }
            FaultAction::Truncate { .. } => {
                self.truncated.with_label_values(&[name]);
            }
            FaultAction::Throttle { .. } => {
                self.throttled.with_label_values(&[name]);
            }
            FaultAction::GoAway => {
                self.goaways.with_label_values(&[name]);
            }
            FaultAction::Garbage { .. } => {
                self.garbage.with_label_values(&[name]);
            }
            FaultAction::Empty => {
                self.empty.with_label_values(&[name]);
            }
            FaultAction::Corrupt { mode, .. } => {
                self.corrupted.with_label_values(&[name, mode.as_str()]);
            }
            // Counted by `faults_total{kind=...}`.
            FaultAction::SlowRead { .. } | FaultAction::SlowClose(_) => {}
            // Counted by `faults_total{kind="stream"}` above.
            FaultAction::Stream { .. } => {}
            FaultAction::Headers { target, .. } => {
                self.header_rewrites
                    .with_label_values(&[name, target.as_str()]);
            }
            FaultAction::Status(status) => {
                self.status_rewrites
                    .with_label_values(&[name, &status.to_string()]);
            }
            // Stream faults are counted once per upgrade, in the faults counter above.
            FaultAction::WsClose { .. }
            | FaultAction::WsDelay(_)
            | FaultAction::WsDrop { .. }
            | FaultAction::RstStream { .. } => {}
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a metric-family error leaves partial output.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Brings the drop counters up to their sources' totals (read at scrape time: the request
    /// log's writer and the span exporter count their own drops).
    pub fn observed_drops(&self, log_lines: u64, spans: u64) {
        // A poisoned lock only means a scrape panicked mid-update; the counters are still sound.
        let _held = self
            .drops_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (counter, total) in [
            (&self.log_lines_dropped, log_lines),
            (&self.spans_dropped, spans),
        ] {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
    }

    /// The registry, for callers that want to gather or merge the metrics themselves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts counting one request; the returned guard records how it ends.
    pub fn start(self: &Arc<Self>) -> Flight {
        self.requests.inc();
        self.in_flight.inc();
        Flight {
            metrics: self.clone(),
            started: Instant::now(),
            settled: false,
            exchange: None,
        }
    }

    pub fn delay_fired(&self, rule: &str) {
        self.delayed.with_label_values(&[rule]).inc();
    }

    /// A rule fired (any kind).
    pub fn fault_fired(&self, rule: &str, kind: &str) {
        self.faults.with_label_values(&[rule, kind]).inc();
    }

    /// A forwarded body stalled past the upstream read timeout.
    pub fn upstream_read_timed_out(&self) {
        self.upstream_read_timeouts.inc();
    }

    pub fn body_truncated(&self, rule: &str) {
        self.truncated.with_label_values(&[rule]).inc();
    }

    pub fn body_throttled(&self, rule: &str) {
        self.throttled.with_label_values(&[rule]).inc();
    }

    /// A client connection is being shut down gracefully by a `goaway` rule.
    pub fn went_away(&self, rule: &str) {
        self.goaways.with_label_values(&[rule]).inc();
    }

    /// A `corrupt` rule changed a body, in `mode` (what was applied: `bytes` also for a `json`
    /// rule that fell back).
    pub fn body_corrupted(&self, rule: &str, mode: &str) {
        self.corrupted.with_label_values(&[rule, mode]).inc();
    }

    pub fn headers_rewritten(&self, rule: &str, target: HeaderSide) {
        self.header_rewrites
            .with_label_values(&[rule, target.as_str()])
            .inc();
    }

    pub fn status_rewritten(&self, rule: &str, status: u16) {
        self.status_rewrites
            .with_label_values(&[rule, &status.to_string()])
            .inc();
    }
}

/// One request in flight, from arrival until its response body is done. Settle it with its
/// outcome; dropped unsettled (the client disconnected and hyper dropped the handler), it counts
/// as cancelled. Either way `in_flight` goes back down when it is dropped, so keep it with the
/// response body.
#[derive(Debug)]
pub struct Flight {
    metrics: Arc<Metrics>,
    started: Instant,
    settled: bool,
    /// The request's record for the request log and the trace exporter, when they are on: told
    /// the outcome with the counters, and written when the guard is dropped.
    exchange: Option<Box<Exchange>>,
}

impl Flight {
    /// Records the outcome and the response sent. `detail` names the terminal fault rule, or the
    /// failure kind (upstream, client or proxy). After [`Flight::settle`], only the response is recorded.
    pub fn finish(&mut self, outcome: Disposition, status: u16, detail: &str) {
        if let Some(exchange) = &mut self.exchange {
            exchange.settle(outcome.label(), detail, Some(status));
        }
        if !self.settled {
            self.count(outcome, status, detail);
        }
        self.responded(outcome, status);
    }

    /// Records how the request ended before any response: a reset never sends one, a hang may send
    /// its cap's 504 later ([`Flight::finish`] then records only that response).
    pub fn settle(&mut self, outcome: Disposition, detail: &str) {
        if let Some(exchange) = &mut self.exchange {
            exchange.settle(outcome.label(), detail, None);
        }
        if !self.settled {
            self.count(outcome, 0, detail);
        }
    }

    fn count(&mut self, outcome: Disposition, status: u16, detail: &str) {
        let m = &self.metrics;
        match outcome {
            Disposition::Forwarded => m.forwarded.inc(),
            Disposition::Dropped => m.dropped.with_label_values(&[detail]).inc(),
            Disposition::InjectedError => m
                .injected_errors
                .with_label_values(&[detail, &status.to_string()])
                .inc(),
            Disposition::UpstreamError => m.upstream_errors.with_label_values(&[detail]).inc(),
            Disposition::ClientError => m.client_errors.with_label_values(&[detail]).inc(),
            Disposition::ProxyError => m.proxy_errors.with_label_values(&[detail]).inc(),
            Disposition::Reset => m.resets.with_label_values(&[detail]).inc(),
            Disposition::Hang => m.hangs.with_label_values(&[detail]).inc(),
            Disposition::Garbage => m.garbage.with_label_values(&[detail]).inc(),
            Disposition::Empty => m.empty.with_label_values(&[detail]).inc(),
        }
        self.settled = true;
    }

    /// Records a response head sent: its status and the time since arrival.
    fn responded(&mut self, outcome: Disposition, status: u16) {
        let m = &self.metrics;
        match m.by_status.get(usize::from(status)) {
            Some(slot) => slot
                .get_or_init(|| m.responses.with_label_values(&[&status.to_string()]))
                .inc(),
            None => m.responses.with_label_values(&[&status.to_string()]).inc(),
        }
        let seconds = self.started.elapsed().as_secs_f64();
        // `by_outcome` holds one histogram per `Disposition::ALL` entry, in declaration order.
        match m.by_outcome.get(outcome as usize) {
            Some(histogram) => histogram.observe(seconds),
            None => m
                .duration
                .with_label_values(&[outcome.label()])
                .observe(seconds),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Keeps `exchange` until the request is over, then writes it.
    pub fn observe(&mut self, exchange: Box<Exchange>) {
        self.exchange = Some(exchange);
    }

    /// The request's record, when it is being observed.
    pub fn exchange(&mut self) -> Option<&mut Exchange> {
        self.exchange.as_deref_mut()
    }

    /// `n` bytes of response body went to the client.
    pub fn sent(&mut self, n: u64) {
        if let Some(exchange) = &mut self.exchange {
            exchange.sent(n);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            exchange.finish();
        }
        if !self.settled {
            self.metrics.cancelled.inc();
        }
        self.metrics.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn outcomes_are_listed_in_declaration_order() {
        // `Flight::responded` indexes `by_outcome` with `outcome as usize`.
        for (i, outcome) in super::Disposition::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
    }
}
