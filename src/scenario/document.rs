//! The scenario text as a span-preserving document: TOML parsed with every value's position,
//! `--set KEY=VALUE` overrides applied in place (each with a region of its own past the end of the
//! file, so an error in an override points into the override), then deserialized and validated.
//! Problems found at paths become located [`Diagnostic`]s, with serde's words made plain and
//! "did you mean" for unknown names.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Scenario, ScenarioError, ScenarioSpec, validate};
use crate::spec::check::{Seg, display_path};
use crate::spec::error::{self, Diagnostic};
use crate::spec::url;

/// One `--set KEY=VALUE` override. The value is read as a TOML value (`64`, `true`, `"x"`,
/// `[1, 2]`); anything that is not valid TOML is taken as a plain string (`run.clock=virtual`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not KEY=VALUE (for example load.concurrency=64)"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(format!(
                "`{key}` is not a key path; write it like load.concurrency or faults.0.probability"
            ));
        }
        Ok(Override {
            key: key.to_string(),
            value: value.trim().to_string(),
        })
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// How deep arrays and inline tables may nest. Real scenarios use three or four levels; the cap
/// keeps hostile input from exhausting the stack.
const MAX_NESTING: usize = 64;

/// Parses scenario text, applies the overrides and validates the result.
pub(super) fn parse(
    origin: &str,
    text: &str,
    overrides: &[Override],
) -> Result<Scenario, ScenarioError> {
    // Errors show lines of the file: never with the credentials of a URL in them.
    let source: Arc<str> = url::mask_credentials(text).into();
    let file_diag = |span: Option<Range<usize>>,
                     message: String,
                     label: &str,
                     help: Option<String>| Diagnostic {
        origin: origin.to_string(),
        source: source.clone(),
        span,
        message,
        label: label.to_string(),
        help,
        note: None,
    };
    if let Some(at) = nesting_too_deep(text) {
        return Err(ScenarioError::Invalid(vec![file_diag(
            Some(at..at + 1),
            format!("arrays or tables nest deeper than {MAX_NESTING} levels"),
            "too deep",
            Some("a scenario needs only a few levels of nesting".into()),
        )]));
    }
    let root = DeTable::parse(text).map_err(|e| {
        let diagnostic = if e.message().starts_with("recursion limit") {
            // The parser's own guard (dotted keys such as `a.b.c...` are not counted by the scan above).
            file_diag(
                e.span(),
                "keys, tables or arrays nest too deeply".into(),
                "too deep",
                Some("a scenario needs only a few levels of nesting".into()),
            )
        } else {
            file_diag(e.span(), first_line(e.message()), "here", None)
        };
        ScenarioError::Invalid(vec![diagnostic])
    })?;

    // Each override gets a region past the end of the file text laid out exactly like its
    // `KEY=VALUE` text, so any span beyond `text.len()` belongs to one override and maps back to
    // the key part or the value it came from.
    let regions: Vec<Range<usize>> = {
        let mut base = text.len() + 1;
        overrides
            .iter()
            .map(|o| {
                let range = base..base + o.to_string().len();
                base = range.end + 1;
                range
            })
            .collect()
    };
    let sources = Sources {
        origin,
        source: source.clone(),
        overrides,
        regions: regions.clone(),
    };
    let mut root = root;
    for (region, o) in regions.iter().zip(overrides) {
        let value_start = region.start + o.key.len() + 1;
        let value = match DeValue::parse(&o.value) {
            Ok(v) => shift(v, value_start),
            // Not TOML: take the text as a string, so `--set run.clock=virtual` needs no quotes.
            Err(_) => Spanned::new(
                value_start..region.end,
                DeValue::String(o.value.as_str().into()),
            ),
        };
        if let Err((message, span)) = set_path(&mut root, &o.key, value, region.start) {
            return Err(ScenarioError::Invalid(vec![sources.diagnostic(
                Some(span),
                message,
                "cannot set this",
                None,
            )]));
        }
    }

    let document = root.clone();
    let spec = ScenarioSpec::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| ScenarioError::Invalid(vec![sources.toml_error(&e, &document)]))?;
    let problems = validate::check(&spec);
    match problems {
        Ok(scenario) => Ok(scenario),
        Err(problems) => Err(ScenarioError::Invalid(
            problems
                .into_iter()
                .map(|p| {
                    let span = locate(&document, &p.path, p.at_key);
                    let message = if p.path.is_empty() {
                        p.message
                    } else {
                        format!("{}: {}", display_path(&p.path), p.message)
                    };
                    sources.diagnostic(span, message, &p.label, p.help)
                })
                .collect(),
        )),
    }
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .trim()
        .to_string()
}

/// The texts spans can point into: the file, or one of the overrides.
struct Sources<'a> {
    origin: &'a str,
    source: Arc<str>,
    overrides: &'a [Override],
    regions: Vec<Range<usize>>,
}

impl Sources<'_> {
    fn diagnostic(
        &self,
        span: Option<Range<usize>>,
        message: String,
        label: &str,
        help: Option<String>,
    ) -> Diagnostic {
        let region = span.as_ref().and_then(|s| {
            self.regions
                .iter()
                .position(|r| s.start >= r.start && s.start <= r.end)
        });
        match (region, span) {
            (Some(i), Some(span)) => {
                let text = url::mask_credentials(&self.overrides[i].to_string()).into_owned();
                let base = self.regions[i].start;
                let start = (span.start - base).min(text.len());
                let end = span.end.saturating_sub(base).clamp(start, text.len());
                Diagnostic {
                    origin: format!("--set {text}"),
                    source: text.into(),
                    span: Some(start..end),
                    message,
                    label: label.to_string(),
                    help,
                    // The snippet shows only the override: say which scenario it was applied to.
                    note: Some(format!("the override was applied to {}", self.origin)),
                }
            }
            (_, span) => Diagnostic {
                origin: self.origin.to_string(),
                source: self.source.clone(),
                span,
                message,
                label: label.to_string(),
                help,
                note: None,
            },
        }
    }

    /// Turns a deserialization error into a diagnostic, adding "did you mean" for unknown names.
    fn toml_error(&self, e: &toml::de::Error, document: &Spanned<DeTable<'_>>) -> Diagnostic {
        let message = first_line(e.message());
        // Name where the problem is (`load`, `faults[1].kind`), found from the error's position.
        let mut path = e
            .span()
            .map(|s| path_at(document, s.start))
            .unwrap_or_default();
        let prefix = |path: &[Seg]| {
            if path.is_empty() {
                String::new()
            } else {
                format!("{}: ", display_path(path))
            }
        };
        if let Some(unknown) = error::parse_unknown(&message) {
            if unknown.what == "key" {
                // The error points at the unknown key itself; the place is the table holding it.
                path.pop();
            }
            let help = unknown.help();
            let label = if unknown.what == "key" {
                "unknown key"
            } else {
                "unknown value"
            };
            return self.diagnostic(
                e.span(),
                format!(
                    "{}unknown {} `{}`",
                    prefix(&path),
                    unknown.what,
                    unknown.name
                ),
                label,
                help,
            );
        }
        if let Some(field) = missing_field(&message) {
            let help = required_field_help(field);
            // The root table's span is the whole file: a caret at its first character would
            // blame whatever happens to be written there, so name the file instead.
            if e.span().is_none_or(|s| s == document.span()) {
                return self.diagnostic(None, message, "missing", help);
            }
            return self.diagnostic(
                e.span(),
                format!("{}{message}", prefix(&path)),
                "missing a field",
                help,
            );
        }
        self.diagnostic(
            e.span(),
            format!("{}{}", prefix(&path), plain_words(&message)),
            "here",
            None,
        )
    }
}

/// serde's "invalid type: integer `5`, expected u32" in the words of the file:
/// "expected a whole number, found 5". Other messages are returned as they are.
fn plain_words(message: &str) -> String {
    if message == "wanted string or table" {
        // toml's word for an enum given a number or a list: the names are quoted strings.
        return "expected a name in quotes, found another kind of value".into();
    }
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_string();
    };
    let number = |text: &str| {
        text.strip_prefix("integer `")
            .and_then(|t| t.split_once('`'))
            .map(|(n, _)| n.to_string())
    };
    let integer = number(found);
    let found = if let Some(n) = &integer {
        n.clone()
    } else if let Some(x) = found
        .strip_prefix("floating point `")
        .or_else(|| found.strip_prefix("boolean `"))
        .and_then(|t| t.strip_suffix('`'))
    {
        x.to_string()
    } else if found.starts_with("string ") {
        format!("the {found}")
    } else {
        match found {
            "sequence" => "a list".to_string(),
            "map" => "a table".to_string(),
            other => other.to_string(),
        }
    };
    let unsigned_max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    let expected = match (expected, unsigned_max) {
        // The number is out of the type's range: say the range.
        (_, Some(max)) if integer.is_some() => format!("a whole number from 0 to {max}"),
        (_, Some(_)) | ("i8" | "i16" | "i32" | "i64", _) => "a whole number".to_string(),
        ("f32" | "f64", _) => "a number".to_string(),
        ("a boolean", _) => "true or false".to_string(),
        ("a sequence", _) => "a list".to_string(),
        ("a map", _) => "a table".to_string(),
        (other, _) if other.starts_with("struct ") => "a table".to_string(),
        (other, _) => other.to_string(),
    };
    format!("expected {expected}, found {found}")
}

/// The field name in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(name, _)| name)
}

/// What to write for a required field, so the fix can be copied.
fn required_field_help(field: &str) -> Option<String> {
    let example = match field {
        "name" => "add a line like `name = \"flaky-api\"`; the name also names the golden file",
        "kind" => "add `kind = \"delay\"`, `kind = \"error\"` or `kind = \"drop\"`",
        "path" => "add a path such as `path = \"/api/resource\"`",
        _ => return None,
    };
    Some(example.to_string())
}

/// The span of the value at `path`, or of the deepest part of it that exists in the document
/// (a missing key is reported at its table). With `at_key`, the span of the key `path` ends with,
/// when it is there.
fn locate(root: &Spanned<DeTable<'_>>, path: &[Seg], at_key: bool) -> Option<Range<usize>> {
    let mut span = root.span();
    let mut key_span = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut table = Some(root.get_ref());
    for (i, seg) in path.iter().enumerate() {
        let next = match (seg, table, current) {
            (Seg::Key(k), Some(t), _) => t.get_key_value(k.as_str()).map(|(key, value)| {
                if i + 1 == path.len() {
                    key_span = Some(key.span());
                }
                value
            }),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        current = Some(next.get_ref());
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    if at_key {
        if let Some(key) = key_span {
            return Some(key);
        }
    }
    // The root's span is the whole file; pointing at it says nothing.
    (span != root.span()).then_some(span)
}

/// Moves every span in `value` by `by` bytes (override values are parsed on their own).
fn shift<'i>(value: Spanned<DeValue<'i>>, by: usize) -> Spanned<DeValue<'i>> {
    let span = value.span();
    let inner = match value.into_inner() {
        DeValue::Array(items) => {
            let mut out = toml::de::DeArray::new();
            for item in items.iter() {
                out.push(shift(item.clone(), by));
            }
            DeValue::Array(out)
        }
        DeValue::Table(table) => {
            let mut out = DeTable::new();
            for (k, v) in table.iter() {
                let ks = k.span();
                out.insert(
                    Spanned::new(ks.start + by..ks.end + by, k.get_ref().clone()),
                    shift(v.clone(), by),
                );
            }
            DeValue::Table(out)
        }
        other => other,
    };
    Spanned::new(span.start + by..span.end + by, inner)
}

/// The path of the key or list item whose text contains byte `offset`, searched depth-first
/// (a `[table]`'s span covers only its header, so containment of parents cannot be relied on).
fn path_at(root: &Spanned<DeTable<'_>>, offset: usize) -> Vec<Seg> {
    fn in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<Seg>) -> bool {
        match value.get_ref() {
            DeValue::Table(t) => in_table(t, offset, path),
            DeValue::Array(a) => a.iter().enumerate().any(|(i, v)| {
                path.push(Seg::Index(i));
                if in_value(v, offset, path) || v.span().contains(&offset) {
                    return true;
                }
                path.pop();
                false
            }),
            _ => false,
        }
    }
    fn in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
        table.iter().any(|(k, v)| {
            path.push(Seg::Key(k.get_ref().to_string()));
            if k.span().contains(&offset) || in_value(v, offset, path) || v.span().contains(&offset)
            {
                return true;
            }
            path.pop();
            false
        })
    }
    let mut path = Vec::new();
    in_table(root.get_ref(), offset, &mut path);
    path
}

/// Sets `key` (dotted; numeric parts index lists) in the document, creating tables as needed.
/// `base` is where the override's `KEY=VALUE` region starts: keys it creates are placed at their
/// part of the key, and an error comes with the span of the part that could not be set.
fn set_path<'i>(
    root: &mut Spanned<DeTable<'i>>,
    key: &str,
    value: Spanned<DeValue<'i>>,
    base: usize,
) -> Result<(), (String, Range<usize>)> {
    let mut parts = Vec::new();
    let mut at = base;
    for part in key.split('.') {
        parts.push((part, at..at + part.len()));
        at += part.len() + 1;
    }
    let mut node = DeValue::Table(std::mem::take(root.get_mut()));
    let result = set_in(&mut node, &parts, value, key);
    if let DeValue::Table(t) = node {
        *root.get_mut() = t;
    }
    result
}

fn set_in<'i>(
    node: &mut DeValue<'i>,
    parts: &[(&str, Range<usize>)],
    value: Spanned<DeValue<'i>>,
    key: &str,
) -> Result<(), (String, Range<usize>)> {
    let Some(((part, span), rest)) = parts.split_first() else {
        return Err(("empty key".into(), value.span()));
    };
    let fail = |message: String| Err((message, span.clone()));
    match node {
        DeValue::Table(table) => {
            if rest.is_empty() {
                table.remove(*part);
                table.insert(Spanned::new(span.clone(), part.to_string().into()), value);
                return Ok(());
            }
            if table.get(*part).is_none() {
                table.insert(
                    Spanned::new(span.clone(), part.to_string().into()),
                    Spanned::new(span.clone(), DeValue::Table(DeTable::new())),
                );
            }
            match table.get_mut(*part) {
                Some(child) => set_in(child.get_mut(), rest, value, key),
                None => fail(format!("`{key}` cannot be created")),
            }
        }
        DeValue::Array(array) => {
            let Ok(index) = part.parse::<usize>() else {
                return fail(format!(
                    "in `{key}`, `{part}` should be an index into a list (0, 1, ...)"
                ));
            };
            let len = array.len();
            let Some(child) = array.get_mut(index) else {
                return fail(format!(
                    "in `{key}`, index {index} is past the end of a list of {len}"
                ));
            };
            if rest.is_empty() {
                *child = value;
                Ok(())
            } else {
                set_in(child.get_mut(), rest, value, key)
            }
        }
        _ => fail(format!(
            "`{key}` goes inside a plain value; only tables and lists can hold `{part}`"
        )),
    }
}

/// Finds the first place where `[` or `{` nest deeper than [`MAX_NESTING`], outside strings and
/// comments. A cheap scan that spares the parser hostile input.
fn nesting_too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') => {
                let triple = bytes.get(i..i + 3) == Some(&[quote, quote, quote][..]);
                i += if triple { 3 } else { 1 };
                while i < bytes.len() {
                    if quote == b'"' && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if bytes.get(i..i + 3) == Some(&[quote, quote, quote][..]) {
                            i += 2;
                            break;
                        }
                    } else if bytes[i] == quote || bytes[i] == b'\n' {
                        break;
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn serde_words_become_plain_words() {
        for (serde, plain) in [
            (
                "invalid type: string \"lots\", expected u32",
                "expected a whole number, found the string \"lots\"",
            ),
            (
                "invalid value: integer `-1`, expected u64",
                "expected a whole number from 0 to 18446744073709551615, found -1",
            ),
            (
                "invalid type: integer `99999999999999999999` as i128, expected u64",
                "expected a whole number from 0 to 18446744073709551615, found 99999999999999999999",
            ),
            (
                "invalid value: integer `5000000000`, expected u32",
                "expected a whole number from 0 to 4294967295, found 5000000000",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "expected a whole number, found 1.5",
            ),
            (
                "invalid type: string \"x\", expected f64",
                "expected a number, found the string \"x\"",
            ),
            (
                "invalid type: integer `1`, expected a boolean",
                "expected true or false, found 1",
            ),
            (
                "invalid type: integer `5`, expected struct LoadSpec",
                "expected a table, found 5",
            ),
            (
                "invalid type: map, expected a sequence",
                "expected a list, found a table",
            ),
            (
                "invalid type: boolean `true`, expected a duration string with a unit, like \"250ms\" or \"1.5s\"",
                "expected a duration string with a unit, like \"250ms\" or \"1.5s\", found true",
            ),
            ("missing field `name`", "missing field `name`"),
        ] {
            assert_eq!(plain_words(serde), plain, "{serde}");
        }
    }
}
