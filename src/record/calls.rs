//! Calls a service under test made through a named proxy, and the load request each belongs to.
//!
//! The load generator opens an entry for every request it plays ([`Calls::open`]) under the trace
//! id and request ids it sends; a named proxy looks the trace context of each call it serves up
//! here ([`CallRecorder::begin`]). A call whose `traceparent`, `X-Trace-Id` or `X-Request-Id` names
//! an open entry belongs to that load request: its decision key is the request index plus the
//! call's ordinal at that proxy (the first call of request 7 at `payments`, the second, ...), so
//! arrival order and concurrency cannot change which call gets which fault. The load generator
//! takes the finished calls into its [`super::Outcome`] when the request ends, so call records
//! stream to disk with the outcomes and memory holds only the requests in flight.
//!
//! Calls that name no open entry are *unattributed* and go to a channel the runner drains: those
//! with a trace context are keyed on it (deterministic, but tied to no load request), those with
//! none are keyed on their arrival order at the proxy, which depends on timing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::micros;
use crate::ids::{TRACEPARENT, X_REQUEST_ID, X_TRACE_ID, traceparent_trace_id};

/// One call a named proxy served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// 0-based: the how-many-th call of its context (its load request, or its trace) at this proxy.
    pub ordinal: u32,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The status the proxy answered with (the upstream's or an injected one).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Why the call got no response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<CallError>,
    /// Fault rules that fired, in firing order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub faults: Vec<String>,
    /// The gRPC status of a gRPC call answered in its head (a trailers-only response: how gRPC
    /// servers, and the proxy's `grpc_status` faults, send an error). A status sent in trailers
    /// after a message is not read.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grpc_status: Option<u32>,
    /// From the call's arrival at the proxy to its response head (or its error).
    #[serde(with = "micros", rename = "latency_us")]
    pub latency: Duration,
}

impl Call {
    /// `503`, `reset`: the status, else the error.
    pub fn result(&self) -> String {
        match (self.status, self.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.as_str().to_string(),
            (None, None) => "none".to_string(),
        }
    }

    /// `POST /charge 503 [pay-503]`, `POST /shop.v1.Payments/Charge 200 grpc-status 14 [pay-unavailable]`:
    /// how golden files and reports show a call.
    pub fn label(&self) -> String {
        let mut s = format!("{} {} {}", self.method, self.path, self.result());
        if let Some(code) = self.grpc_status {
            s.push_str(&format!(" grpc-status {code}"));
        }
        if !self.faults.is_empty() {
            s.push_str(&format!(" [{}]", self.faults.join(", ")));
        }
        s
    }
}

/// Why a call got no response from the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallError {
    /// A `reset` fault closed the connection.
    Reset,
    /// A `hang` fault held the call until the service gave up.
    Hang,
    /// The service closed the connection before the answer.
    Cancelled,
    /// A `garbage` fault answered random bytes instead of a response.
    Garbage,
    /// An `empty` fault closed the connection with no response.
    Empty,
}

impl CallError {
    pub fn as_str(self) -> &'static str {
        match self {
            CallError::Reset => "reset",
            CallError::Hang => "hang",
            CallError::Cancelled => "cancelled",
            CallError::Garbage => "garbage",
            CallError::Empty => "empty",
        }
    }
}

/// A call no open load request claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unattributed {
    pub proxy: String,
    /// The trace context it carried (a trace id or request id), if any.
    pub context: Option<String>,
    /// Its place in arrival order at its proxy, counted over calls without a context.
    pub arrival: u64,
    pub call: Call,
}

/// The calls of the requests in flight, by the ids they were sent with.
#[derive(Debug)]
pub struct Calls {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    unattributed: mpsc::UnboundedSender<Unattributed>,
}

#[derive(Debug)]
struct Entry {
    index: u64,
    state: Mutex<EntryState>,
}

#[derive(Debug, Default)]
struct EntryState {
    keys: Vec<String>,
    /// Per proxy, by ordinal; `None` while the call is in flight.
    calls: BTreeMap<String, Vec<Option<Call>>>,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere is counted by panic_watch and fails the run; the data is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Calls {
    /// A registry, and the receiving end of the calls nobody claims.
    pub fn new() -> (Arc<Calls>, mpsc::UnboundedReceiver<Unattributed>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Calls {
                entries: Mutex::new(HashMap::new()),
                unattributed: tx,
            }),
            rx,
        )
    }

    /// Opens the entry of load request `index`, known by `key` (its trace id).
    pub fn open(self: &Arc<Self>, index: u64, key: &str) -> Open {
        let entry = Arc::new(Entry {
            index,
            state: Mutex::new(EntryState::default()),
        });
        let open = Open {
            calls: self.clone(),
            entry,
        };
        open.add_key(key);
        open
    }

    fn find(&self, key: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).get(key).cloned()
    }

    /// How many requests are open (for tests of memory: it returns to 0).
    pub fn open_requests(&self) -> usize {
        let entries = lock(&self.entries);
        let mut distinct: Vec<*const Entry> = entries.values().map(Arc::as_ptr).collect();
        distinct.sort();
        distinct.dedup();
        distinct.len()
    }
}

/// The open entry of one load request; [`Open::close`] takes its calls.
#[derive(Debug)]
pub struct Open {
    calls: Arc<Calls>,
    entry: Arc<Entry>,
}

impl Open {
    /// Another id this request is known by (the request id of an attempt).
    pub fn add_key(&self, key: &str) {
        if key.is_empty() {
            return;
        }
        lock(&self.entry.state).keys.push(key.to_string());
        lock(&self.calls.entries).insert(key.to_string(), self.entry.clone());
    }

    /// Closes the entry: later calls with its ids are unattributed. Returns its calls per proxy,
    /// in ordinal order; a call still in flight is left out (it is reported when it ends).
    pub fn close(self) -> BTreeMap<String, Vec<Call>> {
        let (keys, calls) = {
            let mut state = lock(&self.entry.state);
            state.closed = true;
            (
                std::mem::take(&mut state.keys),
                std::mem::take(&mut state.calls),
            )
        };
        {
            let mut entries = lock(&self.calls.entries);
            for key in keys {
                entries.remove(&key);
            }
        }
        calls
            .into_iter()
            .map(|(proxy, calls)| (proxy, calls.into_iter().flatten().collect::<Vec<_>>()))
            .filter(|(_, calls)| !calls.is_empty())
            .collect()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        // Closed or not, a dropped entry must not keep its keys alive.
        let keys = std::mem::take(&mut lock(&self.entry.state).keys);
        if !keys.is_empty() {
            let mut entries = lock(&self.calls.entries);
            for key in keys {
                entries.remove(&key);
            }
        }
    }
}

/// One named proxy's side: finds each call's request and counts its ordinal.
#[derive(Debug)]
pub struct CallRecorder {
    proxy: String,
    calls: Arc<Calls>,
    /// Ordinals of calls whose trace context names no open request.
    traced: Mutex<HashMap<String, u32>>,
    arrivals: AtomicU64,
}

/// Where a call belongs, as the proxy decided when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Belongs {
    /// To load request `index`.
    Request { index: u64 },
    /// To a trace no open request claims.
    Trace(String),
    /// To nothing: no trace context. `n` counts such calls at this proxy.
    Arrival(u64),
}

/// A call in flight at a named proxy. Ends with [`Slot::finish`]; dropped unfinished, it is
/// recorded as cancelled (the service went away).
#[derive(Debug)]
pub struct Slot {
    recorder: Arc<CallRecorder>,
    entry: Option<Arc<Entry>>,
    pub belongs: Belongs,
    pub ordinal: u32,
    method: String,
    path: String,
    grpc_status: Option<u32>,
    started: Instant,
    done: bool,
}

impl CallRecorder {
    pub fn new(proxy: impl Into<String>, calls: Arc<Calls>) -> Arc<CallRecorder> {
        Arc::new(CallRecorder {
            proxy: proxy.into(),
            calls,
            traced: Mutex::new(HashMap::new()),
            arrivals: AtomicU64::new(0),
        })
    }

    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// The trace contexts a call carries, in the order they are tried: `traceparent`'s trace id,
    /// `X-Trace-Id`, `X-Request-Id`.
    fn contexts(headers: &HeaderMap) -> impl Iterator<Item = &str> {
        let traceparent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent_trace_id);
        let plain = [X_TRACE_ID, X_REQUEST_ID].into_iter().filter_map(|name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 128)
        });
        traceparent.into_iter().chain(plain)
    }

    /// A call arrives: which request it belongs to and its ordinal there.
    pub fn begin(self: &Arc<Self>, headers: &HeaderMap, method: &str, path: &str) -> Slot {
        let mut entry = None;
        let mut first_context = None;
        for context in Self::contexts(headers) {
            if let Some(found) = self.calls.find(context) {
                entry = Some(found);
                break;
            }
            first_context.get_or_insert(context);
        }
        let (belongs, ordinal, entry) = match entry {
            Some(entry) => {
                let ordinal = {
                    let mut state = lock(&entry.state);
                    if state.closed {
                        None
                    } else {
                        let calls = state.calls.entry(self.proxy.clone()).or_default();
                        calls.push(None);
                        Some(calls.len() as u32 - 1)
                    }
                };
                match ordinal {
                    Some(ordinal) => (
                        Belongs::Request { index: entry.index },
                        ordinal,
                        Some(entry),
                    ),
                    None => self.unclaimed(first_context.or(Self::contexts(headers).next())),
                }
            }
            None => self.unclaimed(first_context),
        };
        Slot {
            recorder: self.clone(),
            entry,
            belongs,
            ordinal,
            method: method.to_string(),
            path: path.to_string(),
            started: Instant::now(),
            grpc_status: None,
            done: false,
        }
    }

    fn unclaimed(&self, context: Option<&str>) -> (Belongs, u32, Option<Arc<Entry>>) {
        match context {
            Some(context) => {
                let mut traced = lock(&self.traced);
                let n = traced.entry(context.to_string()).or_insert(0);
                let ordinal = *n;
                *n = n.saturating_add(1);
                (Belongs::Trace(context.to_string()), ordinal, None)
            }
            None => {
                let n = self.arrivals.fetch_add(1, Ordering::Relaxed);
                (Belongs::Arrival(n), 0, None)
            }
        }
    }
}

impl Slot {
    /// The key of this call's fault decisions: stable for a request's n-th call at this proxy,
    /// whatever the arrival order (`call/<proxy>/<index>/<ordinal>`); for an unclaimed trace,
    /// `call/<proxy>/trace/<context>/<ordinal>`; without context, `call/<proxy>/arrival/<n>`.
    pub fn key(&self) -> String {
        let proxy = &self.recorder.proxy;
        match &self.belongs {
            Belongs::Request { index } => format!("call/{proxy}/{index}/{}", self.ordinal),
            Belongs::Trace(t) => format!("call/{proxy}/trace/{t}/{}", self.ordinal),
            Belongs::Arrival(n) => format!("call/{proxy}/arrival/{n}"),
        }
    }

    /// The request index counting rules see: the load request's, else the arrival count.
    pub fn index(&self) -> u64 {
        match &self.belongs {
            Belongs::Request { index } => *index,
            Belongs::Trace(_) | Belongs::Arrival(_) => {
                self.recorder.arrivals.load(Ordering::Relaxed)
            }
        }
    }

    /// Records the call's end: a status, or an error, and the rules that fired.
    /// The call's gRPC status, read from its response head; [`Slot::finish`] records it.
    pub fn set_grpc_status(&mut self, code: u32) {
        self.grpc_status = Some(code);
    }

    pub fn finish(&mut self, status: Option<u16>, error: Option<CallError>, faults: Vec<String>) {
        if self.done {
            return;
        }
        self.done = true;
        let call = Call {
            ordinal: self.ordinal,
            method: std::mem::take(&mut self.method),
            path: std::mem::take(&mut self.path),
            status,
            error,
            faults,
            grpc_status: self.grpc_status,
            latency: self.started.elapsed(),
        };
        if let Some(entry) = &self.entry {
            let mut state = lock(&entry.state);
            if !state.closed {
                if let Some(slot) = state
                    .calls
                    .get_mut(&self.recorder.proxy)
                    .and_then(|calls| calls.get_mut(self.ordinal as usize))
                {
                    *slot = Some(call);
                    return;
                }
            }
        }
        let (context, arrival) = match &self.belongs {
            Belongs::Request { index } => (Some(format!("request {index} (ended)")), 0),
            Belongs::Trace(t) => (Some(t.clone()), 0),
            Belongs::Arrival(n) => (None, *n),
        };
        // The runner drains this until the run ends; after that nobody is listening.
        let _ = self.recorder.calls.unattributed.send(Unattributed {
            proxy: self.recorder.proxy.clone(),
            context,
            arrival,
            call,
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.finish(None, Some(CallError::Cancelled), Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(name: hyper::header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[tokio::test]
    async fn calls_join_their_request_in_ordinal_order() {
        let (calls, mut rx) = Calls::new();
        let recorder = CallRecorder::new("payments", calls.clone());
        let open = calls.open(7, "4bf92f3577b34da6a3ce929d0e0e4736");
        open.add_key("req-7-0");
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut first = recorder.begin(&headers(TRACEPARENT, tp), "POST", "/charge");
        let mut second = recorder.begin(&headers(X_REQUEST_ID, "req-7-0"), "POST", "/charge");
        assert_eq!(first.belongs, Belongs::Request { index: 7 });
        assert_eq!((first.ordinal, second.ordinal), (0, 1));
        assert_eq!(first.key(), "call/payments/7/0");
        // They end in the other order; the record keeps the ordinal order.
        second.finish(Some(200), None, Vec::new());
        first.finish(Some(503), None, vec!["pay-503".into()]);
        let mut stray = recorder.begin(&HeaderMap::new(), "GET", "/x");
        assert_eq!(stray.belongs, Belongs::Arrival(0));
        stray.finish(Some(200), None, Vec::new());
        let got = open.close();
        let labels: Vec<String> = got["payments"].iter().map(Call::label).collect();
        assert_eq!(labels, ["POST /charge 503 [pay-503]", "POST /charge 200"]);
        assert_eq!(calls.open_requests(), 0);
        assert_eq!(rx.recv().await.map(|u| u.call.path), Some("/x".into()));
    }

    #[tokio::test]
    async fn a_dropped_call_is_cancelled_and_a_late_one_unattributed() {
        let (calls, mut rx) = Calls::new();
        let recorder = CallRecorder::new("p", calls.clone());
        let open = calls.open(1, "t1");
        drop(recorder.begin(&headers(X_TRACE_ID, "t1"), "GET", "/a"));
        let mut late = recorder.begin(&headers(X_TRACE_ID, "t1"), "GET", "/b");
        let got = open.close();
        assert_eq!(got["p"][0].error, Some(CallError::Cancelled));
        late.finish(Some(200), None, Vec::new());
        let u = rx.recv().await.unwrap();
        assert_eq!((u.call.path.as_str(), u.call.ordinal), ("/b", 1));
        // After the request closed, its trace is an unclaimed context, counted apart.
        let again = recorder.begin(&headers(X_TRACE_ID, "t1"), "GET", "/c");
        assert_eq!(again.belongs, Belongs::Trace("t1".into()));
        assert_eq!(again.key(), "call/p/trace/t1/0");
    }
}
