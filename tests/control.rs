//! The proxy's control API over real sockets: every path and method answers as the committed
//! OpenAPI file says (status declared, body valid against its schema), every documented operation
//! is served and nothing else is, changes are atomic under concurrent traffic, a Python client
//! turns a fault on and off around a block of requests, and `traceforge proxy --control` serves it
//! with `--fault` flags and with `--scenario`.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use traceforge::fault::live::LiveRules;
use traceforge::proxy::ProxyOptions;
use traceforge::proxy::control::{self, ControlledProxy};
use traceforge::scenario::ProxyConfig;
use traceforge::server::Listening;

use crate::proxy::demo_upstream;
use crate::support::{self, PATIENCE, Reply, bounded, client, get, loopback, send};

/// The committed OpenAPI document.
fn committed() -> Value {
    let path = support::root().join("traceforge-control.openapi.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A controlled proxy in front of the demo upstream, started with the rules of a scenario
/// snippet (`[[faults]]` tables).
async fn start(faults_toml: &str) -> (Listening, ControlledProxy) {
    let upstream = demo_upstream(Vec::new()).await;
    let text = format!("name = \"control-test\"\nseed = 5\n{faults_toml}\n");
    let scenario = traceforge::parse_str("test", &text, &[])
        .unwrap_or_else(|e| panic!("invalid test scenario: {e}"));
    let specs = scenario.spec.faults.iter().map(|entry| match entry {
        traceforge::spec::FaultEntry::Table(spec)
        | traceforge::spec::FaultEntry::Compact { spec, .. } => spec.clone(),
    });
    let rules = LiveRules::new(5, specs.zip(scenario.faults.iter().cloned()).collect());
    let options = ProxyOptions {
        upstream: upstream.url().parse().unwrap_or_else(|e| panic!("{e}")),
        plan: rules.load().plan().clone(),
        config: ProxyConfig::default(),
        calls: None,
        observer: None,
    };
    let proxy_listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let control_listener = tokio::net::TcpListener::bind(loopback())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let controlled = control::spawn_on(proxy_listener, control_listener, options, rules, None)
        .unwrap_or_else(|e| panic!("spawn the controlled proxy: {e}"));
    (upstream, controlled)
}

/// Checks responses against the OpenAPI document, and remembers which declared answers were seen.
struct Api {
    doc: Value,
    base: String,
    seen: BTreeSet<(String, String, String)>,
}

impl Api {
    fn new(base: String) -> Api {
        Api {
            doc: committed(),
            base,
            seen: BTreeSet::new(),
        }
    }

    /// Sends `method` to `path` (`template` is its OpenAPI path) and checks the answer: a status
    /// the document declares for the operation, JSON, and a body its schema accepts.
    async fn call(&mut self, method: Method, template: &str, path: &str, body: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let reply = send(&client(), method.clone(), &url, &[], body).await;
        let op = method.as_str().to_ascii_lowercase();
        let status = reply.status.as_str().to_string();
        let declared = &self.doc["paths"][template][&op]["responses"][&status];
        assert!(
            declared.is_object(),
            "{method} {path} answered {status}, which the OpenAPI file does not declare for {op} {template}: {}",
            reply.text()
        );
        validate(&self.doc, declared, &reply, &format!("{method} {path}"));
        self.seen.insert((template.to_string(), op, status));
        reply
    }

    /// Every (path, method, status) the document declares.
    fn declared(&self) -> BTreeSet<(String, String, String)> {
        let mut all = BTreeSet::new();
        for (path, ops) in self.doc["paths"].as_object().into_iter().flatten() {
            for (op, spec) in ops.as_object().into_iter().flatten() {
                for status in spec["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|r| r.0)
                {
                    all.insert((path.clone(), op.clone(), status.clone()));
                }
            }
        }
        all
    }
}

/// Checks that `reply` is JSON and valid against the schema of the declared response.
fn validate(doc: &Value, declared: &Value, reply: &Reply, what: &str) {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}: content type"
    );
    let schema = &declared["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{what}: no JSON schema declared");
    // The document is the root, so `#/components/schemas/...` resolves; the response's schema is
    // merged into it (the document's own keys are not JSON Schema keywords).
    let mut root = doc.clone();
    for (key, value) in schema.as_object().into_iter().flatten() {
        root[key] = value.clone();
    }
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("the OpenAPI schema does not compile: {e}"));
    let body = reply.json();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the body does not match the OpenAPI schema: {errors:?}\n{body}"
    );
}

#[test]
fn the_committed_openapi_file_is_current() {
    let path = support::root().join("traceforge-control.openapi.json");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    // Not assert_eq!: a diff of two long strings hides the instruction that fixes it.
    assert!(
        text == control::openapi_text(),
        "traceforge-control.openapi.json is out of date; run `cargo run -- schema --control-api > traceforge-control.openapi.json`"
    );
    let doc = committed();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_operation_answers_as_the_openapi_file_says() {
    let (_upstream, proxy) = start(
        r#"
[[faults]]
name = "slow"
kind = "delay"
delay = "1ms"
match = { path = "/api/slow" }
"#,
    )
    .await;
    let mut api = Api::new(proxy.control.url());
    let proxied = |path: &str| format!("{}{path}", proxy.proxy.url());

    // The starting rule, as a scenario writes it.
    let list = api.call(Method::GET, "/rules", "/rules", "").await.json();
    assert_eq!(list["rules"][0]["name"], "slow");
    assert_eq!(list["rules"][0]["kind"], "delay");
    assert_eq!(list["rules"][0]["delay"], "1ms");
    assert_eq!(list["rules"][0]["enabled"], true);

    // Add, conflict, invalid bodies of every sort.
    let new_rule =
        json!({"name": "api-503", "kind": "error", "status": 503, "match": {"path": "/api/*"}});
    let added = api
        .call(Method::POST, "/rules", "/rules", &new_rule.to_string())
        .await;
    assert_eq!(added.status, StatusCode::CREATED);
    assert_eq!(added.header("location"), Some("/rules/api-503"));
    assert_eq!(added.json()["enabled"], true);
    let again = api
        .call(Method::POST, "/rules", "/rules", &new_rule.to_string())
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let bad_status = api
        .call(
            Method::POST,
            "/rules",
            "/rules",
            r#"{"name": "x", "kind": "error", "status": 700}"#,
        )
        .await;
    assert_eq!(bad_status.status, StatusCode::BAD_REQUEST);
    let problems = &bad_status.json()["problems"];
    assert_eq!(problems[0]["path"], "status", "{problems}");
    // The same words a scenario file gets for the same mistake.
    let file_error = traceforge::parse_str(
        "t",
        "name = \"t\"\n[[faults]]\nname = \"x\"\nkind = \"error\"\nstatus = 700\n",
        &[],
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    let message = problems[0]["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && file_error.contains(message),
        "`{message}` is not the scenario file's message:\n{file_error}"
    );
    let nameless = api
        .call(Method::POST, "/rules", "/rules", r#"{"kind": "drop"}"#)
        .await;
    assert_eq!(nameless.status, StatusCode::BAD_REQUEST);
    assert_eq!(nameless.json()["problems"][0]["path"], "name");
    let typo = api
        .call(
            Method::POST,
            "/rules",
            "/rules",
            r#"{"name": "t", "kind": "error", "staus": 503}"#,
        )
        .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    assert!(
        typo.text().contains("did you mean `status`"),
        "{}",
        typo.text()
    );
    let not_json = api.call(Method::POST, "/rules", "/rules", "{nope").await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let huge = format!(
        r#"{{"name": "big", "kind": "error", "body": "{}"}}"#,
        "x".repeat(70_000)
    );
    let too_big = api.call(Method::POST, "/rules", "/rules", &huge).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);

    // The new rule is live: the proxy answers with it, and /metrics counts it.
    let faulted = get(&client(), &proxied("/api/resource"), &[]).await;
    assert_eq!(faulted.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(faulted.header("x-fault-injected"), Some("api-503"));
    let metrics = get(&client(), &proxied("/metrics"), &[]).await.text();
    assert!(
        metrics.contains(r#"traceforge_proxy_faults_total{kind="error",rule="api-503"} 1"#),
        "{metrics}"
    );

    // One rule; replace it (the URL's name wins, a different one is refused).
    let one = api
        .call(Method::GET, "/rules/{name}", "/rules/api-503", "")
        .await;
    assert_eq!(one.json()["status"], 503);
    let missing = api
        .call(Method::GET, "/rules/{name}", "/rules/nope", "")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let replaced = api
        .call(
            Method::PUT,
            "/rules/{name}",
            "/rules/api-503",
            r#"{"kind": "error", "status": 502, "match": {"path": "/api/*"}}"#,
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(replaced.json()["name"], "api-503");
    assert_eq!(replaced.json()["status"], 502);
    let renamed = api
        .call(
            Method::PUT,
            "/rules/{name}",
            "/rules/api-503",
            r#"{"name": "other", "kind": "drop"}"#,
        )
        .await;
    assert_eq!(renamed.status, StatusCode::BAD_REQUEST);
    let put_missing = api
        .call(
            Method::PUT,
            "/rules/{name}",
            "/rules/nope",
            r#"{"kind": "drop"}"#,
        )
        .await;
    assert_eq!(put_missing.status, StatusCode::NOT_FOUND);
    let put_huge = api
        .call(Method::PUT, "/rules/{name}", "/rules/api-503", &huge)
        .await;
    assert_eq!(put_huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    let status = get(&client(), &proxied("/api/resource"), &[]).await.status;
    assert_eq!(status, StatusCode::BAD_GATEWAY);

    // Disable and enable keep the place.
    let disabled = api
        .call(
            Method::POST,
            "/rules/{name}/disable",
            "/rules/api-503/disable",
            "",
        )
        .await;
    assert_eq!(disabled.json()["enabled"], false);
    let passes = get(
        &client(),
        &proxied("/api/resource"),
        &[("x-traceforge-index", "7")],
    )
    .await;
    assert_eq!(passes.status, StatusCode::OK);
    // A client that has its whole response sees its record.
    let records = api
        .call(Method::GET, "/requests", "/requests?last=1", "")
        .await
        .json();
    assert_eq!(
        records["requests"][0]["request_id"],
        passes.header("x-request-id").unwrap_or("?")
    );
    assert_eq!(records["requests"][0]["faults"], json!([]));
    let enabled = api
        .call(
            Method::POST,
            "/rules/{name}/enable",
            "/rules/api-503/enable",
            "",
        )
        .await;
    assert_eq!(enabled.json()["enabled"], true);
    let list = api.call(Method::GET, "/rules", "/rules", "").await.json();
    let names: Vec<&str> = list["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["slow", "api-503"]);
    for (template, path) in [
        ("/rules/{name}/enable", "/rules/nope/enable"),
        ("/rules/{name}/disable", "/rules/nope/disable"),
    ] {
        let reply = api.call(Method::POST, template, path, "").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }

    // The request history: all of it, a bad query.
    let all = api
        .call(Method::GET, "/requests", "/requests", "")
        .await
        .json();
    assert_eq!(all["requests"].as_array().map(Vec::len), Some(3), "{all}");
    assert_eq!(all["requests"][0]["faults"][0]["rule"], "api-503");
    let bad = api
        .call(Method::GET, "/requests", "/requests?last=-1", "")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Delete, then reset: back to the starting rule, the history emptied.
    let deleted = api
        .call(Method::DELETE, "/rules/{name}", "/rules/api-503", "")
        .await;
    assert_eq!(deleted.json()["name"], "api-503");
    let gone = api
        .call(Method::DELETE, "/rules/{name}", "/rules/api-503", "")
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    api.call(
        Method::POST,
        "/rules/{name}/disable",
        "/rules/slow/disable",
        "",
    )
    .await;
    let reset = api.call(Method::POST, "/reset", "/reset", "").await.json();
    assert_eq!(reset["rules"].as_array().map(Vec::len), Some(1));
    assert_eq!(reset["rules"][0]["enabled"], true);
    let empty = api
        .call(Method::GET, "/requests", "/requests", "")
        .await
        .json();
    assert_eq!(empty["requests"], json!([]));
    api.call(Method::GET, "/openapi.json", "/openapi.json", "")
        .await;

    let missing: Vec<_> = api.declared().difference(&api.seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "declared answers never exercised: {missing:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else() {
    let (_upstream, proxy) = start(
        r#"
[[faults]]
name = "a"
kind = "delay"
delay = "1ms"
"#,
    )
    .await;
    let doc = committed();
    let base = proxy.control.url();
    let body = r#"{"name": "a", "kind": "delay", "delay": "1ms"}"#;
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    for (template, ops) in doc["paths"].as_object().into_iter().flatten() {
        let path = template.replace("{name}", "a");
        let documented: Vec<String> = ops
            .as_object()
            .into_iter()
            .flatten()
            .map(|(op, _)| op.to_ascii_uppercase())
            .collect();
        for method in &methods {
            let reply = send(
                &client(),
                method.clone(),
                &format!("{base}{path}"),
                &[],
                body,
            )
            .await;
            if documented.iter().any(|m| m == method.as_str()) {
                assert!(
                    reply.status != StatusCode::NOT_FOUND
                        && reply.status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but answered {}: {}",
                    reply.status,
                    reply.text()
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                let allow: Vec<String> = reply
                    .header("allow")
                    .unwrap_or_default()
                    .split(", ")
                    .map(str::to_string)
                    .collect();
                let mut documented_sorted = documented.clone();
                documented_sorted.sort();
                let mut allow_sorted = allow.clone();
                allow_sorted.sort();
                assert_eq!(allow_sorted, documented_sorted, "Allow of {path}");
                assert!(reply.json()["error"].is_string());
            }
            // A DELETE took the rule away: put it back for the next method.
            if *method == Method::DELETE {
                let restored =
                    send(&client(), Method::POST, &format!("{base}/rules"), &[], body).await;
                assert!(restored.status.is_success() || restored.status == StatusCode::CONFLICT);
            }
        }
    }
    for path in [
        "/",
        "/rule",
        "/rules/a/b",
        "/rules/a/enable/x",
        "/metrics",
        "/requests/1",
    ] {
        let reply = get(&client(), &format!("{base}{path}"), &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.json()["error"].is_string(), "{path}");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sees_the_rules_before_or_after_a_change_never_part_of_one() {
    // `a` marks every request; `b` answers with a status and a header that belong together.
    let (_upstream, proxy) = start(
        r#"
[[faults]]
name = "a"
kind = "delay"
delay = "0ms"

[[faults]]
name = "b"
kind = "error"
status = 501
headers = { x-version = "one" }
"#,
    )
    .await;
    let proxy_url = format!("{}/api/resource", proxy.proxy.url());
    let control = proxy.control.url();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let url = proxy_url.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let client = client();
            let mut seen = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || seen == 0 {
                let reply = get(&client, &url, &[]).await;
                let fired = reply.header("x-traceforge-fault").unwrap_or("").to_string();
                let version = reply.header("x-version").map(str::to_string);
                let consistent = match (reply.status.as_u16(), version.as_deref()) {
                    (501, Some("one")) | (502, Some("two")) => fired == "a, b" || fired == "b",
                    (200, None) => fired.is_empty() || fired == "a",
                    _ => false,
                };
                assert!(
                    consistent,
                    "a torn decision: status {}, x-version {version:?}, fired `{fired}`",
                    reply.status
                );
                seen += 1;
            }
            seen
        }));
    }
    let c = client();
    let v2 = r#"{"kind": "error", "status": 502, "headers": {"x-version": "two"}}"#;
    let v1 = r#"{"kind": "error", "status": 501, "headers": {"x-version": "one"}}"#;
    for round in 0..25 {
        let steps: [(Method, &str, &str); 4] = [
            (
                Method::PUT,
                "/rules/b",
                if round % 2 == 0 { v2 } else { v1 },
            ),
            (Method::POST, "/rules/a/disable", ""),
            (Method::POST, "/rules/b/disable", ""),
            (Method::POST, "/reset", ""),
        ];
        for (method, path, body) in steps {
            let reply = send(&c, method, &format!("{control}{path}"), &[], body).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        total += bounded(task)
            .await
            .unwrap_or_else(|e| panic!("load task: {e}"));
    }
    assert!(total >= 4, "{total} requests");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_python_client_turns_a_fault_on_and_off_around_a_block_of_requests() {
    if let Err(reason) =
        tokio::task::spawn_blocking(|| support::python_package("requests", "requests"))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    {
        println!("skipped: Python's `requests` could not be had: {reason}");
        return;
    }
    let (_upstream, proxy) = start("").await;
    let script = support::root().join("tests/control_client.py");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(proxy.proxy.url())
        .arg(proxy.control.url())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap_or_else(|_| panic!("the Python client did not finish"))
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok:"), "{stdout}");
    proxy.shutdown().await;
}

/// `traceforge proxy ARGS` as a process; reads its `listening on` and `control API on` lines.
struct Cli {
    child: std::process::Child,
    proxy: String,
    control: String,
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        let mut child = support::bin()
            .arg("proxy")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proxy = None;
        let mut control = None;
        while proxy.is_none() || control.is_none() {
            let Ok(line) = rx.recv_timeout(PATIENCE) else {
                let _ = child.kill();
                panic!("the proxy printed no addresses");
            };
            if let Some(url) = line.strip_prefix("listening on ") {
                proxy = Some(url.to_string());
            } else if let Some(url) = line.strip_prefix("control API on ") {
                control = Some(url.to_string());
            }
        }
        Cli {
            child,
            proxy: proxy.unwrap_or_default(),
            control: control.unwrap_or_default(),
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_cli_serves_the_control_api_over_its_fault_flags() {
    let upstream = demo_upstream(Vec::new()).await;
    let upstream_url = upstream.url();
    let cli = tokio::task::spawn_blocking(move || {
        Cli::start(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream_url,
            "--fault",
            "error:503:1:/api/resource",
            "--control",
            "127.0.0.1:0",
        ])
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let c = client();
    let rules = get(&c, &format!("{}/rules", cli.control), &[]).await.json();
    // The compact string, as the table it stands for (a path prefix is a glob there).
    assert_eq!(
        rules,
        json!({"rules": [{"name": "error-1", "kind": "error", "status": 503, "probability": 1.0, "match": {"path": "{/api/resource,/api/resource/**}"}, "enabled": true}]}),
    );
    let url = format!("{}/api/resource", cli.proxy);
    assert_eq!(
        get(&c, &url, &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let off = send(
        &c,
        Method::POST,
        &format!("{}/rules/error-1/disable", cli.control),
        &[],
        "",
    )
    .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(get(&c, &url, &[]).await.status, StatusCode::OK);
    drop(cli);
}

#[tokio::test]
async fn the_cli_serves_the_control_api_over_a_scenarios_faults() {
    let upstream = demo_upstream(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        "name = \"s\"\n[[faults]]\nname = \"teapot\"\nkind = \"error\"\nstatus = 418\n\n[[faults]]\nkind = \"drop\"\nmatch = { path = \"/never\" }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let args = [
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        upstream.url(),
        "--scenario".into(),
        file.display().to_string(),
        "--control".into(),
        "0".into(),
    ];
    let cli = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Cli::start(&args)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cli.control.starts_with("http://127.0.0.1:"),
        "{}",
        cli.control
    );
    let c = client();
    let rules = get(&c, &format!("{}/rules", cli.control), &[]).await.json();
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["teapot", "drop-2"]);
    let url = format!("{}/api/resource", cli.proxy);
    assert_eq!(get(&c, &url, &[]).await.status, StatusCode::IM_A_TEAPOT);
    let removed = send(
        &c,
        Method::DELETE,
        &format!("{}/rules/teapot", cli.control),
        &[],
        "",
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(get(&c, &url, &[]).await.status, StatusCode::OK);
    let reset = send(&c, Method::POST, &format!("{}/reset", cli.control), &[], "").await;
    assert_eq!(reset.json()["rules"][0]["name"], "teapot");
    assert_eq!(get(&c, &url, &[]).await.status, StatusCode::IM_A_TEAPOT);
    drop(cli);
}
