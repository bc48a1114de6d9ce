//! A point or a length on one of a run's two axes: requests (the load generator's request index)
//! or time since the start of the run. Ramps (`over`), bursts (`on`, `off`), quota windows and
//! phases (`from`, `until`) are written with it: an integer counts requests, a string with a unit
//! is a time. An axis of requests is deterministic at any concurrency and on any clock; an axis of
//! time is deterministic on the virtual clock.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::parse_duration;

/// `100` (requests, by index) or `"30s"` (time since the start of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extent {
    /// A count of requests: a point is a request index, a length is a number of indices.
    Requests(u64),
    /// A time since the start of the run, or a length of time.
    Time(Duration),
}

/// Which axis an [`Extent`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Axis {
    Requests,
    Time,
}

impl Axis {
    /// As the documentation and errors say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Axis::Requests => "requests",
            Axis::Time => "time",
        }
    }
}

impl Extent {
    pub fn axis(self) -> Axis {
        match self {
            Extent::Requests(_) => Axis::Requests,
            Extent::Time(_) => Axis::Time,
        }
    }

    /// Whether this is zero requests or zero time.
    pub fn is_zero(self) -> bool {
        match self {
            Extent::Requests(n) => n == 0,
            Extent::Time(d) => d.is_zero(),
        }
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extent::Requests(n) => write!(f, "{n} requests"),
            Extent::Time(d) => f.write_str(&super::duration::format_duration(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for Extent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Extent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a number of requests such as 100, or a time with a unit such as \"30s\"",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Extent::Requests(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v).map(Extent::Requests).map_err(|_| {
                    E::custom(format!(
                        "{v} is below zero; write a number of requests such as 100, or a time such as \"30s\""
                    ))
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "{v} is neither a whole number of requests nor a time; write 100 (requests) or \"{v}s\" (time)"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(Extent::Time).map_err(|e| {
                    E::custom(format!(
                        "{e} (or write a whole number, without quotes, to count requests)"
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for Extent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Extent::Requests(n) => serializer.serialize_u64(*n),
            Extent::Time(d) => serializer.serialize_str(&super::duration::format_duration(*d)),
        }
    }
}

impl JsonSchema for Extent {
    fn schema_name() -> Cow<'static, str> {
        "Extent".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let time = generator.subschema_for::<super::duration::DurationSpec>();
        json_schema!({
            "description": "A whole number counts requests (by the load generator's request index: deterministic at any concurrency); a string with a unit is a time since the start of the run (deterministic on the virtual clock).",
            "anyOf": [
                { "type": "integer", "minimum": 0, "examples": [100] },
                time
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        x: Extent,
    }

    fn parse(text: &str) -> Result<Extent, String> {
        toml::from_str::<Doc>(&format!("x = {text}"))
            .map(|d| d.x)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn integers_count_requests_and_strings_are_times() {
        assert_eq!(parse("100"), Ok(Extent::Requests(100)));
        assert_eq!(parse("\"30s\""), Ok(Extent::Time(Duration::from_secs(30))));
        assert_eq!(parse("0").map(Extent::is_zero), Ok(true));
        assert!(parse("-1").is_err_and(|e| e.contains("below zero")));
        assert!(parse("1.5").is_err_and(|e| e.contains("\"1.5s\"")));
        assert!(parse("\"30\"").is_err_and(|e| e.contains("count requests")));
        let json = serde_json::to_string(&Extent::Time(Duration::from_millis(1500)));
        assert_eq!(json.ok().as_deref(), Some("\"1500ms\""));
        assert_eq!(Extent::Requests(7).to_string(), "7 requests");
    }
}
