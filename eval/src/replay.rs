//! Deterministic replay: the kernel's agent loop driven on a logical clock, with a scripted model
//! and scripted tools.
//!
//! The agent is the kernel's [`AgentLoop`]; this module only answers its effects from the script
//! and moves the clock. The run ends when the session ends or the script is exhausted. A result
//! arrives after its latency unless an external event (approval, cancellation, tick) falls due
//! first; events due in the past are delivered at the current time.

use crate::call_answers::CallAnswers;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use kernel::agent::{AgentLoop, Answer, Estimate, Message, Next, Planner, Stepped};
use kernel::pack::builder_for;
use kernel::{Deployment, Effect, Event, Intent, Session, Source, Status, Step};
use serde_json::Value;

use crate::ScenarioError;
use crate::fuzz::{Monitor, Property, Violation};
use crate::scenario::{LoadedScenario, ToolResponse, ToolScript, Turn, default_response};

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
    pub steps: Vec<(Step, usize)>,
}

/// Builds the scenario's deployment: its packs plus its inline entities and tools.
pub fn deployment(s: &LoadedScenario) -> Result<Deployment, ScenarioError> {
    deployment_at(s, &s.policies_root()?)
}

/// [`deployment`] with the policy directory `root` in place of the one the scenario names (what
/// `arbiter diff` replays under).
pub fn deployment_at(
    s: &LoadedScenario,
    root: &std::path::Path,
) -> Result<Deployment, ScenarioError> {
    let packs: Vec<&str> = s.scenario.packs.iter().map(String::as_str).collect();
    let wrap = |source| ScenarioError::Policies {
        file: s.source.name.clone(),
        source,
    };
    let mut builder = builder_for(root, &packs).map_err(wrap)?;
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
    play(s, deployment, None, false).map(|(run, _)| run)
}

/// [`replay`], also returning every Cedar request the session asked, with its whole context (what
/// condition coverage evaluates each condition on).
pub fn replay_traced(
    s: &LoadedScenario,
    deployment: Arc<Deployment>,
) -> Result<(Run, Vec<cedar_policy::Request>), ScenarioError> {
    play(s, deployment, None, true)
}

/// Plays `s` durably: every step is written to the store before its effects run, tools named in
/// `resumable` run as real subprocesses, and a session already in the store is resumed — its log
/// replayed (the scenario must propose exactly what the log holds) and a call whose result the
/// log lacks declared in doubt, for policy to decide.
pub fn replay_resumable(
    s: &LoadedScenario,
    deployment: Arc<Deployment>,
    resumable: crate::resumable::Resumable,
) -> Result<Run, ScenarioError> {
    play(s, deployment, Some(resumable), false).map(|(run, _)| run)
}

fn play(
    s: &LoadedScenario,
    deployment: Arc<Deployment>,
    resumable: Option<crate::resumable::Resumable>,
    trace: bool,
) -> Result<(Run, Vec<cedar_policy::Request>), ScenarioError> {
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
            &config.agent,
            &config.budget,
        ))
    } else {
        None
    };
    if trace {
        session.trace_requests(true);
    }
    let schedule = s
        .scenario
        .events
        .iter()
        .map(|e| (e.at_ms, e.control()))
        .collect();
    let agent = AgentLoop::new(session, spec.model.clone())
        .keep_transcript(false)
        .schedule(schedule);
    let mut player = Player {
        agent,
        now: 0,
        events: Vec::new(),
        transitions: 0,
        steps: Vec::new(),
        turns: ScriptedTurns(s.scenario.turns.iter().cloned().collect()),
        scripts: s.scenario.tool_script.clone(),
        cursors: BTreeMap::new(),
        answers: CallAnswers::default(),
        own_answer: false,
        memory: s
            .scenario
            .memory
            .iter()
            .map(|m| {
                let tenant = m.tenant.clone().unwrap_or_else(|| config.tenant.clone());
                (
                    (tenant, m.scope.clone(), m.key.clone()),
                    (m.value.clone(), m.labels.clone()),
                )
            })
            .collect(),
        tenant: config.tenant.clone(),
        pending: None,
        monitor,
        invariants_only_for_properties: !expect.invariants,
        resumable,
        traced: trace.then(Vec::new),
    };
    if s.scenario.intents.is_empty() {
        let stepped = player.agent.start(spec.request.clone(), 0);
        player.stepped(stepped);
        player
            .run()
            .map_err(|m| ScenarioError::invalid(&s.source, None, &m))?;
        if let Some(e) = player.resumable.as_mut().and_then(|d| d.error.take()) {
            return Err(ScenarioError::invalid(&s.source, None, &e));
        }
    } else {
        for timed in &s.scenario.intents {
            player.now = timed.at_ms;
            let stepped = player.agent.propose(timed.step.clone(), player.now);
            player.stepped(stepped);
        }
    }
    let mut violations = player
        .monitor
        .take()
        .map(Monitor::finish)
        .unwrap_or_default();
    if player.invariants_only_for_properties {
        violations.retain(|v| v.invariant == crate::fuzz::names::PROPERTY);
    }
    let session = player.agent.session();
    Ok((
        Run {
            status: session.status(),
            labels: session.labels().map(str::to_owned).collect(),
            transitions: player.transitions,
            events: player.events,
            violations,
            steps: player.steps,
        },
        player.traced.unwrap_or_default(),
    ))
}

/// A call or read in flight: its id and the time it starts (its backoff, or when it was issued).
struct Pending {
    id: String,
    kind: PendingKind,
    not_before: u64,
    /// The `@timeout_ms` obligation: an answer slower than this never arrives; the attempt fails.
    timeout: Option<u64>,
    /// The attempt (tools), for resumable runs.
    attempt: u32,
    /// The arguments (tools), for real subprocess tools.
    input: Value,
}

enum PendingKind {
    Model,
    Tool(String),
    Memory { scope: String, key: String },
}

/// The scenario's model turns as the loop's planner: one turn per call, a denied call drops its
/// turn, and a failed call moves on to the next turn.
struct ScriptedTurns(VecDeque<Turn>);

impl Planner for ScriptedTurns {
    fn next_estimate(&mut self, _transcript: &[Message]) -> Option<Estimate> {
        let (tokens, cost) = self.0.front()?.estimate();
        Some(Estimate { tokens, cost })
    }

    fn skip(&mut self) {
        self.0.pop_front();
    }

    fn continues_after_failure(&self) -> bool {
        true
    }
}

struct Player {
    agent: AgentLoop,
    now: u64,
    events: Vec<Event>,
    transitions: usize,
    steps: Vec<(Step, usize)>,
    turns: ScriptedTurns,
    scripts: BTreeMap<String, ToolScript>,
    cursors: BTreeMap<String, usize>,
    /// Answers the calls scripted for themselves.
    answers: CallAnswers,
    /// Whether the answer being delivered was the call's own (the tool's cursor stays).
    own_answer: bool,
    /// Memory entries by (tenant, scope, key): a session reaches its own tenant's only, in any mode.
    memory: BTreeMap<(String, String, String), (Value, Vec<String>)>,
    tenant: String,
    pending: Option<Pending>,
    monitor: Option<Monitor>,
    /// With tracing on: every request the session asked Cedar, in order.
    traced: Option<Vec<cedar_policy::Request>>,
    invariants_only_for_properties: bool,
    resumable: Option<crate::resumable::Resumable>,
}

impl Player {
    fn run(&mut self) -> Result<(), String> {
        loop {
            if self.resumable.as_ref().is_some_and(|d| d.error.is_some()) {
                return Ok(());
            }
            if self.transitions > MAX_STEPS {
                return Err(format!("the run did not end within {MAX_STEPS} steps"));
            }
            let until = match self.agent.next(self.now, &mut self.turns) {
                Next::Finished => return Ok(()),
                Next::Stepped(stepped) => {
                    self.stepped(*stepped);
                    continue;
                }
                Next::Wait { until } => until,
            };
            match self.pending.take() {
                Some(pending) if self.agent.awaits_effect() => self.answer_pending(pending, until),
                pending => {
                    self.pending = pending;
                    // Nobody will answer, and the script is exhausted.
                    let Some(at) = until else { return Ok(()) };
                    self.now = self.now.max(at);
                }
            }
        }
    }

    /// Delivers the in-flight result, unless an external event falls due (at `until`) before it.
    fn answer_pending(&mut self, pending: Pending, until: Option<u64>) {
        // Fixed when the call was handed out: external events delivered meanwhile do not delay it.
        let start = pending.not_before;
        let (latency, intent) = match &pending.kind {
            PendingKind::Memory { scope, key } => {
                let entry = self
                    .memory
                    .get(&(self.tenant.clone(), scope.clone(), key.clone()))
                    .cloned();
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
            PendingKind::Model => match self.turns.0.front() {
                Some(turn) => (turn.latency_ms, model_answer(&pending.id, turn)),
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
                let own = self
                    .answers
                    .answer(tool, &pending.id, pending.attempt, &pending.input);
                self.own_answer = own.is_some();
                let (latency, cost, response) = match own {
                    Some(r) => {
                        let (latency, cost) = self
                            .scripts
                            .get(tool)
                            .map_or((10, 0), |s| (s.latency_ms, s.cost));
                        (r.latency_ms.unwrap_or(latency), r.cost.unwrap_or(cost), r)
                    }
                    None => self.peek_response(tool),
                };
                let real = self
                    .resumable
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
        if let Some(at) = until.filter(|at| *at < done) {
            self.pending = Some(pending);
            self.now = self.now.max(at);
            return;
        }
        self.now = done;
        let mut plan = None;
        let from_model = matches!(pending.kind, PendingKind::Model);
        match pending.kind {
            PendingKind::Model => {
                if let Some(turn) = self.turns.0.pop_front()
                    && matches!(intent, Intent::ModelResponded { .. })
                {
                    self.answers.planned(&turn.calls);
                    let calls = turn.calls.iter().filter_map(|c| c.intent()).collect();
                    plan = Some((calls, turn.answer));
                }
            }
            PendingKind::Tool(tool) => {
                if !self.own_answer {
                    *self.cursors.entry(tool).or_default() += 1;
                }
            }
            PendingKind::Memory { .. } => {}
        }
        self.agent.deliver(Answer {
            intent,
            plan,
            from_model,
        });
    }

    /// The tool's next scripted response (the last one repeats), its latency and cost.
    fn peek_response(&self, tool: &str) -> (u64, u64, ToolResponse) {
        let i = self.cursors.get(tool).copied().unwrap_or(0);
        match self.scripts.get(tool) {
            Some(script) => script.response(i),
            None => (10, 0, default_response()),
        }
    }

    /// Records a step the session took and books the effects it returns.
    fn stepped(&mut self, mut stepped: Stepped) {
        self.transitions += 1;
        // The loop keeps intents (its default): every step is recorded.
        if let Some(intent) = stepped.intent.take() {
            let step = Step {
                n: stepped.n,
                t_ms: stepped.t_ms,
                intent,
            };
            let appended = stepped.events();
            if let Some(d) = &mut self.resumable
                && !d.record(&step, appended)
            {
                return; // not written (or not what the log holds): nothing of this step happens
            }
            self.steps.push((step, appended.len()));
        }
        if let (Some(traced), Ok(t)) = (&mut self.traced, &stepped.result) {
            traced.extend(t.traced.iter().map(|x| x.request.clone()));
        }
        if let Some(monitor) = &mut self.monitor {
            monitor.observe(
                self.transitions - 1,
                stepped.before,
                &stepped.result,
                self.agent.session(),
            );
        }
        let transition = match stepped.result {
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
                    if let Some(d) = &mut self.resumable {
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
                    self.memory
                        .insert((self.tenant.clone(), scope, key), (value, labels));
                }
                Effect::Abort { .. } => self.pending = None,
            }
        }
        self.events.extend(transition.events);
    }
}

fn model_answer(call_id: &str, turn: &Turn) -> Intent {
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
