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

[load]
requests = 100
targets = [{ path = "/api/resource?debug=1&id=3" }, { path = "/static/index.html" }]
"#;
