//! Durations as people write them in scenario files (`"250ms"`, `"1.5s"`, `"2m"`), and delay ranges
//! (`"100ms..500ms"`, or `"100ms-500ms"` as in the compact fault grammar).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration a scenario may name: a week. Longer values are almost certainly typos, and
/// the cap keeps every later addition of durations far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

const UNITS: &str = "ns, us, ms, s, m, h";

/// Parses `"<number><unit>"`: a non-negative decimal and one of ns, us (or µs), ms, s, m (or min), h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("the duration is empty; write it like \"250ms\" or \"1.5s\"".into());
    }
    if t.starts_with('-') {
        return Err(format!(
            "`{t}` is negative; a duration is zero or more, like \"250ms\" or \"1.5s\""
        ));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("`{t}` has no unit; write it like \"250ms\" or \"1.5s\" (units: {UNITS})")
        })?;
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "`{t}` is not a duration; write a number and a unit, like \"250ms\" or \"1.5s\""
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` in `{t}` is not a number"))?;
    let seconds_per_unit = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`; valid units: {UNITS}"
            ));
        }
    };
    // Compare in seconds first: a huge value overflows `Duration` before it could be compared,
    // and "longer than the maximum" is the message that helps.
    if value * seconds_per_unit > MAX_DURATION.as_secs_f64() {
        return Err(format!("`{t}` is longer than the maximum of 7 days"));
    }
    // Round to whole nanoseconds the way a person expects: "0.1s" is exactly 100ms.
    let nanos = (value * seconds_per_unit * 1e9).round();
    Ok(Duration::from_nanos(nanos as u64))
}

/// Formats a duration in the largest unit that keeps it exact: `1.5s`, `250ms`, `2m`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0ms".to_string();
    }
    const UNITS: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    for (size, unit) in UNITS {
        if nanos % size == 0 {
            return format!("{}{unit}", nanos / size);
        }
    }
    // Not reachable: every value is a whole number of nanoseconds. Keep a readable fallback anyway.
    format!("{nanos}ns")
}

/// Formats a duration for people reading a report: milliseconds with up to three decimals.
pub fn format_millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 || ms.fract() == 0.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.3}ms")
    }
}

/// A duration written as a string with a unit, such as `"250ms"`, `"1.5s"` or `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"250ms\" or \"1.5s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(DurationSpec).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "durations need a unit: write \"{v}ms\" or \"{v}s\", not {v}"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(v.min(i64::MAX as u64) as i64)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "durations need a unit: write \"{v}s\", not {v}"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

const DURATION_PATTERN: &str = r"^\s*(0|[0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|min|h))\s*$";
const RANGE_PATTERN: &str = r"^\s*(0|[0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|min|h))\s*((\.\.|-)\s*[0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|min|h)\s*)?$";

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number and a unit (ns, us, ms, s, m, h), such as \"250ms\" or \"1.5s\".",
            "type": "string",
            "pattern": DURATION_PATTERN,
            "examples": ["250ms", "1.5s", "2m"]
        })
    }
}

/// A delay: one duration (`"100ms"`) or a range (`"100ms..500ms"`) from which each delayed request
/// draws its own value uniformly, seeded per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelaySpec {
    Fixed(Duration),
    Range(Duration, Duration),
}

impl DelaySpec {
    /// Parses `"100ms"`, `"100ms..500ms"` or `"100ms-500ms"`. Ordering is checked by validation, so
    /// the error can point at the scenario's line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        // A leading `-` is a sign, not the `100ms-500ms` range separator.
        if t.starts_with('-') {
            return Err(format!(
                "`{t}` is negative; a delay is zero or more, like \"100ms\" or \"100ms..500ms\""
            ));
        }
        let (lo, hi) = if let Some((lo, hi)) = t.split_once("..") {
            (lo, Some(hi))
        } else if let Some((lo, hi)) = t.split_once('-') {
            (lo, Some(hi))
        } else {
            (t, None)
        };
        if hi.is_some_and(|hi| hi.trim().is_empty()) {
            return Err(format!(
                "`{t}` is a range without its upper end; write it like \"100ms..500ms\""
            ));
        }
        let lo = parse_duration(lo)?;
        match hi {
            None => Ok(DelaySpec::Fixed(lo)),
            Some(hi) => Ok(DelaySpec::Range(lo, parse_duration(hi)?)),
        }
    }
}

impl fmt::Display for DelaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DelaySpec::Fixed(d) => f.write_str(&format_duration(*d)),
            DelaySpec::Range(lo, hi) => {
                write!(f, "{}..{}", format_duration(*lo), format_duration(*hi))
            }
        }
    }
}

impl<'de> Deserialize<'de> for DelaySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DelaySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a delay like \"100ms\" or a range like \"100ms..500ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                DelaySpec::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "delays need a unit: write \"{v}ms\", not {v}"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(v.min(i64::MAX as u64) as i64)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for DelaySpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl JsonSchema for DelaySpec {
    fn schema_name() -> Cow<'static, str> {
        "Delay".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A fixed delay (\"100ms\") or a range (\"100ms..500ms\") from which each delayed request draws its own value.",
            "type": "string",
            "pattern": RANGE_PATTERN,
            "examples": ["100ms", "100ms..500ms", "1s"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_decimals() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("15us"), Ok(Duration::from_micros(15)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse_duration("250").unwrap_err().contains("no unit"));
        assert!(parse_duration("ms").unwrap_err().contains("not a duration"));
        assert!(
            parse_duration("3 fortnights")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_duration("1.2.3s")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_duration("99999999999999999999h")
                .unwrap_err()
                .contains("maximum")
        );
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn formats_exactly() {
        for text in ["1500ms", "250ms", "2m", "1h", "15us", "7ns", "1s"] {
            let d = parse_duration(text).unwrap_or_default();
            let again = parse_duration(&format_duration(d)).unwrap_or_default();
            assert_eq!(d, again, "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn parses_delays() {
        let ms = Duration::from_millis;
        assert_eq!(DelaySpec::parse("100ms"), Ok(DelaySpec::Fixed(ms(100))));
        assert_eq!(
            DelaySpec::parse("100ms..500ms"),
            Ok(DelaySpec::Range(ms(100), ms(500)))
        );
        assert_eq!(
            DelaySpec::parse("100ms-500ms"),
            Ok(DelaySpec::Range(ms(100), ms(500)))
        );
        assert!(DelaySpec::parse("100ms..").is_err());
    }

    #[test]
    fn negative_and_empty_values_say_so() {
        assert_eq!(
            parse_duration("-1s"),
            Err("`-1s` is negative; a duration is zero or more, like \"250ms\" or \"1.5s\"".into())
        );
        assert_eq!(
            DelaySpec::parse("-1s"),
            Err(
                "`-1s` is negative; a delay is zero or more, like \"100ms\" or \"100ms..500ms\""
                    .into()
            )
        );
        assert_eq!(
            DelaySpec::parse("100ms-"),
            Err("`100ms-` is a range without its upper end; write it like \"100ms..500ms\"".into())
        );
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration(" ").unwrap_err().contains("empty"));
        for text in ["-1s", "100ms..-1s", "100ms--1s", "..", "-", "1s..2s..3s"] {
            let shown = DelaySpec::parse(text).unwrap_err();
            assert!(!shown.contains("``"), "{text}: {shown}");
        }
    }
}
