//! The JSON schema editors use: the committed file is what `traceforge schema` prints, it is
//! draft-07, and the shipped scenarios pass it (checked by the independent `jsonschema` crate) as
//! well as the parser.

use serde_json::Value;

use crate::support;

fn committed() -> String {
    let path = support::root().join("traceforge.schema.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&traceforge::schema::json()).expect("the schema is JSON");
    jsonschema::draft7::new(&schema).expect("the schema is a valid draft-07 schema")
}

/// The schema's complaints about a TOML document, one line each; empty when it validates.
fn schema_errors(toml_text: &str) -> Vec<String> {
    let instance: Value = toml::from_str(toml_text).expect("the TOML parses");
    validator()
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[test]
fn committed_schema_is_current() {
    // Not assert_eq!: a diff of two 500-line strings hides the instruction that fixes it.
    assert!(
        committed() == traceforge::schema::json(),
        "traceforge.schema.json is out of date; run `cargo run -- schema > traceforge.schema.json`"
    );
}

#[test]
fn schema_is_draft_07() {
    let schema: Value = serde_json::from_str(&committed()).expect("the committed schema is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn shipped_scenarios_pass_the_parser_and_the_schema() {
    for file in support::scenario_files() {
        let text = std::fs::read_to_string(&file).expect("read scenario");
        let shown = file.display();
        assert!(
            text.starts_with("#:schema ../traceforge.schema.json\n"),
            "{shown} must start with `#:schema ../traceforge.schema.json` for editor autocomplete"
        );
        if let Err(e) = traceforge::scenario::load(&file, &[]) {
            panic!("{shown} does not validate:\n{e}");
        }
        assert_eq!(
            schema_errors(&text),
            Vec::<String>::new(),
            "{shown} against the schema"
        );
    }
}

#[test]
fn schema_rejects_misspelled_keys() {
    let errors = schema_errors("name = \"x\"\n[load]\nconcurency = 5\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("/load: ") && errors[0].contains("concurency"),
        "{errors:?}"
    );
    assert_eq!(schema_errors("name = \"x\"\nlaod = 1\n").len(), 1);
    assert_eq!(
        schema_errors("name = \"x\"\n[[faults]]\nkind = \"error\"\nstaus = 503\n").len(),
        1
    );
}

#[test]
fn schema_accepts_compact_and_table_faults() {
    let text = r#"
name = "both-forms"
faults = [
  "delay:100ms-500ms:/api",
  "error:503:0.2:/api",
  "drop:0.1",
  { kind = "delay", delay = "100ms..500ms", probability = 0.3, match = { path = "/api/*", method = ["GET", "POST"] } },
  { kind = "error", status = 503 },
]
"#;
    assert_eq!(schema_errors(text), Vec::<String>::new());
    assert!(traceforge::parse_str("both.toml", text, &[]).is_ok());
}

#[test]
fn schema_accepts_every_fault_kind() {
    assert_eq!(
        schema_errors(support::EVERY_FAULT_KIND),
        Vec::<String>::new()
    );
    assert!(traceforge::parse_str("every.toml", support::EVERY_FAULT_KIND, &[]).is_ok());
}

#[test]
fn schema_documents_every_kind_with_an_example() {
    let schema: Value = serde_json::from_str(&committed()).expect("the committed schema is JSON");
    let kinds = schema["definitions"]["FaultKind"]["oneOf"]
        .as_array()
        .expect("FaultKind is documented per variant");
    let names: Vec<&str> = kinds
        .iter()
        .filter_map(|k| k["const"].as_str().or_else(|| k["enum"][0].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            "delay",
            "error",
            "drop",
            "reset",
            "hang",
            "truncate",
            "throttle",
            "stream",
            "headers",
            "status",
            "ws_close",
            "ws_delay",
            "ws_drop",
            "rst_stream",
            "goaway",
            "quota",
            "corrupt",
            "garbage",
            "empty",
            "slow_read",
            "slow_close"
        ]
    );
    for kind in kinds {
        let doc = kind["description"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " ");
        assert!(doc.contains("Example: `{ kind = "), "{kind}");
    }
}

#[test]
fn schema_rejects_what_validation_rejects() {
    // A few values both layers must refuse, so the editor warns before the CLI does.
    for text in [
        "name = \"bad one\"",
        "name = \"x\"\nfaults = [\"dealy:100ms\"]",
        "name = \"x\"\nfaults = [{ kind = \"dealy\" }]",
        "name = \"x\"\nfaults = [{ kind = \"drop\", probability = 1.5 }]",
        "name = \"x\"\nfaults = [{ kind = \"drop\", every = 0 }]",
        "name = \"x\"\nfaults = [{ kind = \"throttle\", bytes_per_second = 0 }]",
        "name = \"x\"\nfaults = [{ kind = \"status\", status = 700 }]",
        "name = \"x\"\nfaults = [{ kind = \"headers\", target = \"reponse\", set = { a = \"b\" } }]",
        "name = \"x\"\nfaults = [{ kind = \"truncate\", after_bytes = -1 }]",
        "name = \"x\"\n[load]\nconcurrency = 0",
        "name = \"x\"\n[load]\ntimeout = \"100\"",
        "seed = 1",
    ] {
        assert!(
            !schema_errors(text).is_empty(),
            "the schema accepts {text:?}"
        );
        assert!(
            traceforge::parse_str("s.toml", text, &[]).is_err(),
            "the parser accepts {text:?}"
        );
    }
}
