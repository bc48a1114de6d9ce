//! The scenario file as users meet it: the exact text of every kind of error (file:line:col, the
//! line, a caret, what would be valid), overrides going through the same validation, and no panic
//! on any input.

use traceforge::scenario::{self, Override, Scenario, ScenarioError};

use crate::support;

/// A small valid scenario the error cases below start from.
const BASE: &str = r#"name = "demo"

[[faults]]
kind = "error"
status = 503
probability = 0.2

[load]
requests = 10
concurrency = 2
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    scenario::parse_str("scenario.toml", text, &[])
}

fn overrides(list: &[&str]) -> Vec<Override> {
    list.iter()
        .map(|s| s.parse().expect("a valid KEY=VALUE"))
        .collect()
}

/// The full rendered error for `text` (with overrides), which must be invalid, as the CLI prints
/// it: the error after `error: `.
fn error_with(text: &str, sets: &[&str]) -> String {
    match scenario::parse_str("scenario.toml", text, &overrides(sets)) {
        Ok(s) => panic!("expected an error, got a valid scenario {:?}", s.name),
        Err(e) => format!("error: {e}"),
    }
}

fn error(text: &str) -> String {
    error_with(text, &[])
}

fn diagnostics(result: Result<Scenario, ScenarioError>) -> Vec<scenario::Diagnostic> {
    match result {
        Err(ScenarioError::Invalid(d)) => d,
        Err(e) => panic!("expected Invalid, got {e}"),
        Ok(s) => panic!("expected an error, got a valid scenario {:?}", s.name),
    }
}

#[test]
fn the_base_scenario_is_valid() {
    let s = parse(BASE).expect("BASE is valid");
    assert_eq!(
        (
            s.name.as_str(),
            s.load.profile.max_in_flight(),
            s.faults.len()
        ),
        ("demo", 2, 1)
    );
}

#[test]
fn unknown_key_suggests_the_closest_one() {
    let text = BASE.replace("concurrency = 2", "concurency = 2");
    assert_eq!(
        error(&text),
        "\
error: load: unknown key `concurency`
  --> scenario.toml:10:1
   |
10 | concurency = 2
   | ^^^^^^^^^^ unknown key
   |
   = help: did you mean `concurrency`? valid keys here: `requests`, `duration`, `concurrency`, `rate`, `stages`, `max_in_flight`, `retries`, `retry_backoff`, `retry`, `timeout`, `client_trace`, `http2`, `targets`, `to`, `command`, `env`, `cwd`"
    );
}

#[test]
fn unknown_top_level_key_suggests_the_closest_one() {
    assert_eq!(
        error("name = \"x\"\nlaod = 1\n"),
        "\
error: unknown key `laod`
 --> scenario.toml:2:1
  |
2 | laod = 1
  | ^^^^ unknown key
  |
  = help: did you mean `load`? valid keys here: `name`, `description`, `seed`, `upstream`, `faults`, `proxy`, `load`, `expect`, `run`, `services`, `proxies`, `phases`"
    );
}

#[test]
fn unknown_fault_kind_in_a_table_suggests_the_closest_one() {
    let text = "name = \"x\"\n\n[[faults]]\nkind = \"dealy\"\ndelay = \"1s\"\n";
    assert_eq!(
        error(text),
        "\
error: faults[0].kind: unknown value `dealy`
 --> scenario.toml:4:8
  |
4 | kind = \"dealy\"
  |        ^^^^^^^ unknown value
  |
  = help: did you mean `delay`? valid values here: `delay`, `error`, `drop`, `reset`, `hang`, `truncate`, `throttle`, `stream`, `headers`, `status`, `ws_close`, `ws_delay`, `ws_drop`, `rst_stream`, `goaway`, `quota`, `corrupt`, `garbage`, `empty`, `slow_read`, `slow_close`"
    );
}

#[test]
fn malformed_compact_fault_points_at_the_string() {
    assert_eq!(
        error("name = \"x\"\nfaults = [\"drop\", \"error:5x3\"]\n"),
        "\
error: faults[1]: in \"error:5x3\": `5x3` is not an HTTP status (100 to 599)
 --> scenario.toml:2:19
  |
2 | faults = [\"drop\", \"error:5x3\"]
  |                   ^^^^^^^^^^^ here
  |"
    );
}

#[test]
fn unknown_compact_fault_kind_suggests_and_shows_the_grammar() {
    assert_eq!(
        error("name = \"x\"\nfaults = [\"dealy:100ms\"]\n"),
        "\
error: faults[0]: unknown fault kind `dealy` in \"dealy:100ms\" (did you mean `delay`?); compact faults are `delay:100ms[-500ms][:P][:/path]`, `error:503[:P][:/path]` or `drop[:P][:/path]`
 --> scenario.toml:2:11
  |
2 | faults = [\"dealy:100ms\"]
  |           ^^^^^^^^^^^^^ here
  |"
    );
}

#[test]
fn probability_above_one() {
    let text = BASE.replace("probability = 0.2", "probability = 1.5");
    assert_eq!(
        error(&text),
        "\
error: faults[0].probability: a probability must be between 0 and 1, found 1.5
 --> scenario.toml:6:15
  |
6 | probability = 1.5
  |               ^^^ not a probability
  |
  = help: write 0.25 for 25%"
    );
}

#[test]
fn probability_in_a_compact_fault_is_checked_too() {
    assert_eq!(
        error("name = \"x\"\nfaults = [\"drop:2\"]\n"),
        "\
error: faults[0]: a probability must be between 0 and 1, found 2
 --> scenario.toml:2:11
  |
2 | faults = [\"drop:2\"]
  |           ^^^^^^^^ not a probability
  |
  = help: write 0.25 for 25%"
    );
}

#[test]
fn error_fault_without_status() {
    let text = BASE.replace("status = 503\n", "");
    assert_eq!(
        error(&text),
        "\
error: faults[0].kind: an `error` fault needs `status`
 --> scenario.toml:4:8
  |
4 | kind = \"error\"
  |        ^^^^^^^ missing `status`
  |
  = help: add `status = 503` (any status from 200 to 599)"
    );
}

#[test]
fn backwards_delay_range() {
    let text = "name = \"x\"\n\n[[faults]]\nkind = \"delay\"\ndelay = \"500ms..100ms\"\n";
    assert_eq!(
        error(text),
        "\
error: faults[0].delay: the range 500ms..100ms runs backwards
 --> scenario.toml:5:9
  |
5 | delay = \"500ms..100ms\"
  |         ^^^^^^^^^^^^^^ lower bound above upper bound
  |
  = help: write \"100ms..500ms\""
    );
}

#[test]
fn name_that_is_not_a_file_name() {
    let text = BASE.replace("name = \"demo\"", "name = \"bad one\"");
    assert_eq!(
        error(&text),
        "\
error: name: `bad one` cannot be used as a file name
 --> scenario.toml:1:8
  |
1 | name = \"bad one\"
  |        ^^^^^^^^^ not a usable name
  |
  = help: use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example \"flaky-api\")"
    );
}

#[test]
fn misspelled_http_method() {
    let text = format!("{BASE}targets = [{{ path = \"/a\", method = \"GTE\" }}]\n");
    assert_eq!(
        error(&text),
        "\
error: load.targets[0].method: `GTE` is not an HTTP method
  --> scenario.toml:11:36
   |
11 | targets = [{ path = \"/a\", method = \"GTE\" }]
   |                                    ^^^^^ unknown method
   |
   = help: did you mean `GET`? valid methods: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT"
    );
}

#[test]
fn toml_syntax_error() {
    let text = BASE.replace("[load]", "[load");
    assert_eq!(
        error(&text),
        "\
error: unclosed table, expected `]`
 --> scenario.toml:8:5
  |
8 | [load
  |     ^ here
  |"
    );
}

#[test]
fn duration_without_unit() {
    let text = format!("{BASE}timeout = 100\n");
    assert_eq!(
        error(&text),
        "\
error: load.timeout: durations need a unit: write \"100ms\" or \"100s\", not 100
  --> scenario.toml:11:11
   |
11 | timeout = 100
   |           ^^^ here
   |"
    );
    let text = format!("{BASE}timeout = \"100\"\n");
    assert_eq!(
        error(&text),
        "\
error: load.timeout: `100` has no unit; write it like \"250ms\" or \"1.5s\" (units: ns, us, ms, s, m, h)
  --> scenario.toml:11:11
   |
11 | timeout = \"100\"
   |           ^^^^^ here
   |"
    );
}

#[test]
fn missing_name_names_the_file_and_what_to_add() {
    let expected = "\
error: scenario.toml: missing field `name`
 = help: add a line like `name = \"flaky-api\"`; the name also names the golden file";
    for text in [
        "",
        "\n\n",
        "# only a comment\n",
        "seed = 1\n[load]\nrequests = 5\n",
    ] {
        assert_eq!(error(text), expected, "for {text:?}");
    }
}

#[test]
fn missing_field_in_a_nested_table_points_at_it() {
    assert_eq!(
        error("name = \"x\"\n\n[[faults]]\nprobability = 0.5\n"),
        "\
error: faults[0]: missing field `kind`
 --> scenario.toml:3:1
  |
3 | [[faults]]
  | ^^^^^^^^^^ missing a field
  |
  = help: add `kind = \"delay\"`, `kind = \"error\"` or `kind = \"drop\"`"
    );
}

#[test]
fn every_validation_problem_of_a_file_is_reported_together() {
    let text = BASE
        .replace("name = \"demo\"", "name = \"bad one\"")
        .replace("probability = 0.2", "probability = 1.5")
        .replace("concurrency = 2", "concurrency = 0");
    let found = diagnostics(parse(&text));
    let lines: Vec<_> = found
        .iter()
        .map(|d| (d.message.as_str(), d.line_col()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                "name: `bad one` cannot be used as a file name",
                Some((1, 8))
            ),
            (
                "faults[0].probability: a probability must be between 0 and 1, found 1.5",
                Some((6, 15))
            ),
            (
                "load.concurrency: must be between 1 and 10000, found 0",
                Some((10, 15))
            ),
        ]
    );
    // Display lists them all, one rendered block after another.
    let shown = error(&text);
    assert_eq!(shown.matches("error: ").count(), 3, "{shown}");
    assert!(shown.contains(" --> scenario.toml:10:15\n"), "{shown}");
}

#[test]
fn override_error_is_shown_against_the_override() {
    assert_eq!(
        error_with(BASE, &["load.concurrency=0"]),
        "\
error: load.concurrency: must be between 1 and 10000, found 0
 --> --set load.concurrency=0:1:18
  |
1 | load.concurrency=0
  |                  ^ out of range
  |
  = note: the override was applied to scenario.toml"
    );
}

#[test]
fn override_with_unknown_key_points_at_the_key() {
    assert_eq!(
        error_with(BASE, &["load.concurency=5"]),
        "\
error: load: unknown key `concurency`
 --> --set load.concurency=5:1:6
  |
1 | load.concurency=5
  |      ^^^^^^^^^^ unknown key
  |
  = note: the override was applied to scenario.toml
  = help: did you mean `concurrency`? valid keys here: `requests`, `duration`, `concurrency`, `rate`, `stages`, `max_in_flight`, `retries`, `retry_backoff`, `retry`, `timeout`, `client_trace`, `http2`, `targets`, `to`, `command`, `env`, `cwd`"
    );
}

#[test]
fn override_past_the_end_of_a_list_points_at_the_index() {
    assert_eq!(
        error_with(BASE, &["faults.3.probability=1"]),
        "\
error: in `faults.3.probability`, index 3 is past the end of a list of 1
 --> --set faults.3.probability=1:1:8
  |
1 | faults.3.probability=1
  |        ^ cannot set this
  |
  = note: the override was applied to scenario.toml"
    );
}

#[test]
fn overrides_are_applied_and_validated_like_the_file() {
    let s = scenario::parse_str("scenario.toml", BASE, &overrides(&["load.concurrency=64"]))
        .expect("64 is a valid concurrency");
    assert_eq!(s.load.profile.max_in_flight(), 64);
    assert_eq!(
        s.spec.load.concurrency,
        Some(64),
        "the effective spec shows the override"
    );
    assert_eq!(
        s.load.profile.fixed_count(),
        Some(10),
        "other values stay as in the file"
    );

    assert_eq!(
        error_with(BASE, &["faults.0.probability=2"]),
        "\
error: faults[0].probability: a probability must be between 0 and 1, found 2
 --> --set faults.0.probability=2:1:22
  |
1 | faults.0.probability=2
  |                      ^ not a probability
  |
  = note: the override was applied to scenario.toml
  = help: write 0.25 for 25%"
    );

    // Problems in the file and in overrides are reported together.
    let text = BASE.replace("name = \"demo\"", "name = \"bad one\"");
    let found = diagnostics(scenario::parse_str(
        "scenario.toml",
        &text,
        &overrides(&["load.concurrency=0"]),
    ));
    let origins: Vec<_> = found.iter().map(|d| d.origin.as_str()).collect();
    assert_eq!(origins, ["scenario.toml", "--set load.concurrency=0"]);
}

#[test]
fn an_override_value_that_is_not_toml_is_a_string() {
    let s = scenario::parse_str(
        "scenario.toml",
        BASE,
        &overrides(&["description=hello world", "name=renamed"]),
    )
    .expect("bare words are strings");
    assert_eq!(s.description, "hello world");
    assert_eq!(s.name, "renamed");
    // A TOML value keeps its type: a bare word where a number belongs is an error, not a 0.
    assert_eq!(
        error_with(BASE, &["load.concurrency=lots"]),
        "\
error: load.concurrency: expected a whole number, found the string \"lots\"
 --> --set load.concurrency=lots:1:18
  |
1 | load.concurrency=lots
  |                  ^^^^ here
  |
  = note: the override was applied to scenario.toml"
    );
}

#[test]
fn override_syntax_errors_say_what_is_expected() {
    let err = "load.concurrency".parse::<Override>().expect_err("no `=`");
    assert!(err.contains("KEY=VALUE"), "{err}");
    let err = "load..concurrency=1"
        .parse::<Override>()
        .expect_err("empty part");
    assert!(err.contains("load.concurrency"), "{err}");
}

// ---- the full fault table ----

#[test]
fn a_scenario_with_every_fault_kind_validates() {
    use traceforge::fault::{DelayModel, FaultAction, RandomDelay};
    let s = parse(support::EVERY_FAULT_KIND).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = s.faults.iter().map(|r| r.action.kind()).collect();
    assert_eq!(
        kinds,
        [
            "delay",
            "delay",
            "error",
            "drop",
            "reset",
            "hang",
            "truncate",
            "throttle",
            "headers",
            "status",
            "ws_close",
            "ws_delay",
            "ws_drop",
            "stream",
            "goaway",
            "quota",
            "corrupt",
            "garbage",
            "empty",
            "slow_read",
            "slow_close"
        ]
    );
    assert!(s.proxy.header_faults);
    let slow = &s.faults[0];
    assert_eq!(slow.matcher.headers.len(), 2);
    assert_eq!(
        slow.matcher.headers[0].0.as_str(),
        "x-user",
        "names are lowercased"
    );
    assert_eq!(slow.matcher.query.len(), 2);
    assert!(matches!(
        s.faults[1].action,
        FaultAction::Delay(RandomDelay {
            model: DelayModel::LogNormal { .. },
            jitter: None
        })
    ));
    let FaultAction::Error(reply) = &s.faults[2].action else {
        panic!("an error rule")
    };
    assert_eq!(
        reply.retry_after_value().as_ref().map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    let window = &s.faults[2].window;
    assert_eq!((window.first, window.attempts), (Some(5), Some(1)));
    assert_eq!(
        s.faults[3].name, "drop-4",
        "default names count positions from 1"
    );
    assert_eq!(s.faults[5].window.max_active, Some(2));
    // The plan `traceforge run` builds from it.
    let plan = s.fault_plan();
    assert_eq!(plan.rules().len(), 21);
    assert_eq!(
        s.faults[10].action,
        FaultAction::WsClose {
            after_messages: Some(10),
            after_time: Some(std::time::Duration::from_secs(5)),
            code: 4000
        }
    );
    // A `ws_drop`'s probability is per message: the rule applies to every upgrade.
    assert_eq!(
        (s.faults[12].probability, &s.faults[12].action),
        (1.0, &FaultAction::WsDrop { probability: 0.2 })
    );
    assert!(s.proxy.header_faults);
}

/// The every-kind scenario with one line replaced; the replacement must be there to replace.
fn every_kind_with(from: &str, to: &str) -> String {
    assert!(support::EVERY_FAULT_KIND.contains(from), "{from}");
    support::EVERY_FAULT_KIND.replacen(from, to, 1)
}

#[test]
fn a_delay_with_both_a_range_and_a_distribution() {
    let text = every_kind_with("jitter = \"20ms\"", "distribution = \"normal\"");
    assert_eq!(
        error(&text),
        "\
error: faults[0].distribution: a `delay` fault takes `delay` or `distribution`, not both
  --> scenario.toml:11:16
   |
11 | distribution = \"normal\"
   |                ^^^^^^^^ conflicts with `delay`
   |
   = help: keep `delay` for a fixed value or a range, or `distribution` with `mean` and `stddev`"
    );
}

#[test]
fn a_distribution_without_its_stddev() {
    let text = every_kind_with("stddev = \"50ms\"\n", "");
    assert_eq!(
        error(&text),
        "\
error: faults[1].distribution: a `lognormal` delay needs `mean` and `stddev`
  --> scenario.toml:18:16
   |
18 | distribution = \"lognormal\"
   |                ^^^^^^^^^^^ missing `stddev`
   |
   = help: add `mean = \"200ms\"` and `stddev = \"50ms\"`"
    );
}

#[test]
fn mean_without_a_distribution() {
    let text = every_kind_with("jitter = \"20ms\"", "mean = \"100ms\"");
    assert_eq!(
        error(&text),
        "\
error: faults[0].mean: `mean` needs `distribution`
  --> scenario.toml:11:8
   |
11 | mean = \"100ms\"
   |        ^^^^^^^ without `distribution`
   |
   = help: add `distribution = \"normal\"` or `\"lognormal\"` instead of `delay`, or remove `mean` and `stddev`"
    );
}

#[test]
fn a_field_of_another_kind() {
    let text = every_kind_with("after_bytes = 1024\n", "after_bytes = 1024\nstatus = 200\n");
    assert_eq!(
        error(&text),
        "\
error: faults[6].status: `status` does not apply to a `truncate` fault
  --> scenario.toml:52:10
   |
52 | status = 200
   |          ^^^ not used by this kind
   |
   = help: `status` belongs to `error` and `status` faults; remove it or change `kind`"
    );
    let text = every_kind_with("cap = \"30s\"\n", "cap = \"30s\"\nbody = \"x\"\n");
    assert!(
        error(&text)
            .starts_with("error: faults[5].body: `body` does not apply to a `hang` fault\n"),
        "{}",
        error(&text)
    );
    let text = every_kind_with(
        "retry_after = \"1.5s\"\n",
        "retry_after = \"1.5s\"\njitter = \"1s\"\n",
    );
    assert!(
        error(&text)
            .starts_with("error: faults[2].jitter: `jitter` does not apply to an `error` fault\n"),
        "{}",
        error(&text)
    );
}

#[test]
fn an_empty_time_window() {
    let text = every_kind_with("until = \"5s\"", "until = \"2s\"");
    assert_eq!(
        error(&text),
        "\
error: faults[1].until: the time window from 2s until 2s is empty
  --> scenario.toml:22:9
   |
22 | until = \"2s\"
   |         ^^^^ not after `from`
   |
   = help: `until` is when the window ends: make it later than `from`"
    );
}

#[test]
fn an_empty_request_window() {
    let text = every_kind_with("until_request = 60", "until_request = 50");
    assert_eq!(
        error(&text),
        "\
error: faults[4].until_request: the request window from 50 until 50 is empty
  --> scenario.toml:42:17
   |
42 | until_request = 50
   |                 ^^ not after `from_request`
   |
   = help: `until_request` is the first index after the window: make it larger than `from_request`"
    );
}

#[test]
fn every_zero() {
    let text = every_kind_with("every = 10", "every = 0");
    assert_eq!(
        error(&text),
        "\
error: faults[3].every: `every` must be at least 1, found 0
  --> scenario.toml:36:9
   |
36 | every = 0
   |         ^ zero
   |
   = help: `every = N` fires for every Nth matching request; `every = 1` is every one"
    );
}

#[test]
fn a_headers_fault_with_nothing_to_do() {
    let text = every_kind_with(
        "add = { \"x-chaos\" = \"1\" }\nset = { \"cache-control\" = \"no-store\" }\nremove = [\"etag\"]\n",
        "set = {}\n",
    );
    assert_eq!(
        error(&text),
        "\
error: faults[8].kind: this `headers` fault has nothing to add, set or remove
  --> scenario.toml:58:8
   |
58 | kind = \"headers\"
   |        ^^^^^^^^^ does nothing
   |
   = help: add `set = { \"x-chaos\" = \"1\" }`, `add = { ... }` or `remove = [\"etag\"]`"
    );
}

#[test]
fn a_misspelled_header_target_suggests_the_closest_one() {
    let text = every_kind_with("target = \"response\"", "target = \"reponse\"");
    assert_eq!(
        error(&text),
        "\
error: faults[8].target: unknown value `reponse`
  --> scenario.toml:59:10
   |
59 | target = \"reponse\"
   |          ^^^^^^^^^ unknown value
   |
   = help: did you mean `response`? valid values here: `request`, `response`"
    );
}

#[test]
fn impossible_values_are_pointed_at() {
    for (from, to, expected) in [
        (
            "status = 500",
            "status = 700",
            "faults[9].status: 700 is not an HTTP status",
        ),
        (
            "bytes_per_second = 20480",
            "bytes_per_second = 0",
            "faults[7].bytes_per_second: a throttle of 0 bytes per second would never send the body",
        ),
        (
            "mean = \"200ms\"",
            "mean = \"0ms\"",
            "faults[1].mean: a `lognormal` delay needs a mean above zero",
        ),
        (
            "after_bytes = 1024",
            "after_bytes = -1",
            "faults[6].after_bytes: expected a whole number from 0 to 18446744073709551615, found -1",
        ),
        (
            "set = { \"cache-control\" = \"no-store\" }",
            "set = { \"Content-Length\" = \"5\" }",
            "faults[8].set.Content-Length: `content-length` cannot be set: it frames the message",
        ),
        (
            "max_active = 2",
            "max_active = 0",
            "faults[5].max_active: `max_active` must be at least 1, found 0",
        ),
        (
            "first = 5",
            "first = 0",
            "faults[2].first: `first` must be at least 1, found 0",
        ),
        (
            "cap = \"30s\"",
            "cap = \"0s\"",
            "faults[5].cap: the hang's cap must be longer than zero",
        ),
        (
            "kind = \"truncate\"\nafter_bytes = 1024",
            "kind = \"truncate\"",
            "faults[6].kind: a `truncate` fault needs `after_bytes`",
        ),
        (
            "target = \"response\"\n",
            "",
            "faults[8].kind: a `headers` fault needs `target`",
        ),
        (
            "\"x-canary\" = \"*\"",
            "\"x canary\" = \"*\"",
            "faults[0].match.headers.x canary: `x canary` is not a valid header name",
        ),
        (
            "delay = \"100ms..500ms\"\njitter = \"20ms\"",
            "",
            "faults[0].kind: a `delay` fault needs `delay` or `distribution`",
        ),
    ] {
        let shown = error(&every_kind_with(from, to));
        assert!(
            shown.starts_with(&format!("error: {expected}")),
            "{to}:\n{shown}"
        );
        assert_eq!(shown.matches("error: ").count(), 1, "{to}:\n{shown}");
    }
}

#[test]
fn compact_faults_name_the_table_form_for_other_kinds() {
    assert_eq!(
        error("name = \"x\"\nfaults = [\"hang:30s\"]\n"),
        "\
error: faults[0]: `hang` faults have no compact form (compact faults are `delay`, `error` and `drop`); write a table such as `{ kind = \"hang\" }`
 --> scenario.toml:2:11
  |
2 | faults = [\"hang:30s\"]
  |           ^^^^^^^^^^ here
  |"
    );
}

// ---- no panic on any input ----

/// The input must be rejected with at least one located or file-level diagnostic, rendered
/// without panicking, and is returned as the CLI prints it (after `error: `, which the error
/// itself does not carry).
fn rejected(origin: &str, result: Result<Scenario, ScenarioError>) -> String {
    let shown = match result {
        Ok(s) => panic!("{origin}: expected an error, got scenario {:?}", s.name),
        Err(e) => e.to_string(),
    };
    assert!(
        !shown.is_empty() && !shown.starts_with("error: "),
        "{shown}"
    );
    format!("error: {shown}")
}

#[test]
fn huge_and_negative_numbers_are_errors() {
    for (line, expected) in [
        ("requests = 99999999999999999999", "load.requests: "),
        ("concurrency = 1e400", "load.concurrency: "),
        (
            "concurrency = 5000000000",
            "load.concurrency: expected a whole number from 0 to 4294967295, found 5000000000",
        ),
        (
            "retries = -1",
            "load.retries: expected a whole number from 0 to 4294967295, found -1",
        ),
        (
            "requests = 99999999999999999999",
            "load.requests: expected a whole number from 0 to 18446744073709551615, found 99999999999999999999",
        ),
        (
            "timeout = \"99999999999999999999h\"",
            "longer than the maximum of 7 days",
        ),
        ("timeout = \"1e400s\"", "unknown unit"),
    ] {
        let text = format!("name = \"x\"\n[load]\n{line}\n");
        let shown = rejected(line, parse(&text));
        assert!(shown.contains(expected), "{line}: {shown}");
        assert!(shown.contains(" --> scenario.toml:3:"), "{line}: {shown}");
    }
    let shown = rejected("seed", parse("name = \"x\"\nseed = -1\n"));
    assert!(
        shown.starts_with(
            "error: seed: expected a whole number from 0 to 18446744073709551615, found -1\n --> scenario.toml:2:8"
        ),
        "{shown}"
    );
    let shown = rejected("nan", parse(&BASE.replace("0.2", "nan")));
    assert!(shown.contains("found NaN"), "{shown}");
    let shown = rejected("status", parse(&BASE.replace("503", "70000")));
    assert!(shown.contains("faults[0].status: "), "{shown}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = 100_000;
    let cases = [
        format!("name = \"x\"\nx = {}", "[".repeat(deep)),
        format!("name = \"x\"\nx = {}", "{a = ".repeat(deep)),
        format!(
            "name = \"x\"\nx = {}1{}\n",
            "[".repeat(deep),
            "]".repeat(deep)
        ),
        format!("name = \"x\"\n{}b = 1\n", "a.".repeat(deep)),
        format!("name = \"x\"\n[{}b]\n", "a.".repeat(deep)),
    ];
    for text in &cases {
        let shown = rejected("deep", parse(text));
        assert!(shown.contains("nest"), "{}", &shown[..shown.len().min(300)]);
    }
    // Through an override too: too deep for TOML, so it becomes a string, then an unknown key.
    let value = format!("x={}", "[".repeat(deep));
    rejected(
        "deep override",
        scenario::parse_str("s.toml", BASE, &overrides(&[&value])),
    );
}

#[test]
fn a_file_that_is_not_utf8_is_reported_at_the_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("junk.toml");
    std::fs::write(&path, b"name = \"x\"\n\xff\xfe junk\n").expect("write");
    let shown = rejected("junk", scenario::load(&path, &[]));
    assert_eq!(
        shown,
        format!(
            "\
error: the file is not UTF-8 text
 --> {}:2:1
  |
2 | \u{fffd}\u{fffd} junk
  | ^ invalid byte here
  |
  = help: scenario files are TOML, which must be UTF-8",
            path.display()
        )
    );

    // Random binary junk, NUL bytes and a lone continuation byte mid-line.
    let mut rng = Rng(7);
    let junk: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    for bytes in [
        junk.as_slice(),
        b"\0\0\0",
        b"name = \"caf\xc3\"\n",
        b"\xef\xbb\xbfname = 1",
    ] {
        std::fs::write(&path, bytes).expect("write");
        rejected("binary", scenario::load(&path, &[]));
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let path = support::root().join("scenarios/does-not-exist.toml");
    let shown = rejected("missing", scenario::load(&path, &[]));
    assert!(
        shown.starts_with(&format!("error: cannot read {}: ", path.display())),
        "{shown}"
    );
}

/// splitmix64: a tiny deterministic generator, so the mutation test is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    const INSERTS: &[&[u8]] = &[
        b"[",
        b"]",
        b"\"",
        b"=",
        b"{",
        b"}",
        b".",
        b",",
        b"\n",
        b"'''",
        b"\"\"\"",
        b"\\",
        b"#",
        b"[[faults]]\n",
        b"1e400",
        b"-",
        b"\xc3\xa9",
        b"\xff",
        b"..",
        b":",
    ];
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if !bytes.is_empty() => {
            let i = at.min(bytes.len() - 1);
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => bytes.truncate(at),
        2 => {
            // Duplicate the line around `at`.
            let start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| at + i + 1);
            let line = bytes[start..end].to_vec();
            bytes.splice(end..end, line);
        }
        3 if !bytes.is_empty() => {
            bytes.remove(at.min(bytes.len() - 1));
        }
        _ => {
            let insert = INSERTS[rng.below(INSERTS.len())];
            bytes.splice(at..at, insert.iter().copied());
        }
    }
}

#[test]
fn thousands_of_mutated_scenarios_never_panic() {
    let mut rng = Rng(0x7261_6365_666f_7267);
    let mut outcomes = [0usize; 2];
    for file in support::scenario_files() {
        let original = std::fs::read(&file).expect("read scenario");
        for _ in 0..1500 {
            let mut bytes = original.clone();
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut bytes);
            }
            let text = String::from_utf8_lossy(&bytes);
            let result = scenario::parse_str("mutant.toml", &text, &[]);
            // Rendering is part of "no panic": carets land on whatever the mutation left.
            match result {
                Ok(_) => outcomes[0] += 1,
                Err(e) => {
                    rejected("mutant", Err(e));
                    outcomes[1] += 1;
                }
            }
        }
    }
    // The loop must exercise both sides, or it is not testing much.
    assert!(
        outcomes[0] > 100 && outcomes[1] > 1000,
        "valid, invalid: {outcomes:?}"
    );
}

// ---- load profiles that cannot be played ----

#[test]
fn a_rate_too_slow_for_its_requests_is_refused_at_the_rate() {
    assert_eq!(
        error("name = \"x\"\n[load]\nrate = 1e-300\nrequests = 5\n"),
        "\
error: load.rate: at 1e-300 requests per second, 5 requests take longer than the maximum of 7 days
 --> scenario.toml:3:8
  |
3 | rate = 1e-300
  |        ^^^^^^ too slow
  |
  = help: raise `rate` or lower `requests`: at this rate 7 days hold at most 1 request"
    );
    let shown = error("name = \"x\"\n[load]\nrate = 0.001\nrequests = 1000\n");
    assert!(
        shown.contains("= help: raise `rate` or lower `requests`: at this rate 7 days hold at most 605 requests"),
        "{shown}"
    );
    // The same schedule through an override.
    let shown = error_with(BASE, &["load.rate=1e-300", "load.concurrency=1"]);
    assert!(
        shown.contains("take longer than the maximum of 7 days"),
        "{shown}"
    );
    // A schedule that ends exactly on the cap is fine: one request a day, 8 requests.
    parse("name = \"x\"\n[load]\nrate = 0.000011574074074074073\nrequests = 8\n")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn stages_longer_than_the_cap_are_refused() {
    assert_eq!(
        error(
            "name = \"x\"\n[load]\nstages = [{ duration = \"100h\", rate = 1 }, { duration = \"100h\", rate = 1 }]\n"
        ),
        "\
error: load.stages: the stages last 200h in all, longer than the maximum of 7 days
 --> scenario.toml:3:10
  |
3 | stages = [{ duration = \"100h\", rate = 1 }, { duration = \"100h\", rate = 1 }]
  |          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ too long
  |
  = help: shorten the stages; a load profile must end within 7 days"
    );
}

// ---- values that would be silently changed or dropped ----

#[test]
fn an_empty_stage_list_is_refused_not_read_as_the_default() {
    assert_eq!(
        error("name = \"x\"\n[load]\nstages = []\n"),
        "\
error: load.stages: the list of stages is empty
 --> scenario.toml:3:10
  |
3 | stages = []
  |          ^^ no stages
  |
  = help: add a stage such as { duration = \"10s\", rate = 50 }, or remove `stages` for the default of 100 requests"
    );
    let shown = error_with(
        BASE,
        &["load.stages=[]", "load.requests=1", "load.concurrency=1"],
    );
    assert!(shown.contains("the list of stages is empty"), "{shown}");
}

#[test]
fn a_count_bound_that_no_count_can_meet() {
    assert_eq!(
        error("name = \"x\"\n[expect]\nstatus = { \"503\" = { min_count = 5, max_count = 2 } }\n"),
        "\
error: expect.status.503.min_count: `min_count` (5) is above `max_count` (2)
 --> scenario.toml:3:34
  |
3 | status = { \"503\" = { min_count = 5, max_count = 2 } }
  |                                  ^ empty range
  |
  = help: no count can meet both bounds: lower `min_count` or raise `max_count`"
    );
    let shown = error(
        "name = \"x\"\n[expect]\nstatus = { \"5xx\" = { min_share = 0.5, max_share = 0.2 } }\n",
    );
    assert!(
        shown.starts_with(
            "error: expect.status.5xx.min_share: `min_share` (0.5) is above `max_share` (0.2)\n"
        ),
        "{shown}"
    );
}

#[test]
fn a_body_on_a_status_that_has_none() {
    assert_eq!(
        error("name = \"x\"\n\n[[faults]]\nkind = \"error\"\nstatus = 204\nbody = \"gone\"\n"),
        "\
error: faults[0].body: a 204 response has no body
 --> scenario.toml:6:8
  |
6 | body = \"gone\"
  |        ^^^^^^ never sent
  |
  = help: remove `body`, or use a status that carries one, such as 200 or 503"
    );
    let shown =
        error("name = \"x\"\n\n[[upstream.routes]]\npath = \"/x\"\nstatus = 304\nbody = \"old\"\n");
    assert!(
        shown.starts_with("error: upstream.routes[0].body: a 304 response has no body\n"),
        "{shown}"
    );
    // Without a body, or with an empty one, they are fine.
    parse("name = \"x\"\n\n[[upstream.routes]]\npath = \"/x\"\nstatus = 204\nbody = \"\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn an_informational_status_cannot_end_a_response() {
    assert_eq!(
        error("name = \"x\"\n\n[[upstream.routes]]\npath = \"/x\"\nstatus = 101\n"),
        "\
error: upstream.routes[0].status: 101 is an informational status, which cannot end a response
 --> scenario.toml:5:10
  |
5 | status = 101
  |          ^^^ not a final status
  |
  = help: use a status from 200 to 599"
    );
    for text in [
        "name = \"x\"\nfaults = [\"error:100\"]\n",
        "name = \"x\"\n[[faults]]\nkind = \"status\"\nstatus = 199\n",
    ] {
        let shown = error(text);
        assert!(shown.contains("is an informational status"), "{shown}");
    }
}

// ---- headers the servers manage ----

#[test]
fn framing_headers_in_an_error_rule_are_refused_at_the_name() {
    assert_eq!(
        error(
            "name = \"x\"\n\n[[faults]]\nkind = \"error\"\nstatus = 503\nbody = \"0123456789\"\nheaders = { content-length = \"5\" }\n"
        ),
        "\
error: faults[0].headers.content-length: `content-length` cannot be set: it frames the message, which the server does from the body; another value would cut the body short or corrupt the connection
 --> scenario.toml:7:13
  |
7 | headers = { content-length = \"5\" }
  |             ^^^^^^^^^^^^^^ framing header
  |
  = help: remove it: TraceForge's servers and load generator set these headers themselves"
    );
}

#[test]
fn hop_by_hop_headers_are_refused_wherever_traceforge_sends_headers() {
    assert_eq!(
        error("name = \"x\"\n[proxy]\nadd_response_headers = { \"Connection\" = \"close\", \"x-ok\" = \"1\" }\n"),
        "\
error: proxy.add_response_headers.Connection: `connection` cannot be set: it is a hop-by-hop header, which describes one connection and is managed by the server
 --> scenario.toml:3:26
  |
3 | add_response_headers = { \"Connection\" = \"close\", \"x-ok\" = \"1\" }
  |                          ^^^^^^^^^^^^ hop-by-hop header
  |
  = help: remove it: TraceForge's servers and load generator set these headers themselves"
    );
    for (text, expected) in [
        (
            "name = \"x\"\n[proxy]\nadd_response_headers = { content-length = \"5\" }\n",
            "error: proxy.add_response_headers.content-length: `content-length` cannot be set",
        ),
        (
            "name = \"x\"\n[[upstream.routes]]\npath = \"/r\"\nheaders = { \"Transfer-Encoding\" = \"chunked\" }\n",
            "error: upstream.routes[0].headers.Transfer-Encoding: `transfer-encoding` cannot be set",
        ),
        (
            "name = \"x\"\n[load]\ntargets = [{ path = \"/a\", headers = { te = \"trailers\" } }]\n",
            "error: load.targets[0].headers.te: `te` cannot be set",
        ),
        (
            "name = \"x\"\n[[faults]]\nkind = \"headers\"\ntarget = \"response\"\nadd = { upgrade = \"h2c\" }\n",
            "error: faults[0].add.upgrade: `upgrade` cannot be set",
        ),
        (
            "name = \"x\"\n[[faults]]\nkind = \"headers\"\ntarget = \"request\"\nremove = [\"keep-alive\"]\n",
            "error: faults[0].remove[0]: `keep-alive` cannot be set",
        ),
    ] {
        let shown = error(text);
        assert!(shown.starts_with(expected), "{text}\n{shown}");
        assert_eq!(shown.matches("error: ").count(), 1, "{shown}");
    }
    // Matching on them is fine: it sends nothing.
    parse("name = \"x\"\n[[faults]]\nkind = \"drop\"\nmatch = { headers = { transfer-encoding = \"*\" } }\n")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_target_host_header_is_refused_with_the_way_to_send_one() {
    assert_eq!(
        error("name = \"x\"\n[load]\ntargets = [{ path = \"/a\", headers = { Host = \"example.com\" } }]\n"),
        "\
error: load.targets[0].headers.Host: `host` cannot be set here: the proxy sends the upstream's own name in Host
 --> scenario.toml:3:39
  |
3 | targets = [{ path = \"/a\", headers = { Host = \"example.com\" } }]
  |                                       ^^^^ replaced by the proxy
  |
  = help: to send another Host upstream, use a `headers` fault with target = \"request\" and set = { host = \"...\" }"
    );
}

#[test]
fn the_caret_for_a_bad_header_name_is_on_the_name() {
    assert_eq!(
        error(
            "name = \"x\"\n[[faults]]\nkind = \"drop\"\nmatch = { headers = { \"x canary\" = \"*\" } }\n"
        ),
        "\
error: faults[0].match.headers.x canary: `x canary` is not a valid header name
 --> scenario.toml:4:23
  |
4 | match = { headers = { \"x canary\" = \"*\" } }
  |                       ^^^^^^^^^^ invalid header name
  |
  = help: header names are letters, digits and `-`"
    );
    // A bad value is still pointed at the value.
    let shown = error("name = \"x\"\n[proxy]\nadd_response_headers = { x-a = \"line\\nbreak\" }\n");
    assert!(shown.contains(" --> scenario.toml:3:32\n"), "{shown}");
}

// ---- upstream URLs ----

#[test]
fn an_upstream_url_with_credentials_is_refused_without_showing_them() {
    let shown = error("name = \"x\"\n[upstream]\nurl = \"http://admin:hunter2@db:8080\"\n");
    assert_eq!(
        shown,
        "\
error: upstream.url: `http://***@db:8080` carries a user name or password
 --> scenario.toml:3:7
  |
3 | url = \"http://*************@db:8080\"
  |       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ credentials in the URL
  |
  = help: remove the part before `@`: TraceForge does not send credentials from a URL, and they would end up in the Host header and in logs"
    );
    // Nor through an override, whose text is the origin and the snippet.
    let shown = error_with(BASE, &["upstream.url=http://admin:hunter2@db:8080"]);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains(" --> --set upstream.url=http://*************@db:8080:1:14\n"),
        "{shown}"
    );
    // Nor when the file does not even parse on that line.
    let shown = error("name = \"x\"\n[upstream]\nurl = \"http://admin:hunter2@db:8080\n");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn an_upstream_url_with_an_invalid_port_is_refused() {
    assert_eq!(
        error("name = \"x\"\n[upstream]\nurl = \"http://db:99999\"\n"),
        "\
error: upstream.url: `http://db:99999` has an invalid port `99999`
 --> scenario.toml:3:7
  |
3 | url = \"http://db:99999\"
  |       ^^^^^^^^^^^^^^^^^ invalid port
  |
  = help: ports run from 1 to 65535"
    );
}

// ---- messages in plain words ----

#[test]
fn a_negative_delay_says_it_is_negative() {
    assert_eq!(
        error("name = \"x\"\n\n[[faults]]\nkind = \"delay\"\ndelay = \"-1s\"\n"),
        "\
error: faults[0].delay: `-1s` is negative; a delay is zero or more, like \"100ms\" or \"100ms..500ms\"
 --> scenario.toml:5:9
  |
5 | delay = \"-1s\"
  |         ^^^^^ here
  |"
    );
    let shown = error("name = \"x\"\n[load]\ntimeout = \"-5s\"\n");
    assert!(
        shown.starts_with("error: load.timeout: `-5s` is negative; a duration is zero or more"),
        "{shown}"
    );
}
