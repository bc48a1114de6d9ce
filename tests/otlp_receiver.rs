//! A test OTLP/HTTP receiver: a server on 127.0.0.1 that decodes every request with the official
//! protobuf definitions (`opentelemetry-proto`), as a collector would, and keeps what it received
//! as plain values to assert on. It can also answer with an error status, or never answer.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::sync::watch;

use crate::support::loopback;

/// OTLP span flags: the parent's remoteness is known, and the parent is remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// One span as the receiver decoded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// Every resource attribute, stringified.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name and version.
    pub scope: String,
    pub scope_version: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits; empty when the span has no parent.
    pub parent_span_id: String,
    /// `Some(remote)` when the span's flags say whether its parent is remote.
    pub parent_is_remote: Option<bool>,
    pub name: String,
    /// The protobuf enum: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Values stringified: strings as they are, numbers and booleans as Rust prints them.
    pub attributes: BTreeMap<String, String>,
    /// (name, attributes) of each event, in order.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// The time of each event, in the order of `events`.
    pub event_unix_nanos: Vec<u64>,
    /// The protobuf enum: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
}

/// One request the receiver got, whatever it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// Spans the body held (0 when it did not decode).
    pub spans: usize,
    /// Why the body did not decode as an `ExportTraceServiceRequest`.
    pub decode_error: Option<String>,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 with an empty `ExportTraceServiceResponse`; the spans are kept.
    Accept,
    /// This status, after reading the request; the spans are not kept.
    Fail(StatusCode),
    /// Reads the request and never answers.
    Never,
}

#[derive(Debug, Default)]
struct Received {
    requests: Vec<ReceivedRequest>,
    spans: Vec<ReceivedSpan>,
}

/// A running receiver; dropping it stops the server and closes every connection.
pub struct Receiver {
    listening: traceforge::server::Listening,
    received: watch::Sender<Received>,
}

impl Receiver {
    /// A receiver that accepts everything (200).
    pub async fn start() -> Receiver {
        Self::spawn(Answer::Accept).await
    }

    /// A receiver that reads each request and answers `status` (a 503, say), keeping no spans.
    pub async fn start_failing(status: u16) -> Receiver {
        let status = StatusCode::from_u16(status).unwrap_or_else(|e| panic!("{status}: {e}"));
        Self::spawn(Answer::Fail(status)).await
    }

    /// A receiver that reads each request and never answers, keeping no spans.
    pub async fn start_silent() -> Receiver {
        Self::spawn(Answer::Never).await
    }

    async fn spawn(answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind(loopback())
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let (received, _) = watch::channel(Received::default());
        let shared = received.clone();
        let listening = traceforge::server::spawn_tcp(listener, move |stream, shutdown| {
            let received = shared.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let received = received.clone();
                async move { Ok::<_, Infallible>(handle(request, answer, &received).await) }
            });
            traceforge::server::serve_connection(stream, service, shutdown)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Receiver {
            listening,
            received,
        }
    }

    /// `http://127.0.0.1:PORT`, the base URL an exporter is pointed at.
    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// Every span kept so far, in the order received.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.borrow().spans.clone()
    }

    /// Every request so far, in the order received.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.received.borrow().requests.clone()
    }

    /// The content type of every request so far.
    pub fn content_types(&self) -> Vec<Option<String>> {
        self.requests()
            .into_iter()
            .map(|r| r.content_type)
            .collect()
    }

    /// Waits until at least `count` spans were kept, and returns them all; panics after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<ReceivedSpan> {
        self.wait_until(&format!("{count} spans"), within, |r| {
            r.spans.len() >= count
        })
        .await;
        self.spans()
    }

    /// Waits until at least `count` requests arrived, whatever they held; panics after `within`.
    pub async fn wait_for_requests(&self, count: usize, within: Duration) -> Vec<ReceivedRequest> {
        self.wait_until(&format!("{count} requests"), within, |r| {
            r.requests.len() >= count
        })
        .await;
        self.requests()
    }

    async fn wait_until(&self, what: &str, within: Duration, done: impl FnMut(&Received) -> bool) {
        let mut changes = self.received.subscribe();
        let waited = tokio::time::timeout(within, changes.wait_for(done)).await;
        if !matches!(waited, Ok(Ok(_))) {
            let received = self.received.borrow();
            panic!(
                "the OTLP receiver did not get {what} within {within:?}: it got {} spans in {} \
                 requests: {:?}",
                received.spans.len(),
                received.requests.len(),
                received.requests
            );
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    answer: Answer,
    received: &watch::Sender<Received>,
) -> Response<Full<Bytes>> {
    let header = |name: hyper::header::HeaderName| {
        request
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut record = ReceivedRequest {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        content_type: header(hyper::header::CONTENT_TYPE),
        user_agent: header(hyper::header::USER_AGENT),
        spans: 0,
        decode_error: None,
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            record.decode_error = Some(format!("reading the body: {e}"));
            received.send_modify(|r| r.requests.push(record));
            return reply(StatusCode::BAD_REQUEST, Bytes::new());
        }
    };
    let spans = match ExportTraceServiceRequest::decode(body) {
        Ok(export) => flatten(export),
        Err(e) => {
            record.decode_error = Some(e.to_string());
            received.send_modify(|r| r.requests.push(record));
            return reply(StatusCode::BAD_REQUEST, Bytes::new());
        }
    };
    record.spans = spans.len();
    received.send_modify(|r| {
        r.requests.push(record);
        if answer == Answer::Accept {
            r.spans.extend(spans);
        }
    });
    match answer {
        Answer::Accept => reply(
            StatusCode::OK,
            Bytes::from(ExportTraceServiceResponse::default().encode_to_vec()),
        ),
        Answer::Fail(status) => reply(status, Bytes::new()),
        Answer::Never => std::future::pending().await,
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

/// Every span of `export`, with its resource and scope.
fn flatten(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = attributes(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let (scope, scope_version) = scope_spans
                .scope
                .map(|s| (s.name, s.version))
                .unwrap_or_default();
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                out.push(ReceivedSpan {
                    service: service.clone(),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    scope_version: scope_version.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    parent_is_remote: (span.flags & FLAG_HAS_IS_REMOTE != 0)
                        .then_some(span.flags & FLAG_IS_REMOTE != 0),
                    name: span.name,
                    kind: span.kind,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    event_unix_nanos: span.events.iter().map(|e| e.time_unix_nano).collect(),
                    events: span
                        .events
                        .into_iter()
                        .map(|e| (e.name, attributes(&e.attributes)))
                        .collect(),
                    status_code: status.code,
                    status_message: status.message,
                });
            }
        }
    }
    out
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
        .collect()
}

fn value(any: Option<&AnyValue>) -> String {
    match any.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        // An index into a profile's string table: never in traces.
        Some(any_value::Value::StringValueStrindex(i)) => format!("<string #{i}>"),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, value(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
