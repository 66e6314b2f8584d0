//! Deterministic replay: the kernel alone, a logical clock, a scripted model and scripted tools.
//!
//! The loop plays the agent. While running it proposes the next call the last model turn asked
//! for, then the turn's answer, then another model call while turns remain; the run ends when the
//! session ends or the script is exhausted. Results arrive after their latency unless an external
//! event (approval, cancellation, tick) falls due first; events due in the past are delivered at
//! the current time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use kernel::pack::builder_for;
use kernel::{Deployment, Effect, Event, Intent, Session, Source, Status};
use serde_json::Value;

use crate::error::ScenarioError;
use crate::fuzz::{Monitor, Property, Violation};
use crate::scenario::{
    Call, External, LoadedScenario, ToolResponse, ToolScript, Turn, default_response,
};

/// A run can never take more steps than this; a script that would is reported, not looped on.
const MAX_STEPS: usize = 100_000;

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct Run {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The final status.
    pub status: Status,
    /// The session's labels at the end.
    pub labels: Vec<String>,
    /// Steps taken (kernel transitions, rejected ones included).
    pub transitions: usize,
    /// Invariant and property violations, when the scenario asks for those checks.
    pub violations: Vec<Violation>,
    /// Every intent applied, with its time and how many events it appended: what a store keeps.
    pub steps: Vec<(kernel::store::Step, usize)>,
}

/// Builds the scenario's deployment: its packs plus its inline entities and tools.
pub fn deployment(s: &LoadedScenario) -> Result<Deployment, ScenarioError> {
    let root = s.policies_root()?;
    let packs: Vec<&str> = s.scenario.packs.iter().map(String::as_str).collect();
    let wrap = |source| ScenarioError::Policies {
        scenario: s.source.name.clone(),
        source,
    };
    let mut builder = builder_for(&root, &packs).map_err(wrap)?;
    if !s.scenario.entities.is_empty() {
        let text = serde_json::to_string_pretty(&s.scenario.entities).unwrap_or_default();
        builder = builder.entities(Source::new(format!("{} [entities]", s.source.name), text));
    }
    for tool in &s.scenario.tools {
        builder = builder.tool(tool.clone(), format!("{} [tools]", s.source.name));
    }
    if let Some(text) = &s.scenario.policy_text {
        builder = builder.policies(Source::new(
            format!("{} [policy_text]", s.source.name),
            text.clone(),
        ));
    }
    builder.build().map_err(|e| wrap(e.into()))
}

/// Replays `s` against `deployment`.
pub fn replay(s: &LoadedScenario, deployment: Arc<Deployment>) -> Result<Run, ScenarioError> {
    play(s, deployment, None)
}

/// Plays `s` durably: every step is written to the store before its effects run, tools named in
/// `durable` run as real subprocesses, and a session already in the store is resumed — its log
/// replayed (the scenario must propose exactly what the log holds) and a call whose result the
/// log lacks declared in doubt, for policy to decide.
pub fn replay_durable(
    s: &LoadedScenario,
    deployment: Arc<Deployment>,
    durable: crate::durable::Durable,
) -> Result<Run, ScenarioError> {
    play(s, deployment, Some(durable))
}

fn play(
    s: &LoadedScenario,
    deployment: Arc<Deployment>,
    durable: Option<crate::durable::Durable>,
) -> Result<Run, ScenarioError> {
    let spec = &s.scenario.session;
    let config = s.session_config();
    let mut session = Session::new(deployment.clone(), config.clone())
        .map_err(|e| ScenarioError::invalid(&s.source, None, &format!("session: {e}")))?;
    let expect = &s.scenario.expect;
    let monitor = if expect.invariants || !expect.properties.is_empty() {
        let properties = expect
            .properties
            .iter()
            .map(|p| Property::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ScenarioError::invalid(&s.source, None, &e.to_string()))?;
        session.trace_requests(true);
        Some(Monitor::new(
            deployment,
            properties,
            config.mode,
            &config.tenant,
            &config.budget,
        ))
    } else {
        None
    };
    let mut external: Vec<External> = s.scenario.events.clone();
    external.sort_by_key(|e| e.at_ms); // stable: same-time events keep file order
    let mut player = Player {
        session,
        now: 0,
        events: Vec::new(),
        transitions: 0,
        steps: Vec::new(),
        turns: s.scenario.turns.iter().cloned().collect(),
        queue: VecDeque::new(),
        answer: None,
        external: external.into(),
        scripts: s.scenario.tool_script.clone(),
        cursors: BTreeMap::new(),
        memory: s
            .scenario
            .memory
            .iter()
            .map(|m| {
                (
                    (m.scope.clone(), m.key.clone()),
                    (m.value.clone(), m.labels.clone()),
                )
            })
            .collect(),
        pending: None,
        model: spec.model.clone(),
        monitor,
        invariants_only_for_properties: !expect.invariants,
        durable,
    };
    if s.scenario.intents.is_empty() {
        player.apply(Intent::Start {
            request: spec.request.clone(),
        });
        player
            .run()
            .map_err(|m| ScenarioError::invalid(&s.source, None, &m))?;
        if let Some(e) = player.durable.as_mut().and_then(|d| d.error.take()) {
            return Err(ScenarioError::invalid(&s.source, None, &e));
        }
    } else {
        for timed in &s.scenario.intents {
            player.now = timed.at_ms;
            player.apply(timed.step.clone());
        }
    }
    let mut violations = player
        .monitor
        .take()
        .map(|m| m.violations)
        .unwrap_or_default();
    if player.invariants_only_for_properties {
        violations.retain(|v| v.invariant == crate::fuzz::names::PROPERTY);
    }
    Ok(Run {
        status: player.session.status(),
        labels: player.session.labels().map(str::to_owned).collect(),
        transitions: player.transitions,
        events: player.events,
        violations,
        steps: player.steps,
    })
}

/// A call or read in flight: its id and the time it starts (its backoff, or when it was issued).
struct Pending {
    id: String,
    kind: PendingKind,
    not_before: u64,
    /// The `@timeout_ms` obligation: an answer slower than this never arrives; the attempt fails.
    timeout: Option<u64>,
    /// The attempt (tools), for the durable driver.
    attempt: u32,
    /// The arguments (tools), for real subprocess tools.
    input: Value,
}

enum PendingKind {
    Model,
    Tool(String),
    Memory { scope: String, key: String },
}

struct Player {
    session: Session,
    now: u64,
    events: Vec<Event>,
    transitions: usize,
    steps: Vec<(kernel::store::Step, usize)>,
    turns: VecDeque<Turn>,
    queue: VecDeque<Call>,
    answer: Option<String>,
    external: VecDeque<External>,
    scripts: BTreeMap<String, ToolScript>,
    cursors: BTreeMap<String, usize>,
    memory: BTreeMap<(String, String), (Value, Vec<String>)>,
    pending: Option<Pending>,
    model: String,
    monitor: Option<Monitor>,
    invariants_only_for_properties: bool,
    durable: Option<crate::durable::Durable>,
}

impl Player {
    fn run(&mut self) -> Result<(), String> {
        while !self.session.status().is_terminal() {
            if self.durable.as_ref().is_some_and(|d| d.error.is_some()) {
                return Ok(());
            }
            if self.transitions > MAX_STEPS {
                return Err(format!("the run did not end within {MAX_STEPS} steps"));
            }
            if self.external.front().is_some_and(|e| e.at_ms <= self.now) {
                self.deliver_external();
                continue;
            }
            match self.session.status() {
                Status::Running => {
                    if !self.next_proposal() {
                        return Ok(()); // script exhausted
                    }
                }
                Status::WaitingModel | Status::WaitingTool | Status::WaitingMemory => {
                    self.answer_pending()
                }
                Status::WaitingApproval => {
                    if self.external.is_empty() {
                        return Ok(()); // nobody will answer
                    }
                    self.advance_to_next_external();
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Proposes the next thing the scripted agent does; false when the script is exhausted.
    fn next_proposal(&mut self) -> bool {
        if let Some(call) = self.queue.pop_front() {
            let Some(intent) = call.intent() else {
                return true;
            };
            self.apply(intent);
        } else if let Some(answer) = self.answer.take() {
            self.apply(Intent::Complete { answer });
        } else if let Some(turn) = self.turns.front() {
            let (estimated_tokens, estimated_cost) = turn.estimate();
            let intent = Intent::CallModel {
                model: self.model.clone(),
                estimated_tokens,
                estimated_cost,
            };
            self.apply(intent);
            if self.session.status() == Status::Running {
                self.turns.pop_front(); // denied: the model never ran this turn
            }
        } else if !self.external.is_empty() {
            self.advance_to_next_external();
        } else {
            return false;
        }
        true
    }

    /// Delivers the in-flight result, unless an external event falls due before it.
    fn answer_pending(&mut self) {
        let Some(pending) = self.pending.take() else {
            return self.advance_to_next_external();
        };
        // Fixed when the call was handed out: external events delivered meanwhile do not delay it.
        let start = pending.not_before;
        let (latency, intent) = match &pending.kind {
            PendingKind::Memory { scope, key } => {
                let entry = self.memory.get(&(scope.clone(), key.clone())).cloned();
                let (value, labels) = entry.map_or((None, Vec::new()), |(v, l)| (Some(v), l));
                (
                    0,
                    Intent::MemoryLoaded {
                        read_id: pending.id.clone(),
                        value,
                        labels,
                    },
                )
            }
            PendingKind::Model => match self.turns.front().cloned() {
                Some(turn) => (turn.latency_ms, self.model_answer(&pending.id, &turn)),
                None => (
                    0,
                    Intent::CallFailed {
                        call_id: pending.id.clone(),
                        error: "the script has no turn left".into(),
                        retryable: false,
                        cost: 0,
                        jitter_ms: 0,
                    },
                ),
            },
            PendingKind::Tool(tool) => {
                let (latency, cost, response) = self.peek_response(tool);
                let real = self
                    .durable
                    .as_mut()
                    .and_then(|d| d.answer(tool, &pending.id, pending.attempt, &pending.input));
                (
                    latency,
                    real.unwrap_or_else(|| tool_answer(&pending.id, &response, cost)),
                )
            }
        };
        // Enforce the timeout obligation as the driver does: the slow answer is discarded and the
        // attempt fails, retryably.
        let (latency, intent) = match pending.timeout {
            Some(limit)
                if latency > limit && !matches!(pending.kind, PendingKind::Memory { .. }) =>
            {
                (
                    limit,
                    Intent::CallFailed {
                        call_id: pending.id.clone(),
                        error: format!("timed out after {limit} ms"),
                        retryable: true,
                        cost: 0,
                        jitter_ms: 0,
                    },
                )
            }
            _ => (latency, intent),
        };
        let done = start.saturating_add(latency);
        if self.external.front().is_some_and(|e| e.at_ms < done) {
            self.pending = Some(pending);
            return self.advance_to_next_external();
        }
        self.now = done;
        match pending.kind {
            PendingKind::Model => {
                if let Some(turn) = self.turns.pop_front()
                    && matches!(intent, Intent::ModelResponded { .. })
                {
                    self.queue = turn.calls.into();
                    self.answer = turn.answer;
                }
            }
            PendingKind::Tool(tool) => *self.cursors.entry(tool).or_default() += 1,
            PendingKind::Memory { .. } => {}
        }
        self.apply(intent);
    }

    fn model_answer(&self, call_id: &str, turn: &Turn) -> Intent {
        if let Some(error) = &turn.fail {
            return Intent::CallFailed {
                call_id: call_id.into(),
                error: error.clone(),
                retryable: turn.retryable,
                cost: turn.cost,
                jitter_ms: 0,
            };
        }
        Intent::ModelResponded {
            call_id: call_id.into(),
            input_tokens: turn.input_tokens,
            output_tokens: turn.output_tokens,
            cost: turn.cost,
            output: turn.output(),
        }
    }

    /// The tool's next scripted response (the last one repeats), its latency and cost.
    fn peek_response(&self, tool: &str) -> (u64, u64, ToolResponse) {
        let i = self.cursors.get(tool).copied().unwrap_or(0);
        match self.scripts.get(tool) {
            Some(script) => script.response(i),
            None => (10, 0, default_response()),
        }
    }

    fn advance_to_next_external(&mut self) {
        if let Some(e) = self.external.front() {
            self.now = self.now.max(e.at_ms);
        }
        self.deliver_external();
    }

    fn deliver_external(&mut self) {
        let Some(e) = self.external.pop_front() else {
            return;
        };
        let request_id = self.session.pending_approval().unwrap_or("none").to_owned();
        let intent = e.control().into_intent(request_id);
        self.apply(intent);
    }

    /// Steps the session and books the effects it returns.
    fn apply(&mut self, intent: Intent) {
        if self.durable.as_ref().is_some_and(|d| d.error.is_some()) {
            return;
        }
        self.transitions += 1;
        let before = self.session.status();
        let step = kernel::store::Step {
            n: self.steps.len() as u64,
            t_ms: self.now,
            intent: intent.clone(),
        };
        let result = self.session.step(intent, self.now);
        let appended = match &result {
            Ok(t) => t.events.as_slice(),
            Err(r) => std::slice::from_ref(r.event.as_ref()),
        };
        if let Some(d) = &mut self.durable
            && !d.record(&step, appended)
        {
            return; // not written (or not what the log holds): nothing of this step happens
        }
        let appended = appended.len();
        self.steps.push((step, appended));
        if let Some(monitor) = &mut self.monitor {
            monitor.observe(self.transitions - 1, before, &result, &self.session);
        }
        let transition = match result {
            Ok(t) => t,
            Err(rejected) => {
                self.events.push(*rejected.event);
                return;
            }
        };
        for effect in transition.effects {
            match effect {
                Effect::CallModel {
                    call_id,
                    not_before_ms,
                    obligations,
                    ..
                } => {
                    self.pending = Some(Pending {
                        id: call_id,
                        kind: PendingKind::Model,
                        not_before: not_before_ms.max(self.now),
                        timeout: obligations.timeout_ms,
                        attempt: 0,
                        input: Value::Null,
                    });
                }
                Effect::CallTool {
                    call_id,
                    tool,
                    input,
                    attempt,
                    not_before_ms,
                    obligations,
                } => {
                    if let Some(d) = &mut self.durable {
                        d.dispatched(&call_id, attempt);
                    }
                    self.pending = Some(Pending {
                        id: call_id,
                        kind: PendingKind::Tool(tool),
                        not_before: not_before_ms.max(self.now),
                        timeout: obligations.timeout_ms,
                        attempt,
                        input,
                    });
                }
                Effect::ReadMemory {
                    read_id,
                    scope,
                    key,
                } => {
                    self.pending = Some(Pending {
                        id: read_id,
                        kind: PendingKind::Memory { scope, key },
                        not_before: self.now,
                        timeout: None,
                        attempt: 0,
                        input: Value::Null,
                    });
                }
                Effect::WriteMemory {
                    scope,
                    key,
                    value,
                    labels,
                } => {
                    self.memory.insert((scope, key), (value, labels));
                }
                Effect::Abort { .. } => self.pending = None,
            }
        }
        self.events.extend(transition.events);
    }
}

fn tool_answer(call_id: &str, r: &ToolResponse, default_cost: u64) -> Intent {
    let cost = r.cost.unwrap_or(default_cost);
    match (&r.fail, &r.output) {
        (Some(error), _) => Intent::CallFailed {
            call_id: call_id.into(),
            error: error.clone(),
            retryable: r.retryable,
            cost,
            jitter_ms: 0,
        },
        (None, output) => Intent::ToolReturned {
            call_id: call_id.into(),
            output: output.clone().unwrap_or(Value::Null),
            cost,
        },
    }
}
