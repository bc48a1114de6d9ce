//! What makes an HTTP/1.1 request a WebSocket upgrade (RFC 6455 section 4.1), for the proxy, the
//! fault decision and the demo upstream alike: one definition, so a request the proxy upgrades is
//! exactly one its stream faults fire for.
//!
//! Over HTTP/2 a WebSocket opens with an extended CONNECT (RFC 8441): `CONNECT` with the
//! `:protocol` pseudo-header `websocket`, answered `200`, the stream then carrying the frames.
//! The servers accept it ([`is_extended_connect`]); the proxy turns it into an HTTP/1.1 upgrade
//! for the upstream ([`as_upgrade`]), so every rule sees one kind of WebSocket request.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};

/// True for a WebSocket upgrade request: `GET` with `Connection: upgrade` (as one token among
/// others, any case) and `Upgrade: websocket`. `Upgrade` without `Connection: upgrade` is not an
/// upgrade: it is a hop-by-hop header like any other, stripped by the proxy.
pub fn is_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, "websocket")
}

/// True for a WebSocket over HTTP/2 (RFC 8441): `CONNECT` with `:protocol` `websocket`.
pub fn is_extended_connect<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_2
        && req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Rewrites an RFC 8441 request's head as an HTTP/1.1 upgrade request ([`is_upgrade`] holds
/// after it): `GET`, the upgrade pair, a fresh `Sec-WebSocket-Key` and version 13 where the client
/// sent none (HTTP/2 clients send no key: the stream needs no accept check). Its upgrade
/// (`hyper::upgrade::on`) is still the HTTP/2 stream's, answered `200` rather than `101`.
pub fn as_upgrade<B>(req: &mut Request<B>) {
    *req.method_mut() = Method::GET;
    req.extensions_mut().remove::<hyper::ext::Protocol>();
    let headers = req.headers_mut();
    insert_upgrade_headers(headers);
    if !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        if let Ok(key) = HeaderValue::from_str(&key) {
            headers.insert(header::SEC_WEBSOCKET_KEY, key);
        }
    }
    headers
        .entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
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
