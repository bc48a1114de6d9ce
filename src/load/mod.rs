//! The load generator: a closed loop of `requests` with at most `concurrency` in flight, targets
//! picked by weight from a seeded per-request stream, per-attempt timeouts, and retries with
//! doubling backoff. Every request id derives from `(seed, index, attempt)`, so a run is the same
//! run at any concurrency. Outcomes go to a channel as they finish; the caller records them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::record::{Attempt, ErrorKind, Outcome};
use crate::scenario::LoadConfig;
use crate::seed;

/// Header names shared by the load generator, the proxy and the upstream.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// Set by the proxy: the fault rules that fired for this request, in order, comma-separated.
pub const X_TRACEFORGE_FAULT: HeaderName = HeaderName::from_static("x-traceforge-fault");
/// Sent by the load generator: the logical request's 0-based index, so the proxy's counting
/// rules (`first`, `every`, request windows) do not depend on arrival order.
pub const X_TRACEFORGE_INDEX: HeaderName = HeaderName::from_static("x-traceforge-index");
/// Sent by the load generator: the 0-based attempt of the logical request.
pub const X_TRACEFORGE_ATTEMPT: HeaderName = HeaderName::from_static("x-traceforge-attempt");

/// What to play and where.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Scheme and authority the targets are sent to, such as `http://127.0.0.1:8080`.
    pub base: Uri,
    pub seed: u64,
    pub load: LoadConfig,
}

/// The HTTP client the load generator uses: hyper's pooled client over any connector.
pub type HttpClient<C> = Client<C, Full<Bytes>>;

/// A pooled client over TCP with Nagle off (small requests must not wait for ACKs).
pub fn tcp_client(concurrency: u32) -> HttpClient<HttpConnector> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency as usize)
        .build(connector)
}

/// Plays the load profile. Outcomes are sent on `outcomes` as requests finish (in completion
/// order; each carries its index). Setting `stop` lets in-flight requests finish and starts no new
/// ones. Returns when every started request has been sent on the channel.
pub async fn run<C>(
    client: HttpClient<C>,
    options: LoadOptions,
    outcomes: mpsc::Sender<Outcome>,
    stop: Arc<AtomicBool>,
) where
    C: Connect + Clone + Send + Sync + 'static,
{
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let options = Arc::new(options);
    let workers = options.load.concurrency.max(1) as u64;
    let workers = workers.min(options.load.requests.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let client = client.clone();
        let options = options.clone();
        let outcomes = outcomes.clone();
        let next = next.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= options.load.requests {
                    return;
                }
                let outcome = play(&client, &options, index, start).await;
                if outcomes.send(outcome).await.is_err() {
                    // The recorder is gone: nobody wants more results.
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Picks request `index`'s target by weight, from the stream keyed `load/target/<index>`. The fault
/// plan uses the same function to count matching requests in index order.
pub use crate::fault::pick_target;

/// The wait before retry number `retry` (1-based): the backoff doubled for each earlier retry.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor)
}

async fn play<C>(
    client: &HttpClient<C>,
    options: &LoadOptions,
    index: u64,
    run_start: Instant,
) -> Outcome
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let load = &options.load;
    let target = pick_target(options.seed, index, &load.targets);
    let (method, path) = match target {
        Some(t) => (t.method.clone(), t.path.clone()),
        None => (hyper::Method::GET, "/".to_string()),
    };
    let client_trace = load
        .client_trace
        .then(|| seed::trace_id(options.seed, index));
    let started = Instant::now();
    let mut attempts = Vec::new();
    let mut trace_id = client_trace.clone().unwrap_or_default();
    for attempt in 0..=load.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(load.retry_backoff, attempt)).await;
        }
        let request_id = seed::request_id(options.seed, index, attempt);
        let ids = Ids {
            request_id: &request_id,
            trace_id: client_trace.as_deref(),
            index,
            attempt,
        };
        let (result, returned_trace) = send(client, options, &method, &path, &ids).await;
        if client_trace.is_none() {
            if let Some(t) = returned_trace {
                trace_id = t;
            }
        }
        let retry = result.is_retryable();
        attempts.push(result);
        if !retry {
            break;
        }
    }
    let last = attempts.last();
    Outcome {
        index,
        method: method.to_string(),
        path,
        status: last.and_then(|a| a.status),
        error: last.and_then(|a| a.error),
        trace_id,
        start: started.saturating_duration_since(run_start),
        latency: started.elapsed(),
        attempts,
    }
}

/// What identifies one attempt on the wire.
struct Ids<'a> {
    request_id: &'a str,
    trace_id: Option<&'a str>,
    index: u64,
    attempt: u32,
}

async fn send<C>(
    client: &HttpClient<C>,
    options: &LoadOptions,
    method: &hyper::Method,
    path: &str,
    ids: &Ids<'_>,
) -> (Attempt, Option<String>)
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut attempt = Attempt {
        request_id: ids.request_id.to_string(),
        status: None,
        error: None,
        faults: Vec::new(),
        bytes: 0,
        latency: Duration::ZERO,
    };
    let uri = match join(&options.base, path) {
        Ok(uri) => uri,
        Err(_) => {
            attempt.error = Some(ErrorKind::Protocol);
            return (attempt, None);
        }
    };
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(X_TRACEFORGE_INDEX, ids.index)
        .header(X_TRACEFORGE_ATTEMPT, ids.attempt);
    if let Ok(v) = HeaderValue::from_str(ids.request_id) {
        builder = builder.header(X_REQUEST_ID, v);
    }
    if let Some(Ok(v)) = ids.trace_id.map(HeaderValue::from_str) {
        builder = builder.header(X_TRACE_ID, v);
    }
    let Ok(request) = builder.body(Full::new(Bytes::new())) else {
        attempt.error = Some(ErrorKind::Protocol);
        return (attempt, None);
    };
    let started = Instant::now();
    // The fault names arrive with the head: keep them when the body then fails or times out (a
    // truncated or throttled body), so the attempt still says which rules fired.
    let mut head_faults = Vec::new();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| classify_client(&e))?;
        let (parts, body) = response.into_parts();
        head_faults = fault_names(&parts.headers);
        let body = body.collect().await.map_err(|e| classify(&e))?;
        Ok::<_, ErrorKind>((parts, body.to_bytes().len() as u64))
    };
    let mut returned_trace = None;
    let result = tokio::time::timeout(options.load.timeout, exchange).await;
    attempt.faults = head_faults;
    match result {
        Ok(Ok((parts, bytes))) => {
            attempt.status = Some(parts.status.as_u16());
            attempt.bytes = bytes;
            returned_trace = parts
                .headers
                .get(X_TRACE_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        Ok(Err(kind)) => attempt.error = Some(kind),
        Err(_) => attempt.error = Some(ErrorKind::Timeout),
    }
    attempt.latency = started.elapsed();
    (attempt, returned_trace)
}

/// The rule names in `x-traceforge-fault`, in firing order.
pub fn fault_names(headers: &hyper::HeaderMap) -> Vec<String> {
    headers
        .get_all(X_TRACEFORGE_FAULT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
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
    use crate::scenario::Target;

    #[test]
    fn backoff_doubles_per_retry() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, 3), Duration::from_millis(400));
        assert_eq!(backoff(b, 64), b.saturating_mul(u32::MAX));
    }

    #[test]
    fn targets_follow_their_weights_and_the_seed() {
        let t = |path: &str, weight| Target {
            method: hyper::Method::GET,
            path: path.into(),
            weight,
        };
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

    #[test]
    fn fault_header_lists_rules_in_order() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            X_TRACEFORGE_FAULT,
            HeaderValue::from_static("slow-api, api-503"),
        );
        assert_eq!(fault_names(&h), vec!["slow-api", "api-503"]);
    }
}
