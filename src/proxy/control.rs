//! The proxy's control API (`traceforge proxy --control ADDR`): a small JSON-over-HTTP API on a
//! listener of its own, to change the proxy's fault rules while it runs and to read back what it
//! did to the last requests. Its OpenAPI 3.1 document is [`openapi`], shipped as
//! `traceforge-control.openapi.json` and served at `GET /openapi.json`.
//!
//! | method and path | what it does | success |
//! |---|---|---|
//! | `GET /rules` | the rules in order, disabled ones included | 200 `{"rules": [rule, ...]}` |
//! | `POST /rules` | adds a rule after the others | 201 the rule |
//! | `GET /rules/{name}` | one rule | 200 the rule |
//! | `PUT /rules/{name}` | replaces a rule, in its place | 200 the rule |
//! | `DELETE /rules/{name}` | removes a rule | 200 the rule removed |
//! | `POST /rules/{name}/enable`, `/disable` | turns a rule on or off, keeping its place | 200 the rule |
//! | `GET /requests?last=N` | the last N request records, oldest first (N: 0 to 10000, default 100) | 200 `{"requests": [record, ...]}` |
//! | `POST /reset` | back to the starting rules, all enabled; time windows and the arrival count start again; the request history is emptied | 200 `{"rules": [...]}` |
//! | `GET /openapi.json` | this API's OpenAPI document | 200 |
//!
//! A rule is a scenario's `[[faults]]` table as JSON (the same fields, the same checks, the same
//! messages) plus `"enabled"`; a body may carry `"enabled"` too (default `true` for a new rule; a
//! replacement keeps the rule's flag unless it says). `name` is required in a POST body; in a PUT
//! body it may be left out, and when given it must be the name in the URL (a rule cannot be
//! renamed). A record is a line of the request log ([`crate::observe::exchange`]).
//!
//! Errors are JSON, `{"error": "...", "problems": [...]}`: 400 (a body that is not JSON, not a
//! valid rule, or a bad query), 404 (no such rule or path), 405 (a method the path does not
//! serve, with `Allow`), 409 (a POST of a name that exists), 413 (a body over 64 KiB).
//!
//! Changes are atomic (see [`crate::fault::live`]): each request is decided by the rules before a
//! change or after it. The `/metrics` counters are never reset: Prometheus counters only go up.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::{Metrics, Proxy, ProxyOptions, serve_connection};
use crate::fault::live::{ChangeError, LiveRule, LiveRules, RuleProblem};
use crate::observe::{Observer, Recent};
use crate::server::{self, Listening};
use crate::spec::FaultSpec;

/// The largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a client may take to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /requests` without `last`.
pub const DEFAULT_LAST: usize = 100;

/// What the API works on: the proxy's rules, its request history and its metrics.
#[derive(Debug, Clone)]
pub struct Control {
    rules: Arc<LiveRules>,
    recent: Arc<Recent>,
    metrics: Metrics,
}

impl Control {
    pub fn rules(&self) -> &Arc<LiveRules> {
        &self.rules
    }

    pub fn recent(&self) -> &Arc<Recent> {
        &self.recent
    }
}

/// A proxy and its control API, each on its own listener.
#[derive(Debug)]
pub struct ControlledProxy {
    pub proxy: Listening,
    pub control: Listening,
    pub state: Control,
}

impl ControlledProxy {
    /// Stops the control API, then the proxy (see [`Listening::shutdown`]).
    pub async fn shutdown(self) {
        self.control.shutdown().await;
        self.proxy.shutdown().await;
    }
}

/// Runs the proxy on `listener` under `rules` (its starting rules; `options.plan` is not used for
/// faults) and its control API on `control`; with `tls`, the proxy's listener speaks TLS (the
/// control API stays clear text, on its own address). The proxy keeps the last
/// [`Recent::CAPACITY`] request records for `GET /requests`, besides its request log and spans.
pub fn spawn_on(
    listener: TcpListener,
    control: TcpListener,
    mut options: ProxyOptions,
    rules: LiveRules,
    tls: Option<&crate::tls::ServerTls>,
) -> std::io::Result<ControlledProxy> {
    let rules = Arc::new(rules);
    let recent = Arc::new(Recent::default());
    let observer = match options.observer.take() {
        Some(observer) => Observer::clone(&observer),
        None => Observer::new(rules.seed()),
    };
    options.observer = Some(Arc::new(observer.with_recent(recent.clone())));
    options.plan = rules.load().plan().clone();
    let proxy = Proxy::new(options)?.with_live_rules(rules.clone());
    let state = Control {
        rules,
        recent,
        metrics: proxy.metrics().clone(),
    };
    let proxy = Arc::new(proxy);
    let proxy = match tls {
        Some(tls) => server::spawn_tls(listener, tls.acceptor.clone(), move |stream, shutdown| {
            serve_connection(stream, proxy.clone(), shutdown)
        })?,
        None => server::spawn_tcp(listener, move |stream, shutdown| {
            serve_connection(stream, proxy.clone(), shutdown)
        })?,
    };
    let control = serve_on(control, state.clone())?;
    Ok(ControlledProxy {
        proxy,
        control,
        state,
    })
}

/// Serves the control API of `state` on `listener`.
pub fn serve_on(listener: TcpListener, state: Control) -> std::io::Result<Listening> {
    let state = Arc::new(state);
    server::spawn_tcp(listener, move |stream, shutdown| {
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, req).await) }
        });
        server::serve_connection(stream, service, shutdown)
    })
}

/// `--control`'s value: `ADDR:PORT`, or a bare port on 127.0.0.1 (the API changes what the proxy
/// does: it is on loopback unless an address says otherwise).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("`{text}` is not a port or an address with a port (like 8474 or 127.0.0.1:8474)")
    })
}

/// One request to the API.
pub async fn handle(state: &Control, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match segments.as_slice() {
        ["rules"] => match method {
            Method::GET => ok(json!({"rules": rules_json(&state.rules.list())})),
            Method::POST => match read_rule(req).await {
                Ok((spec, enabled)) => match state.rules.add(spec, enabled.unwrap_or(true)) {
                    Ok(rule) => {
                        state.metrics.add_rule(&rule.rule);
                        let location = format!("/rules/{}", rule.name());
                        let mut response = reply(StatusCode::CREATED, rule_json(&rule));
                        if let Ok(value) = HeaderValue::from_str(&location) {
                            response.headers_mut().insert(header::LOCATION, value);
                        }
                        response
                    }
                    Err(e) => change_error(&e),
                },
                Err(response) => response,
            },
            _ => not_allowed(&method, &path, "GET, POST"),
        },
        ["rules", name] => match method {
            Method::GET => match state.rules.get(name) {
                Some(rule) => ok(rule_json(&rule)),
                None => change_error(&ChangeError::Unknown(name.to_string())),
            },
            Method::PUT => match read_rule(req).await {
                Ok((spec, enabled)) => match state.rules.replace(name, spec, enabled) {
                    Ok(rule) => {
                        state.metrics.add_rule(&rule.rule);
                        ok(rule_json(&rule))
                    }
                    Err(e) => change_error(&e),
                },
                Err(response) => response,
            },
            Method::DELETE => match state.rules.remove(name) {
                Ok(rule) => ok(rule_json(&rule)),
                Err(e) => change_error(&e),
            },
            _ => not_allowed(&method, &path, "GET, PUT, DELETE"),
        },
        ["rules", name, action @ ("enable" | "disable")] => match method {
            Method::POST => match state.rules.set_enabled(name, *action == "enable") {
                Ok(rule) => ok(rule_json(&rule)),
                Err(e) => change_error(&e),
            },
            _ => not_allowed(&method, &path, "POST"),
        },
        ["requests"] => match method {
            Method::GET => match last(req.uri().query()) {
                Ok(n) => requests(&state.recent, n),
                Err(message) => error(StatusCode::BAD_REQUEST, &message),
            },
            _ => not_allowed(&method, &path, "GET"),
        },
        ["reset"] => match method {
            Method::POST => {
                let rules = state.rules.reset();
                state.recent.clear();
                ok(json!({"rules": rules_json(&rules)}))
            }
            _ => not_allowed(&method, &path, "POST"),
        },
        ["openapi.json"] => match method {
            Method::GET => ok(openapi()),
            _ => not_allowed(&method, &path, "GET"),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            &format!(
                "no such path: {path}; the control API serves /rules, /rules/{{name}}, /rules/{{name}}/enable, /rules/{{name}}/disable, /requests, /reset and /openapi.json"
            ),
        ),
    }
}

/// A rule as the API shows it: its `[[faults]]` table as JSON, and `enabled`.
pub fn rule_json(rule: &LiveRule) -> Value {
    let mut object = match rule.spec.as_ref().map(serde_json::to_value) {
        Some(Ok(Value::Object(object))) => object,
        // A rule compiled elsewhere has no table to show: its name and kind say what it is.
        _ => {
            let mut object = Map::new();
            object.insert("kind".into(), json!(rule.rule.action.kind()));
            object
        }
    };
    object.insert("name".into(), json!(rule.name()));
    object.insert("enabled".into(), json!(rule.enabled));
    Value::Object(object)
}

fn rules_json(rules: &[LiveRule]) -> Vec<Value> {
    rules.iter().map(rule_json).collect()
}

/// `?last=N`, or the default.
fn last(query: Option<&str>) -> Result<usize, String> {
    let mut last = DEFAULT_LAST;
    for (key, value) in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (!key.is_empty()).then_some((key, value))
        })
    {
        if key != "last" {
            return Err(format!(
                "unknown query parameter `{key}`; /requests takes `last`"
            ));
        }
        last = value
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= Recent::CAPACITY)
            .ok_or_else(|| {
                format!(
                    "last: `{value}` is not a number of requests from 0 to {}",
                    Recent::CAPACITY
                )
            })?;
    }
    Ok(last)
}

/// The last `n` records as `{"requests": [...]}`: the kept lines, spliced in as they are.
fn requests(recent: &Recent, n: usize) -> Response<Full<Bytes>> {
    let lines = recent.last(n);
    let mut body = Vec::with_capacity(16 + lines.iter().map(|l| l.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"requests\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b"]}");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a rule body: the JSON of a `[[faults]]` table, with an optional `enabled`.
async fn read_rule(
    req: Request<Incoming>,
) -> Result<(FaultSpec, Option<bool>), Response<Full<Bytes>>> {
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {MAX_BODY} bytes; a rule is much smaller"),
            ));
        }
        Ok(Err(e)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            ));
        }
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
            ));
        }
    };
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object: a fault rule, as a scenario's [[faults]] table",
        ));
    };
    let enabled = match object.remove("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(b),
        Some(other) => {
            return Err(invalid(vec![RuleProblem {
                path: "enabled".into(),
                message: format!("expected true or false, found {other}"),
                help: None,
            }]));
        }
    };
    let spec = serde_json::from_value::<FaultSpec>(Value::Object(object))
        .map_err(|e| invalid(vec![serde_problem(&e.to_string())]))?;
    Ok((spec, enabled))
}

/// serde's message about a rule, in the words a scenario file's error uses: an unknown field gets
/// "did you mean" and the valid names.
fn serde_problem(message: &str) -> RuleProblem {
    let message = message.trim();
    if let Some(unknown) = crate::spec::error::parse_unknown(message) {
        let help = unknown.help();
        let what = if unknown.what == "key" {
            "field"
        } else {
            "value"
        };
        return RuleProblem {
            path: String::new(),
            message: format!("unknown {what} `{}`", unknown.name),
            help,
        };
    }
    RuleProblem {
        path: String::new(),
        message: message.to_string(),
        help: None,
    }
}

fn change_error(e: &ChangeError) -> Response<Full<Bytes>> {
    match e {
        ChangeError::Unknown(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        ChangeError::Exists(_) => error(StatusCode::CONFLICT, &e.to_string()),
        ChangeError::Invalid(problems) => invalid(problems.clone()),
    }
}

fn invalid(problems: Vec<RuleProblem>) -> Response<Full<Bytes>> {
    let message = ChangeError::Invalid(problems.clone()).to_string();
    let problems: Vec<Value> = problems
        .iter()
        .map(|p| {
            let mut object = json!({"path": p.path, "message": p.message});
            if let (Some(help), Value::Object(map)) = (&p.help, &mut object) {
                map.insert("help".into(), json!(help));
            }
            object
        })
        .collect();
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": message, "problems": problems}),
    )
}

fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{path} does not take {method}; it takes {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"error": message}))
}

fn ok(value: Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, value)
}

fn reply(status: StatusCode, value: Value) -> Response<Full<Bytes>> {
    crate::upstream::json_response(status, &value)
}

/// The API's OpenAPI 3.1 document. `traceforge-control.openapi.json` at the repository root is
/// this, pretty-printed (`traceforge schema --control-api`); a test checks both that it is current
/// and that the server answers as it says.
pub fn openapi() -> Value {
    use schemars::generate::SchemaSettings;
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    generator.subschema_for::<FaultSpec>();
    let mut schemas = generator.take_definitions(true);
    // The rule's body: the `[[faults]]` table, plus `enabled`.
    if let Some(Value::Object(body)) = schemas.remove("FaultSpec") {
        let mut body = body;
        if let Some(Value::Object(properties)) = body.get_mut("properties") {
            properties.insert(
                "enabled".into(),
                json!({
                    "type": "boolean",
                    "description": "Whether the rule takes part in decisions. A disabled rule keeps its place in the list. Default: true for a new rule; a replacement keeps the rule's flag."
                }),
            );
        }
        body.insert(
            "description".into(),
            json!("A fault rule: the fields of a scenario's `[[faults]]` table, as JSON, and `enabled`."),
        );
        schemas.insert("RuleBody".into(), Value::Object(body));
    }
    schemas.insert(
        "NewRule".into(),
        json!({
            "description": "A rule to add: `name` is required.",
            "allOf": [{"$ref": "#/components/schemas/RuleBody"}, {"required": ["name"]}]
        }),
    );
    schemas.insert(
        "Rule".into(),
        json!({
            "description": "A rule as the proxy holds it: always with its `name` and `enabled`.",
            "allOf": [{"$ref": "#/components/schemas/RuleBody"}, {"required": ["name", "kind", "enabled"]}]
        }),
    );
    schemas.insert(
        "RuleList".into(),
        json!({
            "type": "object",
            "properties": {"rules": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}}},
            "required": ["rules"],
            "additionalProperties": false
        }),
    );
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "What is wrong, in one line."},
                "problems": {
                    "type": "array",
                    "description": "An invalid rule's problems, each at a field of the rule (`status`, `match.path`; empty for the rule as a whole).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "message": {"type": "string"},
                            "help": {"type": "string"}
                        },
                        "required": ["path", "message"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["error"],
            "additionalProperties": false
        }),
    );
    schemas.insert(
        "RequestRecord".into(),
        json!({
            "type": "object",
            "description": "One request the proxy served: a line of its request log.",
            "properties": {
                "time": {"type": "string", "description": "When the request arrived (RFC 3339)."},
                "proxy": {"type": "string", "description": "A named proxy's name."},
                "trace_id": {"type": "string"},
                "span_id": {"type": "string"},
                "request_id": {"type": "string"},
                "method": {"type": "string"},
                "path": {"type": "string", "description": "Path and query."},
                "status": {"type": ["integer", "null"], "description": "The status the client got; null when none was sent."},
                "error": {"type": ["string", "null"], "description": "Why the client did not get the upstream's answer, if it did not."},
                "outcome": {"type": "string", "description": "The proxy's disposition: the label of its /metrics counters, or `cancelled`."},
                "faults": {
                    "type": "array",
                    "description": "The rules that fired, in firing order.",
                    "items": {
                        "type": "object",
                        "properties": {"rule": {"type": "string"}, "kind": {"type": "string"}},
                        "required": ["rule", "kind"],
                        "additionalProperties": false
                    }
                },
                "latency_ms": {"type": "number"},
                "bytes_in": {"type": "integer", "minimum": 0},
                "bytes_out": {"type": "integer", "minimum": 0}
            },
            "required": ["time", "trace_id", "span_id", "request_id", "method", "path", "status", "error", "outcome", "faults", "latency_ms", "bytes_in", "bytes_out"]
        }),
    );
    schemas.insert(
        "RequestList".into(),
        json!({
            "type": "object",
            "properties": {"requests": {"type": "array", "items": {"$ref": "#/components/schemas/RequestRecord"}}},
            "required": ["requests"],
            "additionalProperties": false
        }),
    );

    let json_content = |schema: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
    let answer = |description: &str, schema: &str| json!({"description": description, "content": json_content(schema)});
    let err = |description: &str| answer(description, "Error");
    let name_param = json!({
        "name": "name",
        "in": "path",
        "required": true,
        "description": "The rule's name.",
        "schema": {"type": "string"}
    });
    let rule_ops = |summary: &str, op: &str| {
        json!({
            "post": {
                "operationId": op,
                "summary": summary,
                "parameters": [name_param.clone()],
                "responses": {
                    "200": answer("The rule, as it is now.", "Rule"),
                    "404": err("No rule has this name."),
                }
            }
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "TraceForge proxy control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Served by `traceforge proxy --control ADDR` on a listener of its own. Changes the proxy's fault rules while it runs and reads back the last requests. Every change is atomic: a request is decided by the rules before it or after it, never by part of one. Errors are JSON (the Error schema) with a 4xx status: besides those listed under each operation, a method a path does not serve gets 405 with `Allow`, and a path not listed here gets 404. The /metrics counters are never reset."
        },
        "paths": {
            "/rules": {
                "get": {
                    "operationId": "listRules",
                    "summary": "The rules in order, disabled ones included.",
                    "responses": {
                        "200": answer("The rules.", "RuleList")
                    }
                },
                "post": {
                    "operationId": "addRule",
                    "summary": "Adds a rule after the others.",
                    "requestBody": {"required": true, "content": json_content("NewRule")},
                    "responses": {
                        "201": answer("The rule added; `Location` is its URL.", "Rule"),
                        "400": err("The body is not JSON or not a valid rule (`problems` says which fields)."),
                        "409": err("A rule of this name exists already."),
                        "413": err("The body is over 64 KiB.")
                    }
                }
            },
            "/rules/{name}": {
                "get": {
                    "operationId": "getRule",
                    "summary": "One rule.",
                    "parameters": [name_param.clone()],
                    "responses": {
                        "200": answer("The rule.", "Rule"),
                        "404": err("No rule has this name."),
                    }
                },
                "put": {
                    "operationId": "replaceRule",
                    "summary": "Replaces a rule, in its place. `name` may be left out of the body; when given it must be the name in the URL. The rule keeps its `enabled` flag unless the body gives one.",
                    "parameters": [name_param.clone()],
                    "requestBody": {"required": true, "content": json_content("RuleBody")},
                    "responses": {
                        "200": answer("The rule, as it is now.", "Rule"),
                        "400": err("The body is not JSON or not a valid rule, or names another rule."),
                        "404": err("No rule has this name."),
                        "413": err("The body is over 64 KiB.")
                    }
                },
                "delete": {
                    "operationId": "removeRule",
                    "summary": "Removes a rule.",
                    "parameters": [name_param.clone()],
                    "responses": {
                        "200": answer("The rule removed.", "Rule"),
                        "404": err("No rule has this name."),
                    }
                }
            },
            "/rules/{name}/enable": rule_ops("Enables a rule, in its place.", "enableRule"),
            "/rules/{name}/disable": rule_ops("Disables a rule: it stays in the list, in its place, and fires no more.", "disableRule"),
            "/requests": {
                "get": {
                    "operationId": "listRequests",
                    "summary": "The last requests the proxy served, oldest first: each the line of the request log, kept when the request is over (a response with a known length is over before its last byte reaches the client). The proxy keeps the last 10000.",
                    "parameters": [{
                        "name": "last",
                        "in": "query",
                        "required": false,
                        "description": "How many of the last requests.",
                        "schema": {"type": "integer", "minimum": 0, "maximum": Recent::CAPACITY, "default": DEFAULT_LAST}
                    }],
                    "responses": {
                        "200": answer("The requests, oldest first.", "RequestList"),
                        "400": err("`last` is not a number from 0 to 10000, or the query has another parameter."),
                    }
                }
            },
            "/reset": {
                "post": {
                    "operationId": "reset",
                    "summary": "Back to the starting rules, all enabled. Time windows (`from`, `until`) and the arrival count that stands in for a missing `x-traceforge-index` start again; the request history is emptied. The /metrics counters are not reset.",
                    "responses": {
                        "200": answer("The rules, as at the start.", "RuleList"),
                    }
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}}
                    }
                }
            }
        },
        "components": {"schemas": Value::Object(schemas)}
    })
}

/// [`openapi`] pretty-printed, with a trailing newline: the committed file's text.
pub fn openapi_text() -> String {
    let mut text = serde_json::to_string_pretty(&openapi())
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_on_loopback() {
        assert_eq!(
            parse_listen("8474"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8474)))
        );
        assert_eq!(
            parse_listen("0.0.0.0:9"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 9)))
        );
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn last_reads_the_query() {
        assert_eq!(last(None), Ok(DEFAULT_LAST));
        assert_eq!(last(Some("last=5")), Ok(5));
        assert_eq!(last(Some("last=0")), Ok(0));
        assert!(last(Some("last=10001")).is_err());
        assert!(last(Some("last=x")).is_err());
        assert!(last(Some("first=1")).is_err());
    }

    #[test]
    fn unknown_fields_get_did_you_mean() {
        let e = serde_json::from_value::<FaultSpec>(json!({"kind": "error", "staus": 503}))
            .err()
            .map(|e| serde_problem(&e.to_string()));
        let Some(problem) = e else {
            panic!("an unknown field must be refused")
        };
        assert_eq!(problem.message, "unknown field `staus`");
        assert!(
            problem
                .help
                .as_deref()
                .is_some_and(|h| h.contains("did you mean `status`")),
            "{problem:?}"
        );
    }
}
