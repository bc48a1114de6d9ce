//! `traceforge init [--template basic|service] NAME`: writes a commented starter scenario that
//! validates as written.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::scenario;

/// Arguments of `traceforge init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The scenario's name; it also names the file and the golden snapshot (letters, digits, `-`,
    /// `_` and `.`, starting with a letter or digit).
    pub name: String,
    /// The project folder to write into (default: the current folder).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// What the starter plays.
    #[arg(long, value_enum, value_name = "TEMPLATE", default_value_t = Template::Basic)]
    pub template: Template,
}

/// The starter scenarios `init` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// The built-in demo upstream behind the fault proxy, with an open loop of load.
    Basic,
    /// Your own service in the loop: TraceForge starts it, puts a fault proxy in front of its
    /// dependency, sends load to it and checks the calls it made (retries per request).
    Service,
}

/// Where `init` writes: `scenarios/NAME.toml` when the folder has `scenarios/`, else `NAME.toml`;
/// with the `#:schema` path that reaches `traceforge.schema.json` at the project root from there.
pub fn target(dir: &Path, name: &str) -> (PathBuf, &'static str) {
    let scenarios = dir.join("scenarios");
    if scenarios.is_dir() {
        (
            scenarios.join(format!("{name}.toml")),
            "../traceforge.schema.json",
        )
    } else {
        (dir.join(format!("{name}.toml")), "traceforge.schema.json")
    }
}

/// The starter scenario's text. Only `{schema}` and `{name}` are filled in: the service template's
/// other placeholders (`{port}`, `{proxies.payments.url}`, `{scenario_dir}`) are the scenario's own.
pub fn template(kind: Template, name: &str, schema: &str) -> String {
    let text = match kind {
        Template::Basic => BASIC,
        Template::Service => SERVICE,
    };
    text.replace("{schema}", schema).replace("{name}", name)
}

const BASIC: &str = r#"#:schema {schema}
# A starter scenario: 20% of /api calls fail with 503 and some are slow; clients retry.
# Play it with `traceforge run <this file>`; the first run writes golden/{name}.snap.new for review
# (`cargo insta review`, or re-run with --accept).
name = "{name}"
description = "Starter: 20% 503s and 50-150ms delays on /api; an open loop of 50 requests/s"
seed = 1                           # every random choice derives from (seed, key)

[upstream]                         # the built-in demo upstream; or url = "http://127.0.0.1:9000"

[[faults]]                         # evaluated in order: delays add up, the first error wins
name = "slow-api"
kind = "delay"
delay = "50ms..150ms"
probability = 0.3
match = { path = "/api/*" }

[[faults]]
name = "api-503"
kind = "error"
status = 503
probability = 0.2
match = { path = "/api/*" }

[load]
rate = 50                          # open loop: 50 requests/s, whatever the server does
duration = "2s"                    # 100 requests; or `requests = 100`
# A closed loop instead: requests = 100, concurrency = 10 (remove `rate` and `duration`).
# A ramp instead: stages = [{ duration = "1s", rate = 50 }, { duration = "1s", rate = 50 }]
timeout = "2s"                     # per attempt
client_trace = true
targets = [
  { path = "/api/resource", weight = 3 },
  { path = "/api/echo", method = "POST", body = { hello = "world" }, weight = 1 },
]

[load.retry]
max = 2                            # retries after the first attempt
backoff = "50ms"                   # doubles per retry
jitter = "10ms"                    # seeded, so the same run after run
on = ["5xx", "connect", "timeout", "reset"]

[expect]
success_rate = 0.95                # after retries
status = { "503" = { max_share = 0.05 } }
latency = { p99 = "< 1s" }         # from each request's intended send time
faults = { api-503 = { min = 1 } } # the fault really fired
delays_honoured = ["slow-api"]     # every delayed attempt took at least 50ms
"#;

const SERVICE: &str = r#"#:schema {schema}
# A starter scenario with your own service in the loop. TraceForge starts the service, puts a
# fault-injecting proxy in front of its dependency (here a mock payments API that fails 20% of
# charges with 503), sends load to the service and records every call it made to the dependency:
# how often it retried, and whether its own callers still got answers.
# Play it with `traceforge run <this file>`; the first run writes golden/{name}.snap.new for review
# (`cargo insta review`, or re-run with --accept).
#
# Deterministic faults need one thing from the service: it must pass on the trace context of the
# request it is serving (the `traceparent` header, or `X-Trace-Id` / `X-Request-Id`) to its own
# calls. The proxy keys its decisions on it; calls without one are decided by arrival order, which
# changes from run to run, and the run warns about them.
name = "{name}"
description = "Starter: my service retries 503s from payments (20% of charges); callers still get answers"
seed = 1                           # every random choice derives from (seed, key)

# The processes TraceForge starts before the load and always stops at the end.
[[services]]
name = "app"
# Replace with how you start your service. Relative paths are relative to where you run
# traceforge; `{scenario_dir}` is this file's folder, e.g. ["python3", "{scenario_dir}/../app.py"].
command = ["python3", "app.py"]
# Read by the service: {port} is a free port picked for each run (listen on 127.0.0.1:{port}),
# {proxies.payments.url} the proxy's base URL, to call instead of the real payments API.
env = { PORT = "{port}", PAYMENTS_URL = "{proxies.payments.url}" }
ready = { http = "/health" }       # ready once GET /health answers 2xx/3xx; or { tcp = true }

# The dependency, behind its own fault-injecting proxy. Here a mock that accepts every charge;
# or upstream = { url = "http://127.0.0.1:9000" } for a real one.
[[proxies]]
name = "payments"
upstream = { routes = [{ path = "/charge", method = "POST", body = '{"ok":true}' }] }

[[proxies.faults]]                 # the proxy's own faults, evaluated in order like [[faults]]
name = "pay-503"
kind = "error"
status = 503
probability = 0.2
match = { path = "/charge" }

[load]
to = "app"                         # the load enters at the service (or at a proxy)
requests = 100
concurrency = 10                   # a closed loop: 10 requests in flight
timeout = "5s"                     # per attempt
client_trace = true                # a seeded traceparent per request, for the service to pass on
targets = [{ path = "/checkout", method = "POST", body = { item = 1 } }]

[expect]
success_rate = 0.95                # what the service's callers see, after its own retries

[expect.proxies.payments]          # the calls the service made to payments
requests = { min = 100 }           # at least one call per request: the service used the proxy
calls_per_request = { max = 3 }    # retry amplification: one try and at most two retries
faults = { pay-503 = { min = 1 } } # the fault really fired
"#;

pub fn init(args: &InitArgs) -> u8 {
    if !scenario::is_usable_name(&args.name) {
        errln!(
            "error: `{}` cannot name a scenario file: use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example flaky-api)",
            args.name
        );
        return EXIT_INVALID;
    }
    let (path, schema) = target(&args.dir, &args.name);
    let text = template(args.template, &args.name, schema);
    // `create_new` refuses to overwrite, atomically: no window between a check and the write.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            errln!(
                "error: {} already exists; pick another name or remove it",
                path.display()
            );
            return EXIT_INVALID;
        }
        Err(e) => {
            errln!("error: cannot create {}: {e}", path.display());
            return EXIT_RUNTIME;
        }
    };
    if let Err(e) = file.write_all(text.as_bytes()) {
        errln!("error: cannot write {}: {e}", path.display());
        return EXIT_RUNTIME;
    }
    outln!("wrote {}", path.display());
    let schema_path = args.dir.join("traceforge.schema.json");
    if !schema_path.exists() {
        outln!(
            "hint: for editor autocomplete, run `traceforge schema > {}`",
            schema_path.display()
        );
    }
    if args.template == Template::Service {
        outln!(
            "then: replace the [[services]] command and env with how your service starts and finds its dependency"
        );
    }
    outln!("next: traceforge run {}", path.display());
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_validates() {
        let text = template(Template::Basic, "starter", "../traceforge.schema.json");
        if let Err(e) = scenario::parse_str("starter.toml", &text, &[]) {
            panic!("{e}");
        }
    }

    #[test]
    fn the_service_template_validates() {
        let text = template(Template::Service, "my-service", "../traceforge.schema.json");
        let parsed = match scenario::parse_str("my-service.toml", &text, &[]) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(parsed.name, "my-service");
        // The scenario's own placeholders are left for the run to fill in.
        assert!(text.contains(r#"PORT = "{port}""#));
        assert!(text.contains(r#"PAYMENTS_URL = "{proxies.payments.url}""#));
    }
}
