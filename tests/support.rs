//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root (where `scenarios/`, `golden/` and `static/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `traceforge` binary Cargo built for these tests.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_traceforge"))
}

/// Every shipped scenario, `scenarios/*.toml`, sorted.
pub fn scenario_files() -> Vec<PathBuf> {
    let dir = root().join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
}

// ---- HTTP helpers for the server tests (upstream, proxy) ----

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every test bounds its waits with this: a hung server fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// `127.0.0.1:0`: the OS picks a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A pooled HTTP/1.1 client, like the ones real users point at the servers.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A finished response: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request and reads the whole response, within [`PATIENCE`].
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|e| panic!("{e}"));
    let exchange = async {
        let response = client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading the body from {url}: {e}"))
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    bounded(exchange).await
}

/// `GET url` with extra headers.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Reply {
    send(client, Method::GET, url, headers, "").await
}

/// Runs `future` or panics after [`PATIENCE`].
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("gave up after {PATIENCE:?}"))
}

/// Writes raw bytes on a fresh connection and reads until the server closes it (or PATIENCE).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    bounded(async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut out = Vec::new();
        // A reset after the answer is fine: what was read is the answer.
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// Polls `condition` until it holds; panics after [`PATIENCE`]. For states with no event to await.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A bare upstream that answers 200 `ok` to everything and counts the requests it sees.
pub async fn counting_upstream() -> (traceforge::server::Listening, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counter = hits.clone();
    let listening = traceforge::server::spawn_tcp(listener, move |stream, shutdown| {
        let counter = counter.clone();
        let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"ok"),
                )))
            }
        });
        traceforge::server::serve_connection(stream, service, shutdown)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (listening, hits)
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the text exposition format line by line, panicking on any line that is not a comment, a
/// blank, or `name{label="value",...} number`. Checks that every sample's family has `# TYPE`.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut typed: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad TYPE line: {line}"
            );
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name.to_string(), parse_labels(body, line))
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in: {line}"
        );
        let family_typed = typed.iter().any(|t| {
            name == *t
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(t.as_str()))
        });
        assert!(family_typed, "sample before its # TYPE line: {line}");
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in: {line}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => panic!("dangling escape in: {line}"),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in: {line}"));
        labels.push((name.to_string(), value));
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

/// The value of the sample `name` whose labels include every pair in `labels` (summed if several match).
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// A scenario that uses every fault kind, matcher and timing field at least once.
pub const EVERY_FAULT_KIND: &str = r#"name = "every-kind"
seed = 7

[proxy]
header_faults = true

[[faults]]
name = "slow"
kind = "delay"
delay = "100ms..500ms"
jitter = "20ms"
match = { path = "/api/*", method = ["GET", "POST"], headers = { "X-User" = "42", "x-canary" = "*" }, query = { debug = "1", id = "*" } }
probability = 0.3

[[faults]]
name = "latency-tail"
kind = "delay"
distribution = "lognormal"
mean = "200ms"
stddev = "50ms"
from = "2s"
until = "5s"

[[faults]]
name = "rate-limited"
kind = "error"
status = 429
body = "slow down"
headers = { "content-type" = "text/plain" }
retry_after = "1.5s"
first = 5
attempts = 1

[[faults]]
kind = "drop"
every = 10
after = 20

[[faults]]
kind = "reset"
from_request = 50
until_request = 60

[[faults]]
kind = "hang"
cap = "30s"
max_active = 2

[[faults]]
kind = "truncate"
after_bytes = 1024

[[faults]]
kind = "throttle"
bytes_per_second = 20480

[[faults]]
kind = "headers"
target = "response"
add = { "x-chaos" = "1" }
set = { "cache-control" = "no-store" }
remove = ["etag"]

[[faults]]
kind = "status"
status = 500
probability = 0.1

[[faults]]
kind = "ws_close"
after_messages = 10
after_time = "5s"
code = 4000
match = { path = "/ws/*" }

[[faults]]
kind = "ws_delay"
delay = "10ms..50ms"

[[faults]]
kind = "ws_drop"
probability = 0.2

[[faults]]
kind = "stream"
after_events = 3
event_delay = "50ms"

[[faults]]
kind = "goaway"
every = 10

[[faults]]
name = "api-quota"
kind = "quota"
limit = 5
window = 20
per_header = "x-api-key"
retry_after = "2s"
probability = { from = 0.5, to = 1.0, over = 100 }
bursts = { on = 10, off = 5 }

[[faults]]
kind = "corrupt"
mode = "json"
every = 20

[[faults]]
kind = "garbage"
size = 64
every = 30

[[faults]]
kind = "empty"
every = 40

[[faults]]
kind = "slow_read"
bytes_per_second = 10240
match = { method = "POST" }

[[faults]]
kind = "slow_close"
delay = "10ms..50ms"
every = 50

[load]
requests = 100
targets = [{ path = "/api/resource?debug=1&id=3" }, { path = "/static/index.html" }]
"#;
// ---- Playing scenarios in-process ----

use traceforge::record::Outcome;
use traceforge::runner::{RunOptions, RunReport};

/// A scenario played in-process: the report and every outcome, read back from the output file.
pub struct Played {
    pub report: RunReport,
    pub outcomes: Vec<Outcome>,
    /// Keeps the scratch folder (golden files) alive while the test looks at it.
    pub scratch: tempfile::TempDir,
}

/// Parses `text` with `overrides` (`KEY=VALUE`) and plays it; golden files go to a scratch folder
/// and are accepted, so the golden comparison never fails the run.
pub async fn play_text(text: &str, overrides: &[&str]) -> Played {
    let overrides: Vec<traceforge::scenario::Override> = overrides
        .iter()
        .map(|o| o.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let scenario = traceforge::scenario::parse_str("test.toml", text, &overrides)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = scratch.path().join("outcomes.jsonl");
    let options = RunOptions {
        output: Some(output.clone()),
        format: traceforge::record::Format::Jsonl,
        ..RunOptions::new(scratch.path().to_path_buf()).accepting()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        traceforge::runner::run(&scenario, &options),
    )
    .await
    .unwrap_or_else(|_| panic!("the scenario did not finish in 60s"))
    .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&output).unwrap_or_else(|e| panic!("{e}"));
    let mut outcomes: Vec<Outcome> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    outcomes.sort_by_key(|o| o.index);
    Played {
        report,
        outcomes,
        scratch,
    }
}

/// What a test server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When its head arrived.
    pub at: std::time::Instant,
}

/// A test server: `answer` turns each request into a response; every request is also recorded.
pub async fn serve<F, Fut>(
    answer: F,
) -> (
    traceforge::server::Listening,
    Arc<std::sync::Mutex<Vec<Seen>>>,
)
where
    F: Fn(Seen) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = seen.clone();
    let listening = traceforge::server::spawn_tcp(listener, move |stream, shutdown| {
        let answer = answer.clone();
        let log = log.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let answer = answer.clone();
            let log = log.clone();
            async move {
                let at = std::time::Instant::now();
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let request = Seen {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    headers: parts.headers,
                    body,
                    at,
                };
                if let Ok(mut log) = log.lock() {
                    log.push(request.clone());
                }
                Ok::<_, std::convert::Infallible>(answer(request).await)
            }
        });
        traceforge::server::serve_connection(stream, service, shutdown)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (listening, seen)
}

/// A response with a status, headers and a text body.
pub fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The header value as text, or "" when absent.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

// ---- Raw servers and server processes, for framing and resource tests ----

/// A bare TCP server that answers every request head (bodies are not expected) with exactly
/// `response`, and keeps the connection open until the peer closes it: an upstream that can send
/// broken framing, or a head and a few bytes and then nothing.
pub async fn raw_upstream(response: &'static [u8]) -> SocketAddr {
    counted_raw_upstream(response, false).await.0
}

/// [`raw_upstream`] that counts the connections and the request heads it gets; with
/// `close_after_each`, it closes each connection after its first response.
pub async fn counted_raw_upstream(
    response: &'static [u8],
    close_after_each: bool,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (counted_connections, counted_requests) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted_connections.fetch_add(1, Ordering::SeqCst);
            let counted_requests = counted_requests.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        counted_requests.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(response).await.is_err() || close_after_each {
                            return;
                        }
                        continue;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, connections, requests)
}

/// Reads from `stream` until the end of a response head, and returns the head and whatever body
/// bytes came with it.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    bounded(async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let body = seen.split_off(end + 4);
                return (String::from_utf8_lossy(&seen).into_owned(), body);
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => panic!("closed before a response head: {seen:?}"),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// `traceforge upstream|proxy` running as a process of its own; killed on drop.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `cmd` (stdout and stderr piped) and reads the `listening on http://...` line.
    pub fn start(mut cmd: std::process::Command) -> ServerProcess {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("the server printed no address: {line:?}");
        };
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        ServerProcess {
            child,
            url: url.to_string(),
            addr,
        }
    }

    /// Sends SIGTERM, waits (bounded) for the exit, and returns everything written to stderr.
    #[cfg(unix)]
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "could not signal {pid}");
        let deadline = std::time::Instant::now() + PATIENCE;
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether curl can run; when it cannot, says that the test is skipped.
pub fn have_curl() -> bool {
    let there = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok();
    if !there {
        println!("skipped: curl is not installed");
    }
    there
}

/// Runs curl with `args` to its end, within [`PATIENCE`].
pub async fn curl(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new("curl").args(args).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("curl did not finish"))
    .unwrap_or_else(|e| panic!("curl: {e}"))
}

#[path = "common/python.rs"]
mod python;
// Not every test binary that includes this file calls it.
#[allow(unused_imports)]
pub use python::python_package;
