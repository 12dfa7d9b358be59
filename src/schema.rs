//! The editor schema: a JSON Schema (draft 7) for pipeline and fragment
//! files, so that an editor with a YAML language server completes field
//! names and `op:` names and checks each operator's `with:` parameters.
//!
//! The sections come from the spec types themselves (their doc comments
//! become the descriptions); each operator's `with:` schema is the one
//! `quiver ops NAME` describes, selected by the node's `op:`. A value in
//! `with:` may always be a whole reference, `${name}`, whatever the type
//! the operator expects: the compiler substitutes it.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::operators::Registry;
use crate::spec::{FragmentSpec, PipelineSpec};

/// Where the schemas live in the repo, for the editor modeline.
pub const PIPELINE_FILE: &str = "schema/pipeline.schema.json";
pub const FRAGMENT_FILE: &str = "schema/fragment.schema.json";

/// The schema of a pipeline file.
pub fn pipeline(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let root = generator.root_schema_for::<PipelineSpec>();
    finish(root.to_value(), "quiver pipeline", registry)
}

/// The schema of a fragment file (included by a node with `use:`).
pub fn fragment(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let root = generator.root_schema_for::<FragmentSpec>();
    finish(root.to_value(), "quiver fragment", registry)
}

/// Adds the operators to a root schema generated from the spec types.
fn finish(mut root: Value, title: &str, registry: &Registry) -> Value {
    root["title"] = json!(title);
    let defs = root["definitions"]
        .as_object_mut()
        .expect("the spec types have definitions");
    defs.insert(
        "Reference".to_string(),
        json!({
            "type": "string",
            "pattern": "^\\$\\{[^}]+\\}$",
            "description": "A parameter or fan-out variable, `${name}`, substituted when the pipeline compiles.",
        }),
    );
    let mut selected = Vec::new();
    let mut names = Vec::new();
    for def in registry.iter() {
        let name = def.name();
        let key = format!("op:{name}");
        let mut schema = def.params_schema().to_value();
        let inner = schema
            .as_object_mut()
            .and_then(|s| s.remove("$defs"))
            .unwrap_or_default();
        if let Value::Object(inner) = inner {
            for (sub, mut value) in inner {
                rename_refs(&mut value, &key);
                allow_references(&mut value);
                defs.insert(format!("{key}:{sub}"), value);
            }
        }
        rename_refs(&mut schema, &key);
        allow_references(&mut schema);
        if let Some(s) = schema.as_object_mut() {
            s.remove("$schema");
            s.remove("title");
            s.insert("additionalProperties".to_string(), json!(false));
            s.insert("description".to_string(), json!(def.doc()));
        }
        let needs_with = schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        defs.insert(key.clone(), schema);
        let mut then =
            json!({ "properties": { "with": { "$ref": format!("#/definitions/{key}") } } });
        if needs_with {
            then["required"] = json!(["with"]);
        }
        selected.push(json!({
            "if": { "properties": { "op": { "const": name } }, "required": ["op"] },
            "then": then,
        }));
        names.push(json!({ "const": name, "description": def.doc() }));
    }
    let node = defs
        .get_mut("NodeSpec")
        .and_then(Value::as_object_mut)
        .expect("the spec types define NodeSpec");
    let props = node["properties"]
        .as_object_mut()
        .expect("NodeSpec has properties");
    let described = |v: &Value| v.get("description").cloned().unwrap_or(Value::Null);
    let op_doc = described(&props["op"]);
    props.insert(
        "op".to_string(),
        json!({ "description": op_doc, "anyOf": names }),
    );
    let with_doc = described(&props["with"]);
    props.insert(
        "with".to_string(),
        json!({ "description": with_doc, "type": "object" }),
    );
    node.insert("allOf".to_string(), Value::Array(selected));
    // The compiler substitutes `${…}` anywhere in `resources:`.
    if root["properties"].get("resources").is_some() {
        let defs = root["definitions"].as_object_mut().expect("definitions");
        let name = with_references(defs, "ResourceSpec");
        root["properties"]["resources"]["additionalProperties"] =
            json!({ "$ref": format!("#/definitions/{name}") });
    }
    root
}

/// A copy of definition `name`, and of every definition it refers to,
/// whose values may also be whole references: its name.
fn with_references(defs: &mut Map<String, Value>, name: &str) -> String {
    let copy = format!("{name}WithReferences");
    if defs.contains_key(&copy) || !defs.contains_key(name) {
        return copy;
    }
    let mut def = defs[name].clone();
    defs.insert(copy.clone(), json!(true)); // Reserved, for recursive types.
    let mut inner = Vec::new();
    collect_refs(&def, &mut inner);
    for target in inner {
        let target_copy = with_references(defs, &target);
        retarget(&mut def, &target, &target_copy);
    }
    allow_references(&mut def);
    defs.insert(copy.clone(), def);
    copy
}

/// The definition names `value` refers to.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && let Some(name) = r.strip_prefix("#/definitions/")
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Points the references to definition `from` at `to`.
fn retarget(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && r.strip_prefix("#/definitions/") == Some(from)
            {
                *r = format!("#/definitions/{to}");
            }
            map.values_mut().for_each(|v| retarget(v, from, to));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| retarget(v, from, to)),
        _ => {}
    }
}

/// `#/$defs/X` inside an operator's schema → `#/definitions/op:NAME:X`.
fn rename_refs(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(sub) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/definitions/{key}:{sub}");
            }
            map.values_mut().for_each(|v| rename_refs(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, key)),
        _ => {}
    }
}

/// Lets every property and list item of an object schema also be a whole
/// reference, `${name}`; the description and default stay on the outside,
/// where editors show them.
fn allow_references(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        props.values_mut().for_each(or_reference);
    }
    if let Some(items) = map.get_mut("items")
        && items.is_object()
    {
        or_reference(items);
    }
    if let Some(extra) = map.get_mut("additionalProperties")
        && extra.is_object()
    {
        or_reference(extra);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alternatives)) = map.get_mut(key) {
            alternatives.iter_mut().for_each(allow_references);
        }
    }
}

fn or_reference(schema: &mut Value) {
    allow_references(schema);
    let mut outside = Map::new();
    if let Some(inner) = schema.as_object_mut() {
        for key in ["description", "default", "title"] {
            if let Some(v) = inner.remove(key) {
                outside.insert(key.to_string(), v);
            }
        }
    }
    let inner = std::mem::take(schema);
    outside.insert(
        "anyOf".to_string(),
        json!([inner, { "$ref": "#/definitions/Reference" }]),
    );
    *schema = Value::Object(outside);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_is_selected_by_its_op() {
        let registry = crate::operators::registry();
        let schema = pipeline(registry);
        let node = &schema["definitions"]["NodeSpec"];
        let names: Vec<&str> = node["properties"]["op"]["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["const"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = registry.names().collect();
        assert_eq!(names, expected);
        assert_eq!(node["allOf"].as_array().unwrap().len(), expected.len());
        let synthetic = &schema["definitions"]["op:fetch.synthetic"];
        assert_eq!(synthetic["additionalProperties"], json!(false));
        // A typed parameter also takes a whole reference.
        let seed = &synthetic["properties"]["seed"];
        assert!(
            seed["anyOf"][1]["$ref"] == "#/definitions/Reference",
            "{seed}"
        );
    }

    #[test]
    fn operator_refs_point_inside_the_schema() {
        let schema = pipeline(crate::operators::registry());
        let text = schema.to_string();
        let defs = schema["definitions"].as_object().unwrap();
        for (i, _) in text.match_indices("\"$ref\":\"") {
            let rest = &text[i + 8..];
            let r = &rest[..rest.find('"').unwrap()];
            let name = r
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("{r} points outside the definitions"));
            assert!(defs.contains_key(name), "{r} is not defined");
        }
    }
}
