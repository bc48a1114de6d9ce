//! `dashboards/traceforge-proxy.json`, the Grafana dashboard over the proxy's metrics: every metric
//! name its queries use exists in a real `/metrics` scrape, after traffic that makes every one of
//! them appear (a proxy with delay, error, drop, reset and hang rules, and one in front of a
//! closed port for the upstream errors).

use std::collections::BTreeSet;

use traceforge::scenario::ProxyConfig;

use crate::proxy::{demo_upstream, plan, start_proxy};
use crate::support::{self, bounded, client, get};

/// Every `traceforge_…` name in the dashboard's queries, a histogram's series (`_bucket`, `_sum`,
/// `_count`) under its own name.
fn queried_metrics() -> BTreeSet<String> {
    let path = support::root().join("dashboards/traceforge-proxy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("no panels"));
    let mut names = BTreeSet::new();
    let mut queries = 0;
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            queries += 1;
            let mut rest = expr;
            while let Some(at) = rest.find("traceforge_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    assert!(queries >= 7, "{queries} queries");
    names
}

/// The metric families a scrape declares (`# TYPE name kind`), with a histogram's series names.
fn scraped(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_string());
            if kind == "histogram" {
                for series in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{series}"));
                }
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_in_a_real_scrape() {
    bounded(async {
        let up = demo_upstream(vec![]).await;
        let faults = r#"
[[faults]]
name = "slow"
kind = "delay"
delay = "1ms"
match = { path = "/api/resource" }

[[faults]]
name = "boom"
kind = "error"
status = 503
match = { path = "/api/boom" }

[[faults]]
name = "gone"
kind = "drop"
match = { path = "/api/gone" }

[[faults]]
name = "cut"
kind = "reset"
match = { path = "/api/cut" }

[[faults]]
name = "stuck"
kind = "hang"
cap = "10ms"
match = { path = "/api/stuck" }
"#;
        let proxy = start_proxy(&up.url(), plan(4, faults), ProxyConfig::default()).await;
        // A closed port: the second proxy's every request is an upstream error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        let broken = start_proxy(
            &format!("http://{closed}"),
            plan(4, ""),
            ProxyConfig::default(),
        )
        .await;
        let c = client();
        for path in ["/api/resource", "/api/boom", "/api/gone", "/api/stuck"] {
            get(&c, &format!("{}{path}", proxy.url()), &[]).await;
        }
        // A reset has no answer; the client's error is the point.
        let _ = c
            .get(
                format!("{}/api/cut", proxy.url())
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await;
        get(&c, &format!("{}/api/resource", broken.url()), &[]).await;

        let mut available = BTreeSet::new();
        for p in [&proxy, &broken] {
            let reply = get(&c, &format!("{}/metrics", p.url()), &[]).await;
            available.extend(scraped(&reply.text()));
        }
        let missing: Vec<String> = queried_metrics()
            .into_iter()
            .filter(|name| !available.contains(name))
            .collect();
        assert!(
            missing.is_empty(),
            "the dashboard queries metrics no scrape has: {missing:?}\nscraped: {available:?}"
        );
    })
    .await;
}
