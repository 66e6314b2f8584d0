//! Generated worlds: a shipped pack (or none) plus generated tenants, users, agents, memory
//! scopes, budgets, tools with random risk, labels and argument schemas, and generated policies.
//!
//! A world is built once per fuzz run (building a Cedar bundle costs milliseconds; a case costs
//! microseconds), so a seed picks a handful of worlds and every case runs in one of them.

use std::path::Path;
use std::sync::Arc;

use kernel::pack::builder_for;
use kernel::{Deployment, Risk, Source, ToolSpec};
use proptest::prelude::Rng;
use proptest::test_runner::TestRng;
use serde_json::{Value, json};

use crate::ScenarioError;

/// Tenants of every generated world.
pub const TENANTS: [&str; 2] = ["t0", "t1"];
/// Users: an approver and a plain user in t0, an approver-operator in t1, and one that is in no
/// entity store (requests naming it must fail closed).
pub const USERS: [&str; 4] = ["boss@t0", "user@t0", "boss@t1", "ghost@t0"];
/// Agents, one per tenant.
pub const AGENTS: [&str; 2] = ["agent@t0", "agent@t1"];
/// Memory scopes: one per tenant, and one that exists nowhere.
pub const SCOPES: [&str; 3] = ["t0/notes", "t1/notes", "nowhere"];
/// The generated model.
pub const MODEL: &str = "fuzz-model";

/// A world: the bundle plus everything needed to write a case back out as a scenario file.
pub struct World {
    /// The shipped pack on top of base, if any.
    pub pack: Option<String>,
    /// Generated entities (Cedar entity JSON).
    pub entities: Vec<Value>,
    /// Generated tools.
    pub tools: Vec<ToolSpec>,
    /// Generated policies.
    pub policy_text: String,
    /// Every tool name callable in this world (pack and generated), sorted.
    pub tool_names: Vec<String>,
    /// A valid input per tool, derived from its JSON Schema, with the candidate values each of
    /// its string arguments accepts; cases choose among them and vary the integers.
    pub samples: Vec<Sample>,
    /// The compiled bundle.
    pub deployment: Arc<Deployment>,
}

#[expect(
    clippy::indexing_slicing,
    reason = "every list a world picks from is a non-empty constant"
)]
fn pick<'a, T>(rng: &mut TestRng, items: &'a [T]) -> &'a T {
    &items[(rng.next_u32() as usize) % items.len()]
}

fn chance(rng: &mut TestRng, percent: u32) -> bool {
    rng.next_u32() % 100 < percent
}

impl World {
    /// Generates a world on top of `pack` (None: base alone) from `rng`.
    pub fn generate(
        root: &Path,
        pack: Option<&str>,
        rng: &mut TestRng,
    ) -> Result<Self, ScenarioError> {
        let mut entities = vec![];
        for t in TENANTS {
            entities.push(json!({"uid": {"type": "Tenant", "id": t}, "attrs": {}, "parents": []}));
            let limit = if chance(rng, 50) {
                500 + u64::from(rng.next_u32() % 20_000)
            } else {
                50_000 + u64::from(rng.next_u32() % 400_000)
            };
            entities.push(json!({"uid": {"type": "Budget", "id": t}, "attrs": {"limit": limit}, "parents": [{"type": "Tenant", "id": t}]}));
            entities.push(json!({"uid": {"type": "Agent", "id": format!("agent@{t}")}, "attrs": {}, "parents": [{"type": "Tenant", "id": t}]}));
            entities.push(json!({"uid": {"type": "MemoryScope", "id": format!("{t}/notes")}, "attrs": {}, "parents": [{"type": "Tenant", "id": t}]}));
        }
        for (user, roles) in [
            ("boss@t0", json!(["approver"])),
            ("user@t0", json!([])),
            ("boss@t1", json!(["approver", "operator"])),
        ] {
            let tenant = user.split('@').nth(1).unwrap_or("t0");
            entities.push(json!({"uid": {"type": "User", "id": user}, "attrs": {"roles": roles}, "parents": [{"type": "Tenant", "id": tenant}]}));
        }
        entities.push(json!({"uid": {"type": "Model", "id": MODEL}, "attrs": {"input_price": 1000, "output_price": 2000}, "parents": []}));

        // Argument shapes: integer amounts; decimal amounts; and an open object with a set and a
        // date-time, whose undeclared fields (the generator's `note`) are projected away.
        // gt0 always takes integers, so the error-prone policy below always type-checks.
        let shapes: Vec<u32> = (0..3)
            .map(|i| if i == 0 { 0 } else { rng.next_u32() % 3 })
            .collect();
        let tools: Vec<ToolSpec> = shapes
            .iter()
            .enumerate()
            .map(|(i, shape)| ToolSpec {
                name: format!("gt{i}"),
                description: "generated".into(),
                risk: *pick(rng, &[Risk::Low, Risk::Medium, Risk::High, Risk::Critical]),
                tags: ["egress", "payments"].into_iter().filter(|_| chance(rng, 35)).map(str::to_owned).collect(),
                output_labels: ["untrusted", "pii"].into_iter().filter(|_| chance(rng, 35)).map(str::to_owned).collect(),
                field_labels: Vec::new(),
                paths: None,
                tenant: chance(rng, 25).then(|| pick(rng, &TENANTS).to_string()),
                input_schema: match shape {
                    0 => json!({
                        "type": "object",
                        "properties": {"amount": {"type": "integer", "minimum": 0}, "note": {"type": "string"}},
                        "required": ["amount"],
                        "additionalProperties": false
                    }),
                    1 => json!({
                        "type": "object",
                        "properties": {"amount": {"type": "number"}, "note": {"type": "string", "maxLength": 20}},
                        "required": ["amount"],
                        "additionalProperties": false
                    }),
                    _ => json!({
                        "type": "object",
                        "properties": {
                            "amount": {"type": "integer"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "when": {"type": "string", "format": "date-time"}
                        },
                        "required": ["amount"]
                    }),
                },
            })
            .collect();
        // `context.input.amount > n`, typed for the tool's shape.
        let above = |tool: usize, n: u32| match shapes.get(tool) {
            Some(1) => format!("context.input.amount.greaterThan(decimal(\"{n}.5\"))"),
            _ => format!("context.input.amount > {n}"),
        };
        let below = |tool: usize, n: u32| match shapes.get(tool) {
            Some(1) => format!("context.input.amount.lessThan(decimal(\"{n}.0\"))"),
            _ => format!("context.input.amount < {n}"),
        };

        let mut policies = Vec::new();
        for i in 0..(rng.next_u32() % 5) {
            let k = (rng.next_u32() % 3) as usize;
            let tool = format!("gt{k}");
            let n = rng.next_u32() % 1000;
            let head = format!("@id(\"gen.{i}\")\n");
            let on_tool = format!("(principal, action == Action::\"{tool}\", resource)");
            let text = match rng.next_u32() % 6 {
                0 => format!("{head}forbid {on_tool}\nwhen {{ {} }};", above(k, n)),
                1 => format!(
                    "{head}@approval(\"approver\")\nforbid {on_tool}\nwhen {{ {} }};",
                    above(k, n)
                ),
                2 => format!(
                    "{head}@limit(\"model_calls\")\nforbid (principal, action == Action::\"call_model\", resource)\nwhen {{ context.session.model_calls >= {} }};",
                    n % 8 + 1
                ),
                3 => format!(
                    "{head}permit {on_tool}\nwhen {{ resource.risk == \"critical\" && {} }};",
                    below(k, n)
                ),
                4 => format!(
                    "{head}@timeout_ms(\"{}\")\n@max_retries(\"{}\")\npermit (principal, action in Action::\"call_tool\", resource);",
                    n * 10 + 1,
                    n % 4
                ),
                // Overflows for large amounts: Cedar would skip this forbid; the kernel must deny.
                _ if shapes.get(k) != Some(&1) => {
                    format!(
                        "{head}forbid {on_tool}\nwhen {{ context.input.amount * 4611686018427387904 > {n} }};"
                    )
                }
                _ => format!(
                    "{head}forbid {on_tool}\nwhen {{ context.session.labels.contains(\"pii\") && {} }};",
                    above(k, n)
                ),
            };
            policies.push(text);
        }
        // Every world has a forbid that errors (overflows) for huge amounts: Cedar would skip it,
        // the kernel must deny, and the oracle must agree.
        policies.push(
            "@id(\"gen.overflow\")\nforbid (principal, action == Action::\"gt0\", resource)\nwhen { context.input.amount * 1099511627776 > 0 };"
                .to_owned(),
        );
        // Policies scoped to one tenant, agent or user, which the gate files under that entity:
        // the oracle checks that filing them away from other principals changes no decision.
        policies.extend(
            [
                "@id(\"gen.scoped.tenant\")\nforbid (principal in Tenant::\"t1\", action == Action::\"gt0\", resource)\nwhen { context.input.amount > 700 };",
                "@id(\"gen.scoped.agent\")\npermit (principal == Agent::\"agent@t0\", action in Action::\"call_tool\", resource)\nwhen { resource.risk == \"critical\" };",
                "@id(\"gen.scoped.user\")\nforbid (principal == User::\"user@t0\", action == Action::\"endorse\", resource);",
                "@id(\"gen.scoped.is_in\")\n@approval(\"approver\")\nforbid (principal is Agent in Tenant::\"t0\", action == Action::\"gt0\", resource)\nwhen { context.input.amount > 900 };",
                // Filed by the literal they compare first (the gate asks Cedar only about the
                // request's own value).
                "@id(\"gen.keyed.steps\")\nforbid (principal, action == Action::\"gt0\", resource)\nwhen { context.session.steps == 2 };",
                "@id(\"gen.keyed.first\")\n@approval(\"approver\")\nforbid (principal, action == Action::\"gt0\", resource)\nwhen { 1 == context.session.steps && context.input.amount > 1000 };",
                // Shadow mode is permitted for one tenant's agent only: log_only cases elsewhere
                // are refused at start, and the oracle checks both.
                "@id(\"gen.start.shadow\")\npermit (principal, action == Action::\"start_session\", resource == Agent::\"agent@t0\")\nwhen { context.mode == \"log_only\" };",
            ]
            .map(str::to_owned),
        );
        let policy_text = policies.join("\n\n");

        let packs: Vec<&str> = pack.into_iter().collect();
        let wrap = |source| ScenarioError::Policies {
            file: format!("generated world on {packs:?}"),
            source,
        };
        let mut builder = builder_for(root, &packs).map_err(wrap)?;
        builder = builder
            .entities(Source::new(
                "<generated entities>",
                serde_json::to_string_pretty(&entities).unwrap_or_default(),
            ))
            .policies(Source::new("<generated policies>", policy_text.clone()));
        for t in &tools {
            builder = builder.tool(t.clone(), "<generated tools>");
        }
        let deployment = builder.build().map_err(|e| wrap(e.into()))?;
        let tool_names: Vec<String> = deployment.tool_names().map(str::to_owned).collect();
        let samples = tool_names
            .iter()
            .map(|t| {
                deployment
                    .tool(t)
                    .map_or_else(Sample::default, |spec| Sample::of(&spec.input_schema))
            })
            .collect();
        Ok(Self {
            pack: pack.map(str::to_owned),
            entities,
            tools,
            policy_text,
            tool_names,
            samples,
            deployment: Arc::new(deployment),
        })
    }
}

/// Strings tried for a string argument; each case picks among those its schema accepts.
const STRINGS: [&str; 18] = [
    "ord-42",
    "T-1001",
    "c-7",
    "/workspace/src/lib.rs",
    "/workspace",
    "/workspace/../etc/passwd",
    "/etc/passwd",
    "cargo test",
    "rm -rf target",
    "git clean -fdx",
    "x@y.example",
    "https://example.org/a",
    "2026-11-24T10:00:00Z",
    "10.0.0.1",
    "A-1",
    "main",
    "hello",
    "x",
];

/// A tool's sample input and, per top-level string argument, the strings its schema accepts.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// A valid input.
    pub input: Value,
    /// (argument, accepted candidates) for each top-level string argument.
    pub strings: Vec<(String, Vec<String>)>,
}

impl Sample {
    fn of(schema: &Value) -> Self {
        let mut strings = Vec::new();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                if sub.get("type").and_then(Value::as_str) == Some("string")
                    && sub.get("enum").is_none()
                {
                    let ok = accepted(sub);
                    if !ok.is_empty() {
                        strings.push((name.clone(), ok));
                    }
                }
            }
        }
        Self {
            input: sample(schema),
            strings,
        }
    }

    /// The sample with its strings chosen by `variant` and its integers set to `amount`.
    pub fn instance(&self, variant: u32, amount: i64) -> Value {
        let mut input = self.input.clone();
        if let Some(map) = input.as_object_mut() {
            for v in map.values_mut() {
                if v.is_i64() {
                    *v = json!(amount);
                } else if v.is_boolean() {
                    *v = json!(variant & 1 == 1);
                }
            }
            let mut bits = variant >> 1;
            for (name, candidates) in &self.strings {
                let Some(pick) = (bits as usize)
                    .checked_rem(candidates.len())
                    .and_then(|i| candidates.get(i))
                    .cloned()
                else {
                    continue;
                };
                bits = bits.rotate_right(5);
                map.insert(name.clone(), json!(pick));
            }
        }
        input
    }
}

fn accepted(schema: &Value) -> Vec<String> {
    let Ok(validator) = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
    else {
        return Vec::new();
    };
    STRINGS
        .iter()
        .filter(|c| validator.is_valid(&json!(c)))
        .map(|c| (*c).to_owned())
        .collect()
}

/// A value valid under `schema` (best effort: every property filled in).
fn sample(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(false),
        Some("string") => json!(accepted(schema).first().map_or("x", String::as_str)),
        Some("array") => json!([sample(schema.get("items").unwrap_or(&Value::Null))]),
        _ => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    out.insert(name.clone(), sample(sub));
                }
            }
            Value::Object(out)
        }
    }
}
