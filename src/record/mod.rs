//! The recorder: one [`Outcome`] per logical request, streaming writers for JSON, JSON lines and
//! CSV ([`writer`]), and the run's [`Summary`] with fixed-size latency histograms ([`summary`]).

pub mod bundle;
pub mod calls;
pub mod summary;
pub mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use calls::{Call, CallError};
pub use summary::Summary;
pub use writer::{Format, OpenFiles, OutcomeWriter, SharedWriter};

/// Why an attempt got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection could not be opened.
    Connect,
    /// No complete response within the attempt's timeout.
    Timeout,
    /// The connection was closed or reset before a complete response.
    Reset,
    /// Anything else: a malformed response, a body error.
    Protocol,
    /// The run was stopped (a signal) while this request was in flight or waiting to retry.
    Cancelled,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP version a request went out with. Serialized as its ALPN name (`"http/1.1"`, `"h2"`);
/// an [`Outcome`] leaves it out when it is HTTP/1.1, so outputs of HTTP/1.1 runs read as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "http/1.1")]
    Http1,
    #[serde(rename = "h2")]
    H2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::H2 => "h2",
        }
    }

    /// For `skip_serializing_if`: HTTP/1.1 is the default and is not written.
    pub fn is_http1(&self) -> bool {
        *self == Protocol::Http1
    }

    /// The protocol a response came back over.
    pub fn of(version: hyper::Version) -> Protocol {
        if version == hyper::Version::HTTP_2 {
            Protocol::H2
        } else {
            Protocol::Http1
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A result as scenario files name it, besides a plain status: a status class (`5xx`) or a
/// transport error (`timeout`). `load.retry.on` and the `expect` status keys share this
/// vocabulary and this parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultName {
    /// The hundreds digit: `5xx` is 5.
    Class(u16),
    Error(ErrorKind),
}

impl ResultName {
    /// Every name, in the order help texts list them.
    pub const NAMES: [&'static str; 9] = [
        "1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "connect", "reset", "protocol",
    ];

    /// The result `name` stands for; `None` for anything else (statuses are numbers, read apart).
    pub fn parse(name: &str) -> Option<ResultName> {
        Some(match name {
            "timeout" => ResultName::Error(ErrorKind::Timeout),
            "connect" => ResultName::Error(ErrorKind::Connect),
            "reset" => ResultName::Error(ErrorKind::Reset),
            "protocol" => ResultName::Error(ErrorKind::Protocol),
            n if n.len() == 3 && n.ends_with("xx") && Self::NAMES.contains(&n) => {
                ResultName::Class(u16::from(n.as_bytes()[0] - b'0'))
            }
            _ => return None,
        })
    }
}

/// One try of a logical request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The `X-Request-Id` sent, derived from `(seed, index, attempt)`.
    pub request_id: String,
    /// The HTTP status, when a response arrived.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Why there was no response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorKind>,
    /// Fault rules the proxy reported for this attempt (`x-traceforge-fault`), in firing order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub faults: Vec<String>,
    /// The kind of each of those rules (`delay`, `error`, ...), from `x-traceforge-fault-kind`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub fault_kinds: Vec<String>,
    /// Response body bytes received.
    pub bytes: u64,
    /// From sending the request to the end of the response body.
    #[serde(with = "micros", rename = "latency_us")]
    pub latency: Duration,
}

/// Everything recorded about one logical request, retries included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// 0-based position in the load profile.
    pub index: u64,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The final status, when the last attempt got a response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// The last attempt's error, when it got no response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorKind>,
    /// The trace id: the client's (with `client_trace`) or the one the proxy returned.
    pub trace_id: String,
    pub attempts: Vec<Attempt>,
    /// When the first attempt started, from the start of the run.
    #[serde(with = "micros", rename = "start_us")]
    pub start: Duration,
    /// When the request was meant to start, from the start of the run: its place in an open-loop
    /// schedule; the same as `start` in a closed loop.
    #[serde(with = "micros", rename = "scheduled_us", default)]
    pub scheduled: Duration,
    /// From the intended send time (`scheduled`) to the last attempt's end, backoff included:
    /// the latency a user waiting for this request saw (coordinated omission corrected).
    #[serde(with = "micros", rename = "latency_us")]
    pub latency: Duration,
    /// From the first attempt's actual start to the last attempt's end, backoff included.
    #[serde(with = "micros", rename = "service_us", default)]
    pub service: Duration,
    /// The protocol of the last response (`"h2"` with `load.http2`), or the one asked for when no
    /// response came. Left out of JSON when HTTP/1.1, and never in CSV or golden bodies.
    #[serde(skip_serializing_if = "Protocol::is_http1", default)]
    pub protocol: Protocol,
    /// With services in the loop: the calls its service made, per named proxy, in order.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub calls: BTreeMap<String, Vec<Call>>,
}

impl Outcome {
    /// A 2xx or 3xx final status.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..400).contains(&s))
    }

    pub fn retries(&self) -> u64 {
        self.attempts.len().saturating_sub(1) as u64
    }

    /// How far behind its intended send time the request started.
    pub fn late_by(&self) -> Duration {
        self.start.saturating_sub(self.scheduled)
    }

    pub fn request_ids(&self) -> impl Iterator<Item = &str> {
        self.attempts.iter().map(|a| a.request_id.as_str())
    }

    /// The final result as people read it: `200`, `503`, `timeout`.
    pub fn final_label(&self) -> String {
        match (self.status, self.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.to_string(),
            (None, None) => "none".to_string(),
        }
    }
}

/// Durations as whole microseconds in outputs: exact enough for HTTP latencies, and integers
/// keep CSV and JSON easy to process.
pub(crate) mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}
