//! What the proxy must do to one request: the [`Decision`] `FaultPlan::decide` returns, its
//! [`Step`]s and their [`Effect`]s, with every random value already drawn. The proxy applies a
//! decision; it never draws or decides anything itself.
//!
//! How the proxy applies a decision, in order:
//! 1. Wait [`Decision::total_delay`] (all delays add up).
//! 2. If there is a [`Decision::terminal`] step, answer with it and do not forward (see [`Effect`]).
//! 3. Otherwise apply [`Decision::request_headers`] to the request, forward it, replace the status
//!    with [`Decision::status_rewrite`], apply [`Decision::response_headers`], and send the body,
//!    cut after [`Decision::truncate_after`] bytes and paced at [`Decision::throttle`] bytes/s,
//!    after [`Decision::corruptions`] changed it. The request body is read at
//!    [`Decision::slow_read`] bytes/s. With [`Decision::go_away`], shut the client's connection
//!    down gracefully after the response; with [`Decision::slow_close`], close it only that long
//!    after the response.
//! 4. Keep the decision alive until the response is finished: it holds the `max_active` slots.
//!
//! Every synthetic response (error, drop, hang's 504) carries `x-fault-injected: <rule name>`;
//! [`Decision::fired_rules`] names every rule that fired, in order, for logs and outcomes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::spec::CorruptMode;
use crate::spec::duration::DelaySpec;

/// What a fault does. A compiled rule holds an [`Action`] whose delay is still a distribution
/// ([`crate::fault::FaultAction`]); a decision holds one whose delay is drawn (an [`Effect`]).
/// One type for both, so a kind has one name and one set of rules (terminal or not).
#[derive(Debug, Clone, PartialEq)]
pub enum Action<D = Duration> {
    /// Hold the request this long before anything else. Delays of several rules add up.
    Delay(D),
    /// Terminal. Answer with [`ErrorReply`] without forwarding.
    Error(Arc<ErrorReply>),
    /// Terminal. Answer `503 Service Unavailable` without forwarding.
    Drop,
    /// Terminal. Close the client connection at once, without any response (with `SO_LINGER` 0
    /// where the platform allows, so the client sees a TCP RST); over HTTP/2, reset the
    /// request's stream instead. Do not forward.
    Reset,
    /// Terminal. Do not forward and do not answer: hold the connection open until the client gives
    /// up. With `cap`, answer `504 Gateway Timeout` once `cap` has passed (counted after the delays).
    Hang { cap: Option<Duration> },
    /// Forward, send the upstream's status and headers (Content-Length kept, so the client can
    /// tell the body is short), then only the first `after_bytes` bytes of the body, then close
    /// the connection (no final chunk on a chunked body); over HTTP/2, reset the stream instead.
    Truncate { after_bytes: u64 },
    /// Forward, then send the response body at no more than `bytes_per_second` on this
    /// connection, pacing in small chunks.
    Throttle { bytes_per_second: u64 },
    /// Forward, then pass a server-sent event stream on event by event: cut it (the connection
    /// closed) after `after_events` whole events, and hold each event `event_delay`.
    Stream {
        after_events: Option<u64>,
        event_delay: Option<Duration>,
    },
    /// Change the request sent upstream or the response sent back: apply `ops` in order.
    Headers {
        target: HeaderSide,
        ops: Arc<[HeaderOp]>,
    },
    /// Forward, then answer with this status instead of the upstream's, keeping its headers and body.
    Status(u16),
    /// A WebSocket stream fault (applies only to upgrade requests, after the upstream's `101`):
    /// close the stream after `after_messages` messages (both directions) or `after_time`,
    /// whichever comes first, sending `code` to the client. See [`crate::fault::stream`].
    WsClose {
        after_messages: Option<u64>,
        after_time: Option<Duration>,
        code: u16,
    },
    /// A WebSocket stream fault: hold each message this long (a range is drawn per message).
    WsDelay(DelaySpec),
    /// A WebSocket stream fault: drop each message with this probability.
    WsDrop { probability: f64 },
    /// Terminal. Reset the request's HTTP/2 stream with this error code (on HTTP/1.1, close the
    /// connection). Do not forward.
    RstStream { code: u32 },
    /// Forward and answer as usual, then shut the client's connection down gracefully: an HTTP/2
    /// GOAWAY, or `Connection: close` on HTTP/1.1.
    GoAway,
    /// Terminal. A request over a `quota`: answer with this 429 (`Retry-After` and `RateLimit-*`
    /// headers filled in for the request) without forwarding. A compiled rule holds the reply
    /// every 429 starts from; the quota itself is in its window ([`crate::fault::Window::quota`]).
    Quota(Arc<ErrorReply>),
    /// Forward, then corrupt the response body (see [`crate::proxy`]'s `corrupt` module): replace
    /// each byte with probability `rate` (`Bytes`), or make a JSON body invalid (`Json`, which
    /// falls back to bytes for a body it cannot use).
    Corrupt { mode: CorruptMode, rate: f64 },
    /// Terminal. Send `size` random bytes instead of a response, then close the connection (over
    /// HTTP/2: a `200` head, the bytes as the body, then a reset of the stream). Do not forward.
    Garbage { size: u64 },
    /// Terminal. Close the connection with no response, cleanly (a FIN; over HTTP/2 a reset of
    /// the stream with NO_ERROR before any head). Do not forward.
    Empty,
    /// Forward, reading the client's request body at no more than `bytes_per_second`.
    SlowRead { bytes_per_second: u64 },
    /// Forward and answer, then hold the connection open this long before closing it (over
    /// HTTP/2, hold back the end of the stream). The delay is drawn per request.
    SlowClose(D),
}

/// The effect of a fired rule, with any random values already drawn.
pub type Effect = Action<Duration>;

impl<D> Action<D> {
    /// The fault kind, as written in scenario files (`delay`, `error`, ...): for metrics and outcomes.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Delay(_) => "delay",
            Action::Error(_) => "error",
            Action::Drop => "drop",
            Action::Reset => "reset",
            Action::Hang { .. } => "hang",
            Action::Truncate { .. } => "truncate",
            Action::Throttle { .. } => "throttle",
            Action::Stream { .. } => "stream",
            Action::Headers { .. } => "headers",
            Action::Status(_) => "status",
            Action::WsClose { .. } => "ws_close",
            Action::WsDelay(_) => "ws_delay",
            Action::WsDrop { .. } => "ws_drop",
            Action::RstStream { .. } => "rst_stream",
            Action::GoAway => "goaway",
            Action::Quota(_) => "quota",
            Action::Corrupt { .. } => "corrupt",
            Action::Garbage { .. } => "garbage",
            Action::Empty => "empty",
            Action::SlowRead { .. } => "slow_read",
            Action::SlowClose(_) => "slow_close",
        }
    }

    /// Stream faults act on a WebSocket's messages after an upgrade: they fire only for upgrade
    /// requests, and change nothing about the request itself.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            Action::WsClose { .. } | Action::WsDelay(_) | Action::WsDrop { .. }
        )
    }

    /// Terminal actions answer the request themselves (or never answer it): nothing is
    /// forwarded, and rule evaluation stops at the first one.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Action::Error(_)
                | Action::Drop
                | Action::Reset
                | Action::Hang { .. }
                | Action::RstStream { .. }
                | Action::Quota(_)
                | Action::Garbage { .. }
                | Action::Empty
        )
    }

    /// The same action with its delay replaced by `delay(d)`.
    pub fn map_delay<E>(&self, delay: impl FnOnce(&D) -> E) -> Action<E> {
        match self {
            Action::Delay(d) => Action::Delay(delay(d)),
            Action::Error(reply) => Action::Error(reply.clone()),
            Action::Drop => Action::Drop,
            Action::Reset => Action::Reset,
            Action::Hang { cap } => Action::Hang { cap: *cap },
            Action::Truncate { after_bytes } => Action::Truncate {
                after_bytes: *after_bytes,
            },
            Action::Throttle { bytes_per_second } => Action::Throttle {
                bytes_per_second: *bytes_per_second,
            },
            Action::Stream {
                after_events,
                event_delay,
            } => Action::Stream {
                after_events: *after_events,
                event_delay: *event_delay,
            },
            Action::Headers { target, ops } => Action::Headers {
                target: *target,
                ops: ops.clone(),
            },
            Action::Status(status) => Action::Status(*status),
            Action::WsClose {
                after_messages,
                after_time,
                code,
            } => Action::WsClose {
                after_messages: *after_messages,
                after_time: *after_time,
                code: *code,
            },
            Action::WsDelay(spec) => Action::WsDelay(*spec),
            Action::RstStream { code } => Action::RstStream { code: *code },
            Action::GoAway => Action::GoAway,
            Action::WsDrop { probability } => Action::WsDrop {
                probability: *probability,
            },
            Action::Quota(reply) => Action::Quota(reply.clone()),
            Action::Corrupt { mode, rate } => Action::Corrupt {
                mode: *mode,
                rate: *rate,
            },
            Action::Garbage { size } => Action::Garbage { size: *size },
            Action::Empty => Action::Empty,
            Action::SlowRead { bytes_per_second } => Action::SlowRead {
                bytes_per_second: *bytes_per_second,
            },
            Action::SlowClose(d) => Action::SlowClose(delay(d)),
        }
    }
}

/// Which message a `headers` fault changes: the request sent upstream, or the response sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSide {
    Request,
    Response,
}

impl HeaderSide {
    /// As written in scenario files and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderSide::Request => "request",
            HeaderSide::Response => "response",
        }
    }
}

/// The synthetic response of an `error` fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub status: u16,
    /// `None`: the proxy's default body (a short text naming the rule).
    pub body: Option<String>,
    /// Sent as given, after the proxy's own headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Send `Retry-After` (see [`ErrorReply::retry_after_value`]).
    pub retry_after: Option<Duration>,
    /// Answer as a gRPC server: HTTP 200 with this `grpc-status` and `grpc-message`.
    pub grpc: Option<GrpcStatus>,
}

/// A gRPC status a fault answers with (a "trailers-only" response: the status travels in the
/// response head, with no message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    /// 0 to 16.
    pub code: u8,
    pub message: Option<String>,
}

impl ErrorReply {
    /// A reply with only a status.
    pub fn status(status: u16) -> Self {
        ErrorReply {
            status,
            body: None,
            headers: Vec::new(),
            retry_after: None,
            grpc: None,
        }
    }

    /// The `Retry-After` header value: whole seconds, rounded up (`1.2s` -> `2`).
    pub fn retry_after_value(&self) -> Option<HeaderValue> {
        let d = self.retry_after?;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        Some(HeaderValue::from(secs))
    }
}

/// One change to a header map.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderOp {
    /// Remove every value of the header.
    Remove(HeaderName),
    /// Replace every value of the header with this one.
    Set(HeaderName, HeaderValue),
    /// Append a value, keeping existing ones.
    Add(HeaderName, HeaderValue),
}

impl HeaderOp {
    pub fn apply(&self, headers: &mut HeaderMap) {
        match self {
            HeaderOp::Remove(name) => {
                headers.remove(name);
            }
            HeaderOp::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            HeaderOp::Add(name, value) => {
                headers.append(name.clone(), value.clone());
            }
        }
    }
}

/// Which rule a step came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// The rule at this position in the plan.
    Index(usize),
    /// The `x-traceforge-fault` request header (named `header`).
    Header,
}

/// One rule that fired for a request.
#[derive(Debug, Clone)]
pub struct Step {
    pub rule: RuleRef,
    /// The rule's name (`header` for the header-controlled fault).
    pub name: Arc<str>,
    pub effect: Effect,
    /// The `max_active` slot this step holds, if its rule has a limit. Never read: it is held
    /// for its `Drop`, which releases the slot.
    #[allow(dead_code)]
    pub(crate) slot: Option<Arc<ActiveSlot>>,
}

impl PartialEq for Step {
    /// Slots are runtime bookkeeping, not part of what was decided.
    fn eq(&self, other: &Self) -> bool {
        self.rule == other.rule && self.name == other.name && self.effect == other.effect
    }
}

/// What happens to one request: the rules that fired, in order. Holding a decision holds the
/// `max_active` slots of its rules; dropping it (and every clone) releases them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub steps: Vec<Step>,
    /// Why the `x-traceforge-fault` header was ignored, when it was malformed. The proxy logs it
    /// and may echo it in an `x-traceforge-fault-error` response header.
    pub header_error: Option<String>,
}

impl Decision {
    /// Adds a fired step. A terminal step drops the body, header and status steps before it (the
    /// request will not be forwarded, so they could do nothing) and releases their slots.
    pub(crate) fn push(&mut self, step: Step) {
        if step.effect.is_terminal() {
            self.steps.retain(|s| matches!(s.effect, Effect::Delay(_)));
        }
        self.steps.push(step);
    }

    /// Appends the steps of the response rules ([`crate::fault::FaultPlan::decide_response`])
    /// after the request's, in firing order. Nothing of the request's is dropped: it has been
    /// forwarded under them. A terminal response step is then [`Decision::terminal`]: it replaces
    /// the upstream's response. Of the status rewrites the last wins, so a response rule's.
    pub fn extend_response(&mut self, response: Decision) {
        self.steps.extend(response.steps);
    }

    /// The sum of every delay that fired: delays add up.
    pub fn total_delay(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| match s.effect {
                Effect::Delay(d) => d,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// The terminal step (error, drop, reset, hang, rst_stream, quota, garbage or empty), if
    /// any. It is always the last step, and then only delays come before it, unless it is a
    /// response rule's (see [`Decision::extend_response`]).
    pub fn terminal(&self) -> Option<&Step> {
        self.steps.last().filter(|s| s.effect.is_terminal())
    }

    /// Whether the request goes upstream at all.
    pub fn forwards(&self) -> bool {
        self.terminal().is_none()
    }

    /// Cut the response body after this many bytes, then close: the smallest `after_bytes` that fired.
    pub fn truncate_after(&self) -> Option<u64> {
        self.steps
            .iter()
            .filter_map(|s| match s.effect {
                Effect::Truncate { after_bytes } => Some(after_bytes),
                _ => None,
            })
            .min()
    }

    /// Stream the response body at this many bytes per second: the lowest rate that fired.
    pub fn throttle(&self) -> Option<u64> {
        self.steps
            .iter()
            .filter_map(|s| match s.effect {
                Effect::Throttle { bytes_per_second } => Some(bytes_per_second),
                _ => None,
            })
            .min()
    }

    /// How an event stream is passed on: the fewest `after_events` and the longest `event_delay`
    /// of the `stream` rules that fired; `None` when none fired.
    pub fn stream(&self) -> Option<(Option<u64>, Option<Duration>)> {
        let mut found = None;
        for s in &self.steps {
            if let Effect::Stream {
                after_events,
                event_delay,
            } = s.effect
            {
                let (cut, delay): (Option<u64>, Option<Duration>) = found.unwrap_or((None, None));
                let cut = match (cut, after_events) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let delay = match (delay, event_delay) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                found = Some((cut, delay));
            }
        }
        found
    }

    /// The `goaway` step that fired, if any: the connection is shut down gracefully after this
    /// response.
    pub fn go_away(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| matches!(s.effect, Effect::GoAway))
    }

    /// The `corrupt` steps that fired, in firing order: each corrupts the body the one before it
    /// produced, from its own random stream.
    pub fn corruptions(&self) -> impl Iterator<Item = (&Arc<str>, CorruptMode, f64)> {
        self.steps.iter().filter_map(|s| match s.effect {
            Effect::Corrupt { mode, rate } => Some((&s.name, mode, rate)),
            _ => None,
        })
    }

    /// Read the request body at this many bytes per second: the lowest `slow_read` rate that fired.
    pub fn slow_read(&self) -> Option<u64> {
        self.steps
            .iter()
            .filter_map(|s| match s.effect {
                Effect::SlowRead { bytes_per_second } => Some(bytes_per_second),
                _ => None,
            })
            .min()
    }

    /// Hold the connection open this long after the response: the longest `slow_close` delay
    /// that fired.
    pub fn slow_close(&self) -> Option<Duration> {
        self.steps
            .iter()
            .filter_map(|s| match s.effect {
                Effect::SlowClose(d) => Some(d),
                _ => None,
            })
            .max()
    }

    /// The status that replaces the upstream's: the last `status` rewrite that fired.
    pub fn status_rewrite(&self) -> Option<u16> {
        self.steps
            .iter()
            .filter_map(|s| match s.effect {
                Effect::Status(status) => Some(status),
                _ => None,
            })
            .next_back()
    }

    /// Changes to the request before it is forwarded, in the order to apply them.
    pub fn request_headers(&self) -> impl Iterator<Item = &HeaderOp> {
        self.header_ops(HeaderSide::Request)
    }

    /// Changes to the upstream's response before it is returned, in the order to apply them.
    pub fn response_headers(&self) -> impl Iterator<Item = &HeaderOp> {
        self.header_ops(HeaderSide::Response)
    }

    fn header_ops(&self, want: HeaderSide) -> impl Iterator<Item = &HeaderOp> {
        self.steps.iter().flat_map(move |s| match &s.effect {
            Effect::Headers { target, ops } if *target == want => ops.iter(),
            _ => [].iter(),
        })
    }

    /// The names of the rules that fired, in firing order (for the `x-traceforge-fault` response
    /// header, outcomes and logs).
    pub fn fired_rules(&self) -> Vec<&str> {
        self.steps.iter().map(|s| &*s.name).collect()
    }

    /// The kinds of the rules that fired, in the same order as [`Decision::fired_rules`].
    pub fn fired_kinds(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.effect.kind()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether any WebSocket stream fault fired (then the proxy speaks WebSocket on both sides of
    /// an upgraded connection instead of splicing bytes).
    pub fn has_stream_faults(&self) -> bool {
        self.steps.iter().any(|s| s.effect.is_stream())
    }
}

/// One request counted against a rule's `max_active`; released when dropped.
#[derive(Debug)]
pub(crate) struct ActiveSlot {
    counter: Arc<AtomicU32>,
}

impl ActiveSlot {
    /// Takes a slot if fewer than `limit` are taken.
    pub(crate) fn acquire(counter: &Arc<AtomicU32>, limit: u32) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ActiveSlot {
                counter: counter.clone(),
            })
    }
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let mut reply = ErrorReply::status(429);
        assert_eq!(reply.retry_after_value(), None);
        for (d, want) in [
            (1000, "1"),
            (1001, "2"),
            (1500, "2"),
            (0, "0"),
            (60_000, "60"),
        ] {
            reply.retry_after = Some(Duration::from_millis(d));
            assert_eq!(
                reply.retry_after_value(),
                Some(HeaderValue::from_static(want))
            );
        }
    }

    #[test]
    fn header_ops_apply_in_order() {
        let name = HeaderName::from_static("x-a");
        let mut map = HeaderMap::new();
        map.insert(name.clone(), HeaderValue::from_static("old"));
        for op in [
            HeaderOp::Add(name.clone(), HeaderValue::from_static("two")),
            HeaderOp::Set(name.clone(), HeaderValue::from_static("one")),
            HeaderOp::Add(name.clone(), HeaderValue::from_static("more")),
        ] {
            op.apply(&mut map);
        }
        let values: Vec<_> = map.get_all(&name).iter().collect();
        assert_eq!(values, ["one", "more"]);
        HeaderOp::Remove(name.clone()).apply(&mut map);
        assert!(map.get(&name).is_none());
    }
}
