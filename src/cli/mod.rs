//! The command line: clap definitions and the dispatch that turns library results into terminal
//! output and exit codes. It parses flags, calls the library (the runner, then [`traceforge::report`]
//! to render what it returned), and prints. Only this module and `main.rs` print.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use traceforge::scenario::{self, Override, ScenarioError};

/// `println!` that a closed stdout (`traceforge run … | head -1`) cannot turn into a panic: the
/// command goes on, finishes every file, and its exit code is its verdict.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout; see `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr (`2>&1 | head`); see `outln!`.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod explore;
pub mod html;
pub mod init;
pub mod k8s;
pub mod load;
pub mod merge;
mod progress;
pub mod run;
pub mod serve;
mod signal;

/// Everything passed: scenarios matched their golden snapshots and expectations.
pub const EXIT_OK: u8 = 0;
/// A run completed but failed its expectations or its golden snapshot.
pub const EXIT_FAILED: u8 = 1;
/// A scenario or the command line was invalid; nothing was run.
pub const EXIT_INVALID: u8 = 2;
/// A runtime failure: could not bind, upstream unreachable, I/O error.
pub const EXIT_RUNTIME: u8 = 3;

const EXIT_CODES: &str = "Exit codes:
  0  pass: golden snapshots and expectations matched (or, for validate, every file is valid)
  1  a run failed its expectations or its golden snapshot
  2  invalid scenario or usage; nothing was run
  3  runtime failure: could not bind, upstream unreachable, I/O error, a panic, or a run
     stopped by SIGINT, SIGTERM or SIGHUP (its files are still completed)";

/// Declarative HTTP chaos scenarios: an upstream, a fault-injecting proxy and a load generator in
/// one process, played deterministically and checked against golden snapshots.
#[derive(Debug, Parser)]
#[command(name = "traceforge", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play scenarios and check them against their golden snapshots and expectations.
    #[command(after_help = EXIT_CODES)]
    Run(run::RunArgs),
    /// Judge the result bundles of a sharded run (`run --shard K/N --bundle PATH`) together: the
    /// summary, expectations, golden snapshot and exit code of the run on one machine.
    #[command(after_help = EXIT_CODES)]
    Merge(merge::MergeArgs),
    /// Write the HTML report of a run from its saved outcomes (`run --output FILE --format jsonl`)
    /// or a sharded run's bundles: the same report `run --report` writes.
    #[command(after_help = EXIT_CODES)]
    Report(html::ReportArgs),
    /// Print the Kubernetes manifests of a sharded run: an Indexed Job of N shards writing their
    /// bundles to a shared volume, or (`--merge`) the Job that merges them.
    #[command(after_help = EXIT_CODES)]
    K8s(k8s::K8sArgs),
    /// Play a scenario once per seed of a range, on parallel workers, judged by its expectations
    /// alone: a table of the seeds that broke each one, and the first failing seed shrunk to a
    /// minimal scenario (`NAME.min.toml`). Exit 1 if any seed failed.
    #[command(after_help = EXIT_CODES)]
    Explore(explore::ExploreArgs),
    /// Check scenario files without running them; every file is reported.
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// Print the JSON schema of the scenario format (draft-07), for editor autocomplete.
    Schema(SchemaArgs),
    /// Write a commented starter scenario: scenarios/NAME.toml (or NAME.toml without a scenarios/ folder);
    /// `--template service` for one with your own service in the loop.
    #[command(after_help = EXIT_CODES)]
    Init(init::InitArgs),
    /// Send load to any URL on its own: concurrency, retries, client trace ids, JSON/CSV output.
    Load(load::LoadArgs),
    /// Serve the demo upstream on its own.
    Upstream(serve::UpstreamArgs),
    /// Run the fault-injecting proxy on its own, in front of any upstream.
    Proxy(serve::ProxyArgs),
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Print the OpenAPI 3.1 document of the proxy's control API (`traceforge proxy --control`)
    /// instead.
    #[arg(long)]
    pub control_api: bool,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Scenario files to check, or folders of them (every `*.toml` inside), as `run` reads them.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Override a scenario field before validating: --set load.concurrency=64
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<Override>,
    /// Also say what would not be exact if each file were played as N shards and merged (and fail
    /// a file that cannot be sharded).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(traceforge::load::plan::MAX_SHARDS)))]
    pub shards: Option<u32>,
}

/// How a command spreads its work over its worker threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// One current-thread runtime per worker ([`traceforge::cores`]): servers hand each
    /// connection, and a closed loop each worker, to one of them for good. No work stealing and
    /// no wake-up crosses a thread.
    PerCore,
    /// One runtime whose worker threads share every task: many short tasks sharing one
    /// connection pool (an open-loop load). One worker is a current-thread runtime.
    Shared,
    /// [`Threads::Shared`], and multi-thread even with one worker, so a signal watcher runs while
    /// the main thread is busy elsewhere (`run`, `explore`).
    SharedWithSignals,
}

/// The runtime of a command: `workers` threads, one per CPU the process may use by default (its
/// affinity mask: `taskset -c 1` means one). One worker is always a current-thread runtime
/// (but for [`Threads::SharedWithSignals`]): everything on one thread, no cross-thread wake-ups,
/// which is what a one-core budget wants.
pub(crate) fn runtime(
    workers: Option<usize>,
    threads: Threads,
) -> std::io::Result<tokio::runtime::Runtime> {
    let n = workers.unwrap_or_else(traceforge::cores::available).max(1);
    match threads {
        Threads::PerCore => {
            traceforge::cores::install(n)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        Threads::Shared if n == 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Threads::Shared | Threads::SharedWithSignals => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

/// Parses the process arguments and runs the command; returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_INVALID
            } else {
                EXIT_OK
            };
        }
    };
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Schema(args) => {
            let text = if args.control_api {
                traceforge::proxy::control::openapi_text()
            } else {
                traceforge::schema::json()
            };
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()) {
                Ok(()) => EXIT_OK,
                // A closed pipe (`traceforge schema | head`) is not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
                Err(e) => {
                    errln!("error: {e}");
                    EXIT_RUNTIME
                }
            }
        }
        Command::Run(args) => run::run(&args),
        Command::Explore(args) => explore::explore(&args),
        Command::Merge(args) => merge::merge(&args),
        Command::Report(args) => html::report(&args),
        Command::K8s(args) => k8s::k8s(&args),
        Command::Init(args) => init::init(&args),
        Command::Load(args) => load::load(&args),
        Command::Upstream(args) => serve::upstream(&args),
        Command::Proxy(args) => serve::proxy(&args),
    }
}

/// What `validate` says of a valid scenario: its rules and its load, and its services and
/// proxies when it has them.
fn shape(s: &scenario::Scenario) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let Some(t) = &s.topology else {
        return format!(
            "{}, {}",
            plural(s.faults.len(), "fault rule", "fault rules"),
            s.load.profile
        );
    };
    let rules = t.proxies.iter().map(|p| p.faults.len()).sum();
    let load = match &t.client {
        Some(_) => "the load is `load.command`".to_string(),
        None => format!("{} to {}", s.load.profile, t.entry.name()),
    };
    format!(
        "{}, {}, {}, {load}",
        plural(t.services.len(), "service", "services"),
        plural(t.proxies.len(), "proxy", "proxies"),
        plural(rules, "fault rule", "fault rules"),
    )
}

fn validate(args: &ValidateArgs) -> u8 {
    // Folders hold scenarios the way `run` reads them.
    let files = match run::expand(&args.files) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut worst = EXIT_OK;
    for file in &files {
        match scenario::load(file, &args.overrides) {
            Ok(s) => {
                let caveats = args.shards.map(|n| (n, s.shard_caveats(n)));
                if let Some((n, Err(why))) = &caveats {
                    errln!(
                        "error: {}: cannot be played as {n} shards: {why}",
                        file.display()
                    );
                    worst = worst.max(EXIT_INVALID);
                    continue;
                }
                let line = writeln!(out, "ok: {} ({}: {})", file.display(), s.name, shape(&s));
                if let Some((n, Ok(caveats))) = &caveats {
                    if caveats.is_empty() {
                        let _ = writeln!(out, "    {n} shards merge exactly");
                    }
                    for c in caveats {
                        let _ = writeln!(out, "    warning: as {n} shards: {c}");
                    }
                }
                match line {
                    Ok(()) => {}
                    // A closed pipe (`validate ... | head -1`): nobody reads on, stop quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return worst,
                    Err(e) => {
                        eprintln!("error: cannot write to stdout: {e}");
                        return EXIT_RUNTIME;
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                worst = worst.max(match e {
                    ScenarioError::Io { .. } => EXIT_INVALID,
                    ScenarioError::Invalid(_) => EXIT_INVALID,
                });
            }
        }
    }
    worst
}
