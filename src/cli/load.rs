//! `traceforge load`: the load generator on its own, against any HTTP or HTTPS URL (or a
//! WebSocket echo at a `ws://` or `wss://` one), with the classic flags.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;

use super::{EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::load::LoadOptions;
use traceforge::load::plan::Profile;
use traceforge::record::{Format, OpenFiles};
use traceforge::runner::{self, RunOptions};
use traceforge::spec::check::{Checker, Problem, Seg};
use traceforge::spec::duration::{DurationSpec, parse_duration};
use traceforge::spec::{LoadSpec, TargetSpec, WebSocketSpec};

/// Requests sent when neither `--n` nor `--duration` says how many; a file's default too.
const DEFAULT_REQUESTS: u64 = 100;

/// Arguments of `traceforge load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The URL to load, such as http://127.0.0.1:8080/api/resource (or https://...). A ws:// or
    /// wss:// URL makes each request a WebSocket connection that sends --ws-messages messages and
    /// expects each echoed back.
    #[arg(long)]
    pub url: String,
    /// Speak HTTP/2: with prior knowledge to an http:// URL (h2c), by ALPN to an https:// one.
    #[arg(long)]
    pub http2: bool,
    /// An https:// URL: a PEM file of CA certificates to trust besides the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// An https:// URL: accept any certificate, without verification (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
    /// How many logical requests to send (retries not counted). Default 100 unless --duration
    /// says how long to send instead.
    #[arg(long = "n", visible_alias = "requests")]
    pub n: Option<u64>,
    /// At most this many requests in flight (closed loop; with --rate, the in-flight cap).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub concurrency: u32,
    /// Open loop: start this many requests per second on schedule, whatever the server does;
    /// latency counts from each request's scheduled time. Sends --n requests, or rate x --duration.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Send for this long ("30s") instead of --n requests.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Retries after a 5xx, a connection error or a timeout.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Wait before the first retry, in milliseconds; doubles for each further retry.
    #[arg(long, default_value_t = 100)]
    pub retry_backoff_ms: u64,
    /// Per-attempt timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Send X-Trace-Id from the client (derived from the seed and the request index).
    #[arg(long)]
    pub client_trace: bool,
    /// The HTTP method: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE or CONNECT.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Stream every outcome to this file.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Format of the --output file.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Seed for request and trace ids.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A ws:// or wss:// URL: messages sent on each connection, one after another's echo
    /// (default 1).
    #[arg(long, value_name = "N")]
    pub ws_messages: Option<u64>,
    /// A ws:// or wss:// URL: bytes per message, 8 or more (default 32).
    #[arg(long, value_name = "BYTES")]
    pub ws_size: Option<u64>,
    /// A ws:// or wss:// URL: send binary messages instead of text ones.
    #[arg(long)]
    pub ws_binary: bool,
    /// A ws:// or wss:// URL: how long a message waits for its echo before the next one is sent,
    /// in milliseconds (default 1000). --timeout-ms bounds each whole connection.
    #[arg(long, value_name = "MS")]
    pub ws_echo_timeout_ms: Option<u64>,
    /// Threads, 1 to 1024 (default: half the CPUs the process may use, as its affinity mask
    /// says, at least one). A closed loop's workers take turns among per-thread runtimes; an open
    /// loop shares one.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
}

/// Checks the flags and turns them into load options. The flags become a `[load]` table (a
/// [`LoadSpec`]) and go through the scenario file's own compiler, so a value `[load]` refuses is
/// refused here with the same rule; each problem is reported under the flag that set it.
pub fn options(args: &LoadArgs) -> Result<LoadOptions, String> {
    let uri =
        traceforge::spec::url::parse_load_url(&args.url).map_err(|e| format!("--url: {e}"))?;
    let https = matches!(uri.scheme_str(), Some("https" | "wss"));
    let websocket = matches!(uri.scheme_str(), Some("ws" | "wss"));
    if !websocket {
        let given = [
            ("--ws-messages", args.ws_messages.is_some()),
            ("--ws-size", args.ws_size.is_some()),
            ("--ws-binary", args.ws_binary),
            ("--ws-echo-timeout-ms", args.ws_echo_timeout_ms.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            return Err(format!("{flag}: only for a ws:// or wss:// --url"));
        }
    }
    if !https {
        if args.ca.is_some() {
            return Err("--ca: only for an https:// or wss:// --url".into());
        }
        if args.insecure {
            return Err("--insecure: only for an https:// or wss:// --url".into());
        }
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let spec = spec(args, path, websocket)?;
    let mut checker = Checker::default();
    let load = traceforge::load::compile::compile(&mut checker, &spec);
    if !checker.problems.is_empty() {
        // A problem with the whole profile ("sends no request") follows from a bad flag when
        // there is one: name the flag alone.
        let at_flag = |p: &&Problem| p.path.len() > 1;
        let any_at_flag = checker.problems.iter().any(|p| at_flag(&p));
        let messages: Vec<String> = checker
            .problems
            .iter()
            .filter(|p| !any_at_flag || at_flag(p))
            .map(|p| flag_message(p, &spec))
            .collect();
        return Err(messages.join("\nerror: "));
    }
    let tls = if https {
        let trust = traceforge::tls::UpstreamTls {
            ca_file: args.ca.clone(),
            insecure: args.insecure,
        };
        let flag = if args.ca.is_some() { "--ca" } else { "--url" };
        Some(traceforge::load::client_tls(&trust).map_err(|e| format!("{flag}: {e}"))?)
    } else {
        None
    };
    let base = Uri::builder()
        .scheme(if https { "https" } else { "http" })
        .authority(uri.authority().map_or("", |a| a.as_str()))
        .path_and_query("/")
        .build()
        .map_err(|e| format!("--url {}: {e}", traceforge::spec::url::redact(&args.url)))?;
    Ok(LoadOptions {
        base,
        seed: args.seed,
        load,
        tls,
        calls: None,
    })
}

/// The `[load]` table the flags stand for. Only the text of `--duration` and the millisecond
/// flags are read here, with the file's own duration rule; every other check is the compiler's.
fn spec(args: &LoadArgs, path: String, websocket: bool) -> Result<LoadSpec, String> {
    let duration = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| format!("--duration: {e}"))?
        .map(DurationSpec);
    // The same rule as `"<ms>ms"` written in a file: at most 7 days.
    let millis = |flag: &str, ms: u64| {
        parse_duration(&format!("{ms}ms"))
            .map(DurationSpec)
            .map_err(|e| format!("{flag}: {e}"))
    };
    let open = args.rate.is_some();
    let websocket = if websocket {
        Some(WebSocketSpec {
            messages: args.ws_messages.unwrap_or(1),
            size: args.ws_size.unwrap_or(32),
            binary: args.ws_binary,
            echo_timeout: millis(
                "--ws-echo-timeout-ms",
                args.ws_echo_timeout_ms.unwrap_or(1000),
            )?,
        })
    } else {
        None
    };
    Ok(LoadSpec {
        // `--n` has a default of 100; `--duration` ends the load instead when it is given alone.
        requests: match (args.n, duration) {
            (None, Some(_)) => None,
            (n, _) => Some(n.unwrap_or(DEFAULT_REQUESTS)),
        },
        duration,
        // With --rate, --concurrency is the in-flight cap; otherwise the number of workers.
        concurrency: (!open).then_some(args.concurrency),
        max_in_flight: open.then_some(args.concurrency),
        rate: args.rate,
        stages: None,
        retries: Some(args.retries),
        retry_backoff: Some(millis("--retry-backoff-ms", args.retry_backoff_ms)?),
        retry: None,
        timeout: millis("--timeout-ms", args.timeout_ms)?,
        client_trace: args.client_trace,
        http2: args.http2,
        targets: vec![TargetSpec {
            path,
            method: args.method.clone(),
            weight: 1,
            headers: BTreeMap::new(),
            body: None,
            websocket,
        }],
        to: None,
        command: None,
        env: BTreeMap::new(),
        cwd: None,
    })
}

/// The flag behind each `[load]` key the flags set.
const FLAGS: [(&str, &str); 9] = [
    ("requests", "--n"),
    ("duration", "--duration"),
    ("concurrency", "--concurrency"),
    ("max_in_flight", "--concurrency"),
    ("rate", "--rate"),
    ("retries", "--retries"),
    ("retry_backoff", "--retry-backoff-ms"),
    ("timeout", "--timeout-ms"),
    ("client_trace", "--client-trace"),
];

/// A problem the compiler found at a path under `load`, told in terms of the flags: the path
/// becomes the flag that set it, and a key named in the text becomes its flag.
fn flag_message(p: &Problem, spec: &LoadSpec) -> String {
    let keys: Vec<&str> = p
        .path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let flag = match keys.as_slice() {
        ["load", "targets", "method"] => Some("--method".to_string()),
        ["load", "targets", "path"] => Some("--url".to_string()),
        ["load", "targets", "websocket", key] => Some(format!("--ws-{}", key.replace('_', "-")))
            .map(|flag| match flag.as_str() {
                "--ws-echo-timeout" => "--ws-echo-timeout-ms".to_string(),
                _ => flag,
            }),
        ["load", key] => FLAGS
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, flag)| flag.to_string()),
        // The profile as a whole: name the flags that shape it.
        ["load"] => {
            let mut shaping = Vec::new();
            if spec.rate.is_some() {
                shaping.push("--rate");
            }
            if spec.duration.is_some() {
                shaping.push("--duration");
            }
            if shaping.is_empty() {
                shaping.push("--n");
            }
            Some(shaping.join(" x "))
        }
        _ => None,
    };
    // A path no flag sets cannot come from the flags; name it as the file would, just in case.
    let flag = flag.unwrap_or_else(|| keys.join("."));
    let mut message = format!("{flag}: {}", in_flags(&p.message));
    if let Some(help) = &p.help {
        message.push_str(&format!("\n  = help: {}", in_flags(help)));
    }
    message
}

/// `text` with every `` `key` `` of [`FLAGS`] written as its flag.
fn in_flags(text: &str) -> String {
    FLAGS.iter().fold(text.to_string(), |text, (key, flag)| {
        text.replace(&format!("`{key}`"), &format!("`{flag}`"))
    })
}

pub fn load(args: &LoadArgs) -> u8 {
    let load_options = match options(args) {
        Ok(o) => o,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    if args.insecure {
        errln!("warning: TLS certificates are NOT verified (--insecure)");
    }
    // The main runtime is a current-thread one: the load runs inside `block_on`, which also drives
    // the signal watcher, so a signal is seen the moment it arrives. A closed loop's workers (and
    // their connections) take turns among per-core runtimes; an open loop's many short tasks
    // share one connection pool, so they share one runtime's threads too.
    let threads = match load_options.load.profile {
        Profile::Open { .. } => super::Threads::Shared,
        _ => super::Threads::PerCore,
    };
    let runtime = match super::runtime(args.workers, threads) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let open_files = OpenFiles::default();
    let signals = {
        let open_files = open_files.clone();
        super::signal::watch(&runtime, EXIT_RUNTIME, move || {
            errln!("error: a second signal: stopping at once");
            for e in open_files.finish_all() {
                errln!("error: cannot complete the output file: {e}");
            }
        })
    };
    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            errln!("error: cannot watch for signals: {e}");
            return EXIT_RUNTIME;
        }
    };
    let options = RunOptions {
        output: args.output.clone(),
        format: args.format,
        stop: signals.stop.clone(),
        open_files,
        ..RunOptions::new("")
    };
    let planned = load_options.load.profile.fixed_count();
    let played = runtime.block_on(runner::play_load(load_options, &options, |_| {}));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match played {
        Ok((summary, output)) => {
            out!("{}", summary.render_table());
            if let Some((path, n)) = output {
                outln!("outcomes:     {n} written to {}", path.display());
            }
            if let Some(signal) = signals.received() {
                errln!(
                    "stopped by {signal} after {} requests{}",
                    summary.requests,
                    planned.map(|n| format!(" of {n}")).unwrap_or_default()
                );
                return EXIT_RUNTIME;
            }
            if let Some(planned) = planned.filter(|n| summary.requests < *n) {
                errln!(
                    "error: the load played {} of the {planned} requests it planned",
                    summary.requests
                );
                return EXIT_RUNTIME;
            }
            EXIT_OK
        }
        Err(e) => {
            errln!("error: {e}");
            EXIT_RUNTIME
        }
    }
}
