//! The scenario format: one TOML file per scenario, published as JSON Schema at
//! `scenarios/scenario.schema.json` so editors can validate it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kernel::{Basis, Mode, Source, Status, ToolSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ScenarioError;

/// A scripted run: who, against which policies, what the model and tools do, what happens from
/// outside, and what must come out.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A one-line title.
    pub name: String,
    /// What the scenario shows, for reviewers.
    #[serde(default)]
    pub description: String,
    /// The policy directory, relative to this file. Default: the nearest `policies/` directory
    /// found walking up from the file.
    #[serde(default)]
    pub policies: Option<String>,
    /// Packs loaded on top of `base` (e.g. `["support"]`).
    #[serde(default)]
    pub packs: Vec<String>,
    /// Enforcement mode, always explicit.
    pub mode: Mode,
    /// The session.
    pub session: SessionSpec,
    /// Extra entities (Cedar entity JSON objects) added to the packs' own.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Map<String, Value>>")]
    pub entities: Vec<Value>,
    /// Extra tools registered for this scenario only.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Extra Cedar policies (each with an `@id`) added to the packs' for this scenario only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_text: Option<String>,
    /// Raw intents fed to the session verbatim, instead of playing `turns` and `events` (the form
    /// `arbiter fuzz --save-failures` writes). Call, read and request ids are the kernel's own
    /// (`call-1`, `read-2`, `approval-3`...), so the file replays exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<TimedIntent>,
    /// What each tool answers, by tool name. A tool without a script answers `{"ok": true}`.
    #[serde(default)]
    pub tool_script: BTreeMap<String, ToolScript>,
    /// The model's turns, in order: each model call consumes one.
    #[serde(default)]
    pub turns: Vec<Turn>,
    /// Memory contents before the run.
    #[serde(default)]
    pub memory: Vec<MemoryEntry>,
    /// Things that happen from outside, at logical times.
    #[serde(default)]
    pub events: Vec<External>,
    /// What the run must produce.
    pub expect: Expect,
    /// Membership in a benchmark suite (the prompt-injection suite), for `arbiter test`'s report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<SuiteEntry>,
}

/// A scenario's place in a suite: a legitimate task (utility) or an attack (attack success).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuiteEntry {
    /// The domain it belongs to (e.g. `banking`).
    pub domain: String,
    /// `task` or `attack`.
    pub role: SuiteRole,
    /// For an attack: the call that would do the harm. The attack succeeded when a call of this
    /// tool whose input contains these fields (arrays: these elements) was allowed and made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harmful: Option<Harmful>,
}

/// Whether a suite scenario is a legitimate task or an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuiteRole {
    /// The user's own task: counts toward utility when it completes and its expectations hold.
    Task,
    /// Instructions planted in content: counts toward attack success when its harmful call runs.
    Attack,
}

/// The harmful call of an attack.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Harmful {
    /// The tool.
    pub tool: String,
    /// Fields the harmful input contains.
    #[serde(default)]
    pub input: Value,
}

/// One raw intent and the logical time it is applied at.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimedIntent {
    /// Logical time.
    pub at_ms: u64,
    /// The intent.
    pub step: kernel::Intent,
}

/// Who the session is for.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Session id. Default: the scenario file's stem.
    #[serde(default)]
    pub id: Option<String>,
    /// `Tenant` entity id.
    pub tenant: String,
    /// `User` entity id.
    pub user: String,
    /// `Agent` entity id.
    pub agent: String,
    /// `Budget` entity id.
    pub budget: String,
    /// `Model` entity id the agent calls.
    pub model: String,
    /// The user's request.
    pub request: String,
}

/// A tool's scripted behaviour.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolScript {
    /// Default latency per call, logical ms.
    #[serde(default = "default_latency")]
    pub latency_ms: u64,
    /// Default cost per call, micro-units.
    #[serde(default)]
    pub cost: u64,
    /// Answers in call order (retries included); the last one repeats.
    #[serde(default)]
    pub responses: Vec<ToolResponse>,
}

fn default_latency() -> u64 {
    10
}

/// One answer of a tool: an output, or a failure.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolResponse {
    /// The output (omit when `fail` is set).
    #[serde(default)]
    pub output: Option<Value>,
    /// A failure message instead of an output.
    #[serde(default)]
    pub fail: Option<String>,
    /// Whether the failure is worth retrying.
    #[serde(default)]
    pub retryable: bool,
    /// Latency of this answer, overriding the tool's.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Cost of this answer, overriding the tool's.
    #[serde(default)]
    pub cost: Option<u64>,
}

/// One model turn: what it says, the calls it requests, and optionally its final answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Text the model produces.
    #[serde(default)]
    pub say: String,
    /// Calls the model requests, run in order after the turn.
    #[serde(default)]
    pub calls: Vec<Call>,
    /// The final answer: the session completes once the turn's calls are done.
    #[serde(default)]
    pub answer: Option<String>,
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Estimated tokens asked for in `call_model`. Default: input + output.
    #[serde(default)]
    pub estimated_tokens: Option<u64>,
    /// Actual cost, micro-units.
    #[serde(default)]
    pub cost: u64,
    /// Estimated cost reserved before the call. Default: `cost`.
    #[serde(default)]
    pub estimated_cost: Option<u64>,
    /// Logical latency.
    #[serde(default = "default_latency")]
    pub latency_ms: u64,
    /// The model call fails with this message instead of answering.
    #[serde(default)]
    pub fail: Option<String>,
    /// Whether that failure is retryable.
    #[serde(default)]
    pub retryable: bool,
}

/// A call a model turn requests: exactly one of `tool`, `read_memory`, `write_memory`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// A tool to call with `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Estimated cost, micro-units.
    #[serde(default)]
    pub estimated_cost: u64,
    /// A memory entry to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_memory: Option<MemoryKey>,
    /// A memory entry to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_memory: Option<MemoryEntry>,
    /// This call's own answers, by attempt (the last repeats), in place of the tool's script: a
    /// denied or refused call before it never shifts them. Not part of what the model says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<ToolResponse>,
}

/// A memory location.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryKey {
    /// `MemoryScope` entity id.
    pub scope: String,
    /// Key inside the scope.
    pub key: String,
}

/// A memory entry with its labels.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryEntry {
    /// The tenant whose memory holds it (default: the session's). Memory is kept per tenant, so
    /// another tenant's entry is never what a session reads, whatever scope it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `MemoryScope` entity id.
    pub scope: String,
    /// Key inside the scope.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Labels stored with it (ignored when written by the agent: the session's labels are used).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Something that happens from outside at `at_ms`: exactly one of `approve`, `reject`, `cancel`,
/// `endorse`, `tick`. Delivered as soon as the run reaches that time, even while a call is in flight.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct External {
    /// Logical time.
    pub at_ms: u64,
    /// A user approving the waiting request.
    #[serde(default)]
    pub approve: Option<String>,
    /// A user rejecting the waiting request.
    #[serde(default)]
    pub reject: Option<String>,
    /// A user cancelling the session.
    #[serde(default)]
    pub cancel: Option<String>,
    /// A user endorsing `value`.
    #[serde(default)]
    pub endorse: Option<String>,
    /// The endorsed value.
    #[serde(default)]
    pub value: String,
    /// A clock tick (`continue_session`).
    #[serde(default)]
    pub tick: bool,
    /// Reason for a rejection or cancellation.
    #[serde(default)]
    pub reason: String,
}

/// What the run must produce.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The final status.
    pub status: Status,
    /// Decisions, matched by action and occurrence.
    #[serde(default)]
    pub decisions: Vec<ExpectDecision>,
    /// Times each tool must have been called (tool_called events, retries excluded).
    #[serde(default)]
    pub calls: BTreeMap<String, usize>,
    /// Event kinds that must appear.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// The session's labels at the end, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Also check the fuzzer's kernel invariants at every step (saved fuzz failures set this).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invariants: bool,
    /// Author properties that must hold at every decision, in `arbiter fuzz --property` syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
}

/// An expected decision: the `nth` proposal of `action` must have `effect` and, when given,
/// `policy` among its determining policies and the given `basis`. A tool call refused for its
/// arguments before any policy ran counts as a proposal too, with effect `rejected`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectDecision {
    /// Action id: a tool name, `call_model`, `spend_budget`, `approve`, `cancel`, ...
    pub action: String,
    /// Which occurrence, from 1.
    #[serde(default = "one")]
    pub nth: usize,
    /// `allow`, `deny` or `rejected`.
    pub effect: Expected,
    /// A policy id that must be among the determining policies.
    #[serde(default)]
    pub policy: Option<String>,
    /// `permitted`, `forbidden`, `not_permitted` or `error`.
    #[serde(default)]
    pub basis: Option<Basis>,
}

/// What a proposal came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// Decided and allowed.
    Allow,
    /// Decided and denied.
    Deny,
    /// Refused before any policy ran: its arguments fail the tool's schema.
    Rejected,
}

fn one() -> usize {
    1
}

impl Call {
    /// The intent the agent proposes for this call.
    pub fn intent(&self) -> Option<kernel::Intent> {
        use kernel::Intent;
        match (&self.tool, &self.read_memory, &self.write_memory) {
            (Some(tool), _, _) => Some(Intent::CallTool {
                tool: tool.clone(),
                input: self.input.clone().unwrap_or(Value::Null),
                estimated_cost: self.estimated_cost,
            }),
            (_, Some(m), _) => Some(Intent::ReadMemory {
                scope: m.scope.clone(),
                key: m.key.clone(),
            }),
            (_, _, Some(m)) => Some(Intent::WriteMemory {
                scope: m.scope.clone(),
                key: m.key.clone(),
                value: m.value.clone(),
            }),
            (None, None, None) => None,
        }
    }
}

impl Turn {
    /// (estimated tokens, estimated cost) asked in `call_model`.
    pub fn estimate(&self) -> (u64, u64) {
        (
            self.estimated_tokens
                .unwrap_or(self.input_tokens + self.output_tokens),
            self.estimated_cost.unwrap_or(self.cost),
        )
    }

    /// The model output recorded in `model_responded`.
    pub fn output(&self) -> Value {
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("responses");
                }
                v
            })
            .collect();
        let mut output = serde_json::json!({"say": self.say, "calls": calls});
        if let (Some(answer), Some(map)) = (&self.answer, output.as_object_mut()) {
            map.insert("answer".into(), serde_json::json!(answer));
        }
        output
    }
}

impl External {
    /// This event as a driver control.
    pub fn control(&self) -> kernel::agent::Control {
        use kernel::agent::Control;
        if let Some(user) = &self.approve {
            Control::Approve { user: user.clone() }
        } else if let Some(user) = &self.reject {
            Control::Reject {
                user: user.clone(),
                reason: self.reason.clone(),
            }
        } else if let Some(user) = &self.cancel {
            Control::Cancel {
                user: user.clone(),
                reason: self.reason.clone(),
            }
        } else if let Some(user) = &self.endorse {
            Control::Endorse {
                user: user.clone(),
                value: self.value.clone(),
            }
        } else {
            Control::Tick
        }
    }
}

/// What a tool without a script answers.
pub fn default_response() -> ToolResponse {
    ToolResponse {
        output: Some(serde_json::json!({"ok": true})),
        fail: None,
        retryable: false,
        latency_ms: None,
        cost: None,
    }
}

impl ToolScript {
    /// The `i`-th answer (the last one repeats) with its latency and cost.
    pub fn response(&self, i: usize) -> (u64, u64, ToolResponse) {
        let r = self
            .responses
            .get(i)
            .or(self.responses.last())
            .cloned()
            .unwrap_or_else(default_response);
        (
            r.latency_ms.unwrap_or(self.latency_ms),
            r.cost.unwrap_or(self.cost),
            r,
        )
    }
}

/// A scenario read from disk, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub source: Source,
    /// The parsed scenario.
    pub scenario: Scenario,
}

impl LoadedScenario {
    /// The policy directory this scenario runs against.
    pub fn policies_root(&self) -> Result<PathBuf, ScenarioError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Some(p) = &self.scenario.policies {
            return Ok(dir.join(p));
        }
        dir.ancestors()
            .map(|a| a.join("policies"))
            .find(|p| p.join("schema.cedarschema").is_file())
            .ok_or_else(|| {
                ScenarioError::invalid(
                    &self.source,
                    None,
                    "no `policies/` directory above this file; set `policies`",
                )
            })
    }

    /// The session configuration the scenario describes.
    pub fn session_config(&self) -> kernel::SessionConfig {
        let spec = &self.scenario.session;
        kernel::SessionConfig {
            id: self.session_id(),
            tenant: spec.tenant.clone(),
            user: spec.user.clone(),
            agent: spec.agent.clone(),
            budget: spec.budget.clone(),
            mode: self.scenario.mode,
        }
    }

    /// The session id: explicit, or the file stem.
    pub fn session_id(&self) -> String {
        self.scenario.session.id.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "session".into())
        })
    }
}

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<LoadedScenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Io {
        path: path.into(),
        source: e,
    })?;
    parse(path, text)
}

/// Parses and checks scenario text (`path` names it in errors).
pub fn parse(path: &Path, text: String) -> Result<LoadedScenario, ScenarioError> {
    let source = Source::new(path.display().to_string(), text);
    let scenario: Scenario = toml::from_str(&source.text).map_err(|e| {
        let span = e.span().map(|s| (s.start, s.len()));
        ScenarioError::invalid(&source, span, e.message())
    })?;
    check(&scenario, &source)?;
    Ok(LoadedScenario {
        path: path.into(),
        source,
        scenario,
    })
}

/// Rules TOML's types cannot say: exactly one kind per call and per event.
fn check(s: &Scenario, source: &Source) -> Result<(), ScenarioError> {
    if let Some(entry) = &s.suite
        && (entry.role == SuiteRole::Attack) != entry.harmful.is_some()
    {
        return Err(ScenarioError::invalid(
            source,
            find(source, "[suite]", 0),
            "suite: an attack names its `harmful` call, and only an attack does",
        ));
    }
    for (t, turn) in s.turns.iter().enumerate() {
        for (c, call) in turn.calls.iter().enumerate() {
            let kinds = [
                call.tool.is_some(),
                call.read_memory.is_some(),
                call.write_memory.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                let msg = format!(
                    "turns[{t}].calls[{c}]: give exactly one of `tool`, `read_memory`, `write_memory`"
                );
                return Err(ScenarioError::invalid(
                    source,
                    find(source, "calls", t),
                    &msg,
                ));
            }
            if call.tool.is_some() != call.input.is_some() {
                let msg = format!(
                    "turns[{t}].calls[{c}]: a tool call needs `input` (and only a tool call has one)"
                );
                return Err(ScenarioError::invalid(
                    source,
                    find(source, "calls", t),
                    &msg,
                ));
            }
        }
        if turn.fail.is_some() && (turn.answer.is_some() || !turn.calls.is_empty()) {
            let msg = format!("turns[{t}]: a failing turn has no `calls` or `answer`");
            return Err(ScenarioError::invalid(
                source,
                find(source, "fail", t),
                &msg,
            ));
        }
    }
    for (i, e) in s.events.iter().enumerate() {
        let kinds = [
            e.approve.is_some(),
            e.reject.is_some(),
            e.cancel.is_some(),
            e.endorse.is_some(),
            e.tick,
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            let msg = format!(
                "events[{i}]: give exactly one of `approve`, `reject`, `cancel`, `endorse`, `tick`"
            );
            return Err(ScenarioError::invalid(
                source,
                find(source, "at_ms", i),
                &msg,
            ));
        }
    }
    for (name, script) in &s.tool_script {
        for (i, r) in script.responses.iter().enumerate() {
            if r.output.is_some() == r.fail.is_some() {
                let msg = format!(
                    "tool_script.{name}.responses[{i}]: give exactly one of `output`, `fail`"
                );
                return Err(ScenarioError::invalid(source, find(source, name, 0), &msg));
            }
        }
    }
    if !s.intents.is_empty() && (!s.turns.is_empty() || !s.events.is_empty()) {
        let msg = "`intents` replaces `turns` and `events`: give one or the other";
        return Err(ScenarioError::invalid(
            source,
            find(source, "intents", 0),
            msg,
        ));
    }
    for (i, p) in s.expect.properties.iter().enumerate() {
        if let Err(e) = crate::fuzz::Property::parse(p) {
            let msg = format!("expect.properties[{i}]: {e}");
            return Err(ScenarioError::invalid(source, find(source, p, 0), &msg));
        }
    }
    for (i, d) in s.expect.decisions.iter().enumerate() {
        if d.nth == 0 {
            let msg = format!("expect.decisions[{i}]: `nth` counts from 1");
            return Err(ScenarioError::invalid(source, find(source, "nth", 0), &msg));
        }
    }
    Ok(())
}

/// The span of the `n`-th occurrence of `word` in the text, to point an error near its cause.
fn find(source: &Source, word: &str, n: usize) -> Option<(usize, usize)> {
    source
        .text
        .match_indices(word)
        .nth(n)
        .or_else(|| source.text.match_indices(word).next())
        .map(|(o, w)| (o, w.len()))
}

/// The JSON Schema of the scenario format.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).unwrap_or_default()
}
