//! The proxy's Prometheus metrics, in a registry of its own (several proxies share a test process),
//! and the [`Flight`] guard that counts each request's outcome exactly once.
//!
//! Counting rules, so the numbers add up:
//! - `requests_total` counts a request when it arrives (after `/metrics`, which is not traffic).
//! - `delayed_total{rule}` counts a delay rule when it fires, before the wait.
//! - every request ends in exactly one of `forwarded_total`, `dropped_total{rule}`,
//!   `injected_errors_total{rule,status}`, `upstream_errors_total{kind}` or `cancelled_total`
//!   (the client went away first: the guard counts it on drop). So at rest,
//!   `requests_total` equals the sum of those, and `in_flight` is 0.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::time::Instant;

use crate::fault::{FaultAction, FaultRule};

/// Latency buckets, in seconds: from sub-millisecond loopback hops to the default 30s timeout.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a request ended; labels the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    Dropped,
    InjectedError,
    UpstreamError,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Dropped => "dropped",
            Outcome::InjectedError => "injected_error",
            Outcome::UpstreamError => "upstream_error",
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
    cancelled: IntCounter,
    responses: IntCounterVec,
    in_flight: IntGauge,
    duration: HistogramVec,
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
        let cancelled = counter(
            "traceforge_proxy_cancelled_total",
            "Requests abandoned by their client before the proxy answered.",
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

        for rule in rules {
            match &rule.action {
                FaultAction::Delay { .. } => {
                    delayed.with_label_values(&[rule.name.as_str()]);
                }
                FaultAction::Drop => {
                    dropped.with_label_values(&[rule.name.as_str()]);
                }
                FaultAction::Error(reply) => {
                    injected_errors
                        .with_label_values(&[rule.name.as_str(), &reply.status.to_string()]);
                }
                _ => {}
            }
        }
        for kind in ["unreachable", "failed", "timeout"] {
            upstream_errors.with_label_values(&[kind]);
        }
        Ok(Metrics {
            registry,
            requests,
            forwarded,
            delayed,
            dropped,
            injected_errors,
            upstream_errors,
            cancelled,
            responses,
            in_flight,
            duration,
        })
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

    /// The registry, for callers that want to gather or merge the metrics themselves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts counting one request; the returned guard records how it ends.
    pub fn start(&self) -> Flight<'_> {
        self.requests.inc();
        self.in_flight.inc();
        Flight {
            metrics: self,
            started: Instant::now(),
            done: false,
        }
    }

    pub fn delay_fired(&self, rule: &str) {
        self.delayed.with_label_values(&[rule]).inc();
    }
}

/// One request in flight. Finish it with its outcome; dropped unfinished (the client disconnected
/// and hyper dropped the handler), it counts as cancelled. Either way `in_flight` goes back down.
#[derive(Debug)]
pub struct Flight<'a> {
    metrics: &'a Metrics,
    started: Instant,
    done: bool,
}

impl Flight<'_> {
    /// Records the outcome. `rule` names the terminal fault rule, `kind` the upstream failure.
    pub fn finish(mut self, outcome: Outcome, status: u16, detail: &str) {
        let m = self.metrics;
        match outcome {
            Outcome::Forwarded => m.forwarded.inc(),
            Outcome::Dropped => m.dropped.with_label_values(&[detail]).inc(),
            Outcome::InjectedError => m
                .injected_errors
                .with_label_values(&[detail, &status.to_string()])
                .inc(),
            Outcome::UpstreamError => m.upstream_errors.with_label_values(&[detail]).inc(),
        }
        m.responses.with_label_values(&[&status.to_string()]).inc();
        m.duration
            .with_label_values(&[outcome.label()])
            .observe(self.started.elapsed().as_secs_f64());
        self.done = true;
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.cancelled.inc();
        }
        self.metrics.in_flight.dec();
    }
}
