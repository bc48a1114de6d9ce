//! The `x-traceforge-*` headers: every name TraceForge sends or reads, and how their values are
//! read. The load generator writes the index and attempt and reads the fired rules; the proxy
//! reads the index, the attempt and the control header, and answers with the fired rules.
//! Nothing else names these headers.

use hyper::HeaderMap;
use hyper::header::HeaderName;

/// The logical request's 0-based index, sent by the load generator with every attempt, so the
/// proxy's counting rules (`first`, `every`, request windows) do not depend on arrival order.
pub const INDEX: HeaderName = HeaderName::from_static("x-traceforge-index");
/// The 0-based attempt number the load generator sends (0 for the first try, 1 for the first retry).
pub const ATTEMPT: HeaderName = HeaderName::from_static("x-traceforge-attempt");
/// On a request: a header-controlled fault (`[proxy] header_faults = true`), holding a compact
/// fault such as `error:503`; the proxy never forwards it. On a response: the fired rule names, in
/// firing order, comma-separated.
pub const FAULT: HeaderName = HeaderName::from_static("x-traceforge-fault");
/// The kind of each rule in [`FAULT`], in the same order: `delay, error`.
pub const FAULT_KIND: HeaderName = HeaderName::from_static("x-traceforge-fault-kind");
/// Why a malformed [`FAULT`] request header was ignored.
pub const FAULT_ERROR: HeaderName = HeaderName::from_static("x-traceforge-fault-error");

/// The logical request index in [`INDEX`], if present and a number.
pub fn index(headers: &HeaderMap) -> Option<u64> {
    number(headers, &INDEX)
}

/// The attempt in [`ATTEMPT`], if present and a number.
pub fn attempt(headers: &HeaderMap) -> Option<u32> {
    number(headers, &ATTEMPT)
}

/// The rule names in [`FAULT`], in firing order.
pub fn fault_names(headers: &HeaderMap) -> Vec<String> {
    list(headers, &FAULT)
}

/// The rule kinds in [`FAULT_KIND`], in the same order as [`fault_names`].
pub fn fault_kinds(headers: &HeaderMap) -> Vec<String> {
    list(headers, &FAULT_KIND)
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &HeaderName) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn list(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn facts_come_from_the_load_generators_headers() {
        let map = headers(&[(INDEX, "17"), (ATTEMPT, "2")]);
        assert_eq!(index(&map), Some(17));
        assert_eq!(attempt(&map), Some(2));
        let bad = headers(&[(INDEX, "-1"), (ATTEMPT, "x")]);
        assert_eq!((index(&bad), attempt(&bad)), (None, None));
    }

    #[test]
    fn fault_header_lists_rules_in_order() {
        let h = headers(&[(FAULT, "slow-api, api-503"), (FAULT_KIND, "delay,error")]);
        assert_eq!(fault_names(&h), vec!["slow-api", "api-503"]);
        assert_eq!(fault_kinds(&h), vec!["delay", "error"]);
    }
}
