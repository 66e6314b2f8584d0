//! One generated session: who runs it, in which world and mode, and a sequence of steps mixing
//! every transition kind, legal and illegal. Steps are resolved into concrete intents while the
//! session runs (an answer goes to whatever is in flight), and the concrete intents are kept, so a
//! failing case can be written out and replayed exactly.

use std::panic::{AssertUnwindSafe, catch_unwind};

use kernel::event::{encode_jsonl, verify_jsonl};
use kernel::{Effect, Event, EventBody, Intent, Mode, Session, SessionConfig, Status};
use proptest::prelude::*;
use serde_json::json;

use super::check::{Monitor, Violation, names};
use super::property::Property;
use super::world::{AGENTS, MODEL, SCOPES, TENANTS, USERS, World};
use crate::scenario::TimedIntent;

/// A generated case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Index of the world it runs in.
    pub world: usize,
    /// Enforcement mode.
    pub mode: Mode,
    /// Index into [`TENANTS`].
    pub tenant: usize,
    /// Index into [`USERS`].
    pub user: usize,
    /// Index into [`AGENTS`] (may belong to another tenant).
    pub agent: usize,
    /// Index into [`TENANTS`] of the budget charged (may belong to another tenant).
    pub budget: usize,
    /// The steps, each after a time delta in ms.
    pub steps: Vec<(u64, Step)>,
}

/// One generated step.
#[derive(Debug, Clone)]
pub enum Step {
    /// Start the session (usually first; anywhere else it is illegal).
    Start,
    /// Propose a model call.
    Model { tokens: u64, cost: u64 },
    /// Propose a tool call; `bad` breaks the arguments.
    Tool {
        tool: usize,
        amount: i64,
        note: bool,
        bad: bool,
        cost: u64,
        variant: u32,
    },
    /// Answer whatever is in flight: success, or a failure.
    Answer {
        fail: bool,
        retryable: bool,
        cost_percent: u64,
        labels: Vec<String>,
    },
    /// A result for a call that may not exist.
    Stale { n: u8 },
    /// Read memory.
    Read { scope: usize, key: usize },
    /// Write memory.
    Write { scope: usize, key: usize },
    /// A user approves whatever waits (or a made-up id).
    Approve { user: usize },
    /// A user rejects.
    Reject { user: usize },
    /// A user cancels.
    Cancel { user: usize },
    /// A user endorses a value (an amount a later tool call may carry).
    Endorse { user: usize, amount: i64 },
    /// A restart lost the in-flight call's result.
    InDoubt,
    /// A clock tick.
    Tick,
    /// The agent finishes.
    Complete,
    /// The driver fails.
    Fail,
}

/// Memory keys: a private one and the prefixes policies treat as shared.
const KEYS: [&str; 3] = ["k", "shared/notes", "global/x"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (prop_oneof![9 => 0u64..3000, 1 => 50_000u64..250_000], 0u64..3000).prop_map(|(tokens, cost)| Step::Model { tokens, cost }),
        24 => (0usize..32, prop_oneof![4 => 0i64..2000, 3 => 2000i64..100_000, 1 => Just(i64::MAX), 1 => Just(-1i64)], any::<bool>(), prop::bool::weighted(0.1), 0u64..5000, any::<u32>())
            .prop_map(|(tool, amount, note, bad, cost, variant)| Step::Tool { tool, amount, note, bad, cost, variant }),
        40 => (prop::bool::weighted(0.3), any::<bool>(), prop_oneof![8 => 0u64..=100, 1 => 101u64..300], prop::collection::vec(prop_oneof![Just("untrusted".to_owned()), Just("pii".to_owned())], 0..2))
            .prop_map(|(fail, retryable, cost_percent, labels)| Step::Answer { fail, retryable, cost_percent, labels }),
        1 => (0u8..6).prop_map(|n| Step::Stale { n }),
        5 => (0usize..3, 0usize..3).prop_map(|(scope, key)| Step::Read { scope, key }),
        5 => (0usize..3, 0usize..3).prop_map(|(scope, key)| Step::Write { scope, key }),
        4 => (0usize..4).prop_map(|user| Step::Approve { user }),
        1 => (0usize..4).prop_map(|user| Step::Reject { user }),
        1 => (0usize..4).prop_map(|user| Step::Cancel { user }),
        2 => (0usize..4, 0i64..2000).prop_map(|(user, amount)| Step::Endorse { user, amount }),
        2 => Just(Step::InDoubt),
        4 => Just(Step::Tick),
        1 => Just(Step::Complete),
        1 => Just(Step::Fail),
        1 => Just(Step::Start),
    ]
}

/// Mostly writes to either tenant's scope (half of them the session's own, each an agent step),
/// with model calls and their answers between.
fn marathon_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        16 => (0usize..2, 0usize..3).prop_map(|(scope, key)| Step::Write { scope, key }),
        2 => (0u64..3000, 0u64..3000).prop_map(|(tokens, cost)| Step::Model { tokens, cost }),
        2 => Just(Step::Answer { fail: false, retryable: false, cost_percent: 100, labels: Vec::new() }),
    ]
}

fn delta() -> impl Strategy<Value = u64> {
    // Mostly small steps; now and then a jump big enough to cross the base time limit.
    prop_oneof![60 => 0u64..2_000, 8 => 2_000u64..30_000, 1 => 60_000u64..700_000]
}

/// Cases over `worlds` worlds: mostly consistent identities, sometimes crossed.
pub fn case(worlds: usize) -> impl Strategy<Value = Case> {
    (
        0..worlds.max(1),
        prop::bool::weighted(0.1).prop_map(|l| if l { Mode::LogOnly } else { Mode::Enforce }),
        0usize..2,
        // One identity crossed at a time: 1 the user, 2 the agent, 3 the budget.
        prop_oneof![85 => Just(0u8), 5 => Just(1u8), 5 => Just(2u8), 5 => Just(3u8)],
        // Most sessions are short; one in ten runs long, and one in twenty is a marathon of
        // memory writes (steps that need no result) that reaches the base step limit.
        prop_oneof![
            18 => prop::collection::vec((delta(), step()), 1..70),
            2 => prop::collection::vec((delta(), step()), 1..160),
            1 => prop::collection::vec((0u64..200, marathon_step()), 120..160),
        ],
    )
        .prop_map(|(world, mode, tenant, crossing, mut steps)| {
            steps.insert(0, (0, Step::Start));
            let other = (tenant + 1) % 2;
            // A crossed user: in t0 the one no entity store holds, in t1 a user of t0.
            let user = if crossing == 1 {
                (tenant * 2 + 3) % 4
            } else {
                tenant * 2
            };
            let agent = if crossing == 2 { other } else { tenant };
            let budget = if crossing == 3 { other } else { tenant };
            Case {
                world,
                mode,
                tenant,
                user,
                agent,
                budget,
                steps,
            }
        })
}

impl Case {
    /// The session configuration of this case.
    pub fn config(&self) -> SessionConfig {
        SessionConfig {
            id: "fuzz".into(),
            tenant: nth(&TENANTS, self.tenant).into(),
            user: nth(&USERS, self.user).into(),
            agent: nth(&AGENTS, self.agent).into(),
            budget: nth(&TENANTS, self.budget).into(),
            mode: self.mode,
        }
    }
}

/// What running a case found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The concrete intents applied.
    pub intents: Vec<TimedIntent>,
    /// Kernel steps taken.
    pub transitions: usize,
    /// (allowed, denied) decisions.
    pub decisions: (usize, usize),
    /// Policies that determined a decision.
    pub policies: std::collections::BTreeSet<String>,
    /// Broken invariants and properties.
    pub violations: Vec<Violation>,
    /// Final status.
    pub status: Option<Status>,
    /// Intents the kernel refused outright (illegal in the state, bad arguments...).
    pub rejected: usize,
    /// The events.
    pub events: Vec<Event>,
}

/// What is in flight, as far as the driver knows.
enum InFlight {
    Tool { id: String, estimate: u64 },
    Model { id: String, estimate: u64 },
    Memory { id: String },
}

/// Runs `case` in `world`, resolving steps to intents, checking every invariant and property.
pub fn run(world: &World, case: &Case, properties: &[Property]) -> Outcome {
    let config = case.config();
    let mut session = match Session::new(world.deployment.clone(), config.clone()) {
        Ok(s) => s,
        Err(e) => {
            let detail = format!("session could not be created: {e}");
            return Outcome {
                violations: vec![Violation {
                    invariant: names::PANIC,
                    step: 0,
                    detail,
                }],
                ..Outcome::default()
            };
        }
    };
    session.trace_requests(true);
    let mut monitor = Monitor::new(
        world.deployment.clone(),
        properties.to_vec(),
        case.mode,
        &config.tenant,
        &config.agent,
        &config.budget,
    );
    let mut out = Outcome::default();
    let (mut now, mut in_flight): (u64, Option<InFlight>) = (0, None);
    let mut pending_estimate = 0;
    for (i, (dt, step)) in case.steps.iter().enumerate() {
        now = now.saturating_add(*dt);
        let approval = session.pending_approval().map(str::to_owned);
        let intent = resolve(world, step, &in_flight, &approval, &mut pending_estimate);
        out.intents.push(TimedIntent {
            at_ms: now,
            step: intent.clone(),
        });
        let before = session.status();
        let result = match catch_unwind(AssertUnwindSafe(|| session.step(intent, now))) {
            Ok(r) => r,
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned());
                out.violations.push(Violation {
                    invariant: names::PANIC,
                    step: i,
                    detail: detail.unwrap_or_default(),
                });
                return out;
            }
        };
        out.transitions += 1;
        monitor.observe(i, before, &result, &session);
        match &result {
            Ok(t) => {
                if answered(t) {
                    in_flight = None; // a retry re-arms it from its effect below
                }
                for effect in &t.effects {
                    in_flight = match effect {
                        Effect::CallTool { call_id, .. } => Some(InFlight::Tool {
                            id: call_id.clone(),
                            estimate: pending_estimate,
                        }),
                        Effect::CallModel { call_id, .. } => Some(InFlight::Model {
                            id: call_id.clone(),
                            estimate: pending_estimate,
                        }),
                        Effect::ReadMemory { read_id, .. } => Some(InFlight::Memory {
                            id: read_id.clone(),
                        }),
                        Effect::Abort { .. } => None,
                        Effect::WriteMemory { .. } => continue,
                    };
                }
                out.events.extend(t.events.iter().cloned());
            }
            Err(rejected) => {
                out.rejected += 1;
                out.events.push((*rejected.event).clone());
            }
        }
    }
    out.status = Some(session.status());
    out.decisions = monitor.decisions;
    out.policies = std::mem::take(&mut monitor.policies);
    out.violations = std::mem::take(&mut monitor.violations);
    check_log(
        world,
        &config,
        &out.intents,
        &out.events,
        &mut out.violations,
    );
    out
}

/// True when the step delivered the in-flight result (or ended the session).
fn answered(t: &kernel::Transition) -> bool {
    t.events.iter().any(|e| {
        matches!(
            e.body,
            EventBody::ToolReturned { .. }
                | EventBody::ModelResponded { .. }
                | EventBody::CallFailed { .. }
                | EventBody::MemoryLoaded { .. }
                | EventBody::Cancelled { .. }
                | EventBody::LimitReached { .. }
                | EventBody::Failed { .. }
        )
    })
}

fn resolve(
    world: &World,
    step: &Step,
    in_flight: &Option<InFlight>,
    approval: &Option<String>,
    estimate: &mut u64,
) -> Intent {
    let user = |u: &usize| nth(&USERS, *u).to_owned();
    let request_id = approval.clone().unwrap_or_else(|| "approval-1".into());
    match step {
        Step::Start => Intent::Start {
            request: "fuzz".into(),
        },
        Step::Model { tokens, cost } => {
            *estimate = *cost;
            // One call in fifty names a model no entity store holds (it must be denied).
            let model = if tokens % 50 == 7 {
                "unknown-model"
            } else {
                MODEL
            };
            Intent::CallModel {
                model: model.into(),
                estimated_tokens: *tokens,
                estimated_cost: *cost,
            }
        }
        Step::Tool {
            tool,
            amount,
            note,
            bad,
            cost,
            variant,
        } => {
            *estimate = *cost;
            let i = tool % world.tool_names.len().max(1);
            let name = world
                .tool_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| "gt0".into());
            // A valid input with generated strings and integers; `note` adds an argument the
            // schema may not declare; `bad` sends no object at all.
            let mut input = world
                .samples
                .get(i)
                .map_or_else(|| json!({}), |s| s.instance(*variant, *amount));
            if let (true, Some(map)) = (*note, input.as_object_mut()) {
                map.insert("note".into(), json!("see ticket"));
            }
            if *bad {
                input = json!("not an object");
            }
            Intent::CallTool {
                tool: name,
                input,
                estimated_cost: *cost,
            }
        }
        Step::Answer {
            fail,
            retryable,
            cost_percent,
            labels,
        } => match in_flight {
            Some(InFlight::Tool { id, estimate }) | Some(InFlight::Model { id, estimate })
                if *fail =>
            {
                Intent::CallFailed {
                    call_id: id.clone(),
                    error: "injected".into(),
                    retryable: *retryable,
                    cost: estimate * cost_percent / 100,
                    jitter_ms: 0,
                }
            }
            Some(InFlight::Tool { id, estimate }) => Intent::ToolReturned {
                call_id: id.clone(),
                output: json!({"ok": true}),
                cost: estimate * cost_percent / 100,
            },
            Some(InFlight::Model { id, estimate }) => Intent::ModelResponded {
                call_id: id.clone(),
                input_tokens: 10,
                output_tokens: 10,
                cost: estimate * cost_percent / 100,
                output: json!("text"),
            },
            Some(InFlight::Memory { id }) => Intent::MemoryLoaded {
                read_id: id.clone(),
                value: Some(json!("v")),
                labels: labels.clone(),
            },
            // Nothing to answer: let time pass instead (`Stale` covers results for unknown calls).
            None => Intent::Tick,
        },
        Step::Stale { n } => Intent::ToolReturned {
            call_id: format!("call-{n}"),
            output: json!(1),
            cost: 0,
        },
        Step::Read { scope, key } => Intent::ReadMemory {
            scope: nth(&SCOPES, *scope).into(),
            key: nth(&KEYS, *key).into(),
        },
        Step::Write { scope, key } => Intent::WriteMemory {
            scope: nth(&SCOPES, *scope).into(),
            key: nth(&KEYS, *key).into(),
            value: json!("v"),
        },
        Step::Approve { user: u } => Intent::Approve {
            user: user(u),
            request_id,
        },
        Step::Reject { user: u } => Intent::Reject {
            user: user(u),
            request_id,
            reason: "no".into(),
        },
        Step::Cancel { user: u } => Intent::Cancel {
            user: user(u),
            reason: "stop".into(),
        },
        Step::InDoubt => match in_flight {
            Some(InFlight::Tool { id, .. }) | Some(InFlight::Model { id, .. }) => Intent::InDoubt {
                call_id: id.clone(),
            },
            Some(InFlight::Memory { id }) => Intent::InDoubt {
                call_id: id.clone(),
            },
            None => Intent::InDoubt {
                call_id: "call-1".into(),
            },
        },
        Step::Endorse { user: u, amount } => Intent::Endorse {
            user: user(u),
            value: amount.to_string(),
        },
        Step::Tick => Intent::Tick,
        Step::Complete => Intent::Complete {
            answer: "done".into(),
        },
        Step::Fail => Intent::Fail {
            error: "driver failed".into(),
        },
    }
}

/// The log verifies (contiguous seq, intact chain) and the same intents give the same bytes.
fn check_log(
    world: &World,
    config: &SessionConfig,
    intents: &[TimedIntent],
    events: &[Event],
    violations: &mut Vec<Violation>,
) {
    let last = intents.len().saturating_sub(1);
    let jsonl = encode_jsonl(events);
    if let Err(e) = verify_jsonl(&jsonl) {
        violations.push(Violation {
            invariant: names::CHAIN,
            step: last,
            detail: e.to_string(),
        });
    }
    let again = replay_intents(world, config, intents);
    if again != jsonl {
        let first = jsonl
            .lines()
            .zip(again.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        violations.push(Violation {
            invariant: names::DETERMINISM,
            step: last,
            detail: format!("event {first} differs on replay"),
        });
    }
}

/// The JSONL log of `intents` applied to a fresh session (panics are contained and end the log).
pub fn replay_intents(world: &World, config: &SessionConfig, intents: &[TimedIntent]) -> String {
    let Ok(mut session) = Session::new(world.deployment.clone(), config.clone()) else {
        return String::new();
    };
    let mut events = Vec::new();
    for t in intents {
        match catch_unwind(AssertUnwindSafe(|| session.step(t.step.clone(), t.at_ms))) {
            Ok(Ok(tr)) => events.extend(tr.events),
            Ok(Err(r)) => events.push(*r.event),
            Err(_) => break,
        }
    }
    encode_jsonl(&events)
}

/// The `i`-th of `items`, counting round (a case's indexes are any number; the lists are fixed).
fn nth<'a>(items: &[&'a str], i: usize) -> &'a str {
    i.checked_rem(items.len())
        .and_then(|i| items.get(i))
        .copied()
        .unwrap_or_default()
}
