//! One proxied request as the request log and the trace exporter see it: filled in step by step
//! while the proxy serves it, written out once when it is over (its response body done, or the
//! client gone).
//!
//! The line of the request log, one JSON object per request:
//!
//! ```json
//! {"time":"2026-11-22T10:00:00.125Z","proxy":"payments","trace_id":"4bf9…","span_id":"00f0…",
//!  "request_id":"…","method":"GET","path":"/api/items?page=2","status":503,"error":null,
//!  "outcome":"injected_error","faults":[{"rule":"api-503","kind":"error"}],
//!  "latency_ms":0.412,"bytes_in":0,"bytes_out":87}
//! ```
//!
//! - `time` is when the request arrived; `latency_ms` runs until its response body was done.
//! - `proxy` is there for a named proxy (`[[proxies]]`) only.
//! - `status` is what the client got (`null` when nothing was sent: a reset, a hang it gave up
//!   on); `error` says why a request did not get the upstream's answer: `upstream_error: timeout`,
//!   `client_error: body_timeout`, `reset`, `hang`, `cancelled` (the client went away).
//! - `outcome` is the proxy's disposition, the label of its `/metrics` counters, or `cancelled`.
//! - `bytes_in` counts the request body passed to the upstream (0 when a fault answered first),
//!   `bytes_out` the response body sent to the client.
//! - `span_id` is the id of the request's server span: the same one the trace exporter sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::time::Instant;

use super::Observer;

/// What the proxy knows of one request so far.
#[derive(Debug)]
pub struct Exchange {
    observer: Arc<Observer>,
    started: Instant,
    trace_id: String,
    /// The trace id as 16 bytes, for the exporter: the id itself when it is 32 hex digits.
    trace: [u8; 16],
    /// The caller's span, from a valid `traceparent`.
    parent: Option<[u8; 8]>,
    span: [u8; 8],
    request_id: String,
    method: String,
    path: String,
    faults: Vec<(String, &'static str)>,
    /// When the fault decision was made (the `fault.injected` events' time).
    decided: Option<Instant>,
    outcome: Option<&'static str>,
    detail: String,
    status: Option<u16>,
    upstream: Option<Upstream>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
}

/// The proxy's call to the upstream: the client span.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) started: Instant,
    pub(crate) ended: Option<Instant>,
    pub(crate) url: String,
    pub(crate) status: Option<u16>,
    pub(crate) span: [u8; 8],
}

/// The facts a request arrives with.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub trace_id: &'a str,
    pub request_id: &'a str,
    /// The `traceparent` header, if any (only a valid one counts).
    pub traceparent: Option<&'a str>,
    /// What the proxy's decisions key on: the request id, or a named proxy's call key.
    pub key: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

impl Exchange {
    /// Starts the record of a request that arrived now.
    pub fn begin(observer: &Arc<Observer>, arrival: Arrival<'_>) -> Box<Exchange> {
        let traceparent = arrival.traceparent.and_then(crate::ids::traceparent);
        let (trace, parent) = match traceparent {
            Some((trace, parent)) => (hex_id::<16>(trace), hex_id::<8>(parent)),
            None => (None, None),
        };
        let trace = trace.unwrap_or_else(|| observer.trace_bytes(arrival.trace_id));
        let parent_hex = traceparent.map_or("", |(_, p)| p);
        let span = observer.span_id(&[arrival.key, parent_hex, "server"]);
        Box::new(Exchange {
            observer: observer.clone(),
            started: Instant::now(),
            trace_id: arrival.trace_id.to_string(),
            trace,
            parent,
            span,
            request_id: arrival.request_id.to_string(),
            method: arrival.method.to_string(),
            path: arrival.path.to_string(),
            faults: Vec::new(),
            decided: None,
            outcome: None,
            detail: String::new(),
            status: None,
            upstream: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
        })
    }

    /// The rules that fired, in firing order, with their kinds.
    pub fn fired<'a>(&mut self, rules: impl IntoIterator<Item = (&'a str, &'static str)>) {
        self.decided = Some(Instant::now());
        self.faults = rules
            .into_iter()
            .map(|(rule, kind)| (rule.to_string(), kind))
            .collect();
    }

    /// The rules that fired on the upstream's response, after those [`Exchange::fired`] gave.
    pub fn fired_on_response<'a>(
        &mut self,
        rules: impl IntoIterator<Item = (&'a str, &'static str)>,
    ) {
        self.faults.extend(
            rules
                .into_iter()
                .map(|(rule, kind)| (rule.to_string(), kind)),
        );
    }

    /// How the proxy disposed of the request (a `/metrics` outcome label), the rule or failure
    /// kind behind it, and the status sent, if one was.
    pub fn settle(&mut self, outcome: &'static str, detail: &str, status: Option<u16>) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
            self.detail = detail.to_string();
        }
        if status.is_some() {
            self.status = status;
        }
    }

    /// The request is being sent to the upstream at `url`. With spans exported, returns the
    /// `traceparent` the upstream should get: this request's trace, with the proxy's client span
    /// as the parent (without, the caller's `traceparent` goes on as it came).
    pub fn forwarding(&mut self, url: &str) -> Option<String> {
        let span = self
            .observer
            .span_id(&[&hex(&self.span), "upstream", &self.request_id]);
        self.upstream = Some(Upstream {
            started: Instant::now(),
            ended: None,
            url: url.to_string(),
            status: None,
            span,
        });
        self.observer
            .exports_spans()
            .then(|| format!("00-{}-{}-01", hex(&self.trace), hex(&span)))
    }

    /// The upstream answered with `status`.
    pub fn upstream_answered(&mut self, status: u16) {
        if let Some(upstream) = &mut self.upstream {
            upstream.status = Some(status);
        }
    }

    /// The counter the request body adds its bytes to, as it goes upstream.
    pub fn bytes_in(&self) -> Arc<AtomicU64> {
        self.bytes_in.clone()
    }

    /// `n` more bytes of response body went to the client.
    pub fn sent(&mut self, n: u64) {
        self.bytes_out = self.bytes_out.saturating_add(n);
    }

    /// Writes the record: called once, when the request is over.
    pub fn finish(mut self: Box<Self>) {
        let ended = Instant::now();
        if let Some(upstream) = &mut self.upstream {
            upstream.ended = Some(ended);
        }
        let log = &self.observer.log;
        let recent = &self.observer.recent;
        if log.is_some() || recent.is_some() {
            let line = self.line(ended);
            if let Some(recent) = recent {
                recent.push(&line);
            }
            if let Some(log) = log {
                log.write_line(line);
            }
        }
        self.observer.export(&self, ended);
    }

    fn outcome(&self) -> &'static str {
        self.outcome.unwrap_or("cancelled")
    }

    /// Why the client did not get the upstream's answer, if it did not.
    fn error(&self) -> Option<String> {
        match self.outcome() {
            "forwarded" | "injected_error" | "dropped" => None,
            "upstream_error" | "client_error" | "proxy_error" => {
                Some(format!("{}: {}", self.outcome(), self.detail))
            }
            other => Some(other.to_string()),
        }
    }

    fn line(&self, ended: Instant) -> Vec<u8> {
        #[derive(Serialize)]
        struct Fault<'a> {
            rule: &'a str,
            kind: &'a str,
        }
        #[derive(Serialize)]
        struct Line<'a> {
            time: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            proxy: Option<&'a str>,
            trace_id: &'a str,
            span_id: String,
            request_id: &'a str,
            method: &'a str,
            path: &'a str,
            status: Option<u16>,
            error: Option<String>,
            outcome: &'a str,
            faults: Vec<Fault<'a>>,
            latency_ms: f64,
            bytes_in: u64,
            bytes_out: u64,
        }
        let latency = ended.saturating_duration_since(self.started);
        let line = Line {
            time: humantime::format_rfc3339_millis(self.observer.wall(self.started)).to_string(),
            proxy: self.observer.proxy.as_deref(),
            trace_id: &self.trace_id,
            span_id: hex(&self.span),
            request_id: &self.request_id,
            method: &self.method,
            path: &self.path,
            status: self.status,
            error: self.error(),
            outcome: self.outcome(),
            faults: self
                .faults
                .iter()
                .map(|(rule, kind)| Fault { rule, kind })
                .collect(),
            // Microsecond precision is what the clock gives; more digits would be noise.
            latency_ms: (latency.as_micros() as f64) / 1000.0,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
        };
        // A struct of strings and numbers always serializes.
        serde_json::to_vec(&line).unwrap_or_default()
    }

    pub(crate) fn parts(&self) -> ExchangeParts<'_> {
        ExchangeParts {
            started: self.started,
            decided: self.decided,
            trace: self.trace,
            parent: self.parent,
            span: self.span,
            request_id: &self.request_id,
            method: &self.method,
            path: &self.path,
            faults: &self.faults,
            outcome: self.outcome(),
            error: self.error(),
            status: self.status,
            upstream: self.upstream.as_ref(),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
        }
    }
}

/// A finished exchange, read by the span exporter.
#[derive(Debug)]
pub(crate) struct ExchangeParts<'a> {
    pub(crate) started: Instant,
    pub(crate) decided: Option<Instant>,
    pub(crate) trace: [u8; 16],
    pub(crate) parent: Option<[u8; 8]>,
    pub(crate) span: [u8; 8],
    pub(crate) request_id: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) faults: &'a [(String, &'static str)],
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<String>,
    pub(crate) status: Option<u16>,
    pub(crate) upstream: Option<&'a Upstream>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The id `text` spells in lowercase hex, if it does (and is not all zero, which W3C forbids).
pub fn hex_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id = hex_id::<8>("00f067aa0ba902b7").unwrap();
        assert_eq!(hex(&id), "00f067aa0ba902b7");
        assert_eq!(hex_id::<8>("0000000000000000"), None);
        assert_eq!(hex_id::<8>("00f067aa0ba902"), None);
        assert_eq!(hex_id::<8>("zzf067aa0ba902b7"), None);
    }
}
