//! Services and named proxies in the scenario file: the shape `[[services]]`, `[[proxies]]`,
//! `[load] to|command` and `[expect.proxies.NAME]` validate into, and every error a user can make
//! with them, located and with what would be valid, as `traceforge validate` prints it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use traceforge::scenario::expectation::CountRange;
use traceforge::scenario::topology::{
    Entry, Placeholders, ProxyUpstream, Readiness, Template, Topology,
};
use traceforge::scenario::{self, Scenario, ScenarioError};

use crate::support;

/// The example of the design page, as a user would write it.
const FULL: &str = r#"#:schema ../traceforge.schema.json
name = "checkout-payments"
seed = 7

[[services]]
name = "checkout"
command = ["python3", "examples/checkout/app.py"]
env = { PORT = "{port}", PAYMENTS_URL = "{proxies.payments.url}" }
ready = { http = "/health", timeout = "10s" }

[[proxies]]
name = "payments"
upstream = { routes = [{ path = "/charge", method = "POST", body = '{"ok":true}' }] }

[[proxies.faults]]
name = "pay-503"
kind = "error"
status = 503
probability = 0.3

[load]
to = "checkout"
requests = 200
concurrency = 16
client_trace = true
targets = [{ path = "/checkout", method = "POST", body = { item = 1 } }]

[expect]
success_rate = 0.99
[expect.proxies.payments]
requests = { min = 200 }
calls_per_request = { max = 3 }
status = { "503" = { max_share = 0.5 } }
faults = { pay-503 = { min = 1 } }
latency = { p99 = "< 800ms" }
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    scenario::parse_str("scenario.toml", text, &[])
}

fn topology(text: &str) -> Topology {
    match parse(text) {
        Ok(s) => s
            .topology
            .unwrap_or_else(|| panic!("no topology for:\n{text}")),
        Err(e) => panic!("invalid:\n{e}"),
    }
}

fn values() -> Placeholders {
    Placeholders {
        port: Some(4100),
        services: BTreeMap::from([
            ("checkout".to_string(), "http://127.0.0.1:4100".to_string()),
            ("inventory".to_string(), "http://127.0.0.1:4200".to_string()),
        ]),
        proxies: BTreeMap::from([("payments".to_string(), "http://127.0.0.1:5100".to_string())]),
        scenario_dir: "/work/scenarios".to_string(),
        ..Placeholders::default()
    }
}

fn rendered(templates: &[Template]) -> Vec<String> {
    templates.iter().map(|t| t.render(&values())).collect()
}

fn rendered_env(env: &[(String, Template)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, t)| (k.clone(), t.render(&values())))
        .collect()
}

#[test]
fn the_design_example_validates_into_its_topology() {
    let s = parse(FULL).unwrap_or_else(|e| panic!("invalid:\n{e}"));
    let t = s.topology.as_ref().expect("a topology");

    assert_eq!(t.entry, Entry::Service("checkout".into()));
    assert!(t.client.is_none());
    let [checkout] = t.services.as_slice() else {
        panic!("one service: {:?}", t.services)
    };
    assert_eq!(checkout.name, "checkout");
    assert_eq!(
        rendered(&checkout.command),
        ["python3", "examples/checkout/app.py"]
    );
    assert_eq!(
        rendered_env(&checkout.env),
        [
            ("PAYMENTS_URL".into(), "http://127.0.0.1:5100".into()),
            ("PORT".into(), "4100".into()),
        ]
    );
    assert_eq!(checkout.ready, Readiness::Http("/health".into()));
    assert_eq!(checkout.ready_timeout, Duration::from_secs(10));
    assert_eq!(checkout.stop_timeout, Duration::from_secs(5));
    assert_eq!((checkout.port, checkout.cwd.as_ref()), (None, None));

    let [payments] = t.proxies.as_slice() else {
        panic!("one proxy: {:?}", t.proxies)
    };
    assert_eq!(payments.name, "payments");
    let ProxyUpstream::Mock(routes) = &payments.upstream else {
        panic!("a mock upstream: {:?}", payments.upstream)
    };
    let [charge] = routes.as_slice() else {
        panic!("one route: {routes:?}")
    };
    assert_eq!(
        (
            charge.path.as_str(),
            charge.methods.clone(),
            charge.body.as_str()
        ),
        ("/charge", vec![hyper::Method::POST], r#"{"ok":true}"#)
    );
    let rules: Vec<&str> = payments.faults.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rules, ["pay-503"]);
    assert_eq!(payments.config.upstream_timeout, Duration::from_secs(30));

    // The load is compiled as before: it is the requests sent to the entry.
    assert_eq!(s.load.profile.fixed_count(), Some(200));
    assert!(s.faults.is_empty(), "no single-proxy rules");

    assert_eq!(s.expect.success_rate, Some(0.99));
    let [bounds] = s.expect.proxies.as_slice() else {
        panic!("one proxy's expectations: {:?}", s.expect.proxies)
    };
    assert_eq!(bounds.proxy, "payments");
    assert_eq!(
        bounds.requests,
        Some(CountRange {
            min: Some(200),
            max: None
        })
    );
    assert_eq!(
        bounds.calls_per_request,
        Some(CountRange {
            min: None,
            max: Some(3)
        })
    );
    assert_eq!(bounds.status.len(), 1);
    assert_eq!(bounds.status[0].max_share, Some(0.5));
    assert_eq!(
        bounds.faults,
        [(
            "pay-503".to_string(),
            CountRange {
                min: Some(1),
                max: None
            }
        )]
    );
    assert_eq!(bounds.latency.len(), 1);
    assert_eq!(bounds.latency[0].threshold(), "< 800ms");
    assert!(!bounds.allows_zero());
}

#[test]
fn the_design_example_passes_the_schema_too() {
    let schema: serde_json::Value =
        serde_json::from_str(&traceforge::schema::json()).expect("the schema is JSON");
    let validator = jsonschema::draft7::new(&schema).expect("a draft-07 schema");
    let instance: serde_json::Value = toml::from_str(FULL).expect("TOML");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    assert_eq!(errors, Vec::<String>::new());
}

#[test]
fn services_start_after_what_they_reach_and_otherwise_in_file_order() {
    let t = topology(
        r#"name = "order"

[[services]]
name = "checkout"
command = "app --port {port} --auth {services.auth.url}"
env = { INVENTORY_URL = "{proxies.inventory-proxy.url}" }

[[services]]
name = "inventory"
command = ["inventory", "{port}"]

[[services]]
name = "auth"
command = ["auth"]
port = 9000

[[services]]
name = "worker"
command = ["worker"]
ready = { log = "started" }

[[proxies]]
name = "inventory-proxy"
upstream = { service = "inventory" }

[load]
to = "checkout"
"#,
    );
    let order: Vec<&str> = t.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["inventory", "auth", "checkout", "worker"]);
    let checkout = t.service("checkout").expect("checkout");
    assert_eq!(checkout.ready, Readiness::Tcp);
    assert_eq!(checkout.ready_timeout, Duration::from_secs(30));
    assert_eq!(checkout.stop_timeout, Duration::from_secs(5));
    assert_eq!(t.service("auth").and_then(|s| s.port), Some(9000));
    assert_eq!(
        t.service("worker").map(|s| s.ready.clone()),
        Some(Readiness::Log("started".into()))
    );
    assert!(matches!(
        t.proxy("inventory-proxy").map(|p| &p.upstream),
        Some(ProxyUpstream::Service(n)) if n == "inventory"
    ));
}

#[test]
fn a_command_string_is_split_like_a_shell_would() {
    let t = topology(
        r#"name = "split"

[[services]]
name = "web"
command = '''python3 -m http.server "{port}" --bind '127.0.0.1' --directory my\ files --title "a {{b}} c" '''
"#,
    );
    assert_eq!(
        rendered(&t.services[0].command),
        [
            "python3",
            "-m",
            "http.server",
            "4100",
            "--bind",
            "127.0.0.1",
            "--directory",
            "my files",
            "--title",
            "a {b} c",
        ]
    );
    assert_eq!(t.entry, Entry::Service("web".into()));
}

#[test]
fn templates_render_every_placeholder_and_literal_braces() {
    let t = topology(
        r#"name = "render"

[[services]]
name = "checkout"
command = ["app"]
env = { PORT = "{port}", CONFIG = '{{"inventory": "{services.inventory.url}/v1"}}', DATA = "{scenario_dir}/data" }

[[services]]
name = "inventory"
command = ["inventory"]
env = { PORT = "{port}" }

[[proxies]]
name = "payments"
upstream = { url = "{services.inventory.url}/payments" }

[load]
to = "checkout"
"#,
    );
    let checkout = t.service("checkout").expect("checkout");
    assert_eq!(
        rendered_env(&checkout.env),
        [
            (
                "CONFIG".into(),
                r#"{"inventory": "http://127.0.0.1:4200/v1"}"#.into()
            ),
            ("DATA".into(), "/work/scenarios/data".into()),
            ("PORT".into(), "4100".into()),
        ]
    );
    // Written back as it was read.
    assert_eq!(
        checkout.env[0].1.to_string(),
        r#"{{"inventory": "{services.inventory.url}/v1"}}"#
    );
    let ProxyUpstream::Url(url) = &t.proxies[0].upstream else {
        panic!("a URL upstream")
    };
    assert_eq!(url.render(&values()), "http://127.0.0.1:4200/payments");
    // The proxy forwards to inventory, which starts first.
    assert_eq!(t.services[0].name, "inventory");
}

#[test]
fn the_load_enters_at_the_only_proxy_by_default() {
    let t = topology(
        r#"name = "default-entry"

[[services]]
name = "checkout"
command = ["app"]
env = { PORT = "{port}", PAYMENTS_URL = "{proxies.payments.url}" }

[[proxies]]
name = "payments"
"#,
    );
    assert_eq!(t.entry, Entry::Proxy("payments".into()));
    assert!(matches!(&t.proxies[0].upstream, ProxyUpstream::Mock(r) if r.is_empty()));
}

#[test]
fn a_client_command_is_the_load() {
    let t = topology(
        r#"name = "client"

[[services]]
name = "checkout"
command = ["app"]
env = { PORT = "{port}", PAYMENTS_URL = "{proxies.payments.url}" }

[[proxies]]
name = "payments"

[[proxies.faults]]
kind = "drop"
probability = 0.1

[load]
command = "pytest -q tests/test_resilience.py"
env = { BASE_URL = "{services.checkout.url}" }
cwd = "examples/checkout"

[expect.proxies.payments]
faults = { drop-1 = { min = 1 } }
"#,
    );
    let client = t.client.as_ref().expect("a client");
    assert_eq!(
        rendered(&client.command),
        ["pytest", "-q", "tests/test_resilience.py"]
    );
    assert_eq!(
        rendered_env(&client.env),
        [("BASE_URL".into(), "http://127.0.0.1:4100".into())]
    );
    assert_eq!(client.cwd.as_deref(), Some(Path::new("examples/checkout")));
}

#[test]
fn a_file_of_the_single_proxy_shape_has_no_topology() {
    for file in support::scenario_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        if text.contains("[[services]]") || text.contains("[[proxies]]") {
            continue;
        }
        let s = scenario::load(&file, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.topology.is_none(), "{}", file.display());
        assert!(s.expect.proxies.is_empty(), "{}", file.display());
    }
    let s = parse("name = \"plain\"\nfaults = [\"error:503:0.2\"]\n").expect("valid");
    assert!(s.topology.is_none());
}

// ---- errors, as `traceforge validate` prints them ----

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `traceforge validate` on `text` written to a file: it must exit 2. Returns the file's path and
/// what was printed on stderr.
fn invalid(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("topology.toml");
    std::fs::write(&path, text).expect("write scenario");
    let out = support::bin()
        .args(["validate", &path.display().to_string()])
        .current_dir(support::root())
        .output()
        .expect("the traceforge binary runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    (path.display().to_string(), stderr(&out))
}

/// A valid service for the error cases to build on.
const CHECKOUT: &str = r#"[[services]]
name = "checkout"
command = ["python3", "app.py"]
env = { PORT = "{port}", PAYMENTS_URL = "{proxies.payments.url}" }
"#;

const PAYMENTS: &str = r#"[[proxies]]
name = "payments"

[[proxies.faults]]
name = "pay-503"
kind = "error"
status = 503
"#;

fn with_base(rest: &str) -> String {
    format!("name = \"t\"\n\n{CHECKOUT}\n{PAYMENTS}\n{rest}")
}

#[test]
fn a_misspelled_placeholder_suggests_the_closest_one() {
    let (file, err) = invalid(
        r#"name = "t"

[[services]]
name = "checkout"
command = ["python3", "app.py", "--payments", "{proxies.payment.url}"]
env = { PORT = "{port}", INVENTORY = "{service.inventory.url}" }

[[services]]
name = "inventory"
command = ["inventory"]
port = 9000

[[proxies]]
name = "payments"
"#,
    );
    assert_eq!(
        err,
        format!(
            "\
error: services[0].command[3]: `{{proxies.payment.url}}` names no proxy: there is no [[proxies]] entry named `payment`
 --> {file}:5:47
  |
5 | command = [\"python3\", \"app.py\", \"--payments\", \"{{proxies.payment.url}}\"]
  |                                               ^^^^^^^^^^^^^^^^^^^^^^^ unknown proxy
  |
  = help: did you mean `payments`? proxies in this scenario: `payments`
error: services[0].env.INVENTORY: `{{service.inventory.url}}` is not a placeholder
 --> {file}:6:38
  |
6 | env = {{ PORT = \"{{port}}\", INVENTORY = \"{{service.inventory.url}}\" }}
  |                                      ^^^^^^^^^^^^^^^^^^^^^^^^^ unknown placeholder
  |
  = help: did you mean `{{services.inventory.url}}`? placeholders here: `{{port}}`, `{{services.checkout.url}}`, `{{services.inventory.url}}`, `{{proxies.payments.url}}`, `{{scenario_dir}}`; write `{{{{` and `}}}}` for literal braces
"
        )
    );
}

#[test]
fn port_is_only_known_inside_a_service() {
    let (file, err) = invalid(&with_base(
        "[load]\ncommand = [\"curl\", \"localhost:{port}\"]\n",
    ));
    assert!(
        err.starts_with(&format!(
            "error: load.command[1]: `{{port}}` is only known inside a [[services]] entry: it is the port of the service being started\n  --> {file}:17:20\n"
        )),
        "{err}"
    );
    assert!(err.contains("help: use `{services.NAME.url}`"), "{err}");
}

#[test]
fn an_unclosed_brace_and_an_unbalanced_quote_are_pointed_at() {
    let (file, err) = invalid(
        r#"name = "t"

[[services]]
name = "a"
command = "python3 'app.py"
env = { PORT = "{port" }
"#,
    );
    assert!(
        err.contains(&format!(
            "error: services[0].command: `python3 'app.py` cannot be split into words: a quote is never closed, or it ends with a `\\`\n --> {file}:5:11\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: services[0].env.PORT: `{{port` has a `{{` that is never closed\n --> {file}:6:16\n"
        )),
        "{err}"
    );
    assert!(err.contains("write `{{` for a literal `{`"), "{err}");
}

#[test]
fn an_unknown_proxy_in_expect_suggests_the_closest_one() {
    let (file, err) = invalid(&with_base(
        "[expect.proxies.paymens]\nrequests = { min = 1 }\n",
    ));
    assert_eq!(
        err,
        format!(
            "\
error: expect.proxies.paymens: there is no [[proxies]] entry named `paymens`
  --> {file}:16:17
   |
16 | [expect.proxies.paymens]
   |                 ^^^^^^^ unknown proxy
   |
   = help: did you mean `payments`? proxies in this scenario: `payments`
"
        )
    );
}

#[test]
fn expectations_of_a_proxy_name_its_own_rules_and_say_something() {
    let (file, err) = invalid(&with_base(
        "[expect.proxies.payments]\nfaults = { pay-530 = { min = 1 } }\nstatus = { \"5xy\" = { max_share = 0.5 } }\nlatency = { p99 = \"800ms\" }\n",
    ));
    assert!(
        err.contains(&format!(
            "error: expect.proxies.payments.faults.pay-530: proxy `payments` has no fault rule named `pay-530`\n  --> {file}:17:12\n"
        )),
        "{err}"
    );
    assert!(
        err.contains("= help: did you mean `pay-503`? rules of proxy `payments`: `pay-503`"),
        "{err}"
    );
    assert!(
        err.contains("error: expect.proxies.payments.status.5xy: `5xy` is not a status"),
        "{err}"
    );
    assert!(
        err.contains("error: expect.proxies.payments.latency.p99: `800ms` has no comparison"),
        "{err}"
    );

    let (file, err) = invalid(&with_base("[expect.proxies.payments]\n"));
    assert!(
        err.starts_with(&format!(
            "error: expect.proxies.payments: nothing is expected of proxy `payments`\n  --> {file}:16:17\n"
        )),
        "{err}"
    );
}

#[test]
fn expectations_of_proxies_need_proxies() {
    let (file, err) = invalid("name = \"t\"\n[expect.proxies.payments]\nrequests = { min = 1 }\n");
    assert!(
        err.starts_with(&format!(
            "error: expect.proxies.payments: there is no [[proxies]] entry named `payments`\n --> {file}:2:17\n"
        )),
        "{err}"
    );
    assert!(err.contains("this scenario has no [[proxies]]"), "{err}");
}

#[test]
fn a_dependency_cycle_is_named() {
    let (file, err) = invalid(
        r#"name = "t"

[[services]]
name = "checkout"
command = ["checkout"]
env = { PORT = "{port}", INVENTORY_URL = "{proxies.inventory-proxy.url}" }

[[services]]
name = "inventory"
command = ["inventory", "--port", "{port}", "--callback", "{services.checkout.url}"]

[[proxies]]
name = "inventory-proxy"
upstream = { service = "inventory" }
"#,
    );
    assert_eq!(
        err,
        format!(
            "\
error: services[0].env.INVENTORY_URL: these services wait for each other: checkout -> inventory-proxy -> inventory -> checkout
 --> {file}:6:42
  |
6 | env = {{ PORT = \"{{port}}\", INVENTORY_URL = \"{{proxies.inventory-proxy.url}}\" }}
  |                                          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ dependency cycle
  |
  = help: a service starts after every service it reaches by URL (directly or through a proxy in front of it), so none of these could start first; break the cycle
"
        )
    );

    let (_, err) = invalid(
        "name = \"t\"\n[[services]]\nname = \"a\"\ncommand = [\"a\", \"{port}\", \"{services.b.url}\"]\n[[services]]\nname = \"b\"\ncommand = [\"b\", \"{port}\", \"{services.a.url}\"]\n[load]\nto = \"a\"\n",
    );
    assert!(
        err.starts_with(
            "error: services[0].command[2]: these services wait for each other: a -> b -> a\n"
        ),
        "{err}"
    );
}

#[test]
fn a_service_reached_by_url_must_be_told_its_port() {
    let (file, err) = invalid(
        r#"name = "t"

[[services]]
name = "checkout"
command = ["checkout"]
env = { PAYMENTS_URL = "{proxies.payments.url}" }

[[proxies]]
name = "payments"

[load]
to = "checkout"
"#,
    );
    assert_eq!(
        err,
        format!(
            "\
error: services[0].env: service `checkout` is never told its port, and the run needs it: the load is sent to it
 --> {file}:6:7
  |
6 | env = {{ PAYMENTS_URL = \"{{proxies.payments.url}}\" }}
  |       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ no `{{port}}`
  |
  = help: add PORT = \"{{port}}\" to env (or `{{port}}` to the command), or set `port` to the port it listens on
"
        )
    );

    // The default readiness is a TCP check on the port.
    let (_, err) = invalid(
        "name = \"t\"\n[[services]]\nname = \"worker\"\ncommand = \"worker\"\n[[proxies]]\nname = \"p\"\n",
    );
    assert!(
        err.contains("service `worker` is never told its port, and the run needs it: its readiness is a TCP check on its port (the default)"),
        "{err}"
    );
    // A log check and no URL: no port needed.
    assert!(
        parse("name = \"t\"\n[[services]]\nname = \"worker\"\ncommand = \"worker\"\nready = { log = \"up\" }\n[[proxies]]\nname = \"p\"\n").is_ok()
    );
}

#[test]
fn the_virtual_clock_cannot_run_services() {
    let (file, err) = invalid(&with_base("[run]\nclock = \"virtual\"\n"));
    assert_eq!(
        err,
        format!(
            "\
error: run.clock: the virtual clock cannot play `[[services]]` or `[[proxies]]`
  --> {file}:17:9
   |
17 | clock = \"virtual\"
   |         ^^^^^^^^^ needs the real clock
   |
   = help: services are real processes, which cannot run on a paused clock, and named proxies play on the real clock; remove `clock`, or use clock = \"real\"
"
        )
    );
}

#[test]
fn single_proxy_keys_cannot_be_mixed_in() {
    let (file, err) = invalid(&format!(
        "name = \"t\"\nfaults = [\"drop:0.1\"]\n\n[upstream]\nurl = \"http://127.0.0.1:9000\"\n\n[proxy]\nheader_faults = true\n\n{CHECKOUT}\n{PAYMENTS}"
    ));
    let help = "  = help: put them in a [[proxies]] entry: each named proxy has its own `faults`, `upstream` and proxy settings\n";
    assert_eq!(
        err,
        format!(
            "\
error: faults: top-level `[[faults]]` cannot be mixed with `[[services]]` or `[[proxies]]`
 --> {file}:2:10
  |
2 | faults = [\"drop:0.1\"]
  |          ^^^^^^^^^^^^ single-proxy key
  |
{help}\
error: upstream.url: `[upstream]` cannot be mixed with `[[services]]` or `[[proxies]]`
 --> {file}:5:7
  |
5 | url = \"http://127.0.0.1:9000\"
  |       ^^^^^^^^^^^^^^^^^^^^^^^ single-proxy key
  |
{help}\
error: proxy: `[proxy]` cannot be mixed with `[[services]]` or `[[proxies]]`
 --> {file}:7:1
  |
7 | [proxy]
  | ^^^^^^^ single-proxy key
  |
{help}"
        )
    );
}

#[test]
fn the_load_must_say_where_it_enters_when_there_is_a_choice() {
    let (file, err) = invalid(&with_base(
        "[[proxies]]\nname = \"inventory\"\n\n[load]\nrequests = 10\n",
    ));
    assert_eq!(
        err,
        format!(
            "\
error: load: the load does not say where it enters: set `load.to`
  --> {file}:19:1
   |
19 | [load]
   | ^^^^^^ needs `to`
   |
   = help: name the service or proxy the load is sent to, one of `checkout`, `payments`, `inventory`
"
        )
    );

    let (file, err) = invalid(&with_base("[load]\nto = \"chekout\"\n"));
    assert_eq!(
        err,
        format!(
            "\
error: load.to: there is no service or proxy named `chekout`
  --> {file}:17:6
   |
17 | to = \"chekout\"
   |      ^^^^^^^^^ unknown name
   |
   = help: did you mean `checkout`? services and proxies: `checkout`, `payments`
"
        )
    );

    let (file, err) = invalid("name = \"t\"\n[load]\nto = \"checkout\"\n");
    assert!(
        err.starts_with(&format!(
            "error: load.to: `to` names a `[[services]]` or `[[proxies]]` entry, and this scenario has none\n --> {file}:3:6\n"
        )),
        "{err}"
    );
}

#[test]
fn a_client_command_replaces_the_built_in_load() {
    let (file, err) = invalid(&with_base(
        "[load]\ncommand = [\"pytest\"]\nrequests = 200\n",
    ));
    assert_eq!(
        err,
        format!(
            "\
error: load.requests: `requests` cannot be used with `load.command`: the command is the load
  --> {file}:18:1
   |
18 | requests = 200
   | ^^^^^^^^ conflicts with `command`
   |
   = help: remove `requests`; your client decides what it sends, and where
"
        )
    );

    let (_, err) = invalid(&format!(
        "name = \"t\"\n\n{CHECKOUT}\n[load]\ncommand = \"pytest\"\n"
    ));
    assert!(
        err.contains("error: load.command: `load.command` needs at least one `[[proxies]]` entry"),
        "{err}"
    );
    assert!(
        err.contains("`{proxies.payments.url}` names no proxy"),
        "{err}"
    );

    let (_, err) = invalid(&with_base("[load]\nenv = { X = \"1\" }\n"));
    assert!(
        err.contains("error: load.env: `env` is for `load.command`, which is not set"),
        "{err}"
    );
}

#[test]
fn readiness_is_exactly_one_check() {
    let (file, err) = invalid(
        "name = \"t\"\n[[services]]\nname = \"a\"\ncommand = \"a {port}\"\nready = { http = \"/health\", log = \"up\", timeout = \"0s\" }\nstop_timeout = \"0s\"\n",
    );
    assert!(
        err.contains(&format!(
            "error: services[0].ready: readiness is one check, and this gives `http` and `log`\n --> {file}:5:9\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "error: services[0].ready.timeout: the readiness timeout must be longer than zero"
        ),
        "{err}"
    );
    assert!(
        err.contains("error: services[0].stop_timeout: the stop timeout must be longer than zero"),
        "{err}"
    );

    let (file, err) = invalid(
        "name = \"t\"\n[[services]]\nname = \"a\"\ncommand = \"a {port}\"\nready = { tcp = false }\n",
    );
    assert!(
        err.starts_with(&format!(
            "error: services[0].ready.tcp: `tcp = false` does not say when the service is ready\n --> {file}:5:17\n"
        )),
        "{err}"
    );

    let (_, err) = invalid(
        "name = \"t\"\n[[services]]\nname = \"a\"\ncommand = \"a {port}\"\nready = { http = \"health\" }\n",
    );
    assert!(
        err.contains("error: services[0].ready.http: `health` is not a request path"),
        "{err}"
    );
}

#[test]
fn names_are_usable_and_unique_across_services_and_proxies() {
    let (file, err) = invalid(&with_base(
        "[[proxies]]\nname = \"checkout\"\n\n[[services]]\nname = \"bad name\"\ncommand = \"x\"\nready = { log = \"up\" }\n[load]\nto = \"payments\"\n",
    ));
    assert!(
        err.contains(&format!(
            "error: proxies[1].name: `checkout` is already the name of services[0]\n  --> {file}:17:8\n"
        )),
        "{err}"
    );
    assert!(
        err.contains("error: services[1].name: `bad name` is not a usable name"),
        "{err}"
    );
}

#[test]
fn a_proxy_upstream_is_one_thing_that_exists() {
    let (file, err) = invalid(&format!(
        "name = \"t\"\n\n{CHECKOUT}\n[[proxies]]\nname = \"payments\"\nupstream = {{ service = \"paymnets\" }}\n"
    ));
    assert_eq!(
        err,
        format!(
            "\
error: proxies[0].upstream.service: there is no [[services]] entry named `paymnets`
  --> {file}:10:24
   |
10 | upstream = {{ service = \"paymnets\" }}
   |                        ^^^^^^^^^^ unknown service
   |
   = help: services in this scenario: `checkout`
"
        )
    );

    let (_, err) = invalid(&format!(
        "name = \"t\"\n\n{CHECKOUT}\n[[proxies]]\nname = \"payments\"\nupstream = {{ url = \"http://127.0.0.1:9000\", routes = [] }}\n"
    ));
    assert!(
        err.contains("error: proxies[0].upstream: a proxy forwards to one upstream, and this gives `url` and `routes`"),
        "{err}"
    );

    let (_, err) = invalid(&format!(
        "name = \"t\"\n\n{CHECKOUT}\n[[proxies]]\nname = \"payments\"\nupstream = {{ url = \"ftp://127.0.0.1:9000\" }}\nupstream_timeout = \"0s\"\n"
    ));
    assert!(err.contains("error: proxies[0].upstream.url: "), "{err}");
    assert!(
        err.contains(
            "error: proxies[0].upstream_timeout: the upstream timeout must be longer than zero"
        ),
        "{err}"
    );

    // Routes and faults get the checks of `[upstream].routes` and `[[faults]]`.
    let (_, err) = invalid(&format!(
        "name = \"t\"\n\n{CHECKOUT}\n[[proxies]]\nname = \"payments\"\nupstream = {{ routes = [{{ path = \"charge\" }}] }}\nfaults = [\"error:503:1.5\"]\n"
    ));
    assert!(
        err.contains("error: proxies[0].upstream.routes[0].path: `charge` is not a request path"),
        "{err}"
    );
    assert!(
        err.contains("error: proxies[0].faults[0]: a probability must be between 0 and 1"),
        "{err}"
    );
}

#[test]
fn validate_reports_the_services_and_proxies_of_a_valid_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("checkout.toml");
    std::fs::write(&path, FULL).expect("write scenario");
    let file = path.display().to_string();
    let out = support::bin()
        .args(["validate", &file])
        .current_dir(support::root())
        .output()
        .expect("the traceforge binary runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "ok: {file} (checkout-payments: 1 service, 1 proxy, 1 fault rule, 200 requests at concurrency 16 to checkout)\n"
        )
    );
}

#[test]
fn a_top_level_bound_on_a_proxy_rule_says_where_it_belongs() {
    let (file, err) = invalid(&with_base("[expect]\nfaults = { pay-503 = { min = 1 } }\n"));
    assert_eq!(
        err,
        format!(
            "\
error: expect.faults.pay-503: there is no fault rule named `pay-503`
  --> {file}:17:22
   |
17 | faults = {{ pay-503 = {{ min = 1 }} }}
   |                      ^^^^^^^^^^^ unknown rule
   |
   = help: `pay-503` is a rule of proxy `payments`: expect it under [expect.proxies.payments]
"
        )
    );
}
