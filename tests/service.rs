//! Services as real processes: readiness by HTTP, TCP and log line; early exits and readiness
//! timeouts reported with status and last lines; stop, SIGKILL after the grace, forked children
//! and dropped handles leave no process behind.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;
use traceforge::service::{Ready, Running, Service, ServiceError};

/// Every wait of these tests gives up after this long.
const LIMIT: Duration = Duration::from_secs(10);

/// A port nothing listens on now: bound on 127.0.0.1:0, then released.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A service running `sh -c script` in `dir`, logging to `dir/NAME.log`.
fn sh(dir: &TempDir, name: &str, script: &str) -> Service {
    Service::new(name, "sh", dir.path().join(format!("{name}.log")))
        .args(["-c", script])
        .current_dir(dir.path())
}

fn log_of(service: &Service) -> String {
    std::fs::read_to_string(service.log_path()).unwrap()
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Whether process group `pgid` has a process that has not exited. `killpg(pgid, 0)` answers
/// ESRCH for an empty group; zombies left to an init that does not reap them still count for
/// it, so the members it does find are looked up in `/proc`.
fn group_alive(pgid: i32) -> bool {
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None) {
        Err(nix::errno::Errno::ESRCH) => false,
        Err(e) => panic!("killpg: {e}"),
        Ok(()) => std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X")
        }),
    }
}

/// Polls `done` until it holds, failing the test after [`LIMIT`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pid a script wrote to `dir/file`, once it is there.
async fn read_pid(dir: &Path, file: &str) -> i32 {
    let path = dir.join(file);
    let mut pid = None;
    eventually("the pid file", || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    })
    .await;
    pid.unwrap()
}

async fn spawn(service: &Service) -> Running {
    match tokio::time::timeout(LIMIT, service.spawn()).await {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("spawn did not return within {LIMIT:?}"),
    }
}

async fn spawn_err(service: &Service) -> ServiceError {
    match tokio::time::timeout(LIMIT, service.spawn()).await {
        Ok(Ok(running)) => panic!("{} started", running.name()),
        Ok(Err(e)) => e,
        Err(_) => panic!("spawn did not return within {LIMIT:?}"),
    }
}

#[tokio::test]
async fn ready_by_http_then_stopped_by_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("health"), "ok").unwrap();
    let port = free_port();
    let service = Service::new("web", "python3", dir.path().join("logs/web.log"))
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir.path())
        .ready(Ready::Http {
            url: format!("http://127.0.0.1:{port}/"),
            path: "/health".into(),
        });
    let running = spawn(&service).await;
    let pgid = i32::try_from(running.pid()).unwrap();
    // Ready means it answers now, without retrying.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    let stopped = running.stop().await.unwrap();
    assert!(!stopped.killed, "python exits on SIGTERM");
    assert_eq!(stopped.status.signal(), Some(Signal::SIGTERM as i32));
    assert!(!group_alive(pgid));
    // The log folder was created; the server logged the probe (on stderr).
    assert!(
        log_of(&service).contains("GET /health"),
        "{}",
        log_of(&service)
    );
}

#[tokio::test]
async fn ready_by_log_line_with_env_cwd_and_both_streams() {
    let dir = tempfile::tempdir().unwrap();
    let service = sh(
        &dir,
        "api",
        r#"echo "out $GREETING"; echo "err $GREETING" >&2; echo "cwd $(pwd)"; echo "path $PATH";
           echo "listening"; exec sleep 1000"#,
    )
    .env("GREETING", "hello")
    .ready(Ready::Log("listening".into()));
    let running = spawn(&service).await;
    let log = log_of(&service);
    assert!(log.contains("out hello\n"), "{log}");
    assert!(log.contains("err hello\n"), "stderr is captured too: {log}");
    let cwd = dir.path().canonicalize().unwrap();
    assert!(log.contains(&format!("cwd {}\n", cwd.display())), "{log}");
    let path = std::env::var("PATH").unwrap();
    assert!(
        log.contains(&format!("path {path}\n")),
        "the parent's env: {log}"
    );
    let stopped = running.stop().await.unwrap();
    assert!(!stopped.killed);
}

#[tokio::test]
async fn ready_by_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         print('bound', flush=True)\n\
         time.sleep(1000)\n"
    );
    std::fs::write(dir.path().join("listen.py"), script).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let service = Service::new("db", "python3", dir.path().join("db.log"))
        .arg("listen.py")
        .current_dir(dir.path())
        .ready(Ready::Tcp(addr));
    let running = spawn(&service).await;
    std::net::TcpStream::connect(addr).unwrap();
    assert!(log_of(&service).contains("bound"));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn early_exit_names_the_service_its_status_and_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let service = sh(
        &dir,
        "payments",
        "for i in $(seq 1 30); do echo \"line $i\"; done; echo 'fatal: no config' >&2; exit 3",
    )
    .ready(Ready::Log("never printed".into()));
    let error = spawn_err(&service).await;
    let ServiceError::ExitedEarly {
        name,
        status,
        last_lines,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(name, "payments");
    assert_eq!(status.code(), Some(3));
    let expected: Vec<String> = (12..=30)
        .map(|i| format!("line {i}"))
        .chain(["fatal: no config".to_string()])
        .collect();
    assert_eq!(last_lines, &expected);
    let message = error.to_string();
    assert!(message.contains("`payments`"), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.contains("  | fatal: no config"), "{message}");
    assert!(!message.contains("line 11\n"), "{message}");
}

#[tokio::test]
async fn not_ready_in_time_is_stopped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let service = sh(&dir, "slow", "echo $$ > pid; echo booting; exec sleep 1000")
        .ready(Ready::Tcp(([127, 0, 0, 1], port).into()))
        .ready_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = spawn_err(&service).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let ServiceError::NotReady {
        name,
        status,
        last_lines,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(name, "slow");
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(Signal::SIGTERM as i32)
    );
    assert_eq!(last_lines, &["booting".to_string()]);
    let message = error.to_string();
    assert!(message.contains("not ready within 300ms"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    let pid = read_pid(dir.path(), "pid").await;
    assert!(!group_alive(pid));
}

#[tokio::test]
async fn sigterm_ignored_means_sigkill_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::new("stubborn", "python3", dir.path().join("stubborn.log"))
        .args([
            "-c",
            "import signal, time\n\
             signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
             print('ignoring SIGTERM', flush=True)\n\
             time.sleep(1000)\n",
        ])
        .ready(Ready::Log("ignoring SIGTERM".into()))
        .stop_timeout(Duration::from_millis(300));
    let running = spawn(&service).await;
    let pgid = i32::try_from(running.pid()).unwrap();
    let started = Instant::now();
    let stopped = running.stop().await.unwrap();
    let took = started.elapsed();
    assert!(stopped.killed);
    assert_eq!(stopped.status.signal(), Some(Signal::SIGKILL as i32));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < LIMIT, "{took:?}");
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn a_forked_child_is_stopped_with_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let service = sh(
        &dir,
        "forker",
        "sleep 1000 & echo $! > child; echo forked; wait",
    )
    .ready(Ready::Log("forked".into()));
    let running = spawn(&service).await;
    let pgid = i32::try_from(running.pid()).unwrap();
    let child = read_pid(dir.path(), "child").await;
    assert!(alive(child));
    let stopped = running.stop().await.unwrap();
    assert!(!stopped.killed);
    assert!(!alive(child), "the forked child outlived its service");
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn a_forked_child_that_ignores_sigterm_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    // The parent dies on SIGTERM; its child ignores it.
    let service = sh(
        &dir,
        "forker",
        // The child says "forked" itself, once its trap is set, so SIGTERM cannot come first.
        "(trap '' TERM; echo forked; exec sleep 1000) & echo $! > child; wait",
    )
    .ready(Ready::Log("forked".into()))
    .stop_timeout(Duration::from_millis(200));
    let running = spawn(&service).await;
    let pgid = i32::try_from(running.pid()).unwrap();
    let child = read_pid(dir.path(), "child").await;
    let stopped = running.stop().await.unwrap();
    assert!(stopped.killed, "the group outlived the grace");
    // The parent dies of the SIGTERM, or, when a busy machine has not reaped it within the short
    // grace, of the SIGKILL that ends its child too.
    let signal = stopped.status.signal();
    assert!(
        signal == Some(Signal::SIGTERM as i32) || signal == Some(Signal::SIGKILL as i32),
        "{:?}",
        stopped.status
    );
    assert!(!alive(child));
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn dropping_a_running_service_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let service = sh(
        &dir,
        "dropped",
        "trap '' TERM; sleep 1000 & echo $! > child; echo forked; wait",
    )
    .ready(Ready::Log("forked".into()));
    let running = spawn(&service).await;
    let pgid = i32::try_from(running.pid()).unwrap();
    let child = read_pid(dir.path(), "child").await;
    drop(running);
    eventually("the dropped group's end", || {
        !alive(child) && !group_alive(pgid)
    })
    .await;
}

#[tokio::test]
async fn exited_resolves_when_the_service_dies() {
    let dir = tempfile::tempdir().unwrap();
    let service = sh(
        &dir,
        "flaky",
        "echo up; while [ ! -e die ]; do sleep 0.02; done; echo 'dying now'; exit 7",
    )
    .ready(Ready::Log("up".into()));
    let mut running = spawn(&service).await;
    // Alive: `exited` does not resolve, and waiting on it can be abandoned.
    let early = tokio::time::timeout(Duration::from_millis(100), running.exited()).await;
    assert!(early.is_err(), "{early:?}");

    std::fs::write(dir.path().join("die"), "").unwrap();
    let error = tokio::time::timeout(LIMIT, running.exited())
        .await
        .expect("the service did not die");
    let ServiceError::Died {
        name,
        status,
        last_lines,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(name, "flaky");
    assert_eq!(status.code(), Some(7));
    assert_eq!(last_lines.last().map(String::as_str), Some("dying now"));
    assert!(error.to_string().contains("exit status: 7"), "{error}");
    let stopped = running.stop().await.unwrap();
    assert_eq!(stopped.status.code(), Some(7));
}

#[tokio::test]
async fn no_ready_check_means_ready_once_started() {
    let dir = tempfile::tempdir().unwrap();
    let service = sh(&dir, "plain", "exec sleep 1000");
    let running = spawn(&service).await;
    assert_eq!(running.name(), "plain");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_program_or_a_bad_url_is_an_error_naming_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Service::new(
        "ghost",
        dir.path().join("no-such-program"),
        dir.path().join("ghost.log"),
    );
    let error = spawn_err(&missing).await;
    assert!(matches!(error, ServiceError::Spawn { .. }), "{error:?}");
    assert!(error.to_string().contains("`ghost`"), "{error}");

    let bad = sh(&dir, "tls", "exec sleep 1000").ready(Ready::Http {
        url: "https://127.0.0.1:1".into(),
        path: "/".into(),
    });
    let error = spawn_err(&bad).await;
    assert!(matches!(error, ServiceError::Config { .. }), "{error:?}");
    assert!(
        !PathBuf::from(bad.log_path()).exists(),
        "nothing was started"
    );
}
