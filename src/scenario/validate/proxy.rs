//! Validation of a proxy's settings: the `[proxy]` table, or the same keys in a `[[proxies]]`
//! entry.

use std::path::PathBuf;

use crate::observe::{LogTarget, Rotation};
use crate::scenario::ProxyConfig;
use crate::spec::check::{Checker, Seg, with};
use crate::spec::{LogRotation, ProxySpec};

/// Checks the settings at `at` (`proxy`, or `proxies[i]`) and fills in the defaults.
pub(super) fn config(c: &mut Checker, at: &[Seg], spec: &ProxySpec) -> ProxyConfig {
    let field = |name: &str| with(at, Seg::Key(name.into()));
    let mut proxy = ProxyConfig {
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
        request_log: None,
    };
    proxy_log(c, at, spec, &mut proxy);
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

/// `log_requests` and `log_rotation`: a file name, and a rotation only with a file.
fn proxy_log(c: &mut Checker, at: &[Seg], spec: &ProxySpec, proxy: &mut ProxyConfig) {
    let field = |name: &str| with(at, Seg::Key(name.into()));
    let rotation = match spec.log_rotation.unwrap_or_default() {
        LogRotation::Never => Rotation::Never,
        LogRotation::Hourly => Rotation::Hourly,
        LogRotation::Daily => Rotation::Daily,
    };
    match spec.log_requests.as_deref() {
        Some(path) if path.trim().is_empty() || path.ends_with('/') => c.report(
            field("log_requests"),
            "`log_requests` must name a file",
            "not a file name",
            Some("for example log_requests = \"logs/requests.jsonl\"".into()),
        ),
        Some(path) => {
            proxy.request_log = Some(LogTarget {
                path: PathBuf::from(path),
                rotation,
            })
        }
        None if spec.log_rotation.is_some() => c.report(
            field("log_rotation"),
            "`log_rotation` rotates the request log, and there is none",
            "no `log_requests`",
            Some("add log_requests = \"logs/requests.jsonl\", or remove log_rotation".into()),
        ),
        None => {}
    }
}
