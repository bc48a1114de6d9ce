//! Load profiles over real sockets: open loops keep their schedule and count, latency from the
//! intended send time shows a stall a closed loop hides, ramps reach their rates, closed loops
//! for a duration stop on time, the request mix sends headers and bodies, and the retry policy
//! (`on`, `Retry-After`, `max_backoff`) is followed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use traceforge::record::Outcome;

use crate::support::{header, play_text, respond, serve};

const DEMO: &str = r#"
name = "profile"
seed = 5
[load]
client_trace = true
"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Starts recorded by outcomes (from the start of the run) below `until`.
fn started_before(outcomes: &[Outcome], until: Duration) -> usize {
    outcomes.iter().filter(|o| o.start < until).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_sends_exactly_its_requests_on_schedule() {
    let played = play_text(DEMO, &["load.rate=100", "load.requests=50"]).await;
    let o = &played.outcomes;
    assert_eq!(played.report.summary.requests, 50);
    assert_eq!(
        o.iter().map(|o| o.index).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    for outcome in o {
        // The schedule itself: request i is due at i / rate (microsecond output resolution).
        let due = Duration::from_millis(10 * outcome.index);
        assert!(
            outcome.scheduled.abs_diff(due) <= Duration::from_micros(1),
            "#{} scheduled at {:?}",
            outcome.index,
            outcome.scheduled
        );
        // No request starts early; latency counts from the schedule, so it covers the service time.
        assert!(outcome.start + Duration::from_micros(1) >= outcome.scheduled);
        assert!(outcome.latency + Duration::from_micros(1) >= outcome.service);
    }
    // The last request is due at 490ms and starts no earlier, however late the first one was
    // scheduled onto a busy machine.
    assert!(
        o[49].start >= Duration::from_millis(489),
        "the last of 50 requests at 100/s started at {:?}",
        o[49].start
    );

    // rate x duration: floor(40/s x 0.5s) = 20 requests, whatever the server does.
    let played = play_text(DEMO, &["load.rate=40", "load.duration=\"0.5s\""]).await;
    assert_eq!(played.outcomes.len(), 20);
    assert_eq!(played.report.summary.requests, 20);
}

/// A server that handles one request at a time (like a single-threaded service) and stalls for
/// one second on request #30.
async fn stalling_server() -> traceforge::server::Listening {
    let one_at_a_time = Arc::new(Mutex::new(()));
    let (listening, _) = serve(move |seen| {
        let lock = one_at_a_time.clone();
        async move {
            let _turn = lock.lock().await;
            if header(&seen.headers, "x-traceforge-index") == "30"
                && header(&seen.headers, "x-traceforge-attempt") == "0"
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            respond(200, &[], "ok")
        }
    })
    .await;
    listening
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_percentiles_show_a_stall_that_a_closed_loop_hides() {
    let server = stalling_server().await;
    let url = format!("upstream.url=\"http://{}\"", server.addr);
    // The server stalls on the index the proxy passes on when asked.
    let fwd = "proxy.forward_traceforge_headers=true";
    let open = play_text(DEMO, &[&url, fwd, "load.rate=100", "load.requests=150"]).await;
    let closed = play_text(
        DEMO,
        &[&url, fwd, "load.concurrency=1", "load.requests=150"],
    )
    .await;
    let open_p99 = open.report.summary.latency.quantile(0.99);
    let closed_p99 = closed.report.summary.latency.quantile(0.99);
    let closed_max = closed.report.summary.latency.max();
    // Closed loop: the stalled request is one sample of 150; the requests that would have been
    // sent during the stall were simply not sent, so p99 stays small.
    assert!(closed_max >= Duration::from_millis(990), "{closed_max:?}");
    // Open loop: the ~100 requests due during the stall waited, and their latency counts from
    // when they were due.
    assert!(
        open_p99 >= Duration::from_millis(700),
        "open-loop p99 {:.1}ms should show the 1s stall",
        ms(open_p99)
    );
    let slow_open = open
        .outcomes
        .iter()
        .filter(|o| o.latency >= Duration::from_millis(500))
        .count();
    let slow_closed = closed
        .outcomes
        .iter()
        .filter(|o| o.latency >= Duration::from_millis(500))
        .count();
    assert!(slow_open >= 30, "{slow_open} slow open-loop requests");
    assert!(
        slow_closed < slow_open / 4,
        "closed loop: {slow_closed} slow requests, open loop: {slow_open}"
    );
    assert!(
        closed_p99 < open_p99,
        "closed p99 {closed_p99:?} vs open p99 {open_p99:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_stages_ramp_to_their_rates() {
    // 0 -> 100/s over 1s (50 requests), then 100/s for 1s (100 requests).
    let text = format!(
        "{DEMO}stages = [{{ duration = \"1s\", rate = 100 }}, {{ duration = \"1s\", rate = 100 }}]\n"
    );
    let played = play_text(&text, &[]).await;
    let o = &played.outcomes;
    assert_eq!(o.len(), 150);
    // The schedule: N(t) = 50 t^2 on the ramp, then 100/s.
    let scheduled_before = |t: f64| {
        o.iter()
            .filter(|o| o.scheduled < Duration::from_secs_f64(t))
            .count()
    };
    assert_eq!(scheduled_before(0.5), 13); // 50 x 0.25 = 12.5 -> indexes 0..=12
    assert_eq!(scheduled_before(1.0), 50);
    assert_eq!(scheduled_before(1.5), 100);
    // The starts: never early, so at most the scheduled counts; generous lower bounds.
    let first_half_ramp = started_before(o, Duration::from_millis(500));
    let ramp = started_before(o, Duration::from_secs(1));
    assert!(first_half_ramp <= 13, "{first_half_ramp}");
    assert!(ramp <= 50, "{ramp}");
    assert!(
        ramp >= 30,
        "{ramp} of 50 ramp requests started during the ramp"
    );
    let steady = o.len() - ramp;
    assert!(
        steady >= 100,
        "the steady stage sends at least its 100: {steady}"
    );
    // The rate the ramp reached: the second half of the ramp sends about 3x the first half.
    let second_half_ramp = ramp - first_half_ramp;
    assert!(
        second_half_ramp > first_half_ramp,
        "{first_half_ramp} then {second_half_ramp}"
    );
}

/// The most requests in flight at any moment, from recorded starts and service times.
fn max_overlap(outcomes: &[Outcome]) -> usize {
    let mut events: Vec<(Duration, i32)> = Vec::new();
    for o in outcomes {
        events.push((o.start, 1));
        events.push((o.start + o.service, -1));
    }
    // Ends sort before starts at the same instant: a worker's next request starts as one ends.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loops_run_for_a_duration_and_follow_concurrency_stages() {
    let played = play_text(DEMO, &["load.duration=\"400ms\"", "load.concurrency=3"]).await;
    let o = &played.outcomes;
    assert!(!o.is_empty());
    assert!(o.iter().all(|o| o.start < Duration::from_millis(400)));
    assert!(max_overlap(o) <= 3, "{}", max_overlap(o));
    let body = played.report.body.clone().unwrap_or_default();
    assert!(
        body.contains("per-request lines and counts omitted") && !body.contains("#0000"),
        "{body}"
    );
    assert!(
        body.contains("load:         closed loop at concurrency 3 for 400ms"),
        "{body}"
    );

    // Jump to 2 workers, hold for 300ms, then ramp 2 -> 4 over 300ms.
    let text = format!(
        "{DEMO}stages = [{{ duration = \"0s\", concurrency = 2 }}, {{ duration = \"300ms\", concurrency = 2 }}, {{ duration = \"300ms\", concurrency = 4 }}]\n"
    );
    let played = play_text(&text, &[]).await;
    let o = &played.outcomes;
    assert!(o.iter().all(|o| o.start < Duration::from_millis(600)));
    let early: Vec<Outcome> = o
        .iter()
        .filter(|o| o.start + o.service < Duration::from_millis(300))
        .cloned()
        .collect();
    assert!(max_overlap(&early) <= 2, "{}", max_overlap(&early));
    assert!(max_overlap(o) <= 4, "{}", max_overlap(o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_send_their_headers_and_bodies_on_every_attempt() {
    let (server, seen) = serve(|s| async move {
        if header(&s.headers, "x-traceforge-attempt") == "0" {
            respond(503, &[], "")
        } else {
            respond(200, &[], "ok")
        }
    })
    .await;
    let text = format!(
        r#"
name = "mix"
[upstream]
url = "http://{}"
[proxy]
forward_traceforge_headers = true
[load]
requests = 4
concurrency = 2
retries = 1
retry_backoff = "1ms"
targets = [
  {{ path = "/json", method = "POST", body = {{ user = "ada", tags = [1, 2] }}, headers = {{ authorization = "Bearer t" }} }},
  {{ path = "/text", method = "PUT", body = "plain", headers = {{ content-type = "text/plain" }} }},
]
"#,
        server.addr
    );
    let played = play_text(&text, &[]).await;
    assert_eq!(played.report.summary.succeeded, 4);
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 8, "4 requests, 2 attempts each");
    for s in &seen {
        match s.path.as_str() {
            "/json" => {
                assert_eq!(s.method, hyper::Method::POST);
                assert_eq!(header(&s.headers, "authorization"), "Bearer t");
                assert_eq!(header(&s.headers, "content-type"), "application/json");
                let v: serde_json::Value =
                    serde_json::from_slice(&s.body).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(v, serde_json::json!({ "user": "ada", "tags": [1, 2] }));
            }
            "/text" => {
                assert_eq!(s.method, hyper::Method::PUT);
                assert_eq!(header(&s.headers, "content-type"), "text/plain");
                assert_eq!(&s.body[..], b"plain");
            }
            other => panic!("unexpected path {other}"),
        }
    }
    server.shutdown().await;
}

/// A server that answers 503 with `Retry-After: 1` on the first attempt and 200 after.
async fn retry_after_server() -> traceforge::server::Listening {
    let (listening, _) = serve(|s| async move {
        if header(&s.headers, "x-traceforge-attempt") == "0" {
            respond(503, &[("retry-after", "1")], "busy")
        } else {
            respond(200, &[], "ok")
        }
    })
    .await;
    listening
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_capped_by_max_backoff() {
    let server = retry_after_server().await;
    let url = format!("upstream.url=\"http://{}\"", server.addr);
    let base = [
        url.as_str(),
        "proxy.forward_traceforge_headers=true",
        "load.requests=2",
        "load.retry.max=2",
        "load.retry.backoff=\"10ms\"",
    ];
    let played = play_text(DEMO, &base).await;
    for o in &played.outcomes {
        assert_eq!(o.attempts.len(), 2, "{o:?}");
        assert_eq!(o.status, Some(200));
        // The wait between the attempts is the server's 1s, not the 10ms backoff.
        let waited = o
            .service
            .saturating_sub(o.attempts[0].latency + o.attempts[1].latency);
        assert!(waited >= Duration::from_millis(999), "waited {waited:?}");
    }

    let mut capped = base.to_vec();
    capped.push("load.retry.max_backoff=\"50ms\"");
    let played = play_text(DEMO, &capped).await;
    for o in &played.outcomes {
        assert_eq!(o.attempts.len(), 2);
        let waited = o
            .service
            .saturating_sub(o.attempts[0].latency + o.attempts[1].latency);
        assert!(waited >= Duration::from_millis(49), "waited {waited:?}");
        assert!(
            waited < Duration::from_millis(900),
            "max_backoff caps Retry-After: waited {waited:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_chooses_what_is_retried() {
    let text = r#"
name = "retry-on"
faults = ["error:500:1.0:/api"]
[load]
requests = 4
concurrency = 2
[load.retry]
max = 2
backoff = "1ms"
"#;
    let only_503 = play_text(text, &["load.retry.on=[503]"]).await;
    assert_eq!(only_503.report.summary.attempts, 4, "500 is not retried");
    let fives = play_text(text, &["load.retry.on=[\"5xx\"]"]).await;
    assert_eq!(fives.report.summary.attempts, 12, "5xx: 3 attempts each");
    let default = play_text(text, &[]).await;
    assert_eq!(
        default.report.summary.attempts, 12,
        "the default retries 5xx"
    );
}
