//! `[[phases]]`: blocks of requests (or of time on the virtual clock) that switch rules on and
//! off, played end to end: exactly the requests inside a block get the fault, at any
//! concurrency; and every mistake in a phase is a located error saying what would be valid.

use traceforge::record::Outcome;
use traceforge::scenario::{self, Scenario, ScenarioError};

use crate::support::play_text;

/// An outage enabled for requests 10 to 19 only, and a blip disabled for requests 30 to 34.
const BLOCKS: &str = r#"name = "phases-blocks"
seed = 9

[[faults]]
name = "outage"
kind = "error"
status = 503

[[faults]]
name = "blip"
kind = "status"
status = 299
match = { path = "/api/*" }

[[phases]]
name = "outage-block"
from = 10
until = 20
enable = ["outage"]

[[phases]]
from = 30
until = 35
disable = ["blip"]

[load]
requests = 40
concurrency = 1
retries = 0
targets = [{ path = "/api/resource" }]
"#;

/// Each outcome as `(index, status, faults of its only attempt)`.
fn summary(outcomes: &[Outcome]) -> Vec<(u64, Option<u16>, Vec<String>)> {
    outcomes
        .iter()
        .map(|o| {
            let faults = o
                .attempts
                .first()
                .map(|a| a.faults.clone())
                .unwrap_or_default();
            (o.index, o.status, faults)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_enabled_for_a_block_fires_exactly_there_and_a_disabled_one_everywhere_else() {
    let serial = play_text(BLOCKS, &[]).await;
    let parallel = play_text(BLOCKS, &["load.concurrency=16"]).await;
    let got = summary(&serial.outcomes);
    assert_eq!(got.len(), 40);
    for (index, status, faults) in &got {
        let (want_status, want_faults): (u16, &[&str]) = match index {
            10..=19 => (503, &["outage"]),
            30..=34 => (200, &[]),
            _ => (299, &["blip"]),
        };
        assert_eq!(*status, Some(want_status), "request {index}");
        assert_eq!(faults, want_faults, "request {index}");
    }
    assert_eq!(
        got,
        summary(&parallel.outcomes),
        "concurrency 1 and 16 agree"
    );
    // The rule lines say when the phases let each rule fire.
    let body = serial.report.body.clone().unwrap_or_default();
    assert!(
        body.contains("outage (error 503, on requests 10..20)\n"),
        "{body}"
    );
    assert!(
        body.contains("blip (status 299, path /api/*, off requests 30..35)\n"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_phase_on_the_virtual_clock_covers_exactly_its_requests() {
    // One request every 100ms: requests 10 to 19 arrive between 1s and 1.9s.
    let text = r#"name = "phases-time"
seed = 4

[run]
clock = "virtual"

[[faults]]
name = "outage"
kind = "error"
status = 503

[[phases]]
from = "950ms"
until = "1950ms"
enable = ["outage"]

[load]
rate = 10
requests = 40
retries = 0
targets = [{ path = "/api/resource" }]
"#;
    let played = play_text(text, &[]).await;
    let failed: Vec<u64> = played
        .outcomes
        .iter()
        .filter(|o| o.status == Some(503))
        .map(|o| o.index)
        .collect();
    assert_eq!(failed, (10..20).collect::<Vec<u64>>());
    let again = play_text(text, &[]).await;
    assert_eq!(summary(&played.outcomes), summary(&again.outcomes));
}

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    scenario::parse_str("scenario.toml", text, &[])
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(s) => panic!("expected an error, got a valid scenario {:?}", s.name),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn an_unknown_rule_is_located_and_the_closest_name_suggested() {
    let text = BLOCKS.replace("enable = [\"outage\"]", "enable = [\"outgae\"]");
    assert_eq!(
        error(&text),
        "\
error: phases[0].enable[0]: there is no fault rule named `outgae`
  --> scenario.toml:19:11
   |
19 | enable = [\"outgae\"]
   |           ^^^^^^^^ unknown rule
   |
   = help: did you mean `outage`? rules in this scenario: `outage`, `blip`"
    );
}

#[test]
fn a_phase_on_two_axes_or_empty_or_doing_nothing_is_an_error() {
    let mixed = BLOCKS.replace("until = 20", "until = \"20s\"");
    let shown = error(&mixed);
    assert!(
        shown.starts_with("error: phases[0].until: this phase starts at 10 requests and ends at 20s: `from` and `until` must both count requests or both count time"),
        "{shown}"
    );
    assert!(shown.contains("--> scenario.toml:18:9"), "{shown}");

    let empty = BLOCKS.replace("until = 20", "until = 10");
    let shown = error(&empty);
    assert!(
        shown.starts_with(
            "error: phases[0].until: the phase from 10 requests until 10 requests is empty"
        ),
        "{shown}"
    );
    assert!(shown.contains("--> scenario.toml:18:9"), "{shown}");

    let both = BLOCKS.replace(
        "disable = [\"blip\"]",
        "enable = [\"blip\"]\ndisable = [\"blip\"]",
    );
    let shown = error(&both);
    assert!(
        shown.starts_with(
            "error: phases[1].disable[0]: phase `phase-2` both enables and disables `blip`"
        ),
        "{shown}"
    );
    assert!(shown.contains("--> scenario.toml:25:12"), "{shown}");

    let idle = BLOCKS.replace("disable = [\"blip\"]", "");
    let shown = error(&idle);
    assert!(
        shown.starts_with("error: phases[1]: phase `phase-2` switches no rule on or off"),
        "{shown}"
    );
    assert!(shown.contains("scenario.toml:21:"), "{shown}");
}

#[test]
fn a_phase_switches_the_rules_of_named_proxies_too() {
    let text = r#"name = "proxied"

[[proxies]]
name = "payments"
upstream = { routes = [{ path = "/charge", method = "POST" }] }

[[proxies.faults]]
name = "pay-503"
kind = "error"
status = 503

[[proxies]]
name = "stock"
upstream = { routes = [{ path = "/stock" }] }

[[proxies.faults]]
name = "pay-503"
kind = "error"
status = 503

[[phases]]
from = 5
until = 8
enable = ["pay-503"]

[load]
to = "payments"
requests = 10
"#;
    let scenario = match parse(text) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let topology = scenario
        .topology
        .as_ref()
        .unwrap_or_else(|| panic!("no topology"));
    for proxy in &topology.proxies {
        let gates = proxy.faults[0]
            .window
            .gates
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no gate", proxy.name));
        assert_eq!(gates.to_string(), "on requests 5..8", "{}", proxy.name);
    }
}
