//! Unit tests of the decision function: every kind, matcher, pattern, window and combination rule.
//! Pure and fast: no sockets, no clock.

use super::*;
use crate::load::pick_target;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn id(i: u64) -> String {
    seed::request_id(1, i, 0)
}

fn rule(name: &str, action: FaultAction, probability: f64, path: Option<&str>) -> FaultRule {
    FaultRule {
        probability,
        matcher: Matcher {
            path: path.and_then(|p| PathGlob::new(p).ok()),
            ..Matcher::default()
        },
        ..FaultRule::new(name, action)
    }
}

fn with_window(action: FaultAction, window: Window) -> FaultRule {
    FaultRule {
        window,
        ..FaultRule::new("r", action)
    }
}

fn get(plan: &FaultPlan, path: &str, request_id: &str) -> Decision {
    plan.decide(&RequestFacts::new(&Method::GET, path, request_id))
}

/// The decision for request `index` (attempt 0) of `GET /`, with the id the load generator uses.
fn at_index(plan: &FaultPlan, index: u64) -> Decision {
    let rid = id(index);
    plan.decide(&RequestFacts {
        index,
        ..RequestFacts::new(&Method::GET, "/", &rid)
    })
}

fn effects(d: &Decision) -> Vec<Effect> {
    d.steps.iter().map(|s| s.effect.clone()).collect()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn decisions_are_pure_functions_of_seed_rule_and_id() {
    let plan = FaultPlan::new(42, vec![rule("e", FaultAction::error(503), 0.5, None)]);
    let ids: Vec<String> = (0..200).map(id).collect();
    let forward: Vec<Decision> = ids.iter().map(|i| get(&plan, "/", i)).collect();
    let mut backward: Vec<Decision> = ids.iter().rev().map(|i| get(&plan, "/", i)).collect();
    backward.reverse();
    assert_eq!(forward, backward);
    let hits = forward.iter().filter(|d| !d.is_empty()).count();
    assert!((60..=140).contains(&hits), "{hits} of 200 at p=0.5");
}

#[test]
fn decisions_made_before_the_full_fault_table_are_unchanged() {
    // Values recorded from the previous decide(): a range delay and an error, seed 42.
    let plan = FaultPlan::new(
        42,
        vec![
            rule(
                "slow",
                FaultAction::delay(DelaySpec::Range(ms(100), ms(500))),
                0.3,
                None,
            ),
            rule("err", FaultAction::error(503), 0.25, None),
        ],
    );
    let mut out = String::new();
    for i in 0..12 {
        let d = get(&plan, "/api/x", &seed::request_id(42, i, 0));
        let steps: Vec<String> = d
            .steps
            .iter()
            .map(|s| match (&s.rule, &s.effect) {
                (RuleRef::Index(r), Effect::Delay(d)) => format!("({r}, Delay({d:?}))"),
                (RuleRef::Index(r), Effect::Error(e)) => format!("({r}, Error({}))", e.status),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        out.push_str(&format!("[{}]|", steps.join(", ")));
    }
    assert_eq!(
        out,
        "[(1, Error(503))]|[(0, Delay(404.206712ms))]|[]|[]|[]|[(1, Error(503))]|[]|[]|[]|\
         [(1, Error(503))]|[(0, Delay(326.223913ms)), (1, Error(503))]|[(0, Delay(458.044107ms))]|"
    );
}

#[test]
fn delays_add_up_and_the_first_terminal_wins() {
    let plan = FaultPlan::new(
        1,
        vec![
            rule(
                "d1",
                FaultAction::delay(DelaySpec::Fixed(ms(10))),
                1.0,
                None,
            ),
            rule("d2", FaultAction::delay(DelaySpec::Fixed(ms(5))), 1.0, None),
            rule("drop", FaultAction::Drop, 1.0, Some("/api/*")),
            rule("err", FaultAction::error(500), 1.0, None),
        ],
    );
    let d = get(&plan, "/api/x", "id");
    assert_eq!(d.total_delay(), ms(15));
    assert_eq!(
        d.terminal().map(|s| (s.rule, s.effect.clone())),
        Some((RuleRef::Index(2), Effect::Drop))
    );
    assert_eq!(d.fired_rules(), ["d1", "d2", "drop"]);
    assert!(!d.forwards());
    let d = get(&plan, "/other", "id");
    assert_eq!(
        d.terminal().map(|s| s.effect.clone()),
        Some(Effect::Error(Arc::new(ErrorReply::status(500))))
    );
}

#[test]
fn ranges_stay_in_bounds_and_probability_zero_never_fires() {
    let plan = FaultPlan::new(
        9,
        vec![
            rule(
                "r",
                FaultAction::delay(DelaySpec::Range(ms(100), ms(200))),
                1.0,
                None,
            ),
            rule("never", FaultAction::Drop, 0.0, None),
        ],
    );
    for i in 0..100 {
        let d = get(&plan, "/", &i.to_string());
        assert!((ms(100)..=ms(200)).contains(&d.total_delay()));
        assert!(d.terminal().is_none());
    }
}

#[test]
fn a_goaway_goes_with_a_forwarded_response_and_not_with_a_terminal_one() {
    let away = rule("away", FaultAction::GoAway, 1.0, None);
    let plan = FaultPlan::new(1, vec![away.clone()]);
    let d = get(&plan, "/", "id");
    assert!(d.forwards());
    assert_eq!(d.go_away().map(|s| &*s.name), Some("away"));
    // A terminal answer is not forwarded: the goaway before it is dropped with the other steps
    // that act on the upstream's response.
    let plan = FaultPlan::new(1, vec![away, rule("drop", FaultAction::Drop, 1.0, None)]);
    let d = get(&plan, "/", "id");
    assert!(d.go_away().is_none());
    assert_eq!(d.fired_rules(), ["drop"]);
}

#[test]
fn every_kind_decides_its_effect() {
    let reply = Arc::new(ErrorReply {
        status: 429,
        body: Some("slow down".into()),
        headers: vec![(
            HeaderName::from_static("x-why"),
            HeaderValue::from_static("test"),
        )],
        retry_after: Some(ms(1500)),
        grpc: None,
    });
    let ops = header_ops(
        &[HeaderName::from_static("etag")],
        &[],
        &[(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        )],
    );
    let cases = [
        (
            FaultAction::delay(DelaySpec::Fixed(ms(7))),
            Effect::Delay(ms(7)),
            false,
        ),
        (
            FaultAction::Error(reply.clone()),
            Effect::Error(reply.clone()),
            true,
        ),
        (FaultAction::Drop, Effect::Drop, true),
        (FaultAction::Reset, Effect::Reset, true),
        (
            FaultAction::Hang { cap: Some(ms(300)) },
            Effect::Hang { cap: Some(ms(300)) },
            true,
        ),
        (
            FaultAction::Hang { cap: None },
            Effect::Hang { cap: None },
            true,
        ),
        (
            FaultAction::Truncate { after_bytes: 10 },
            Effect::Truncate { after_bytes: 10 },
            false,
        ),
        (
            FaultAction::Throttle {
                bytes_per_second: 1000,
            },
            Effect::Throttle {
                bytes_per_second: 1000,
            },
            false,
        ),
        (
            FaultAction::Headers {
                target: HeaderSide::Response,
                ops: ops.clone(),
            },
            Effect::Headers {
                target: HeaderSide::Response,
                ops: ops.clone(),
            },
            false,
        ),
        (FaultAction::Status(500), Effect::Status(500), false),
        (FaultAction::GoAway, Effect::GoAway, false),
        (
            FaultAction::Corrupt {
                mode: crate::spec::CorruptMode::Json,
                rate: 0.01,
            },
            Effect::Corrupt {
                mode: crate::spec::CorruptMode::Json,
                rate: 0.01,
            },
            false,
        ),
        (
            FaultAction::Garbage { size: 10 },
            Effect::Garbage { size: 10 },
            true,
        ),
        (FaultAction::Empty, Effect::Empty, true),
        (
            FaultAction::SlowRead {
                bytes_per_second: 100,
            },
            Effect::SlowRead {
                bytes_per_second: 100,
            },
            false,
        ),
        (
            FaultAction::SlowClose(RandomDelay {
                model: DelayModel::Fixed(Duration::from_millis(30)),
                jitter: None,
            }),
            Effect::SlowClose(Duration::from_millis(30)),
            false,
        ),
    ];
    for (action, effect, terminal) in cases {
        let kind = action.kind();
        assert_eq!(action.is_terminal(), terminal, "{kind}");
        let plan = FaultPlan::new(3, vec![FaultRule::new(kind, action)]);
        let d = get(&plan, "/", "id");
        assert_eq!(effects(&d), std::slice::from_ref(&effect), "{kind}");
        assert_eq!(d.steps[0].effect.kind(), kind);
        assert_eq!(d.fired_rules(), [kind]);
        assert_eq!(d.terminal().is_some(), terminal, "{kind}");
    }
    let plan = FaultPlan::new(
        3,
        vec![FaultRule::new(
            "h",
            FaultAction::Headers {
                target: HeaderSide::Response,
                ops: ops.clone(),
            },
        )],
    );
    let d = get(&plan, "/", "id");
    assert_eq!(d.response_headers().count(), 2);
    assert_eq!(d.request_headers().count(), 0);
}

fn delays(plan: &FaultPlan, n: u64) -> Vec<Duration> {
    (0..n)
        .map(|i| get(plan, "/", &id(i)).total_delay())
        .collect()
}

fn mean_ms(values: &[Duration]) -> f64 {
    values.iter().map(|d| d.as_secs_f64() * 1e3).sum::<f64>() / values.len() as f64
}

#[test]
fn normal_delays_have_their_mean_and_are_reproducible() {
    let normal = |mean, stddev| {
        FaultPlan::new(
            5,
            vec![FaultRule::new(
                "n",
                FaultAction::Delay(RandomDelay {
                    model: DelayModel::Normal {
                        mean: ms(mean),
                        stddev: ms(stddev),
                    },
                    jitter: None,
                }),
            )],
        )
    };
    let plan = normal(100, 30);
    let values = delays(&plan, 2000);
    let mean = mean_ms(&values);
    assert!((97.0..=103.0).contains(&mean), "mean {mean}ms");
    let sd = (values
        .iter()
        .map(|d| (d.as_secs_f64() * 1e3 - mean).powi(2))
        .sum::<f64>()
        / values.len() as f64)
        .sqrt();
    assert!((27.0..=33.0).contains(&sd), "stddev {sd}ms");
    assert_eq!(
        values,
        delays(&plan, 2000),
        "the same ids give the same delays"
    );
    // Around zero, draws below zero become zero rather than wrapping around.
    let values = delays(&normal(10, 30), 2000);
    let zeros = values.iter().filter(|d| d.is_zero()).count();
    assert!(zeros > 500, "{zeros} zeros");
    assert!(values.iter().all(|d| *d < ms(200)));
}

#[test]
fn lognormal_delays_have_their_mean_and_a_right_tail() {
    let plan = FaultPlan::new(
        5,
        vec![FaultRule::new(
            "l",
            FaultAction::Delay(RandomDelay {
                model: DelayModel::LogNormal {
                    mean: ms(200),
                    stddev: ms(100),
                },
                jitter: None,
            }),
        )],
    );
    let values = delays(&plan, 4000);
    let mean = mean_ms(&values);
    assert!((190.0..=210.0).contains(&mean), "mean {mean}ms");
    assert!(values.iter().all(|d| !d.is_zero()));
    let mut sorted = values.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median < ms(200),
        "a right tail puts the median below the mean: {median:?}"
    );
}

#[test]
fn jitter_stays_within_its_bounds_and_never_below_zero() {
    let jittered = |base, jitter| {
        FaultPlan::new(
            8,
            vec![FaultRule::new(
                "j",
                FaultAction::Delay(RandomDelay {
                    model: DelayModel::Fixed(ms(base)),
                    jitter: Some(ms(jitter)),
                }),
            )],
        )
    };
    let values = delays(&jittered(100, 20), 1000);
    assert!(values.iter().all(|d| (ms(80)..=ms(120)).contains(d)));
    assert!(values.iter().any(|d| *d < ms(90)) && values.iter().any(|d| *d > ms(110)));
    let mean = mean_ms(&values);
    assert!((98.0..=102.0).contains(&mean), "mean {mean}ms");
    let values = delays(&jittered(10, 50), 1000);
    assert!(values.iter().all(|d| *d <= ms(60)));
    assert!(values.iter().filter(|d| d.is_zero()).count() > 200);
}

#[test]
fn matchers_check_method_path_headers_and_query_all_together() {
    let matcher = Matcher {
        path: PathGlob::new("/api/*").ok(),
        methods: vec![Method::GET, Method::POST],
        headers: vec![
            (
                HeaderName::from_bytes(b"X-User").unwrap(),
                ValueMatch::parse("42"),
            ),
            (
                HeaderName::from_bytes(b"x-canary").unwrap(),
                ValueMatch::parse("*"),
            ),
        ],
        query: vec![
            ("debug".into(), ValueMatch::parse("1")),
            ("id".into(), ValueMatch::parse("*")),
        ],
        grpc: None,
        ..Matcher::default()
    };
    let good = headers(&[("x-user", "7"), ("X-USER", "42"), ("x-canary", "")]);
    let facts =
        |method: &'static Method, path: &'static str, query, h: &'static HeaderMap| RequestFacts {
            query,
            headers: h,
            ..RequestFacts::new(method, path, "id")
        };
    let good: &'static HeaderMap = Box::leak(Box::new(good));
    let q = Some("id=&debug=1");
    assert!(matcher.matches(&facts(&Method::GET, "/api/x", q, good)));
    assert!(matcher.matches(&facts(&Method::POST, "/api/x", Some("debug=1&id=9"), good)));
    // Each condition on its own can fail the match.
    assert!(!matcher.matches(&facts(&Method::PUT, "/api/x", q, good)));
    assert!(!matcher.matches(&facts(&Method::GET, "/other", q, good)));
    assert!(!matcher.matches(&facts(&Method::GET, "/api/x", Some("debug=2&id=1"), good)));
    assert!(!matcher.matches(&facts(&Method::GET, "/api/x", Some("debug=1"), good)));
    assert!(!matcher.matches(&facts(&Method::GET, "/api/x", None, good)));
    let wrong_user: &'static HeaderMap =
        Box::leak(Box::new(headers(&[("x-user", "43"), ("x-canary", "1")])));
    assert!(!matcher.matches(&facts(&Method::GET, "/api/x", q, wrong_user)));
    let no_canary: &'static HeaderMap = Box::leak(Box::new(headers(&[("x-user", "42")])));
    assert!(!matcher.matches(&facts(&Method::GET, "/api/x", q, no_canary)));
    // Targets are matched without headers: header conditions count as met.
    assert!(matcher.matches_target(&Method::GET, "/api/x", q));
    assert!(Matcher::default().matches(&facts(&Method::DELETE, "/", None, no_canary)));
}

fn firing(plan: &FaultPlan, indices: std::ops::Range<u64>) -> Vec<u64> {
    indices.filter(|&i| !at_index(plan, i).is_empty()).collect()
}

#[test]
fn first_after_and_every_count_by_index_without_targets() {
    let plan = |window| FaultPlan::new(2, vec![with_window(FaultAction::Drop, window)]);
    let first = plan(Window {
        first: Some(3),
        ..Window::default()
    });
    assert_eq!(firing(&first, 0..10), [0, 1, 2]);
    let after = plan(Window {
        after: Some(7),
        ..Window::default()
    });
    assert_eq!(firing(&after, 0..10), [7, 8, 9]);
    let every = plan(Window {
        every: Some(4),
        ..Window::default()
    });
    assert_eq!(firing(&every, 0..10), [0, 4, 8]);
    let window = plan(Window {
        after: Some(2),
        first: Some(5),
        every: Some(2),
        ..Window::default()
    });
    assert_eq!(firing(&window, 0..10), [2, 4]);
}

fn two_targets() -> Vec<Target> {
    ["/a?kind=x", "/b"]
        .iter()
        .map(|p| Target::new(Method::GET, *p, 1))
        .collect()
}

/// The decision for request `index` as the load generator would send it: its picked target.
fn sent(plan: &FaultPlan, targets: &[Target], index: u64, attempt: u32) -> Decision {
    let target = pick_target(plan.seed(), index, targets).unwrap();
    let (path, query) = target
        .path
        .split_once('?')
        .map_or((target.path.as_str(), None), |(p, q)| (p, Some(q)));
    let rid = seed::request_id(plan.seed(), index, attempt);
    plan.decide(&RequestFacts {
        query,
        index,
        attempt,
        ..RequestFacts::new(&target.method, path, &rid)
    })
}

#[test]
fn first_counts_only_the_requests_that_match_with_targets() {
    let targets = two_targets();
    let rule = FaultRule {
        matcher: Matcher {
            path: PathGlob::new("/a").ok(),
            query: vec![("kind".into(), ValueMatch::Exact("x".into()))],
            ..Matcher::default()
        },
        ..with_window(
            FaultAction::error(503),
            Window {
                first: Some(5),
                ..Window::default()
            },
        )
    };
    let plan = FaultPlan::new(11, vec![rule]).with_targets(targets.clone(), 1000);
    let to_a: Vec<u64> = (0..1000)
        .filter(|&i| pick_target(11, i, &targets).is_some_and(|t| t.path.starts_with("/a")))
        .collect();
    assert!(to_a.len() > 400, "weights 1:1");
    let fired: Vec<u64> = (0..1000)
        .filter(|&i| !sent(&plan, &targets, i, 0).is_empty())
        .collect();
    assert_eq!(fired, to_a[..5]);
    // Retries of a counted request are counted with it: the same index, the same rank.
    assert!(!sent(&plan, &targets, to_a[4], 2).is_empty());

    // `every` and `after` over the same matching requests.
    let every = FaultPlan::new(
        11,
        vec![FaultRule {
            matcher: Matcher {
                path: PathGlob::new("/a").ok(),
                ..Matcher::default()
            },
            ..with_window(
                FaultAction::Drop,
                Window {
                    every: Some(3),
                    after: Some(1),
                    ..Window::default()
                },
            )
        }],
    )
    .with_targets(targets.clone(), 1000);
    let fired: Vec<u64> = (0..1000)
        .filter(|&i| !sent(&every, &targets, i, 0).is_empty())
        .collect();
    let expected: Vec<u64> = to_a
        .iter()
        .enumerate()
        .filter(|(rank, _)| rank % 3 == 0 && *rank >= 1)
        .map(|(_, &i)| i)
        .collect();
    assert_eq!(fired, expected);
}

#[test]
fn attempts_lets_retries_through() {
    let plan = FaultPlan::new(
        4,
        vec![with_window(
            FaultAction::error(503),
            Window {
                attempts: Some(1),
                first: Some(2),
                ..Window::default()
            },
        )],
    );
    let targets = two_targets();
    let fired = |index, attempt| !sent(&plan, &targets, index, attempt).is_empty();
    assert!(fired(0, 0) && fired(1, 0));
    assert!(!fired(0, 1) && !fired(1, 1), "the retry succeeds");
    assert!(!fired(2, 0), "only the first two requests");
}

#[test]
fn request_windows_include_the_start_and_exclude_the_end() {
    let plan = FaultPlan::new(
        4,
        vec![with_window(
            FaultAction::Reset,
            Window {
                from_request: 3,
                until_request: Some(6),
                ..Window::default()
            },
        )],
    );
    assert_eq!(firing(&plan, 0..10), [3, 4, 5]);
}

#[test]
fn time_windows_include_the_start_and_exclude_the_end() {
    let plan = FaultPlan::new(
        4,
        vec![with_window(
            FaultAction::Drop,
            Window {
                from: Duration::from_secs(2),
                until: Some(Duration::from_secs(5)),
                ..Window::default()
            },
        )],
    );
    let at = |elapsed: Duration| {
        !plan
            .decide(&RequestFacts {
                elapsed,
                ..RequestFacts::new(&Method::GET, "/", "id")
            })
            .is_empty()
    };
    let nanos = Duration::from_nanos;
    assert!(!at(Duration::ZERO));
    assert!(!at(Duration::from_secs(2) - nanos(1)));
    assert!(at(Duration::from_secs(2)));
    assert!(at(Duration::from_secs(5) - nanos(1)));
    assert!(!at(Duration::from_secs(5)));
}

#[test]
fn max_active_slots_are_released_when_decisions_drop() {
    let plan = FaultPlan::new(
        4,
        vec![
            with_window(
                FaultAction::Throttle {
                    bytes_per_second: 100,
                },
                Window {
                    max_active: Some(2),
                    ..Window::default()
                },
            ),
            FaultRule::new("always", FaultAction::Status(500)),
        ],
    );
    let a = at_index(&plan, 0);
    let b = at_index(&plan, 1);
    assert_eq!(a.throttle(), Some(100));
    assert_eq!(b.throttle(), Some(100));
    let c = at_index(&plan, 2);
    assert_eq!(
        c.throttle(),
        None,
        "two are active: the third passes unharmed"
    );
    assert_eq!(c.fired_rules(), ["always"], "other rules still fire");
    let a_clone = a.clone();
    drop(a);
    assert_eq!(
        at_index(&plan, 3).throttle(),
        None,
        "a clone keeps the slot"
    );
    drop(a_clone);
    let d = at_index(&plan, 4);
    assert_eq!(d.throttle(), Some(100), "a released slot is free again");
    // Clones of the plan share the counters.
    assert_eq!(at_index(&plan.clone(), 5).throttle(), None);
    drop((b, d));
    assert_eq!(at_index(&plan.clone(), 5).throttle(), Some(100));
}

#[test]
fn a_terminal_fault_releases_the_slots_of_discarded_steps() {
    let plan = FaultPlan::new(
        4,
        vec![
            with_window(
                FaultAction::Truncate { after_bytes: 1 },
                Window {
                    max_active: Some(1),
                    ..Window::default()
                },
            ),
            FaultRule {
                matcher: Matcher {
                    path: PathGlob::new("/fail").ok(),
                    ..Matcher::default()
                },
                ..FaultRule::new("fail", FaultAction::Drop)
            },
        ],
    );
    let held = get(&plan, "/fail", "a");
    assert_eq!(effects(&held), [Effect::Drop]);
    assert_eq!(get(&plan, "/", "b").truncate_after(), Some(1));
}

fn header_plan() -> FaultPlan {
    FaultPlan::new(
        6,
        vec![rule(
            "slow",
            FaultAction::delay(DelaySpec::Fixed(ms(5))),
            1.0,
            None,
        )],
    )
}

/// A request carrying `value` in `x-traceforge-fault`, with header faults on.
fn with_fault_header(plan: &FaultPlan, value: &[u8]) -> Decision {
    fault_header(plan, value, true)
}

fn fault_header(plan: &FaultPlan, value: &[u8], on: bool) -> Decision {
    let mut map = HeaderMap::new();
    map.insert(wire::FAULT, HeaderValue::from_bytes(value).unwrap());
    plan.decide(&RequestFacts {
        headers: &map,
        fault_header: if on { map.get(wire::FAULT) } else { None },
        ..RequestFacts::new(&Method::GET, "/api/x", "id")
    })
}

#[test]
fn header_faults_apply_to_their_request_only_when_enabled() {
    let plan = header_plan();
    let d = with_fault_header(&plan, b"error:503");
    assert_eq!(d.fired_rules(), ["slow", "header"]);
    assert_eq!(d.steps[1].rule, RuleRef::Header);
    assert_eq!(
        d.terminal().map(|s| s.effect.clone()),
        Some(Effect::Error(Arc::new(ErrorReply::status(503))))
    );
    assert_eq!(
        with_fault_header(&plan, b"delay:200ms").total_delay(),
        ms(205)
    );
    assert_eq!(effects(&with_fault_header(&plan, b"drop"))[1], Effect::Drop);
    // A path in the header is a condition like any other.
    assert_eq!(with_fault_header(&plan, b"drop:1:/other").steps.len(), 1);
    // Off by default: the header is not even read.
    let d = fault_header(&plan, b"error:503", false);
    assert_eq!((d.steps.len(), d.header_error.clone()), (1, None));
    // Probability in the header draws from `fault/header/<request-id>`: the same id, the same result.
    let a = with_fault_header(&plan, b"error:500:0.5");
    assert_eq!(a, with_fault_header(&plan, b"error:500:0.5"));
}

#[test]
fn malformed_fault_headers_are_ignored_and_explained() {
    let plan = header_plan();
    for (value, expected) in [
        (&b"eror:503"[..], "did you mean `error`"),
        (b"error:999", "999 is not an HTTP status"),
        (b"drop:2", "a probability must be between 0 and 1"),
        (b"reset", "`reset` faults have no compact form"),
        (b"delay:fast", "x-traceforge-fault: in \"delay:fast\""),
        (b"\xff", "not visible ASCII"),
    ] {
        let d = with_fault_header(&plan, value);
        assert_eq!(d.fired_rules(), ["slow"], "{value:?}");
        let error = d.header_error.unwrap_or_default();
        assert!(error.contains(expected), "{value:?}: {error}");
    }
}

#[test]
fn header_faults_are_skipped_after_a_terminal() {
    let plan = FaultPlan::new(6, vec![FaultRule::new("gone", FaultAction::Drop)]);
    let d = with_fault_header(&plan, b"error:503");
    assert_eq!(d.fired_rules(), ["gone"]);
    let d = with_fault_header(&plan, b"nonsense");
    assert_eq!(d.header_error, None, "not even parsed");
}

#[test]
fn body_header_and_status_faults_compose() {
    let name = HeaderName::from_static;
    let value = HeaderValue::from_static;
    let plan = FaultPlan::new(
        7,
        vec![
            FaultRule::new("t1", FaultAction::Truncate { after_bytes: 500 }),
            FaultRule::new("d", FaultAction::delay(DelaySpec::Fixed(ms(3)))),
            FaultRule::new("t2", FaultAction::Truncate { after_bytes: 100 }),
            FaultRule::new("t3", FaultAction::Truncate { after_bytes: 300 }),
            FaultRule::new(
                "slow",
                FaultAction::Throttle {
                    bytes_per_second: 900,
                },
            ),
            FaultRule::new(
                "slower",
                FaultAction::Throttle {
                    bytes_per_second: 50,
                },
            ),
            FaultRule::new("s1", FaultAction::Status(500)),
            FaultRule::new("s2", FaultAction::Status(502)),
            FaultRule::new(
                "req",
                FaultAction::Headers {
                    target: HeaderSide::Request,
                    ops: header_ops(&[name("x-drop")], &[(name("x-a"), value("1"))], &[]),
                },
            ),
            FaultRule::new(
                "resp1",
                FaultAction::Headers {
                    target: HeaderSide::Response,
                    ops: header_ops(&[], &[(name("x-b"), value("1"))], &[]),
                },
            ),
            FaultRule::new(
                "resp2",
                FaultAction::Headers {
                    target: HeaderSide::Response,
                    ops: header_ops(&[], &[], &[(name("x-b"), value("2"))]),
                },
            ),
        ],
    );
    let d = get(&plan, "/", "id");
    assert!(d.forwards());
    assert_eq!(d.total_delay(), ms(3));
    assert_eq!(
        d.truncate_after(),
        Some(100),
        "the smaller after_bytes wins"
    );
    assert_eq!(d.throttle(), Some(50), "the lower rate wins");
    assert_eq!(
        d.status_rewrite(),
        Some(502),
        "the last status rewrite wins"
    );
    assert_eq!(
        d.request_headers().cloned().collect::<Vec<_>>(),
        [
            HeaderOp::Remove(name("x-drop")),
            HeaderOp::Set(name("x-a"), value("1"))
        ]
    );
    let mut response = HeaderMap::new();
    for op in d.response_headers() {
        op.apply(&mut response);
    }
    assert_eq!(
        response.get_all("x-b").iter().collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(d.fired_rules().len(), 11);

    // A terminal fault discards the body, header and status steps before it; delays stay.
    let mut rules = plan.rules().to_vec();
    rules.push(FaultRule::new("end", FaultAction::Hang { cap: None }));
    rules.push(FaultRule::new("never", FaultAction::Drop));
    let d = get(&FaultPlan::new(7, rules), "/", "id");
    assert_eq!(d.fired_rules(), ["d", "end"]);
    assert_eq!(
        (d.truncate_after(), d.throttle(), d.status_rewrite()),
        (None, None, None)
    );
}

#[test]
fn decisions_do_not_depend_on_the_order_requests_arrive_in() {
    let targets = two_targets();
    let rules = vec![
        rule(
            "slow",
            FaultAction::delay(DelaySpec::Range(ms(1), ms(90))),
            0.5,
            None,
        ),
        FaultRule {
            matcher: Matcher {
                path: PathGlob::new("/a").ok(),
                ..Matcher::default()
            },
            probability: 0.7,
            ..with_window(
                FaultAction::error(503),
                Window {
                    every: Some(2),
                    first: Some(40),
                    attempts: Some(2),
                    ..Window::default()
                },
            )
        },
        FaultRule {
            probability: 0.3,
            ..FaultRule::new(
                "jitter",
                FaultAction::Delay(RandomDelay {
                    model: DelayModel::Normal {
                        mean: ms(50),
                        stddev: ms(20),
                    },
                    jitter: Some(ms(5)),
                }),
            )
        },
    ];
    let plan = FaultPlan::new(99, rules).with_targets(targets.clone(), 300);
    let keys: Vec<(u64, u32)> = (0..300).flat_map(|i| [(i, 0), (i, 1), (i, 2)]).collect();
    let forward: Vec<Decision> = keys
        .iter()
        .map(|&(i, a)| sent(&plan, &targets, i, a))
        .collect();
    let mut backward: Vec<Decision> = keys
        .iter()
        .rev()
        .map(|&(i, a)| sent(&plan, &targets, i, a))
        .collect();
    backward.reverse();
    assert_eq!(forward, backward);
    assert!(forward.iter().any(|d| d.terminal().is_some()));
}

#[test]
fn a_grpc_matcher_wants_the_method_path_and_a_grpc_content_type() {
    let matcher = Matcher {
        grpc: PathGlob::new("/payments.v1.Payments/*").ok(),
        ..Matcher::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    let facts = |path, headers| RequestFacts {
        method: &Method::POST,
        path,
        query: None,
        headers,
        fault_header: None,
        request_id: "r",
        index: 0,
        attempt: 0,
        elapsed: std::time::Duration::ZERO,
    };
    assert!(matcher.matches(&facts("/payments.v1.Payments/Charge", &headers)));
    assert!(!matcher.matches(&facts("/payments.v1.Refunds/Charge", &headers)));
    assert!(!matcher.matches(&facts("/payments.v1.Payments/Charge", &HeaderMap::new())));
}

#[test]
fn slow_close_draws_its_delay_per_request_and_body_faults_compose() {
    let range = |lo, hi| {
        FaultAction::SlowClose(RandomDelay {
            model: DelayModel::Uniform(Duration::from_millis(lo), Duration::from_millis(hi)),
            jitter: None,
        })
    };
    let plan = FaultPlan::new(
        5,
        vec![
            FaultRule::new("linger", range(100, 900)),
            FaultRule::new(
                "slow-up",
                FaultAction::SlowRead {
                    bytes_per_second: 500,
                },
            ),
            FaultRule::new(
                "slower-up",
                FaultAction::SlowRead {
                    bytes_per_second: 200,
                },
            ),
            FaultRule::new(
                "flip",
                FaultAction::Corrupt {
                    mode: crate::spec::CorruptMode::Bytes,
                    rate: 0.5,
                },
            ),
        ],
    );
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let d = get(&plan, "/", &id(i));
        let delay = d.slow_close().unwrap_or_default();
        assert!((100..=900).contains(&delay.as_millis()), "{delay:?}");
        assert_eq!(
            get(&plan, "/", &id(i)).slow_close(),
            Some(delay),
            "drawn from the request id"
        );
        seen.insert(delay);
        assert_eq!(d.slow_read(), Some(200), "the lowest rate wins");
        assert_eq!(d.corruptions().count(), 1);
        assert!(d.forwards());
    }
    assert!(seen.len() > 10, "one delay per request: {seen:?}");
    // A terminal fault drops them: nothing is forwarded.
    let plan = FaultPlan::new(
        5,
        vec![
            FaultRule::new("linger", range(1, 2)),
            FaultRule::new("nothing", FaultAction::Empty),
        ],
    );
    let d = get(&plan, "/", "x");
    assert_eq!(d.fired_rules(), ["nothing"]);
    assert_eq!(d.slow_close(), None);
}
