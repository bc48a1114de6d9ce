//! Validation of a proxy's settings: the `[proxy]` table, or the same keys in a `[[proxies]]`
//! entry.

use crate::scenario::ProxyConfig;
use crate::spec::ProxySpec;
use crate::spec::check::{Checker, Seg, with};

/// Checks the settings at `at` (`proxy`, or `proxies[i]`) and fills in the defaults.
pub(super) fn config(c: &mut Checker, at: &[Seg], spec: &ProxySpec) -> ProxyConfig {
    let field = |name: &str| with(at, Seg::Key(name.into()));
    let proxy = ProxyConfig {
        add_response_headers: c
            .headers_to_send(field("add_response_headers"), &spec.add_response_headers),
        upstream_timeout: spec
            .upstream_timeout
            .map_or(ProxyConfig::DEFAULT_UPSTREAM_TIMEOUT, |d| d.get()),
        upstream_read_timeout: spec
            .upstream_read_timeout
            .map_or(ProxyConfig::DEFAULT_UPSTREAM_READ_TIMEOUT, |d| d.get()),
        client_header_timeout: spec
            .client_header_timeout
            .map_or(ProxyConfig::DEFAULT_CLIENT_HEADER_TIMEOUT, |d| d.get()),
        client_body_timeout: spec
            .client_body_timeout
            .map_or(ProxyConfig::DEFAULT_CLIENT_BODY_TIMEOUT, |d| d.get()),
        header_faults: spec.header_faults,
        forward_traceforge_headers: spec.forward_traceforge_headers,
        upstream_tls: crate::tls::UpstreamTls::default(),
        upstream_http2: false,
    };
    for (key, value, what) in [
        (
            "upstream_timeout",
            proxy.upstream_timeout,
            "the upstream timeout",
        ),
        (
            "upstream_read_timeout",
            proxy.upstream_read_timeout,
            "the upstream read timeout",
        ),
        (
            "client_header_timeout",
            proxy.client_header_timeout,
            "the client header timeout",
        ),
        (
            "client_body_timeout",
            proxy.client_body_timeout,
            "the client body timeout",
        ),
    ] {
        c.positive(field(key), value, what);
    }
    proxy
}
