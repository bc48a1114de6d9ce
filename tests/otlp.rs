//! OTLP/HTTP span export over real sockets, decoded by a receiver built on the official protobuf
//! definitions: exact ids, times, attributes, events and status; endpoint URLs; and every way a
//! span can be lost (a failing, silent or absent collector, a full queue) counted, never hanging.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use traceforge::observe::otlp::{
    ExportStats, FinishedSpan, QUEUE_CAPACITY, SpanExport, traces_url,
};

use crate::otlp_receiver::Receiver;
use crate::support::{PATIENCE, bounded, loopback};

/// Protobuf enum values of the OTLP trace definitions.
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;
const STATUS_UNSET: i32 = 0;
const STATUS_ERROR: i32 = 2;

/// A generous outer bound: a shutdown that hangs fails the test instead of hanging it.
const NO_HANG: Duration = Duration::from_secs(30);

fn at(unix_nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nanos)
}

fn start(receiver: &Receiver, service: &str) -> SpanExport {
    let url = traces_url(&receiver.url()).unwrap();
    SpanExport::start(&url, service).unwrap()
}

/// A plain client span numbered `n`, with no parent.
fn numbered(n: u64) -> FinishedSpan {
    let mut trace_id = [0; 16];
    trace_id[8..].copy_from_slice(&n.to_be_bytes());
    FinishedSpan {
        trace_id,
        span_id: (n + 1).to_be_bytes(),
        parent: None,
        kind: SpanKind::Client,
        name: format!("span {n}"),
        start: at(1_000_000_000 + n),
        end: at(2_000_000_000 + n),
        attributes: vec![KeyValue::new("n", n as i64)],
        events: vec![],
        error: None,
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_with_exactly_their_ids_times_attributes_events_and_status() {
    let receiver = Receiver::start().await;
    let export = start(&receiver, "checkout-proxy");
    let sink = export.sink();

    let trace_id = *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36";
    let server = FinishedSpan {
        trace_id,
        span_id: *b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7",
        parent: Some((*b"\x53\x99\x5c\x3f\x42\xcd\x8a\xd8", true)),
        kind: SpanKind::Server,
        name: "GET /api/orders".to_string(),
        start: at(1_700_000_000_123_456_789),
        end: at(1_700_000_000_623_456_790),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 503_i64),
            KeyValue::new("traceforge.fault", true),
            KeyValue::new("traceforge.delay_seconds", 0.25),
        ],
        events: vec![
            (
                "fault".to_string(),
                at(1_700_000_000_223_456_789),
                vec![
                    KeyValue::new("rule", "flaky"),
                    KeyValue::new("kind", "error"),
                ],
            ),
            (
                "response".to_string(),
                at(1_700_000_000_623_456_000),
                vec![],
            ),
        ],
        error: Some("injected 503".to_string()),
    };
    let client = FinishedSpan {
        trace_id,
        span_id: *b"\x11\x22\x33\x44\x55\x66\x77\x88",
        parent: Some((server.span_id, false)),
        kind: SpanKind::Client,
        name: "GET".to_string(),
        start: at(1_700_000_000_300_000_000),
        end: at(1_700_000_000_600_000_000),
        attributes: vec![KeyValue::new("server.address", "127.0.0.1")],
        events: vec![],
        error: None,
    };
    let root = FinishedSpan {
        parent: None,
        ..numbered(7)
    };
    sink.send(server);
    sink.send(client);
    sink.send(root);

    // Before any shutdown: a short run's spans go out on their own, within the batch delay.
    let spans = receiver.wait_for(3, PATIENCE).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
    };

    let server = by_name("GET /api/orders");
    assert_eq!(server.service, "checkout-proxy");
    assert_eq!(
        server
            .resource
            .get("telemetry.sdk.language")
            .map(String::as_str),
        Some("rust"),
        "the SDK's own resource attributes are there too: {:?}",
        server.resource
    );
    assert_eq!(server.scope, "traceforge");
    assert_eq!(server.scope_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(server.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server.span_id, "00f067aa0ba902b7");
    assert_eq!(server.parent_span_id, "53995c3f42cd8ad8");
    assert_eq!(server.parent_is_remote, Some(true));
    assert_eq!(server.kind, KIND_SERVER);
    assert_eq!(server.start_unix_nanos, 1_700_000_000_123_456_789);
    assert_eq!(server.end_unix_nanos, 1_700_000_000_623_456_790);
    assert_eq!(
        server.attributes,
        map(&[
            ("http.request.method", "GET"),
            ("http.response.status_code", "503"),
            ("traceforge.delay_seconds", "0.25"),
            ("traceforge.fault", "true"),
        ])
    );
    assert_eq!(
        server.events,
        vec![
            (
                "fault".to_string(),
                map(&[("kind", "error"), ("rule", "flaky")])
            ),
            ("response".to_string(), BTreeMap::new()),
        ]
    );
    assert_eq!(
        server.event_unix_nanos,
        vec![1_700_000_000_223_456_789, 1_700_000_000_623_456_000]
    );
    assert_eq!(server.status_code, STATUS_ERROR);
    assert_eq!(server.status_message, "injected 503");

    let client = by_name("GET");
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.span_id, "1122334455667788");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.parent_is_remote, Some(false));
    assert_eq!(client.kind, KIND_CLIENT);
    assert_eq!(client.start_unix_nanos, 1_700_000_000_300_000_000);
    assert_eq!(client.end_unix_nanos, 1_700_000_000_600_000_000);
    assert_eq!(client.attributes, map(&[("server.address", "127.0.0.1")]));
    assert_eq!(client.status_code, STATUS_UNSET);
    assert_eq!(client.status_message, "");

    let root = by_name("span 7");
    assert_eq!(root.trace_id, "00000000000000000000000000000007");
    assert_eq!(root.span_id, "0000000000000008");
    assert_eq!(root.parent_span_id, "", "a root span has no parent id");
    assert_eq!(root.parent_is_remote, Some(false));
    assert_eq!(root.attributes, map(&[("n", "7")]));

    for request in receiver.requests() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(request.decode_error, None);
    }

    let stats = bounded(export.shutdown(PATIENCE)).await;
    assert_eq!(
        stats,
        ExportStats {
            exported: 3,
            dropped: 0
        }
    );
    assert_eq!(sink.dropped(), 0);
    // After shutdown, a span has nowhere to go: it is counted, not lost silently.
    sink.send(numbered(8));
    assert_eq!(sink.dropped(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_share_a_collector_each_under_its_own_name() {
    let receiver = Receiver::start().await;
    let proxy = start(&receiver, "proxy");
    let load = start(&receiver, "load");
    proxy.sink().send(numbered(1));
    load.sink().send(numbered(2));
    load.sink().send(numbered(3));
    let stats = (
        bounded(proxy.shutdown(PATIENCE)).await,
        bounded(load.shutdown(PATIENCE)).await,
    );
    assert_eq!(stats.0.exported, 1);
    assert_eq!(stats.1.exported, 2);
    let mut services: Vec<(String, String)> = receiver
        .spans()
        .into_iter()
        .map(|s| (s.name, s.service))
        .collect();
    services.sort();
    assert_eq!(
        services,
        [
            ("span 1".to_string(), "proxy".to_string()),
            ("span 2".to_string(), "load".to_string()),
            ("span 3".to_string(), "load".to_string()),
        ]
    );
}

#[test]
fn a_base_url_gets_the_traces_path_and_a_url_with_a_path_is_kept() {
    let cases = [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        (
            "https://collector.example",
            "https://collector.example/v1/traces",
        ),
        ("http://[::1]:4318", "http://[::1]:4318/v1/traces"),
        (
            "http://c:4318/?tenant=a",
            "http://c:4318/v1/traces?tenant=a",
        ),
        (
            "http://c:4318/otlp/v1/traces",
            "http://c:4318/otlp/v1/traces",
        ),
        ("https://c.example/custom", "https://c.example/custom"),
    ];
    for (given, expected) in cases {
        let url = traces_url(given).unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_eq!(url.to_string(), expected, "{given}");
    }
}

#[test]
fn anything_but_an_absolute_http_or_https_url_is_refused_with_what_is_valid() {
    for bad in [
        "",
        "collector:4318",
        "localhost",
        "/v1/traces",
        "grpc://collector:4317",
        "ftp://collector/",
        "http://",
        "http:// spaces /",
        "not a url",
    ] {
        let error = traces_url(bad).expect_err(bad);
        assert!(
            error.contains("http:// or https://") && error.contains(&format!("{bad:?}")),
            "{bad:?}: {error}"
        );
    }
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let url = traces_url("http://127.0.0.1:4318").unwrap();
    let error = SpanExport::start(&url, "svc").expect_err("no runtime");
    assert!(error.contains("tokio runtime"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_collector_drops_every_span_and_counts_them() {
    let receiver = Receiver::start_failing(503).await;
    let export = start(&receiver, "svc");
    let sink = export.sink();
    for n in 0..5 {
        sink.send(numbered(n));
    }
    let stats = bounded(export.shutdown(PATIENCE)).await;
    assert_eq!(
        stats,
        ExportStats {
            exported: 0,
            dropped: 5
        }
    );
    assert_eq!(sink.dropped(), 5);
    let requests = receiver.requests();
    assert!(!requests.is_empty(), "the collector was never asked");
    // A 503 is worth retrying (OTLP/HTTP says so): the same batch, a few times at most.
    assert!(requests.len() <= 4, "{requests:#?}");
    assert!(requests.iter().all(|r| r.spans == 5), "{requests:#?}");
    assert!(receiver.spans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_from_the_collector_is_not_retried() {
    let receiver = Receiver::start_failing(400).await;
    let export = start(&receiver, "svc");
    export.sink().send(numbered(1));
    let stats = bounded(export.shutdown(PATIENCE)).await;
    assert_eq!(
        stats,
        ExportStats {
            exported: 0,
            dropped: 1
        }
    );
    assert_eq!(receiver.requests().len(), 1, "{:#?}", receiver.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_does_not_hang_shutdown() {
    let receiver = Receiver::start_silent().await;
    let export = start(&receiver, "svc");
    let sink = export.sink();
    sink.send(numbered(1));
    sink.send(numbered(2));
    // The export is under way, and will never be answered.
    receiver.wait_for_requests(1, PATIENCE).await;
    sink.send(numbered(3));
    let stats = tokio::time::timeout(NO_HANG, export.shutdown(Duration::from_secs(1)))
        .await
        .expect("shutdown hung on a silent collector");
    assert_eq!(
        stats,
        ExportStats {
            exported: 0,
            dropped: 3
        }
    );
    assert_eq!(sink.dropped(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_drops_the_spans() {
    // A port nothing listens on any more.
    let addr = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = traces_url(&format!("http://{addr}")).unwrap();
    let export = SpanExport::start(&url, "svc").unwrap();
    export.sink().send(numbered(1));
    export.sink().send(numbered(2));
    let stats = tokio::time::timeout(NO_HANG, export.shutdown(PATIENCE))
        .await
        .expect("shutdown hung on an unreachable collector");
    assert_eq!(
        stats,
        ExportStats {
            exported: 0,
            dropped: 2
        }
    );
}

/// On the current-thread runtime the export task cannot run while the test sends without
/// yielding, so exactly the queue's capacity is queued and the rest is dropped.
#[tokio::test]
async fn a_full_queue_drops_spans_without_blocking_and_every_span_is_accounted_for() {
    let receiver = Receiver::start().await;
    let export = start(&receiver, "svc");
    let sink = export.sink();
    let sent = 2 * QUEUE_CAPACITY as u64 + 100;
    for n in 0..sent {
        sink.send(numbered(n));
    }
    assert_eq!(sink.dropped(), sent - QUEUE_CAPACITY as u64);
    let stats = tokio::time::timeout(NO_HANG, export.shutdown(PATIENCE))
        .await
        .expect("shutdown hung");
    assert_eq!(stats.exported + stats.dropped, sent, "{stats:?}");
    assert_eq!(stats.exported, QUEUE_CAPACITY as u64, "{stats:?}");
    assert_eq!(receiver.spans().len(), QUEUE_CAPACITY);
    assert!(
        receiver.requests().iter().all(|r| r.spans <= 512),
        "a batch holds at most 512 spans"
    );
}

/// A log sink for one test: what the fmt subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The subscriber is this thread's, so the test runs on the current-thread runtime, where the
/// export task runs too.
#[tokio::test]
async fn only_the_first_failed_export_is_a_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // 400 is not retried: one request per batch.
    let receiver = Receiver::start_failing(400).await;
    let export = start(&receiver, "svc");
    let sink = export.sink();
    for n in 1..=3 {
        sink.send(numbered(n));
        // The batch is being exported: the next span goes in a batch of its own.
        receiver.wait_for_requests(n as usize, PATIENCE).await;
    }
    let stats = bounded(export.shutdown(PATIENCE)).await;
    assert_eq!(
        stats,
        ExportStats {
            exported: 0,
            dropped: 3
        }
    );
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("OTLP export failed"))
        .collect();
    assert_eq!(failures.len(), 3, "{log}");
    assert!(failures[0].contains("WARN"), "{log}");
    assert!(failures[1..].iter().all(|l| l.contains("DEBUG")), "{log}");
}
