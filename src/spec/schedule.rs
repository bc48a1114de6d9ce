//! Fault fields that change over a run: a `probability` or a `delay` that ramps
//! (`{ from = 0.0, to = 0.8, over = "10m" }`), and `bursts` (`{ on = "30s", off = "2m" }` or
//! `{ mean_on = 20, mean_off = 80 }`). Lengths are [`Extent`]s: an integer counts requests (by
//! request index), a duration string is time since the start of the run. The fault compiler checks
//! them; `fault::schedule` evaluates them.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::{DelaySpec, DurationSpec};
use super::extent::Extent;

/// A value that goes in a straight line from `from` (at the start of the run, or request 0) to
/// `to` (at `over`), then stays at `to`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RampSpec<T> {
    pub from: T,
    pub to: T,
    pub over: Extent,
}

/// A rule's `probability`: a number from 0 to 1, or a ramp
/// `{ from = 0.0, to = 0.8, over = "10m" }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ProbabilitySpec {
    Fixed(f64),
    Ramp(RampSpec<f64>),
}

impl ProbabilitySpec {
    /// The number, when it is one.
    pub fn fixed(self) -> Option<f64> {
        match self {
            ProbabilitySpec::Fixed(p) => Some(p),
            ProbabilitySpec::Ramp(_) => None,
        }
    }
}

impl From<f64> for ProbabilitySpec {
    fn from(p: f64) -> Self {
        ProbabilitySpec::Fixed(p)
    }
}

impl<'de> Deserialize<'de> for ProbabilitySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ProbabilitySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a probability from 0 to 1, or a ramp such as { from = 0.0, to = 0.8, over = \"10m\" }",
                )
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ProbabilitySpec::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ProbabilitySpec::Fixed(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ProbabilitySpec::Fixed(v as f64))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                // Delegating keeps the TOML deserializer's positions for errors inside the table.
                RampSpec::<f64>::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ProbabilitySpec::Ramp)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for ProbabilitySpec {
    fn schema_name() -> Cow<'static, str> {
        "Probability".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let extent = generator.subschema_for::<Extent>();
        json_schema!({
            "description": "A probability from 0 to 1, or a ramp { from, to, over } that goes in a straight line from `from` to `to` over `over` (requests as an integer, or a time such as \"10m\"), then stays at `to`.",
            "anyOf": [
                { "type": "number", "minimum": 0.0, "maximum": 1.0 },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["from", "to", "over"],
                    "properties": {
                        "from": { "type": "number", "minimum": 0.0, "maximum": 1.0 },
                        "to": { "type": "number", "minimum": 0.0, "maximum": 1.0 },
                        "over": extent
                    },
                    "examples": [{ "from": 0.0, "to": 0.8, "over": "10m" }]
                }
            ]
        })
    }
}

/// A rule's `delay`: `"100ms"`, a range `"100ms..500ms"`, or a ramp
/// `{ from = "10ms", to = "500ms", over = 1000 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DelayField {
    Plain(DelaySpec),
    Ramp(RampSpec<DurationSpec>),
}

impl DelayField {
    /// The fixed value or range, when it is one.
    pub fn plain(self) -> Option<DelaySpec> {
        match self {
            DelayField::Plain(d) => Some(d),
            DelayField::Ramp(_) => None,
        }
    }
}

impl From<DelaySpec> for DelayField {
    fn from(d: DelaySpec) -> Self {
        DelayField::Plain(d)
    }
}

impl<'de> Deserialize<'de> for DelayField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DelayField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a delay like \"100ms\", a range like \"100ms..500ms\", or a ramp such as { from = \"10ms\", to = \"500ms\", over = 1000 }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                DelaySpec::parse(v)
                    .map(DelayField::Plain)
                    .map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "delays need a unit: write \"{v}ms\", not {v}"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(v.min(i64::MAX as u64) as i64)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RampSpec::<DurationSpec>::deserialize(serde::de::value::MapAccessDeserializer::new(
                    map,
                ))
                .map(DelayField::Ramp)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for DelayField {
    fn schema_name() -> Cow<'static, str> {
        "DelayOrRamp".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let delay = generator.subschema_for::<DelaySpec>();
        let duration = generator.subschema_for::<DurationSpec>();
        let extent = generator.subschema_for::<Extent>();
        json_schema!({
            "description": "A fixed delay (\"100ms\"), a range (\"100ms..500ms\") each request draws from, or a ramp { from, to, over } that goes in a straight line from `from` to `to` over `over` (requests as an integer, or a time such as \"10m\"), then stays at `to`.",
            "anyOf": [
                delay,
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["from", "to", "over"],
                    "properties": {
                        "from": duration.clone(),
                        "to": duration,
                        "over": extent
                    },
                    "examples": [{ "from": "10ms", "to": "500ms", "over": 1000 }]
                }
            ]
        })
    }
}

/// When a rule may fire: only while "on". Fixed (`on`, `off`: on first, then off, repeating from
/// the start of the run or request 0) or a seeded two-state Markov chain (`mean_on`, `mean_off`:
/// each on and off period drawn with that mean). Lengths are requests (an integer) or times (a
/// duration string), all on the same axis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BurstsSpec {
    /// How long each "on" period lasts, such as `"30s"` or `20` (requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Extent>,
    /// How long each "off" period lasts, such as `"2m"` or `80` (requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<Extent>,
    /// The mean length of the "on" periods of a seeded Markov chain (exponential in time,
    /// geometric in requests, at least 1 request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_on: Option<Extent>,
    /// The mean length of the "off" periods of a seeded Markov chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_off: Option<Extent>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Deserialize)]
    struct Doc {
        p: Option<ProbabilitySpec>,
        d: Option<DelayField>,
        b: Option<BurstsSpec>,
    }

    fn parse(text: &str) -> Result<Doc, String> {
        toml::from_str::<Doc>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn numbers_and_ramps() {
        let doc = parse("p = 0.5\nd = \"100ms..200ms\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(doc.p, Some(ProbabilitySpec::Fixed(0.5)));
        assert_eq!(
            doc.d.and_then(DelayField::plain),
            Some(DelaySpec::Range(
                Duration::from_millis(100),
                Duration::from_millis(200)
            ))
        );
        let doc = parse("p = 1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(doc.p, Some(ProbabilitySpec::Fixed(1.0)));
        let doc = parse(
            "p = { from = 0.0, to = 0.8, over = \"10m\" }\nd = { from = \"10ms\", to = \"500ms\", over = 1000 }",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            doc.p,
            Some(ProbabilitySpec::Ramp(RampSpec {
                from: 0.0,
                to: 0.8,
                over: Extent::Time(Duration::from_secs(600))
            }))
        );
        assert_eq!(
            doc.d,
            Some(DelayField::Ramp(RampSpec {
                from: DurationSpec(Duration::from_millis(10)),
                to: DurationSpec(Duration::from_millis(500)),
                over: Extent::Requests(1000)
            }))
        );
        assert!(parse("p = { from = 0.0, to = 0.8 }").is_err_and(|e| e.contains("over")));
        assert!(
            parse("p = { from = 0.0, to = 0.8, over = 5, start = 1 }")
                .is_err_and(|e| e.contains("start"))
        );
        assert!(parse("d = 100").is_err_and(|e| e.contains("unit")));
        let doc = parse("b = { on = \"30s\", off = \"2m\" }").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            doc.b.and_then(|b| b.off),
            Some(Extent::Time(Duration::from_secs(120)))
        );
    }
}
