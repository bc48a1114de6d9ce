//! `traceforge upstream` and `traceforge proxy`: the two servers on their own, for hands-on work
//! with curl, browsers and real services. Each builds its runtime, prints the bound address on
//! stdout (so `--listen 127.0.0.1:0` works from scripts), and stops cleanly on Ctrl-C or SIGTERM.
//!
//! The proxy also reads the classic environment (and a `.env` file in the working directory):
//! flags win, then the `--scenario` file, then the environment, then the defaults.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};

use super::{EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::fault::live::LiveRules;
use traceforge::fault::{FaultPlan, FaultRule};
use traceforge::observe::Outputs;
use traceforge::proxy::{self, ProxyOptions};
use traceforge::scenario::{self, ProxyConfig, Scenario};
use traceforge::server::{ClientTimeouts, Listening};
use traceforge::spec::FaultSpec;
use traceforge::upstream::{self, UpstreamOptions};

const PROXY_ENV_HELP: &str = "Environment (also read from ./.env; flags and --scenario win):
  UPSTREAM_BASE_URL   the upstream, like --upstream (http://host:port or https://host:port)
  PROXY_DELAY_MS      delay every request by this many milliseconds (a `delay:<N>ms` rule)
  PROXY_DROP_RATE     drop this share of requests, 0 to 1 (a `drop:<P>` rule)
  PROXY_MOD_HEADER    a header added to every response, \"Name: value\"
  RNG_SEED            the seed, like --seed
  RUST_LOG            log filter (default info); logs go to stderr

Exit codes:
  0  stopped by Ctrl-C or SIGTERM
  2  invalid flag, environment variable or scenario
  3  could not start (for example the address is in use)";

const UPSTREAM_HELP: &str =
    "Routes: GET / and /static/... (files from --static-dir, or the built-in page),
GET /api/resource, GET|POST /api/echo, plus the routes of --scenario's [upstream] table.

Exit codes:
  0  stopped by Ctrl-C or SIGTERM
  2  invalid flag or scenario
  3  could not start (for example the address is in use)";

/// Arguments of `traceforge upstream`.
#[derive(Debug, clap::Args)]
#[command(after_help = UPSTREAM_HELP)]
pub struct UpstreamArgs {
    /// Address to listen on, such as 127.0.0.1:8081 or localhost:0; port 0 picks a free port (the
    /// chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Directory served under /static/; when it does not exist, only the built-in page is served.
    #[arg(long, default_value = "static", value_name = "DIR")]
    pub static_dir: PathBuf,
    /// Serve the extra routes (and use the seed) of this scenario file.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Seed for the ids of requests that arrive without them.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Threads serving connections, 1 to 1024 (default: half the CPUs the process may use, as
    /// its affinity mask says, at least one). Each runs a runtime of its own; accepted
    /// connections take turns.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    #[command(flatten)]
    pub client_timeouts: ClientTimeoutArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS on a server's listener.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS. Without --tls-cert and --tls-key, a throwaway CA and a certificate for
    /// 127.0.0.1, ::1 and localhost are generated, and the CA's file is printed
    /// (`ca file: PATH`) for clients to trust (`curl --cacert PATH`).
    #[arg(long)]
    pub tls: bool,
    /// The PEM certificate chain to serve (leaf first); implies --tls, needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where a generated CA's file (ca.pem) is written and kept [default: a temporary folder,
    /// removed when the server stops].
    #[arg(long, value_name = "DIR", conflicts_with = "tls_cert")]
    pub tls_dir: Option<PathBuf>,
}

/// A TLS listener's configuration from its flags, and the temporary folder of a generated CA,
/// which must live as long as the server.
struct ListenerTls {
    server: traceforge::tls::ServerTls,
    _dir: Option<tempfile::TempDir>,
}

impl TlsArgs {
    /// `None` without TLS flags; an error message for files that cannot be used.
    fn build(&self) -> Result<Option<ListenerTls>, String> {
        use traceforge::tls::ServerCert;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let cert = ServerCert::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
            let server = traceforge::tls::server(&cert).map_err(|e| format!("--tls-cert: {e}"))?;
            return Ok(Some(ListenerTls { server, _dir: None }));
        }
        if !self.tls && self.tls_dir.is_none() {
            return Ok(None);
        }
        let (dir, temp) = match &self.tls_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("--tls-dir: cannot create {}: {e}", dir.display()))?;
                // The printed path must work from any folder.
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
                (dir, None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("traceforge-tls-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a folder for the CA file: {e}"))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let server = traceforge::tls::server(&ServerCert::Generate { dir })
            .map_err(|e| format!("--tls: {e}"))?;
        Ok(Some(ListenerTls { server, _dir: temp }))
    }
}

/// How long the servers wait on slow clients.
#[derive(Debug, clap::Args)]
pub struct ClientTimeoutArgs {
    /// How long a client may take to send a request head; also how long an idle keep-alive
    /// connection stays open [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub client_header_timeout: Option<String>,
    /// How long a client may leave its request body without sending a byte before it gets a 408
    /// and its connection is closed [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub client_body_timeout: Option<String>,
}

/// Arguments of `traceforge proxy`.
#[derive(Debug, clap::Args)]
#[command(after_help = PROXY_ENV_HELP)]
pub struct ProxyArgs {
    /// Address to listen on, such as 127.0.0.1:8081 or localhost:0; port 0 picks a free port (the
    /// chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// The upstream to forward to [default: http://127.0.0.1:8081].
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// A fault rule in the compact grammar; repeat for several, applied in order:
    /// delay:100ms[-500ms][:P][:/path], error:503[:P][:/path], drop[:P][:/path].
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
    /// The seed fault decisions and generated ids derive from [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Take faults, seed, upstream URL and [proxy] settings from this scenario file.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// How long to wait for the upstream's response before answering 504, like "5s" [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
    /// How long the upstream may leave its response body without sending a byte before the
    /// client's connection is closed [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub upstream_read_timeout: Option<String>,
    #[command(flatten)]
    pub client_timeouts: ClientTimeoutArgs,
    /// Pass x-traceforge-index and x-traceforge-attempt on to the upstream (the proxy reads them
    /// either way).
    #[arg(long)]
    pub forward_traceforge_headers: bool,
    /// Threads serving connections, 1 to 1024 (default: half the CPUs the process may use, as
    /// its affinity mask says, at least one). Each runs a runtime of its own; accepted
    /// connections take turns.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// An https:// upstream: trust the CA certificates in this PEM file besides the system's
    /// roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// An https:// upstream: accept its certificate without verifying it (self-signed test
    /// servers only).
    #[arg(long, conflicts_with = "upstream_ca")]
    pub upstream_insecure: bool,
    /// Speak HTTP/2 to the upstream: with prior knowledge (h2c) to an http:// upstream, with h2
    /// required through ALPN from an https:// one. WebSocket upgrades stay on HTTP/1.1.
    #[arg(long)]
    pub upstream_http2: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Write one JSON line per request to this file (time, trace and request ids, method, path,
    /// status or error, fired rules, latency, bytes in and out); lines are dropped, and counted in
    /// traceforge_proxy_log_lines_dropped_total, rather than slow a request.
    #[arg(long, value_name = "PATH")]
    pub log_requests: Option<PathBuf>,
    /// When the request log starts a new file: never, hourly or daily (the date goes before the
    /// extension: requests.2026-11-22.jsonl) [default: never].
    #[arg(long, value_name = "WHEN")]
    pub log_rotation: Option<traceforge::observe::Rotation>,
    /// Export a span per request (and one for its upstream call) to this OpenTelemetry collector,
    /// over OTLP/HTTP protobuf: http://host:4318 sends to /v1/traces; a URL with a path is used as
    /// given.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = traceforge::observe::otlp::traces_url)]
    pub otlp: Option<Uri>,
    /// Serve the control API on this address: a REST API that adds, replaces, removes, enables
    /// and disables fault rules while the proxy runs, and lists the last requests. A bare port
    /// (8474) is on 127.0.0.1; port 0 picks a free one. The address is printed
    /// (`control API on http://ADDR`). Off by default.
    #[arg(long, value_name = "ADDR", value_parser = proxy::control::parse_listen)]
    pub control: Option<SocketAddr>,
}

pub fn upstream(args: &UpstreamArgs) -> u8 {
    init_logging();
    let scenario = match args.scenario.as_deref().map(load_scenario).transpose() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let options = UpstreamOptions {
        routes: scenario
            .as_ref()
            .map(|s| s.upstream.routes.clone())
            .unwrap_or_default(),
        static_dir: Some(args.static_dir.clone()),
        seed: args.seed.or(scenario.as_ref().map(|s| s.seed)).unwrap_or(0),
        client_timeouts: match upstream_timeouts(&args.client_timeouts) {
            Ok(timeouts) => timeouts,
            Err(message) => {
                eprintln!("error: {message}");
                return EXIT_INVALID;
            }
        },
    };
    let tls = match args.tls.build() {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    if !args.static_dir.is_dir() {
        eprintln!(
            "note: {} is not a directory; serving the built-in page only",
            args.static_dir.display()
        );
    }
    // `tls` (and the folder of a generated CA) lives until the server stops.
    let server_tls = tls.as_ref().map(|t| t.server.clone());
    let ca_file = tls.as_ref().and_then(|t| t.server.ca_file.clone());
    serve(args.workers, "upstream", ca_file, move || async move {
        let listening = match &server_tls {
            Some(server) => upstream::spawn_tls(args.listen, options, server).await,
            None => upstream::spawn(args.listen, options).await,
        }?;
        Ok((listening, None, None))
    })
}

pub fn proxy(args: &ProxyArgs) -> u8 {
    init_logging();
    let env = match Env::read(Path::new(".env")) {
        Ok(env) => env,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    // A scenario error is a rendered diagnostic with its own `error:` lines: print it as it is.
    let scenario = match args.scenario.as_deref().map(load_scenario).transpose() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (options, specs) = match proxy_options(args, &env, scenario) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let tls = match args.tls.build() {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let mut options = options;
    let otlp = args.otlp.clone();
    let outputs = match Outputs::open(options.plan.seed(), options.config.request_log.iter()) {
        Ok(outputs) => outputs.with_otlp(otlp.clone()),
        Err((path, e)) => {
            eprintln!(
                "error: cannot write the request log {}: {e}",
                path.display()
            );
            return EXIT_INVALID;
        }
    };
    if let Some(url) = &otlp {
        eprintln!("exporting spans to {url}");
    }
    eprintln!("forwarding to {}", options.upstream);
    if let Some(log) = &options.config.request_log {
        eprintln!(
            "request log: {} (rotation {})",
            log.path.display(),
            log.rotation
        );
    }
    if options.config.upstream_tls.insecure {
        eprintln!("{}", traceforge::tls::INSECURE_WARNING);
    }
    for rule in options.plan.rules() {
        eprintln!("fault rule: {rule}");
    }
    // `tls` (and the folder of a generated CA) lives until the server stops.
    let server_tls = tls.as_ref().map(|t| t.server.clone());
    let ca_file = tls.as_ref().and_then(|t| t.server.ca_file.clone());
    serve(args.workers, "proxy", ca_file, move || async move {
        let mut outputs = outputs;
        // The span exporter runs on the proxy's runtime.
        options.observer = outputs
            .observer(options.config.request_log.as_ref(), None)
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        if let Some(control) = args.control {
            let control = tokio::net::TcpListener::bind(control).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("the control API on {control}: {e}"))
            })?;
            let rules = options.plan.rules().iter().cloned();
            let rules = LiveRules::new(options.plan.seed(), specs.into_iter().zip(rules).collect());
            let controlled =
                proxy::control::spawn_on(listener, control, options, rules, server_tls.as_ref())?;
            return Ok((controlled.proxy, Some(outputs), Some(controlled.control)));
        }
        let listening = match &server_tls {
            Some(server) => proxy::spawn_tls_on(listener, options, server),
            None => proxy::spawn_on(listener, options),
        }?;
        Ok((listening, Some(outputs), None))
    })
}

/// Builds the runtime, starts the server, prints its address (and the CA file of a generated
/// certificate), and waits for Ctrl-C or SIGTERM.
fn serve<F, Fut>(workers: Option<u16>, what: &str, ca_file: Option<PathBuf>, start: F) -> u8
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::io::Result<(Listening, Option<Outputs>, Option<Listening>)>>,
{
    let runtime = match super::runtime(workers.map(usize::from), super::Threads::PerCore) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    runtime.block_on(async {
        // `control`: the proxy's control API, when it has one; it stops with the proxy.
        let (listening, outputs, control) = match start().await {
            Ok(started) => started,
            Err(e) => {
                eprintln!("error: could not start the {what}: {e}");
                return EXIT_RUNTIME;
            }
        };
        let mut out = std::io::stdout().lock();
        // Scripts read this line to find the port; a closed stdout must not stop the server.
        let _ = writeln!(out, "listening on {}", listening.url())
            .and_then(|()| match &ca_file {
                Some(path) => writeln!(out, "ca file: {}", path.display()),
                None => Ok(()),
            })
            .and_then(|()| match &control {
                Some(control) => writeln!(out, "control API on {}", control.url()),
                None => Ok(()),
            })
            .and_then(|()| out.flush());
        drop(out);
        shutdown_signal().await;
        eprintln!("shutting down the {what}");
        if let Some(control) = control {
            control.shutdown().await;
        }
        listening.shutdown().await;
        if let Some(outputs) = outputs {
            for warning in outputs.close().await.warnings() {
                eprintln!("warning: {warning}");
            }
        }
        EXIT_OK
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                biased;
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    // Without SIGTERM support, Ctrl-C alone; if even that fails, run until killed.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries only the address line. Colours only for a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

fn load_scenario(path: &Path) -> Result<Scenario, u8> {
    scenario::load(path, &[]).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })
}

/// The proxy's environment, validated: every value that is set is well-formed.
#[derive(Debug, Default)]
struct Env {
    upstream: Option<Uri>,
    delay_ms: Option<u64>,
    drop_rate: Option<f64>,
    header: Option<(HeaderName, HeaderValue)>,
    seed: Option<u64>,
}

impl Env {
    /// Reads the process environment, falling back to `dotenv` (when it exists) for unset names.
    fn read(dotenv: &Path) -> Result<Env, String> {
        let file: Vec<(String, String)> = if dotenv.is_file() {
            read_dotenv(dotenv)?
        } else {
            Vec::new()
        };
        Env::parse(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => {
                Ok(file.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
        })
    }

    fn parse(lookup: impl Fn(&str) -> Result<Option<String>, String>) -> Result<Env, String> {
        let get = |name: &str| -> Result<Option<String>, String> {
            Ok(lookup(name)?
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()))
        };
        let mut env = Env::default();
        if let Some(v) = get("UPSTREAM_BASE_URL")? {
            env.upstream = Some(parse_upstream(&v).map_err(|e| format!("UPSTREAM_BASE_URL: {e}"))?);
        }
        if let Some(v) = get("PROXY_DELAY_MS")? {
            env.delay_ms = Some(v.parse().map_err(|_| {
                format!(
                    "PROXY_DELAY_MS: `{v}` is not a whole number of milliseconds (for example 250)"
                )
            })?);
        }
        if let Some(v) = get("PROXY_DROP_RATE")? {
            let rate: f64 = v.parse().map_err(|_| {
                format!("PROXY_DROP_RATE: `{v}` is not a number between 0 and 1 (for example 0.1)")
            })?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "PROXY_DROP_RATE: {v} is outside 0 to 1 (it is the share of requests to drop)"
                ));
            }
            env.drop_rate = Some(rate);
        }
        if let Some(v) = get("PROXY_MOD_HEADER")? {
            env.header = Some(parse_header(&v).map_err(|e| format!("PROXY_MOD_HEADER: {e}"))?);
        }
        if let Some(v) = get("RNG_SEED")? {
            env.seed = Some(v.parse().map_err(|_| {
                format!("RNG_SEED: `{v}` is not a whole number from 0 to 18446744073709551615")
            })?);
        }
        Ok(env)
    }

    /// The classic variables as compact fault rules: delay first, then drop.
    fn faults(&self) -> Vec<String> {
        let mut faults = Vec::new();
        if let Some(ms) = self.delay_ms.filter(|ms| *ms > 0) {
            faults.push(format!("delay:{ms}ms"));
        }
        if let Some(rate) = self.drop_rate.filter(|r| *r > 0.0) {
            faults.push(format!("drop:{rate}"));
        }
        faults
    }
}

/// The `NAME=value` pairs of a `.env` file. dotenvy reads quotes, escapes, `export` and
/// `${NAME}`, but refuses an unquoted value with spaces, such as `PROXY_MOD_HEADER=X-Chaos: on` as
/// `--help` shows it: when it refuses the file, such values are quoted and it reads it again.
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parse = |text: &str| {
        dotenvy::from_read_iter(text.as_bytes()).collect::<Result<Vec<(String, String)>, _>>()
    };
    parse(&text)
        .or_else(|_| parse(&quote_plain_values(&text)))
        .map_err(|e| match e {
            dotenvy::Error::LineParse(part, _) => format!(
                "{}: cannot read `{}`; quote a value that holds quotes or `#`, like NAME=\"a 'b'\"",
                path.display(),
                traceforge::spec::url::mask_credentials(part.trim())
            ),
            e => format!("{}: {e}", path.display()),
        })
}

/// Each `NAME=value with spaces` line (optionally after `export`) with its value in double
/// quotes; the value ends at a ` #` comment. Lines with quotes or backslashes are left alone.
fn quote_plain_values(text: &str) -> String {
    let quote = |line: &str| -> Option<String> {
        let body = line.trim_start();
        let body = body.strip_prefix("export ").unwrap_or(body);
        let (name, value) = body.split_once('=')?;
        let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let value = value.find(" #").map_or(value, |i| &value[..i]).trim();
        let plain = !value.contains(['"', '\'', '\\']) && value.contains(char::is_whitespace);
        (is_name && plain).then(|| format!("{name}=\"{value}\""))
    };
    text.lines()
        .map(|line| quote(line).unwrap_or_else(|| line.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Flags, then the scenario file (`--scenario`, already loaded), then the environment, then
/// defaults.
///
/// Also returns the rules as written (`FaultSpec`s, in the plan's order): the control API shows
/// them and goes back to them on a reset.
fn proxy_options(
    args: &ProxyArgs,
    env: &Env,
    scenario: Option<Scenario>,
) -> Result<(ProxyOptions, Vec<FaultSpec>), String> {
    let seed = args
        .seed
        .or(scenario.as_ref().map(|s| s.seed))
        .or(env.seed)
        .unwrap_or(0);
    let upstream = match &args.upstream {
        Some(url) => parse_upstream(url).map_err(|e| format!("--upstream: {e}"))?,
        None => scenario
            .as_ref()
            .and_then(|s| s.upstream.url.clone())
            .or_else(|| env.upstream.clone())
            .unwrap_or_else(|| Uri::from_static("http://127.0.0.1:8081")),
    };
    let (specs, rules): (Vec<FaultSpec>, Vec<FaultRule>) = if !args.faults.is_empty() {
        compile_faults("--fault", &args.faults)?.into_iter().unzip()
    } else if let Some(s) = &scenario {
        // Validation compiled every entry, in order: the specs line up with the rules.
        let specs = s.spec.faults.iter().map(|entry| match entry {
            traceforge::spec::FaultEntry::Table(spec)
            | traceforge::spec::FaultEntry::Compact { spec, .. } => spec.clone(),
        });
        specs.zip(s.faults.iter().cloned()).unzip()
    } else {
        compile_faults("the environment", &env.faults())?
            .into_iter()
            .unzip()
    };
    let mut config = scenario.map(|s| s.proxy).unwrap_or_default();
    if let Some((name, value)) = &env.header {
        if !config.add_response_headers.iter().any(|(n, _)| n == name) {
            config
                .add_response_headers
                .push((name.clone(), value.clone()));
        }
    }
    if let Some(text) = &args.upstream_timeout {
        config.upstream_timeout = parse_timeout(text)?;
    }
    apply_proxy_timeouts(args, &mut config)?;
    if let Some(path) = &args.upstream_ca {
        traceforge::tls::read_certs(path).map_err(|e| format!("--upstream-ca: {e}"))?;
        config.upstream_tls = traceforge::tls::UpstreamTls {
            ca_file: Some(path.clone()),
            insecure: false,
        };
    }
    if args.upstream_insecure {
        config.upstream_tls = traceforge::tls::UpstreamTls {
            ca_file: None,
            insecure: true,
        };
    }
    if args.upstream_http2 {
        config.upstream_http2 = true;
    }
    if upstream.scheme_str() != Some("https") {
        if args.upstream_ca.is_some() {
            return Err(format!(
                "--upstream-ca applies to an https:// upstream, and {upstream} is not one"
            ));
        }
        if args.upstream_insecure {
            return Err(format!(
                "--upstream-insecure applies to an https:// upstream, and {upstream} is not one"
            ));
        }
    }
    Ok((
        ProxyOptions {
            upstream,
            plan: Arc::new(FaultPlan::new(seed, rules)),
            config,
            calls: None,
            observer: None,
        },
        specs,
    ))
}

/// The upstream's client timeouts: the flags, or the defaults.
fn upstream_timeouts(args: &ClientTimeoutArgs) -> Result<ClientTimeouts, String> {
    let mut timeouts = ClientTimeouts::default();
    if let Some(text) = &args.client_header_timeout {
        timeouts.header = parse_duration_flag("--client-header-timeout", text)?;
    }
    if let Some(text) = &args.client_body_timeout {
        timeouts.body = parse_duration_flag("--client-body-timeout", text)?;
    }
    Ok(timeouts)
}

/// The proxy's read timeouts and header forwarding from its flags, over the scenario's `[proxy]`.
fn apply_proxy_timeouts(args: &ProxyArgs, config: &mut ProxyConfig) -> Result<(), String> {
    if let Some(text) = &args.upstream_read_timeout {
        config.upstream_read_timeout = parse_duration_flag("--upstream-read-timeout", text)?;
    }
    if let Some(text) = &args.client_timeouts.client_header_timeout {
        config.client_header_timeout = parse_duration_flag("--client-header-timeout", text)?;
    }
    if let Some(text) = &args.client_timeouts.client_body_timeout {
        config.client_body_timeout = parse_duration_flag("--client-body-timeout", text)?;
    }
    if args.forward_traceforge_headers {
        config.forward_traceforge_headers = true;
    }
    if let Some(path) = &args.log_requests {
        config.request_log = Some(traceforge::observe::LogTarget {
            path: path.clone(),
            rotation: args.log_rotation.unwrap_or_default(),
        });
    } else if let Some(rotation) = args.log_rotation {
        match &mut config.request_log {
            Some(log) => log.rotation = rotation,
            None => {
                return Err(
                    "--log-rotation rotates the request log: give --log-requests PATH too".into(),
                );
            }
        }
    }
    Ok(())
}

/// A positive duration given to `flag`, like "5s".
fn parse_duration_flag(flag: &str, text: &str) -> Result<Duration, String> {
    let d = traceforge::spec::duration::parse_duration(text).map_err(|e| format!("{flag}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{flag} must be longer than 0"));
    }
    Ok(d)
}

/// Validates compact fault strings exactly as a scenario's `faults = [...]` would be, named as
/// there (`delay-1`, `error-2`, ...).
fn compile_faults(origin: &str, specs: &[String]) -> Result<Vec<(FaultSpec, FaultRule)>, String> {
    use traceforge::spec::compact::{self, CompactError};

    let mut rules = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let fault = compact::parse(spec).map_err(|e| match e {
            CompactError::TableOnly(_) => format!(
                "{origin} `{spec}`: {e}; declare it as a `[[faults]]` table in a scenario file and pass --scenario FILE instead"
            ),
            CompactError::Invalid(_) => format!("{origin} `{spec}`: {e}"),
        })?;
        let name = format!("{}-{}", fault.kind, i + 1);
        let rule = traceforge::fault::compile::compile_rule(&fault, &name)
            .map_err(|e| format!("{origin} `{spec}`: {e}"))?;
        rules.push((fault, rule));
    }
    Ok(rules)
}

/// `--listen`: an address, or a host name and port resolved now (`localhost:0`). Of a name's
/// addresses the first IPv4 one is taken, as scripts expect of `localhost`.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| {
            format!("not an address or a host name with a port (like 127.0.0.1:8080 or localhost:0): {e}")
        })?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// The proxy's upstream, checked like `upstream.url` in a scenario file.
fn parse_upstream(text: &str) -> Result<Uri, String> {
    traceforge::spec::url::parse_upstream_url(text).map_err(|e| e.to_string())
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not \"Name: value\" (for example \"X-Chaos: on\")"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{}` is not a valid header name", name.trim()))?;
    if let Some((_, reason)) = traceforge::spec::check::managed_header(name.as_str()) {
        return Err(format!("`{name}` cannot be set: {reason}"));
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("`{}` is not a valid header value", value.trim()))?;
    Ok((name, value))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = traceforge::spec::duration::parse_duration(text)
        .map_err(|e| format!("--upstream-timeout: {e}"))?;
    if d.is_zero() {
        return Err("--upstream-timeout must be longer than 0".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, String> {
        Env::parse(|name| {
            Ok(pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string()))
        })
    }

    #[test]
    fn malformed_variables_are_named_in_the_error() {
        for (name, value) in [
            ("UPSTREAM_BASE_URL", "localhost:8081"),
            ("PROXY_DELAY_MS", "100ms"),
            ("PROXY_DROP_RATE", "lots"),
            ("PROXY_DROP_RATE", "1.5"),
            ("PROXY_MOD_HEADER", "no colon"),
            ("PROXY_MOD_HEADER", "bad name: x"),
            ("PROXY_MOD_HEADER", "Transfer-Encoding: chunked"),
            ("RNG_SEED", "-1"),
        ] {
            let error = env(&[(name, value)]).err().unwrap_or_default();
            assert!(error.starts_with(name), "{name}={value}: {error}");
        }
    }

    #[test]
    fn the_classic_variables_become_rules_and_headers() {
        let parsed = env(&[
            ("PROXY_DELAY_MS", "250"),
            ("PROXY_DROP_RATE", "0.1"),
            ("PROXY_MOD_HEADER", "X-Chaos: on"),
            ("RNG_SEED", "42"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.faults(), ["delay:250ms", "drop:0.1"]);
        assert_eq!(parsed.seed, Some(42));
        let rules = compile_faults("env", &parsed.faults()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules.len(), 2);
        let (name, value) = parsed.header.unwrap_or_else(|| panic!("no header"));
        assert_eq!(
            (name.as_str(), value.to_str().ok()),
            ("x-chaos", Some("on"))
        );
    }

    #[test]
    fn dotenv_values_with_spaces_need_no_quotes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(".env");
        let text = "# proxy\nPROXY_MOD_HEADER=X-Chaos: on  # a comment\nexport RNG_SEED=7\nQUOTED=\"a b\"\nPLAIN=x\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let pairs = read_dotenv(&path).unwrap_or_else(|e| panic!("{e}"));
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PROXY_MOD_HEADER"), Some("X-Chaos: on"));
        assert_eq!(get("RNG_SEED"), Some("7"));
        assert_eq!(get("QUOTED"), Some("a b"));
        assert_eq!(get("PLAIN"), Some("x"));

        std::fs::write(&path, "A=1\nB=\"unclosed\n").unwrap_or_else(|e| panic!("{e}"));
        let error = read_dotenv(&path).err().unwrap_or_default();
        assert!(
            error.starts_with(&format!("{}: cannot read `", path.display())),
            "{error}"
        );
        assert!(!error.contains("line index"), "{error}");
    }

    #[test]
    fn listen_takes_addresses_and_host_names() {
        assert_eq!(
            parse_listen("127.0.0.1:0").map(|a| a.to_string()),
            Ok("127.0.0.1:0".to_string())
        );
        assert_eq!(parse_listen("[::1]:80").map(|a| a.port()), Ok(80));
        let local = parse_listen("localhost:0").unwrap_or_else(|e| panic!("{e}"));
        assert!(local.ip().is_loopback(), "{local}");
        assert!(parse_listen("localhost").is_err(), "a port is needed");
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }

    #[test]
    fn fault_flags_are_validated_like_scenario_faults() {
        assert!(compile_faults("--fault", &["error:503:0.5".into()]).is_ok());
        let error = compile_faults("--fault", &["error:503:1.5".into()])
            .err()
            .unwrap_or_default();
        assert!(error.contains("probability"), "{error}");
        let error = compile_faults("--fault", &["dealy:1s".into()])
            .err()
            .unwrap_or_default();
        assert!(error.contains("did you mean `delay`"), "{error}");
    }
}
