//! The only module that knows all the others: scenario -> spawn upstream and proxy -> play the load
//! -> record outcomes -> summary, expectations, golden comparison and the typed [`RunVerdict`].
//! It prints nothing: [`crate::report`] renders the [`RunReport`] and the CLI prints it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::Uri;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::expect;
use crate::golden::{self, BodyBuilder};
use crate::load::{self, LoadOptions, Shard};
use crate::observe::Outputs;
use crate::panic_watch;
use crate::proxy::{self, Proxy, ProxyOptions};
use crate::record::bundle::{self, Trailer};
use crate::record::calls::Unattributed;
use crate::record::{Format, OpenFiles, Summary, Timeline};
use crate::scenario::{Clock, Scenario};
use crate::server::{Listening, Shutdown};
use crate::transport::MemoryNetwork;
use crate::upstream::{self, Upstream, UpstreamOptions};

#[cfg(unix)]
mod merge;
mod rebuild;
mod topology;
mod verdict;

pub use merge::{MergeError, merge};
pub use rebuild::rebuild;

pub use verdict::{Reason, RunVerdict, Stop};

/// How to run a scenario and where its results go.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stream every outcome to this file.
    pub output: Option<PathBuf>,
    pub format: Format,
    /// Where `<name>.snap` lives.
    pub golden_dir: PathBuf,
    pub golden: golden::Policy,
    /// The demo upstream's static files; `None` serves the built-in page.
    pub static_dir: Option<PathBuf>,
    /// Counts finished requests, for a progress display.
    pub progress: Arc<AtomicU64>,
    /// Cancelled to stop the run (a signal): no new request starts, every wait is cut short, and
    /// what was recorded is kept. The run's verdict is then "stopped".
    pub stop: CancellationToken,
    /// Where the output file is registered while it is open, so a forced exit can complete it.
    pub open_files: OpenFiles,
    /// Keep every outcome in [`RunReport::outcomes`] (for tests; memory grows with the run).
    pub keep_outcomes: bool,
    /// Where services' output goes: `<logs>/<scenario>/<service>.log`.
    pub logs: PathBuf,
    /// Play one shard of the scenario and write its result bundle, judged later by
    /// `traceforge merge` ([`merge`]).
    pub shard: Option<ShardRun>,
    /// Start the load at this wall-clock time (every shard of a run the same), once the servers
    /// are up; a time already past starts at once.
    pub start_at: Option<std::time::SystemTime>,
    /// Fold the outcomes into a [`Timeline`] too ([`RunReport::timeline`]), for the HTML report.
    pub timeline: bool,
    /// Export spans (the load generator's and every proxy's) to this OTLP/HTTP traces endpoint
    /// (see [`crate::observe::otlp::traces_url`]). The load then sends a W3C trace context with
    /// every request, whatever `load.client_trace` says.
    pub otlp: Option<Uri>,
}

/// A run of one shard: which, where its bundle goes, and how a merge finds the scenario again.
#[derive(Debug, Clone)]
pub struct ShardRun {
    pub shard: Shard,
    pub bundle: PathBuf,
    /// The scenario file as given on the command line.
    pub file: String,
    /// The `--set` overrides as written.
    pub overrides: Vec<String>,
}

impl RunOptions {
    /// Options with nothing written but the golden check in `golden_dir`: no output file, the
    /// built-in page, golden mismatches neither accepted nor written, fresh progress and stop flags.
    pub fn new(golden_dir: impl Into<PathBuf>) -> Self {
        RunOptions {
            output: None,
            format: Format::Json,
            golden_dir: golden_dir.into(),
            golden: golden::Policy {
                accept: false,
                write_new: false,
            },
            static_dir: None,
            progress: Arc::new(AtomicU64::new(0)),
            stop: CancellationToken::new(),
            open_files: OpenFiles::default(),
            keep_outcomes: false,
            logs: PathBuf::from(DEFAULT_LOGS),
            shard: None,
            start_at: None,
            timeline: false,
            otlp: None,
        }
    }

    /// The same options, keeping every outcome in the report, in index order.
    pub fn keeping_outcomes(mut self) -> Self {
        self.keep_outcomes = true;
        self
    }

    /// The same options, folding the outcomes into a [`Timeline`] for the HTML report.
    pub fn with_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }

    /// The same options, accepting every result as the golden file (tests write to a scratch folder).
    pub fn accepting(mut self) -> Self {
        self.golden.accept = true;
        self
    }
}

/// Where services' logs go unless [`RunOptions::logs`] says otherwise, under the working directory.
pub const DEFAULT_LOGS: &str = ".traceforge/logs";

/// Everything a run found; [`RunReport::verdict`] says whether it passed.
#[derive(Debug)]
pub struct RunReport {
    pub scenario: String,
    pub summary: Summary,
    pub expectations: Vec<expect::Verdict>,
    /// `None` when the run was interrupted: a partial run is not compared.
    pub golden: Option<golden::Comparison>,
    /// The golden body this run produced (`None` when interrupted).
    pub body: Option<String>,
    /// The output file and how many outcomes it holds.
    pub output: Option<(PathBuf, u64)>,
    pub interrupted: bool,
    /// Every outcome in index order, when [`RunOptions::keep_outcomes`] asked for them.
    pub outcomes: Vec<crate::record::Outcome>,
    /// Where each service's output went, in start order.
    pub logs: Vec<(String, PathBuf)>,
    /// What the run noticed that does not fail it but may make it less deterministic than it
    /// looks (calls without a trace context).
    pub warnings: Vec<String>,
    /// A shard's run: which shard, and the bundle it wrote. Its golden file and expectations are
    /// left to `traceforge merge`.
    pub shard: Option<(Shard, PathBuf)>,
    /// The run in time buckets, when [`RunOptions::timeline`] asked for it.
    pub timeline: Option<Timeline>,
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the {what} on {addr}: {source}")]
    Spawn {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The runtime a run plays on could not be built; nothing was bound yet.
    #[error("cannot start the {what}: {source}")]
    Runtime {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the upstream {url} is unreachable: {source}")]
    Unreachable { url: Uri, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the golden file in {}: {source}", dir.display())]
    Golden {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A bug: something the run started panicked, so its results cannot be trusted.
    #[error("{what} panicked: {message}")]
    Panicked { what: &'static str, message: String },
    /// The run ended without being stopped, yet played fewer requests than its plan.
    #[error("the run played {played} of the {planned} requests it planned")]
    Incomplete { played: u64, planned: u64 },
    /// A service could not start, was not ready in time, or died during the run.
    #[cfg(unix)]
    #[error("{0}")]
    Service(Box<crate::service::ServiceError>),
    /// The topology cannot be set up as written (a URL that is not one once filled in).
    #[error("{0}")]
    Topology(String),
    /// The load generator's TLS for an `https://` entry could not be set up (an unreadable CA
    /// file, say).
    #[error("the load generator cannot set up TLS: {0}")]
    LoadTls(crate::tls::TlsError),
    /// The span export could not be set up.
    #[error("cannot export spans: {0}")]
    Observe(String),
}

const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Plays one scenario on the clock it asks for: the real clock on `runtime`, or the virtual clock
/// on a runtime of its own (so call this from outside any runtime, as the CLI does).
pub fn play_scenario(
    runtime: &tokio::runtime::Runtime,
    scenario: &Scenario,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    match scenario.clock {
        Clock::Real => runtime.block_on(run(scenario, options)),
        Clock::Virtual => run_virtual(scenario, options),
    }
}

/// Plays one scenario end to end on the real clock, over loopback TCP.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, RunError> {
    let scenario = &*sharded(scenario, options);
    if let Some(topology) = &scenario.topology {
        #[cfg(unix)]
        return topology::run(scenario, topology, options).await;
        #[cfg(not(unix))]
        return Err(RunError::Topology(format!(
            "services in the loop need a Unix system (process groups and signals); {} has [[services]] or [[proxies]]",
            topology.entry.name()
        )));
    }
    let mark = panic_watch::count();
    // The upstream first: the built-in demo unless the scenario names a real one.
    let (upstream_uri, demo) = match &scenario.upstream.url {
        Some(url) => {
            check_reachable(url, &options.stop).await?;
            (url.clone(), None)
        }
        None => {
            let listening = upstream::spawn(LOOPBACK, upstream_options(scenario, options))
                .await
                .map_err(|source| RunError::Spawn {
                    what: "demo upstream",
                    addr: LOOPBACK,
                    source,
                })?;
            let uri = listening_uri(&listening, "demo upstream")?;
            (uri, Some(listening))
        }
    };
    let mut outputs = open_outputs(scenario, options, scenario.proxy.request_log.iter())?;
    let proxy = proxy::spawn(
        LOOPBACK,
        proxy_options(scenario, upstream_uri, &mut outputs)?,
    )
    .await
    .map_err(|source| RunError::Spawn {
        what: "proxy",
        addr: LOOPBACK,
        source,
    })?;
    let base = listening_uri(&proxy, "proxy")?;
    let client = load::tcp_dialer();
    wait_for_start(options).await;
    let mut seen = Seen::new(scenario, options);
    let mut spans = LoadSpans::new(scenario, &mut outputs, &base)?;
    let played = play_with(client, spans.load_options(scenario, &base), options, |o| {
        spans.send(o);
        seen.push(o)
    })
    .await;
    if options.stop.is_cancelled() {
        // Stopped: nothing in flight is worth waiting for; dropping the handles aborts them.
        drop(proxy);
        drop(demo);
    } else {
        proxy.shutdown().await;
        if let Some(demo) = demo {
            demo.shutdown().await;
        }
    }
    let lost = outputs.close().await.warnings();
    seen.warnings.extend(lost.iter().cloned());
    let (summary, output) = played?;
    let mut report = finish(scenario, options, summary, output, seen, mark, false)?;
    report.warnings.extend(lost);
    Ok(report)
}

/// Plays one scenario on the virtual clock: the same upstream, proxy and load generator, over
/// in-memory pipes, on a single-threaded runtime whose clock is paused and jumps to the next timer
/// whenever every task waits on one. Latencies are exact. Only the time driver is enabled, so a
/// stray real socket fails loudly instead of leaking real time into the run. Blocking: call it from
/// a thread that is not running a tokio runtime.
pub fn run_virtual(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, RunError> {
    let scenario = &*sharded(scenario, options);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|source| RunError::Runtime {
            what: "virtual-time runtime",
            source,
        })?;
    let mark = panic_watch::count();
    runtime.block_on(async {
        let network = MemoryNetwork::new();
        let demo =
            Arc::new(Upstream::new(upstream_options(scenario, options)).reading_the_page_once());
        network.listen(VIRTUAL_UPSTREAM, move |io| {
            tokio::spawn(upstream::serve_connection(
                io,
                demo.clone(),
                Shutdown::never(),
            ));
        });
        let upstream_uri = Uri::from_static("http://upstream.traceforge");
        let mut outputs = open_outputs(scenario, options, scenario.proxy.request_log.iter())?;
        let proxy = Proxy::with_connector(
            proxy_options(scenario, upstream_uri, &mut outputs)?,
            network.connector(),
        )
        .map_err(|source| RunError::Spawn {
            what: "proxy",
            addr: LOOPBACK,
            source,
        })?;
        let proxy = Arc::new(proxy);
        network.listen(VIRTUAL_PROXY, move |io| {
            tokio::spawn(proxy::serve_connection(
                io,
                proxy.clone(),
                Shutdown::never(),
            ));
        });
        let client = network.connector();
        let base = Uri::from_static("http://proxy.traceforge");
        let mut seen = Seen::new(scenario, options);
        let mut spans = LoadSpans::new(scenario, &mut outputs, &base)?;
        let played = play_with(client, spans.load_options(scenario, &base), options, |o| {
            spans.send(o);
            seen.push(o)
        })
        .await;
        let lost = outputs.close().await.warnings();
        seen.warnings.extend(lost.iter().cloned());
        let (summary, output) = played?;
        let mut report = finish(scenario, options, summary, output, seen, mark, false)?;
        report.warnings.extend(lost);
        Ok(report)
    })
}

/// The scenario as this run plays it: with the shard of [`RunOptions::shard`] in its load.
fn sharded<'a>(scenario: &'a Scenario, options: &RunOptions) -> std::borrow::Cow<'a, Scenario> {
    match &options.shard {
        Some(run) if scenario.load.shard != Some(run.shard) => {
            let mut scenario = scenario.clone();
            scenario.load.shard = Some(run.shard);
            std::borrow::Cow::Owned(scenario)
        }
        _ => std::borrow::Cow::Borrowed(scenario),
    }
}

/// Waits until [`RunOptions::start_at`] (on the real clock; a stop cuts the wait short), so that
/// shards started apart begin their load, and their timetables, together.
async fn wait_for_start(options: &RunOptions) {
    let Some(at) = options.start_at else { return };
    let Ok(wait) = at.duration_since(std::time::SystemTime::now()) else {
        return;
    };
    tracing::info!(?wait, "waiting for the start time");
    tokio::select! {
        () = options.stop.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

/// The in-memory addresses of a virtual-time run.
const VIRTUAL_UPSTREAM: &str = "upstream.traceforge:80";
const VIRTUAL_PROXY: &str = "proxy.traceforge:80";

fn upstream_options(scenario: &Scenario, options: &RunOptions) -> UpstreamOptions {
    UpstreamOptions {
        routes: scenario.upstream.routes.clone(),
        static_dir: options.static_dir.clone(),
        seed: scenario.seed,
        ..UpstreamOptions::default()
    }
}

fn proxy_options(
    scenario: &Scenario,
    upstream: Uri,
    outputs: &mut Outputs,
) -> Result<ProxyOptions, RunError> {
    Ok(ProxyOptions {
        upstream,
        plan: Arc::new(scenario.fault_plan()),
        config: scenario.proxy.clone(),
        calls: None,
        observer: outputs
            .observer(scenario.proxy.request_log.as_ref(), None)
            .map_err(RunError::Observe)?,
    })
}

/// Opens the request logs of the run's proxies, and its span export.
fn open_outputs<'a>(
    scenario: &Scenario,
    options: &RunOptions,
    logs: impl IntoIterator<Item = &'a crate::observe::LogTarget>,
) -> Result<Outputs, RunError> {
    Outputs::open(scenario.seed, logs)
        .map(|outputs| outputs.with_otlp(options.otlp.clone()))
        .map_err(|(path, source)| RunError::Output { path, source })
}

/// The load generator's spans, when the run exports them: each finished request's, as it is
/// recorded.
struct LoadSpans {
    sink: Option<crate::observe::SpanSink>,
    seed: u64,
    origin: std::time::SystemTime,
    base: String,
}

impl LoadSpans {
    fn new(scenario: &Scenario, outputs: &mut Outputs, base: &Uri) -> Result<Self, RunError> {
        Ok(LoadSpans {
            sink: outputs
                .spans(crate::observe::spans::LOAD_SERVICE)
                .map_err(RunError::Observe)?,
            seed: scenario.seed,
            // Taken just before the load starts: its offsets count from (a hair after) here.
            origin: outputs.wall_now(),
            base: base.to_string(),
        })
    }

    /// The load's options: with spans exported, every request carries its trace context.
    fn load_options(&self, scenario: &Scenario, base: &Uri) -> LoadOptions {
        let mut options = load_options(scenario, base.clone());
        if self.sink.is_some() {
            options.load.client_trace = true;
        }
        options
    }

    fn send(&mut self, outcome: &crate::record::Outcome) {
        if let Some(sink) = &self.sink {
            for span in
                crate::observe::spans::load_spans(outcome, self.seed, self.origin, &self.base)
            {
                sink.send(span);
            }
        }
    }
}

fn load_options(scenario: &Scenario, base: Uri) -> LoadOptions {
    LoadOptions {
        base,
        seed: scenario.seed,
        load: scenario.load.clone(),
        tls: None,
        calls: None,
    }
}

fn listening_uri(listening: &Listening, what: &'static str) -> Result<Uri, RunError> {
    listening.url().parse::<Uri>().map_err(|e| RunError::Spawn {
        what,
        addr: listening.addr,
        source: std::io::Error::other(e),
    })
}

/// What a scenario run keeps of each outcome as it arrives: its line in the golden body, and the
/// outcome itself when [`RunOptions::keep_outcomes`] asks for it.
struct Seen {
    body: BodyBuilder,
    kept: Option<Vec<crate::record::Outcome>>,
    /// A shard keeps the calls no request claimed, for its bundle.
    strays: Option<Vec<Unattributed>>,
    /// What the run warns about, for a shard's bundle.
    warnings: Vec<String>,
    /// The run in time buckets, for the HTML report.
    timeline: Option<Timeline>,
}

impl Seen {
    fn new(scenario: &Scenario, options: &RunOptions) -> Self {
        Seen {
            body: BodyBuilder::for_scenario(scenario),
            kept: options.keep_outcomes.then(Vec::new),
            strays: options.shard.as_ref().map(|_| Vec::new()),
            warnings: Vec::new(),
            timeline: options.timeline.then(|| timeline_for(scenario)),
        }
    }

    fn push_unattributed(&mut self, u: &Unattributed) {
        self.body.push_unattributed(u);
        if let Some(strays) = self.strays.as_mut() {
            strays.push(u.clone());
        }
    }

    fn push(&mut self, outcome: &crate::record::Outcome) {
        self.body.push(outcome);
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.push(outcome);
        }
        if let Some(kept) = self.kept.as_mut() {
            kept.push(outcome.clone());
        }
    }
}

/// Expectations and the golden comparison, once every outcome is in. `mark` is the panic count when
/// the run began: any panic since fails the run.
fn finish(
    scenario: &Scenario,
    options: &RunOptions,
    summary: Summary,
    output: Option<(PathBuf, u64)>,
    seen: Seen,
    mark: u64,
    client_is_the_load: bool,
) -> Result<RunReport, RunError> {
    let Seen {
        body,
        kept,
        strays,
        warnings,
        timeline,
    } = seen;
    if let Some(message) = panic_watch::since(mark) {
        return Err(RunError::Panicked {
            what: "a task of the run",
            message,
        });
    }
    // A stop is a stop even when every request had already started: they were cut short.
    let interrupted = options.stop.is_cancelled();
    // With `[load] command` the user's client is the load: there is no plan to fall short of.
    if let Some(planned) = scenario
        .load
        .profile
        .fixed_count()
        .filter(|_| !client_is_the_load)
    {
        let planned = scenario.load.shard.map_or(planned, |s| s.planned(planned));
        if !interrupted && summary.requests < planned {
            return Err(RunError::Incomplete {
                played: summary.requests,
                planned,
            });
        }
    }
    // A shard is judged with the others, by `traceforge merge`: it only completes its bundle.
    if let (Some(run), false) = (&options.shard, interrupted) {
        let trailer = Trailer {
            version: bundle::VERSION,
            shard: run.shard.index,
            shards: run.shard.count,
            scenario: scenario.name.clone(),
            file: run.file.clone(),
            overrides: run.overrides.clone(),
            digest: scenario.digest(),
            seed: scenario.seed,
            planned: scenario
                .load
                .profile
                .fixed_count()
                .map_or(summary.requests, |n| run.shard.planned(n)),
            outcomes: summary.requests,
            summary: summary.clone(),
            unattributed: strays.unwrap_or_default(),
            warnings,
        };
        bundle::append_trailer(&run.bundle, &trailer).map_err(|source| RunError::Output {
            path: run.bundle.clone(),
            source,
        })?;
        let shard = Some((run.shard, run.bundle.clone()));
        return Ok(report(
            scenario,
            summary,
            output,
            interrupted,
            kept,
            shard,
            timeline,
        ));
    }
    let expectations = expect::check(&scenario.expect, &summary);
    let (golden, body) = if interrupted {
        (None, None)
    } else {
        let text = body.finish(scenario, &summary);
        let comparison = golden::check(&options.golden_dir, scenario, &text, options.golden)
            .map_err(|source| RunError::Golden {
                dir: options.golden_dir.clone(),
                source,
            })?;
        (Some(comparison), Some(text))
    };
    Ok(RunReport {
        expectations,
        golden,
        body,
        ..report(scenario, summary, output, interrupted, kept, None, timeline)
    })
}

/// The report of a run before it is judged: no expectation, no golden comparison; the kept
/// outcomes in index order.
fn report(
    scenario: &Scenario,
    summary: Summary,
    output: Option<(PathBuf, u64)>,
    interrupted: bool,
    kept: Option<Vec<crate::record::Outcome>>,
    shard: Option<(Shard, PathBuf)>,
    timeline: Option<Timeline>,
) -> RunReport {
    let mut outcomes = kept.unwrap_or_default();
    outcomes.sort_by_key(|o| o.index);
    RunReport {
        scenario: scenario.name.clone(),
        summary,
        expectations: Vec::new(),
        golden: None,
        body: None,
        output,
        interrupted,
        outcomes,
        logs: Vec::new(),
        warnings: Vec::new(),
        shard,
        timeline,
    }
}

/// An empty [`Timeline`] for `scenario`: buckets cut from its planned duration, histograms sized
/// like the summary's.
pub fn timeline_for(scenario: &Scenario) -> Timeline {
    use crate::load::{Profile, Until};
    let planned = match &scenario.load.profile {
        Profile::Closed {
            until: Until::Duration(d),
            ..
        } => Some(*d),
        Profile::Closed { .. } => None,
        Profile::ClosedStages { stages } => Some(stages.iter().map(|s| s.duration).sum()),
        Profile::Open { schedule, .. } => Some(schedule.at(schedule.count().saturating_sub(1))),
    };
    let options = load_options(scenario, Uri::from_static("http://proxy.traceforge"));
    let mut timeline = Timeline::new(planned, load::longest_latency(&options));
    for proxy in scenario.topology.iter().flat_map(|t| &t.proxies) {
        timeline.declare_proxy(&proxy.name);
    }
    timeline
}

/// Plays a scenario from synchronous code, such as a `#[test]`: on a runtime of its own for the
/// real clock, or on the virtual clock's. Blocking: call it outside any tokio runtime (from async
/// code, await [`run`] for the real clock).
pub fn play(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| RunError::Spawn {
            what: "runtime",
            addr: LOOPBACK,
            source,
        })?;
    play_scenario(&runtime, scenario, options)
}

/// Plays a load profile over TCP and records it; see [`play_with`].
pub async fn play_load(
    load_options: LoadOptions,
    options: &RunOptions,
    observe: impl FnMut(&crate::record::Outcome),
) -> Result<(Summary, Option<(PathBuf, u64)>), RunError> {
    play_with(load::tcp_dialer(), load_options, options, observe).await
}

/// Plays a load profile with `client` and records it: every outcome is streamed to the output file
/// (opened before the first request, so a bad path fails fast), added to the summary and passed to
/// `observe`. The file is completed on every path out, including a failed write, a panic of the
/// load generator or a stop. A panic anywhere during the load is an error, never a shorter pass.
pub async fn play_with<D: load::Dial>(
    dialer: D,
    load_options: LoadOptions,
    options: &RunOptions,
    mut observe: impl FnMut(&crate::record::Outcome),
) -> Result<(Summary, Option<(PathBuf, u64)>), RunError> {
    let mark = panic_watch::count();
    let open = |path: &PathBuf, format: Format| open_output(path, format, &options.open_files);
    let writer = options
        .output
        .as_ref()
        .map(|path| open(path, options.format))
        .transpose()?;
    // A shard's bundle: its outcomes as JSON lines, then (once the run is judged complete) the
    // trailer. Opened before the first request too.
    let bundle = options
        .shard
        .as_ref()
        .map(|run| open(&run.bundle, Format::Jsonl))
        .transpose()?;
    let mut summary = Summary::for_latencies_up_to(load::longest_latency(&load_options));
    // A load that cannot be kept is not worth producing: a failed write stops this run's load
    // (and only this run's: the caller's token is not cancelled).
    let stop = options.stop.child_token();
    let (tx, mut rx) = mpsc::channel(1024);
    let load_task = tokio::spawn(load::run(dialer, load_options, tx, stop.clone()));

    let mut failure = None;
    while let Some(outcome) = rx.recv().await {
        for (path, w) in writer.iter().chain(bundle.iter()) {
            if failure.is_some() {
                break;
            }
            if let Err(source) = w.write(&outcome) {
                stop.cancel();
                failure = Some(RunError::Output {
                    path: path.clone(),
                    source,
                });
            }
        }
        summary.push(&outcome);
        observe(&outcome);
        options.progress.fetch_add(1, Ordering::Relaxed);
    }
    let loaded = match load_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(load::LoadError::Panicked(message))) => Err(message),
        Ok(Err(load::LoadError::Tls(e))) => {
            failure.get_or_insert(RunError::LoadTls(e));
            Ok(())
        }
        Err(join) => Err(load::panic_message(join)),
    };
    if let Err(message) = loaded {
        failure.get_or_insert(RunError::Panicked {
            what: "the load generator",
            message,
        });
    }
    if let Some((path, w)) = &bundle {
        if let Err(source) = options.open_files.close(w) {
            failure.get_or_insert(RunError::Output {
                path: path.clone(),
                source,
            });
        }
    }
    let output = match writer {
        Some((path, w)) => {
            if let Err(source) = options.open_files.close(&w) {
                failure.get_or_insert(RunError::Output {
                    path: path.clone(),
                    source,
                });
            }
            Some((path, w.written()))
        }
        None => None,
    };
    if let Some(message) = panic_watch::since(mark) {
        failure.get_or_insert(RunError::Panicked {
            what: "a task of the load",
            message,
        });
    }
    match failure {
        Some(e) => Err(e),
        None => Ok((summary, output)),
    }
}

/// Creates an outcomes file (and its folders) and registers its writer in `open_files`, so a
/// forced exit can complete it.
fn open_output(
    path: &PathBuf,
    format: Format,
    open_files: &OpenFiles,
) -> Result<(PathBuf, crate::record::SharedWriter), RunError> {
    let output_error = |source| RunError::Output {
        path: path.clone(),
        source,
    };
    create_parent(path).map_err(output_error)?;
    let file = std::fs::File::create(path).map_err(output_error)?;
    let writer = open_files.open(format, file).map_err(output_error)?;
    Ok((path.clone(), writer))
}

/// Creates the folders above an output file, so `results/{name}.json` works in a fresh clone.
pub fn create_parent(path: &std::path::Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

/// An external upstream must answer a TCP connect before any load is sent; otherwise every
/// request would fail with 502 and the run would measure nothing.
async fn check_reachable(url: &Uri, stop: &CancellationToken) -> Result<(), RunError> {
    // `[::1]` in a URL is `::1` to a socket.
    let host = url
        .host()
        .unwrap_or("127.0.0.1")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let default_port = if url.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = url.port_u16().unwrap_or(default_port);
    let connect = tokio::net::TcpStream::connect((host, port));
    let waited = tokio::select! {
        biased;
        // Stopped before the load began: the run reports STOPPED with nothing recorded.
        () = stop.cancelled() => return Ok(()),
        waited = tokio::time::timeout(std::time::Duration::from_secs(5), connect) => waited,
    };
    match waited {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(RunError::Unreachable {
            url: url.clone(),
            source,
        }),
        Err(_) => Err(RunError::Unreachable {
            url: url.clone(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5s"),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Unit tests, and reports built by hand for the unit tests of the verdict and of every report.

    use std::time::Duration;

    use super::*;

    pub(crate) fn expectation(name: &str, passed: bool) -> expect::Verdict {
        let (threshold, measured) = match name {
            "success_rate" => (">= 50.0%", "100.0%"),
            _ => ("<= 0", "10 (100.0%)"),
        };
        expect::Verdict {
            name: name.to_string(),
            threshold: threshold.to_string(),
            measured: measured.to_string(),
            passed,
        }
    }

    /// Ten requests, all answered 200 in 1ms.
    fn summary() -> Summary {
        let mut s = Summary {
            requests: 10,
            succeeded: 10,
            attempts: 10,
            elapsed: Duration::from_millis(1500),
            ..Summary::default()
        };
        s.statuses.insert(200, 10);
        for _ in 0..10 {
            s.latency.record(Duration::from_millis(1));
            s.service.record(Duration::from_millis(1));
        }
        s
    }

    pub(crate) fn report(
        expectations: Vec<expect::Verdict>,
        golden: Option<golden::Comparison>,
    ) -> RunReport {
        RunReport {
            scenario: "checkout".to_string(),
            summary: summary(),
            expectations,
            golden,
            body: None,
            output: None,
            interrupted: false,
            outcomes: Vec::new(),
            logs: Vec::new(),
            warnings: Vec::new(),
            shard: None,
            timeline: None,
        }
    }

    #[test]
    fn a_runtime_failure_names_no_address() {
        let e = RunError::Runtime {
            what: "virtual-time runtime",
            source: std::io::Error::other("no timer"),
        };
        assert_eq!(
            e.to_string(),
            "cannot start the virtual-time runtime: no timer"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
