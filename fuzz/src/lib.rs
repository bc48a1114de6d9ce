//! The fuzz targets: one function per target, each taking arbitrary bytes and panicking only when
//! it finds a bug. The AFL binaries in `src/bin/` call them; the main crate's
//! `tests/fuzz_regressions.rs` includes this very file and replays every saved input through the
//! same functions, so nothing here may depend on AFL.
//!
//! What counts as a bug: a panic anywhere (parsing, validation, rendering an error, compiling a
//! valid scenario's plans, serving a connection), a server that neither answers nor closes a
//! connection, or a response that is not HTTP.

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use traceforge::fault::{FaultPlan, RequestFacts};
use traceforge::load::Profile;
use traceforge::proxy::{self, Proxy, ProxyOptions};
use traceforge::record::Summary;
use traceforge::scenario::{self, Override, Scenario};
use traceforge::server::Shutdown;
use traceforge::transport::MemoryNetwork;
use traceforge::upstream::{self, Upstream, UpstreamOptions};
use traceforge::{expect, golden, load};

/// A fuzz target: arbitrary bytes in, a panic out when it finds a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary, corpus and regression folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("scenario_bytes", scenario_bytes),
    ("scenario_structured", scenario_structured),
    ("compact", compact),
    ("overrides", overrides),
    ("proxy_http", proxy_http),
    ("upstream_http", upstream_http),
];

/// The shipped scenarios, the starting points of the override target.
const SHIPPED: &[(&str, &str)] = &[
    (
        "flaky-api.toml",
        include_str!("../../scenarios/flaky-api.toml"),
    ),
    (
        "outage-recovery-virtual.toml",
        include_str!("../../scenarios/outage-recovery-virtual.toml"),
    ),
    (
        "outage-recovery.toml",
        include_str!("../../scenarios/outage-recovery.toml"),
    ),
    ("ramp-up.toml", include_str!("../../scenarios/ramp-up.toml")),
    (
        "retry-first-n.toml",
        include_str!("../../scenarios/retry-first-n.toml"),
    ),
    (
        "slow-download.toml",
        include_str!("../../scenarios/slow-download.toml"),
    ),
    (
        "slow-upstream.toml",
        include_str!("../../scenarios/slow-upstream.toml"),
    ),
    (
        "timeout-hang.toml",
        include_str!("../../scenarios/timeout-hang.toml"),
    ),
    (
        "total-outage.toml",
        include_str!("../../scenarios/total-outage.toml"),
    ),
];

// ---- scenario files ----

/// A scenario file as raw bytes: the parser, the validator and the error renderer.
pub fn scenario_bytes(data: &[u8]) {
    // `load` reports invalid UTF-8 itself; past that, the text is what the parser sees.
    let text = String::from_utf8_lossy(data);
    check_scenario("fuzz.toml", &text, &[]);
}

/// A scenario file built from the known keys of every table, each given a value drawn from the
/// values that matter for it (and now and then one of the wrong type), so the fuzzer spends its
/// time in validation and in what runs after it rather than in TOML syntax.
pub fn scenario_structured(data: &[u8]) {
    let text = generate::document(&mut Draw::new(data));
    check_scenario("generated.toml", &text, &[]);
}

/// `--set KEY=VALUE` overrides on a shipped scenario: the first byte picks the scenario, every
/// following line is one `--set` argument.
pub fn overrides(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (origin, text) = SHIPPED[usize::from(pick) % SHIPPED.len()];
    let rest = String::from_utf8_lossy(rest);
    let mut parsed = Vec::new();
    for line in rest.split('\n') {
        match Override::from_str(line) {
            Ok(o) => {
                // What `run DIR --set` prints must read back as the same override.
                let shown = o.to_string();
                assert_eq!(
                    Override::from_str(&shown).as_ref(),
                    Ok(&o),
                    "{shown:?} does not read back"
                );
                parsed.push(o);
            }
            Err(message) => assert!(!message.is_empty()),
        }
    }
    check_scenario(origin, text, &parsed);
}

/// One compact fault string, as a scenario's `faults = [...]` entry and as the
/// `x-traceforge-fault` request header of a proxy with header faults on.
pub fn compact(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(error) = traceforge::spec::compact::parse(text) {
            assert!(!error.to_string().is_empty());
        }
        let file = format!(
            "name = \"compact\"\nfaults = [{}]\n[load]\nrequests = 3\n",
            toml_string(text)
        );
        check_scenario("compact.toml", &file, &[]);
    }
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let plan = FaultPlan::new(1, Vec::new());
    let mut headers = HeaderMap::new();
    headers.insert(traceforge::wire::FAULT, value.clone());
    for path in ["/", "/api", "/api/x"] {
        let facts = RequestFacts {
            headers: &headers,
            fault_header: Some(&value),
            ..RequestFacts::new(&Method::GET, path, "req-1")
        };
        let decision = plan.decide(&facts);
        let _ = decision.total_delay();
        let _ = decision.fired_rules();
    }
}

/// Parses and validates `text` with `overrides`; renders every error; and for a valid scenario
/// builds everything a run builds from it before the first request.
fn check_scenario(origin: &str, text: &str, overrides: &[Override]) {
    if show() {
        eprintln!(
            "{text}\n{}",
            overrides
                .iter()
                .map(|o| format!("--set {o}\n"))
                .collect::<String>()
        );
    }
    match scenario::parse_str(origin, text, overrides) {
        Ok(scenario) => exercise(&scenario),
        Err(e) => {
            let shown = e.to_string();
            // A located error: the CLI prints it after `error: `, so it must not carry one.
            assert!(
                !shown.is_empty() && !shown.starts_with("error: "),
                "{shown}"
            );
        }
    }
}

/// See [`exercise`].
const MAX_RANKED_REQUESTS: u64 = 1_000_000;

/// What a run computes from a valid scenario before and while it plays, short of sending
/// anything: validation promised these cannot fail.
fn exercise(s: &Scenario) {
    let count = s.load.profile.fixed_count();
    // The plan a run builds, whose rank table costs time linear in the request count by design
    // (`FaultPlan::with_targets`); past a million requests the plan ranks by index instead, so
    // one input cannot take seconds. The timetable below still sees the real count.
    let plan = match count {
        Some(n) if n > MAX_RANKED_REQUESTS => FaultPlan::new(s.seed, s.faults.clone()),
        _ => s.fault_plan(),
    };
    let _ = s.load.profile.to_string();
    let _ = s.load.profile.max_in_flight();
    if let Profile::Open { schedule, .. } = &s.load.profile {
        // The first and the last send times: the whole timetable lies between them.
        let _ = schedule.at(0);
        let _ = schedule.at(schedule.count().saturating_sub(1));
    }
    let last = count.unwrap_or(1).saturating_sub(1);
    for index in [0, 1, last / 2, last] {
        let Some(target) = load::pick_target(s.seed, index, &s.load.targets) else {
            continue;
        };
        let path = target.path.split('?').next().unwrap_or("/");
        for attempt in 0..2 {
            let facts = RequestFacts {
                index,
                attempt,
                headers: &HeaderMap::new(),
                ..RequestFacts::new(&target.method, path, "req")
            };
            let _ = plan.decide(&facts).total_delay();
        }
        for retry in 1..=s.load.retry.max.min(32) {
            let _ = load::retry_wait(&s.load.retry, s.seed, index, retry, None);
        }
        let _ = load::retry_wait(&s.load.retry, s.seed, index, 1, Some(Duration::MAX));
    }
    let _ = expect::check(&s.expect, &Summary::default());
    let body = golden::BodyBuilder::for_scenario(s).finish(s, &Summary::default());
    let _ = golden::to_file(s, &body);
}

/// With `TRACEFORGE_FUZZ_SHOW` set, targets print the scenario text or the response they
/// checked, for triage.
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("TRACEFORGE_FUZZ_SHOW").is_some())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---- the servers ----

/// Arbitrary bytes sent to the fault-injecting proxy (with every fault kind and header faults
/// on), in front of the demo upstream, over in-memory pipes on the virtual clock.
pub fn proxy_http(data: &[u8]) {
    serve_bytes(Server::Proxy, data);
}

/// Arbitrary bytes sent to the demo upstream over an in-memory pipe on the virtual clock.
pub fn upstream_http(data: &[u8]) {
    serve_bytes(Server::Upstream, data);
}

#[derive(Clone, Copy)]
enum Server {
    Proxy,
    Upstream,
}

/// At most this much input is sent: more only makes an execution slower.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Response bytes past this many are read and dropped.
const KEPT_RESPONSE_BYTES: usize = 64 * 1024;
/// How long the client keeps its side open after sending, so complete requests get their full
/// response before the end of its stream cuts incomplete ones short.
const SEND_THEN_WAIT: Duration = Duration::from_secs(120);
/// Longer than any wait a scenario or a fault header can ask for (durations stop at 7 days):
/// a connection silent for this long on the virtual clock is hung.
const SILENCE_IS_A_HANG: Duration = Duration::from_secs(10 * 24 * 3600);

/// The proxy's scenario: one rule of each kind, each on a path of its own so inputs can choose
/// it, and header faults on.
const PROXY_SCENARIO: &str = r#"
name = "fuzz-proxy"
seed = 7

[upstream]
routes = [
  { path = "/api/slow", latency = "250ms", body = "slow" },
  { path = "/api/json", method = ["GET", "POST"], status = 201, body = '{"ok":true}', headers = { "content-type" = "application/json" } },
  { path = "/api/big", body = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
]

[proxy]
header_faults = true
upstream_timeout = "5s"
add_response_headers = { "x-proxy" = "fuzz" }

[[faults]]
name = "slow"
kind = "delay"
delay = "10ms..50ms"
jitter = "5ms"
probability = 0.5
match = { path = "/delay/**" }

[[faults]]
name = "normal"
kind = "delay"
distribution = "lognormal"
mean = "20ms"
stddev = "5ms"
match = { path = "/api/**", headers = { "x-slow" = "*" } }

[[faults]]
name = "limited"
kind = "error"
status = 429
body = "slow down"
retry_after = "1s"
headers = { "content-type" = "text/plain" }
match = { path = "/error/**" }

[[faults]]
name = "dropped"
kind = "drop"
match = { path = "/drop/**", method = ["GET", "DELETE"] }

[[faults]]
name = "reset"
kind = "reset"
match = { path = "/reset/**" }

[[faults]]
name = "hang"
kind = "hang"
cap = "30s"
max_active = 2
match = { path = "/hang/**" }

[[faults]]
name = "cut"
kind = "truncate"
after_bytes = 10
match = { path = "/api/big", query = { cut = "*" } }

[[faults]]
name = "paced"
kind = "throttle"
bytes_per_second = 64
match = { path = "/api/big", query = { slow = "1" } }

[[faults]]
name = "request-headers"
kind = "headers"
target = "request"
set = { "x-set" = "1" }
remove = ["x-remove"]
match = { path = "/api/json" }

[[faults]]
name = "response-headers"
kind = "headers"
target = "response"
add = { "x-chaos" = "1" }
every = 2
match = { path = "/api/**" }

[[faults]]
name = "teapot"
kind = "status"
status = 418
first = 3
attempts = 1
match = { path = "/api/slow" }
"#;

fn proxy_scenario() -> Option<&'static Scenario> {
    static SCENARIO: OnceLock<Option<Scenario>> = OnceLock::new();
    SCENARIO
        .get_or_init(|| scenario::parse_str("fuzz-proxy.toml", PROXY_SCENARIO, &[]).ok())
        .as_ref()
}

/// Serves one connection of `server` with `data` as everything the client sends, on a fresh
/// paused-clock runtime (so nothing outlives the input), and checks what comes back.
fn serve_bytes(server: Server, data: &[u8]) {
    let Some(scenario) = proxy_scenario() else {
        panic!("the proxy's fuzz scenario is invalid");
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    else {
        return;
    };
    let data = &data[..data.len().min(MAX_REQUEST_BYTES)];
    let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let response = runtime.block_on(async {
        let network = MemoryNetwork::new();
        let demo = Arc::new(Upstream::new(UpstreamOptions {
            routes: scenario.upstream.routes.clone(),
            static_dir: None,
            seed: scenario.seed,
            ..UpstreamOptions::default()
        }));
        let upstream_tasks = tasks.clone();
        let served = demo.clone();
        network.listen("upstream.fuzz:80", move |io| {
            let task = tokio::spawn(upstream::serve_connection(
                io,
                served.clone(),
                Shutdown::never(),
            ));
            if let Ok(mut tasks) = upstream_tasks.lock() {
                tasks.push(task);
            }
        });
        let (client, server_end) = tokio::io::duplex(64 * 1024);
        let task = match server {
            Server::Upstream => tokio::spawn(upstream::serve_connection(
                server_end,
                demo,
                Shutdown::never(),
            )),
            Server::Proxy => {
                let options = ProxyOptions {
                    upstream: Uri::from_static("http://upstream.fuzz"),
                    plan: Arc::new(scenario.fault_plan()),
                    config: scenario.proxy.clone(),
                    calls: None,
                    observer: None,
                };
                let Ok(proxy) = Proxy::with_connector(options, network.connector()) else {
                    panic!("the proxy cannot be built");
                };
                tokio::spawn(proxy::serve_connection(
                    server_end,
                    Arc::new(proxy),
                    Shutdown::never(),
                ))
            }
        };
        if let Ok(mut tasks) = tasks.lock() {
            tasks.push(task);
        }
        exchange(client, data).await
    });
    // A panic in a connection task is caught by tokio; bring it out here.
    let finished: Vec<JoinHandle<()>> = match tasks.lock() {
        Ok(mut tasks) => tasks.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    for task in finished {
        if task.is_finished() {
            if let Err(e) = runtime.block_on(task) {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
    check_response(&response);
}

/// Sends `data`, waits, ends the stream, and reads until the server closes. Panics when the
/// server stays silent for [`SILENCE_IS_A_HANG`] without closing.
async fn exchange(client: DuplexStream, data: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = tokio::io::split(client);
    let data = data.to_vec();
    let send = async move {
        // The server may close before reading everything: that is an answer, not a failure.
        if writer.write_all(&data).await.is_ok() {
            tokio::time::sleep(SEND_THEN_WAIT).await;
            let _ = writer.shutdown().await;
        }
        // Keep the write half alive until the read side is done (dropping it would not close
        // the pipe, but keeps the two halves' lifetimes obvious).
        writer
    };
    let receive = async move {
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match tokio::time::timeout(SILENCE_IS_A_HANG, reader.read(&mut buf)).await {
                Err(_) => panic!(
                    "hang: the server neither answered nor closed for {SILENCE_IS_A_HANG:?} (kept {} response bytes)",
                    kept.len()
                ),
                Ok(Ok(0)) | Ok(Err(_)) => return kept,
                Ok(Ok(n)) => {
                    let room = KEPT_RESPONSE_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    };
    let send = tokio::spawn(send);
    let kept = receive.await;
    send.abort();
    kept
}

/// Whatever the server sent must be HTTP/1: a status line first.
fn check_response(response: &[u8]) {
    if show() {
        eprintln!("{}", String::from_utf8_lossy(response));
    }
    if response.is_empty() {
        return;
    }
    let head = &response[..response.len().min(12)];
    let ok = head.starts_with(b"HTTP/1.1 ") || head.starts_with(b"HTTP/1.0 ");
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    assert!(
        ok && status.is_some_and(|s| (100..=599).contains(&s)),
        "not an HTTP response: {:?}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
}

// ---- structure-aware scenario generation ----

/// Draws choices from the fuzzer's bytes; past the end every draw is 0, so any input is a
/// complete document.
pub struct Draw<'a> {
    data: &'a [u8],
}

impl<'a> Draw<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Draw { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n` at most 256 for an even spread; 0 for `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::from(self.byte()) % n
    }

    fn chance(&mut self, in_256: u8) -> bool {
        self.byte() < in_256
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = (v << 8) | u64::from(self.byte());
        }
        v
    }

    /// A short string taken from the input itself.
    fn raw(&mut self) -> String {
        let len = self.below(24);
        let bytes: Vec<u8> = (0..len).map(|_| self.byte()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

mod generate {
    //! A TOML scenario from a [`Draw`]: known tables and keys, values of the right shape most of
    //! the time.

    use super::{Draw, toml_string};
    use std::fmt::Write as _;

    #[derive(Clone, Copy)]
    enum Kind {
        Duration,
        Delay,
        Int,
        Float,
        Probability,
        Bool,
        Name,
        Path,
        Method,
        Methods,
        Status,
        Text,
        Headers,
        HeaderNames,
        Url,
        Fault,
        Distribution,
        HeaderTarget,
        Clock,
        Match,
        Routes,
        Targets,
        Stages,
        RetryOn,
        Latency,
        StatusCounts,
        FaultCounts,
        Range,
        ExpectTargets,
        Body,
    }

    const DURATIONS: &[&str] = &[
        "0s",
        "1ns",
        "1us",
        "1ms",
        "5ms",
        "100ms",
        "250ms",
        "1.5s",
        "2s",
        "30s",
        "2m",
        "1h",
        "2h",
        "1d",
        "7d",
        "8d",
        "-1s",
        "1e-300s",
        "1e300s",
        "NaNs",
        "infs",
        "1",
        "",
        "s",
        "1 s",
        "0.0000001ms",
        "18446744073709551615s",
        "1h30m",
        "1.5",
        "100MS",
    ];
    const DELAYS: &[&str] = &[
        "100ms..500ms",
        "500ms..100ms",
        "0s..0s",
        "1ms..7d",
        "..1s",
        "1s..",
        "1s...2s",
        "1s-2s",
        "0ms..1e300s",
    ];
    const INTS: &[&str] = &[
        "0",
        "1",
        "2",
        "3",
        "5",
        "10",
        "100",
        "1000",
        "20000",
        "-1",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "-9223372036854775808",
        "1_000_000",
        "0x10",
    ];
    const FLOATS: &[&str] = &[
        "0.0",
        "0.5",
        "1.0",
        "1.5",
        "-0.0",
        "-1.0",
        "1e-300",
        "5e-324",
        "1e300",
        "1.7976931348623157e308",
        "nan",
        "inf",
        "-inf",
        "0.999999999999",
        "100.0",
        "1e9",
        "3",
        "0.1",
    ];
    const NAMES: &[&str] = &[
        "a",
        "api-503",
        "slow-api",
        "header",
        "x",
        "",
        "-bad",
        "a b",
        "é",
        "a.b",
        "network",
        "cold-start",
    ];
    const PATHS: &[&str] = &[
        "/",
        "/api",
        "/api/*",
        "/api/**",
        "/static/index.html",
        "/api/resource?x=1",
        "api",
        "",
        "/[",
        "/{a,b}",
        "/**/x",
        "/a?b",
        "//",
        "/%zz",
        "/\u{7f}",
        "/api/echo",
        "/\\",
    ];
    const METHODS: &[&str] = &[
        "GET", "POST", "PUT", "DELETE", "get", "", "CONNECT", "G ET", "PATCH", "X",
    ];
    const STATUSES: &[&str] = &[
        "100", "199", "200", "204", "304", "404", "429", "500", "503", "599", "600", "0", "99999",
    ];
    const TEXTS: &[&str] = &["", "x", "warming up", "a\nb", "\u{0}", "{\"ok\":true}", "é"];
    const HEADER_NAMES: &[&str] = &[
        "x-chaos",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "host",
        "X-User",
        "",
        "bad name",
        "x\u{0}",
        "x-traceforge-fault",
        "te",
        "upgrade",
        "retry-after",
    ];
    const HEADER_VALUES: &[&str] = &["1", "", "on", "a\nb", "*", "\u{7f}", "text/plain", "5"];
    const URLS: &[&str] = &[
        "http://127.0.0.1:1",
        "http://localhost:99999",
        "http://user:pw@host",
        "https://example.invalid",
        "ftp://x",
        "http://",
        "",
        "http://[::1]:8080/base",
        "not a url",
    ];
    const FAULT_KINDS: &[&str] = &[
        "delay", "error", "drop", "reset", "hang", "truncate", "throttle", "headers", "status",
        "nope",
    ];
    const RETRY_ON: &[&str] = &[
        "5xx", "4xx", "503", "connect", "timeout", "reset", "protocol", "x", "", "999", "0xx",
    ];
    const COMPACT: &[&str] = &[
        "delay:100ms-500ms:/api",
        "error:503:0.2:/api",
        "drop:0.1",
        "drop",
        "delay:1s:2:/",
        "error:99999",
        "reset",
        "delay:-1s",
        "error:503:0.5:/a:b",
    ];

    const FAULT_KEYS: &[(&str, Kind)] = &[
        ("name", Kind::Name),
        ("kind", Kind::Fault),
        ("delay", Kind::Delay),
        ("jitter", Kind::Duration),
        ("distribution", Kind::Distribution),
        ("mean", Kind::Duration),
        ("stddev", Kind::Duration),
        ("status", Kind::Status),
        ("body", Kind::Text),
        ("headers", Kind::Headers),
        ("retry_after", Kind::Duration),
        ("probability", Kind::Probability),
        ("match", Kind::Match),
        ("first", Kind::Int),
        ("attempts", Kind::Int),
        ("every", Kind::Int),
        ("after", Kind::Int),
        ("from_request", Kind::Int),
        ("until_request", Kind::Int),
        ("from", Kind::Duration),
        ("until", Kind::Duration),
        ("cap", Kind::Duration),
        ("max_active", Kind::Int),
        ("after_bytes", Kind::Int),
        ("bytes_per_second", Kind::Int),
        ("target", Kind::HeaderTarget),
        ("add", Kind::Headers),
        ("set", Kind::Headers),
        ("remove", Kind::HeaderNames),
    ];
    const LOAD_KEYS: &[(&str, Kind)] = &[
        ("requests", Kind::Int),
        ("concurrency", Kind::Int),
        ("rate", Kind::Float),
        ("duration", Kind::Duration),
        ("stages", Kind::Stages),
        ("retries", Kind::Int),
        ("retry_backoff", Kind::Duration),
        ("timeout", Kind::Duration),
        ("client_trace", Kind::Bool),
        ("targets", Kind::Targets),
        ("max_in_flight", Kind::Int),
    ];
    const RETRY_KEYS: &[(&str, Kind)] = &[
        ("max", Kind::Int),
        ("backoff", Kind::Duration),
        ("max_backoff", Kind::Duration),
        ("jitter", Kind::Duration),
        ("on", Kind::RetryOn),
    ];
    const EXPECT_KEYS: &[(&str, Kind)] = &[
        ("success_rate", Kind::Probability),
        ("latency", Kind::Latency),
        ("status", Kind::StatusCounts),
        ("faults", Kind::FaultCounts),
        ("delays_honoured", Kind::HeaderNames),
        ("retries", Kind::Range),
        ("late", Kind::Range),
        ("targets", Kind::ExpectTargets),
    ];
    const PROXY_KEYS: &[(&str, Kind)] = &[
        ("add_response_headers", Kind::Headers),
        ("upstream_timeout", Kind::Duration),
        ("header_faults", Kind::Bool),
    ];
    const UPSTREAM_KEYS: &[(&str, Kind)] = &[("url", Kind::Url), ("routes", Kind::Routes)];
    const ROUTE_KEYS: &[(&str, Kind)] = &[
        ("path", Kind::Path),
        ("method", Kind::Methods),
        ("status", Kind::Status),
        ("body", Kind::Text),
        ("headers", Kind::Headers),
        ("latency", Kind::Duration),
    ];
    const TARGET_KEYS: &[(&str, Kind)] = &[
        ("path", Kind::Path),
        ("method", Kind::Method),
        ("weight", Kind::Int),
        ("headers", Kind::Headers),
        ("body", Kind::Body),
    ];
    const MATCH_KEYS: &[(&str, Kind)] = &[
        ("path", Kind::Path),
        ("method", Kind::Methods),
        ("headers", Kind::Headers),
        ("query", Kind::Headers),
    ];
    const STAGE_KEYS: &[(&str, Kind)] = &[
        ("duration", Kind::Duration),
        ("rate", Kind::Float),
        ("concurrency", Kind::Int),
    ];
    const EXPECT_TARGET_KEYS: &[(&str, Kind)] = &[
        ("path", Kind::Path),
        ("success_rate", Kind::Probability),
        ("latency", Kind::Latency),
        ("status", Kind::StatusCounts),
    ];
    const COUNT_KEYS: &[(&str, Kind)] = &[
        ("min_count", Kind::Int),
        ("max_count", Kind::Int),
        ("min_share", Kind::Probability),
        ("max_share", Kind::Probability),
    ];
    const ALL_KINDS: &[Kind] = &[
        Kind::Duration,
        Kind::Delay,
        Kind::Int,
        Kind::Float,
        Kind::Bool,
        Kind::Name,
        Kind::Path,
        Kind::Methods,
        Kind::Headers,
        Kind::Range,
    ];

    /// Nested arrays and tables stop here, so a document stays small.
    const MAX_DEPTH: u8 = 3;

    pub fn document(d: &mut Draw<'_>) -> String {
        let mut out = String::new();
        if d.chance(230) {
            let _ = writeln!(out, "name = {}", toml_string(&name(d)));
        }
        if d.chance(40) {
            let _ = writeln!(out, "description = {}", toml_string(&d.raw()));
        }
        if d.chance(160) {
            let seed = if d.chance(128) {
                d.pick(INTS).to_string()
            } else {
                (d.u64() >> 1).to_string()
            };
            let _ = writeln!(out, "seed = {seed}");
        }
        if d.chance(40) {
            let _ = writeln!(out, "faults = [{}]", compact_list(d));
        }
        if d.chance(30) {
            table(d, &mut out, "run", &[("clock", Kind::Clock)], 0);
        }
        if d.chance(100) {
            table(d, &mut out, "upstream", UPSTREAM_KEYS, 0);
        }
        if d.chance(80) {
            table(d, &mut out, "proxy", PROXY_KEYS, 0);
        }
        for _ in 0..d.below(5) {
            table(d, &mut out, "[faults]", FAULT_KEYS, 0);
        }
        if d.chance(200) {
            table(d, &mut out, "load", LOAD_KEYS, 0);
            if d.chance(80) {
                table(d, &mut out, "load.retry", RETRY_KEYS, 0);
            }
        }
        if d.chance(150) {
            table(d, &mut out, "expect", EXPECT_KEYS, 0);
        }
        out
    }

    fn name(d: &mut Draw<'_>) -> String {
        if d.chance(200) {
            d.pick(NAMES).to_string()
        } else {
            d.raw()
        }
    }

    /// A `[header]` (or `[[header]]` when `header` is `[name]`) with some of `keys`.
    fn table(
        d: &mut Draw<'_>,
        out: &mut String,
        header: &str,
        keys: &[(&'static str, Kind)],
        depth: u8,
    ) {
        let _ = writeln!(out, "[{header}]");
        for (key, kind) in chosen(d, keys) {
            let _ = writeln!(out, "{key} = {}", value(d, kind, depth + 1));
        }
    }

    /// A few of `keys`, each at most once, in the order drawn; now and then an unknown key.
    fn chosen(d: &mut Draw<'_>, keys: &[(&'static str, Kind)]) -> Vec<(&'static str, Kind)> {
        let mut seen = vec![false; keys.len()];
        let mut picked = Vec::new();
        for _ in 0..d.below(keys.len().min(8) + 1) {
            let i = d.below(keys.len());
            if !seen[i] {
                seen[i] = true;
                picked.push(keys[i]);
            }
        }
        if d.chance(6) {
            picked.push(("latncy", Kind::Duration));
        }
        picked
    }

    fn inline(d: &mut Draw<'_>, keys: &[(&'static str, Kind)], depth: u8) -> String {
        let parts: Vec<String> = chosen(d, keys)
            .into_iter()
            .map(|(k, kind)| format!("{k} = {}", value(d, kind, depth + 1)))
            .collect();
        format!("{{ {} }}", parts.join(", "))
    }

    fn array(d: &mut Draw<'_>, depth: u8, mut item: impl FnMut(&mut Draw<'_>) -> String) -> String {
        if depth > MAX_DEPTH {
            return "[]".into();
        }
        let items: Vec<String> = (0..d.below(4)).map(|_| item(d)).collect();
        format!("[{}]", items.join(", "))
    }

    fn compact_list(d: &mut Draw<'_>) -> String {
        let items: Vec<String> = (0..d.below(3) + 1)
            .map(|_| {
                if d.chance(200) {
                    toml_string(d.pick(COMPACT))
                } else {
                    toml_string(&d.raw())
                }
            })
            .collect();
        items.join(", ")
    }

    fn map(d: &mut Draw<'_>, keys: &[&str], values: &[&str]) -> String {
        let parts: Vec<String> = (0..d.below(3))
            .map(|_| {
                let k = if d.chance(220) {
                    d.pick(keys).to_string()
                } else {
                    d.raw()
                };
                let v = if d.chance(220) {
                    d.pick(values).to_string()
                } else {
                    d.raw()
                };
                format!("{} = {}", toml_string(&k), toml_string(&v))
            })
            .collect();
        format!("{{ {} }}", parts.join(", "))
    }

    fn value(d: &mut Draw<'_>, kind: Kind, depth: u8) -> String {
        // Now and then a value of another shape: the errors for wrong types are worth fuzzing too.
        let kind = if d.chance(12) {
            d.pick(ALL_KINDS)
        } else {
            kind
        };
        match kind {
            Kind::Duration => {
                let text = match d.below(4) {
                    0 => format!(
                        "{}{}",
                        d.pick(FLOATS),
                        d.pick(&["ms", "s", "m", "h", "d", "us", "ns", ""])
                    ),
                    _ => d.pick(DURATIONS).to_string(),
                };
                toml_string(&text)
            }
            Kind::Delay => {
                if d.chance(128) {
                    toml_string(d.pick(DELAYS))
                } else {
                    let (a, b) = (d.pick(DURATIONS), d.pick(DURATIONS));
                    toml_string(&format!("{a}..{b}"))
                }
            }
            Kind::Int => match d.below(3) {
                0 => (d.u64() >> d.below(64)).to_string(),
                _ => d.pick(INTS).to_string(),
            },
            Kind::Float => d.pick(FLOATS).to_string(),
            Kind::Probability => d
                .pick(&[
                    "0", "0.0", "0.25", "0.5", "1", "1.0", "1.01", "-0.1", "nan", "2",
                ])
                .to_string(),
            Kind::Bool => d.pick(&["true", "false"]).to_string(),
            Kind::Name => toml_string(&name(d)),
            Kind::Path => toml_string(d.pick(PATHS)),
            Kind::Method => toml_string(d.pick(METHODS)),
            Kind::Methods => {
                if d.chance(128) {
                    toml_string(d.pick(METHODS))
                } else {
                    array(d, depth, |d| toml_string(d.pick(METHODS)))
                }
            }
            Kind::Status => d.pick(STATUSES).to_string(),
            Kind::Text => toml_string(d.pick(TEXTS)),
            Kind::Headers => map(d, HEADER_NAMES, HEADER_VALUES),
            Kind::HeaderNames => array(d, depth, |d| toml_string(d.pick(HEADER_NAMES))),
            Kind::Url => toml_string(d.pick(URLS)),
            Kind::Fault => toml_string(d.pick(FAULT_KINDS)),
            Kind::Distribution => toml_string(d.pick(&["normal", "lognormal", "uniform", ""])),
            Kind::HeaderTarget => toml_string(d.pick(&["request", "response", "both"])),
            Kind::Clock => toml_string(d.pick(&["real", "virtual", "fast"])),
            Kind::Match => inline(d, MATCH_KEYS, depth),
            Kind::Routes => array(d, depth, |d| inline(d, ROUTE_KEYS, depth + 1)),
            Kind::Targets => array(d, depth, |d| inline(d, TARGET_KEYS, depth + 1)),
            Kind::Stages => array(d, depth, |d| inline(d, STAGE_KEYS, depth + 1)),
            Kind::ExpectTargets => array(d, depth, |d| inline(d, EXPECT_TARGET_KEYS, depth + 1)),
            Kind::RetryOn => array(d, depth, |d| toml_string(d.pick(RETRY_ON))),
            Kind::Latency => {
                let parts: Vec<String> = (0..d.below(3))
                    .map(|_| {
                        let q = d.pick(&[
                            "p50", "p90", "p99", "p999", "max", "min", "mean", "p100", "p0",
                        ]);
                        let op = d.pick(&["< ", "<= ", "> ", "", "<"]);
                        format!(
                            "{q} = {}",
                            toml_string(&format!("{op}{}", d.pick(DURATIONS)))
                        )
                    })
                    .collect();
                format!("{{ {} }}", parts.join(", "))
            }
            Kind::StatusCounts => {
                let parts: Vec<String> = (0..d.below(3))
                    .map(|_| {
                        let key = d.pick(&["503", "5xx", "200", "2xx", "x", "999"]);
                        format!(
                            "{} = {}",
                            toml_string(key),
                            inline(d, COUNT_KEYS, depth + 1)
                        )
                    })
                    .collect();
                format!("{{ {} }}", parts.join(", "))
            }
            Kind::FaultCounts => {
                let parts: Vec<String> = (0..d.below(3))
                    .map(|_| {
                        format!(
                            "{} = {}",
                            toml_string(&name(d)),
                            value(d, Kind::Range, depth + 1)
                        )
                    })
                    .collect();
                format!("{{ {} }}", parts.join(", "))
            }
            Kind::Range => {
                if d.chance(64) {
                    d.pick(INTS).to_string()
                } else {
                    inline(d, &[("min", Kind::Int), ("max", Kind::Int)], depth)
                }
            }
            Kind::Body => match d.below(3) {
                0 => toml_string(d.pick(TEXTS)),
                1 => "{ order = 42, items = [\"a\", \"b\"] }".to_string(),
                _ => d.pick(INTS).to_string(),
            },
        }
    }
}
