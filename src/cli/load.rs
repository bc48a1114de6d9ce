//! `traceforge load`: the load generator on its own, against any HTTP URL, with the classic flags.

use std::path::PathBuf;
use std::time::Duration;

use hyper::{Method, Uri};

use super::{EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::load::LoadOptions;
use traceforge::load::{LoadConfig, Profile, RetryPolicy, Schedule, Target, Until};
use traceforge::record::{Format, OpenFiles};
use traceforge::runner::{self, RunOptions};

/// Arguments of `traceforge load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The URL to load, such as http://127.0.0.1:8080/api/resource
    #[arg(long)]
    pub url: String,
    /// How many logical requests to send (retries not counted).
    #[arg(long = "n", visible_alias = "requests", default_value_t = 100)]
    pub n: u64,
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
    /// The HTTP method.
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
    /// Runtime worker threads, 1 to 1024 (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
}

/// Checks the flags and turns them into load options. Every flag is held to the cap of its
/// scenario-file counterpart, so a value `[load]` refuses is refused here too.
pub fn options(args: &LoadArgs) -> Result<LoadOptions, String> {
    use traceforge::load::plan::{
        MAX_CONCURRENCY, MAX_IN_FLIGHT, MAX_RATE, MAX_REQUESTS, MAX_RETRIES, format_number,
    };
    use traceforge::spec::duration::{MAX_DURATION, parse_duration};

    let uri = traceforge::spec::url::parse_http_url(&args.url).map_err(|e| format!("--url: {e}"))?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method {}: not an HTTP method", args.method))?;
    let max_ms = MAX_DURATION.as_millis() as u64;
    let within = |flag: &str, value: u64, min: u64, max: u64, why: &str| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "{flag} {value}: must be between {min} and {max} ({why})"
            ))
        }
    };
    let cap_of = |key: &str| format!("the cap of `{key}` in a scenario file");
    let a_week = "7 days, the longest duration a scenario file may name";
    within("--n", args.n, 1, MAX_REQUESTS, &cap_of("load.requests"))?;
    // With --rate, --concurrency is the in-flight cap (`max_in_flight`); otherwise the workers.
    let (max_concurrency, key) = if args.rate.is_some() {
        (u64::from(MAX_IN_FLIGHT), "load.max_in_flight")
    } else {
        (u64::from(MAX_CONCURRENCY), "load.concurrency")
    };
    within(
        "--concurrency",
        u64::from(args.concurrency),
        1,
        max_concurrency,
        &cap_of(key),
    )?;
    within(
        "--retries",
        u64::from(args.retries),
        0,
        u64::from(MAX_RETRIES),
        &cap_of("load.retries"),
    )?;
    within(
        "--retry-backoff-ms",
        args.retry_backoff_ms,
        0,
        max_ms,
        a_week,
    )?;
    within("--timeout-ms", args.timeout_ms, 1, max_ms, a_week)?;
    let duration = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| format!("--duration: {e}"))?;
    if duration.is_some_and(|d| d.is_zero()) {
        return Err("--duration must be longer than zero".to_string());
    }
    let profile = match args.rate {
        Some(rate) if !(rate > 0.0 && rate <= MAX_RATE) => {
            return Err(format!(
                "--rate {}: must be more than 0 and at most {MAX_RATE}",
                format_number(rate)
            ));
        }
        Some(rate) => {
            let schedule = match duration {
                Some(d) => Schedule::constant_for(rate, d),
                None => Schedule::constant(rate, args.n),
            };
            if !schedule.fits() {
                return Err(format!(
                    "--rate {} --n {}: the requests would take longer than the maximum of 7 days; raise --rate or lower --n",
                    format_number(rate),
                    args.n
                ));
            }
            Profile::Open {
                schedule,
                max_in_flight: args.concurrency,
            }
        }
        None => Profile::Closed {
            concurrency: args.concurrency,
            until: duration.map_or(Until::Requests(args.n), Until::Duration),
        },
    };
    match profile.fixed_count() {
        Some(0) => return Err("--rate x --duration sends no request".to_string()),
        Some(n) if n > MAX_REQUESTS => {
            return Err(format!(
                "--rate x --duration sends {n} requests; at most {MAX_REQUESTS} are allowed"
            ));
        }
        _ => {}
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let base = Uri::builder()
        .scheme("http")
        .authority(uri.authority().map_or("", |a| a.as_str()))
        .path_and_query("/")
        .build()
        .map_err(|e| format!("--url {}: {e}", traceforge::spec::url::redact(&args.url)))?;
    Ok(LoadOptions {
        base,
        seed: args.seed,
        load: LoadConfig {
            retry: RetryPolicy {
                max: args.retries,
                backoff: Duration::from_millis(args.retry_backoff_ms),
                ..RetryPolicy::default()
            },
            timeout: Duration::from_millis(args.timeout_ms),
            client_trace: args.client_trace,
            profile,
            targets: vec![Target::new(method, path, 1)],
        },
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
    // A multi-thread runtime even for one worker: the signal watcher must run while the load does.
    let runtime = match super::runtime(args.workers, true) {
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
