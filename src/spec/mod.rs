//! The file format, the bottom layer: inert `*Spec` types that serde reads from TOML and schemars
//! turns into `traceforge.schema.json` (doc comments here are what an editor shows on hover), with
//! what reading them needs: durations ([`duration`]), the compact fault grammar ([`compact`]),
//! URLs ([`url`]), located errors and "did you mean" ([`error`]), and the checks every compiler
//! shares ([`check`]). It imports nothing else of the crate. The fault compiler, the load plan and
//! scenario validation (`crate::scenario`) turn these types into checked ones.

pub mod check;
pub mod compact;
pub mod duration;
pub mod error;
pub mod extent;
pub mod schedule;
pub mod url;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

use self::duration::DurationSpec;
use self::extent::Extent;
use self::schedule::{BurstsSpec, DelayField, ProbabilitySpec};

/// A TraceForge chaos scenario: an upstream, the faults the proxy injects in front of it, a seed, a
/// load profile and what the run must show. `traceforge run FILE` plays it and checks it against
/// `golden/<name>.snap`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "TraceForge scenario")]
pub struct ScenarioSpec {
    /// The scenario's name. It names the golden file (`golden/<name>.snap`), so it must be usable as a
    /// file name: letters, digits, `-`, `_` and `.`, starting with a letter or digit.
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: String,

    /// What this scenario shows, in a sentence. Printed in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// The seed every random choice derives from (fault decisions, target choice, ids). The same seed
    /// gives the same outcomes at any concurrency, run after run. Default 0.
    #[serde(default)]
    pub seed: u64,

    /// The server behind the proxy: the built-in demo upstream (the default), or an external one via `url`.
    #[serde(default)]
    pub upstream: UpstreamSpec,

    /// The faults the proxy injects, evaluated in order for every request: delays add up, the first
    /// terminal fault (error, drop, reset, hang) wins, body, header and status faults compose. Each
    /// entry is a table (`[[faults]]`) or a compact string such as `"error:503:0.2:/api"`.
    #[serde(default)]
    pub faults: Vec<FaultEntry>,

    /// How the proxy forwards requests.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// The load profile played through the proxy.
    #[serde(default)]
    pub load: LoadSpec,

    /// What the run must show for `traceforge run` to pass (besides matching the golden snapshot).
    #[serde(default)]
    pub expect: ExpectSpec,

    /// How the scenario is played: on the real clock (the default) or on a virtual one.
    #[serde(default)]
    pub run: RunSpec,

    /// Processes the run starts, waits for, logs and stops: the service under test and the
    /// services it calls (`[[services]]`). With `[[services]]` or `[[proxies]]`, the faults go in
    /// `[[proxies]]` entries instead of `[[faults]]`, `[upstream]` and `[proxy]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,

    /// Named fault proxies (`[[proxies]]`), each in front of one dependency: a mock, a URL or a
    /// service. Point a service at one with `{proxies.NAME.url}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<NamedProxySpec>,

    /// Blocks of the run in which rules are switched on or off (`[[phases]]`): a rule listed in
    /// a phase's `enable` fires only inside the phases that enable it; a rule listed in a phase's
    /// `disable` does not fire inside that phase. Counted in requests (deterministic at any
    /// concurrency) or in time since the start of the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseSpec>,
}

/// One phase: a block of requests or of time, and the rules it switches on or off.
/// Example: `[[phases]]` with `name = "outage"`, `from = 10`, `until = 20`, `enable = ["outage-503"]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// The phase's name, for errors and reports. Default `phase-<position>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// Where the phase starts, included: a request index (`10`) or a time since the start of the
    /// run (`"30s"`). Default 0, the start of the run. On the same axis as `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<extent::Extent>,

    /// Where the phase ends, excluded: a request index (`20`: requests 10 to 19 with
    /// `from = 10`) or a time (`"45s"`). Default: the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<extent::Extent>,

    /// Rules that fire only inside the phases that enable them (off everywhere else). Names of
    /// `[[faults]]` rules, or of the rules of `[[proxies]]` (a name several proxies use applies to
    /// each of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable: Vec<String>,

    /// Rules that do not fire inside this phase, even where another phase enables them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
}

/// How the scenario is played.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// `"real"` (the default): the upstream, the proxy and the load generator talk over loopback
    /// TCP in real time; golden files hold no timing. `"virtual"`: the same code over in-memory
    /// pipes on a paused clock that jumps to the next timer whenever everything waits, so an hour
    /// of simulated traffic plays in seconds, every latency is exact, and golden files include
    /// per-attempt latencies. Virtual time needs the built-in demo upstream.
    #[serde(default)]
    pub clock: Clock,
}

/// Which clock a scenario plays on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// Real time over loopback TCP: catches real socket behaviour, kernel buffers and CPU contention.
    #[default]
    Real,
    /// Virtual time over in-memory pipes: exact, repeatable latencies; hours play in seconds.
    Virtual,
}

/// The upstream the proxy forwards to.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// URL of an external upstream (`http://host:port` or `https://host:port`). Leave it out to
    /// use the built-in demo upstream, which serves `/`, `/static/...`, `/api/resource`,
    /// `/api/echo`, `/api/bytes/<n>` (a body of exactly `n` bytes, for downloads) and `routes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// An `https://` upstream: a PEM file of CA certificates to trust besides the system's roots
    /// (a private CA). Relative paths are relative to where traceforge runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,

    /// An `https://` upstream: accept its certificate without any verification (a self-signed
    /// test server). The run says so in its header. Cannot be combined with `ca_file`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,

    /// Speak HTTP/2 to the upstream: with prior knowledge (h2c) to an `http://` upstream, and
    /// with `h2` required through ALPN from an `https://` one. Default false: HTTP/1.1 to an
    /// `http://` upstream, whichever of HTTP/2 and HTTP/1.1 ALPN picks for an `https://` one
    /// (gRPC calls that came over HTTP/2 go on over HTTP/2 either way). A WebSocket upgrade stays
    /// on HTTP/1.1. Applies to the demo upstream too, which speaks both.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,

    /// Extra routes served by the built-in demo upstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
}

/// An extra route on the demo upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The exact request path this route answers, such as `/api/slow`.
    pub path: String,

    /// The method(s) it answers; any method when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Methods>,

    /// The HTTP status to answer with, 200 to 599 (a 1xx status cannot end a response). Default
    /// 200. A `204` or `304` route has no body.
    #[serde(default = "default_status")]
    #[schemars(range(min = 200, max = 599))]
    pub status: u16,

    /// The response body. Default empty.
    #[serde(default)]
    pub body: String,

    /// Response headers, such as `{ "content-type" = "application/json" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,

    /// How long the upstream waits before answering, such as `"300ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<DurationSpec>,

    /// Answer as a unary gRPC method: `path` is `/package.Service/Method`, and every call gets
    /// this fixed answer. Leave out `status` and `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcRouteSpec>,
}

/// The fixed answer of a demo gRPC method.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcRouteSpec {
    /// The response message as protobuf bytes, in hex (spaces allowed): `"0a0568656c6c6f"` is
    /// field 1 = "hello". Default: the empty message.
    #[serde(default)]
    pub response: String,

    /// The `grpc-status`: 0 (OK, the default) to 16. With another status the call fails with it
    /// and no message is sent.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub status: u8,

    /// The `grpc-message` sent with the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_status() -> u16 {
    200
}

/// One fault rule: a table, or the compact string grammar.
// A scenario holds a handful of these, read once: boxing the table would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum FaultEntry {
    /// `"delay:100ms"`, `"delay:100ms-500ms:/api"`, `"error:503:0.5"`, `"error:500:0.1:/api"`, `"drop:0.1"`:
    /// the text as written, and the table it stands for, parsed once when the file is read.
    Compact { text: String, spec: FaultSpec },
    /// A `[[faults]]` table.
    Table(FaultSpec),
}

impl<'de> Deserialize<'de> for FaultEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FaultEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a fault table or a compact fault string such as \"error:503:0.2:/api\"",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // Parse now, and only now: a malformed string is reported at its own position in
                // the file, and the compiler gets the table.
                let spec = compact::parse(v).map_err(|e| E::custom(e.in_file()))?;
                Ok(FaultEntry::Compact {
                    text: v.to_string(),
                    spec,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                // Delegating keeps the TOML deserializer's positions for errors inside the table.
                FaultSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FaultEntry::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Written back as it was read: a compact fault as its text.
impl Serialize for FaultEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FaultEntry::Compact { text, .. } => serializer.serialize_str(text),
            FaultEntry::Table(spec) => spec.serialize(serializer),
        }
    }
}

impl JsonSchema for FaultEntry {
    fn schema_name() -> Cow<'static, str> {
        "FaultEntry".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let table = generator.subschema_for::<FaultSpec>();
        json_schema!({
            "description": "A fault rule: a table, or a compact string.",
            "anyOf": [
                {
                    "type": "string",
                    "description": "Compact fault: `delay:DURATION[-DURATION][:PROBABILITY][:PATH]`, `error:STATUS[:PROBABILITY][:PATH]` or `drop[:PROBABILITY][:PATH]`. PATH is a prefix (`/api` covers `/api` and `/api/...`).",
                    "pattern": "^(delay|error|drop)(:.*)?$",
                    "examples": ["delay:100ms", "delay:100ms-500ms:/api", "error:503:0.5", "error:500:0.1:/api", "drop:0.1"]
                },
                table
            ]
        })
    }
}

/// A fault rule as a table.
///
/// Rules are evaluated in order for every request. Delays add up; the first terminal fault
/// (`error`, `drop`, `reset`, `hang`, `rst_stream`, `garbage`, `empty`) wins and ends
/// evaluation, and the body, header and status faults that fired before it are dropped (the
/// request is never forwarded, so they would do nothing). Body faults (`truncate`, `throttle`,
/// `corrupt`), `slow_read`, `slow_close`, `headers` and `status` rewrites compose with delays and
/// with each other: of two `truncate`s the smaller `after_bytes` wins, of two `slow_read`s or
/// `throttle`s the lower rate, of two `slow_close`s the longer delay, of several `status`
/// rewrites the last one; several `corrupt`s apply one after another, in order.
///
/// A rule fires when all of these hold: its `match` conditions; its deterministic pattern
/// (`first`, `after`, `every`, `attempts`, `from_request`/`until_request`); its time window
/// (`from`/`until`); the `[[phases]]` that name it; its `bursts` being on; for a `quota`, the
/// request being over quota; its `probability` roll; and its `max_active` limit. A rule with a
/// condition on the upstream's response (`match.response_status`, `match.response_header`) is
/// decided once the upstream has answered, and its steps come after those of the request's rules.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The rule's name in reports, metrics labels, golden files and expectations. Default
    /// `<kind>-<position>`, such as `error-2` for the second rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: Option<String>,

    /// What the fault does.
    pub kind: FaultKind,

    /// For `delay`: how long to hold the request before forwarding it, `"100ms"` or a range
    /// `"100ms..500ms"` (each request draws its own value uniformly), or a ramp
    /// `{ from = "10ms", to = "500ms", over = 1000 }` (a straight line over requests or time, then
    /// `to`). Give either `delay` or `distribution`. For `ws_delay`: how long each message is
    /// held, a value or a range. For `slow_close`: how long the connection stays open after the
    /// response before it is closed, a value or a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayField>,

    /// For `delay`: draw each request's delay from a distribution with `mean` and `stddev`
    /// instead of `delay`. Values below zero are clamped to zero. Example:
    /// `{ kind = "delay", distribution = "lognormal", mean = "200ms", stddev = "50ms" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,

    /// For `delay` with `distribution`: the mean of the delay, such as `"200ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<DurationSpec>,

    /// For `delay` with `distribution`: the standard deviation of the delay, such as `"50ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stddev: Option<DurationSpec>,

    /// For `delay`: add a uniform value between `-jitter` and `+jitter` to each delay (the result
    /// never goes below zero). Example: `jitter = "20ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<DurationSpec>,

    /// For `error`: the status of the synthetic response. For `status`: the status that replaces
    /// the upstream's. 200 to 599: a 1xx status cannot end a response. A `204` or `304` error has
    /// no `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 200, max = 599))]
    pub status: Option<u16>,

    /// For `error`: the body of the synthetic response. Default: a short text naming the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,

    /// For `error`: headers of the synthetic response, such as `{ "content-type" = "application/json" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,

    /// For `error`: send `Retry-After` with this duration in whole seconds, rounded up. Example:
    /// `retry_after = "1.5s"` sends `Retry-After: 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DurationSpec>,

    /// For `error`: answer a gRPC call with this status instead of an HTTP error, as a gRPC server
    /// would: HTTP 200, `content-type: application/grpc`, and `grpc-status` (0 to 16; 14 is
    /// UNAVAILABLE, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED) with no message body. Leave out
    /// `status` and `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub grpc_status: Option<u8>,

    /// For `error` with `grpc_status`: the `grpc-message` the client sees, such as
    /// `"payments is down"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_message: Option<String>,

    /// For `rst_stream`: the HTTP/2 error code of the reset, 0 to 13 (default 2, INTERNAL_ERROR;
    /// 7 is REFUSED_STREAM, which clients may retry; 8 is CANCEL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 13))]
    pub error_code: Option<u32>,

    /// For `hang`: answer 504 after this long instead of never answering. Example: `cap = "30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<DurationSpec>,

    /// For `truncate`: how many bytes of the upstream's response body the client gets before the
    /// connection is closed. 0 sends only the status and headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_bytes: Option<u64>,

    /// For `ws_close`: close the WebSocket once this many messages have passed through the proxy,
    /// counted in both directions (a message and its echo are two). Text and binary messages count;
    /// pings, pongs and dropped messages do not. At least 1. With `after_time`, whichever comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub after_messages: Option<u64>,

    /// For `ws_close`: close the WebSocket this long after the upgrade, such as `"2s"`. With
    /// `after_messages`, whichever comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_time: Option<DurationSpec>,

    /// For `ws_close`: the close code the client gets in the proxy's Close frame. Default 1011
    /// (internal error). 1000 to 1003, 1007 to 1014, or 3000 to 4999: the others cannot be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000, max = 4999))]
    pub code: Option<u16>,

    /// For `throttle`: the rate, in bytes per second, at which the response body is streamed to the
    /// client (per connection). For `slow_read`: the rate at which the proxy reads the client's
    /// request body. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub bytes_per_second: Option<u64>,

    /// For `stream`: cut a server-sent event stream (`text/event-stream`) after this many events:
    /// the client gets them whole, then the connection is closed. At least 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_events: Option<u64>,

    /// For `stream`: hold each server-sent event this long before passing it on, such as `"200ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_delay: Option<DurationSpec>,

    /// For `headers`: whether to change the request sent upstream or the response sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<HeaderTarget>,

    /// For `headers`: headers to append (existing values are kept), such as `{ "x-chaos" = "1" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<BTreeMap<String, String>>,

    /// For `headers`: headers to set, replacing every existing value, such as `{ "cache-control" = "no-store" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, String>>,

    /// For `headers`: names of headers to remove, such as `["etag", "last-modified"]`. Applied
    /// first, then `set`, then `add`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,

    /// For `corrupt`: `"bytes"` (the default) replaces body bytes at random, at `rate`; `"json"`
    /// makes a JSON response body (`application/json` or `+json`, at most 1 MiB) invalid the way a
    /// broken server does: the body cut off inside a string value, or one value of the wrong type
    /// (a string where a number was, a number sent as a string). Other bodies get `"bytes"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CorruptMode>,

    /// For `corrupt` in `"bytes"` mode: the chance that each body byte is replaced, above 0 and at
    /// most 1. Default 0.01 (one byte in a hundred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rate: Option<f64>,

    /// For `garbage`: how many random bytes the client gets instead of a response, 1 to 1048576
    /// (1 MiB). Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub size: Option<u64>,

    /// The chance, from 0 to 1, that a matching request gets this fault. Decided per request from the
    /// seed, the rule and the request id, so arrival order cannot change it. Default 1. A ramp
    /// `{ from = 0.0, to = 0.8, over = "10m" }` goes in a straight line from `from` to `to` over
    /// requests (an integer: by request index) or time since the start (a duration), then stays
    /// at `to`: gradual degradation. The roll is the same either way, so a rising ramp only adds
    /// requests to those that fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<ProbabilitySpec>,

    /// Which requests the rule applies to; every request when left out.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<MatchSpec>,

    /// Fire only for the first N requests that meet `match`, counted by request index (the load
    /// generator's logical request number, so retries of one request count once). Combine with
    /// `attempts = 1` for "fail once, then succeed on retry". At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub first: Option<u64>,

    /// Fire only after the first N requests that meet `match`, counted like `first`. A count, not a
    /// time: a `ws_close` fault closes after a time with `after_time`.
    #[serde(
        default,
        deserialize_with = "request_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub after: Option<u64>,

    /// Fire for every Nth request that meets `match` (the 1st, the N+1th, ...), counted like
    /// `first`. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub every: Option<u64>,

    /// Fire only on the first K attempts of a request (attempts count from 0, so `attempts = 1`
    /// hits the first try and lets the retry through). At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub attempts: Option<u32>,

    /// Fire only for requests whose index is at least this. Deterministic under any clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_request: Option<u64>,

    /// Fire only for requests whose index is below this. Deterministic under any clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_request: Option<u64>,

    /// Fire only for requests arriving at least this long after the start of the run, such as
    /// `"2s"`. On the real clock, which request lands inside a time window depends on timing: check
    /// windows with expectations, not per-request golden lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DurationSpec>,

    /// Fire only for requests arriving less than this long after the start of the run, such as
    /// `"5s"`. Timing-dependent on the real clock, like `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DurationSpec>,

    /// At most N requests under this rule at once (Envoy's `max_active_faults`): while N are
    /// active, further requests pass unharmed. Depends on timing and arrival order. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_active: Option<u32>,

    /// For `quota`: how many requests each `window` lets through; the rest get a 429. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,

    /// For `quota`: the fixed window the `limit` applies to: a number of requests (windows of
    /// request indices `0..N`, `N..2N`, ...: deterministic at any concurrency) or a time such as
    /// `"1s"` (windows of time since the start, counted in arrival order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Extent>,

    /// For `quota`: count separately for each value of this request header, such as
    /// `"x-api-key"` (requests without it share one bucket). Counted in arrival order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_header: Option<String>,

    /// Fire only while "on": `{ on = "30s", off = "2m" }` (fixed: on first, repeating from the
    /// start) or `{ mean_on = 20, mean_off = 80 }` (a seeded two-state Markov chain, starting
    /// on). Integers count requests (by index), strings are times; all on the same axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursts: Option<BurstsSpec>,
}

impl FaultSpec {
    /// A rule of `kind` with every other field left out.
    pub fn new(kind: FaultKind) -> Self {
        FaultSpec {
            name: None,
            kind,
            delay: None,
            distribution: None,
            mean: None,
            stddev: None,
            jitter: None,
            status: None,
            body: None,
            headers: None,
            retry_after: None,
            grpc_status: None,
            grpc_message: None,
            error_code: None,
            cap: None,
            after_bytes: None,
            after_messages: None,
            after_time: None,
            code: None,
            bytes_per_second: None,
            after_events: None,
            event_delay: None,
            target: None,
            add: None,
            set: None,
            remove: None,
            mode: None,
            rate: None,
            size: None,
            probability: None,
            matcher: None,
            first: None,
            after: None,
            every: None,
            attempts: None,
            from_request: None,
            until_request: None,
            from: None,
            until: None,
            max_active: None,
            limit: None,
            window: None,
            per_header: None,
            bursts: None,
        }
    }
}

/// What a fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Hold the request, then forward it. Fixed, a uniform range, or a distribution, plus optional
    /// jitter. Example: `{ kind = "delay", delay = "100ms..500ms", jitter = "20ms" }`.
    Delay,
    /// Answer with a synthetic `status` (optional `body`, `headers`, `retry_after`) without
    /// forwarding. Example: `{ kind = "error", status = 429, retry_after = "2s", body = "slow down" }`.
    Error,
    /// Answer 503 without forwarding, as if the service were gone. Example: `{ kind = "drop", probability = 0.1 }`.
    Drop,
    /// Close the client connection abruptly, with no response. Over HTTP/2 only the request's
    /// stream is reset (RST_STREAM with INTERNAL_ERROR); the connection's other streams go on.
    /// Example: `{ kind = "reset", probability = 0.05 }`.
    Reset,
    /// Accept the request and never answer; with `cap`, answer 504 after that long. Tests client
    /// timeouts. Example: `{ kind = "hang", cap = "30s", first = 1 }`.
    Hang,
    /// Forward, then cut the response body after `after_bytes` bytes and close the connection.
    /// Over HTTP/2 only the request's stream is reset (RST_STREAM with INTERNAL_ERROR) once
    /// those bytes are sent; the connection's other streams go on. Example:
    /// `{ kind = "truncate", after_bytes = 1024 }`.
    Truncate,
    /// Forward, then stream the response body at `bytes_per_second` (a slow download). Example:
    /// `{ kind = "throttle", bytes_per_second = 20480 }`.
    Throttle,
    /// Forward, then act on a server-sent event stream (`text/event-stream`) event by event: cut it
    /// after `after_events` events, or hold each one `event_delay`. Other bodies pass unchanged.
    /// Example: `{ kind = "stream", after_events = 3 }`.
    Stream,
    /// Change request or response headers: `add`, `set`, `remove`. Example:
    /// `{ kind = "headers", target = "response", set = { "cache-control" = "no-store" }, remove = ["etag"] }`.
    Headers,
    /// Forward, then replace the upstream's status with `status`, keeping its body. Example:
    /// `{ kind = "status", status = 500, every = 10 }`.
    Status,
    /// On a WebSocket upgrade: close the stream after `after_messages` messages (both directions)
    /// or `after_time`, with a Close frame carrying `code` (default 1011) to the client, and close
    /// the upstream side. Example: `{ kind = "ws_close", after_messages = 10, code = 1011 }`.
    #[serde(rename = "ws_close")]
    WsClose,
    /// On a WebSocket upgrade: hold each message `delay` (fixed, or a range drawn per message)
    /// before passing it on, in both directions, order kept. Example:
    /// `{ kind = "ws_delay", delay = "50ms..200ms" }`.
    #[serde(rename = "ws_delay")]
    WsDelay,
    /// On a WebSocket upgrade: drop each message, in both directions, with `probability` (here a
    /// per-message chance, drawn from the message's index in its direction). Example:
    /// `{ kind = "ws_drop", probability = 0.1 }`.
    #[serde(rename = "ws_drop")]
    WsDrop,
    /// Answer nothing and reset the request's HTTP/2 stream with `error_code` (an RST_STREAM for
    /// that stream, not a GOAWAY for the connection). Over HTTP/1.1, which has no streams, the
    /// connection is closed. Do not forward. Example: `{ kind = "rst_stream", error_code = 7 }`.
    #[serde(rename = "rst_stream")]
    RstStream,
    /// Forward and answer as usual, then shut the client's connection down gracefully: over
    /// HTTP/2 a GOAWAY (the streams under way finish, new ones are refused, the client opens a
    /// new connection for its next request); over HTTP/1.1 `Connection: close` on the response
    /// and the connection closed after it. Example: `{ kind = "goaway", every = 10 }`.
    #[serde(rename = "goaway")]
    GoAway,
    /// Answer 429 with `Retry-After` (and `RateLimit-*` headers) to the requests over `limit` in
    /// each `window`, without forwarding; optionally per value of the `per_header` header. Example:
    /// `{ kind = "quota", limit = 10, window = 100 }` or `{ kind = "quota", limit = 5, window = "1s", per_header = "x-api-key" }`.
    Quota,
    /// Forward, then corrupt the response body: in `mode = "bytes"` (the default) each byte is
    /// replaced with probability `rate` by a different random byte (length and `Content-Length`
    /// kept); in `mode = "json"` a JSON body is cut off inside a string or gets a value of the
    /// wrong type, with a `Content-Length` that matches. Which bytes, and which change, are drawn
    /// from the seed, the rule and the request id. Example: `{ kind = "corrupt", mode = "json" }`.
    Corrupt,
    /// Answer `size` random bytes (default 1024) that are not HTTP, then close the connection. Do
    /// not forward. Over HTTP/2 the stream gets a `200` head, the random bytes as its body, then a
    /// reset (INTERNAL_ERROR); the connection's other streams go on. Example:
    /// `{ kind = "garbage", size = 64 }`.
    Garbage,
    /// Close the connection with no response at all: a clean close (FIN), not a reset. Do not
    /// forward. Over HTTP/2 the stream is reset with NO_ERROR before any head; the connection's
    /// other streams go on. Example: `{ kind = "empty", every = 10 }`.
    Empty,
    /// Forward, reading the client's request body at no more than `bytes_per_second` (a slow
    /// server: the client's upload is held back); the upstream gets every byte. Example:
    /// `{ kind = "slow_read", bytes_per_second = 10240 }`.
    #[serde(rename = "slow_read")]
    SlowRead,
    /// Forward and answer as usual, then hold the connection open `delay` (fixed, or a range drawn
    /// per request) before closing it: over HTTP/1.1 the response carries `Connection: close` and
    /// the FIN comes only after the delay; over HTTP/2 the stream's end (END_STREAM) is held back
    /// by the delay. Example: `{ kind = "slow_close", delay = "2s" }`.
    #[serde(rename = "slow_close")]
    SlowClose,
}

impl FaultKind {
    pub const ALL: [FaultKind; 21] = [
        FaultKind::Delay,
        FaultKind::Error,
        FaultKind::Drop,
        FaultKind::Reset,
        FaultKind::Hang,
        FaultKind::Truncate,
        FaultKind::Throttle,
        FaultKind::Stream,
        FaultKind::Headers,
        FaultKind::Status,
        FaultKind::WsClose,
        FaultKind::WsDelay,
        FaultKind::WsDrop,
        FaultKind::RstStream,
        FaultKind::GoAway,
        FaultKind::Quota,
        FaultKind::Corrupt,
        FaultKind::Garbage,
        FaultKind::Empty,
        FaultKind::SlowRead,
        FaultKind::SlowClose,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Error => "error",
            FaultKind::Drop => "drop",
            FaultKind::Reset => "reset",
            FaultKind::Hang => "hang",
            FaultKind::Truncate => "truncate",
            FaultKind::Throttle => "throttle",
            FaultKind::Stream => "stream",
            FaultKind::Headers => "headers",
            FaultKind::Status => "status",
            FaultKind::WsClose => "ws_close",
            FaultKind::WsDelay => "ws_delay",
            FaultKind::WsDrop => "ws_drop",
            FaultKind::RstStream => "rst_stream",
            FaultKind::GoAway => "goaway",
            FaultKind::Quota => "quota",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Garbage => "garbage",
            FaultKind::Empty => "empty",
            FaultKind::SlowRead => "slow_read",
            FaultKind::SlowClose => "slow_close",
        }
    }

    /// The kinds that act on a WebSocket's messages after an upgrade, not on the request.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            FaultKind::WsClose | FaultKind::WsDelay | FaultKind::WsDrop
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `after`: a request count. A duration string here is almost always meant for `ws_close`'s
/// `after_time`, so the error says so.
fn request_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a count of requests")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("`after` counts requests; {v} is below zero")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "`after` counts requests (`after = 3`), found \"{v}\"; to close a WebSocket after a time, write `after_time = \"{v}\"`"
            )))
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// The distribution a `delay` fault draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Normal (Gaussian) with `mean` and `stddev`; draws below zero become zero.
    Normal,
    /// Log-normal whose own mean and standard deviation are `mean` and `stddev` (not those of its
    /// logarithm): a long right tail, like real latencies. `mean` must be above zero.
    Lognormal,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Normal => "normal",
            Distribution::Lognormal => "lognormal",
        })
    }
}

/// How a `corrupt` fault breaks a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CorruptMode {
    /// Replace bytes at random, at the rule's `rate`; length kept.
    #[default]
    Bytes,
    /// Make a JSON body invalid: cut off inside a string, or a value of the wrong type.
    Json,
}

impl CorruptMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CorruptMode::Bytes => "bytes",
            CorruptMode::Json => "json",
        }
    }
}

/// Which message a `headers` fault changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeaderTarget {
    /// The request the proxy forwards upstream.
    Request,
    /// The response the proxy returns to the client.
    Response,
}

/// Conditions a request must meet for a rule to apply; all given conditions must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// A glob on the request path (query excluded): `*` matches within one segment, `**` across
    /// segments, `{a,b}` either. Example: `"/api/*"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// The method or methods, such as `"GET"` or `["GET", "POST"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Methods>,

    /// Request headers and their exact values; `"*"` means present with any value. Names are
    /// case-insensitive. Example: `{ "x-user" = "42", "x-canary" = "*" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,

    /// Query parameters and their exact values (after percent-decoding); `"*"` means present with
    /// any value. Names are case-sensitive. Example: `{ "debug" = "1", "id" = "*" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, String>>,

    /// gRPC calls to this service and method, `package.Service/Method`, glob allowed
    /// (`"payments.v1.Payments/*"`): the request path `/package.Service/Method` with a
    /// `content-type` of `application/grpc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,

    /// The upstream's response status: a status (`503`), a class (`"5xx"`) or a list of them
    /// (`[500, 503]`, `[404, "5xx"]`). A rule with a response condition acts after the upstream
    /// answers: it can hold the response (`delay`), replace its status (`status`), cut or pace
    /// its body (`truncate`, `throttle`), change its headers (`headers` with
    /// `target = "response"`), or replace it (`error`, `drop`, `reset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<StatusMatchSpec>,

    /// The upstream's response headers and their exact values; `"*"` means present with any
    /// value. Names are case-insensitive. Makes the rule act after the upstream answers, like
    /// `response_status`. Example: `{ "x-cache" = "miss", "retry-after" = "*" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<BTreeMap<String, String>>,
}

/// A response status condition: one status or class, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusMatchSpec {
    One(StatusItemSpec),
    Many(Vec<StatusItemSpec>),
}

impl StatusMatchSpec {
    /// The items, one or many, in order.
    pub fn items(&self) -> &[StatusItemSpec] {
        match self {
            StatusMatchSpec::One(item) => std::slice::from_ref(item),
            StatusMatchSpec::Many(items) => items,
        }
    }
}

/// A status (`503`) or a class of them (`"5xx"`), as written: the compiler checks the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusItemSpec {
    Code(u64),
    Class(String),
}

impl<'de> Deserialize<'de> for StatusItemSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(StatusVisitor { list: false })
            .and_then(|m| match m {
                StatusMatchSpec::One(item) => Ok(item),
                StatusMatchSpec::Many(_) => Err(serde::de::Error::custom("a list inside a list")),
            })
    }
}

impl<'de> Deserialize<'de> for StatusMatchSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StatusVisitor { list: true })
    }
}

/// Reads a status, a class, or (at the top only) a list of them.
struct StatusVisitor {
    list: bool,
}

impl<'de> serde::de::Visitor<'de> for StatusVisitor {
    type Value = StatusMatchSpec;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.list {
            f.write_str(
                "a status such as 503, a class such as \"5xx\", or a list such as [500, 503]",
            )
        } else {
            f.write_str("a status such as 503 or a class such as \"5xx\"")
        }
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(StatusMatchSpec::One(StatusItemSpec::Code(v)))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(|v| StatusMatchSpec::One(StatusItemSpec::Code(v)))
            .map_err(|_| {
                E::custom(format!(
                    "{v} is not an HTTP status: they go from 100 to 599"
                ))
            })
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StatusMatchSpec::One(StatusItemSpec::Class(v.to_string())))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.list {
            return Err(serde::de::Error::custom(
                "a list inside a list: write one list such as [500, \"5xx\"]",
            ));
        }
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<StatusItemSpec>()? {
            out.push(item);
        }
        Ok(StatusMatchSpec::Many(out))
    }
}

impl JsonSchema for StatusMatchSpec {
    fn schema_name() -> Cow<'static, str> {
        "StatusMatch".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A status (503), a class (\"5xx\"), or a list of them ([500, 503], [404, \"5xx\"]).",
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "enum": ["1xx", "2xx", "3xx", "4xx", "5xx"] },
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "anyOf": [
                            { "type": "integer", "minimum": 100, "maximum": 599 },
                            { "type": "string", "enum": ["1xx", "2xx", "3xx", "4xx", "5xx"] }
                        ]
                    }
                }
            ]
        })
    }
}

/// One HTTP method or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Methods {
    One(String),
    Many(Vec<String>),
}

impl Methods {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Methods::One(m) => vec![m.clone()],
            Methods::Many(ms) => ms.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Methods;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a method such as \"GET\" or a list such as [\"GET\", \"POST\"]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Methods::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(m) = seq.next_element::<String>()? {
                    out.push(m);
                }
                Ok(Methods::Many(out))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Methods {
    fn schema_name() -> Cow<'static, str> {
        "Methods".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An HTTP method (\"GET\") or a list of them ([\"GET\", \"POST\"]).",
            "anyOf": [
                { "type": "string", "examples": ["GET", "POST"] },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        })
    }
}

/// How the proxy forwards.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Headers added to every response the proxy returns, such as `{ "x-chaos" = "on" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_response_headers: BTreeMap<String, String>,

    /// How long the proxy waits for the upstream's response head before answering 504, counted
    /// once the request is sent (a request body still arriving from the client does not count).
    /// Default `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<DurationSpec>,

    /// How long the upstream may leave its response body without sending a byte (the gap between
    /// two reads, like nginx's `proxy_read_timeout`); then the proxy closes the client's
    /// connection, so the client sees a short body. Default `"60s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_read_timeout: Option<DurationSpec>,

    /// How long a client may take to send a request head; also how long an idle keep-alive
    /// connection stays open. Then the connection is closed. Default `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_header_timeout: Option<DurationSpec>,

    /// How long a client may leave its request body without sending a byte (the gap between two
    /// reads, like nginx's `client_body_timeout`); then it gets a 408 and its connection is
    /// closed. Default `"60s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_body_timeout: Option<DurationSpec>,

    /// Let clients ask for a fault on one request with the header `x-traceforge-fault` holding a
    /// compact fault (`error:503`, `delay:200ms`, `drop`). It is evaluated after the scenario's
    /// rules, as a rule named `header`. A malformed value is ignored (and reported). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub header_faults: bool,

    /// Pass the load generator's `x-traceforge-index` and `x-traceforge-attempt` request headers
    /// on to the upstream. The proxy reads them either way (they key its decisions). Default
    /// false: the upstream sees the request as a client without TraceForge would send it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_traceforge_headers: bool,

    /// Write one JSON line per request to this file: time, trace and request ids, method, path,
    /// status or error, the rules that fired with their kinds, latency, and bytes in and out.
    /// Relative to the directory `traceforge` runs in. Written off the request path: when the disk
    /// falls behind, lines are dropped (counted in `traceforge_proxy_log_lines_dropped_total`),
    /// never requests slowed. Proxies given the same file share it; each line names its proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_requests: Option<String>,

    /// When the request log starts a new file: `never` (default: the path as given), `hourly` or
    /// `daily`, which put the date (UTC) before the extension: `requests.2026-11-22.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rotation: Option<LogRotation>,
}

/// When a request log starts a new file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    /// One file, the path given.
    #[default]
    Never,
    /// A file per hour: `requests.2026-11-22-14.jsonl`.
    Hourly,
    /// A file per day: `requests.2026-11-22.jsonl`.
    Daily,
}

impl ProxySpec {
    /// True when no setting differs from its default (an absent `[proxy]` table).
    pub fn is_default(&self) -> bool {
        self.add_response_headers.is_empty()
            && self.upstream_timeout.is_none()
            && self.upstream_read_timeout.is_none()
            && self.client_header_timeout.is_none()
            && self.client_body_timeout.is_none()
            && !self.header_faults
            && !self.forward_traceforge_headers
            && self.log_requests.is_none()
            && self.log_rotation.is_none()
    }
}

/// A process the run starts before the load: the service under test, or one it calls. It runs in
/// its own process group with its output in a log file, and is always stopped at the end
/// (SIGTERM, then SIGKILL after `stop_timeout`), whether the run passes, fails or is interrupted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service's name, used in placeholders (`{services.NAME.url}`), `load.to`, reports and
    /// its log file. Letters, digits, `-`, `_` and `.`, starting with a letter or digit; unique
    /// among services and proxies.
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: String,

    /// The program and its arguments, run without a shell: `["python3", "app.py"]`, or one string
    /// split the way a shell splits words (`"python3 app.py --port {port}"`). Placeholders:
    /// `{port}`, `{services.NAME.url}`, `{proxies.NAME.url}`, `{scenario_dir}`; `{{` and `}}`
    /// are literal braces.
    pub command: CommandSpec,

    /// Environment variables added to TraceForge's own, with the same placeholders as `command`:
    /// `{ PORT = "{port}", PAYMENTS_URL = "{proxies.payments.url}" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// The working directory. Default: the folder `traceforge` runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,

    /// A fixed port the service listens on, instead of a free one picked for each run and given
    /// to it as `{port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,

    /// When the service counts as ready: `{ http = "/health" }` (a 2xx or 3xx answer),
    /// `{ tcp = true }` (its port accepts connections; the default) or `{ log = "listening on" }`
    /// (a line of its output contains the text), with an optional `timeout` (default `"30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadySpec>,

    /// How long the service has to exit after SIGTERM before it gets SIGKILL. Default `"5s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<DurationSpec>,
}

/// When a service counts as ready: exactly one of `http`, `tcp = true` or `log` (none: `tcp`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    /// `GET http://127.0.0.1:{port}<path>` answers 2xx or 3xx, such as `"/health"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,

    /// `true`: the service's port accepts a TCP connection (the default readiness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<bool>,

    /// A line of the service's output (stdout or stderr) contains this text, such as
    /// `"listening on"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub log: Option<String>,

    /// How long to wait for readiness before the run fails. Default `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

/// A command: a list of arguments (the program first), or one string split like a shell would
/// (quotes group words; no variables, globs or pipes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CommandSpec {
    Line(String),
    Args(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CommandSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command such as [\"python3\", \"app.py\"] or \"python3 app.py\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CommandSpec::Line(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    out.push(arg);
                }
                Ok(CommandSpec::Args(out))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for CommandSpec {
    fn schema_name() -> Cow<'static, str> {
        "Command".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The program and its arguments ([\"python3\", \"app.py\"]), or one string split like a shell would (\"python3 app.py\"). Run without a shell.",
            "anyOf": [
                { "type": "string", "minLength": 1, "examples": ["python3 app.py --port {port}"] },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        })
    }
}

/// A named fault proxy: the faults it injects, what it forwards to, and every `[proxy]` setting.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedProxySpec {
    /// The proxy's name, used in `{proxies.NAME.url}`, `load.to`, `[expect.proxies.NAME]` and
    /// reports. Letters, digits, `-`, `_` and `.`, starting with a letter or digit; unique among
    /// services and proxies.
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: String,

    /// What the proxy forwards to: `{ routes = [...] }` (a mock: the demo upstream with these
    /// routes), `{ url = "http://..." }` (a server; placeholders allowed) or
    /// `{ service = "NAME" }` (a `[[services]]` entry). Default: the demo upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<ProxyUpstreamSpec>,

    /// The faults this proxy injects, as in `[[faults]]`: tables (`[[proxies.faults]]`) or
    /// compact strings. Rule names are per proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultEntry>,

    /// As `proxy.add_response_headers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_response_headers: BTreeMap<String, String>,

    /// As `proxy.upstream_timeout`. Default `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<DurationSpec>,

    /// As `proxy.upstream_read_timeout`. Default `"60s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_read_timeout: Option<DurationSpec>,

    /// As `proxy.client_header_timeout`. Default `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_header_timeout: Option<DurationSpec>,

    /// As `proxy.client_body_timeout`. Default `"60s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_body_timeout: Option<DurationSpec>,

    /// As `proxy.header_faults`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub header_faults: bool,

    /// As `proxy.forward_traceforge_headers`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_traceforge_headers: bool,

    /// As `proxy.log_requests`: this proxy's request log (proxies may share one file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_requests: Option<String>,

    /// As `proxy.log_rotation`. Default `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rotation: Option<LogRotation>,

    /// Serve TLS: `{proxies.NAME.url}` becomes `https://127.0.0.1:PORT`. Without `cert_file`
    /// and `key_file`, a throwaway CA and a certificate for `127.0.0.1`, `::1` and `localhost` are
    /// generated for the run, and `{proxies.NAME.ca_file}` is the path of the CA's PEM file.
    /// Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,

    /// With `tls`: the PEM certificate chain to serve (leaf first), with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,

    /// With `tls`: the PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

impl NamedProxySpec {
    /// The `[proxy]` settings of this entry, as the `[proxy]` table would hold them.
    pub fn settings(&self) -> ProxySpec {
        ProxySpec {
            add_response_headers: self.add_response_headers.clone(),
            upstream_timeout: self.upstream_timeout,
            upstream_read_timeout: self.upstream_read_timeout,
            client_header_timeout: self.client_header_timeout,
            client_body_timeout: self.client_body_timeout,
            header_faults: self.header_faults,
            forward_traceforge_headers: self.forward_traceforge_headers,
            log_requests: self.log_requests.clone(),
            log_rotation: self.log_rotation,
        }
    }
}

/// What a named proxy forwards to: at most one of `url`, `routes` and `service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyUpstreamSpec {
    /// A server's URL, such as `"http://127.0.0.1:9000"` or `"https://api.internal"`;
    /// placeholders such as `{services.NAME.url}` are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// As `upstream.ca_file`: a CA to trust for an `https://` `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,

    /// As `upstream.insecure`: no certificate verification for an `https://` `url`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,

    /// As `upstream.http2`: speak HTTP/2 to this upstream (h2c with prior knowledge to an
    /// `http://` one, `h2` by ALPN to an `https://` one), whether a `url`, a mock or a service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,

    /// A mock: the demo upstream serving these routes (and its built-in ones), as
    /// `upstream.routes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RouteSpec>>,

    /// A `[[services]]` entry, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// The load profile. Three shapes, chosen by which keys are present:
///
/// - **Closed loop** (the default): `concurrency` workers, each sending its next request when the
///   previous one finishes, for `requests` requests (default 100) or for a `duration`.
/// - **Open loop**: `rate` requests per second for `duration` or `requests`, started on a fixed
///   schedule whether or not earlier requests have finished. Latency is measured from each
///   request's intended send time, so a stalled server shows up in the percentiles.
/// - **Stages**: a list of `{ duration, rate }` (open loop) or `{ duration, concurrency }` (closed
///   loop) steps, each ramping linearly from the previous stage's value (the first from 0).
///
/// Golden files: a closed loop with `requests` and every open loop have a fixed request count, so
/// the golden body lists every request. A closed loop with `duration` or `concurrency` stages sends
/// as many requests as the server allows; its golden body omits counts and per-request lines, and
/// such a scenario should rely on `[expect]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// How many logical requests to send (retries not counted). Closed loop: default 100 unless
    /// `duration` is set. Open loop: the alternative to `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub requests: Option<u64>,

    /// How long to send requests, such as `"30s"`. Closed loop: workers start no request after it.
    /// Open loop: `floor(rate x duration)` requests are scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationSpec>,

    /// Closed loop: at most this many requests in flight at once. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub concurrency: Option<u32>,

    /// Open loop: requests started per second, whatever the server does, with `duration` or
    /// `requests`. Request `i` is scheduled at `i / rate` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 1_000_000.0))]
    pub rate: Option<f64>,

    /// Steps that ramp linearly from the previous step's value (the first from 0), all `rate` or
    /// all `concurrency`. A step with `duration = "0s"` jumps straight to its value. At least one
    /// step when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub stages: Option<Vec<StageSpec>>,

    /// Open loop: at most this many requests in flight. When the cap is reached the next request
    /// waits for a free slot, starts late and is counted as late; its latency still counts from
    /// its intended send time. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_in_flight: Option<u32>,

    /// How many times a request is retried (on a 5xx, a connection error, a timeout or a reset,
    /// unless `retry.on` says otherwise). Default 0. Also `retry.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 20))]
    pub retries: Option<u32>,

    /// The wait before the first retry; it doubles for each further retry. Default `"100ms"`.
    /// Also `retry.backoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<DurationSpec>,

    /// The retry policy in full: what is retried, backoff cap, seeded jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,

    /// How long one attempt may take before it counts as a timeout. Default `"10s"`.
    #[serde(default = "default_timeout")]
    pub timeout: DurationSpec,

    /// Send a trace id from the client (derived from the seed and the request index, kept across
    /// retries). Without it the proxy assigns one and that is recorded. Default false.
    #[serde(default)]
    pub client_trace: bool,

    /// Speak HTTP/2: with prior knowledge to an `http://` entry (h2c), by ALPN (`h2`) to an
    /// `https://` one, falling back to HTTP/1.1 when the server does not offer it. Each outcome
    /// in the JSON outputs then says `"protocol": "h2"`. Default false: HTTP/1.1.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,

    /// The request mix; each request picks a target by weight. Default: `GET /api/resource`.
    #[serde(default = "default_targets")]
    pub targets: Vec<TargetSpec>,

    /// Where the load enters: the name of a `[[services]]` or `[[proxies]]` entry. Default: the
    /// only proxy, or with no proxies the only service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,

    /// Your own client is the load: a command (argv, or a string split like a shell would) run
    /// once the services are ready, such as `["pytest", "-q", "tests/test_resilience.py"]`. Its
    /// exit status counts. Needs `[[proxies]]`; replaces `to`, `requests`, `duration`, `rate` and
    /// `stages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,

    /// With `command`: environment variables added for it, with placeholders such as
    /// `{ BASE_URL = "{services.checkout.url}" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// With `command`: its working directory. Default: the folder `traceforge` runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            requests: None,
            duration: None,
            concurrency: None,
            rate: None,
            stages: None,
            max_in_flight: None,
            retries: None,
            retry_backoff: None,
            retry: None,
            timeout: default_timeout(),
            client_trace: false,
            http2: false,
            targets: default_targets(),
            to: None,
            command: None,
            env: BTreeMap::new(),
            cwd: None,
        }
    }
}

fn default_timeout() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(10))
}
fn default_targets() -> Vec<TargetSpec> {
    vec![TargetSpec {
        path: "/api/resource".to_string(),
        method: default_method(),
        weight: 1,
        headers: BTreeMap::new(),
        body: None,
        websocket: None,
    }]
}

/// One step of a ramp: `{ duration = "10s", rate = 50 }` or `{ duration = "10s", concurrency = 20 }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// How long the step lasts; `"0s"` jumps to its value at once.
    pub duration: DurationSpec,

    /// The request rate (per second) reached at the end of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1_000_000.0))]
    pub rate: Option<f64>,

    /// The number of closed-loop workers reached at the end of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10_000))]
    pub concurrency: Option<u32>,
}

/// The retry policy. `max` and `backoff` are the long forms of `load.retries` and
/// `load.retry_backoff`; write one form or the other.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// How many times a request is retried. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 20))]
    pub max: Option<u32>,

    /// The wait before the first retry; it doubles for each further retry. Default `"100ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<DurationSpec>,

    /// The longest wait between attempts, doubling and `Retry-After` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<DurationSpec>,

    /// A random extra wait in `[0, jitter]` added to each backoff, drawn from the seed and
    /// `(index, attempt)`, so it is the same run after run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<DurationSpec>,

    /// What is retried: statuses (`503`), classes (`"5xx"`), transport errors (`"connect"`,
    /// `"timeout"`, `"reset"`, `"protocol"`, `"empty"`: closed with no response) and WebSocket
    /// errors (`"ws_closed"`, `"ws_missing_echo"`, `"ws_mismatch"`). Default `["5xx", "connect",
    /// "timeout", "reset", "protocol", "empty"]`. A `Retry-After` header on a retried response
    /// sets the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<RetryOnSpec>>,
}

/// A status (`503`) or a name (`"5xx"`, `"connect"`, `"timeout"`, `"reset"`, `"protocol"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RetryOnSpec {
    Status(u16),
    Name(String),
}

impl<'de> Deserialize<'de> for RetryOnSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RetryOnSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status such as 503, or \"5xx\", \"connect\", \"timeout\", \"reset\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RetryOnSpec::Name(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u16::try_from(v)
                    .map(RetryOnSpec::Status)
                    .map_err(|_| E::custom(format!("{v} is not an HTTP status")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u16::try_from(v)
                    .map(RetryOnSpec::Status)
                    .map_err(|_| E::custom(format!("{v} is not an HTTP status")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for RetryOnSpec {
    fn schema_name() -> Cow<'static, str> {
        "RetryOn".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A status (503), a class (\"5xx\"), a transport error (\"connect\", \"timeout\", \"reset\", \"protocol\", \"empty\") or a WebSocket error (\"ws_closed\", \"ws_missing_echo\", \"ws_mismatch\").",
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "enum": ["1xx", "2xx", "3xx", "4xx", "5xx", "connect", "timeout", "reset", "protocol", "ws_closed", "ws_missing_echo", "ws_mismatch", "empty"] }
            ]
        })
    }
}

/// One entry of the request mix.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The path (and optional query) to request, such as `/api/resource?x=1`.
    pub path: String,

    /// The HTTP method. Default `"GET"`.
    #[serde(default = "default_method")]
    pub method: String,

    /// The relative share of requests that go to this target. Default 1.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub weight: u32,

    /// Request headers sent on every attempt, such as `{ authorization = "Bearer x" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,

    /// The request body: a string sent as is, or a table or array sent as JSON with
    /// `content-type: application/json` (unless `headers` sets a content type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodySpec>,

    /// Make this target a WebSocket: each request opens a connection to `path` (the upgrade is a
    /// `GET` with the request's id headers), sends `messages` one at a time, expects each echoed
    /// back, then closes. Example: `websocket = { messages = 5 }`. The request succeeds when every
    /// message came back; a connection closed early, a lost message or a wrong echo is an error
    /// (`ws_closed`, `ws_missing_echo`, `ws_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketSpec>,
}

/// A WebSocket target: `websocket = { messages = 5, size = 64, binary = true, echo_timeout = "1s" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSpec {
    /// The messages sent on each connection, one after another's echo. Their contents are drawn
    /// from the seed, the request index and the message number. Default 1.
    #[serde(default = "default_ws_messages")]
    #[schemars(range(min = 0, max = 100_000))]
    pub messages: u64,

    /// The size of each message in bytes (each begins with its number, so at least 8).
    /// Default 32.
    #[serde(default = "default_ws_size")]
    #[schemars(range(min = 8, max = 16_777_216))]
    pub size: u64,

    /// Send binary messages instead of text ones. Default false: text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,

    /// How long a message waits for its echo before the next one is sent. A lost message costs
    /// this much; whether it was lost is known from the later echoes and the close, not from this
    /// wait, so keep it well above the round trip (held `ws_delay`s included). The whole
    /// connection is bounded by `load.timeout`. Default `"1s"`.
    #[serde(default = "default_echo_timeout")]
    pub echo_timeout: DurationSpec,
}

fn default_ws_messages() -> u64 {
    1
}
fn default_ws_size() -> u64 {
    32
}
fn default_echo_timeout() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(1))
}

/// A request body: text, or a TOML table/array sent as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BodySpec {
    Text(String),
    Json(serde_json::Value),
}

impl<'de> Deserialize<'de> for BodySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BodySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or a table or array to send as JSON")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BodySpec::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(BodySpec::Json)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(BodySpec::Json)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for BodySpec {
    fn schema_name() -> Cow<'static, str> {
        "Body".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string sent as is, or a table or array sent as JSON (content-type: application/json).",
            "anyOf": [
                { "type": "string" },
                { "type": "object" },
                { "type": "array" }
            ]
        })
    }
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_weight() -> u32 {
    1
}

/// Thresholds the run must meet. Every name here must refer to something in the scenario: a
/// misspelled rule, status or target path is a validation error, never a silent pass.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// The minimum share of requests, from 0 to 1, that must end in a 2xx or 3xx after retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub success_rate: Option<f64>,

    /// Bounds on final results, keyed by a status (`"503"`), a class (`"5xx"`), a transport
    /// error (`"timeout"`, `"connect"`, `"reset"`, `"protocol"`, `"empty"`) or a WebSocket error
    /// (`"ws_closed"`, `"ws_missing_echo"`, `"ws_mismatch"`):
    /// `status = { "503" = { max_share = 0.3 }, "200" = { min_count = 10 } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, CountSpec>,

    /// Latency bounds, measured per logical request from its intended send time (retries and
    /// backoff included), keyed by `p50`, `p90`, `p99`, `"p99.9"` (any `pN`), `mean` or `max`.
    /// A value is `"< 800ms"` (also `<=`, `>`, `>=`) or `{ max = "800ms" }` / `{ min = "100ms" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency: BTreeMap<String, LatencyBoundSpec>,

    /// Bounds on the total number of retries: `retries = { max = 40 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RangeSpec>,

    /// Bounds on requests that started more than 10ms behind schedule (open loop):
    /// `late = { max = 0 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<RangeSpec>,

    /// Bounds on the attempts on which a fault rule fired, keyed by rule name:
    /// `faults = { outage = { min = 1 } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub faults: BTreeMap<String, RangeSpec>,

    /// Delay rules whose delay every affected attempt must show: each attempt on which the rule
    /// fired took at least the rule's delay (for a range, its lower bound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delays_honoured: Vec<String>,

    /// Expectations for the requests of one target path (`[[expect.targets]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetExpectSpec>,

    /// Expectations on the calls one named proxy served, keyed by its name
    /// (`[expect.proxies.payments]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proxies: BTreeMap<String, ProxyExpectSpec>,
}

/// Expectations on the calls a service made through one named proxy.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyExpectSpec {
    /// Bounds on the calls the proxy served in all: `requests = { min = 200 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RangeSpec>,

    /// Bounds on the most calls made through the proxy for one load request (retry
    /// amplification): `calls_per_request = { max = 3 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_request: Option<RangeSpec>,

    /// As `expect.status`, for the calls' final results.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, CountSpec>,

    /// As `expect.faults`, for this proxy's rules: `faults = { pay-503 = { min = 1 } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub faults: BTreeMap<String, RangeSpec>,

    /// As `expect.latency`, for the calls as the proxy measured them (to the response head).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency: BTreeMap<String, LatencyBoundSpec>,
}

/// Expectations on the requests sent to one path of `load.targets`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetExpectSpec {
    /// A path from `load.targets`, such as `"/api/resource"`.
    pub path: String,

    /// As `expect.success_rate`, for this target's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub success_rate: Option<f64>,

    /// As `expect.status`, for this target's requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, CountSpec>,

    /// As `expect.latency`, for this target's requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency: BTreeMap<String, LatencyBoundSpec>,
}

/// Bounds on how many requests ended with a result, as a count or a share (0 to 1) of requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_share: Option<f64>,
}

/// Inclusive bounds on a count: `{ min = 1 }`, `{ max = 40 }`, `{ min = 1, max = 10 }`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// A latency bound: `"< 800ms"` (also `<=`, `>`, `>=`), or a table `{ max = "800ms" }`,
/// `{ min = "100ms" }` (both inclusive).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LatencyBoundSpec {
    Text(String),
    Table {
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<DurationSpec>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<DurationSpec>,
    },
}

/// The table form of a latency bound, read on its own so errors keep their positions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyTable {
    #[serde(default)]
    min: Option<DurationSpec>,
    #[serde(default)]
    max: Option<DurationSpec>,
}

impl<'de> Deserialize<'de> for LatencyBoundSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = LatencyBoundSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bound such as \"< 800ms\", or a table such as { max = \"800ms\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LatencyBoundSpec::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                LatencyTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(
                    |t| LatencyBoundSpec::Table {
                        min: t.min,
                        max: t.max,
                    },
                )
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for LatencyBoundSpec {
    fn schema_name() -> Cow<'static, str> {
        "LatencyBound".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let duration = generator.subschema_for::<DurationSpec>();
        json_schema!({
            "description": "A latency bound: \"< 800ms\" (also <=, >, >=), or { max = \"800ms\" } / { min = \"100ms\" } (inclusive).",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*(<|<=|>|>=)\s*[0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|min|h)\s*$",
                    "examples": ["< 800ms", "<= 1s", "> 100ms"]
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": { "min": duration.clone(), "max": duration },
                    "minProperties": 1
                }
            ]
        })
    }
}
