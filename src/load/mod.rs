//! The load generator: closed loops (a request count, a duration, or concurrency stages) and open
//! loops (requests started on a schedule, latency measured from the intended send time), targets
//! picked by weight from a seeded per-request stream, per-attempt timeouts, and retries with a
//! policy (doubling backoff, cap, seeded jitter, `Retry-After`). Every request id derives from
//! `(seed, index, attempt)`, so a run is the same run at any concurrency. Outcomes go to a channel
//! as they finish; the caller records them.
//!
//! The plan it plays lives beside it: [`plan`] (profile, retry policy, targets) and [`compile`]
//! (from `[load]`). Neither imports the generator. The waits between attempts (backoff, jitter,
//! `Retry-After`) are in `retry`, re-exported here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod channel;
pub mod compile;
pub mod plan;
mod retry;
mod websocket;

pub use channel::{Channel, Connector, Dial, LoadIo, OwnConnection};
pub use retry::{MAX_RETRY_AFTER, backoff, parse_retry_after, retry_wait};

use crate::record::{Attempt, ErrorKind, Outcome, Protocol};
use crate::{seed, wire};
use plan::ramp_value;
pub use plan::{
    LoadConfig, Profile, RetryPolicy, Schedule, Shard, Stage, Target, Until, WsTarget, pick_target,
};

/// Header names shared with the proxy and the upstream, defined once where they are set.
pub use crate::ids::{TRACEPARENT, X_REQUEST_ID, X_TRACE_ID};
use crate::record::calls::{Calls, Open};

/// What to play and where.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Scheme and authority the targets are sent to, such as `http://127.0.0.1:8080` or
    /// `https://127.0.0.1:8443`.
    pub base: Uri,
    pub seed: u64,
    pub load: LoadConfig,
    /// An `https://` base: how its certificate is verified (see [`crate::tls::client_config`]; the
    /// ALPN offer is the generator's own). `None`: the system's roots. Unused for `http://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// With services in the loop: where each request's calls are collected (see
    /// [`crate::record::calls`]). Requests then always carry a trace context.
    pub calls: Option<Arc<Calls>>,
}

/// The TCP connector, Nagle off: small requests must not wait for ACKs. It takes `https://`
/// URIs too: TLS is the [`Connector`]'s layer above it.
pub fn tcp_dialer() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    connector
}

/// The TLS trust of an `https://` base: [`crate::tls::client_config`] for `tls`, ready for
/// [`LoadOptions::tls`].
pub fn client_tls(
    tls: &crate::tls::UpstreamTls,
) -> Result<Arc<rustls::ClientConfig>, crate::tls::TlsError> {
    crate::tls::client_config(tls).map(Arc::new)
}

/// Why the load generator could not play its whole profile.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A worker task panicked: its requests were not played. Always a bug.
    #[error("a load worker panicked: {0}")]
    Panicked(String),
    /// The TLS configuration for an `https://` base could not be built.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The message of a panicked task, as far as it can be read.
pub fn panic_message(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    crate::panic_watch::payload_message(error.into_panic().as_ref())
}

/// Waits for every task of `tasks`; the first panic among them becomes the error.
async fn join_all(mut tasks: tokio::task::JoinSet<()>) -> Result<(), LoadError> {
    let mut first = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                first.get_or_insert_with(|| panic_message(e));
            }
        }
    }
    match first {
        Some(message) => Err(LoadError::Panicked(message)),
        None => Ok(()),
    }
}

/// Plays the load profile. Outcomes are sent on `outcomes` as requests finish (in completion
/// order; each carries its index). Cancelling `stop` starts no new request and cuts every wait at
/// once: a request in flight or waiting for its next attempt ends with [`ErrorKind::Cancelled`],
/// keeping the attempts it made. Returns when every started request has been sent on the channel;
/// a panicked worker is an error, never a quietly shorter run.
pub async fn run<D: Dial>(
    dialer: D,
    options: LoadOptions,
    outcomes: mpsc::Sender<Outcome>,
    stop: CancellationToken,
) -> Result<(), LoadError> {
    // WebSocket targets open a connection per attempt, always over HTTP/1.1 (an upgrade is an
    // HTTP/1.1 affair; RFC 8441's HTTP/2 form is not spoken here).
    let ws = Connector::new(dialer.clone(), &options.base, options.tls.clone(), false)?;
    let connector = Connector::new(
        dialer,
        &options.base,
        options.tls.clone(),
        options.load.http2,
    )?;
    let start = Instant::now();
    let options = Arc::new(options);
    match options.load.profile.clone() {
        Profile::Open {
            schedule,
            max_in_flight,
        } => {
            // Many short tasks send at once: they share hyper's pool (over HTTP/2, one
            // connection that multiplexes them).
            let client = connector.pooled(max_in_flight as usize);
            open_loop(
                client,
                ws,
                options,
                outcomes,
                stop,
                start,
                schedule,
                max_in_flight,
            )
            .await
        }
        Profile::Closed { concurrency, until } => {
            let workers = match until {
                Until::Requests(n) => u64::from(concurrency.max(1)).min(n.max(1)),
                Until::Duration(_) => u64::from(concurrency.max(1)),
            };
            let workers = match (until, options.load.shard) {
                (Until::Requests(n), Some(shard)) => workers.min(shard.planned(n).max(1)),
                _ => workers,
            };
            let gate = move |_worker: u64, elapsed: Duration, index: u64| match until {
                Until::Requests(n) => Gate::from(index < n),
                Until::Duration(d) => Gate::from(elapsed < d),
            };
            closed_loop(connector, ws, options, outcomes, stop, start, workers, gate).await
        }
        Profile::ClosedStages { stages } => {
            let workers = u64::from(options.load.profile.max_in_flight());
            let gate = move |worker: u64, elapsed: Duration, _index: u64| {
                match ramp_value(&stages, elapsed) {
                    None => Gate::Stop,
                    // Worker k works while the ramp asks for more than k workers.
                    Some(c) if (worker as f64) < c => Gate::Go,
                    Some(_) => Gate::Wait,
                }
            };
            closed_loop(connector, ws, options, outcomes, stop, start, workers, gate).await
        }
    }
}

/// What a closed-loop worker does next.
enum Gate {
    Go,
    /// Not this worker's turn yet (a ramp below its number): look again shortly.
    Wait,
    Stop,
}

impl From<bool> for Gate {
    fn from(go: bool) -> Gate {
        if go { Gate::Go } else { Gate::Stop }
    }
}

/// How often an idle ramp worker checks whether the ramp has reached it.
const RAMP_TICK: Duration = Duration::from_millis(10);

/// `workers` tasks, each taking the next index when its previous request finished, while `gate`
/// says go. Indexes come from one counter, so every index below the total is played exactly once.
#[allow(clippy::too_many_arguments)]
async fn closed_loop<D, G>(
    connector: Connector<D>,
    ws: Connector<D>,
    options: Arc<LoadOptions>,
    outcomes: mpsc::Sender<Outcome>,
    stop: CancellationToken,
    start: Instant,
    workers: u64,
    gate: G,
) -> Result<(), LoadError>
where
    D: Dial,
    G: Fn(u64, Duration, u64) -> Gate + Send + Sync + 'static,
{
    // The counter counts this shard's requests; `shard_index` turns the j-th into its index.
    let next = Arc::new(AtomicU64::new(0));
    let shard = options.load.shard;
    let gate = Arc::new(gate);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        // Each worker keeps a connection of its own: requests follow one another on it (over
        // HTTP/2 too: one connection per worker, one stream at a time).
        let mut own = OwnConnection::new(connector.clone(), options.base.clone());
        let ws = ws.clone();
        let options = options.clone();
        let outcomes = outcomes.clone();
        let next = next.clone();
        let stop = stop.clone();
        let gate = gate.clone();
        let work = async move {
            loop {
                if stop.is_cancelled() {
                    return;
                }
                // One instant for the decision and the recorded start, so a request recorded
                // as started was started while the profile allowed it.
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(start);
                // Peek first: a worker that must wait or stop takes no index.
                match gate(
                    worker,
                    elapsed,
                    shard_index(shard, next.load(Ordering::Relaxed)),
                ) {
                    Gate::Stop => return,
                    Gate::Wait => {
                        tokio::select! {
                            biased;
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(RAMP_TICK) => continue,
                        }
                    }
                    Gate::Go => {}
                }
                let index = shard_index(shard, next.fetch_add(1, Ordering::Relaxed));
                if let Gate::Stop = gate(worker, elapsed, index) {
                    return;
                }
                let mut channel = Channel::Own(&mut own);
                let times = Times {
                    run_start: start,
                    scheduled: now,
                    started: now,
                };
                let outcome = play(&mut channel, &ws, &options, index, times, &stop).await;
                if outcomes.send(outcome).await.is_err() {
                    // The recorder is gone: nobody wants more results.
                    return;
                }
            }
        };
        // With per-core runtimes (`traceforge load` on more than one CPU), workers take turns
        // among them; each worker's connection then lives on its core.
        match crate::cores::next() {
            Some(core) => tasks.spawn_on(work, &core),
            None => tasks.spawn(work),
        };
    }
    join_all(tasks).await
}

/// The request index of a closed loop's `j`-th request: `j` itself, or the `j`-th of the shard.
fn shard_index(shard: Option<Shard>, j: u64) -> u64 {
    shard.map_or(j, |s| s.nth(j))
}

/// Starts request `i` at its scheduled time, whatever earlier requests are doing. When
/// `max_in_flight` requests are outstanding the next one waits for a slot: it starts late (and is
/// counted late) but still exists, so the request count and ids never depend on the server, and
/// its latency, measured from the scheduled time, shows the wait.
#[allow(clippy::too_many_arguments)]
async fn open_loop<D: Dial>(
    client: Client<Connector<D>, Full<Bytes>>,
    ws: Connector<D>,
    options: Arc<LoadOptions>,
    outcomes: mpsc::Sender<Outcome>,
    stop: CancellationToken,
    start: Instant,
    schedule: Schedule,
    max_in_flight: u32,
) -> Result<(), LoadError> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1) as usize));
    // Shared by every request's task behind one pointer: a task then captures a few words, not
    // copies of the clients.
    let clients = Arc::new((client, ws));
    let mut tasks = tokio::task::JoinSet::new();
    // A shard plays its own indices, each at its place in the single-machine timetable.
    let (first, step) = options
        .load
        .shard
        .map_or((0, 1), |s| (u64::from(s.index), u64::from(s.count)));
    for index in (first..schedule.count()).step_by(step as usize) {
        let due = start + schedule.at(index);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(due) => {}
        }
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        // Reap finished tasks as we go, so the set holds at most `max_in_flight` of them.
        while tasks.try_join_next().is_some() {}
        let clients = clients.clone();
        let options = options.clone();
        let outcomes = outcomes.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let (client, ws) = &*clients;
            let mut channel = Channel::Pooled {
                client,
                http2: options.load.http2,
            };
            let times = Times {
                run_start: start,
                scheduled: due,
                started: Instant::now(),
            };
            // On the heap: the task stays a few words, so spawning it and finishing it do not
            // copy a request's whole state machine about (kilobytes, several times per request).
            let outcome = Box::pin(play(&mut channel, ws, &options, index, times, &stop)).await;
            // Free the slot before the send: a slow recorder must not look like a slow server.
            drop(slot);
            let _ = outcomes.send(outcome).await;
        });
    }
    join_all(tasks).await
}

/// The longest latency a request of this load can have: every attempt timing out, every retry
/// waiting its longest (backoff with jitter, or a capped `Retry-After`), and, in an open loop, the
/// whole timetable spent waiting for a slot. Capped at the longest duration a scenario can name;
/// the latency histograms are sized with it, so nothing a run measures is clamped.
pub fn longest_latency(options: &LoadOptions) -> Duration {
    use crate::spec::duration::MAX_DURATION;
    let load = &options.load;
    let policy = &load.retry;
    let cap = |d: Duration| policy.max_backoff.map_or(d, |m| d.min(m));
    let mut total = load
        .timeout
        .saturating_mul(policy.max.saturating_add(1).max(1));
    // The longest a server's `Retry-After` can make any retry wait, as `retry_wait` caps it.
    let retry_after = retry_wait(policy, options.seed, 0, 1, Some(MAX_RETRY_AFTER));
    for retry in 1..=policy.max.min(64) {
        let backoff = cap(backoff(policy.backoff, retry)).saturating_add(policy.jitter);
        total = total.saturating_add(backoff.max(retry_after));
    }
    if let Profile::Open { schedule, .. } = &load.profile {
        if let Some(last) = schedule.count().checked_sub(1) {
            total = total.saturating_add(schedule.at(last));
        }
    }
    total.min(MAX_DURATION)
}

/// When a request was meant to start and when it did (the same instant in a closed loop).
#[derive(Clone, Copy)]
struct Times {
    run_start: Instant,
    scheduled: Instant,
    started: Instant,
}

/// Plays request `index`: picks its target, sends attempts until one is not retryable or the
/// retries run out, or `stop` cuts it short (then its last attempt, or the request itself when it
/// was waiting to retry, ends as [`ErrorKind::Cancelled`]).
async fn play<D: Dial>(
    channel: &mut Channel<'_, D>,
    ws: &Connector<D>,
    options: &LoadOptions,
    index: u64,
    times: Times,
    stop: &CancellationToken,
) -> Outcome {
    let Times {
        run_start,
        scheduled,
        started,
    } = times;
    let load = &options.load;
    let fallback = Target::new(hyper::Method::GET, "/", 1);
    let target = pick_target(options.seed, index, &load.targets).unwrap_or(&fallback);
    let client_trace =
        (load.client_trace || options.calls.is_some()).then(|| seed::trace_id(options.seed, index));
    // Calls a service makes for this request are collected under its ids until it ends.
    let open = options
        .calls
        .as_ref()
        .map(|calls| calls.open(index, client_trace.as_deref().unwrap_or_default()));
    let mut attempts = Vec::new();
    let mut trace_id = client_trace.clone().unwrap_or_default();
    let mut retry_after = None;
    let mut cancelled = false;
    let mut protocol = match (&target.websocket, load.http2) {
        (Some(_), _) => Protocol::Ws,
        (None, true) => Protocol::H2,
        (None, false) => Protocol::Http1,
    };
    for attempt in 0..=load.retry.max {
        if attempt > 0 {
            let wait = retry_wait(&load.retry, options.seed, index, attempt, retry_after);
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    cancelled = true;
                    break;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
        let request_id = seed::request_id(options.seed, index, attempt);
        if let Some(open) = &open {
            open.add_key(&request_id);
        }
        let ids = Ids {
            request_id: &request_id,
            trace_id: client_trace.as_deref(),
            index,
            attempt,
        };
        let sent_at = Instant::now().saturating_duration_since(run_start);
        // Each attempt's exchange on the heap, for the same reason as a request in `open_loop`:
        // inline, its state machine would be copied whole every time the request's moves.
        let mut sent = match &target.websocket {
            Some(messages) => {
                Box::pin(websocket::send(ws, options, target, messages, &ids, stop)).await
            }
            None => Box::pin(send(channel, options, target, &ids, stop)).await,
        };
        sent.attempt.start = sent_at;
        if let Some(p) = sent.protocol {
            protocol = p;
        }
        if sent.attempt.error == Some(ErrorKind::Cancelled) {
            cancelled = true;
            attempts.push(sent.attempt);
            break;
        }
        if client_trace.is_none() {
            if let Some(t) = sent.trace_id {
                trace_id = t;
            }
        }
        retry_after = sent.retry_after;
        let retry = load.retry.on.matches(&sent.attempt);
        attempts.push(sent.attempt);
        if !retry {
            break;
        }
    }
    let last = attempts.last();
    let end = Instant::now();
    // A cancelled request has no final result, whatever its earlier attempts got.
    let (status, error) = if cancelled {
        (None, Some(ErrorKind::Cancelled))
    } else {
        (last.and_then(|a| a.status), last.and_then(|a| a.error))
    };
    Outcome {
        index,
        method: target.method.to_string(),
        path: target.path.clone(),
        status,
        error,
        trace_id,
        start: started.saturating_duration_since(run_start),
        scheduled: scheduled.saturating_duration_since(run_start),
        latency: end.saturating_duration_since(scheduled),
        service: end.saturating_duration_since(started),
        protocol,
        attempts,
        calls: open.map(Open::close).unwrap_or_default(),
    }
}

/// What identifies one attempt on the wire.
struct Ids<'a> {
    request_id: &'a str,
    trace_id: Option<&'a str>,
    index: u64,
    attempt: u32,
}

/// One attempt's result and what its response said about the next one.
struct Sent {
    attempt: Attempt,
    /// The protocol of the response, when one came.
    protocol: Option<Protocol>,
    trace_id: Option<String>,
    retry_after: Option<Duration>,
}

impl Sent {
    /// An attempt under `request_id` that has nothing to show yet.
    fn new(request_id: &str) -> Sent {
        Sent {
            attempt: Attempt {
                request_id: request_id.to_string(),
                status: None,
                error: None,
                faults: Vec::new(),
                fault_kinds: Vec::new(),
                bytes: 0,
                latency: Duration::ZERO,
                start: Duration::ZERO,
                websocket: None,
            },
            protocol: None,
            trace_id: None,
            retry_after: None,
        }
    }
}

async fn send<D: Dial>(
    channel: &mut Channel<'_, D>,
    options: &LoadOptions,
    target: &Target,
    ids: &Ids<'_>,
    stop: &CancellationToken,
) -> Sent {
    let mut sent = Sent::new(ids.request_id);
    let uri = match join(&options.base, &target.path) {
        Ok(uri) => uri,
        Err(_) => {
            sent.attempt.error = Some(ErrorKind::Protocol);
            return sent;
        }
    };
    let request = request_head(options, target, ids, uri, Full::new(target.body.clone()));
    let started = Instant::now();
    // The fault names arrive with the head: keep them when the body then fails or times out (a
    // truncated or throttled body), so the attempt still says which rules fired.
    let mut head_faults = (Vec::new(), Vec::new());
    let mut head_protocol = None;
    let exchange = async {
        // On the heap: a worker's own connection may have to dial and shake hands first, and
        // that state machine is large.
        let response = Box::pin(channel.send(request)).await?;
        let (parts, body) = response.into_parts();
        head_protocol = Some(Protocol::of(parts.version));
        head_faults = (
            wire::fault_names(&parts.headers),
            wire::fault_kinds(&parts.headers),
        );
        let body = body.collect().await.map_err(|e| classify(&e))?;
        Ok::<_, ErrorKind>((parts, body.to_bytes().len() as u64))
    };
    let result = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        result = tokio::time::timeout(options.load.timeout, exchange) => Some(result),
    };
    (sent.attempt.faults, sent.attempt.fault_kinds) = head_faults;
    sent.protocol = head_protocol;
    let Some(result) = result else {
        sent.attempt.error = Some(ErrorKind::Cancelled);
        channel.discard();
        sent.attempt.latency = started.elapsed();
        return sent;
    };
    match result {
        Ok(Ok((parts, bytes))) => {
            sent.attempt.status = Some(parts.status.as_u16());
            sent.attempt.bytes = bytes;
            sent.trace_id = parts
                .headers
                .get(X_TRACE_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            sent.retry_after = parts
                .headers
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        }
        Ok(Err(kind)) => sent.attempt.error = Some(kind),
        Err(_) => sent.attempt.error = Some(ErrorKind::Timeout),
    }
    if sent.attempt.error.is_some() {
        // A failed or abandoned exchange leaves its connection in an unknown state.
        channel.discard();
    }
    sent.attempt.latency = started.elapsed();
    sent
}

/// The head of attempt `ids` of `target`: its method, its URI, the target's headers and the ids
/// the proxy keys its decisions on (HTTP requests and WebSocket upgrades alike).
/// Headers are appended in this order (the target's own after the index and attempt), as they go
/// on the wire.
fn request_head<B>(
    options: &LoadOptions,
    target: &Target,
    ids: &Ids<'_>,
    uri: Uri,
    body: B,
) -> Request<B> {
    let mut request = Request::new(body);
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.append(wire::INDEX, HeaderValue::from(ids.index));
    headers.append(wire::ATTEMPT, HeaderValue::from(ids.attempt));
    for (name, value) in &target.headers {
        headers.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(ids.request_id) {
        headers.append(X_REQUEST_ID, v);
    }
    if let Some(trace) = ids.trace_id {
        if let Ok(v) = HeaderValue::from_str(trace) {
            headers.append(X_TRACE_ID, v);
        }
        // The W3C form too, so a service that propagates only `traceparent` stays attributable:
        // `00-<trace>-<parent span>-01`.
        let mut traceparent = String::with_capacity(trace.len() + 23);
        traceparent.push_str("00-");
        traceparent.push_str(trace);
        traceparent.push('-');
        seed::push_hex(
            &mut traceparent,
            &seed::attempt_span(options.seed, ids.index, ids.attempt),
        );
        traceparent.push_str("-01");
        if let Ok(v) = HeaderValue::from_str(&traceparent) {
            headers.append(TRACEPARENT, v);
        }
    }
    request
}

/// `base` (scheme + authority) joined with a path and query.
pub fn join(base: &Uri, path_and_query: &str) -> Result<Uri, hyper::http::Error> {
    let mut parts = hyper::http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(path_and_query.parse()?);
    Ok(Uri::from_parts(parts)?)
}

fn classify_client(e: &hyper_util::client::legacy::Error) -> ErrorKind {
    if e.is_connect() {
        return ErrorKind::Connect;
    }
    classify_head(e)
}

/// Sorts the error of an exchange that got no response head: as [`classify`] does, except that a
/// connection that ended cleanly with nothing (hyper's "connection closed before message
/// completed") and an HTTP/2 stream reset with NO_ERROR before its head are
/// [`ErrorKind::Empty`], not a reset: an empty response. Not for body errors: a body cut short
/// by a clean close stays a reset.
fn classify_head(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return ErrorKind::Empty;
            }
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_reset() && h2.reason() == Some(h2::Reason::NO_ERROR) {
                return ErrorKind::Empty;
            }
        }
        cause = err.source();
    }
    classify(e)
}

/// Sorts a transport error into the kinds the recorder reports, by walking its causes.
fn classify(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return ErrorKind::Reset;
            }
            if h.is_timeout() {
                return ErrorKind::Timeout;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionRefused => ErrorKind::Connect,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    ErrorKind::Reset
                }
                K::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Protocol,
            };
        }
        cause = err.source();
    }
    ErrorKind::Protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_their_weights_and_the_seed() {
        let t = |path: &str, weight| Target::new(hyper::Method::GET, path, weight);
        let targets = vec![t("/a", 3), t("/b", 1)];
        let picks: Vec<&str> = (0..4000)
            .filter_map(|i| pick_target(5, i, &targets))
            .map(|t| t.path.as_str())
            .collect();
        let a = picks.iter().filter(|p| **p == "/a").count();
        assert!((2800..=3200).contains(&a), "{a} of 4000 for weight 3/4");
        let again: Vec<&str> = (0..4000)
            .filter_map(|i| pick_target(5, i, &targets))
            .map(|t| t.path.as_str())
            .collect();
        assert_eq!(picks, again);
    }

    #[test]
    fn joins_paths_with_queries() {
        let base: Uri = "http://127.0.0.1:8080".parse().unwrap_or_default();
        let uri = join(&base, "/api/resource?x=1")
            .map(|u| u.to_string())
            .unwrap_or_default();
        assert_eq!(uri, "http://127.0.0.1:8080/api/resource?x=1");
    }
}
