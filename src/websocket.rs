//! What makes an HTTP/1.1 request a WebSocket upgrade (RFC 6455 section 4.1), for the proxy, the
//! fault decision and the demo upstream alike: one definition, so a request the proxy upgrades is
//! exactly one its stream faults fire for.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};

/// True for a WebSocket upgrade request: `GET` with `Connection: upgrade` (as one token among
/// others, any case) and `Upgrade: websocket`. `Upgrade` without `Connection: upgrade` is not an
/// upgrade: it is a hop-by-hop header like any other, stripped by the proxy.
pub fn is_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, "websocket")
}

/// True when a `101 Switching Protocols` answers with `Upgrade: websocket`.
pub fn is_switch(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS && has_token(headers, header::UPGRADE, "websocket")
}

/// `Connection: upgrade` and `Upgrade: websocket`, the hop-by-hop pair an upgrade carries on
/// each hop (the proxy strips hop-by-hop headers, then puts these back on an upgrade).
pub fn insert_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Whether a comma-separated header holds `token`, compared without case.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn an_upgrade_needs_get_connection_upgrade_and_upgrade_websocket() {
        let both = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_upgrade(&Method::GET, &both));
        assert!(!is_upgrade(&Method::POST, &both));
        assert!(!is_upgrade(
            &Method::GET,
            &headers(&[("upgrade", "websocket")])
        ));
        assert!(!is_upgrade(
            &Method::GET,
            &headers(&[("connection", "upgrade"), ("upgrade", "h2c")])
        ));
        assert!(!is_upgrade(
            &Method::GET,
            &headers(&[("connection", "upgrade-please"), ("upgrade", "websocket")])
        ));
    }
}
