//! The recorder: one [`Outcome`] per logical request, streaming writers for JSON, JSON lines and
//! CSV ([`writer`]), the run's [`Summary`] with fixed-size latency histograms ([`summary`]), and
//! its [`Timeline`]: the same kind of aggregates per slice of run time, for the HTML report.

pub mod bundle;
pub mod calls;
pub mod summary;
pub mod timeline;
pub mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use calls::{Call, CallError};
pub use summary::Summary;
pub use timeline::Timeline;
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
    /// A WebSocket connection was closed by the other side, or with a code other than 1000,
    /// before every message was echoed.
    WsClosed,
    /// A WebSocket connection closed normally with echoes missing: messages lost on the way.
    WsMissingEcho,
    /// A WebSocket echo matched no message that was waiting for one.
    WsMismatch,
    /// The connection closed cleanly (a FIN, no reset) before any response head: the server
    /// sent nothing at all. Over HTTP/2, the stream was reset with NO_ERROR before its head.
    Empty,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::WsClosed => "ws_closed",
            ErrorKind::WsMissingEcho => "ws_missing_echo",
            ErrorKind::WsMismatch => "ws_mismatch",
            ErrorKind::Empty => "empty",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP version a request went out with. Serialized as its ALPN name (`"http/1.1"`, `"h2"`),
/// or `"ws"` for a WebSocket connection (opened over HTTP/1.1); an [`Outcome`] leaves it out when
/// it is HTTP/1.1, so outputs of HTTP/1.1 runs read as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "http/1.1")]
    Http1,
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "ws")]
    Ws,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::H2 => "h2",
            Protocol::Ws => "ws",
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
    pub const NAMES: [&'static str; 13] = [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "timeout",
        "connect",
        "reset",
        "protocol",
        "ws_closed",
        "ws_missing_echo",
        "ws_mismatch",
        "empty",
    ];

    /// The result `name` stands for; `None` for anything else (statuses are numbers, read apart).
    pub fn parse(name: &str) -> Option<ResultName> {
        Some(match name {
            "timeout" => ResultName::Error(ErrorKind::Timeout),
            "connect" => ResultName::Error(ErrorKind::Connect),
            "reset" => ResultName::Error(ErrorKind::Reset),
            "protocol" => ResultName::Error(ErrorKind::Protocol),
            "ws_closed" => ResultName::Error(ErrorKind::WsClosed),
            "ws_missing_echo" => ResultName::Error(ErrorKind::WsMissingEcho),
            "ws_mismatch" => ResultName::Error(ErrorKind::WsMismatch),
            "empty" => ResultName::Error(ErrorKind::Empty),
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
    /// When the attempt was sent, from the start of the run (virtual time on the virtual clock):
    /// where a report's time axis puts its faults and retries. Zero in files written before it
    /// existed.
    #[serde(with = "micros", rename = "start_us", default)]
    pub start: Duration,
    /// A WebSocket target whose handshake got its `101`: what happened to the messages.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub websocket: Option<WsSession>,
}

/// How a WebSocket connection of the load generator ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsEnd {
    /// A close handshake: one side sent a Close frame and the other answered
    /// ([`WsSession::close_code`] is the code received).
    Closed,
    /// An echo matched no message waiting for one; the connection was then closed.
    Mismatch,
    /// The connection ended without a Close frame.
    Reset,
    /// The attempt's timeout passed first.
    Timeout,
    /// The run was stopped.
    Cancelled,
}

impl WsEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            WsEnd::Closed => "closed",
            WsEnd::Mismatch => "mismatch",
            WsEnd::Reset => "reset",
            WsEnd::Timeout => "timeout",
            WsEnd::Cancelled => "cancelled",
        }
    }
}

/// What one WebSocket connection did with its messages. Sent one at a time: each message waits
/// for the previous one's echo (or for `echo_timeout`, when it was lost), and a Close follows
/// the last one at once. The echo server answers in order, so an echo that never came is known
/// lost when a later echo, or the reply to the Close, arrived without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsSession {
    /// The messages the target asks for.
    pub messages: u64,
    /// The messages written to the connection.
    pub sent: u64,
    /// The messages whose echo came back intact.
    pub echoed: u64,
    /// The numbers (from 0) of messages known lost.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub lost: Vec<u64>,
    /// The code of the Close frame received (1000 for a normal close; 1005 when it had none).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub close_code: Option<u16>,
    /// The other side sent its Close first.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub closed_by_peer: bool,
    pub end: WsEnd,
}

/// The normal close code of RFC 6455.
pub const WS_NORMAL_CLOSE: u16 = 1000;

impl WsSession {
    /// Every message was echoed.
    pub fn complete(&self) -> bool {
        self.echoed == self.messages
    }

    /// Why this connection is not a success; `None` when every message was echoed.
    pub fn error(&self) -> Option<ErrorKind> {
        match self.end {
            WsEnd::Timeout => return Some(ErrorKind::Timeout),
            WsEnd::Cancelled => return Some(ErrorKind::Cancelled),
            WsEnd::Mismatch => return Some(ErrorKind::WsMismatch),
            _ if self.complete() => return None,
            WsEnd::Reset => return Some(ErrorKind::Reset),
            WsEnd::Closed => {}
        }
        if self.close_code == Some(WS_NORMAL_CLOSE) && !self.closed_by_peer {
            Some(ErrorKind::WsMissingEcho)
        } else {
            Some(ErrorKind::WsClosed)
        }
    }

    /// The connection as golden files show it: `ws 3/5 echoed, lost 1 3`, `ws 2/5 echoed,
    /// closed 1011`. Only what does not depend on timing: not `sent`, not who closed first.
    pub fn label(&self) -> String {
        let mut out = format!("ws {}/{} echoed", self.echoed, self.messages);
        if !self.lost.is_empty() {
            let lost: Vec<String> = self.lost.iter().map(u64::to_string).collect();
            out.push_str(&format!(", lost {}", lost.join(" ")));
        }
        match self.end {
            WsEnd::Closed => match self.close_code {
                Some(WS_NORMAL_CLOSE) => {}
                Some(code) => out.push_str(&format!(", closed {code}")),
                None => out.push_str(", closed"),
            },
            WsEnd::Mismatch => out.push_str(", echo mismatch"),
            WsEnd::Reset => out.push_str(", connection lost"),
            WsEnd::Timeout => out.push_str(", timeout"),
            WsEnd::Cancelled => out.push_str(", cancelled"),
        }
        out
    }
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
    /// response came; `"ws"` for a WebSocket target. Left out of JSON when HTTP/1.1.
    #[serde(skip_serializing_if = "Protocol::is_http1", default)]
    pub protocol: Protocol,
    /// With services in the loop: the calls its service made, per named proxy, in order.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub calls: BTreeMap<String, Vec<Call>>,
}

impl Outcome {
    /// A 2xx or 3xx final status; for a WebSocket target, a `101` and every message echoed.
    pub fn succeeded(&self) -> bool {
        if self.error.is_some() {
            return false;
        }
        match (self.protocol, self.status) {
            (Protocol::Ws, status) => status == Some(101),
            (_, Some(s)) => (200..400).contains(&s),
            (_, None) => false,
        }
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

    /// The final result as people read it: `200`, `503`, `timeout`, `ws_closed`. A WebSocket
    /// that got its `101` but not all its echoes says why (its error), not `101`.
    pub fn final_label(&self) -> String {
        match (self.status, self.error) {
            (_, Some(e)) => e.to_string(),
            (Some(s), None) => s.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(echoed: u64, lost: Vec<u64>, code: Option<u16>, by_peer: bool) -> WsSession {
        WsSession {
            messages: 5,
            sent: 5,
            echoed,
            lost,
            close_code: code,
            closed_by_peer: by_peer,
            end: WsEnd::Closed,
        }
    }

    #[test]
    fn websocket_sessions_name_their_error_and_their_golden_label() {
        let all = session(5, vec![], Some(1000), false);
        assert_eq!((all.error(), all.label().as_str()), (None, "ws 5/5 echoed"));
        let late_cut = session(5, vec![], Some(1011), true);
        assert_eq!(late_cut.error(), None);
        assert_eq!(late_cut.label(), "ws 5/5 echoed, closed 1011");
        let lost = session(3, vec![1, 4], Some(1000), false);
        assert_eq!(lost.error(), Some(ErrorKind::WsMissingEcho));
        assert_eq!(lost.label(), "ws 3/5 echoed, lost 1 4");
        let cut = session(2, vec![0], Some(1011), true);
        assert_eq!(cut.error(), Some(ErrorKind::WsClosed));
        assert_eq!(cut.label(), "ws 2/5 echoed, lost 0, closed 1011");
        let mismatch = WsSession {
            end: WsEnd::Mismatch,
            ..session(5, vec![], None, false)
        };
        assert_eq!(mismatch.error(), Some(ErrorKind::WsMismatch));
        assert_eq!(mismatch.label(), "ws 5/5 echoed, echo mismatch");
        let timeout = WsSession {
            end: WsEnd::Timeout,
            ..session(1, vec![], None, false)
        };
        assert_eq!(timeout.error(), Some(ErrorKind::Timeout));
        assert_eq!(timeout.label(), "ws 1/5 echoed, timeout");
        for name in ["ws_closed", "ws_missing_echo", "ws_mismatch"] {
            let parsed = ResultName::parse(name);
            assert!(
                matches!(parsed, Some(ResultName::Error(e)) if e.as_str() == name),
                "{name}"
            );
        }
    }
}
