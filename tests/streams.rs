//! Streams through the proxy: the demo upstream's server-sent events (`/api/events`) pass on as
//! they come, never held back, and the `stream` fault cuts them after whole events or holds each
//! one. Clients: hyper, frame by frame, and curl.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use traceforge::fault::FaultPlan;
use traceforge::scenario::ProxyConfig;

use crate::proxy::{demo_upstream, plan, start_proxy};
use crate::support::bounded;

/// Sends GET `url` and reads the body frame by frame until it ends, fails, or `enough` holds for
/// what arrived. Returns the text and whether the body ended cleanly.
async fn read_events(url: &str, enough: impl Fn(&str) -> bool) -> (StatusCode, String, bool) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = bounded(client.get(url.parse().unwrap_or_else(|e| panic!("{e}"))))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    let mut body = response.into_body();
    let mut text = String::new();
    loop {
        match bounded(body.frame()).await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
                if enough(&text) {
                    return (status, text, false);
                }
            }
            Some(Err(_)) => return (status, text, false),
            None => return (status, text, true),
        }
    }
}

fn events(text: &str) -> usize {
    text.matches("\n\n").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_passes_the_proxy_before_the_next_one_exists() {
    let up = demo_upstream(vec![]).await;
    let proxy = start_proxy(
        &up.url(),
        FaultPlan::new(1, Vec::new()),
        ProxyConfig::default(),
    )
    .await;
    // The second event comes a minute after the first: a proxy that buffered the stream would
    // hand over nothing until then, and `bounded` would give up first.
    let url = format!("{}/api/events?count=2&interval=60000", proxy.url());
    let (status, text, _) = read_events(&url, |t| events(t) >= 1).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.starts_with("id: 0\nevent: tick\ndata: {\"n\":0,\"of\":2}\n\n"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_fault_cuts_after_whole_events_and_closes_the_connection() {
    let up = demo_upstream(vec![]).await;
    let rules = plan(
        1,
        "[[faults]]\nname = \"cut\"\nkind = \"stream\"\nafter_events = 3\n",
    );
    let proxy = start_proxy(&up.url(), rules, ProxyConfig::default()).await;
    let url = format!("{}/api/events?count=10&interval=5", proxy.url());
    let (status, text, clean) = read_events(&url, |_| false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&text), 3, "{text:?}");
    assert!(text.ends_with("data: {\"n\":2,\"of\":10}\n\n"), "{text:?}");
    assert!(!clean, "a cut stream must not end like a finished one");

    // Other bodies pass unchanged: the fault only reads event streams.
    let (_, text, clean) = read_events(&format!("{}/api/bytes/100", proxy.url()), |_| false).await;
    assert_eq!((text.len(), clean), (100, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_fault_holds_each_event() {
    let up = demo_upstream(vec![]).await;
    let rules = plan(
        1,
        "[[faults]]\nname = \"slow-events\"\nkind = \"stream\"\nevent_delay = \"150ms\"\n",
    );
    let proxy = start_proxy(&up.url(), rules, ProxyConfig::default()).await;
    let started = Instant::now();
    let url = format!("{}/api/events?count=3&interval=0", proxy.url());
    let (_, text, clean) = read_events(&url, |_| false).await;
    assert_eq!((events(&text), clean), (3, true), "{text:?}");
    // Each of the three events waited its delay: a lower bound, whatever else the machine does.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_the_cut_stream() {
    if !crate::support::have_curl() {
        return;
    }
    let up = demo_upstream(vec![]).await;
    let rules = plan(1, "faults = [{ kind = \"stream\", after_events = 2 }]\n");
    let proxy = start_proxy(&up.url(), rules, ProxyConfig::default()).await;
    let url = format!("{}/api/events?count=5&interval=10", proxy.url());
    let out = crate::support::curl(&["-sN", "--max-time", "20", &url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(events(&text), 2, "{text:?}");
    // curl says the transfer ended early (18: partial file), as it would for a dropped stream.
    assert_eq!(out.status.code(), Some(18), "{text:?}");
}
