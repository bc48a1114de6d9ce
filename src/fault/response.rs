//! Rules conditioned on the upstream's response (`match.response_status`,
//! `match.response_header`): [`FaultPlan::decide`] leaves them out, and the proxy asks
//! [`FaultPlan::decide_response`] once the upstream's response head has arrived.
//!
//! A response rule is decided like any other: its request conditions (`match.path`, ...), its
//! window and phases, its rank, its probability roll from `fault/<rule>/<request-id>`, and its
//! `max_active`; then its response conditions. The request's facts are those of the request
//! decision (same index, attempt and elapsed time), so only the upstream's answer is new: the
//! decision is as deterministic as the upstream. Its steps go after the request's
//! ([`Decision::extend_response`]).

use hyper::header::HeaderMap;

use super::decision::RuleRef;
use super::{Decision, FaultPlan, RequestFacts};

impl FaultPlan {
    /// Whether any rule waits for the upstream's response.
    pub fn has_response_rules(&self) -> bool {
        self.rules.iter().any(|r| r.matcher.is_response())
    }

    /// Decides the response rules for one request whose upstream answered `status` with
    /// `headers`, in order, as [`FaultPlan::decide`] does the others: delays add up (the response
    /// head is held), the first terminal fault (error, drop, reset) ends evaluation and replaces
    /// the upstream's response, status, header and body steps compose.
    pub fn decide_response(
        &self,
        facts: &RequestFacts<'_>,
        status: u16,
        headers: &HeaderMap,
    ) -> Decision {
        let mut decision = Decision::default();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matcher.is_response() || !rule.matcher.matches_response(status, headers) {
                continue;
            }
            if let Some(step) =
                self.evaluate(RuleRef::Index(index), rule, &self.names[index], facts)
            {
                let terminal = step.effect.is_terminal();
                decision.push(step);
                if terminal {
                    break;
                }
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hyper::Method;
    use hyper::header::{HeaderMap, HeaderName, HeaderValue};

    use crate::fault::{
        Effect, ErrorReply, FaultAction, FaultPlan, FaultRule, Matcher, RequestFacts, StatusMatch,
        ValueMatch,
    };
    use crate::spec::duration::DelaySpec;

    fn on_response(name: &str, action: FaultAction, status: Vec<StatusMatch>) -> FaultRule {
        FaultRule {
            matcher: Matcher {
                response_status: status,
                ..Matcher::default()
            },
            ..FaultRule::new(name, action)
        }
    }

    fn ms(n: u64) -> std::time::Duration {
        std::time::Duration::from_millis(n)
    }

    #[test]
    fn response_rules_wait_for_the_response_and_match_its_status_and_headers() {
        let mut cache = on_response(
            "miss-slow",
            FaultAction::delay(DelaySpec::Fixed(ms(50))),
            Vec::new(),
        );
        cache.matcher.response_headers = vec![(
            HeaderName::from_static("x-cache"),
            ValueMatch::parse("miss"),
        )];
        let plan = FaultPlan::new(
            7,
            vec![
                FaultRule::new("slow", FaultAction::delay(DelaySpec::Fixed(ms(10)))),
                on_response(
                    "to-502",
                    FaultAction::Status(502),
                    vec![StatusMatch::Class(5)],
                ),
                cache,
                on_response(
                    "gone",
                    FaultAction::Error(Arc::new(ErrorReply::status(410))),
                    vec![StatusMatch::Code(404)],
                ),
            ],
        );
        assert!(plan.has_response_rules());
        let facts = RequestFacts::new(&Method::GET, "/api", "req-1");
        // The request decision leaves every response rule out.
        assert_eq!(plan.decide(&facts).fired_rules(), ["slow"]);

        let none = HeaderMap::new();
        let ok = plan.decide_response(&facts, 200, &none);
        assert!(ok.is_empty());
        let down = plan.decide_response(&facts, 503, &none);
        assert_eq!(down.fired_rules(), ["to-502"]);
        assert_eq!(down.status_rewrite(), Some(502));
        let mut miss = HeaderMap::new();
        miss.insert("x-cache", HeaderValue::from_static("miss"));
        let both = plan.decide_response(&facts, 500, &miss);
        assert_eq!(both.fired_rules(), ["to-502", "miss-slow"]);
        assert_eq!(both.total_delay(), ms(50));
        // A terminal response step ends evaluation and replaces the response.
        let gone = plan.decide_response(&facts, 404, &miss);
        assert_eq!(gone.fired_rules(), ["miss-slow", "gone"]);
        assert!(matches!(
            gone.terminal().map(|s| &s.effect),
            Some(Effect::Error(_))
        ));

        // Request steps first, then the response's.
        let mut decision = plan.decide(&facts);
        decision.extend_response(plan.decide_response(&facts, 503, &miss));
        assert_eq!(decision.fired_rules(), ["slow", "to-502", "miss-slow"]);
        assert_eq!(decision.total_delay(), ms(60));
        assert!(decision.forwards());
    }

    #[test]
    fn response_rules_keep_their_probability_window_and_request_conditions() {
        let mut rule = on_response(
            "half",
            FaultAction::Status(500),
            vec![StatusMatch::Code(200)],
        );
        rule.probability = 0.5;
        rule.window.until_request = Some(100);
        rule.matcher.methods = vec![Method::POST];
        let plan = FaultPlan::new(3, vec![rule]);
        let none = HeaderMap::new();
        let ids: Vec<String> = (0..200).map(|i| format!("req-{i}")).collect();
        let fired: Vec<u64> = (0..200u64)
            .filter(|&i| {
                let mut facts = RequestFacts::new(&Method::POST, "/", &ids[i as usize]);
                facts.index = i;
                !plan.decide_response(&facts, 200, &none).is_empty()
            })
            .collect();
        assert!(fired.iter().all(|&i| i < 100), "{fired:?}");
        assert!((30..70).contains(&fired.len()), "{}", fired.len());
        // The same request gets the same answer every time.
        let again: Vec<u64> = (0..200u64)
            .filter(|&i| {
                let mut facts = RequestFacts::new(&Method::POST, "/", &ids[i as usize]);
                facts.index = i;
                !plan.decide_response(&facts, 200, &none).is_empty()
            })
            .collect();
        assert_eq!(fired, again);
        let get = RequestFacts::new(&Method::GET, "/", "req-1");
        assert!(plan.decide_response(&get, 200, &none).is_empty());
    }
}
