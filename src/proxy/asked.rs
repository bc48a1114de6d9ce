//! What the rules on the upstream's response see of the request: the facts of the request's own
//! decision, kept (owned) while the request itself goes upstream, so a response rule is decided
//! with the same id, index, attempt and elapsed time as the request's rules were. Kept only when
//! the plan has response rules ([`crate::fault::FaultPlan::has_response_rules`]).

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use hyper::header::HeaderMap;

use crate::fault::{Decision, FaultPlan, RequestFacts};

/// The request's facts, owned, and the rules its decision came from.
#[derive(Debug)]
pub(super) struct Asked {
    /// The plan the request's own rules were decided by: its response rules are decided by the
    /// same one, whatever the control API changed meanwhile.
    plan: Arc<FaultPlan>,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    key: String,
    index: u64,
    attempt: u32,
    elapsed: Duration,
}

impl Asked {
    pub(super) fn new(facts: &RequestFacts<'_>, plan: Arc<FaultPlan>) -> Self {
        Asked {
            plan,
            method: facts.method.clone(),
            path: facts.path.to_string(),
            query: facts.query.map(str::to_string),
            headers: facts.headers.clone(),
            key: facts.request_id.to_string(),
            index: facts.index,
            attempt: facts.attempt,
            elapsed: facts.elapsed,
        }
    }

    /// The plan the request was decided by.
    pub(super) fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// The facts again. The `x-traceforge-fault` header is left out: its rule is never a
    /// response rule.
    pub(super) fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            fault_header: None,
            request_id: &self.key,
            index: self.index,
            attempt: self.attempt,
            elapsed: self.elapsed,
        }
    }
}

/// The steps `decision` gained from the response rules, after its first `asked` (the request's).
pub(super) fn response_steps(decision: &Decision, asked: usize) -> &[crate::fault::Step] {
    decision.steps.get(asked..).unwrap_or_default()
}
