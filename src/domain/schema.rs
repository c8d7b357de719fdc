//! JSON Schemas (draft 2020-12) of every command and of every version of every event,
//! generated from the Rust types with schemars. `campaign-ledger schemas --write schemas`
//! writes them as `schemas/commands/<Type>.v1.schema.json` (the whole JSON line a client
//! sends: `type`, `command_id`, `correlation_id` and the fields) and
//! `schemas/events/<Type>.v<N>.schema.json` (an event's `data`, as the CloudEvent carries
//! it); a test fails when the committed files drift from the code.

use super::command::*;
use super::event::*;
use schemars::{schema_for, Schema};
use serde_json::{json, Value};

/// Every schema document: (path under `schemas/`, document).
pub fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let commands = Command::field_schemas();
    for (name, schema) in commands {
        out.push((
            format!("commands/{name}.v1.schema.json"),
            command_document(name, schema),
        ));
    }
    let current = Event::data_schemas();
    let older: Vec<(&str, u32, Schema)> =
        vec![("DoseAdministered", 1, schema_for!(DoseAdministeredV1))];
    for (name, schema) in current {
        let v = Event::current_version(name).expect("a known type");
        out.push((
            format!("events/{name}.v{v}.schema.json"),
            event_document(name, v, schema),
        ));
    }
    for (name, v, schema) in older {
        out.push((
            format!("events/{name}.v{v}.schema.json"),
            event_document(name, v, schema),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// States the range of fixed-width integers (schemars gives `format: uint32` and a minimum
/// only), so that a validator refuses what the code cannot read.
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let max = match o.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32") => Some(u64::from(u32::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                o.entry("maximum").or_insert(json!(max));
            }
            o.values_mut().for_each(bound_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

fn event_document(name: &str, version: u32, schema: Schema) -> Value {
    let mut v = schema.to_value();
    bound_integers(&mut v);
    v["$id"] = json!(format!("urn:campaign-ledger:events:{name}:v{version}"));
    v["title"] = json!(format!("{name} v{version}"));
    v["x-ledger-type"] = json!(format!("fr.ofii.campaign-ledger.{name}.v{version}"));
    v
}

fn command_document(name: &str, schema: Schema) -> Value {
    let mut v = schema.to_value();
    bound_integers(&mut v);
    v["$id"] = json!(format!("urn:campaign-ledger:commands:{name}:v1"));
    v["title"] = json!(format!("{name} command"));
    if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
        let mut all = serde_json::Map::new();
        all.insert("type".into(), json!({ "const": name }));
        all.insert(
            "command_id".into(),
            json!({
                "type": "string",
                "format": "uuid",
                "description": "Chosen by the client; resubmitting the same command with it is idempotent, forever."
            }),
        );
        all.insert(
            "correlation_id".into(),
            json!({ "type": ["string", "null"], "description": "Groups related commands; not part of the content." }),
        );
        all.extend(std::mem::take(props));
        *props = all;
    }
    let mut required = vec![json!("type"), json!("command_id")];
    if let Some(r) = v.get("required").and_then(Value::as_array) {
        required.extend(r.iter().cloned());
    }
    v["required"] = Value::Array(required);
    v
}

/// A document as written to its file: pretty JSON and a final newline.
pub fn document_text(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("schemas serialize") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The committed files are what the code generates: no drift, no stale file.
    #[test]
    fn committed_schemas_match_the_rust_types() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let docs = documents();
        let fix = "run `cargo run -- schemas --write schemas` and commit the result";
        for (path, doc) in &docs {
            let file = root.join(path);
            let committed = std::fs::read_to_string(&file)
                .unwrap_or_else(|_| panic!("{} is missing: {fix}", file.display()));
            assert!(
                committed == document_text(doc),
                "{} differs from the Rust types: {fix}",
                file.display()
            );
        }
        let expected: BTreeSet<String> = docs.iter().map(|(p, _)| p.clone()).collect();
        for dir in ["commands", "events"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
                assert!(
                    expected.contains(&name),
                    "schemas/{name} is not generated by the code any more: {fix}"
                );
            }
        }
    }

    #[test]
    fn every_command_and_event_version_has_a_schema_and_examples_validate_structurally() {
        let docs = documents();
        assert_eq!(
            docs.len(),
            Command::TYPES.len()
                + Event::TYPES
                    .iter()
                    .map(|t| Event::versions(t).unwrap().len())
                    .sum::<usize>()
        );
        let v2 = &docs
            .iter()
            .find(|(p, _)| p == "events/DoseAdministered.v2.schema.json")
            .unwrap()
            .1;
        let v1 = &docs
            .iter()
            .find(|(p, _)| p == "events/DoseAdministered.v1.schema.json")
            .unwrap()
            .1;
        assert!(v2["required"]
            .as_array()
            .unwrap()
            .contains(&json!("series_doses")));
        assert!(v1["properties"].get("series_doses").is_none());
        let cmd = &docs
            .iter()
            .find(|(p, _)| p == "commands/AdministerDose.v1.schema.json")
            .unwrap()
            .1;
        assert_eq!(cmd["properties"]["type"]["const"], "AdministerDose");
        assert_eq!(cmd["additionalProperties"], false);
        assert!(cmd["required"]
            .as_array()
            .unwrap()
            .contains(&json!("command_id")));
    }
}
