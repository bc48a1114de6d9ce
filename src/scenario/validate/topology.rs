//! Validation of `[[services]]`, `[[proxies]]` and where the load enters (`[load] to`,
//! `[load] command`): names, placeholders, readiness, the start order of services (a cycle is an
//! error), and the single-proxy keys that cannot be mixed in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::fault;
use crate::scenario::topology::{
    ClientConfig, Entry, ListenerTls, NamedProxy, Piece, ProxyUpstream, Readiness, ServiceConfig,
    Template, Topology,
};
use crate::spec::check::{Checker, Seg, is_file_name, key, keys, with};
use crate::spec::error::did_you_mean;
use crate::spec::{Clock, CommandSpec, NamedProxySpec, ScenarioSpec, ServiceSpec};

use super::{proxy, upstream};

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the topology of `spec`: `None` for a file without `[[services]]` and `[[proxies]]`
/// (where the keys that need them are refused).
pub(super) fn check(c: &mut Checker, spec: &ScenarioSpec) -> Option<Topology> {
    if spec.services.is_empty() && spec.proxies.is_empty() {
        no_topology(c, spec);
        return None;
    }
    no_single_proxy_keys(c, spec);
    if spec.run.clock == Clock::Virtual {
        c.report(
            keys(&["run", "clock"]),
            "the virtual clock cannot play `[[services]]` or `[[proxies]]`",
            "needs the real clock",
            Some("services are real processes, which cannot run on a paused clock, and named proxies play on the real clock; remove `clock`, or use clock = \"real\"".into()),
        );
    }
    let names = Names::check(c, spec);

    let services: Vec<ServiceConfig> = spec
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| service(c, i, s, &names))
        .collect();
    let proxies: Vec<NamedProxy> = spec
        .proxies
        .iter()
        .enumerate()
        .map(|(i, p)| named_proxy(c, i, p, &names))
        .collect();
    let client = client(c, spec, &names);
    let entry = entry(c, spec, &names);
    let graph = Graph::new(spec, &services, &proxies);
    let order = match graph.cycle() {
        Some((cycle, at)) => {
            let text: Vec<&str> = cycle.iter().map(|&n| names.of(n)).collect();
            c.report(
                at,
                format!(
                    "these services wait for each other: {}",
                    text.join(" -> ")
                ),
                "dependency cycle",
                Some("a service starts after every service it reaches by URL (directly or through a proxy in front of it), so none of these could start first; break the cycle".into()),
            );
            (0..services.len()).collect()
        }
        None => graph.start_order(),
    };
    needs_port(c, spec, &services, &proxies, client.as_ref(), &entry);

    let mut slots: Vec<Option<ServiceConfig>> = services.into_iter().map(Some).collect();
    let services = order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect();
    Some(Topology {
        services,
        proxies,
        entry,
        client,
    })
}

/// Without services and named proxies, `[load]` has nowhere to point `to` and no proxy to watch
/// a client command through.
fn no_topology(c: &mut Checker, spec: &ScenarioSpec) {
    let l = &spec.load;
    if l.to.is_some() {
        c.report(
            keys(&["load", "to"]),
            "`to` names a `[[services]]` or `[[proxies]]` entry, and this scenario has none",
            "nothing to name",
            Some("remove `to`: the load goes through the scenario's proxy".into()),
        );
    }
    if l.command.is_some() {
        needs_a_proxy(c);
    }
    client_only(c, spec);
}

fn needs_a_proxy(c: &mut Checker) {
    c.report(
        keys(&["load", "command"]),
        "`load.command` needs at least one `[[proxies]]` entry",
        "no proxy to watch",
        Some("the run checks your client through the calls it makes through named proxies: add a [[proxies]] entry in front of a dependency".into()),
    );
}

/// `load.env` and `load.cwd` without `load.command`.
fn client_only(c: &mut Checker, spec: &ScenarioSpec) {
    let l = &spec.load;
    if l.command.is_some() {
        return;
    }
    for (name, given) in [("env", !l.env.is_empty()), ("cwd", l.cwd.is_some())] {
        if given {
            c.report(
                keys(&["load", name]),
                format!("`{name}` is for `load.command`, which is not set"),
                "without a command",
                Some(format!(
                    "remove `{name}`, or add `command` to run your own client"
                )),
            );
        }
    }
}

/// `[[faults]]`, `[upstream]` and `[proxy]` describe the one proxy of the simple shape.
fn no_single_proxy_keys(c: &mut Checker, spec: &ScenarioSpec) {
    let help = || {
        Some("put them in a [[proxies]] entry: each named proxy has its own `faults`, `upstream` and proxy settings".to_string())
    };
    if !spec.faults.is_empty() {
        c.report(
            key("faults"),
            "top-level `[[faults]]` cannot be mixed with `[[services]]` or `[[proxies]]`",
            "single-proxy key",
            help(),
        );
    }
    for (name, given) in [
        ("ca_file", spec.upstream.ca_file.is_some()),
        ("insecure", spec.upstream.insecure),
        ("http2", spec.upstream.http2),
    ] {
        if given {
            c.report_key(
                keys(&["upstream", name]),
                "`[upstream]` cannot be mixed with `[[services]]` or `[[proxies]]`",
                "single-proxy key",
                Some("put it in a [[proxies]] entry's `upstream` table, next to its `url`".into()),
            );
        }
    }
    if spec.upstream.url.is_some() {
        c.report(
            keys(&["upstream", "url"]),
            "`[upstream]` cannot be mixed with `[[services]]` or `[[proxies]]`",
            "single-proxy key",
            help(),
        );
    }
    if !spec.upstream.routes.is_empty() {
        c.report(
            keys(&["upstream", "routes"]),
            "`[upstream]` cannot be mixed with `[[services]]` or `[[proxies]]`",
            "single-proxy key",
            help(),
        );
    }
    if !spec.proxy.is_default() {
        c.report(
            key("proxy"),
            "`[proxy]` cannot be mixed with `[[services]]` or `[[proxies]]`",
            "single-proxy key",
            help(),
        );
    }
}

/// The names of services and proxies, checked once.
struct Names<'a> {
    services: Vec<&'a str>,
    proxies: Vec<&'a str>,
    /// The proxies with `tls = true` and a generated certificate: those with a CA file.
    generated_tls: Vec<&'a str>,
}

impl<'a> Names<'a> {
    fn check(c: &mut Checker, spec: &'a ScenarioSpec) -> Names<'a> {
        let services: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
        let proxies: Vec<&str> = spec.proxies.iter().map(|p| p.name.as_str()).collect();
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        let all = services
            .iter()
            .enumerate()
            .map(|(i, n)| ("services", i, *n))
            .chain(proxies.iter().enumerate().map(|(i, n)| ("proxies", i, *n)));
        for (table, i, name) in all {
            let at = vec![
                Seg::Key(table.into()),
                Seg::Index(i),
                Seg::Key("name".into()),
            ];
            if !is_file_name(name) {
                c.report(
                    at.clone(),
                    format!("`{name}` is not a usable name"),
                    "invalid name",
                    Some("use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example \"checkout\")".into()),
                );
            }
            let here = format!("{table}[{i}]");
            if let Some(first) = seen.get(name) {
                c.report(
                    at,
                    format!("`{name}` is already the name of {first}"),
                    "duplicate name",
                    Some("services and proxies share one set of names, so that placeholders and `load.to` name one thing: rename one of them".into()),
                );
            } else {
                seen.insert(name, here);
            }
        }
        let generated_tls = spec
            .proxies
            .iter()
            .filter(|p| p.tls && p.cert_file.is_none())
            .map(|p| p.name.as_str())
            .collect();
        Names {
            services,
            proxies,
            generated_tls,
        }
    }

    fn all(&self) -> Vec<&'a str> {
        self.services
            .iter()
            .chain(self.proxies.iter())
            .copied()
            .collect()
    }

    /// The name of graph node `n`: services first, then proxies.
    fn of(&self, n: usize) -> &'a str {
        match n.checked_sub(self.services.len()) {
            None => self.services.get(n).copied().unwrap_or("?"),
            Some(p) => self.proxies.get(p).copied().unwrap_or("?"),
        }
    }
}

/// `` `a`, `b` `` for a help line.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "did you mean `x`? {what}: `a`, `b`", or "{none}" when there is nothing to choose from.
fn choices(name: &str, names: &[&str], what: &str, none: &str) -> String {
    if names.is_empty() {
        return none.to_string();
    }
    match did_you_mean(name, names) {
        Some(best) => format!("did you mean `{best}`? {what}: {}", quoted(names)),
        None => format!("{what}: {}", quoted(names)),
    }
}

/// Where a template is written: only a service's own command and env know `{port}`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Service,
    Elsewhere,
}

/// Parses the placeholders of `text`, reporting every problem at `path`.
fn template(
    c: &mut Checker,
    path: &[Seg],
    text: &str,
    names: &Names<'_>,
    place: Place,
) -> Template {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            literal.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            literal.push('}');
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            c.report(
                path.to_vec(),
                format!("`{text}` has a `}}` that closes no placeholder"),
                "lone brace",
                Some("write `}}` for a literal `}` (and `{{` for a literal `{`)".into()),
            );
            return Template { pieces };
        }
        let Some(close) = tail.find('}') else {
            c.report(
                path.to_vec(),
                format!("`{text}` has a `{{` that is never closed"),
                "unclosed placeholder",
                Some(
                    "close the placeholder, as in `{port}`, or write `{{` for a literal `{`".into(),
                ),
            );
            return Template { pieces };
        };
        let inner = &tail[1..close];
        rest = &tail[close + 1..];
        if let Some(piece) = placeholder(c, path, inner, names, place) {
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Template { pieces }
}

/// One placeholder, the text between its braces.
fn placeholder(
    c: &mut Checker,
    path: &[Seg],
    inner: &str,
    names: &Names<'_>,
    place: Place,
) -> Option<Piece> {
    match inner {
        "port" if place == Place::Service => return Some(Piece::Port),
        "port" => {
            c.report(
                path.to_vec(),
                "`{port}` is only known inside a [[services]] entry: it is the port of the service being started",
                "no port here",
                Some("use `{services.NAME.url}` for a service's address, or `{proxies.NAME.url}` for a proxy's".into()),
            );
            return None;
        }
        "scenario_dir" => return Some(Piece::ScenarioDir),
        _ => {}
    }
    let named = |prefix: &str| {
        inner
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".url"))
    };
    if let Some(name) = named("services.") {
        if names.services.contains(&name) {
            return Some(Piece::ServiceUrl(name.to_string()));
        }
        c.report(
            path.to_vec(),
            format!(
                "`{{{inner}}}` names no service: there is no [[services]] entry named `{name}`"
            ),
            "unknown service",
            Some(choices(
                name,
                &names.services,
                "services in this scenario",
                "this scenario has no [[services]]",
            )),
        );
        return None;
    }
    if let Some(name) = inner
        .strip_prefix("proxies.")
        .and_then(|r| r.strip_suffix(".ca_file"))
    {
        if names.generated_tls.contains(&name) {
            return Some(Piece::ProxyCaFile(name.to_string()));
        }
        let (message, label) = if names.proxies.contains(&name) {
            (
                format!(
                    "`{{{inner}}}` has no value: proxy `{name}` has no generated certificate (it needs `tls = true` without `cert_file`)"
                ),
                "no CA file",
            )
        } else {
            (
                format!(
                    "`{{{inner}}}` names no proxy: there is no [[proxies]] entry named `{name}`"
                ),
                "unknown proxy",
            )
        };
        c.report(
            path.to_vec(),
            message,
            label,
            Some(choices(
                name,
                &names.generated_tls,
                "proxies with a generated certificate",
                "set `tls = true` on the proxy: its generated CA's file is then `{proxies.NAME.ca_file}` (with your own `cert_file`, give your CA's path instead)",
            )),
        );
        return None;
    }
    if let Some(name) = named("proxies.") {
        if names.proxies.contains(&name) {
            return Some(Piece::ProxyUrl(name.to_string()));
        }
        c.report(
            path.to_vec(),
            format!("`{{{inner}}}` names no proxy: there is no [[proxies]] entry named `{name}`"),
            "unknown proxy",
            Some(choices(
                name,
                &names.proxies,
                "proxies in this scenario",
                "this scenario has no [[proxies]]",
            )),
        );
        return None;
    }
    let mut valid: Vec<String> = Vec::new();
    if place == Place::Service {
        valid.push("port".into());
    }
    valid.extend(names.services.iter().map(|n| format!("services.{n}.url")));
    valid.extend(names.proxies.iter().map(|n| format!("proxies.{n}.url")));
    valid.extend(
        names
            .generated_tls
            .iter()
            .map(|n| format!("proxies.{n}.ca_file")),
    );
    valid.push("scenario_dir".into());
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    let list = valid
        .iter()
        .map(|v| format!("`{{{v}}}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let help = match did_you_mean(inner, &valid) {
        Some(best) => format!(
            "did you mean `{{{best}}}`? placeholders here: {list}; write `{{{{` and `}}}}` for literal braces"
        ),
        None => format!("placeholders here: {list}; write `{{{{` and `}}}}` for literal braces"),
    };
    c.report(
        path.to_vec(),
        format!("`{{{inner}}}` is not a placeholder"),
        "unknown placeholder",
        Some(help),
    );
    None
}

/// A command: argv as written, or one string split like a shell would.
fn command(
    c: &mut Checker,
    path: &[Seg],
    spec: &CommandSpec,
    names: &Names<'_>,
    place: Place,
) -> Vec<Template> {
    let (words, located): (Vec<String>, bool) = match spec {
        CommandSpec::Args(args) => (args.clone(), true),
        CommandSpec::Line(line) => match shlex::split(line) {
            Some(words) => (words, false),
            None => {
                c.report(
                    path.to_vec(),
                    format!("`{line}` cannot be split into words: a quote is never closed, or it ends with a `\\`"),
                    "unbalanced quote",
                    Some("close every quote, or write the command as a list such as [\"python3\", \"app.py\"]".into()),
                );
                return Vec::new();
            }
        },
    };
    if words.is_empty() {
        c.report(
            path.to_vec(),
            "the command is empty",
            "no program",
            Some("write the program and its arguments, such as [\"python3\", \"app.py\"]".into()),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let at = if located {
            with(path, Seg::Index(i))
        } else {
            path.to_vec()
        };
        if word.contains('\0') {
            c.report(
                at.clone(),
                "an argument holds a NUL character, which no program can receive",
                "NUL",
                None,
            );
        }
        if i == 0 && word.is_empty() {
            c.report(
                at.clone(),
                "the program name is empty",
                "no program",
                Some("the first word is the program to run, such as \"python3\"".into()),
            );
        }
        out.push(template(c, &at, word, names, place));
    }
    out
}

/// Environment variables with placeholders, in name order.
fn env(
    c: &mut Checker,
    path: &[Seg],
    vars: &BTreeMap<String, String>,
    names: &Names<'_>,
    place: Place,
) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let at = with(path, Seg::Key(name.clone()));
        if name.is_empty() || name.contains(['=', '\0']) {
            c.report_key(
                at.clone(),
                format!("`{name}` cannot name an environment variable"),
                "invalid name",
                Some("a variable name is not empty and holds no `=`, such as PORT".into()),
            );
        }
        if value.contains('\0') {
            c.report(
                at.clone(),
                "the value holds a NUL character, which no environment can hold",
                "NUL",
                None,
            );
        }
        out.push((name.clone(), template(c, &at, value, names, place)));
    }
    out
}

fn cwd(c: &mut Checker, path: Vec<Seg>, cwd: Option<&String>) -> Option<PathBuf> {
    let dir = cwd?;
    if dir.is_empty() {
        c.report(
            path,
            "the working directory is empty",
            "empty",
            Some("leave `cwd` out to run in the folder traceforge runs in".into()),
        );
    }
    Some(PathBuf::from(dir))
}

fn service(c: &mut Checker, i: usize, s: &ServiceSpec, names: &Names<'_>) -> ServiceConfig {
    let at = with(&key("services"), Seg::Index(i));
    let field = |name: &str| with(&at, Seg::Key(name.into()));
    let command = command(c, &field("command"), &s.command, names, Place::Service);
    let env = env(c, &field("env"), &s.env, names, Place::Service);
    let cwd = cwd(c, field("cwd"), s.cwd.as_ref());
    if s.port == Some(0) {
        c.report(
            field("port"),
            "port 0 is not a port a service can be reached at",
            "not a port",
            Some(
                "leave `port` out to have a free port picked for each run, given as `{port}`"
                    .into(),
            ),
        );
    }

    let ready = s.ready.clone().unwrap_or_default();
    let ready_at = field("ready");
    let rf = |name: &str| with(&ready_at, Seg::Key(name.into()));
    let given: Vec<&str> = [
        ("http", ready.http.is_some()),
        ("tcp", ready.tcp == Some(true)),
        ("log", ready.log.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, g)| g.then_some(n))
    .collect();
    if given.len() > 1 {
        c.report(
            ready_at.clone(),
            format!(
                "readiness is one check, and this gives {}",
                quoted(&given).replace(", ", " and ")
            ),
            "more than one check",
            Some(
                "keep one of `http = \"/health\"`, `tcp = true` and `log = \"listening on\"`"
                    .into(),
            ),
        );
    }
    if ready.tcp == Some(false) && given.is_empty() {
        c.report(
            rf("tcp"),
            "`tcp = false` does not say when the service is ready",
            "no check",
            Some("write `tcp = true` (the default), `http = \"/health\"` or `log = \"listening on\"`".into()),
        );
    }
    let readiness = if let Some(path) = &ready.http {
        if !path.starts_with('/') || path.contains([' ', '#']) {
            c.report(
                rf("http"),
                format!("`{path}` is not a request path"),
                "not a path",
                Some("write the path the service answers when it is ready, starting with `/`, such as \"/health\"".into()),
            );
        }
        Readiness::Http(path.clone())
    } else if let Some(text) = &ready.log {
        if text.is_empty() {
            c.report(
                rf("log"),
                "an empty text is in every line: it says nothing about readiness",
                "empty",
                Some(
                    "write a text the service prints once it is ready, such as \"listening on\""
                        .into(),
                ),
            );
        }
        Readiness::Log(text.clone())
    } else {
        Readiness::Tcp
    };
    let ready_timeout = ready.timeout.map_or(DEFAULT_READY_TIMEOUT, |d| d.get());
    c.positive(rf("timeout"), ready_timeout, "the readiness timeout");
    let stop_timeout = s.stop_timeout.map_or(DEFAULT_STOP_TIMEOUT, |d| d.get());
    c.positive(field("stop_timeout"), stop_timeout, "the stop timeout");

    ServiceConfig {
        name: s.name.clone(),
        command,
        env,
        cwd,
        port: s.port,
        ready: readiness,
        ready_timeout,
        stop_timeout,
    }
}

fn named_proxy(c: &mut Checker, i: usize, p: &NamedProxySpec, names: &Names<'_>) -> NamedProxy {
    let at = with(&key("proxies"), Seg::Index(i));
    let field = |name: &str| with(&at, Seg::Key(name.into()));
    let up_at = field("upstream");
    let uf = |name: &str| with(&up_at, Seg::Key(name.into()));
    let up = p.upstream.clone().unwrap_or_default();
    let given: Vec<&str> = [
        ("url", up.url.is_some()),
        ("routes", up.routes.is_some()),
        ("service", up.service.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, g)| g.then_some(n))
    .collect();
    if given.len() > 1 {
        c.report(
            up_at.clone(),
            format!(
                "a proxy forwards to one upstream, and this gives {}",
                quoted(&given).replace(", ", " and ")
            ),
            "more than one upstream",
            Some("keep one of `url` (a server), `routes` (a mock) and `service` (a [[services]] entry)".into()),
        );
    }
    let upstream = if let Some(url) = &up.url {
        let t = template(c, &uf("url"), url, names, Place::Elsewhere);
        let plain = t.pieces.iter().all(|p| matches!(p, Piece::Text(_)));
        if plain {
            if let Err(e) = crate::spec::url::parse_upstream_url(url) {
                c.report(uf("url"), e.message, e.label, Some(e.help));
            }
        }
        ProxyUpstream::Url(t)
    } else if let Some(service) = &up.service {
        if !names.services.contains(&service.as_str()) {
            c.report(
                uf("service"),
                format!("there is no [[services]] entry named `{service}`"),
                "unknown service",
                Some(choices(
                    service,
                    &names.services,
                    "services in this scenario",
                    "this scenario has no [[services]]: use `url` for a server that is already running, or `routes` for a mock",
                )),
            );
        }
        ProxyUpstream::Service(service.clone())
    } else {
        let routes = up.routes.as_deref().unwrap_or_default();
        ProxyUpstream::Mock(upstream::check_routes(c, &uf("routes"), routes))
    };
    let faults = fault::compile::compile(c, &field("faults"), &p.faults);
    let mut config = proxy::config(c, &at, &p.settings());
    config.upstream_tls = upstream::check_tls(
        c,
        &up_at,
        up.url.as_deref(),
        up.ca_file.as_deref(),
        up.insecure,
    );
    config.upstream_http2 = up.http2;
    NamedProxy {
        name: p.name.clone(),
        upstream,
        faults,
        config,
        tls: listener_tls(c, &at, p),
    }
}

/// `tls`, `cert_file` and `key_file` of a named proxy: the files go together, with `tls = true`,
/// and must hold a certificate chain and its key.
fn listener_tls(c: &mut Checker, at: &[Seg], p: &NamedProxySpec) -> Option<ListenerTls> {
    let field = |name: &str| with(at, Seg::Key(name.into()));
    if !p.tls {
        for (name, given) in [
            ("cert_file", p.cert_file.is_some()),
            ("key_file", p.key_file.is_some()),
        ] {
            if given {
                c.report_key(
                    field(name),
                    format!("`{name}` is only used with `tls = true`"),
                    "needs `tls = true`",
                    Some(format!("add `tls = true` to serve TLS, or remove `{name}`")),
                );
            }
        }
        return None;
    }
    match (&p.cert_file, &p.key_file) {
        (None, None) => Some(ListenerTls::Generate),
        (Some(cert), Some(key)) => {
            let files = crate::tls::ServerCert::Files {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            };
            if let Err(e) = crate::tls::server(&files) {
                c.report(
                    field("cert_file"),
                    e.to_string(),
                    "unusable certificate",
                    Some("`cert_file` is a PEM certificate chain (leaf first) and `key_file` its PEM private key; relative paths are relative to where traceforge runs".into()),
                );
            }
            Some(ListenerTls::Files {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            })
        }
        (Some(_), None) | (None, Some(_)) => {
            let missing = if p.cert_file.is_none() {
                "cert_file"
            } else {
                "key_file"
            };
            c.report(
                at.to_vec(),
                format!("`cert_file` and `key_file` go together, and `{missing}` is missing"),
                "incomplete certificate",
                Some("give both, or neither for a generated certificate".into()),
            );
            Some(ListenerTls::Generate)
        }
    }
}

/// `[load] command`: the user's client, or `None`.
fn client(c: &mut Checker, spec: &ScenarioSpec, names: &Names<'_>) -> Option<ClientConfig> {
    let l = &spec.load;
    let at = key("load");
    let field = |name: &str| with(&at, Seg::Key(name.into()));
    client_only(c, spec);
    let cmd = l.command.as_ref()?;
    if spec.proxies.is_empty() {
        needs_a_proxy(c);
    }
    for (name, given) in [
        ("to", l.to.is_some()),
        ("requests", l.requests.is_some()),
        ("duration", l.duration.is_some()),
        ("rate", l.rate.is_some()),
        ("stages", l.stages.is_some()),
        ("http2", l.http2),
    ] {
        if given {
            c.report_key(
                field(name),
                format!("`{name}` cannot be used with `load.command`: the command is the load"),
                "conflicts with `command`",
                Some(format!(
                    "remove `{name}`; your client decides what it sends, and where"
                )),
            );
        }
    }
    Some(ClientConfig {
        command: command(c, &field("command"), cmd, names, Place::Elsewhere),
        env: env(c, &field("env"), &l.env, names, Place::Elsewhere),
        cwd: cwd(c, field("cwd"), l.cwd.as_ref()),
    })
}

/// `[load] to`, or the one entry it can default to.
fn entry(c: &mut Checker, spec: &ScenarioSpec, names: &Names<'_>) -> Entry {
    let fallback = || match (names.proxies.first(), names.services.first()) {
        (Some(p), _) => Entry::Proxy((*p).to_string()),
        (None, Some(s)) => Entry::Service((*s).to_string()),
        (None, None) => Entry::Proxy(String::new()),
    };
    let all = names.all();
    if let Some(to) = &spec.load.to {
        if names.proxies.contains(&to.as_str()) {
            return Entry::Proxy(to.clone());
        }
        if names.services.contains(&to.as_str()) {
            return Entry::Service(to.clone());
        }
        c.report(
            keys(&["load", "to"]),
            format!("there is no service or proxy named `{to}`"),
            "unknown name",
            Some(choices(to, &all, "services and proxies", "")),
        );
        return fallback();
    }
    match (names.proxies.as_slice(), names.services.as_slice()) {
        ([only], _) => return Entry::Proxy((*only).to_string()),
        ([], [only]) => return Entry::Service((*only).to_string()),
        _ => {}
    }
    // The client command is the load: it needs no entry.
    if spec.load.command.is_none() {
        c.report(
            key("load"),
            "the load does not say where it enters: set `load.to`",
            "needs `to`",
            Some(format!(
                "name the service or proxy the load is sent to, one of {}",
                quoted(&all)
            )),
        );
    }
    fallback()
}

/// Services, then proxies, as the nodes of one graph; an edge `a -> b` says `a` reaches `b` by
/// URL, with the path of the value that says so.
struct Graph {
    services: usize,
    edges: Vec<Vec<(usize, Vec<Seg>)>>,
}

impl Graph {
    fn new(spec: &ScenarioSpec, services: &[ServiceConfig], proxies: &[NamedProxy]) -> Graph {
        let index_of = |piece: &Piece| match piece {
            Piece::ServiceUrl(n) => services.iter().position(|s| s.name == *n),
            Piece::ProxyUrl(n) | Piece::ProxyCaFile(n) => proxies
                .iter()
                .position(|p| p.name == *n)
                .map(|p| services.len() + p),
            _ => None,
        };
        let mut edges = vec![Vec::new(); services.len() + proxies.len()];
        for (i, s) in services.iter().enumerate() {
            let at = with(&key("services"), Seg::Index(i));
            let words = s.command.iter().enumerate().map(|(w, t)| {
                let path = match spec.services.get(i).map(|s| &s.command) {
                    Some(CommandSpec::Args(_)) => {
                        with(&with(&at, Seg::Key("command".into())), Seg::Index(w))
                    }
                    _ => with(&at, Seg::Key("command".into())),
                };
                (t, path)
            });
            let vars = s.env.iter().map(|(name, t)| {
                (
                    t,
                    with(&with(&at, Seg::Key("env".into())), Seg::Key(name.clone())),
                )
            });
            for (t, path) in words.chain(vars) {
                for n in t.pieces.iter().filter_map(index_of) {
                    edges[i].push((n, path.clone()));
                }
            }
        }
        for (i, p) in proxies.iter().enumerate() {
            let at = with(
                &with(&key("proxies"), Seg::Index(i)),
                Seg::Key("upstream".into()),
            );
            let node = services.len() + i;
            match &p.upstream {
                ProxyUpstream::Service(name) => {
                    if let Some(n) = services.iter().position(|s| s.name == *name) {
                        edges[node].push((n, with(&at, Seg::Key("service".into()))));
                    }
                }
                ProxyUpstream::Url(t) => {
                    for n in t.pieces.iter().filter_map(index_of) {
                        edges[node].push((n, with(&at, Seg::Key("url".into()))));
                    }
                }
                ProxyUpstream::Mock(_) => {}
            }
        }
        Graph {
            services: services.len(),
            edges,
        }
    }

    /// The first cycle found (its nodes, the first one repeated at the end) and the path of
    /// the value that starts it.
    fn cycle(&self) -> Option<(Vec<usize>, Vec<Seg>)> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; self.edges.len()];
        for start in 0..self.edges.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // (node, next edge to follow); an explicit stack, so no input can exhaust ours.
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::Open;
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                let Some(&(to, _)) = self.edges[node].get(top.1) else {
                    mark[node] = Mark::Done;
                    stack.pop();
                    continue;
                };
                top.1 += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::Open;
                        stack.push((to, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|&(n, _)| n == to).unwrap_or(0);
                        let mut nodes: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                        nodes.push(to);
                        let (first, taken) = stack[from];
                        let path = self.edges[first]
                            .get(taken.saturating_sub(1))
                            .map(|(_, p)| p.clone())
                            .unwrap_or_default();
                        return Some((nodes, path));
                    }
                    Mark::Done => {}
                }
            }
        }
        None
    }

    /// The services each service waits for: those it reaches directly, or through proxies.
    fn service_deps(&self, service: usize) -> BTreeSet<usize> {
        let mut deps = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self.edges[service].iter().map(|(n, _)| *n).collect();
        while let Some(n) = todo.pop() {
            if !seen.insert(n) {
                continue;
            }
            if n < self.services {
                deps.insert(n);
            } else {
                todo.extend(self.edges[n].iter().map(|(m, _)| *m));
            }
        }
        deps
    }

    /// Services in start order: each after those it waits for, otherwise in file order. Only
    /// called on a graph without cycles.
    fn start_order(&self) -> Vec<usize> {
        let deps: Vec<BTreeSet<usize>> = (0..self.services).map(|s| self.service_deps(s)).collect();
        let mut placed = vec![false; self.services];
        let mut order = Vec::with_capacity(self.services);
        while order.len() < self.services {
            let next = (0..self.services)
                .find(|&s| !placed[s] && deps[s].iter().all(|&d| placed[d] || d == s));
            let Some(s) = next else {
                // Unreachable without a cycle; keep every service rather than loop.
                order.extend((0..self.services).filter(|&s| !placed[s]));
                break;
            };
            placed[s] = true;
            order.push(s);
        }
        order
    }
}

/// A service reached at its URL, or checked on its port, must be told its port.
fn needs_port(
    c: &mut Checker,
    spec: &ScenarioSpec,
    services: &[ServiceConfig],
    proxies: &[NamedProxy],
    client: Option<&ClientConfig>,
    entry: &Entry,
) {
    let mut reached: BTreeMap<String, String> = BTreeMap::new();
    let mut note = |name: &str, why: String| {
        reached.entry(name.to_string()).or_insert(why);
    };
    let mut templates: Vec<&Template> = Vec::new();
    for s in services {
        templates.extend(s.command.iter());
        templates.extend(s.env.iter().map(|(_, t)| t));
    }
    for p in proxies {
        match &p.upstream {
            ProxyUpstream::Url(t) => templates.push(t),
            ProxyUpstream::Service(name) => {
                note(name, format!("proxy `{}` forwards to it", p.name))
            }
            ProxyUpstream::Mock(_) => {}
        }
    }
    if let Some(client) = client {
        templates.extend(client.command.iter());
        templates.extend(client.env.iter().map(|(_, t)| t));
    }
    for t in templates {
        for name in t.services() {
            note(name, format!("`{{services.{name}.url}}` names it"));
        }
    }
    if let (Entry::Service(name), None) = (entry, client) {
        note(name, "the load is sent to it".to_string());
    }
    for (i, s) in services.iter().enumerate() {
        let told = s.port.is_some()
            || s.command.iter().any(Template::uses_port)
            || s.env.iter().any(|(_, t)| t.uses_port());
        if told {
            continue;
        }
        let why = match (reached.get(&s.name), &s.ready) {
            (Some(why), _) => why.clone(),
            (None, Readiness::Http(_)) => "its readiness is an HTTP check on its port".to_string(),
            (None, Readiness::Tcp) => {
                "its readiness is a TCP check on its port (the default)".to_string()
            }
            (None, Readiness::Log(_)) => continue,
        };
        let at = with(&key("services"), Seg::Index(i));
        let has_env = spec.services.get(i).is_some_and(|s| !s.env.is_empty());
        let path = with(
            &at,
            Seg::Key(if has_env { "env" } else { "command" }.into()),
        );
        c.report(
            path,
            format!(
                "service `{}` is never told its port, and the run needs it: {why}",
                s.name
            ),
            "no `{port}`",
            Some("add PORT = \"{port}\" to env (or `{port}` to the command), or set `port` to the port it listens on".into()),
        );
    }
}
