//! The only module that knows all the others: scenario -> spawn upstream and proxy -> play the load
//! -> record outcomes -> summary, expectations and golden verdict. It prints nothing; the CLI
//! renders the [`RunReport`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hyper::Uri;
use tokio::sync::mpsc;

use crate::expect;
use crate::fault::FaultPlan;
use crate::golden::{self, BodyBuilder};
use crate::load::{self, LoadOptions};
use crate::proxy::{self, Proxy, ProxyOptions};
use crate::record::{Format, OutcomeWriter, Summary};
use crate::scenario::Scenario;
use crate::scenario::spec::Clock;
use crate::server::{Listening, Shutdown};
use crate::transport::MemoryNetwork;
use crate::upstream::{self, Upstream, UpstreamOptions};

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
    /// Set to stop starting requests (Ctrl-C); what was recorded is kept.
    pub stop: Arc<AtomicBool>,
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
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same options, accepting every result as the golden file (tests write to a scratch folder).
    pub fn accepting(mut self) -> Self {
        self.golden.accept = true;
        self
    }
}

/// Everything a run found.
#[derive(Debug)]
pub struct RunReport {
    pub scenario: String,
    pub summary: Summary,
    pub expectations: Vec<expect::Verdict>,
    /// `None` when the run was interrupted: a partial run is not compared.
    pub golden: Option<golden::Verdict>,
    /// The golden body this run produced (`None` when interrupted).
    pub body: Option<String>,
    /// The output file and how many outcomes it holds.
    pub output: Option<(PathBuf, u64)>,
    pub interrupted: bool,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        !self.interrupted
            && self.expectations.iter().all(|v| v.passed)
            && self.golden.as_ref().is_some_and(golden::Verdict::passed)
    }
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
    // The upstream first: the built-in demo unless the scenario names a real one.
    let (upstream_uri, demo) = match &scenario.upstream.url {
        Some(url) => {
            check_reachable(url).await?;
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
    let proxy = proxy::spawn(LOOPBACK, proxy_options(scenario, upstream_uri))
        .await
        .map_err(|source| RunError::Spawn {
            what: "proxy",
            addr: LOOPBACK,
            source,
        })?;
    let base = listening_uri(&proxy, "proxy")?;
    let client = load::tcp_dialer();
    let mut body = BodyBuilder::for_scenario(scenario);
    let played = play_with(client, load_options(scenario, base), options, |outcome| {
        body.push(outcome)
    })
    .await;
    proxy.shutdown().await;
    if let Some(demo) = demo {
        demo.shutdown().await;
    }
    let (summary, output) = played?;
    finish(scenario, options, summary, output, body)
}

/// Plays one scenario on the virtual clock: the same upstream, proxy and load generator, over
/// in-memory pipes, on a single-threaded runtime whose clock is paused and jumps to the next timer
/// whenever every task waits on one. Latencies are exact. Only the time driver is enabled, so a
/// stray real socket fails loudly instead of leaking real time into the run. Blocking: call it from
/// a thread that is not running a tokio runtime.
pub fn run_virtual(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|source| RunError::Spawn {
            what: "virtual-time runtime",
            addr: LOOPBACK,
            source,
        })?;
    runtime.block_on(async {
        let network = MemoryNetwork::new();
        let demo = Arc::new(Upstream::new(upstream_options(scenario, options)));
        network.listen(VIRTUAL_UPSTREAM, move |io| {
            tokio::spawn(upstream::serve_connection(
                io,
                demo.clone(),
                Shutdown::never(),
            ));
        });
        let upstream_uri = Uri::from_static("http://upstream.traceforge");
        let proxy =
            Proxy::with_connector(proxy_options(scenario, upstream_uri), network.connector())
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
        let mut body = BodyBuilder::for_scenario(scenario);
        let (summary, output) = play_with(client, load_options(scenario, base), options, |o| {
            body.push(o)
        })
        .await?;
        finish(scenario, options, summary, output, body)
    })
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

fn proxy_options(scenario: &Scenario, upstream: Uri) -> ProxyOptions {
    ProxyOptions {
        upstream,
        plan: Arc::new(FaultPlan::from_scenario(scenario)),
        config: scenario.proxy.clone(),
        seed: scenario.seed,
    }
}

fn load_options(scenario: &Scenario, base: Uri) -> LoadOptions {
    LoadOptions {
        base,
        seed: scenario.seed,
        load: scenario.load.clone(),
    }
}

fn listening_uri(listening: &Listening, what: &'static str) -> Result<Uri, RunError> {
    listening.url().parse::<Uri>().map_err(|e| RunError::Spawn {
        what,
        addr: listening.addr,
        source: std::io::Error::other(e),
    })
}

/// Expectations and the golden verdict, once every outcome is in.
fn finish(
    scenario: &Scenario,
    options: &RunOptions,
    summary: Summary,
    output: Option<(PathBuf, u64)>,
    body: BodyBuilder,
) -> Result<RunReport, RunError> {
    // A run that stops early is partial; a closed loop with a duration ends on its own, so only
    // the stop flag says whether it was cut short.
    let interrupted = options.stop.load(Ordering::Relaxed)
        && scenario
            .load
            .profile
            .fixed_count()
            .is_none_or(|n| summary.requests < n);
    let expectations = expect::check(&scenario.expect, &summary);
    let (golden, body) = if interrupted {
        (None, None)
    } else {
        let text = body.finish(scenario, &summary);
        let verdict = golden::check(&options.golden_dir, scenario, &text, options.golden).map_err(
            |source| RunError::Golden {
                dir: options.golden_dir.clone(),
                source,
            },
        )?;
        (Some(verdict), Some(text))
    };
    Ok(RunReport {
        scenario: scenario.name.clone(),
        summary,
        expectations,
        golden,
        body,
        output,
        interrupted,
    })
}

/// Plays a load profile over TCP and records it; see [`play_with`].
pub async fn play(
    load_options: LoadOptions,
    options: &RunOptions,
    observe: impl FnMut(&crate::record::Outcome),
) -> Result<(Summary, Option<(PathBuf, u64)>), RunError> {
    play_with(load::tcp_dialer(), load_options, options, observe).await
}

/// Plays a load profile with `client` and records it: every outcome is streamed to the output file
/// (opened before the first request, so a bad path fails fast), added to the summary and passed to
/// `observe`. The file is completed on every path out, including a failed write or a stop.
pub async fn play_with<D: load::Dial>(
    dialer: D,
    load_options: LoadOptions,
    options: &RunOptions,
    mut observe: impl FnMut(&crate::record::Outcome),
) -> Result<(Summary, Option<(PathBuf, u64)>), RunError> {
    let mut writer = match &options.output {
        Some(path) => {
            let output_error = |source| RunError::Output {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::create(path).map_err(output_error)?;
            Some((
                path.clone(),
                OutcomeWriter::new(options.format, file).map_err(output_error)?,
            ))
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let load_task = tokio::spawn(load::run(dialer, load_options, tx, options.stop.clone()));

    let mut summary = Summary::default();
    let mut write_error = None;
    while let Some(outcome) = rx.recv().await {
        if let (Some((path, w)), None) = (writer.as_mut(), write_error.as_ref()) {
            if let Err(source) = w.write(&outcome) {
                // Stop the load: results that cannot be kept are not worth producing.
                options.stop.store(true, Ordering::Relaxed);
                write_error = Some(RunError::Output {
                    path: path.clone(),
                    source,
                });
            }
        }
        summary.push(&outcome);
        observe(&outcome);
        options.progress.fetch_add(1, Ordering::Relaxed);
    }
    let _ = load_task.await;
    let output = match writer.take() {
        Some((path, mut w)) => {
            if let Err(source) = w.finish() {
                write_error.get_or_insert(RunError::Output {
                    path: path.clone(),
                    source,
                });
            }
            Some((path, w.written()))
        }
        None => None,
    };
    match write_error {
        Some(e) => Err(e),
        None => Ok((summary, output)),
    }
}

/// An external upstream must answer a TCP connect before any load is sent; otherwise every
/// request would fail with 502 and the run would measure nothing.
async fn check_reachable(url: &Uri) -> Result<(), RunError> {
    let host = url.host().unwrap_or("127.0.0.1");
    let port = url.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
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
