//! Services in the loop, played end to end: the shipped checkout example behind a named payments
//! proxy, through real processes and real sockets.

use std::time::Duration;

use traceforge::runner::{self, RunOptions, RunReport};
use traceforge::scenario::topology::{
    Entry, NamedProxy, Piece, ProxyUpstream, Readiness, ServiceConfig, Template, Topology,
};
use traceforge::scenario::{self, Route, Scenario};

use crate::support;

/// The checkout example with `env` added, behind `payments` (a mock answering `/charge`) with a
/// 30% 503 rule, and `requests` load requests at `concurrency`.
pub fn checkout(env: &[(&str, &str)], requests: u64, concurrency: u32) -> Scenario {
    let text = format!(
        r#"
name = "checkout-smoke"
seed = 7
[load]
requests = {requests}
concurrency = {concurrency}
client_trace = true
targets = [{{ path = "/checkout", method = "POST", body = {{ item = 1 }} }}]
"#
    );
    let mut s = scenario::parse_str("smoke.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let faults = scenario::parse_str(
        "faults.toml",
        "name = \"f\"\n[[faults]]\nname = \"pay-503\"\nkind = \"error\"\nstatus = 503\nprobability = 0.3\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .faults;
    let mut service_env = vec![
        (
            "PORT".to_string(),
            Template {
                pieces: vec![Piece::Port],
            },
        ),
        (
            "PAYMENTS_URL".to_string(),
            Template {
                pieces: vec![Piece::ProxyUrl("payments".into())],
            },
        ),
        ("BACKOFF_MS".to_string(), Template::text("1")),
    ];
    for (k, v) in env {
        service_env.push((k.to_string(), Template::text(*v)));
    }
    s.topology = Some(Topology {
        services: vec![ServiceConfig {
            name: "checkout".into(),
            command: vec![
                Template::text("python3"),
                Template::text(
                    support::root()
                        .join("examples/checkout/app.py")
                        .display()
                        .to_string(),
                ),
            ],
            env: service_env,
            cwd: None,
            port: None,
            ready: Readiness::Http("/health".into()),
            ready_timeout: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(5),
        }],
        proxies: vec![NamedProxy {
            name: "payments".into(),
            upstream: ProxyUpstream::Mock(vec![Route {
                path: "/charge".into(),
                methods: vec![hyper::Method::POST],
                status: hyper::StatusCode::OK,
                body: "{\"ok\":true}".into(),
                headers: Vec::new(),
                latency: Duration::ZERO,
            }]),
            faults,
            config: Default::default(),
        }],
        entry: Entry::Service("checkout".into()),
        client: None,
    });
    s
}

fn play(s: &Scenario, logs: &std::path::Path) -> RunReport {
    let mut options = RunOptions::new(logs.join("golden")).accepting();
    options.logs = logs.to_path_buf();
    runner::play(s, &options).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let a = play(&checkout(&[], 40, 1), dir.path());
    let b = play(&checkout(&[], 40, 8), dir.path());
    println!("{}", a.body.clone().unwrap());
    assert_eq!(a.body, b.body);
}
