//! Plays a scenario with services in the loop: binds every named proxy, starts the mock upstreams
//! behind them, starts the services in dependency order with their placeholders filled in, plays
//! the load at the entry (or runs the user's client command), watches the services meanwhile,
//! and stops every process it started on every way out.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use hyper::Uri;
use tokio::net::TcpListener;

use super::{
    LOOPBACK, RunError, RunOptions, RunReport, Seen, finish, listening_uri, play_with,
    upstream_options,
};
use crate::expect;
use crate::fault::FaultPlan;
use crate::golden;
use crate::load::{self, LoadOptions};
use crate::panic_watch;
use crate::proxy::{self, ProxyOptions};
use crate::record::Summary;
use crate::record::calls::{CallRecorder, Calls, Unattributed};
use crate::record::summary::ProxySummary;
use crate::scenario::Scenario;
use crate::scenario::topology::{
    ClientConfig, Entry, ListenerTls, Placeholders, ProxyUpstream, Readiness, ServiceConfig,
    Topology,
};
use crate::server::Listening;
use crate::service::{Ready, Running, Service, ServiceError};
use crate::tls::{ServerCert, ServerTls};
use crate::upstream::{self, UpstreamOptions};

/// The servers and processes of one run; dropping it kills every process group and stops every
/// server, so no early return leaves anything behind.
struct Started {
    servers: Vec<Listening>,
    /// Each named proxy's place in `servers`.
    proxies: BTreeMap<String, usize>,
    services: Vec<Running>,
}

/// The TLS of the named proxies with `tls = true`, by proxy, and the folder that holds the CA
/// files of generated certificates for as long as the run lasts.
struct ProxiesTls {
    dir: Option<tempfile::TempDir>,
    by_proxy: BTreeMap<String, ServerTls>,
}

impl ProxiesTls {
    /// Builds (or generates) each TLS proxy's certificate.
    fn build(topology: &Topology) -> Result<ProxiesTls, RunError> {
        let mut tls = ProxiesTls {
            dir: None,
            by_proxy: BTreeMap::new(),
        };
        for proxy in &topology.proxies {
            let cert = match &proxy.tls {
                None => continue,
                Some(ListenerTls::Files { cert, key }) => ServerCert::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                Some(ListenerTls::Generate) => {
                    if tls.dir.is_none() {
                        let dir = tempfile::Builder::new()
                            .prefix("traceforge-tls-")
                            .tempdir()
                            .map_err(|e| tls_error(&proxy.name, e))?;
                        tls.dir = Some(dir);
                    }
                    let base = tls.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new("."));
                    let dir = base.join(&proxy.name);
                    std::fs::create_dir_all(&dir).map_err(|e| tls_error(&proxy.name, e))?;
                    ServerCert::Generate { dir }
                }
            };
            let server = crate::tls::server(&cert).map_err(|e| tls_error(&proxy.name, e))?;
            tls.by_proxy.insert(proxy.name.clone(), server);
        }
        Ok(tls)
    }
}

impl ProxiesTls {
    /// How the load generator trusts the TLS proxy `name` it enters at: its generated CA, or the
    /// certificates of its own `cert_file`, besides the system's roots. `None` for a plain proxy.
    fn entry_trust(
        &self,
        topology: &Topology,
        name: &str,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, crate::tls::TlsError> {
        let Some(server) = self.by_proxy.get(name) else {
            return Ok(None);
        };
        let ca_file = server.ca_file.clone().or_else(|| {
            topology
                .proxies
                .iter()
                .find(|p| p.name == name)
                .and_then(|p| match &p.tls {
                    Some(ListenerTls::Files { cert, .. }) => Some(cert.clone()),
                    _ => None,
                })
        });
        let trust = crate::tls::UpstreamTls {
            ca_file,
            insecure: false,
        };
        load::client_tls(&trust).map(Some)
    }
}

fn tls_error(proxy: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Topology(format!("proxy `{proxy}`: cannot set up TLS: {e}"))
}

impl Started {
    /// The TLS handshakes each TLS proxy saw fail: count and first reason.
    fn handshake_failures(&self) -> BTreeMap<String, (u64, String)> {
        self.proxies
            .iter()
            .filter_map(|(name, &i)| {
                let failed = self.servers.get(i)?.handshake_failures()?;
                Some((name.clone(), failed))
            })
            .collect()
    }

    /// Stops the services in reverse start order (each SIGTERM, grace, SIGKILL), then the servers.
    /// The first failure to stop is returned; the rest are still stopped.
    async fn stop(self, quick: bool) -> Option<ServiceError> {
        let mut failure = None;
        for running in self.services.into_iter().rev() {
            if let Err(e) = running.stop().await {
                failure.get_or_insert(e);
            }
        }
        for server in self.servers {
            if quick {
                drop(server);
            } else {
                server.shutdown().await;
            }
        }
        failure
    }
}

pub(super) async fn run(
    scenario: &Scenario,
    topology: &Topology,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let mark = panic_watch::count();
    let (calls, mut strays) = Calls::new();
    let mut values = Placeholders {
        scenario_dir: scenario.dir.display().to_string(),
        ..Placeholders::default()
    };
    let logs_dir = options.logs.join(&scenario.name);
    let mut logs = Vec::new();

    // 1. Addresses first, so every placeholder can be filled in before anything starts.
    let mut ports = BTreeMap::new();
    for service in &topology.services {
        let port = match service.port {
            Some(port) => port,
            None => free_port().await.map_err(|source| RunError::Spawn {
                what: "service port",
                addr: LOOPBACK,
                source,
            })?,
        };
        ports.insert(service.name.clone(), port);
        values
            .services
            .insert(service.name.clone(), format!("http://127.0.0.1:{port}"));
    }
    // Kept until the run ends: the generated CA files live in its folder.
    let tls = ProxiesTls::build(topology)?;
    let mut listeners = Vec::new();
    for proxy in &topology.proxies {
        let listener = TcpListener::bind(LOOPBACK)
            .await
            .map_err(|source| RunError::Spawn {
                what: "proxy",
                addr: LOOPBACK,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| RunError::Spawn {
            what: "proxy",
            addr: LOOPBACK,
            source,
        })?;
        let scheme = match tls.by_proxy.get(&proxy.name) {
            Some(server) => {
                if let Some(ca_file) = &server.ca_file {
                    values
                        .proxy_ca_files
                        .insert(proxy.name.clone(), ca_file.display().to_string());
                }
                "https"
            }
            None => "http",
        };
        values
            .proxies
            .insert(proxy.name.clone(), format!("{scheme}://{addr}"));
        listeners.push(listener);
    }

    // 2. The proxies, each in front of its mock, URL or service, with their request logs.
    let mut outputs = super::open_outputs(
        scenario,
        options,
        topology
            .proxies
            .iter()
            .filter_map(|p| p.config.request_log.as_ref()),
    )?;
    let mut started = Started {
        servers: Vec::new(),
        proxies: BTreeMap::new(),
        services: Vec::new(),
    };
    for (proxy, listener) in topology.proxies.iter().zip(listeners) {
        let upstream = match &proxy.upstream {
            ProxyUpstream::Mock(routes) => {
                let demo = upstream::spawn(
                    LOOPBACK,
                    UpstreamOptions {
                        routes: routes.clone(),
                        ..upstream_options(scenario, options)
                    },
                )
                .await
                .map_err(|source| RunError::Spawn {
                    what: "mock upstream",
                    addr: LOOPBACK,
                    source,
                })?;
                let uri = listening_uri(&demo, "mock upstream")?;
                started.servers.push(demo);
                uri
            }
            ProxyUpstream::Url(template) => parse_url(&template.render(&values), &proxy.name)?,
            ProxyUpstream::Service(name) => parse_url(
                values.services.get(name).map_or("", String::as_str),
                &proxy.name,
            )?,
        };
        let options = ProxyOptions {
            upstream,
            plan: Arc::new(FaultPlan::new(scenario.seed, proxy.faults.clone())),
            config: proxy.config.clone(),
            calls: Some(CallRecorder::new(proxy.name.clone(), calls.clone())),
            observer: outputs
                .observer(proxy.config.request_log.as_ref(), Some(&proxy.name))
                .map_err(RunError::Observe)?,
        };
        let listening = match tls.by_proxy.get(&proxy.name) {
            Some(server) => proxy::spawn_tls_on(listener, options, server),
            None => proxy::spawn_on(listener, options),
        }
        .map_err(|source| RunError::Spawn {
            what: "proxy",
            addr: LOOPBACK,
            source,
        })?;
        started
            .proxies
            .insert(proxy.name.clone(), started.servers.len());
        started.servers.push(listening);
    }

    // 3. The services, in dependency order, each ready before the next starts. A stop signal
    // during start-up skips the rest: the load then ends at once and the run reports STOPPED.
    for service in &topology.services {
        if options.stop.is_cancelled() {
            break;
        }
        let mut values = values.clone();
        values.port = ports.get(&service.name).copied();
        let log = logs_dir.join(format!("{}.log", service.name));
        logs.push((service.name.clone(), log.clone()));
        let spec = service_command(service, &values, &log);
        let spawned = tokio::select! {
            biased;
            () = options.stop.cancelled() => break,
            spawned = spec.spawn() => spawned,
        };
        match spawned {
            Ok(running) => started.services.push(running),
            Err(e) => {
                started.stop(true).await;
                return Err(RunError::Service(Box::new(e)));
            }
        }
    }

    // Calls no request claims are counted as they come, so memory stays flat however many there
    // are; the golden body keeps as many as it can list.
    let drained = tokio_util::sync::CancellationToken::new();
    let highest = load::longest_latency(&LoadOptions {
        base: Uri::from_static("http://127.0.0.1"),
        seed: scenario.seed,
        load: scenario.load.clone(),
        tls: None,
        calls: None,
    });
    let drain = {
        let drained = drained.clone();
        tokio::spawn(async move {
            let mut counted = Summary::for_latencies_up_to(highest);
            let mut kept = Vec::new();
            let mut keep = |u: Unattributed, counted: &mut Summary| {
                counted.push_unattributed(&u);
                if kept.len() < golden::MAX_REQUEST_LINES as usize {
                    kept.push(u);
                }
            };
            loop {
                tokio::select! {
                    biased;
                    u = strays.recv() => match u {
                        Some(u) => keep(u, &mut counted),
                        None => break,
                    },
                    () = drained.cancelled() => {
                        while let Ok(u) = strays.try_recv() {
                            keep(u, &mut counted);
                        }
                        break;
                    }
                }
            }
            (counted.proxies, kept)
        })
    };

    // 4. The load: the built-in generator at the entry, or the user's client.
    let load_stop = options.stop.child_token();
    let play_options = RunOptions {
        stop: load_stop.clone(),
        ..options.clone()
    };
    let mut seen = Seen::new(scenario, options);
    let mut client_verdict = None;
    let (played, died) = match &topology.client {
        None => {
            let base = match &topology.entry {
                Entry::Service(name) => values.services.get(name),
                Entry::Proxy(name) => values.proxies.get(name),
            };
            let base = parse_url(base.map_or("", String::as_str), topology.entry.name())?;
            let entry_tls = match &topology.entry {
                Entry::Proxy(name) => tls.entry_trust(topology, name).map_err(|e| {
                    RunError::Topology(format!(
                        "proxy `{name}`: the load generator cannot trust its certificate: {e}"
                    ))
                })?,
                Entry::Service(_) => None,
            };
            let load_options = LoadOptions {
                base: base.clone(),
                seed: scenario.seed,
                load: scenario.load.clone(),
                tls: entry_tls,
                calls: Some(calls.clone()),
            };
            super::wait_for_start(options).await;
            let mut spans = super::LoadSpans::new(scenario, &mut outputs, &base)?;
            let play = play_with(load::tcp_dialer(), load_options, &play_options, |o| {
                spans.send(o);
                seen.push(o)
            });
            let mut play = std::pin::pin!(play);
            tokio::select! {
                biased;
                played = &mut play => (played, None),
                died = first_exit(&mut started.services) => {
                    // The service under test is gone: nothing more can be learnt. The load stops,
                    // and its outputs are completed.
                    load_stop.cancel();
                    (play.await, Some(died))
                }
            }
        }
        Some(client) => {
            let log = logs_dir.join("load.log");
            logs.push(("load".to_string(), log.clone()));
            let summary = Summary::for_latencies_up_to(highest);
            match run_client(client, &values, &log, &mut started.services, options).await {
                Ok(verdict) => {
                    client_verdict = verdict;
                    (Ok((summary, None)), None)
                }
                Err(ClientEnd::ServiceDied(e)) => (Ok((summary, None)), Some(e)),
                Err(ClientEnd::Failed(e)) => {
                    started.stop(true).await;
                    return Err(RunError::Service(Box::new(e)));
                }
            }
        }
    };

    // 5. Stop everything, then collect what no request claimed.
    let handshakes = started.handshake_failures();
    let stop_failure = started.stop(options.stop.is_cancelled()).await;
    let closed = outputs.close().await;
    drained.cancel();
    let (unclaimed_counts, unclaimed) = match drain.await {
        Ok(drained) => drained,
        Err(join) => {
            return Err(RunError::Panicked {
                what: "the recorder of unclaimed calls",
                message: load::panic_message(join),
            });
        }
    };
    let (mut summary, output) = played?;
    if let Some(e) = died {
        return Err(RunError::Service(Box::new(e)));
    }
    if let Some(e) = stop_failure {
        return Err(RunError::Service(Box::new(e)));
    }
    for proxy in &topology.proxies {
        summary.declare_proxy(&proxy.name);
    }
    let mut warnings = warnings(&unclaimed_counts, topology.client.is_some());
    warnings.extend(handshake_warnings(&handshakes));
    warnings.extend(closed.warnings());
    summary.merge_proxies(&unclaimed_counts);
    for u in &unclaimed {
        seen.push_unattributed(u);
    }
    let client_mode = topology.client.is_some();
    seen.warnings = warnings.clone();
    let mut report = finish(scenario, options, summary, output, seen, mark, client_mode)?;
    if !report.interrupted {
        report.expectations.extend(expect::unseen_proxies(
            topology
                .proxies
                .iter()
                .map(|p| (p.name.as_str(), handshakes.get(&p.name))),
            &scenario.expect,
            &report.summary,
        ));
        report.expectations.extend(client_verdict);
    }
    report.logs = logs;
    report.warnings = warnings;
    Ok(report)
}

/// The process of one service, placeholders filled in.
fn service_command(service: &ServiceConfig, values: &Placeholders, log: &Path) -> Service {
    let argv: Vec<String> = service.command.iter().map(|t| t.render(values)).collect();
    let (program, args) = argv
        .split_first()
        .map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    let mut spec = Service::new(service.name.clone(), program, log)
        .args(args)
        .ready_timeout(service.ready_timeout)
        .stop_timeout(service.stop_timeout);
    for (key, value) in &service.env {
        spec = spec.env(key, value.render(values));
    }
    if let Some(cwd) = &service.cwd {
        spec = spec.current_dir(cwd);
    }
    let base = values
        .services
        .get(&service.name)
        .cloned()
        .unwrap_or_default();
    let port = values.port.unwrap_or(0);
    spec.ready(match &service.ready {
        Readiness::Http(path) => Ready::Http {
            url: base,
            path: path.clone(),
        },
        Readiness::Tcp => Ready::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        Readiness::Log(text) => Ready::Log(text.clone()),
    })
}

/// How the user's client ended, when it is not a verdict.
enum ClientEnd {
    /// A service died while the client ran.
    ServiceDied(ServiceError),
    /// The client could not be started or waited for.
    Failed(ServiceError),
}

/// Runs `[load] command` to its end while watching the services. Its exit status becomes a
/// verdict (`load.command`): the client is the test, and a non-zero exit is a failed one. A stop
/// signal stops it (SIGTERM to its group) and gives no verdict.
async fn run_client(
    client: &ClientConfig,
    values: &Placeholders,
    log: &Path,
    services: &mut [Running],
    options: &RunOptions,
) -> Result<Option<expect::Verdict>, ClientEnd> {
    let argv: Vec<String> = client.command.iter().map(|t| t.render(values)).collect();
    let (program, args) = argv
        .split_first()
        .map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    let mut spec = Service::new("load", program, log).args(args);
    for (key, value) in &client.env {
        spec = spec.env(key, value.render(values));
    }
    if let Some(cwd) = &client.cwd {
        spec = spec.current_dir(cwd);
    }
    let mut running = spec.spawn().await.map_err(ClientEnd::Failed)?;
    let ended = tokio::select! {
        biased;
        () = options.stop.cancelled() => {
            let _ = running.stop().await;
            return Ok(None);
        }
        died = first_exit(services) => {
            let _ = running.stop().await;
            return Err(ClientEnd::ServiceDied(died));
        }
        ended = running.exited() => ended,
    };
    let (passed, measured) = match &ended {
        ServiceError::Died {
            status, last_lines, ..
        } => {
            let tail = last_lines
                .iter()
                .rev()
                .take(3)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ");
            (
                status.success(),
                if status.success() {
                    status.to_string()
                } else {
                    format!(
                        "{status}; last lines: {tail} (all of it in {})",
                        log.display()
                    )
                },
            )
        }
        other => return Err(ClientEnd::Failed(wait_failure(other, log))),
    };
    // Reap whatever the client left behind in its group.
    let _ = running.stop().await;
    Ok(Some(expect::Verdict {
        name: "load.command".to_string(),
        threshold: "exit status 0".to_string(),
        measured,
        passed,
    }))
}

fn wait_failure(e: &ServiceError, log: &Path) -> ServiceError {
    ServiceError::Config {
        name: "load".to_string(),
        problem: format!("{e} (output in {})", log.display()),
    }
}

/// Resolves with the first service that exits; never, when there are none.
async fn first_exit(services: &mut [Running]) -> ServiceError {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ServiceError> + Send + '_>>> = services
        .iter_mut()
        .map(|s| Box::pin(s.exited()) as Pin<Box<dyn Future<Output = ServiceError> + Send + '_>>)
        .collect();
    std::future::poll_fn(|cx| {
        for wait in waits.iter_mut() {
            if let Poll::Ready(e) = wait.as_mut().poll(cx) {
                return Poll::Ready(e);
            }
        }
        Poll::Pending
    })
    .await
}

/// One warning per proxy that served calls without a context the load sent: their faults were
/// decided by something other than the load request they belong to.
fn warnings(unclaimed: &BTreeMap<String, ProxySummary>, client: bool) -> Vec<String> {
    unclaimed
        .iter()
        .map(|(proxy, p)| (proxy, p.unattributed_traced, p.unattributed_untraced))
        .filter_map(|(proxy, traced, untraced)| {
            if untraced > 0 {
                Some(format!(
                    "{proxy}: {untraced} call{} carried no trace context, so their faults were decided by arrival order, which changes with timing and concurrency; have the service pass on the `traceparent` (or `X-Request-Id`) header of the request it is serving",
                    if untraced == 1 { "" } else { "s" }
                ))
            } else if traced > 0 && !client {
                Some(format!(
                    "{proxy}: {traced} call{} carried a trace context no load request had open (sent after its request ended, or a context of its own), so they are listed apart from the requests",
                    if traced == 1 { "" } else { "s" }
                ))
            } else {
                None
            }
        })
        .collect()
}

/// One warning per TLS proxy whose clients failed TLS handshakes: those connections never carried
/// a request, so nothing else in the run shows them.
fn handshake_warnings(handshakes: &BTreeMap<String, (u64, String)>) -> Vec<String> {
    handshakes
        .iter()
        .map(|(proxy, (count, first))| {
            format!(
                "{proxy}: {count} TLS handshake{} failed (the first: {first}); a client that does not trust the proxy's certificate needs {{proxies.{proxy}.ca_file}}",
                if *count == 1 { "" } else { "s" }
            )
        })
        .collect()
}

fn parse_url(text: &str, what: &str) -> Result<Uri, RunError> {
    text.parse::<Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
        .ok_or_else(|| {
            RunError::Topology(format!(
                "`{what}`: `{text}` is not an http:// or https:// URL once its placeholders are filled in"
            ))
        })
}

/// A port nothing listens on right now, for a service to bind. Another process could take it
/// before the service does; the service's readiness check then fails with its log.
async fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(LOOPBACK).await?;
    Ok(listener.local_addr()?.port())
}
