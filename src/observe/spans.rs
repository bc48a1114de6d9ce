//! The spans TraceForge exports, built after the fact from what it recorded:
//!
//! - the load generator (`traceforge-load`): per request, a root span `request <METHOD> <path>`
//!   covering every attempt, and a client span per attempt, whose id is the parent span id of the
//!   `traceparent` that attempt sent;
//! - each proxy (`traceforge-proxy`, `traceforge-proxy-<name>` for a named proxy): a server span
//!   per request, a child of the caller's span when it sent a `traceparent`, with a
//!   `fault.injected` event per rule that fired; and a client span for its call to the upstream,
//!   whose id is the parent the upstream sees in its `traceparent`.
//!
//! Ids are the deterministic ones: trace ids from `(seed, index)` (the load generator's
//! `X-Trace-Id`), span ids hashed from the seed and what identifies the request and attempt. Two
//! runs of a scenario export the same ids; only the times differ.
//!
//! Attributes follow OpenTelemetry's HTTP conventions (`http.request.method`, `url.path`,
//! `http.response.status_code`, `error.type`, body sizes), plus `traceforge.*`: the request id,
//! the proxy's outcome, the rules that fired and their kinds.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, StringValue, Value};

use super::exchange::{ExchangeParts, hex_id};
use super::otlp::FinishedSpan;
use crate::record::Outcome;

/// The service name of the load generator's spans.
pub const LOAD_SERVICE: &str = "traceforge-load";

/// The service name of a proxy's spans.
pub fn proxy_service(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("traceforge-proxy-{name}"),
        None => "traceforge-proxy".to_string(),
    }
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|s| StringValue::from(s.to_string()))
            .collect::<Vec<_>>()
            .into(),
    )
}

fn int(n: u64) -> Value {
    Value::I64(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The path without its query, and the query.
fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    }
}

/// A span's error status: what went wrong, or a 5xx.
fn failure(error: Option<&str>, status: Option<u16>) -> Option<String> {
    match (error, status) {
        (Some(error), _) => Some(error.to_string()),
        (None, Some(status)) if status >= 500 => Some(format!("HTTP {status}")),
        _ => None,
    }
}

/// The proxy's spans of one finished exchange: its server span, and its client span when it
/// called the upstream. `wall` turns the proxy's instants into wall-clock times.
pub(crate) fn proxy_spans(
    x: &ExchangeParts<'_>,
    proxy: Option<&str>,
    wall: impl Fn(tokio::time::Instant) -> SystemTime,
    ended: tokio::time::Instant,
) -> Vec<FinishedSpan> {
    let (path, query) = split_query(x.path);
    let name = format!("{} {path}", x.method);
    let mut attributes = vec![
        KeyValue::new("http.request.method", x.method.to_string()),
        KeyValue::new("url.path", path.to_string()),
        KeyValue::new("traceforge.request_id", x.request_id.to_string()),
        KeyValue::new("traceforge.outcome", x.outcome),
        KeyValue::new("http.request.body.size", int(x.bytes_in)),
        KeyValue::new("http.response.body.size", int(x.bytes_out)),
    ];
    if let Some(query) = query {
        attributes.push(KeyValue::new("url.query", query.to_string()));
    }
    if let Some(status) = x.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(proxy) = proxy {
        attributes.push(KeyValue::new("traceforge.proxy", proxy.to_string()));
    }
    if !x.faults.is_empty() {
        attributes.push(KeyValue::new(
            "traceforge.fault.rules",
            strings(x.faults.iter().map(|(rule, _)| rule.as_str())),
        ));
        attributes.push(KeyValue::new(
            "traceforge.fault.kinds",
            strings(x.faults.iter().map(|(_, kind)| *kind)),
        ));
    }
    if let Some(error) = &x.error {
        attributes.push(KeyValue::new("error.type", error.clone()));
    }
    let decided = wall(x.decided.unwrap_or(x.started));
    let events = x
        .faults
        .iter()
        .map(|(rule, kind)| {
            (
                "fault.injected".to_string(),
                decided,
                vec![
                    KeyValue::new("traceforge.fault.rule", rule.clone()),
                    KeyValue::new("traceforge.fault.kind", *kind),
                ],
            )
        })
        .collect();
    let mut spans = vec![FinishedSpan {
        trace_id: x.trace,
        span_id: x.span,
        parent: x.parent.map(|p| (p, true)),
        kind: SpanKind::Server,
        name: name.clone(),
        start: wall(x.started),
        end: wall(ended),
        attributes,
        events,
        error: failure(x.error.as_deref(), x.status),
    }];
    if let Some(upstream) = x.upstream {
        let mut attributes = vec![
            KeyValue::new("http.request.method", x.method.to_string()),
            KeyValue::new("url.full", upstream.url.clone()),
        ];
        if let Some(status) = upstream.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let error = match upstream.status {
            None => Some(x.error.clone().unwrap_or_else(|| "no response".to_string())),
            Some(status) => failure(None, Some(status)),
        };
        spans.push(FinishedSpan {
            trace_id: x.trace,
            span_id: upstream.span,
            parent: Some((x.span, false)),
            kind: SpanKind::Client,
            name: x.method.to_string(),
            start: wall(upstream.started),
            end: wall(upstream.ended.unwrap_or(ended)),
            attributes,
            events: Vec::new(),
            error,
        });
    }
    spans
}

/// The load generator's spans of one finished request: the request's root span and a client span
/// per attempt. `origin` is the wall-clock time the run's offsets count from; `url` the base the
/// load was sent to. `None` when the request carried no W3C trace id (no trace to join).
pub fn load_spans(
    outcome: &Outcome,
    seed: u64,
    origin: SystemTime,
    base: &str,
) -> Vec<FinishedSpan> {
    let Some(trace) = hex_id::<16>(&outcome.trace_id) else {
        return Vec::new();
    };
    let root = root_span_id(seed, outcome.index);
    let (path, query) = split_query(&outcome.path);
    let at = |offset: Duration| origin + offset;
    let mut spans = Vec::with_capacity(outcome.attempts.len() + 1);
    for (n, attempt) in outcome.attempts.iter().enumerate() {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let span_id = crate::seed::attempt_span(seed, outcome.index, n);
        let mut attributes = vec![
            KeyValue::new("http.request.method", outcome.method.clone()),
            KeyValue::new(
                "url.full",
                format!("{}{}", base.trim_end_matches('/'), outcome.path),
            ),
            KeyValue::new("url.path", path.to_string()),
            KeyValue::new("traceforge.request_id", attempt.request_id.clone()),
            KeyValue::new("traceforge.index", int(outcome.index)),
            KeyValue::new("traceforge.attempt", i64::from(n)),
            KeyValue::new("http.response.body.size", int(attempt.bytes)),
        ];
        if n > 0 {
            // OpenTelemetry's name for a resend.
            attributes.push(KeyValue::new("http.request.resend_count", i64::from(n)));
        }
        if let Some(query) = query {
            attributes.push(KeyValue::new("url.query", query.to_string()));
        }
        if let Some(status) = attempt.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if !attempt.faults.is_empty() {
            attributes.push(KeyValue::new(
                "traceforge.fault.rules",
                strings(attempt.faults.iter().map(String::as_str)),
            ));
            attributes.push(KeyValue::new(
                "traceforge.fault.kinds",
                strings(attempt.fault_kinds.iter().map(String::as_str)),
            ));
        }
        let error = attempt.error.map(|e| e.to_string());
        if let Some(error) = &error {
            attributes.push(KeyValue::new("error.type", error.clone()));
        }
        spans.push(FinishedSpan {
            trace_id: trace,
            span_id,
            parent: Some((root, false)),
            kind: SpanKind::Client,
            name: format!("{} {path}", outcome.method),
            start: at(attempt.start),
            end: at(attempt.start + attempt.latency),
            attributes,
            events: Vec::new(),
            error: failure(error.as_deref(), attempt.status),
        });
    }
    let mut attributes = vec![
        KeyValue::new("http.request.method", outcome.method.clone()),
        KeyValue::new("url.path", path.to_string()),
        KeyValue::new("traceforge.index", int(outcome.index)),
        KeyValue::new("traceforge.attempts", int(outcome.attempts.len() as u64)),
    ];
    if let Some(status) = outcome.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    let error = outcome.error.map(|e| e.to_string());
    if let Some(error) = &error {
        attributes.push(KeyValue::new("error.type", error.clone()));
    }
    spans.push(FinishedSpan {
        trace_id: trace,
        span_id: root,
        parent: None,
        kind: SpanKind::Internal,
        name: format!("request {} {path}", outcome.method),
        start: at(outcome.start),
        end: at(outcome.start + outcome.service),
        attributes,
        events: Vec::new(),
        error: failure(error.as_deref(), outcome.status),
    });
    spans
}

/// The id of request `index`'s root span (never all zero).
fn root_span_id(seed: u64, index: u64) -> [u8; 8] {
    crate::seed::span_bytes(seed, &["id", "span", &index.to_string(), "request"])
}
