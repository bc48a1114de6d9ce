//! The shipped example, `examples/checkout/app.py`, as a real process started through
//! `traceforge::service`, in front of a payments test server: charges, retries on 503 and on
//! connection errors, `Retry-After`, and the trace context passed on (or not).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;
use tempfile::TempDir;
use traceforge::service::{Ready, Running, Service};

use crate::support::{self, Seen, bounded, client, header, respond, serve};

/// The trace context a caller sends to `/checkout`.
const TRACE: [(&str, &str); 3] = [
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("x-trace-id", "checkout-trace-1"),
    ("x-request-id", "checkout-request-1"),
];

/// The example, running.
struct Checkout {
    running: Running,
    url: String,
    /// Holds its log file.
    _dir: TempDir,
}

impl Checkout {
    /// Starts `app.py` with `PAYMENTS_URL=payments` and `env` on top, ready once `/health`
    /// answers.
    async fn start(payments: &str, env: &[(&str, &str)]) -> Checkout {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let app = support::root().join("examples/checkout/app.py");
        let mut service = Service::new("checkout", "python3", dir.path().join("checkout.log"))
            .arg(app)
            .env("PORT", port.to_string())
            .env("PAYMENTS_URL", payments)
            .ready(Ready::Http {
                url: url.clone(),
                path: "/health".into(),
            })
            .ready_timeout(support::PATIENCE);
        for (key, value) in env {
            service = service.env(key, value);
        }
        let running = bounded(service.spawn())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Checkout {
            running,
            url,
            _dir: dir,
        }
    }

    /// `POST /checkout` with `headers`: the status and the `attempts` the service reports.
    async fn checkout(&self, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let url = format!("{}/checkout", self.url);
        let reply = support::send(&client(), Method::POST, &url, headers, "{}").await;
        (reply.status.as_u16(), reply.json())
    }

    /// Stops the service (SIGTERM, bounded) and returns its log.
    async fn stop(self) -> String {
        let log = std::fs::read_to_string(self.running.log_path()).unwrap();
        bounded(self.running.stop())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        log
    }
}

/// A payments server that answers the n-th call (from 0) with `answer(n)`.
async fn payments(
    answer: fn(usize) -> hyper::Response<http_body_util::Full<bytes::Bytes>>,
) -> (
    traceforge::server::Listening,
    Arc<std::sync::Mutex<Vec<Seen>>>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    serve(move |_| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move { answer(n) }
    })
    .await
}

fn calls(seen: &std::sync::Mutex<Vec<Seen>>) -> Vec<Seen> {
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn a_checkout_charges_once_and_succeeds() {
    let (server, seen) = payments(|_| respond(200, &[], r#"{"charged": true}"#)).await;
    let app = Checkout::start(&server.url(), &[]).await;

    let (status, body) = app.checkout(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"ok": true, "attempts": 1}));
    let calls = calls(&seen);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, Method::POST);
    assert_eq!(calls[0].path, "/charge");
    assert_eq!(
        header(&calls[0].headers, "content-type"),
        "application/json"
    );
    let charge: serde_json::Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert!(charge["amount_cents"].is_u64(), "{charge}");

    let log = app.stop().await;
    assert!(log.contains("listening on http://127.0.0.1:"), "{log}");
    assert!(log.contains("POST /checkout 200"), "{log}");
}

#[tokio::test]
async fn two_503s_are_retried_and_the_third_call_succeeds() {
    let (server, seen) = payments(|n| match n {
        0 | 1 => respond(503, &[], "busy"),
        _ => respond(200, &[], "{}"),
    })
    .await;
    let app = Checkout::start(&server.url(), &[("BACKOFF_MS", "1")]).await;

    let (status, body) = app.checkout(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 3);
    assert_eq!(calls(&seen).len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn with_no_retries_one_503_is_a_502() {
    let (server, seen) = payments(|_| respond(503, &[], "busy")).await;
    let app = Checkout::start(&server.url(), &[("RETRIES", "0")]).await;

    let (status, body) = app.checkout(&[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body, serde_json::json!({"ok": false, "attempts": 1}));
    assert_eq!(calls(&seen).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn retries_run_out_on_a_payments_api_that_is_not_there() {
    // A port nothing listens on: every attempt is a refused connection.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = Checkout::start(
        &format!("http://127.0.0.1:{port}"),
        &[("RETRIES", "2"), ("BACKOFF_MS", "1")],
    )
    .await;

    let (status, body) = app.checkout(&[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body, serde_json::json!({"ok": false, "attempts": 3}));
    app.stop().await;
}

#[tokio::test]
async fn every_charge_call_carries_the_trace_context_it_was_sent() {
    let (server, seen) = payments(|n| match n {
        0 => respond(503, &[], "busy"),
        _ => respond(200, &[], "{}"),
    })
    .await;
    let app = Checkout::start(&server.url(), &[("BACKOFF_MS", "1")]).await;

    let (status, body) = app.checkout(&TRACE).await;
    assert_eq!(status, 200, "{body}");
    let calls = calls(&seen);
    assert_eq!(calls.len(), 2, "one 503, then a success");
    for call in &calls {
        for (name, value) in TRACE {
            assert_eq!(header(&call.headers, name), value, "{name}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn with_propagation_off_no_trace_context_reaches_payments() {
    let (server, seen) = payments(|_| respond(200, &[], "{}")).await;
    let app = Checkout::start(&server.url(), &[("PROPAGATE", "0")]).await;

    let (status, body) = app.checkout(&TRACE).await;
    assert_eq!(status, 200, "{body}");
    let calls = calls(&seen);
    assert_eq!(calls.len(), 1);
    for (name, _) in TRACE {
        assert!(
            !calls[0].headers.contains_key(name),
            "{name} was passed on: {:?}",
            calls[0].headers
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_waited_instead_of_the_backoff() {
    let (server, seen) = payments(|n| match n {
        0 => respond(503, &[("retry-after", "1")], "busy"),
        _ => respond(200, &[], "{}"),
    })
    .await;
    // The backoff alone would retry after 1 ms.
    let app = Checkout::start(&server.url(), &[("BACKOFF_MS", "1")]).await;

    let (status, body) = app.checkout(&[]).await;
    assert_eq!(status, 200, "{body}");
    let calls = calls(&seen);
    assert_eq!(calls.len(), 2);
    let gap = calls[1].at - calls[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    app.stop().await;
}
