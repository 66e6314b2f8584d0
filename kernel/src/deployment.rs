//! A deployment: the compiled bundle sessions run against, built once from named sources.

use std::collections::BTreeMap;

use cedar_policy::{Entities, EntityUid};
use serde_json::Value;

pub use crate::bundle::BundleHashes;
use crate::error::{LoadError, LoadErrors, full_message};
use crate::event::{HashError, canonical_json, sha256_hex};
use crate::gate::{
    Ask, Decision, Gate, Mode, RequestContext, Val, load_policies, load_schema, validate_policies,
};
use crate::history::Counters;
use crate::source::{Located, Source};
use crate::tools::{Tool, ToolRegistry, ToolSpec, uid};

/// The compiled bundle: schema, policies, entities, tools and counters. Immutable; share it
/// (e.g. in an `Arc`) between the sessions that run against it.
pub struct Deployment {
    pub(crate) gate: Gate,
    pub(crate) actions: Actions,
    pub(crate) tools: ToolRegistry,
    pub(crate) counters: Counters,
    schema_text: String,
    sources: BundleSources,
    /// [`BundleSources::hash`], computed on first use: every session a store begins names it.
    bundle_hash: std::sync::OnceLock<Result<String, HashError>>,
    /// The policies [`Deployment::may_call`] evaluates, built on first use.
    listing: std::sync::OnceLock<crate::gate::Listing>,
}

/// Everything a deployment was built from, so a store can keep it once (by [`BundleSources::hash`])
/// and an auditor can rebuild exactly the deployment a recorded decision was made under.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleSources {
    /// The base schema.
    pub schema: Option<Source>,
    /// Policy files, in load order.
    pub policies: Vec<Source>,
    /// Entity files, in load order.
    pub entities: Vec<Source>,
    /// Tool files, in load order.
    pub tool_files: Vec<Source>,
    /// Tools registered one by one, with their origin.
    pub tools: Vec<(ToolSpec, String)>,
    /// Counter files, in load order.
    pub counters: Vec<Source>,
}

impl BundleSources {
    /// SHA-256 over the canonical JSON of every source: the bundle's identity in a store.
    pub fn hash(&self) -> Result<String, HashError> {
        let value = serde_json::to_value(self)
            .map_err(|e| <HashError as serde::ser::Error>::custom(e.to_string()))?;
        Ok(sha256_hex(canonical_json(&value).as_bytes()))
    }

    /// Rebuilds the deployment.
    pub fn build(&self) -> Result<Deployment, LoadErrors> {
        let schema = self
            .schema
            .clone()
            .unwrap_or_else(|| Source::new("schema", ""));
        let mut b = Deployment::builder(schema);
        for s in &self.policies {
            b = b.policies(s.clone());
        }
        for s in &self.entities {
            b = b.entities(s.clone());
        }
        for s in &self.tool_files {
            b = b.tools_json(s.clone());
        }
        for (spec, origin) in &self.tools {
            b = b.tool(spec.clone(), origin.clone());
        }
        for s in &self.counters {
            b = b.counters(s.clone());
        }
        b.build()
    }
}

impl Deployment {
    /// Starts a builder from the base schema text.
    pub fn builder(schema: Source) -> DeploymentBuilder {
        DeploymentBuilder {
            sources: BundleSources {
                schema: Some(schema.clone()),
                ..BundleSources::default()
            },
            schema,
            policies: Vec::new(),
            entities: Vec::new(),
            tools: Vec::new(),
            errors: Vec::new(),
            counters: Vec::new(),
        }
    }

    /// What this deployment was built from.
    pub fn sources(&self) -> &BundleSources {
        &self.sources
    }

    /// The hash a store keeps [`Deployment::sources`] under, computed once per deployment
    /// (serializing and hashing every source is far dearer than the session it names).
    /// A bundle that cannot be serialized has no hash, and no store may keep it under one.
    pub fn bundle_hash(&self) -> Result<&str, HashError> {
        self.bundle_hash
            .get_or_init(|| self.sources.hash())
            .as_deref()
            .map_err(Clone::clone)
    }

    /// The hashes each session records when it starts (`session_started`).
    pub fn hashes(&self) -> &BundleHashes {
        &self.gate.hashes
    }

    /// The complete Cedar schema, including the generated tool actions and `History` type.
    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }

    /// Registered tool names, sorted.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.names()
    }

    /// A registered tool's specification.
    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.get(name).map(|t| &t.spec)
    }

    /// Whether agent `agent` could ever be permitted to call `tool`, whatever the call's context
    /// (a partial evaluation; see `gate::reach`): `false` means every call would be denied; `true`
    /// promises nothing.
    pub fn may_call(&self, agent: &str, tool: &str) -> bool {
        let Some(entry) = self.tools.get(tool) else {
            return false;
        };
        let Ok(principal) = uid("Agent", agent) else {
            return false;
        };
        let listing = self.listing.get_or_init(|| {
            crate::gate::Listing::new(
                &self.gate.schema,
                &self.gate.policies.cedar,
                &self.gate.entities,
            )
        });
        listing.may_permit(&self.gate.schema, (&principal, &entry.action, &entry.uid))
    }

    /// Policy ids, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.gate.meta.values().map(|m| m.id().to_owned()).collect();
        ids.sort();
        ids
    }

    /// The Cedar schema in force (for oracles and tooling that call Cedar directly).
    pub fn cedar_schema(&self) -> &cedar_policy::Schema {
        &self.gate.schema
    }

    /// The Cedar policy set in force, keyed by `@id`.
    pub fn cedar_policies(&self) -> &cedar_policy::PolicySet {
        &self.gate.policies.cedar
    }

    /// The Cedar entities in force, including the generated `Tool` entities.
    pub fn cedar_entities(&self) -> &cedar_policy::Entities {
        &self.gate.entities
    }

    /// Decides one request given in Cedar syntax (`Agent::"a"`, `Action::"refund"`, ...) with a
    /// JSON context, as `arbiter explain` shows it. Fails closed like a session: an unparsable uid
    /// or a context that does not match the action's schema comes back as a denial with the error.
    pub fn explain(
        &self,
        principal: &str,
        action: &str,
        resource: &str,
        context: &Value,
    ) -> Decision {
        use std::str::FromStr;
        let parse =
            |what: &str, s: &str| EntityUid::from_str(s).map_err(|e| format!("{what} `{s}`: {e}"));
        let parsed = parse("principal", principal)
            .and_then(|p| Ok((p, parse("action", action)?, parse("resource", resource)?)));
        let (p, a, r) = match parsed {
            Ok(uids) => uids,
            Err(error) => {
                let unknown =
                    uid("Action", "unknown").unwrap_or_else(|_| self.actions.call_model.clone());
                let mut d = Decision::new(&unknown, &unknown, &unknown, Mode::Enforce);
                d.errors.push(format!("invalid request: {error}"));
                d.settle(false);
                return d;
            }
        };
        let context = self.explained_context(&p, &a, &r, context);
        // Checked whole against the schema above; trimmed, it is what a session would send, which
        // is not validated per request either.
        let ask = Ask {
            principal: &p,
            action: &a,
            resource: &r,
            context,
            full: None,
            validate: false,
        };
        self.gate.authorize(ask, &[], Mode::Enforce, None)
    }

    /// The context a session would hand the gate for this JSON: checked against the action's
    /// context type, then built as the kernel's own values and trimmed to what the action's
    /// policies read, so the policy index, the trimming and the kernel's evaluator all take part
    /// as they do in a live session.
    fn explained_context(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
        json: &Value,
    ) -> Result<RequestContext, String> {
        let cedar =
            cedar_policy::Context::from_json_value(json.clone(), Some((&self.gate.schema, action)))
                .map_err(|e| full_message(&e))?;
        cedar_policy::Request::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            cedar.clone(),
            Some(&self.gate.schema),
        )
        .map_err(|e| full_message(&e))?;
        let demand = self.gate.demand(action);
        let wants = |top: &str| demand.is_none_or(|d| d.wants(top));
        let keys: Vec<&String> = json
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let mut pairs = Vec::with_capacity(keys.len());
        for key in keys {
            // `input` is always kept, as a session keeps it (its errors must deny).
            if key != "input" && !wants(key) {
                continue;
            }
            let Some(value) = cedar.get(key) else {
                continue;
            };
            let value = match (Val::from_eval_rebuilt(&value), demand) {
                (Val::Record(fields), Some(d)) if key == "session" || key == "history" => {
                    Val::Record(
                        fields
                            .into_iter()
                            .filter(|(sub, _)| d.wants_in(key, sub))
                            .collect(),
                    )
                }
                (v, _) => v,
            };
            pairs.push((key.clone(), value));
        }
        Val::record(pairs).map(RequestContext::Built)
    }

    /// Cedar's own answer to the request `explain` decides, with the whole context and every
    /// policy, none of the kernel's machinery: `(allowed, determining ids, errors)`. Shown beside
    /// the kernel's decision, so an author sees both agree (or where they do not).
    pub fn explain_cedar(
        &self,
        principal: &str,
        action: &str,
        resource: &str,
        context: &Value,
    ) -> Result<(bool, Vec<String>, Vec<String>), String> {
        use std::str::FromStr;
        let parse =
            |what: &str, s: &str| EntityUid::from_str(s).map_err(|e| format!("{what} `{s}`: {e}"));
        let (p, a, r) = (
            parse("principal", principal)?,
            parse("action", action)?,
            parse("resource", resource)?,
        );
        let context =
            cedar_policy::Context::from_json_value(context.clone(), Some((&self.gate.schema, &a)))
                .map_err(|e| full_message(&e))?;
        let request = cedar_policy::Request::new(p, a, r, context, Some(&self.gate.schema))
            .map_err(|e| full_message(&e))?;
        let response = cedar_policy::Authorizer::new().is_authorized(
            &request,
            &self.gate.policies.cedar,
            &self.gate.entities,
        );
        let mut ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        ids.sort();
        let errors = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        Ok((
            response.decision() == cedar_policy::Decision::Allow,
            ids,
            errors,
        ))
    }

    pub(crate) fn tool_entry(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }
}

/// Collects sources, then [`DeploymentBuilder::build`] checks everything and reports every problem.
pub struct DeploymentBuilder {
    sources: BundleSources,
    schema: Source,
    policies: Vec<Source>,
    entities: Vec<Source>,
    tools: Vec<(ToolSpec, Located)>,
    errors: Vec<LoadError>,
    counters: Vec<Source>,
}

impl DeploymentBuilder {
    /// Adds a file of Cedar policies; every policy needs an `@id`.
    pub fn policies(mut self, source: Source) -> Self {
        self.sources.policies.push(source.clone());
        self.policies.push(source);
        self
    }

    /// Adds an entities file (Cedar entity JSON: an array of `{uid, attrs, parents}`).
    pub fn entities(mut self, source: Source) -> Self {
        self.sources.entities.push(source.clone());
        self.entities.push(source);
        self
    }

    /// Registers one tool; `origin` names where it was defined, for errors.
    pub fn tool(mut self, spec: ToolSpec, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        self.sources.tools.push((spec.clone(), origin.clone()));
        self.tools.push((spec, Located::file(origin)));
        self
    }

    /// Registers the tools in a JSON file holding one tool object or an array of them.
    pub fn tools_json(mut self, source: Source) -> Self {
        self.sources.tool_files.push(source.clone());
        // Parse straight from text so serde's errors carry line and column.
        let parsed = if source.text.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<ToolSpec>>(&source.text)
        } else {
            serde_json::from_str::<ToolSpec>(&source.text).map(|t| vec![t])
        };
        match parsed {
            Ok(specs) => {
                for spec in specs {
                    let at = json_key_location(&source, &spec);
                    self.tools.push((spec, at));
                }
            }
            Err(e) => {
                let at = if e.line() > 0 {
                    source.at_line(e.line(), e.column())
                } else {
                    source.whole()
                };
                let tool = source
                    .name
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".json")
                    .to_owned();
                self.errors.push(LoadError::Tool {
                    at,
                    tool,
                    message: e.to_string(),
                });
            }
        }
        self
    }

    /// Adds a counters file (`counters.toml`).
    pub fn counters(mut self, source: Source) -> Self {
        self.sources.counters.push(source.clone());
        self.counters.push(source);
        self
    }

    /// Checks and compiles everything but the request contract (`DeploymentBuilder::build`, in
    /// the session layer, adds it); with the deployment, where its schema starts. On failure,
    /// lists every problem found, each located.
    pub(crate) fn compile(self) -> Result<(Deployment, Located), LoadErrors> {
        let mut errors = self.errors;
        let tools = ToolRegistry::build(self.tools, &mut errors);
        let counters = Counters::load(&self.counters, &tools, &mut errors);
        let generated = format!("{}{}", counters.cedar_schema(), tools.cedar_schema());
        let (policies, meta) = load_policies(&self.policies, &mut errors);
        let (schema, schema_text) = match load_schema(&self.schema, &generated) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e);
                return Err(LoadErrors(errors));
            }
        };
        validate_policies(&schema, &policies, &meta, &self.policies, &mut errors);
        let entity_json = collect_entities(&self.entities, &tools, &mut errors);
        let entities =
            match Entities::from_json_value(Value::Array(entity_json.clone()), Some(&schema)) {
                Ok(e) => Some(e),
                Err(e) => {
                    errors.push(blame_entity(
                        &self.entities,
                        &entity_json,
                        &schema,
                        &full_message(&e),
                    ));
                    None
                }
            };
        let Some(entities) = entities.filter(|_| errors.is_empty()) else {
            return Err(LoadErrors(errors));
        };
        let mut ids: Vec<_> = policies
            .policies()
            .map(|p| (p.id().to_string(), p.to_string()))
            .collect();
        ids.sort();
        let policy_text: String = ids
            .iter()
            .map(|(id, text)| format!("{id}\n{text}\n"))
            .collect();
        let hashes = BundleHashes {
            policies: sha256_hex(policy_text.as_bytes()),
            schema: sha256_hex(schema_text.as_bytes()),
            entities: sha256_hex(canonical_json(&Value::Array(entity_json)).as_bytes()),
        };
        let gate = Gate::new(schema, policies, entities, meta, hashes);
        let actions = Actions::new().map_err(|message| {
            LoadErrors(vec![LoadError::Schema {
                at: self.schema.whole(),
                message,
            }])
        })?;
        let schema_at = self.schema.whole();
        let deployment = Deployment {
            gate,
            actions,
            tools,
            counters,
            schema_text,
            sources: self.sources,
            bundle_hash: std::sync::OnceLock::new(),
            listing: std::sync::OnceLock::new(),
        };
        Ok((deployment, schema_at))
    }
}

/// The built-in actions' uids, made once.
pub(crate) struct Actions {
    pub call_model: EntityUid,
    pub read_memory: EntityUid,
    pub write_memory: EntityUid,
    pub spend_budget: EntityUid,
    pub approve: EntityUid,
    pub cancel: EntityUid,
    pub endorse: EntityUid,
    pub continue_session: EntityUid,
    pub start_session: EntityUid,
}

impl Actions {
    fn new() -> Result<Self, String> {
        let a = |name: &str| uid("Action", name);
        Ok(Self {
            call_model: a("call_model")?,
            read_memory: a("read_memory")?,
            write_memory: a("write_memory")?,
            spend_budget: a("spend_budget")?,
            approve: a("approve")?,
            cancel: a("cancel")?,
            endorse: a("endorse")?,
            continue_session: a("continue_session")?,
            start_session: a("start_session")?,
        })
    }
}

fn json_key_location(source: &Source, spec: &ToolSpec) -> Located {
    let needle = format!("\"{}\"", spec.name);
    source
        .text
        .find(&needle)
        .map_or_else(|| source.whole(), |o| source.locate(o, needle.len()))
}

/// Every entity from the files (checked for JSON syntax, shape and duplicates) plus the tools.
fn collect_entities(
    sources: &[Source],
    tools: &ToolRegistry,
    errors: &mut Vec<LoadError>,
) -> Vec<Value> {
    let mut all = Vec::new();
    let mut seen: BTreeMap<String, Located> = BTreeMap::new();
    for source in sources {
        let items = match serde_json::from_str::<Value>(&source.text) {
            Ok(Value::Array(items)) => items,
            Ok(_) => {
                let message = "must be a JSON array of entities".into();
                errors.push(LoadError::Entities {
                    at: source.whole(),
                    message,
                });
                continue;
            }
            Err(e) => {
                errors.push(LoadError::Entities {
                    at: source.at_line(e.line(), e.column()),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let offsets = element_offsets(source);
        for (i, item) in items.into_iter().enumerate() {
            let at = offsets
                .get(i)
                .map_or_else(|| source.whole(), |&offset| source.locate(offset, 1));
            let uid = item.get("uid");
            let ty = uid
                .and_then(|u| u.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let id = uid
                .and_then(|u| u.get("id"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let key = format!("{ty}::\"{id}\"");
            if ty == "Tool" {
                let message = format!(
                    "{key}: Tool entities come from the tool registry; register the tool instead"
                );
                errors.push(LoadError::Entities { at, message });
                continue;
            }
            if let Some(first) = seen.get(&key) {
                let message = format!("{key} is defined twice (first at {first})");
                errors.push(LoadError::Entities { at, message });
                continue;
            }
            seen.insert(key, at);
            all.push(item);
        }
    }
    // A tenant-private tool of a tenant that does not exist would serve nobody, silently.
    for tool in tools.all() {
        if let Some(tenant) = &tool.spec.tenant
            && !seen.contains_key(&format!("Tenant::\"{tenant}\""))
        {
            errors.push(LoadError::Tool {
                at: tool.at.clone(),
                tool: tool.spec.name.clone(),
                message: format!("owned by tenant `{tenant}`, which no entities file defines"),
            });
        }
    }
    all.extend(tools.entities_json());
    all
}

/// Cedar reports entity errors without positions: find the first entity that fails on its own.
fn blame_entity(
    sources: &[Source],
    all: &[Value],
    schema: &cedar_policy::Schema,
    whole: &str,
) -> LoadError {
    for (i, item) in all.iter().enumerate() {
        if let Err(e) = Entities::from_json_value(Value::Array(vec![item.clone()]), Some(schema)) {
            let at = locate_entity(sources, item)
                .unwrap_or_else(|| Located::file(format!("<entity #{i}>")));
            return LoadError::Entities {
                at,
                message: full_message(&e),
            };
        }
    }
    let at = sources
        .first()
        .map_or_else(|| Located::file("<entities>"), Source::whole);
    LoadError::Entities {
        at,
        message: whole.to_owned(),
    }
}

fn locate_entity(sources: &[Source], item: &Value) -> Option<Located> {
    for source in sources {
        if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&source.text)
            && let Some(i) = items.iter().position(|v| v == item)
        {
            return Some(element_location(source, i));
        }
    }
    None
}

/// The position of the `index`-th element of the top-level JSON array in `source`.
fn element_location(source: &Source, index: usize) -> Located {
    element_offsets(source)
        .get(index)
        .map_or_else(|| source.whole(), |&offset| source.locate(offset, 1))
}

/// The byte offset of every element of the top-level JSON array in `source`, in one pass.
fn element_offsets(source: &Source) -> Vec<usize> {
    let mut offsets = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in source.text.as_bytes().iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                if depth == 1 {
                    offsets.push(offset);
                }
                depth += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    offsets
}
