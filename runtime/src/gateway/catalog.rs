//! Upstream tools as Arbiter tools: each MCP tool becomes a [`ToolSpec`] (so a Cedar action with a
//! typed `context.input`), named `<server>__<tool>` so two servers' `read_file` stay distinct.
//!
//! Every object in an input schema is closed (`additionalProperties: false` where the schema says
//! nothing): an argument the schema does not declare is refused, not projected away and then
//! forwarded unauthorized. A tool whose schema Arbiter cannot type is left out of the catalog and
//! reported, never exposed unchecked.

use std::collections::BTreeMap;

use kernel::{PathRules, Risk, ToolSpec};
use rmcp::model::Tool as McpTool;
use serde_json::{Map, Value};

use super::config::{SEPARATOR, ServerConfig};

/// One exposed tool: where it lives upstream and how it is registered.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The upstream server's name.
    pub server: String,
    /// The tool's name on that server.
    pub upstream: String,
    /// What the client sees in `tools/list` (the upstream's tool, renamed, its schema closed).
    pub listed: McpTool,
    /// As registered with the kernel.
    pub spec: ToolSpec,
}

/// Every exposed tool, by its gateway name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tools by `<server>__<tool>`.
    pub tools: BTreeMap<String, Entry>,
}

impl Catalog {
    /// The specs to register, with their origin.
    pub fn specs(&self) -> Vec<(ToolSpec, String)> {
        self.tools
            .values()
            .map(|e| (e.spec.clone(), format!("mcp server `{}`", e.server)))
            .collect()
    }
}

/// The gateway name of `server`'s tool `tool`.
pub fn gateway_name(server: &str, tool: &str) -> String {
    format!("{server}{SEPARATOR}{tool}")
}

/// `tool` of `server` as an entry.
pub fn entry(server: &str, config: &ServerConfig, tool: &McpTool) -> Entry {
    let name = gateway_name(server, &tool.name);
    let said = config
        .tools
        .get(tool.name.as_ref())
        .cloned()
        .unwrap_or_default();
    let hinted = tool.annotations.as_ref().map_or(Risk::Medium, |a| {
        if a.destructive_hint == Some(true) {
            Risk::High
        } else if a.read_only_hint == Some(true) {
            Risk::Low
        } else {
            Risk::Medium
        }
    });
    let schema = closed(&Value::Object((*tool.input_schema).clone()));
    let paths = (!said.paths.is_empty()).then(|| PathRules {
        arguments: said.paths.clone(),
        roots: config.roots.clone(),
    });
    let spec = ToolSpec {
        name: name.clone(),
        description: tool.description.as_deref().unwrap_or_default().to_owned(),
        risk: said.risk.or(config.risk).unwrap_or(hinted),
        tags: said.tags,
        output_labels: said.output_labels,
        field_labels: Vec::new(),
        tenant: None,
        input_schema: schema.clone(),
        paths,
    };
    let mut listed = tool.clone();
    listed.name = name.into();
    if let Value::Object(map) = schema {
        listed.input_schema = std::sync::Arc::new(map);
    }
    Entry {
        server: server.to_owned(),
        upstream: tool.name.to_string(),
        listed,
        spec,
    }
}

/// `schema` with every object that declares properties and says nothing of others closed.
pub fn closed(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        // Keywords whose values are schemas, or maps or lists of schemas.
                        "properties" | "patternProperties" | "$defs" | "definitions" => match v {
                            Value::Object(m) => Value::Object(
                                m.iter().map(|(k, s)| (k.clone(), closed(s))).collect(),
                            ),
                            other => other.clone(),
                        },
                        "items" | "additionalItems" | "not" | "if" | "then" | "else" => closed(v),
                        "anyOf" | "oneOf" | "allOf" | "prefixItems" => match v {
                            Value::Array(items) => Value::Array(items.iter().map(closed).collect()),
                            other => other.clone(),
                        },
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            let is_object = map.get("type").and_then(Value::as_str) == Some("object")
                || map.contains_key("properties");
            if is_object && !map.contains_key("additionalProperties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_closed_at_every_depth_unless_they_say_otherwise() {
        let schema = json!({
            "type": "object",
            "properties": {
                "edits": {"type": "array", "items": {"type": "object", "properties": {"old": {"type": "string"}}}},
                "meta": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        });
        let c = closed(&schema);
        assert_eq!(c["additionalProperties"], json!(false));
        assert_eq!(
            c["properties"]["edits"]["items"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(
            c["properties"]["meta"]["additionalProperties"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn a_tool_is_named_by_its_server_and_takes_the_configs_metadata() {
        let tool: McpTool = serde_json::from_value(json!({
            "name": "read_file",
            "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            "annotations": {"readOnlyHint": true}
        }))
        .unwrap();
        let config: ServerConfig = toml::from_str(
            "command = [\"x\"]\nroots = { w = \"/w\" }\n[tools.read_file]\noutput_labels = [\"untrusted\"]\npaths = [\"path\"]\n",
        )
        .unwrap();
        let e = entry("fs", &config, &tool);
        assert_eq!(e.spec.name, "fs__read_file");
        assert_eq!(e.listed.name, "fs__read_file");
        assert_eq!(e.upstream, "read_file");
        assert_eq!(
            e.spec.risk,
            Risk::Low,
            "the read-only hint, as the config says nothing"
        );
        assert!(e.spec.output_labels.contains("untrusted"));
        assert_eq!(e.spec.paths.unwrap().roots["w"], "/w");
    }
}
