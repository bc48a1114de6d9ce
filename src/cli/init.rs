//! `traceforge init NAME`: writes a commented starter scenario that validates as written.

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

/// The starter scenario's text.
pub fn template(name: &str, schema: &str) -> String {
    TEMPLATE.replace("{schema}", schema).replace("{name}", name)
}

const TEMPLATE: &str = r#"#:schema {schema}
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

pub fn init(args: &InitArgs) -> u8 {
    if !scenario::is_usable_name(&args.name) {
        errln!(
            "error: `{}` cannot name a scenario file: use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example flaky-api)",
            args.name
        );
        return EXIT_INVALID;
    }
    let (path, schema) = target(&args.dir, &args.name);
    let text = template(&args.name, schema);
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
    outln!("next: traceforge run {}", path.display());
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_validates() {
        let text = template("starter", "../traceforge.schema.json");
        if let Err(e) = scenario::parse_str("starter.toml", &text, &[]) {
            panic!("{e}");
        }
    }
}
