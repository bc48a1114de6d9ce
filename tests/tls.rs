//! TLS with real clients: curl against `traceforge upstream --tls` and `traceforge proxy --tls`,
//! the proxy in front of https:// upstreams (trusted CA, insecure, untrusted), scenarios with an
//! https:// upstream and a TLS named proxy, bytes that are not TLS, and the validation errors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use traceforge::tls::{self, ServerCert, ServerTls, UpstreamTls};

use crate::support::{self, PATIENCE, bounded, client, get, loopback, raw_exchange};

const CURL: &str = "/usr/bin/curl";

/// Whether curl is there; when it is not, the test says why it is skipped.
fn have_curl(test: &str) -> bool {
    let found = Path::new(CURL).is_file();
    if !found {
        eprintln!("{test}: skipped, {CURL} is not installed");
    }
    found
}

/// `traceforge upstream|proxy --tls ...` as a process, with the address and the CA file it
/// printed; killed on drop.
struct TlsServer {
    child: Child,
    url: String,
    ca_file: Option<PathBuf>,
}

impl TlsServer {
    /// Starts `traceforge ARGS` and reads stdout until the `listening on` line and, when `ca` is
    /// expected, the `ca file:` line.
    fn start(args: &[&str], ca: bool) -> TlsServer {
        let mut child = support::bin()
            .args(args)
            .env_remove("UPSTREAM_BASE_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let wanted = if ca { 2 } else { 1 };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..wanted {
                match lines.next() {
                    Some(Ok(line)) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut url = None;
        let mut ca_file = None;
        for _ in 0..wanted {
            let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
            if let Some(u) = line.strip_prefix("listening on ") {
                url = Some(u.to_string());
            } else if let Some(p) = line.strip_prefix("ca file: ") {
                ca_file = Some(PathBuf::from(p));
            } else {
                let _ = child.kill();
                panic!("unexpected output from traceforge {args:?}: {line:?}");
            }
        }
        let Some(url) = url else {
            let _ = child.kill();
            panic!("traceforge {args:?} printed no address");
        };
        TlsServer {
            child,
            url,
            ca_file,
        }
    }

    fn ca(&self) -> String {
        match &self.ca_file {
            Some(p) => p.display().to_string(),
            None => panic!("{} printed no CA file", self.url),
        }
    }

    /// Sends SIGTERM, waits (bounded) for the exit, and returns what went to stderr.
    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "could not signal {pid}");
        let deadline = std::time::Instant::now() + PATIENCE;
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl's exit code, status and body for `url`, trusting `cacert` when given.
fn curl(url: &str, cacert: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = Command::new(CURL);
    cmd.args([
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "15",
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(ca) = cacert {
        cmd.args(["--cacert", ca]);
    }
    let out = cmd
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A generated certificate in `dir`: the TLS of an in-test server and its CA file.
fn generated(dir: &Path) -> (ServerTls, PathBuf) {
    let tls = tls::server(&ServerCert::Generate {
        dir: dir.to_path_buf(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = tls.ca_file.clone().unwrap_or_else(|| panic!("no CA file"));
    (tls, ca)
}

/// The demo upstream over TLS, in this process, and the CA file its clients trust.
async fn tls_upstream(dir: &Path) -> (traceforge::server::Listening, PathBuf) {
    let (tls, ca) = generated(dir);
    let up = traceforge::upstream::builder()
        .tls(tls)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (up, ca)
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

const GREETING: &str = "hello from the TraceForge demo upstream";

#[test]
fn curl_trusts_the_printed_ca_of_the_upstream_and_of_the_proxy() {
    if !have_curl("curl_trusts_the_printed_ca_of_the_upstream_and_of_the_proxy") {
        return;
    }
    let up = TlsServer::start(&["upstream", "--listen", "127.0.0.1:0", "--tls"], true);
    assert!(up.url.starts_with("https://127.0.0.1:"), "{}", up.url);
    let up_ca = up.ca();
    assert!(Path::new(&up_ca).is_file(), "{up_ca}");

    let (code, out) = curl(&format!("{}/api/resource", up.url), Some(&up_ca));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n200") && out.contains(GREETING), "{out}");
    // The certificate names localhost too.
    let port = addr_of(&up.url).port();
    let (code, out) = curl(
        &format!("https://localhost:{port}/api/resource"),
        Some(&up_ca),
    );
    assert_eq!(code, Some(0), "{out}");
    // Without the CA, curl refuses the certificate: exit 60.
    let (code, out) = curl(&format!("{}/api/resource", up.url), None);
    assert_eq!(code, Some(60), "{out}");

    let proxy = TlsServer::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "--upstream",
            &up.url,
            "--upstream-ca",
            &up_ca,
        ],
        true,
    );
    assert!(proxy.url.starts_with("https://"), "{}", proxy.url);
    let proxy_ca = proxy.ca();
    assert_ne!(proxy_ca, up_ca, "each server has a CA of its own");
    let (code, out) = curl(&format!("{}/api/resource", proxy.url), Some(&proxy_ca));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n200") && out.contains(GREETING), "{out}");
    // The upstream saw its own name in Host.
    let (code, out) = curl(&format!("{}/api/echo", proxy.url), Some(&proxy_ca));
    assert_eq!(code, Some(0), "{out}");
    let authority = up.url.trim_start_matches("https://");
    assert!(out.contains(&format!("\"host\":\"{authority}\"")), "{out}");
    let (code, out) = curl(&format!("{}/api/resource", proxy.url), None);
    assert_eq!(code, Some(60), "{out}");

    // The generated CA lives in a temporary folder that goes with the process.
    let stderr = proxy.terminate();
    assert!(
        !Path::new(&proxy_ca).exists(),
        "{proxy_ca} was left behind: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_reaches_a_self_signed_upstream_only_when_told_to() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (up, _ca) = tls_upstream(dir.path()).await;
    let upstream = up.url();
    assert!(upstream.starts_with("https://"), "{upstream}");

    let insecure = TlsServer::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--upstream-insecure",
        ],
        false,
    );
    assert!(insecure.url.starts_with("http://"), "{}", insecure.url);
    let reply = get(&client(), &format!("{}/api/resource", insecure.url), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.text().contains(GREETING));
    let stderr = insecure.terminate();
    assert!(
        stderr.contains("warning: upstream TLS certificates are NOT verified (insecure = true)"),
        "{stderr}"
    );

    // No CA and no --upstream-insecure: the upstream's certificate is not trusted, which is the
    // upstream's failure: 502.
    let strict = TlsServer::start(
        &["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream],
        false,
    );
    let reply = get(&client(), &format!("{}/api/resource", strict.url), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(reply.text().contains("certificate"), "{}", reply.text());
    drop(strict);

    // A plain-HTTP upstream still works exactly as before, and the TLS flags refuse it.
    let plain = traceforge::upstream::builder()
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = support::bin()
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &plain.url(),
        ])
        .arg("--upstream-insecure")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--upstream-insecure applies to an https:// upstream"),
        "{stderr}"
    );
}

fn https_scenario(url: &str, ca: &Path) -> String {
    format!(
        r#"name = "tls-upstream"
seed = 7

[upstream]
url = "{url}"
ca_file = "{ca}"

[[faults]]
name = "api-503"
kind = "error"
status = 503
probability = 0.3

[load]
requests = 60
concurrency = 1
targets = [{{ path = "/api/resource" }}]
"#,
        ca = ca.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_with_an_https_upstream_has_one_golden_body_at_any_concurrency() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (up, ca) = tls_upstream(dir.path()).await;
    let text = https_scenario(&up.url(), &ca);
    let one = support::play_text(&text, &[]).await;
    let many = support::play_text(&text, &["load.concurrency=64"]).await;
    let statuses = &one.report.summary.statuses;
    assert_eq!(one.report.summary.requests, 60);
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(!statuses.contains_key(&502), "{statuses:?}");
    let body = one.report.body.clone().unwrap_or_default();
    assert!(!body.is_empty());
    assert_eq!(Some(body), many.report.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_are_not_tls_close_their_connection_only() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (up, ca) = tls_upstream(dir.path()).await;
    let proxy_dir = dir.path().join("proxy");
    std::fs::create_dir_all(&proxy_dir).unwrap_or_else(|e| panic!("{e}"));
    let (proxy_tls, proxy_ca) = generated(&proxy_dir);
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let options = traceforge::proxy::ProxyOptions {
        upstream: up.url().parse().unwrap_or_else(|e| panic!("{e}")),
        plan: std::sync::Arc::new(traceforge::fault::FaultPlan::new(1, Vec::new())),
        config: traceforge::scenario::ProxyConfig {
            upstream_tls: UpstreamTls {
                ca_file: Some(ca.clone()),
                insecure: false,
            },
            ..traceforge::scenario::ProxyConfig::default()
        },
        calls: None,
        observer: None,
    };
    let proxy = traceforge::proxy::spawn_tls_on(listener, options, &proxy_tls)
        .unwrap_or_else(|e| panic!("{e}"));

    for addr in [up.addr, proxy.addr] {
        let plain = raw_exchange(addr, b"GET /api/resource HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!plain.contains("HTTP/1.1"), "{addr}: {plain:?}");
        let garbage = raw_exchange(addr, &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3]).await;
        assert!(!garbage.contains("HTTP/1.1"), "{addr}: {garbage:?}");
        let noise = raw_exchange(addr, &[b'x'; 4096]).await;
        assert!(!noise.contains("HTTP/1.1"), "{addr}: {noise:?}");
    }

    // Both still serve real TLS clients.
    let https = |ca: &Path| {
        let connector = tls::https_connector(&UpstreamTls {
            ca_file: Some(ca.to_path_buf()),
            insecure: false,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector)
    };
    for (url, ca) in [(up.url(), &ca), (proxy.url(), &proxy_ca)] {
        let response = bounded(
            https(ca).get(
                format!("{url}/api/resource")
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }
}

/// The rendered errors of a scenario that must not validate.
fn errors(text: &str) -> String {
    match traceforge::scenario::parse_str("test.toml", text, &[]) {
        Ok(_) => panic!("validated:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn upstream_tls_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_tls, ca) = generated(dir.path());
    let ca = ca.display().to_string();

    // Both set: an error, at `insecure`.
    let e = errors(&format!(
        "name = \"t\"\n[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"{ca}\"\ninsecure = true\n"
    ));
    assert!(
        e.contains("`insecure` and `ca_file` cannot both be set"),
        "{e}"
    );
    assert!(e.contains("test.toml:5:1"), "{e}");

    // A CA file that does not exist, located.
    let e = errors(
        "name = \"t\"\n[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"/no/such/ca.pem\"\n",
    );
    assert!(e.contains("`/no/such/ca.pem` does not exist"), "{e}");
    assert!(e.contains("test.toml:4:11"), "{e}");

    // A file that holds no certificate.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
    let e = errors(&format!(
        "name = \"t\"\n[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"{}\"\n",
        junk.display()
    ));
    assert!(e.contains("holds no `BEGIN CERTIFICATE` block"), "{e}");

    // TLS settings on a plain-HTTP upstream say what they need.
    let e = errors(&format!(
        "name = \"t\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\nca_file = \"{ca}\"\n"
    ));
    assert!(
        e.contains("`ca_file` applies to an https:// upstream"),
        "{e}"
    );

    // The CA file is good: the scenario validates, and carries it.
    let scenario = traceforge::scenario::parse_str(
        "test.toml",
        &format!("name = \"t\"\n[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"{ca}\"\n"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        scenario.proxy.upstream_tls.ca_file.as_deref(),
        Some(Path::new(&ca))
    );
}

#[test]
fn ca_file_placeholders_name_a_tls_proxy() {
    let e = errors(
        r#"name = "t"

[[proxies]]
name = "payments"
tls = true

[[proxies]]
name = "ledger"

[load]
command = ["curl", "--cacert", "{proxies.payment.ca_file}", "{proxies.ledger.ca_file}"]
"#,
    );
    assert!(
        e.contains("`{proxies.payment.ca_file}` names no proxy")
            && e.contains("did you mean `payments`?"),
        "{e}"
    );
    assert!(
        e.contains(
            "`{proxies.ledger.ca_file}` has no value: proxy `ledger` has no generated certificate"
        ),
        "{e}"
    );

    // The built-in load generator enters at a TLS proxy (trusting its generated CA).
    let scenario = traceforge::scenario::parse_str(
        "test.toml",
        "name = \"t\"\n[[proxies]]\nname = \"payments\"\ntls = true\n",
        &[],
    );
    assert!(
        scenario.is_ok(),
        "{:?}",
        scenario.err().map(|e| e.to_string())
    );

    // Certificate files go together, with tls = true.
    let e = errors(
        "name = \"t\"\n[[proxies]]\nname = \"p\"\ncert_file = \"c.pem\"\n[load]\ncommand = \"true\"\n",
    );
    assert!(
        e.contains("`cert_file` is only used with `tls = true`"),
        "{e}"
    );
}

/// Plays scenario text on the real clock, accepting its golden body in a scratch folder, with the
/// processes' logs under `logs`.
async fn play_logged(text: &str, logs: &Path) -> traceforge::RunReport {
    let scenario =
        traceforge::scenario::parse_str("test.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = traceforge::RunOptions {
        logs: logs.to_path_buf(),
        ..traceforge::RunOptions::new(scratch.path()).accepting()
    };
    bounded(traceforge::runner::run(&scenario, &options))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_proxy_gives_its_ca_file_to_the_client_command() {
    if !have_curl("a_tls_proxy_gives_its_ca_file_to_the_client_command") {
        return;
    }
    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        r#"name = "tls-proxy"

[[proxies]]
name = "api"
tls = true

[load]
command = ["sh", "-c", "test -s \"$CA\" && case \"$URL\" in https://127.0.0.1:*) ;; *) exit 9;; esac && {CURL} -sSf --noproxy '*' --max-time 15 --cacert \"$CA\" \"$URL/api/resource\""]
env = {{ CA = "{{proxies.api.ca_file}}", URL = "{{proxies.api.url}}" }}
"#
    );
    let report = play_logged(&text, logs.path()).await;
    let log =
        std::fs::read_to_string(logs.path().join("tls-proxy").join("load.log")).unwrap_or_default();
    let command = report
        .expectations
        .iter()
        .find(|v| v.name == "load.command")
        .unwrap_or_else(|| panic!("no load.command verdict"));
    assert!(command.passed, "{}: {log}", command.measured);
    assert!(log.contains(GREETING), "{log}");
    assert!(report.passed(), "{:?}", report.expectations);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insecure_upstream_is_announced_in_the_run_header() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (up, _ca) = tls_upstream(dir.path()).await;
    let file = dir.path().join("insecure.toml");
    let text = format!(
        "name = \"insecure\"\n[upstream]\nurl = \"{}\"\ninsecure = true\n[load]\nrequests = 5\ntargets = [{{ path = \"/api/resource\" }}]\n[expect]\nsuccess_rate = 1.0\n",
        up.url()
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let golden = dir.path().join("golden");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_traceforge"));
    cmd.arg("run")
        .arg(&file)
        .arg("--golden-dir")
        .arg(&golden)
        .arg("--accept")
        .env_remove("CI")
        .kill_on_drop(true);
    let out = bounded(cmd.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("    warning: upstream TLS certificates are NOT verified (insecure = true)"),
        "{stdout}"
    );
}

/// A client that reaches a TLS proxy but does not trust its certificate never sends a request.
/// The run must not say it bypassed the proxy: it says the handshakes failed, and what to give it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_trust_a_tls_proxy_is_told_so_not_that_it_bypassed_it() {
    if !have_curl("a_client_that_does_not_trust_a_tls_proxy_is_told_so_not_that_it_bypassed_it") {
        return;
    }
    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // curl without --cacert: the system's roots do not hold the run's throwaway CA.
    let text = format!(
        r#"name = "untrusted"

[[proxies]]
name = "api"
tls = true

[load]
command = ["sh", "-c", "{CURL} -sS --noproxy '*' --max-time 15 \"$URL/api/resource\"; {CURL} -sS --noproxy '*' --max-time 15 \"$URL/api/resource\""]
env = {{ URL = "{{proxies.api.url}}" }}
"#
    );
    let report = play_logged(&text, logs.path()).await;
    assert!(!report.passed(), "{:?}", report.expectations);
    let api = report
        .expectations
        .iter()
        .find(|v| v.name == "proxies.api")
        .unwrap_or_else(|| panic!("no proxies.api verdict: {:?}", report.expectations));
    assert!(!api.passed);
    assert!(
        api.measured.contains("2 TLS handshakes failed")
            && api.measured.contains("does not trust its certificate")
            && api.measured.contains("{proxies.api.ca_file}")
            && !api.measured.contains("bypassed"),
        "{}",
        api.measured
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("api: 2 TLS handshakes failed")),
        "{:?}",
        report.warnings
    );
}
