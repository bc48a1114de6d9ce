//! A checked [`Scenario`] and how one is made: the file text read as a span-preserving document
//! with `--set` overrides applied (`document`), deserialized into the `*Spec` types of
//! [`crate::spec`], then validated (`validate`), which compiles the faults
//! ([`crate::fault::compile`]) and the load ([`crate::load::compile`]). Callers use [`load`] or
//! [`parse_str`]. Errors point at the exact line and column, in the file or in an override.

mod document;
pub mod expectation;
pub mod topology;
mod validate;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};

pub use crate::spec::ScenarioSpec;
pub use crate::spec::error::{Diagnostic, ScenarioError};
pub use document::Override;
pub use expectation::Expectations;
pub use topology::Topology;

use crate::fault::{FaultPlan, FaultRule};
use crate::load::LoadConfig;
use crate::spec;

/// A validated scenario: every value checked, every default filled in.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub upstream: UpstreamConfig,
    pub faults: Vec<FaultRule>,
    pub proxy: ProxyConfig,
    pub load: LoadConfig,
    pub expect: Expectations,
    /// The clock the scenario plays on.
    pub clock: Clock,
    /// Services and named proxies (`[[services]]`, `[[proxies]]`); `None` for the single-proxy
    /// shape (`[upstream]`, `[[faults]]`, `[proxy]`).
    pub topology: Option<Topology>,
    /// The folder of the scenario file (`{scenario_dir}`); `.` for text that came from no file.
    pub dir: std::path::PathBuf,
    /// The effective spec, after overrides; reports and summaries show it.
    pub spec: ScenarioSpec,
}

impl Scenario {
    /// What is not exact when this scenario is played as `shards` shards and merged, one line
    /// each (`validate --shards N` prints them, `run --shard` too); `Err` when it cannot be
    /// sharded at all (its load is a client command, not the built-in generator).
    pub fn shard_caveats(&self, shards: u32) -> Result<Vec<String>, String> {
        use crate::load::{Profile, Until};
        if self.topology.as_ref().is_some_and(|t| t.client.is_some()) {
            return Err(
                "its load is `[load] command`, a client of its own: only the built-in load generator can be sharded".into(),
            );
        }
        let mut caveats = Vec::new();
        match &self.load.profile {
            Profile::Closed {
                until: Until::Duration(d),
                ..
            } => caveats.push(format!(
                "a closed loop for {}: each shard sends requests for that long at its own pace, so the merged request count is not a single machine's (use `requests = N` for an exact merge)",
                crate::spec::duration::format_duration(*d)
            )),
            Profile::ClosedStages { .. } => caveats.push(
                "a closed loop with concurrency stages: each shard ramps its own workers for the stages' time, so the merged request count is not a single machine's".into(),
            ),
            _ => {}
        }
        let rules = self.faults.iter().map(|r| ("", r)).chain(
            self.topology
                .iter()
                .flat_map(|t| &t.proxies)
                .flat_map(|p| p.faults.iter().map(move |r| (p.name.as_str(), r))),
        );
        for (proxy, rule) in rules {
            let at = if proxy.is_empty() {
                String::new()
            } else {
                format!(" (proxy `{proxy}`)")
            };
            if let Some(n) = rule.window.max_active {
                caveats.push(format!(
                    "rule `{}`{at}: `max_active = {n}` counts requests in flight at one proxy, and every shard has its own: {shards} shards admit up to {} at once",
                    rule.name,
                    u64::from(n) * u64::from(shards)
                ));
            }
            if self.clock == Clock::Real
                && (!rule.window.from.is_zero()
                    || rule.window.until.is_some()
                    || rule.window.gates.as_ref().is_some_and(|g| g.on_time_axis()))
            {
                caveats.push(format!(
                    "rule `{}`{at}: its time window counts from each shard's own start; give the shards one `--start-at` so they agree",
                    rule.name
                ));
            }
        }
        if let Some(t) = &self.topology {
            if !t.services.is_empty() {
                caveats.push(format!(
                    "services under test: every shard starts its own {}; state they share outside the run (a database, a cache) sees the calls of every shard",
                    t.services
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(caveats)
    }

    /// SHA-256 of the effective scenario (every value after `--set`), in hex: the shards of one
    /// run share it, and a merge refuses bundles whose digests differ.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(&self.spec).unwrap_or_default();
        ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The fault plan `traceforge run` plays: the scenario's rules and seed, and its load profile
    /// for ranks. A load whose request count is not known in
    /// advance (a closed loop for a duration) ranks by request index among all requests.
    pub fn fault_plan(&self) -> FaultPlan {
        let plan = FaultPlan::new(self.seed, self.faults.clone());
        match self.load.profile.fixed_count() {
            Some(requests) => plan.with_targets(self.load.targets.clone(), requests),
            None => plan,
        }
    }
}

/// Which clock a scenario plays on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Real time over loopback TCP.
    Real,
    /// Virtual time over in-memory pipes: exact latencies, a paused runtime.
    Virtual,
}

/// The demo upstream's extra routes, or an external upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamConfig {
    /// `None`: the built-in demo upstream.
    pub url: Option<Uri>,
    pub routes: Vec<Route>,
    /// How an `https://` `url` is trusted.
    pub tls: crate::tls::UpstreamTls,
    /// Speak HTTP/2 to the upstream (`upstream.http2`).
    pub http2: bool,
}

/// An extra route on the demo upstream.
#[derive(Debug, Clone)]
pub struct Route {
    pub path: String,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub status: StatusCode,
    pub body: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub latency: Duration,
    /// A unary gRPC method: the fixed answer it gives to any call.
    pub grpc: Option<GrpcRoute>,
}

/// The answer of a demo upstream's gRPC route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcRoute {
    /// The response message, already serialized (protobuf bytes); sent when `status` is 0.
    pub response: bytes::Bytes,
    /// The `grpc-status`, 0 (OK) to 16.
    pub status: u8,
    /// The `grpc-message`.
    pub message: Option<String>,
}

/// How the proxy forwards.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub add_response_headers: Vec<(HeaderName, HeaderValue)>,
    /// For the upstream's response head, once the request is sent.
    pub upstream_timeout: Duration,
    /// Between two reads of the upstream's response body (nginx's `proxy_read_timeout`).
    pub upstream_read_timeout: Duration,
    /// For a client's whole request head; also how long an idle keep-alive connection stays open.
    pub client_header_timeout: Duration,
    /// Between two reads of a client's request body (nginx's `client_body_timeout`).
    pub client_body_timeout: Duration,
    /// Honour `x-traceforge-fault` request headers (see `wire::FAULT`).
    pub header_faults: bool,
    /// Pass `x-traceforge-index` and `x-traceforge-attempt` on to the upstream.
    pub forward_traceforge_headers: bool,
    /// How an `https://` upstream is trusted (`upstream.ca_file`, `upstream.insecure`).
    pub upstream_tls: crate::tls::UpstreamTls,
    /// Speak HTTP/2 to the upstream (`upstream.http2`): h2c with prior knowledge to `http://`,
    /// `h2` required by ALPN from `https://`. WebSocket upgrades stay on HTTP/1.1.
    pub upstream_http2: bool,
    /// The request log (`log_requests`, `log_rotation`).
    pub request_log: Option<crate::observe::LogTarget>,
}

impl ProxyConfig {
    pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            add_response_headers: Vec::new(),
            upstream_timeout: Self::DEFAULT_UPSTREAM_TIMEOUT,
            upstream_read_timeout: Self::DEFAULT_UPSTREAM_READ_TIMEOUT,
            client_header_timeout: Self::DEFAULT_CLIENT_HEADER_TIMEOUT,
            client_body_timeout: Self::DEFAULT_CLIENT_BODY_TIMEOUT,
            header_faults: false,
            forward_traceforge_headers: false,
            upstream_tls: crate::tls::UpstreamTls::default(),
            upstream_http2: false,
            request_log: None,
        }
    }
}

/// True when `name` can name a scenario and its golden file: letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, at most 100 characters.
pub fn is_usable_name(name: &str) -> bool {
    spec::check::is_file_name(name)
}

/// Reads and validates a scenario file.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Scenario, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => parse_str(&origin, &text, overrides).map(|mut scenario| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                scenario.dir = dir.to_path_buf();
            }
            scenario
        }),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let text: Arc<str> = String::from_utf8_lossy(e.as_bytes()).into();
            Err(ScenarioError::Invalid(vec![Diagnostic {
                origin,
                // The invalid byte shows as U+FFFD in the lossy text the caret points into.
                span: Some(valid..valid + char::REPLACEMENT_CHARACTER.len_utf8()),
                source: text,
                message: "the file is not UTF-8 text".into(),
                label: "invalid byte here".into(),
                help: Some("scenario files are TOML, which must be UTF-8".into()),
                note: None,
            }]))
        }
    }
}

/// Parses and validates scenario text. `origin` names it in errors (usually the file path).
pub fn parse_str(
    origin: &str,
    text: &str,
    overrides: &[Override],
) -> Result<Scenario, ScenarioError> {
    document::parse(origin, text, overrides)
}
