//! Validation of `[upstream]`: an external URL, or the demo upstream's extra routes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::StatusCode;

use crate::scenario::{Route, UpstreamConfig};
use crate::spec::check::{Checker, Seg, final_status, key, keys, no_body_allowed, with};
use crate::spec::{Clock, RouteSpec, ScenarioSpec};
use crate::tls::UpstreamTls;

pub(super) fn check(c: &mut Checker, spec: &ScenarioSpec) -> UpstreamConfig {
    let mut upstream = UpstreamConfig::default();
    if spec.upstream.url.is_some() && spec.run.clock == Clock::Virtual {
        c.report(
            keys(&["run", "clock"]),
            "the virtual clock cannot reach an external upstream",
            "needs the demo upstream",
            Some("virtual time runs over in-memory pipes with the built-in demo upstream; remove `upstream.url`, or use clock = \"real\"".into()),
        );
    }
    if let Some(url) = &spec.upstream.url {
        match crate::spec::url::parse_upstream_url(url) {
            Ok(uri) => upstream.url = Some(uri),
            Err(e) => c.report(keys(&["upstream", "url"]), e.message, e.label, Some(e.help)),
        }
        if !spec.upstream.routes.is_empty() {
            c.report(
                keys(&["upstream", "routes"]),
                "routes are served by the built-in demo upstream, which is not used when `url` is set",
                "ignored with `url`",
                Some("remove `url` to use the demo upstream, or remove `routes`".into()),
            );
        }
    }
    upstream.routes = check_routes(c, &keys(&["upstream", "routes"]), &spec.upstream.routes);
    upstream.http2 = spec.upstream.http2;
    // With services or named proxies, `[upstream]` is refused as a whole (see `topology`).
    if spec.services.is_empty() && spec.proxies.is_empty() {
        upstream.tls = check_tls(
            c,
            &key("upstream"),
            spec.upstream.url.as_deref(),
            spec.upstream.ca_file.as_deref(),
            spec.upstream.insecure,
        );
    }
    upstream
}

/// Checks how an upstream at `at` is trusted: `ca_file` and `insecure` apply to an `https://`
/// `url` only (a URL that starts with a placeholder may be one), never both, and `ca_file` must
/// hold PEM certificates.
pub(super) fn check_tls(
    c: &mut Checker,
    at: &[Seg],
    url: Option<&str>,
    ca_file: Option<&str>,
    insecure: bool,
) -> UpstreamTls {
    let field = |name: &str| with(at, Seg::Key(name.into()));
    let may_be_https = url.is_some_and(|u| u.starts_with("https://") || u.starts_with('{'));
    for (name, given) in [("ca_file", ca_file.is_some()), ("insecure", insecure)] {
        if given && !may_be_https {
            c.report_key(
                field(name),
                format!("`{name}` applies to an https:// upstream, and this upstream is not one"),
                "needs an https:// url",
                Some(format!(
                    "remove `{name}`, or set `url` to the upstream's https:// address"
                )),
            );
        }
    }
    if ca_file.is_some() && insecure {
        c.report_key(
            field("insecure"),
            "`insecure` and `ca_file` cannot both be set",
            "conflicts with `ca_file`",
            Some("`insecure` verifies nothing, so a CA would change nothing: keep `ca_file` to verify the upstream against your CA, or `insecure` to skip verification".into()),
        );
    }
    let mut tls = UpstreamTls {
        ca_file: None,
        insecure,
    };
    if let Some(path) = ca_file {
        if let Err(e) = crate::tls::read_certs(Path::new(path)) {
            let (message, label) = match &e {
                crate::tls::TlsError::Read { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    (format!("`{path}` does not exist"), "no such file")
                }
                _ => (e.to_string(), "not a CA certificate file"),
            };
            c.report(
                field("ca_file"),
                message,
                label,
                Some("a PEM file of CA certificates (`-----BEGIN CERTIFICATE-----`); relative paths are relative to where traceforge runs".into()),
            );
        }
        tls.ca_file = Some(PathBuf::from(path));
    }
    tls
}

/// Checks the demo upstream's extra routes at `at` (`upstream.routes`, or a named proxy's
/// `upstream.routes`).
pub(super) fn check_routes(c: &mut Checker, at: &[Seg], routes: &[RouteSpec]) -> Vec<Route> {
    let mut out = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let at = with(at, Seg::Index(i));
        if !route.path.starts_with('/') || route.path.contains(['?', '#', ' ']) {
            c.report(
                with(&at, Seg::Key("path".into())),
                format!("`{}` is not a request path", route.path),
                "not a path",
                Some("a route path starts with `/` and has no query, like \"/api/slow\"".into()),
            );
        }
        final_status(c, with(&at, Seg::Key("status".into())), route.status);
        no_body_allowed(
            c,
            with(&at, Seg::Key("body".into())),
            route.status,
            &route.body,
        );
        let methods = route
            .method
            .as_ref()
            .map(|m| c.methods(with(&at, Seg::Key("method".into())), m))
            .unwrap_or_default();
        let headers = c.headers_to_send(with(&at, Seg::Key("headers".into())), &route.headers);
        let latency = route.latency.map_or(Duration::ZERO, |d| d.get());
        let grpc = route
            .grpc
            .as_ref()
            .and_then(|g| check_grpc_route(c, &at, route, g));
        out.push(Route {
            path: route.path.clone(),
            methods,
            status: StatusCode::from_u16(route.status).unwrap_or(StatusCode::OK),
            body: route.body.clone(),
            headers,
            latency,
            grpc,
        });
    }
    out
}

/// A gRPC route: hex protobuf bytes, a status from 0 to 16, and nothing of a plain route's answer.
fn check_grpc_route(
    c: &mut Checker,
    at: &[Seg],
    route: &RouteSpec,
    g: &crate::spec::GrpcRouteSpec,
) -> Option<crate::scenario::GrpcRoute> {
    let field = |name: &str| with(&with(at, Seg::Key("grpc".into())), Seg::Key(name.into()));
    let hex: String = g.response.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes: Option<Vec<u8>> = (hex.len() % 2 == 0)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    let mut ok = true;
    if bytes.is_none() {
        ok = false;
        c.report(
            field("response"),
            "`response` is not hex bytes",
            "not hex",
            Some("write the serialized protobuf message in hex, such as \"0a0568656c6c6f\" (field 1 = \"hello\")".into()),
        );
    }
    if g.status > 16 {
        ok = false;
        c.report(
            field("status"),
            format!("{} is not a gRPC status: they go from 0 to 16", g.status),
            "not a gRPC status",
            Some("0 is OK, 14 UNAVAILABLE, 5 NOT_FOUND".into()),
        );
    }
    if route.status != 200 || !route.body.is_empty() {
        ok = false;
        c.report(
            with(
                at,
                Seg::Key(
                    if route.body.is_empty() {
                        "status"
                    } else {
                        "body"
                    }
                    .into(),
                ),
            ),
            "a gRPC route answers HTTP 200 with its `grpc` message",
            "not with `grpc`",
            Some("remove `status` and `body`; set `grpc.status` for a failing call".into()),
        );
    }
    ok.then(|| crate::scenario::GrpcRoute {
        response: bytes::Bytes::from(bytes.unwrap_or_default()),
        status: g.status,
        message: g.message.clone(),
    })
}
