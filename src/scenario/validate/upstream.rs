//! Validation of `[upstream]`: an external URL, or the demo upstream's extra routes.

use std::time::Duration;

use hyper::StatusCode;

use crate::scenario::{Route, UpstreamConfig};
use crate::spec::check::{Checker, Seg, final_status, keys, no_body_allowed, with};
use crate::spec::{Clock, RouteSpec, ScenarioSpec};

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
        match crate::spec::url::parse_http_url(url) {
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
    upstream
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
        out.push(Route {
            path: route.path.clone(),
            methods,
            status: StatusCode::from_u16(route.status).unwrap_or(StatusCode::OK),
            body: route.body.clone(),
            headers,
            latency,
        });
    }
    out
}
