//! Validation: a parsed [`ScenarioSpec`] becomes a checked [`Scenario`], or a list of every problem
//! found, each with the path of the offending value so the caller can point at it in the file.
//! One module per concern: [`upstream`], the faults (compiled by [`crate::fault::compile`]),
//! the load (compiled by [`crate::load::compile`]) and [`expect`]; the `[proxy]` table is
//! checked here.

mod expect;
mod upstream;

use crate::spec::check::{Checker, Problem, is_file_name, key, keys};
use crate::spec::{self, ScenarioSpec};
use crate::{fault, load};

use super::{Clock, ProxyConfig, Scenario};

pub(crate) fn check(spec: &ScenarioSpec) -> Result<Scenario, Vec<Problem>> {
    let mut c = Checker::default();

    if !is_file_name(&spec.name) {
        c.report(
            key("name"),
            format!("`{}` cannot be used as a file name", spec.name),
            "not a usable name",
            Some("use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example \"flaky-api\")".into()),
        );
    }

    let upstream = upstream::check(&mut c, spec);
    let faults = fault::compile::compile(&mut c, &key("faults"), &spec.faults);
    let proxy = ProxyConfig {
        add_response_headers: c.headers_to_send(
            keys(&["proxy", "add_response_headers"]),
            &spec.proxy.add_response_headers,
        ),
        upstream_timeout: spec
            .proxy
            .upstream_timeout
            .map_or(ProxyConfig::DEFAULT_UPSTREAM_TIMEOUT, |d| d.get()),
        upstream_read_timeout: spec
            .proxy
            .upstream_read_timeout
            .map_or(ProxyConfig::DEFAULT_UPSTREAM_READ_TIMEOUT, |d| d.get()),
        client_header_timeout: spec
            .proxy
            .client_header_timeout
            .map_or(ProxyConfig::DEFAULT_CLIENT_HEADER_TIMEOUT, |d| d.get()),
        client_body_timeout: spec
            .proxy
            .client_body_timeout
            .map_or(ProxyConfig::DEFAULT_CLIENT_BODY_TIMEOUT, |d| d.get()),
        header_faults: spec.proxy.header_faults,
        forward_traceforge_headers: spec.proxy.forward_traceforge_headers,
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
        c.positive(keys(&["proxy", key]), value, what);
    }
    let load = load::compile::compile(&mut c, &spec.load);
    let expect = expect::check(&mut c, spec, &faults, &load);

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Scenario {
        name: spec.name.clone(),
        description: spec.description.clone().unwrap_or_default(),
        seed: spec.seed,
        upstream,
        faults,
        proxy,
        load,
        expect,
        clock: match spec.run.clock {
            spec::Clock::Real => Clock::Real,
            spec::Clock::Virtual => Clock::Virtual,
        },
        topology: None,
        dir: std::path::PathBuf::from("."),
        spec: spec.clone(),
    })
}
