//! `traceforge upstream` and `traceforge proxy` as processes: the printed address, real requests,
//! SIGTERM, and the environment / `.env` configuration with its startup errors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use traceforge::upstream::{self, UpstreamOptions};

use crate::support::{self, PATIENCE, client, get, loopback};

const PROXY_VARS: [&str; 6] = [
    "UPSTREAM_BASE_URL",
    "PROXY_DELAY_MS",
    "PROXY_DROP_RATE",
    "PROXY_MOD_HEADER",
    "RNG_SEED",
    "RUST_LOG",
];

/// The binary, run in `dir` with none of the proxy's variables inherited from the test process.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = support::bin();
    cmd.current_dir(dir).args(args);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// A running server process; killed on drop so a failing test leaves nothing behind.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts the command and reads the `listening on http://...` line it prints.
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the server printed no address within {PATIENCE:?}");
            }
        };
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    #[cfg(unix)]
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "could not signal {pid}");
        wait_bounded(&mut self.child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the child to exit, killing it (and failing) after PATIENCE.
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                panic!("the process did not exit within {PATIENCE:?}");
            }
        }
    }
}

/// Runs a command that should fail at startup; returns its exit code and stderr.
fn run_to_exit(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let status = wait_bounded(&mut child);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status.code(), stderr)
}

/// `traceforge proxy` on a free loopback port in front of `upstream`, with `extra` flags.
fn proxy_in_front_of(dir: &Path, upstream: &str, extra: &[&str]) -> Server {
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream];
    args.extend_from_slice(extra);
    Server::start(command(dir, &args))
}

async fn demo_upstream() -> traceforge::server::Listening {
    upstream::spawn(loopback(), UpstreamOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_prints_its_address_injects_faults_and_stops_on_sigterm() {
    let up = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let upstream_url = up.url();
    let server = proxy_in_front_of(
        dir.path(),
        &upstream_url,
        &["--fault", "error:418:1:/teapot", "--seed", "5"],
    );
    let c = client();
    let ok = get(
        &c,
        &format!("{}/api/resource", server.url),
        &[("x-request-id", "cli-1")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["request_id"], "cli-1");
    let teapot = get(&c, &format!("{}/teapot", server.url), &[]).await;
    assert_eq!(teapot.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(teapot.header("x-traceforge-fault"), Some("error-1"));
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "a SIGTERM is a clean stop");
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_prints_its_address_and_serves_the_page() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(command(
        dir.path(),
        &[
            "upstream",
            "--listen",
            "127.0.0.1:0",
            "--static-dir",
            "no-such-dir",
        ],
    ));
    let page = get(&client(), &format!("{}/", server.url), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("TraceForge"));
    #[cfg(unix)]
    {
        let status = tokio::task::spawn_blocking(move || server.terminate())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_honours_header_faults_from_its_scenario_file() {
    // `[proxy] header_faults = true` in the file given to `traceforge proxy --scenario`: the
    // header-controlled fault answers, it is not forwarded to a 200.
    let up = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("f.toml");
    let text = format!(
        "name = \"f\"\n[upstream]\nurl = \"{}\"\n[proxy]\nheader_faults = true\n",
        up.url()
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let file = file.to_string_lossy().to_string();
    let server = Server::start(command(
        dir.path(),
        &["proxy", "--listen", "127.0.0.1:0", "--scenario", &file],
    ));
    let c = client();
    let url = format!("{}/api/resource", server.url);
    let teapot = get(&c, &url, &[("x-traceforge-fault", "error:418")]).await;
    assert_eq!(teapot.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(teapot.header("x-traceforge-fault"), Some("header"));
    let ok = get(&c, &url, &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    drop(server);
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reads_the_classic_variables_from_a_dotenv_file() {
    let up = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dotenv = format!(
        "UPSTREAM_BASE_URL={}\nPROXY_DROP_RATE=1.0\nPROXY_MOD_HEADER=\"X-Chaos: on\"\nRNG_SEED=9\n",
        up.url()
    );
    std::fs::write(dir.path().join(".env"), dotenv).unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(command(dir.path(), &["proxy", "--listen", "127.0.0.1:0"]));
    let reply = get(&client(), &format!("{}/api/resource", server.url), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("x-traceforge-fault"), Some("drop-1"));
    assert_eq!(reply.header("x-chaos"), Some("on"));
    drop(server);

    // A flag wins over the file: with no drop rule from --fault, requests pass.
    let server = Server::start(command(
        dir.path(),
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--fault",
            "delay:1ms:0:/never",
        ],
    ));
    let reply = get(&client(), &format!("{}/api/resource", server.url), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    drop(server);
    up.shutdown().await;
}

#[test]
fn malformed_proxy_variables_stop_startup_with_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = command(dir.path(), &["proxy", "--listen", "127.0.0.1:0"]);
    cmd.env("PROXY_DROP_RATE", "often");
    let (code, stderr) = run_to_exit(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("PROXY_DROP_RATE"), "{stderr}");

    // The same from .env, for another variable.
    std::fs::write(dir.path().join(".env"), "PROXY_DELAY_MS=soon\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, stderr) = run_to_exit(command(dir.path(), &["proxy", "--listen", "127.0.0.1:0"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("PROXY_DELAY_MS"), "{stderr}");

    // And a bad --fault is a usage error too.
    std::fs::remove_file(dir.path().join(".env")).unwrap_or_else(|e| panic!("{e}"));
    let (code, stderr) = run_to_exit(command(
        dir.path(),
        &["proxy", "--listen", "127.0.0.1:0", "--fault", "dealy:1s"],
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("did you mean `delay`"), "{stderr}");
}

#[test]
fn a_taken_port_is_a_runtime_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = taken
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (code, stderr) = run_to_exit(command(dir.path(), &["upstream", "--listen", &addr]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("could not start"), "{stderr}");
}

#[test]
fn a_framing_header_in_proxy_mod_header_stops_startup() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = command(dir.path(), &["proxy", "--listen", "127.0.0.1:0"]);
    cmd.env("PROXY_MOD_HEADER", "Content-Length: 5");
    let (code, stderr) = run_to_exit(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "error: PROXY_MOD_HEADER: `content-length` cannot be set: it frames the message, which the server does from the body; another value would cut the body short or corrupt the connection\n"
    );
}

#[test]
fn upstream_urls_with_credentials_or_bad_ports_are_refused_by_the_proxy() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (url, expected) in [
        (
            "http://admin:hunter2@127.0.0.1:1",
            "error: --upstream: `http://***@127.0.0.1:1` carries a user name or password (remove the part before `@`: TraceForge does not send credentials from a URL, and they would end up in the Host header and in logs)\n",
        ),
        (
            "http://127.0.0.1:99999",
            "error: --upstream: `http://127.0.0.1:99999` has an invalid port `99999` (ports run from 1 to 65535)\n",
        ),
    ] {
        let (code, stderr) = run_to_exit(command(
            dir.path(),
            &["proxy", "--listen", "127.0.0.1:0", "--upstream", url],
        ));
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr, expected);
    }
    // The environment goes through the same check.
    let mut cmd = command(dir.path(), &["proxy", "--listen", "127.0.0.1:0"]);
    cmd.env("UPSTREAM_BASE_URL", "http://admin:hunter2@127.0.0.1:1");
    let (code, stderr) = run_to_exit(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: UPSTREAM_BASE_URL: `http://***@127.0.0.1:1`"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn proxy_startup_errors_read_as_one_message() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("missing.toml");
    let missing = missing.display().to_string();
    let (code, stderr) = run_to_exit(command(
        dir.path(),
        &["proxy", "--listen", "127.0.0.1:0", "--scenario", &missing],
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot read {missing}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("error: error:"), "{stderr}");

    for (fault, expected) in [
        (
            "reset",
            "error: --fault `reset`: `reset` faults have no compact form (compact faults are `delay`, `error` and `drop`); declare it as a `[[faults]]` table in a scenario file and pass --scenario FILE instead\n",
        ),
        (
            "error:700",
            "error: --fault `error:700`: 700 is not an HTTP status (use a status from 200 to 599)\n",
        ),
        (
            "drop:1.5",
            "error: --fault `drop:1.5`: a probability must be between 0 and 1, found 1.5 (write 0.25 for 25%)\n",
        ),
    ] {
        let (code, stderr) = run_to_exit(command(
            dir.path(),
            &["proxy", "--listen", "127.0.0.1:0", "--fault", fault],
        ));
        assert_eq!(code, Some(2), "{fault}: {stderr}");
        assert_eq!(stderr, expected, "{fault}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(command(
        dir.path(),
        &[
            "upstream",
            "--listen",
            "localhost:0",
            "--static-dir",
            "none",
        ],
    ));
    assert!(
        server.url.starts_with("http://127.0.0.1:") || server.url.starts_with("http://[::1]:"),
        "{}",
        server.url
    );
    let page = get(&client(), &format!("{}/api/resource", server.url), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    drop(server);

    let (code, stderr) = run_to_exit(command(dir.path(), &["proxy", "--listen", "nowhere"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: invalid value 'nowhere' for '--listen <ADDR>': not an address or a host name with a port (like 127.0.0.1:8080 or localhost:0)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unquoted_header_in_dotenv_works_as_documented() {
    let up = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dotenv = format!(
        "UPSTREAM_BASE_URL={}\nPROXY_MOD_HEADER=X-Chaos: on\n",
        up.url()
    );
    std::fs::write(dir.path().join(".env"), dotenv).unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(command(dir.path(), &["proxy", "--listen", "127.0.0.1:0"]));
    let reply = get(&client(), &format!("{}/api/resource", server.url), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-chaos"), Some("on"));
    drop(server);
    up.shutdown().await;
}

/// Reads `traceforge_proxy_in_flight` from the proxy's `/metrics`.
async fn in_flight(proxy: &str) -> i64 {
    let metrics = get(&client(), &format!("{proxy}/metrics"), &[]).await;
    let text = metrics.text();
    text.lines()
        .find_map(|l| l.strip_prefix("traceforge_proxy_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no in_flight gauge in:\n{text}"))
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_workers_connections_take_turns_among_threads_and_each_drains_on_sigterm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let upstream_url = up.url();
    let server = proxy_in_front_of(
        dir.path(),
        &upstream_url,
        &["--workers", "3", "--fault", "delay:600ms:1:/api"],
    );
    // Three runtimes, one per thread: the command's own and two more.
    #[cfg(target_os = "linux")]
    {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect();
        for core in ["tf-core-1", "tf-core-2"] {
            assert!(
                names.iter().any(|n| n == core),
                "no {core} thread in {names:?}"
            );
        }
    }
    let addr = server
        .url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{}", server.url))
        .to_string();
    // Six connections in turn: two on each runtime. Each sends a request that waits 600 ms.
    let mut connections = Vec::new();
    for i in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let request =
            format!("GET /api/resource HTTP/1.1\r\nHost: x\r\nx-request-id: conn-{i}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        connections.push(stream);
    }
    // Every request has arrived (and is waiting out its delay) before the signal.
    let deadline = Instant::now() + PATIENCE;
    while in_flight(&server.url).await < 6 {
        assert!(Instant::now() < deadline, "the six requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "could not signal {pid}");
    // Each connection, whatever thread serves it, finishes its request before the proxy exits.
    for (i, mut stream) in connections.into_iter().enumerate() {
        let mut text = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut text))
            .await
            .unwrap_or_else(|_| panic!("connection {i} got no end"))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert!(text.starts_with("HTTP/1.1 200"), "connection {i}: {text}");
        assert!(
            text.contains(&format!("conn-{i}")),
            "connection {i}: {text}"
        );
    }
    let status = tokio::task::spawn_blocking(move || wait_bounded(&mut { server }.child))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "a SIGTERM is a clean stop");
    up.shutdown().await;
}
