//! The load generator's protocols: HTTP/2 with prior knowledge (h2c) and by ALPN over TLS, https
//! targets trusted through a CA file, a scenario entering at a TLS named proxy, and
//! `traceforge load --url https://... --ca ... --http2` through the binary. Outcomes say which
//! protocol answered; HTTP/1.1 ones say nothing, as before.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, Version};
use traceforge::load::LoadOptions;
use traceforge::record::{Outcome, Protocol};
use traceforge::runner::{self, RunOptions};
use traceforge::tls::{ServerCert, ServerTls, UpstreamTls};

use crate::support::{self, bounded, loopback};

/// The `[load]` table of a small scenario, compiled.
pub(crate) fn load_config(load: &str) -> traceforge::load::LoadConfig {
    traceforge::scenario::parse_str("t.toml", &format!("name = \"t\"\n[load]\n{load}\n"), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .load
}

/// Plays `load` against `base`, trusting `ca` for an https base; outcomes in index order.
async fn play(base: &str, load: &str, ca: Option<&Path>) -> Vec<Outcome> {
    play_seeded(3, base, load, ca).await
}

/// [`play`] with the load generator's ids drawn from `seed`.
pub(crate) async fn play_seeded(
    seed: u64,
    base: &str,
    load: &str,
    ca: Option<&Path>,
) -> Vec<Outcome> {
    let tls = ca.map(|ca| {
        traceforge::load::client_tls(&UpstreamTls {
            ca_file: Some(ca.to_path_buf()),
            insecure: false,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    });
    let options = LoadOptions {
        base: base.parse().unwrap_or_else(|e| panic!("{e}")),
        seed,
        load: load_config(load),
        tls,
        calls: None,
    };
    let mut outcomes = Vec::new();
    bounded(runner::play_load(options, &RunOptions::new(""), |o| {
        outcomes.push(o.clone())
    }))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    outcomes.sort_by_key(|o| o.index);
    outcomes
}

/// Every outcome a 200 over `protocol`.
fn all_ok_over(outcomes: &[Outcome], n: usize, protocol: Protocol) {
    assert_eq!(outcomes.len(), n);
    for o in outcomes {
        assert_eq!(o.status, Some(200), "{o:?}");
        assert_eq!(o.protocol, protocol, "{o:?}");
    }
}

/// Serves one connection: 200 to every request, whose HTTP version goes to `log`.
fn serve_versions<IO>(
    log: Arc<Mutex<Vec<Version>>>,
    stream: IO,
    shutdown: traceforge::server::Shutdown,
) -> impl std::future::Future<Output = ()> + Send
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        if let Ok(mut log) = log.lock() {
            log.push(req.version());
        }
        async { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
    });
    traceforge::server::serve_connection(stream, service, shutdown)
}

/// A server that answers 200 and records the HTTP version of every request: over TLS (ALPN h2
/// and http/1.1) with `tls`, clear text otherwise.
pub(crate) async fn version_server(
    tls: Option<&ServerTls>,
) -> (traceforge::server::Listening, Arc<Mutex<Vec<Version>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = seen.clone();
    let listening = match tls {
        Some(tls) => traceforge::server::spawn_tls(listener, tls.acceptor.clone(), move |s, sh| {
            serve_versions(log.clone(), s, sh)
        }),
        None => {
            traceforge::server::spawn_tcp(listener, move |s, sh| serve_versions(log.clone(), s, sh))
        }
    }
    .unwrap_or_else(|e| panic!("{e}"));
    (listening, seen)
}

pub(crate) fn versions(seen: &Mutex<Vec<Version>>) -> Vec<Version> {
    seen.lock().map(|v| v.clone()).unwrap_or_default()
}

/// A generated certificate in `dir`, and the CA file that trusts it.
fn generated(dir: &Path) -> (ServerTls, PathBuf) {
    let tls = traceforge::tls::server(&ServerCert::Generate {
        dir: dir.to_path_buf(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = tls.ca_file.clone().unwrap_or_else(|| panic!("no CA file"));
    (tls, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_goes_to_the_demo_upstream_with_prior_knowledge_in_closed_and_open_loops() {
    let up = traceforge::upstream::builder()
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let closed = play(
        &up.url(),
        "http2 = true\nrequests = 40\nconcurrency = 4",
        None,
    )
    .await;
    all_ok_over(&closed, 40, Protocol::H2);
    let open = play(&up.url(), "http2 = true\nrate = 400\nrequests = 40", None).await;
    all_ok_over(&open, 40, Protocol::H2);
    // The default stays HTTP/1.1, and says nothing about it in JSON.
    let plain = play(&up.url(), "requests = 5\nconcurrency = 2", None).await;
    all_ok_over(&plain, 5, Protocol::Http1);
    let json = serde_json::to_string(&plain[0]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!json.contains("protocol"), "{json}");
    let json = serde_json::to_string(&closed[0]).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.contains(r#""protocol":"h2""#), "{json}");

    // What the server saw: HTTP/2 requests, in both loops.
    let (server, seen) = version_server(None).await;
    let closed = play(
        &server.url(),
        "http2 = true\nrequests = 20\nconcurrency = 3",
        None,
    )
    .await;
    all_ok_over(&closed, 20, Protocol::H2);
    let open = play(
        &server.url(),
        "http2 = true\nrate = 400\nrequests = 20",
        None,
    )
    .await;
    all_ok_over(&open, 20, Protocol::H2);
    let seen = versions(&seen);
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().all(|v| *v == Version::HTTP_2), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_trusted_through_their_ca_and_http2_is_chosen_by_alpn() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (tls, ca) = generated(dir.path());
    let up = traceforge::upstream::builder()
        .tls(tls)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = up.url();
    assert!(url.starts_with("https://"), "{url}");
    let h1 = play(&url, "requests = 30\nconcurrency = 4", Some(&ca)).await;
    all_ok_over(&h1, 30, Protocol::Http1);
    let h2 = play(
        &url,
        "http2 = true\nrequests = 30\nconcurrency = 4",
        Some(&ca),
    )
    .await;
    all_ok_over(&h2, 30, Protocol::H2);
    let open = play(&url, "http2 = true\nrate = 300\nrequests = 30", Some(&ca)).await;
    all_ok_over(&open, 30, Protocol::H2);
    let open = play(&url, "rate = 300\nrequests = 10", Some(&ca)).await;
    all_ok_over(&open, 10, Protocol::Http1);

    // Without the CA the certificate is not trusted: every request fails to connect.
    let untrusted = play(&url, "requests = 4\nconcurrency = 2", None).await;
    assert_eq!(untrusted.len(), 4);
    for o in &untrusted {
        assert_eq!(
            o.error,
            Some(traceforge::record::ErrorKind::Connect),
            "{o:?}"
        );
    }

    // The server saw HTTP/2 over TLS.
    let dir2 = dir.path().join("versions");
    std::fs::create_dir_all(&dir2).unwrap_or_else(|e| panic!("{e}"));
    let (tls, ca) = generated(&dir2);
    let (server, seen) = version_server(Some(&tls)).await;
    let h2 = play(
        &server.url(),
        "http2 = true\nrequests = 10\nconcurrency = 2",
        Some(&ca),
    )
    .await;
    all_ok_over(&h2, 10, Protocol::H2);
    let seen = versions(&seen);
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().all(|v| *v == Version::HTTP_2), "{seen:?}");
}

const TLS_ENTRY: &str = r#"name = "tls-entry"
seed = 11

[[proxies]]
name = "api"
tls = true
upstream = { routes = [{ path = "/api/orders", body = "orders" }] }

[[proxies.faults]]
name = "api-503"
kind = "error"
status = 503
probability = 0.3

[load]
to = "api"
requests = 60
concurrency = 1
targets = [{ path = "/api/orders" }]
"#;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_enters_at_a_tls_proxy_with_one_golden_body_at_any_concurrency() {
    let one = support::play_text(TLS_ENTRY, &[]).await;
    let many = support::play_text(TLS_ENTRY, &["load.concurrency=64"]).await;
    let statuses = &one.report.summary.statuses;
    assert_eq!(one.report.summary.requests, 60);
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n > 0), "{statuses:?}");
    assert_eq!(statuses.values().sum::<u64>(), 60, "{statuses:?}");
    let body = one.report.body.clone().unwrap_or_default();
    assert!(body.contains("api-503"), "{body}");
    assert_eq!(Some(body), many.report.body);
    assert!(one.outcomes.iter().all(|o| o.protocol == Protocol::Http1));

    // Over HTTP/2 the body is the same, and every outcome says h2.
    let h2 = support::play_text(TLS_ENTRY, &["load.http2=true", "load.concurrency=8"]).await;
    assert_eq!(h2.report.body, one.report.body);
    assert_eq!(h2.outcomes.len(), 60);
    assert!(h2.outcomes.iter().all(|o| o.protocol == Protocol::H2));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_proxy_with_its_own_certificate_is_trusted_through_that_certificate() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, key.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&key_file, key.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
    let text = TLS_ENTRY.replace(
        "tls = true\n",
        &format!(
            "tls = true\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        ),
    );
    let played = support::play_text(&text, &["load.requests=10"]).await;
    assert_eq!(played.outcomes.len(), 10);
    assert!(
        played.outcomes.iter().all(|o| o.status.is_some()),
        "{:?}",
        played.outcomes
    );
}

#[test]
fn http2_is_refused_beside_a_client_command() {
    let e = traceforge::scenario::parse_str(
        "t.toml",
        "name = \"t\"\n[[proxies]]\nname = \"p\"\n[load]\ncommand = \"true\"\nhttp2 = true\n",
        &[],
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        e.contains("`http2` cannot be used with `load.command`"),
        "{e}"
    );
}

/// `traceforge ARGS`, off the runtime's threads: the servers it talks to run on them.
async fn cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || support::bin().args(&args).output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_command_takes_an_https_url_with_its_ca() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (tls, ca) = generated(dir.path());
    let up = traceforge::upstream::builder()
        .tls(tls)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}/api/resource", up.url());
    let output = dir.path().join("out.json");
    let ca_text = ca.display().to_string();
    let out_text = output.display().to_string();
    let args = [
        "load", "--url", &url, "--ca", &ca_text, "--http2", "--n", "12", "-c", "3", "--output",
        &out_text,
    ];
    let run = cli(&args).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("statuses:     200=12"), "{stdout}");
    let text = std::fs::read_to_string(&output).unwrap_or_else(|e| panic!("{e}"));
    let outcomes: Vec<Outcome> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes.len(), 12);
    assert!(
        outcomes.iter().all(|o| o.protocol == Protocol::H2),
        "{text}"
    );

    // Without --ca the certificate is not trusted; --ca on an http:// URL is a flag error.
    let untrusted = cli(&["load", "--url", &url, "--n", "2", "-c", "1"]).await;
    let stdout = String::from_utf8_lossy(&untrusted.stdout);
    assert!(stdout.contains("connect=2"), "{stdout}");
    let wrong = cli(&["load", "--url", "http://127.0.0.1:9/", "--ca", &ca_text]).await;
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("--ca: only for an https:// or wss:// --url"),
        "{stderr}"
    );
}
