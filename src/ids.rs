//! Trace and request ids on HTTP messages: the header names, W3C `traceparent` parsing, and the
//! seeded generation both servers use when a client sends no ids.
//!
//! Generation keys (part of the determinism contract, see `seed.rs`):
//! - a missing request id is `seed::uuid(seed, "<namespace>/request/<n>")`, `n` counting requests
//!   that arrived without one from 0. This depends on arrival order, by nature: clients that want
//!   reproducible ids send their own (the load generator does).
//! - a missing trace id is `seed::uuid(seed, "<namespace>/trace/<request-id>").simple()`, a function
//!   of the request id only, so it is order-independent whenever the request id is.

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};

use crate::seed;

/// The trace id header, kept end to end.
pub const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// The request id header, kept end to end; fault decisions key on it.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace-context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Ids are capped so a hostile client cannot make every log line and metric huge.
const MAX_ID_LEN: usize = 128;

/// The ids of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: String,
    pub request_id: String,
}

impl Ids {
    /// Writes both ids into `headers`, replacing any previous values.
    ///
    /// They are marked never to be indexed: over HTTP/2, HPACK then sends them as literals
    /// instead of adding a new value to the connection's dynamic table on every message (and
    /// evicting the entries worth keeping), since an id is never sent twice.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            (X_TRACE_ID, &self.trace_id),
            (X_REQUEST_ID, &self.request_id),
        ] {
            // Ids are either client header values (already valid) or hex/uuid text.
            if let Ok(mut value) = HeaderValue::from_str(value) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
    }
}

/// Hands out ids for requests that arrive without them, under one seed and namespace.
#[derive(Debug)]
pub struct IdSource {
    seed: u64,
    namespace: &'static str,
    next: AtomicU64,
}

impl IdSource {
    pub fn new(seed: u64, namespace: &'static str) -> Self {
        IdSource {
            seed,
            namespace,
            next: AtomicU64::new(0),
        }
    }

    /// Keeps the client's ids; fills in what is missing. A trace id comes from `X-Trace-Id`, else
    /// from a valid `traceparent`, else it is derived from the request id.
    pub fn assign(&self, headers: &HeaderMap) -> Ids {
        let request_id = header_id(headers, &X_REQUEST_ID).unwrap_or_else(|| {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            seed::uuid(self.seed, &format!("{}/request/{n}", self.namespace)).to_string()
        });
        let trace_id = header_id(headers, &X_TRACE_ID)
            .or_else(|| {
                headers
                    .get(TRACEPARENT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(traceparent_trace_id)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                // The key is `<namespace>/trace/<request-id>`, hashed in pieces.
                seed::uuid_parts(self.seed, &[self.namespace, "trace", &request_id])
                    .simple()
                    .to_string()
            });
        Ids {
            trace_id,
            request_id,
        }
    }
}

/// A usable id from a header: present, text, not blank, not absurdly long.
fn header_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    let usable = !text.is_empty() && text.len() <= MAX_ID_LEN;
    usable.then(|| text.to_string())
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if it is one.
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    traceparent(value).map(|(trace, _)| trace)
}

/// The trace id and parent span id of a valid W3C `traceparent`, if it is one.
pub fn traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    // Version 00 has exactly four fields; later versions may append more. `ff` is forbidden.
    let fields_ok = version != "00" || parts.next().is_none();
    let valid = hex(version, 2)
        && version != "ff"
        && fields_ok
        && hex(trace, 32)
        && !all_zero(trace)
        && hex(parent, 16)
        && !all_zero(parent)
        && hex(flags, 2);
    valid.then_some((trace, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_accepts_only_the_w3c_form() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traceparent_trace_id(tp),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(traceparent_trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn missing_ids_are_seeded_and_the_trace_follows_the_request_id() {
        let source = IdSource::new(7, "test");
        let a = source.assign(&HeaderMap::new());
        let b = source.assign(&HeaderMap::new());
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a, IdSource::new(7, "test").assign(&HeaderMap::new()));

        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("req-1"));
        let first = source.assign(&headers);
        let again = IdSource::new(7, "test").assign(&headers);
        assert_eq!(
            first, again,
            "the derived trace id must not depend on order"
        );
        assert_eq!(first.request_id, "req-1");
        assert_eq!(first.trace_id.len(), 32);

        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            source.assign(&headers).trace_id,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        headers.insert(X_TRACE_ID, HeaderValue::from_static("mine"));
        assert_eq!(source.assign(&headers).trace_id, "mine");
    }
}
