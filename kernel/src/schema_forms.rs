//! JSON Schema as real tools publish it, rewritten into the forms a Cedar type holds.
//!
//! Generators write the same simple shapes in roundabout ways: pydantic and most MCP servers make
//! an optional field `anyOf: [{type: T}, {type: null}]` (often with `default: null`), zod writes
//! `type: [T, "null"]`, nested models become `$ref`s into `$defs`, and mixins become `allOf`. Each
//! is rewritten here, in a copy, before typing:
//!
//! - `anyOf`/`oneOf` of one schema and `{type: null}`, `type: [T, "null"]`, and an `enum` listing
//!   `null` → that schema, *nullable*: an optional attribute, and a `null` value is taken as absent;
//! - a local `$ref` (`#/...`) → the schema it points at, inlined (a cycle is an error: a Cedar type
//!   is finite); `$defs`/`definitions` are then dropped;
//! - `allOf` of object schemas → one object (properties and `required` merged; the same property
//!   defined two different ways is an error); `allOf` of one schema → that schema;
//! - `anyOf`/`oneOf` of one schema → that schema; `const` → a one-value `enum`.
//!
//! Anything else is left as it is, for the typing to refuse with its pointer. The tool's own
//! validator still checks arguments against the schema as published.

use serde_json::{Map, Value};

/// Marks a schema whose value may be `null` (taken as absent). Internal to the rewritten copy.
pub(crate) const NULLABLE: &str = "x-arbiter-nullable";

/// Nesting past which a schema is not rewritten further (the typing refuses it).
const MAX_DEPTH: usize = 64;

/// `schema` rewritten; every problem found, each with its JSON pointer.
pub(crate) fn normalize(schema: &Value) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let mut stack = Vec::new();
    let out = rewrite(schema, schema, "", &mut stack, &mut errors, 0);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
        && v.as_object().is_some_and(|o| {
            o.keys()
                .all(|k| matches!(k.as_str(), "type" | "title" | "description"))
        })
}

fn rewrite(
    node: &Value,
    root: &Value,
    pointer: &str,
    stack: &mut Vec<String>,
    errors: &mut Vec<String>,
    depth: usize,
) -> Value {
    let Value::Object(obj) = node else {
        return node.clone();
    };
    if depth > MAX_DEPTH {
        return node.clone();
    }
    // A reference: the schema it names, inlined (siblings such as `description` are kept).
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        let Some(target) = reference.strip_prefix('#').and_then(|p| {
            if p.is_empty() {
                Some(root)
            } else {
                root.pointer(p)
            }
        }) else {
            errors.push(format!(
                "at {}/$ref: `{reference}` is not a reference into this schema (`#/...`); only local references are resolved",
                pointer
            ));
            return node.clone();
        };
        if stack.iter().any(|r| r == reference) {
            errors.push(format!(
                "at {}/$ref: `{reference}` refers back to itself ({} → {reference}): a recursive schema has no Cedar type",
                pointer,
                stack.join(" → ")
            ));
            return Value::Object(Map::new());
        }
        stack.push(reference.to_owned());
        let inlined = rewrite(target, root, pointer, stack, errors, depth + 1);
        stack.pop();
        let mut merged = match inlined {
            Value::Object(m) => m,
            other => return other,
        };
        for (k, v) in obj {
            if k != "$ref" && !merged.contains_key(k) {
                merged.insert(
                    k.clone(),
                    rewrite(v, root, pointer, stack, errors, depth + 1),
                );
            }
        }
        return Value::Object(merged);
    }
    let mut out = Map::new();
    for (key, value) in obj {
        let at = format!("{pointer}/{key}");
        let rewritten = match key.as_str() {
            "$defs" | "definitions" => continue,
            "properties" => match value {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, sub)| {
                            let at = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                            (
                                name.clone(),
                                rewrite(sub, root, &at, stack, errors, depth + 1),
                            )
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" if value.is_object() => {
                rewrite(value, root, &at, stack, errors, depth + 1)
            }
            "anyOf" | "oneOf" | "allOf" => match value {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, sub)| {
                            rewrite(sub, root, &format!("{at}/{i}"), stack, errors, depth + 1)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), rewritten);
    }
    simplify(out, pointer, errors)
}

/// The rewrites of one (already recursively rewritten) schema object.
fn simplify(mut obj: Map<String, Value>, pointer: &str, errors: &mut Vec<String>) -> Value {
    let mut nullable = false;
    // `const` → a one-value enum.
    if let Some(c) = obj.remove("const") {
        obj.insert("enum".into(), Value::Array(vec![c]));
    }
    // `type: [T, "null"]` → T, nullable.
    if let Some(Value::Array(types)) = obj.get("type") {
        let non_null: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if non_null.len() < types.len() {
            nullable = true;
        }
        if let [only] = non_null.as_slice() {
            obj.insert("type".into(), only.clone());
        }
    }
    // An enum listing null: nullable.
    if let Some(Value::Array(values)) = obj.get_mut("enum")
        && values.iter().any(Value::is_null)
        && values.len() > 1
    {
        values.retain(|v| !v.is_null());
        nullable = true;
    }
    // `anyOf`/`oneOf` of one schema (besides null) → that schema.
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(members)) = obj.get(key) else {
            continue;
        };
        let non_null: Vec<&Value> = members.iter().filter(|m| !is_null_schema(m)).collect();
        if non_null.len() < members.len() {
            nullable = true;
        }
        let replacement = match non_null.as_slice() {
            [only] => Some((*only).clone()),
            many if !many.is_empty() => one_enum(many),
            _ => None,
        };
        if let Some(Value::Object(inner)) = replacement {
            obj.remove(key);
            for (k, v) in inner {
                obj.entry(k).or_insert(v);
            }
        } else if non_null.len() < members.len() {
            // The null is accounted for; what remains still has to be typed (and may be refused).
            let kept: Vec<Value> = non_null.into_iter().cloned().collect();
            obj.insert(key.into(), Value::Array(kept));
        }
    }
    // `allOf` → one schema.
    if let Some(Value::Array(members)) = obj.remove("allOf") {
        match merge_all(&members, &format!("{pointer}/allOf"), errors) {
            Some(Value::Object(merged)) => {
                for (k, v) in merged {
                    match (obj.get_mut(&k), v) {
                        (Some(Value::Object(mine)), Value::Object(theirs)) if k == "properties" => {
                            for (name, sub) in theirs {
                                mine.entry(name).or_insert(sub);
                            }
                        }
                        (Some(Value::Array(mine)), Value::Array(theirs)) if k == "required" => {
                            for r in theirs {
                                if !mine.contains(&r) {
                                    mine.push(r);
                                }
                            }
                        }
                        (None, v) => {
                            obj.insert(k, v);
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                obj.insert("allOf".into(), Value::Array(members));
            }
        }
    }
    if nullable {
        obj.insert(NULLABLE.into(), Value::Bool(true));
    }
    Value::Object(obj)
}

/// Members that are all one-type enums (or consts, already enums) → one enum of them all.
fn one_enum(members: &[&Value]) -> Option<Value> {
    let mut values = Vec::new();
    for m in members {
        let obj = m.as_object()?;
        if obj
            .keys()
            .any(|k| !matches!(k.as_str(), "enum" | "type" | "title" | "description"))
        {
            return None;
        }
        values.extend(obj.get("enum")?.as_array()?.iter().cloned());
    }
    let strings = values.iter().all(Value::is_string);
    let integers = values.iter().all(|v| v.is_i64());
    (strings || integers).then(|| serde_json::json!({ "enum": values }))
}

/// `allOf` members merged into one object schema; `None` (with an error) when they are not all
/// objects or define one property two ways.
fn merge_all(members: &[Value], pointer: &str, errors: &mut Vec<String>) -> Option<Value> {
    if let [only] = members {
        return Some(only.clone());
    }
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut rest = Map::new();
    for (i, m) in members.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            errors.push(format!(
                "at {pointer}/{i}: an `allOf` member must be a schema object"
            ));
            return None;
        };
        let is_object = obj.get("type").and_then(Value::as_str) == Some("object")
            || (obj.get("type").is_none() && obj.contains_key("properties"));
        if !is_object {
            errors.push(format!(
                "at {pointer}/{i}: `allOf` is merged only from object schemas; this member is not one"
            ));
            return None;
        }
        for (k, v) in obj {
            match k.as_str() {
                "properties" => {
                    for (name, sub) in v.as_object().into_iter().flatten() {
                        match properties.get(name) {
                            Some(existing) if existing != sub => {
                                errors.push(format!(
                                    "at {pointer}/{i}/properties/{name}: defined differently by another `allOf` member"
                                ));
                                return None;
                            }
                            _ => {
                                properties.insert(name.clone(), sub.clone());
                            }
                        }
                    }
                }
                "required" => {
                    for r in v.as_array().into_iter().flatten() {
                        if !required.contains(r) {
                            required.push(r.clone());
                        }
                    }
                }
                _ => {
                    rest.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    rest.insert("type".into(), Value::String("object".into()));
    rest.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        rest.insert("required".into(), Value::Array(required));
    }
    Some(Value::Object(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_optional_forms_generators_write_become_nullable() {
        let pydantic = json!({"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Cc"});
        let out = normalize(&pydantic).expect("rewrites");
        assert_eq!(out["type"], "string");
        assert_eq!(out[NULLABLE], true);
        assert!(out.get("anyOf").is_none());
        let zod = json!({"type": ["integer", "null"]});
        let out = normalize(&zod).expect("rewrites");
        assert_eq!(
            (out["type"].clone(), out[NULLABLE].clone()),
            (json!("integer"), json!(true))
        );
    }

    #[test]
    fn references_are_inlined_and_cycles_refused() {
        let schema = json!({
            "type": "object",
            "$defs": {"Addr": {"type": "object", "properties": {"city": {"type": "string"}}}},
            "properties": {"to": {"$ref": "#/$defs/Addr", "description": "where"}}
        });
        let out = normalize(&schema).expect("rewrites");
        assert_eq!(
            out["properties"]["to"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(out["properties"]["to"]["description"], "where");
        assert!(out.get("$defs").is_none());

        let cyclic = json!({
            "type": "object",
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            "properties": {"head": {"$ref": "#/$defs/Node"}}
        });
        let errs = normalize(&cyclic).expect_err("a cycle");
        assert!(errs[0].contains("refers back to itself"), "{errs:?}");
        assert!(
            errs[0].starts_with("at /properties/head/properties/next/$ref"),
            "{errs:?}"
        );
    }

    #[test]
    fn all_of_objects_merge_and_conflicts_are_refused() {
        let schema = json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
        ]});
        let out = normalize(&schema).expect("merges");
        assert_eq!(out["properties"]["b"]["type"], "integer");
        assert_eq!(out["required"], json!(["a", "b"]));
        let conflict = json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"a": {"type": "integer"}}}
        ]});
        assert!(normalize(&conflict).is_err());
    }

    #[test]
    fn const_and_one_type_alternatives_become_enums() {
        let out = normalize(&json!({"const": "x"})).expect("const");
        assert_eq!(out["enum"], json!(["x"]));
        let out = normalize(&json!({"oneOf": [{"const": "a"}, {"const": "b"}]})).expect("enums");
        assert_eq!(out["enum"], json!(["a", "b"]));
        let mixed = normalize(&json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}))
            .expect("left for typing");
        assert!(
            mixed.get("anyOf").is_some(),
            "a real union is left to be refused"
        );
    }
}
