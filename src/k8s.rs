//! `traceforge k8s`: the Kubernetes manifests of a sharded run. An Indexed Job runs one pod per
//! shard, each `traceforge run FILE --shard $(JOB_COMPLETION_INDEX)/N` writing its bundle to a
//! shared volume; a second Job merges the bundles once they are all there. A retried pod replays
//! the same index and writes the same bundle (every request is a function of `(seed, index)`),
//! which is why retries are safe.
//!
//! The manifests are built as JSON values and written as YAML by [`to_yaml`]: block style, every
//! string double-quoted (a JSON string is a valid YAML double-quoted scalar), so no value can be
//! read back as something else.

use serde_json::{Value, json};

use crate::scenario::Scenario;

/// What the manifests need besides the scenario.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// The scenario file as the image holds it, relative to its working directory.
    pub file: String,
    pub shards: u32,
    pub image: String,
    /// The PersistentVolumeClaim (ReadWriteMany) the bundles go to.
    pub claim: String,
    /// `--set` overrides, as written, given to every pod.
    pub overrides: Vec<String>,
    /// `--start-at`, as written, given to every pod.
    pub start_at: Option<String>,
}

/// Where the bundles go inside the pods.
pub const BUNDLES: &str = "/bundles";
/// The user the image runs as (distroless's `nonroot`).
pub const USER: u32 = 65532;

/// A Kubernetes name for the scenario's jobs: `traceforge-<name>`, lowercase letters, digits and
/// dashes, at most 52 characters so the pods' generated names stay within 63.
pub fn job_name(scenario: &Scenario) -> String {
    let mut name = String::from("traceforge-");
    for c in scenario.name.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    name.truncate(52);
    while name.ends_with('-') {
        name.pop();
    }
    name
}

fn bundle_dir(scenario: &Scenario) -> String {
    format!("{BUNDLES}/{}", job_name(scenario))
}

fn labels(scenario: &Scenario, role: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "traceforge",
        "app.kubernetes.io/component": role,
        "traceforge/job": job_name(scenario),
    })
}

/// The pod template both jobs share: non-root, read-only root file system, the bundles' volume
/// and a scratch `/tmp`.
fn pod(scenario: &Scenario, o: &K8sOptions, role: &str, args: Vec<String>, env: Value) -> Value {
    json!({
        "metadata": { "labels": labels(scenario, role) },
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": USER,
                "runAsGroup": USER,
                "fsGroup": USER,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [{
                "name": role,
                "image": o.image,
                "args": args,
                "env": env,
                "resources": {
                    "requests": { "cpu": "1", "memory": "256Mi" },
                    "limits": { "memory": "1Gi" },
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                },
                "volumeMounts": [
                    { "name": "bundles", "mountPath": BUNDLES },
                    { "name": "tmp", "mountPath": "/tmp" },
                ],
            }],
            "volumes": [
                { "name": "bundles", "persistentVolumeClaim": { "claimName": o.claim } },
                { "name": "tmp", "emptyDir": {} },
            ],
        },
    })
}

/// The Indexed Job of the shards: `completions` = `parallelism` = N, one pod per index, each
/// retried on its own index.
pub fn shards_job(scenario: &Scenario, o: &K8sOptions) -> Value {
    let dir = bundle_dir(scenario);
    let mut args = vec![
        "run".to_string(),
        o.file.clone(),
        "--shard".into(),
        format!("$(JOB_COMPLETION_INDEX)/{}", o.shards),
        "--bundle".into(),
        format!("{dir}/shard-$(JOB_COMPLETION_INDEX).jsonl"),
        "--logs".into(),
        "/tmp/traceforge-logs".into(),
    ];
    for s in &o.overrides {
        args.extend(["--set".to_string(), s.clone()]);
    }
    if let Some(at) = &o.start_at {
        args.extend(["--start-at".to_string(), at.clone()]);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": job_name(scenario), "labels": labels(scenario, "shard") },
        "spec": {
            "completionMode": "Indexed",
            "completions": o.shards,
            "parallelism": o.shards,
            // A failed pod is retried on its own index: it replays the same requests.
            "backoffLimitPerIndex": 2,
            "maxFailedIndexes": 0,
            "template": pod(scenario, o, "shard", args, json!([])),
        },
    })
}

/// The Job that merges the bundles once the shards' Job is complete, writing the JUnit report,
/// the summary JSON and every outcome beside the bundles. Its exit code is the run's.
pub fn merge_job(scenario: &Scenario, o: &K8sOptions) -> Value {
    let dir = bundle_dir(scenario);
    let mut args = vec!["merge".to_string()];
    args.extend((0..o.shards).map(|k| format!("{dir}/shard-{k}.jsonl")));
    args.extend([
        "--scenario".to_string(),
        o.file.clone(),
        "--junit".into(),
        format!("{dir}/junit.xml"),
        "--summary-json".into(),
        format!("{dir}/summary.json"),
        "--output".into(),
        format!("{dir}/outcomes.json"),
    ]);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("{}-merge", job_name(scenario)), "labels": labels(scenario, "merge") },
        "spec": {
            "completions": 1,
            "parallelism": 1,
            // The verdict is deterministic: running the merge again would not change it.
            "backoffLimit": 0,
            // CI=true: a golden mismatch prints its diff and writes nothing into the image.
            "template": pod(scenario, o, "merge", args, json!([{ "name": "CI", "value": "true" }])),
        },
    })
}

/// `value` as a YAML block document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(_) | Value::Array(_) => None,
        // A JSON string or number is a YAML scalar of the same value.
        other => Some(other.to_string()),
    }
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

fn write_value(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                match scalar(v) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        // Lists sit at their key's indentation, maps one step in.
                        let inner = if v.is_array() { indent } else { indent + 2 };
                        write_value(out, v, inner);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's first line follows the dash; the rest align under it.
                        let mut nested = String::new();
                        write_value(&mut nested, item, indent + 2);
                        let body = nested.trim_start();
                        out.push_str(&format!("{pad}- {body}"));
                    }
                }
            }
        }
        other => {
            if let Some(s) = scalar(other) {
                out.push_str(&format!("{pad}{s}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nests_maps_and_lists_and_quotes_every_string() {
        let v = json!({"a": {"b": [1, {"c": "x: y", "d": []}], "e": {}}, "f": "$(X)/4"});
        assert_eq!(
            to_yaml(&v),
            "a:\n  b:\n  - 1\n  - c: \"x: y\"\n    d: []\n  e: {}\nf: \"$(X)/4\"\n"
        );
    }
}
