//! The tool registry: each tool's JSON Schema validates its arguments and, mapped to Cedar types,
//! generates the tool's own action (`in [Action::"call_tool"]`) with a typed `context.input`.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::EntityUid;

use crate::gate::Val;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(crate) use crate::cedar_type::{CedarType, quote};

pub use crate::error::ArgumentError;
pub use paths::PathRules;

mod paths;
use crate::error::LoadError;
use crate::provenance::{ContentIndex, Shape};
use crate::source::Located;

/// Actions the schema declares itself; a tool may not take their names.
pub const BUILTIN_ACTIONS: [&str; 9] = [
    "call_model",
    "call_tool",
    "read_memory",
    "write_memory",
    "spend_budget",
    "approve",
    "cancel",
    "endorse",
    "continue_session",
];

/// How much harm a tool can do; policies read it as `resource.risk`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reads, lookups.
    Low,
    /// Reversible writes.
    Medium,
    /// Irreversible or costly effects (money, deletion, outside communication).
    High,
    /// Never without an explicit permit.
    Critical,
}

impl Risk {
    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// A tool as registered: its name, risk, labels and the JSON Schema of its arguments.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The tool's name; also its Cedar action id and `Tool` entity id.
    pub name: String,
    /// What it does (shown to models and reviewers).
    #[serde(default)]
    pub description: String,
    /// Its risk.
    pub risk: Risk,
    /// Free-form tags policies can test (`"egress"`, `"payments"`...).
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Labels its output adds to the session (`"untrusted"`, `"pii"`...): every field's, unless a
    /// rule in `field_labels` names the field.
    #[serde(default)]
    pub output_labels: BTreeSet<String>,
    /// Labels per output field, for outputs that mix sources (a bank's own fields and a memo a
    /// stranger wrote): the first rule whose `path` names a field or one of its ancestors gives
    /// that field's labels instead of `output_labels`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_labels: Vec<FieldLabels>,
    /// The tenant owning a tenant-private tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// JSON Schema of the arguments (an object schema).
    pub input_schema: Value,
    /// Arguments that are file paths: canonicalized, and confined through `context.paths`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<PathRules>,
}

/// The labels of the output fields at `path`: a JSON pointer (`/transactions/0/memo`) in which a
/// `*` segment matches any key or index (`/transactions/*/memo`).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldLabels {
    /// Which fields.
    pub path: String,
    /// Their labels (may be empty: the fields carry none, whatever `output_labels` says).
    pub labels: BTreeSet<String>,
}

impl FieldLabels {
    /// The pattern's segments, unescaped; `None` unless `path` is a JSON pointer.
    pub(crate) fn segments(&self) -> Option<Vec<String>> {
        if self.path.is_empty() {
            return Some(Vec::new());
        }
        let rest = self.path.strip_prefix('/')?;
        Some(
            rest.split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
        )
    }
}

/// A registered tool, compiled.
pub(crate) struct Tool {
    pub spec: ToolSpec,
    pub action: EntityUid,
    pub uid: EntityUid,
    input: CedarType,
    type_name: String,
    provenance: Shape,
    validator: jsonschema::Validator,
    /// Where it was defined, for errors found later (an owner tenant that does not exist).
    pub at: Located,
}

impl Tool {
    /// Validates `input` against the JSON Schema, then types it for Cedar.
    pub fn check(&self, input: &Value) -> Result<Val, Vec<ArgumentError>> {
        if self.validator.is_valid(input) {
            return self.to_value(input).map_err(|e| vec![e]);
        }
        let errors: Vec<ArgumentError> = self
            .validator
            .iter_errors(input)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                ArgumentError {
                    path,
                    message: e.to_string(),
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        self.to_value(input).map_err(|e| vec![e])
    }

    /// `input` with its path arguments in canonical form (unchanged for a tool without any).
    pub fn canonical_input(&self, input: Value) -> Value {
        match &self.spec.paths {
            Some(rules) => rules.canonicalize(&input),
            None => input,
        }
    }

    /// `context.paths` for a canonical `input`; `None` for a tool without path arguments.
    pub fn path_facts(&self, input: &Value) -> Option<Result<Val, String>> {
        self.spec.paths.as_ref().map(|r| r.facts(input))
    }

    /// Arguments of every attribute the input type declares (they need not pass the JSON Schema).
    pub fn sample_input(&self) -> Value {
        self.input.sample()
    }

    /// `input` as a Cedar value of the tool's input type, for arguments that already passed
    /// [`Tool::check`].
    pub fn to_value(&self, input: &Value) -> Result<Val, ArgumentError> {
        self.input.to_value(input, "")
    }

    /// `context.provenance` for a checked `input`: where each argument's value came from.
    pub fn provenance(&self, input: &Value, index: &ContentIndex) -> Result<Val, String> {
        self.provenance.value(input, index)
    }
}

/// Every registered tool, by name.
#[derive(Default)]
pub(crate) struct ToolRegistry {
    tools: BTreeMap<String, Tool>,
}

impl ToolRegistry {
    /// Compiles `specs`, recording every problem in `errors` (a bad tool is left out).
    pub fn build(specs: Vec<(ToolSpec, Located)>, errors: &mut Vec<LoadError>) -> Self {
        let mut tools: BTreeMap<String, Tool> = BTreeMap::new();
        let mut type_names: BTreeMap<String, String> = BTreeMap::new();
        for (spec, at) in specs {
            let defined = at.clone();
            let fail = |message: String| LoadError::Tool {
                at: at.clone(),
                tool: spec.name.clone(),
                message,
            };
            if let Err(message) = check_name(&spec.name) {
                errors.push(fail(message));
                continue;
            }
            if let Some(rule) = spec.field_labels.iter().find(|r| r.segments().is_none()) {
                errors.push(fail(format!(
                    "field_labels: `{}` is not a JSON pointer (it starts with `/`, e.g. `/items/*/memo`)",
                    rule.path
                )));
                continue;
            }
            if let Some(rules) = &spec.paths {
                let properties = spec
                    .input_schema
                    .get("properties")
                    .and_then(Value::as_object);
                let problems = rules.problems(properties);
                if !problems.is_empty() {
                    errors.extend(problems.into_iter().map(fail));
                    continue;
                }
            }
            if tools.contains_key(&spec.name) {
                errors.push(fail("registered twice".into()));
                continue;
            }
            let type_name = format!("{}Input", identifier(&spec.name));
            if let Some(other) = type_names.get(&type_name) {
                errors.push(fail(format!(
                    "its Cedar type name `{type_name}` collides with tool `{other}`"
                )));
                continue;
            }
            let normalized = match crate::schema_forms::normalize(&spec.input_schema) {
                Ok(n) => n,
                Err(problems) => {
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|m| fail(format!("input_schema {m}"))),
                    );
                    continue;
                }
            };
            let untyped = crate::cedar_type::untyped_keywords(&normalized);
            if !untyped.is_empty() {
                errors.extend(
                    untyped
                        .into_iter()
                        .map(|m| fail(format!("input_schema {m}"))),
                );
                continue;
            }
            let input = match CedarType::from_json_schema(&normalized, "") {
                Ok(t @ CedarType::Record(_)) => t,
                Ok(_) => {
                    errors.push(fail("input_schema must describe an object".into()));
                    continue;
                }
                Err(problems) => {
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|m| fail(format!("input_schema {m}"))),
                    );
                    continue;
                }
            };
            let validator = match jsonschema::options()
                .should_validate_formats(true)
                .build(&spec.input_schema)
            {
                Ok(v) => v,
                Err(e) => {
                    errors.push(fail(format!(
                        "input_schema is not a valid JSON Schema: {e}"
                    )));
                    continue;
                }
            };
            let (Ok(action), Ok(uid)) = (uid("Action", &spec.name), uid("Tool", &spec.name)) else {
                errors.push(fail("cannot be used as a Cedar entity id".into()));
                continue;
            };
            let provenance = Shape::of_input(&input);
            type_names.insert(type_name.clone(), spec.name.clone());
            let name = spec.name.clone();
            tools.insert(
                name,
                Tool {
                    spec,
                    action,
                    uid,
                    input,
                    type_name,
                    provenance,
                    validator,
                    at: defined,
                },
            );
        }
        Self { tools }
    }

    pub fn all(&self) -> impl Iterator<Item = &Tool> {
        self.tools.values()
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn input_type(&self, name: &str) -> Option<&CedarType> {
        self.tools.get(name).map(|t| &t.input)
    }

    /// Cedar schema declarations for every tool: its input and provenance types and its action.
    pub fn cedar_schema(&self) -> String {
        let mut out = String::new();
        for tool in self.tools.values() {
            let provenance = format!("{}Provenance", identifier(&tool.spec.name));
            let paths = if tool.spec.paths.is_some() {
                ", paths: { all: Set<String>, any: Set<String> }"
            } else {
                ""
            };
            out.push_str(&format!(
                "type {} = {};\ntype {provenance} = {};\naction {} in [Action::\"call_tool\"] appliesTo {{\n  \
                 principal: Agent,\n  resource: Tool,\n  \
                 context: {{ session: Session, history: History, input: {}, provenance: {provenance}{paths} }},\n}};\n",
                tool.type_name,
                tool.input.to_cedarschema(),
                tool.provenance.to_cedarschema(),
                quote(&tool.spec.name),
                tool.type_name,
            ));
        }
        out
    }

    /// The `Tool` entities, in Cedar's entity JSON format.
    pub fn entities_json(&self) -> Vec<Value> {
        self.tools
            .values()
            .map(|t| {
                let mut attrs = json!({
                    "risk": t.spec.risk.as_str(),
                    "tags": t.spec.tags,
                    "output_labels": t.spec.output_labels,
                });
                if let (Some(tenant), Some(map)) = (&t.spec.tenant, attrs.as_object_mut()) {
                    map.insert(
                        "tenant".into(),
                        json!({"__entity": {"type": "Tenant", "id": tenant}}),
                    );
                }
                json!({"uid": {"type": "Tool", "id": t.spec.name}, "attrs": attrs, "parents": []})
            })
            .collect()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a tool needs a name".into());
    }
    if name.contains("::") || name.contains('"') || name.chars().any(char::is_control) {
        return Err("a tool name may not contain `::`, quotes or control characters".into());
    }
    // Bidirectional and invisible formatting characters make a name read as another in a policy
    // or a log (`pay\u{202e}yrev`): refused like control characters.
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
    }) {
        return Err(format!(
            "a tool name may not contain invisible or bidirectional formatting characters (U+{:04X})",
            u32::from(c)
        ));
    }
    if BUILTIN_ACTIONS.contains(&name) {
        return Err(format!("`{name}` is a built-in action"));
    }
    Ok(())
}

/// `name` made into a Cedar identifier: other characters become `_`.
fn identifier(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    id
}

/// The entity uid `ty::"id"` (`ty` a type name such as `Tool` or `Action`).
pub fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    use std::str::FromStr;
    let name = cedar_policy::EntityTypeName::from_str(ty).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        name,
        cedar_policy::EntityId::new(id),
    ))
}
