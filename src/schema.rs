//! The JSON schema of the scenario format, generated from the `*Spec` types. Draft-07, the dialect
//! both Taplo (Even Better TOML) and Tombi understand. `traceforge.schema.json` at the repository
//! root is this output, checked by a test.

use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde_json::Value;

use crate::scenario::ScenarioSpec;

/// The schema as pretty-printed JSON with a trailing newline.
pub fn json() -> String {
    let schema = SchemaSettings::draft07()
        .with_transform(RecursiveTransform(no_null))
        .into_generator()
        .into_root_schema_for::<ScenarioSpec>();
    let mut text =
        serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// TOML has no null: an optional key is simply left out, so `"type": ["string", "null"]` becomes
/// `"type": "string"` and editors do not offer a value that cannot be written.
fn no_null(schema: &mut Schema) {
    if let Some(Value::Array(options)) = schema.get_mut("anyOf") {
        options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
        if options.len() == 1 {
            // A lone `$ref` keeps its sibling description only inside `allOf` in draft-07.
            if let Some(options) = schema.remove("anyOf") {
                schema.insert("allOf".to_string(), options);
            }
        }
    }
    let Some(Value::Array(types)) = schema.get_mut("type") else {
        return;
    };
    types.retain(|t| t != "null");
    if let [only] = types.as_slice() {
        let only = only.clone();
        schema.insert("type".to_string(), only);
    }
}
