//! The session state machine. [`Session::step`] is pure: no I/O, no clock, no randomness.
//!
//! Lifecycle: `created` → `running` ⇄ `waiting_{model,tool,memory,approval}` → `completed`,
//! `failed`, `cancelled` or `limit_reached`. One call, read or approval is outstanding at a time;
//! clock ticks and cancellation are accepted while waiting, so a hanging tool cannot keep a
//! session past its limits.

mod calls;
mod chain;
mod context;
mod contract;
mod lifecycle;
mod proposal;
mod types;

pub use types::{Effect, Rejected, SessionConfig, Status, Transition};

use std::collections::BTreeSet;
use std::sync::Arc;

use cedar_policy::{EntityUid, EvalResult};

use crate::deployment::Deployment;
use crate::error::StepError;
use crate::event::{Event, EventBody};
use crate::gate::{Decision, Obligations};
use crate::history::History;
use crate::intent::{Intent, MAX_JSON_DEPTH, too_deep};
use crate::tools::uid;
use chain::Chain;
use proposal::Proposal;

/// The entity uids a session's requests are made of, resolved once.
struct Uids {
    /// Shared with the contexts built for the session, which hold them as values.
    tenant: Arc<EntityUid>,
    user: Arc<EntityUid>,
    agent: Arc<EntityUid>,
    budget: EntityUid,
}

impl Uids {
    fn of(config: &SessionConfig) -> Result<Self, StepError> {
        let bad = |what: &str, id: &str, e: String| StepError::BadSession {
            message: format!("{what} `{id}`: {e}"),
        };
        Ok(Self {
            tenant: Arc::new(
                uid("Tenant", &config.tenant).map_err(|e| bad("tenant", &config.tenant, e))?,
            ),
            user: Arc::new(uid("User", &config.user).map_err(|e| bad("user", &config.user, e))?),
            agent: Arc::new(
                uid("Agent", &config.agent).map_err(|e| bad("agent", &config.agent, e))?,
            ),
            budget: uid("Budget", &config.budget).map_err(|e| bad("budget", &config.budget, e))?,
        })
    }
}

#[derive(Default)]
struct Counts {
    steps: u64,
    tokens: u64,
    cost_spent: u64,
    cost_reserved: u64,
    tool_calls: u64,
    model_calls: u64,
}

/// A model or tool call in flight.
struct PendingCall {
    call_id: String,
    proposal: Proposal,
    attempt: u32,
    reserved: u64,
    obligations: Obligations,
    lifted: Vec<String>,
}

/// A request waiting for a user's verdict.
struct PendingApproval {
    request_id: String,
    proposal: Proposal,
    policies: Vec<String>,
    /// The roles the approver must hold: the `@approval` values of `policies`.
    roles: Vec<String>,
    /// Whether every one of `policies` says `@self_approval("allowed")`.
    self_approval: bool,
    expires_at: Option<u64>,
}

enum Phase {
    Created,
    Running,
    Call(PendingCall),
    Memory { read_id: String },
    Approval(PendingApproval),
    Ended(Status),
}

/// One agent session: its counters, labels, history and the head of its event chain.
pub struct Session {
    deployment: Arc<Deployment>,
    config: SessionConfig,
    uids: Uids,
    budget_limit: i64,
    phase: Phase,
    started_at: Option<u64>,
    last_t: u64,
    chain: Chain,
    counts: Counts,
    labels: BTreeSet<String>,
    history: History,
    next_id: u64,
    trace: Option<Vec<crate::gate::Traced>>,
    /// Jitter the driver supplied with the failure that triggers the next retry.
    retry_jitter_ms: u64,
    /// Every text that entered the session, for provenance checks.
    content: crate::provenance::ContentIndex,
    /// True while re-deciding a call that may have run before a restart (`context.session.in_doubt`).
    in_doubt: bool,
    /// Have Cedar validate every request against the schema (only the load-time contract check).
    strict: bool,
}

impl Session {
    /// A new session in `created` status. Fails when the budget entity is missing or has no
    /// integer `limit` (a missing agent or user is not an error here: requests from them deny).
    pub fn new(deployment: Arc<Deployment>, config: SessionConfig) -> Result<Self, StepError> {
        let bad = |what: &str, id: &str, e: String| StepError::BadSession {
            message: format!("{what} `{id}`: {e}"),
        };
        let uids = Uids::of(&config)?;
        let limit = deployment
            .gate
            .entities
            .get(&uids.budget)
            .and_then(|b| b.attr("limit"));
        let budget_limit = match limit {
            Some(Ok(EvalResult::Long(n))) => n,
            Some(_) => {
                return Err(bad(
                    "budget",
                    &config.budget,
                    "`limit` is not an integer".into(),
                ));
            }
            None => {
                return Err(bad(
                    "budget",
                    &config.budget,
                    "no such entity with a `limit`".into(),
                ));
            }
        };
        // The user's `locale` (optional) says how provenance reads all-numeric dates.
        let order = match deployment
            .gate
            .entities
            .get(&uids.user)
            .and_then(|u| u.attr("locale"))
        {
            Some(Ok(EvalResult::String(l))) => crate::provenance::DateOrder::of_locale(&l),
            _ => crate::provenance::DateOrder::Unknown,
        };
        let mut session = Self::assemble(deployment, config, uids, budget_limit);
        session.content.set_date_order(order);
        Ok(session)
    }

    /// A session with a known budget limit (whether or not the budget entity exists).
    fn assemble(
        deployment: Arc<Deployment>,
        config: SessionConfig,
        uids: Uids,
        budget_limit: i64,
    ) -> Self {
        let history = History::new(&deployment.counters);
        Self {
            deployment,
            config,
            uids,
            budget_limit,
            phase: Phase::Created,
            started_at: None,
            last_t: 0,
            chain: Chain::new(),
            counts: Counts::default(),
            labels: BTreeSet::new(),
            history,
            next_id: 1,
            trace: None,
            retry_jitter_ms: 0,
            content: crate::provenance::ContentIndex::default(),
            in_doubt: false,
            strict: false,
        }
    }

    /// The session's status.
    pub fn status(&self) -> Status {
        status_of(&self.phase)
    }

    /// The id of the request waiting for approval, if any (what `Approve`/`Reject` must name).
    pub fn pending_approval(&self) -> Option<&str> {
        match &self.phase {
            Phase::Approval(p) => Some(&p.request_id),
            _ => None,
        }
    }

    /// The id of the model or tool call in flight, if any (what `InDoubt` must name).
    pub fn call_in_flight(&self) -> Option<&str> {
        match &self.phase {
            Phase::Call(c) => Some(&c.call_id),
            _ => None,
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The deployment it runs under.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    /// Information-flow labels picked up so far.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(String::as_str)
    }

    /// Settled spend, micro-units.
    pub fn cost_spent(&self) -> u64 {
        self.counts.cost_spent
    }

    /// Allowed agent actions so far.
    pub fn steps(&self) -> u64 {
        self.counts.steps
    }

    /// The next `seq` and the hash of the last event (the chain head).
    pub fn head(&self) -> (u64, &str) {
        self.chain.head()
    }

    /// Makes every later [`Transition`] carry the exact Cedar requests behind its decisions
    /// ([`Transition::traced`]), for oracles that re-ask Cedar directly. Off by default: it clones
    /// each request.
    pub fn trace_requests(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// Applies one intent at logical time `now` (milliseconds, never decreasing).
    ///
    /// `Ok` carries the decision, events and effects; a denial is an `Ok` with a denying decision.
    /// `Err` means the intent was illegal here: nothing changed except one `rejected` event.
    pub fn step(&mut self, intent: Intent, now: u64) -> Result<Transition, Rejected> {
        if let Some(trace) = &mut self.trace {
            trace.clear();
        }
        if crate::faults::active(crate::faults::Fault::EffectAfterEnd)
            && matches!(self.phase, Phase::Ended(_))
        {
            self.phase = Phase::Running;
        }
        let (seq, _) = self.chain.head();
        let kind = intent.kind();
        let mut result = self.step_inner(intent, now);
        if let Some(reason) = self.chain.take_unrecordable() {
            // The step's first event links to the head the chain had before it.
            let head = match &result {
                Ok(t) => t.events.first().map(|e| e.prev.clone()),
                Err(r) => Some(r.event.prev.clone()),
            };
            let head = head.unwrap_or_else(|| self.chain.head().1.to_owned());
            return Err(self.unrecordable_step(now, kind, reason, (seq, head)));
        }
        if let (Ok(t), Some(trace)) = (&mut result, &mut self.trace) {
            t.traced = std::mem::take(trace);
        }
        result
    }

    /// A step one of whose events could not be hashed: the chain goes back to where it was before
    /// the step, the session fails, and the step is answered with a `rejected` event saying why
    /// (its body holds strings only, which always hash).
    fn unrecordable_step(
        &mut self,
        now: u64,
        kind: &str,
        reason: String,
        (seq, head): (u64, String),
    ) -> Rejected {
        self.chain.rewind(seq, head);
        self.phase = Phase::Ended(Status::Failed);
        self.reject(now, kind, StepError::Unrecordable { reason })
    }

    fn step_inner(&mut self, intent: Intent, now: u64) -> Result<Transition, Rejected> {
        if now < self.last_t {
            let last = self.last_t;
            return Err(self.reject(
                last,
                intent.kind(),
                StepError::ClockWentBackwards { now, last },
            ));
        }
        self.last_t = now;
        let tr = Transition {
            decision: None,
            events: Vec::new(),
            effects: Vec::new(),
            traced: Vec::new(),
        };
        let kind = intent.kind();
        let intent = bound_results(intent);
        match (std::mem::replace(&mut self.phase, Phase::Created), intent) {
            (Phase::Created, Intent::Start { request }) => Ok(self.start(now, request, tr)),
            (
                Phase::Running,
                Intent::CallModel {
                    model,
                    estimated_tokens,
                    estimated_cost,
                },
            ) => {
                let proposal = Proposal::Model {
                    model,
                    estimated_tokens,
                    estimated_cost,
                };
                Ok(self.propose(now, proposal, Vec::new(), tr))
            }
            (
                Phase::Running,
                Intent::CallTool {
                    tool,
                    input,
                    estimated_cost,
                },
            ) => {
                self.phase = Phase::Running;
                let input = match self.deployment.tool_entry(&tool) {
                    Some(entry) => entry.canonical_input(input),
                    None => input,
                };
                if let Err(error) = self.check_tool(&tool, &input) {
                    return Err(self.reject(now, kind, error));
                }
                Ok(self.propose(
                    now,
                    Proposal::Tool {
                        tool,
                        input,
                        estimated_cost,
                    },
                    Vec::new(),
                    tr,
                ))
            }
            (Phase::Running, Intent::ReadMemory { scope, key }) => {
                Ok(self.propose(now, Proposal::Read { scope, key }, Vec::new(), tr))
            }
            (Phase::Running, Intent::WriteMemory { scope, key, value }) => {
                self.phase = Phase::Running;
                if too_deep(&value) {
                    let error = StepError::TooDeep {
                        what: format!("the value written to `{scope}/{key}`"),
                        limit: MAX_JSON_DEPTH,
                    };
                    return Err(self.reject(now, kind, error));
                }
                Ok(self.propose(now, Proposal::Write { scope, key, value }, Vec::new(), tr))
            }
            (
                Phase::Call(call),
                Intent::ModelResponded {
                    call_id,
                    input_tokens,
                    output_tokens,
                    cost,
                    output,
                },
            ) if call.call_id == call_id && matches!(call.proposal, Proposal::Model { .. }) => {
                Ok(self.model_responded(now, call, input_tokens, output_tokens, cost, output, tr))
            }
            (
                Phase::Call(call),
                Intent::ToolReturned {
                    call_id,
                    output,
                    cost,
                },
            ) if call.call_id == call_id && matches!(call.proposal, Proposal::Tool { .. }) => {
                Ok(self.tool_returned(now, call, output, cost, tr))
            }
            (
                Phase::Call(call),
                Intent::CallFailed {
                    call_id,
                    error,
                    retryable,
                    cost,
                    jitter_ms,
                },
            ) if call.call_id == call_id => {
                self.retry_jitter_ms = jitter_ms;
                Ok(self.call_failed(now, call, error, retryable, cost, tr))
            }
            (Phase::Call(call), Intent::InDoubt { call_id }) if call.call_id == call_id => {
                Ok(self.in_doubt(now, call, tr))
            }
            (
                Phase::Memory { read_id },
                Intent::MemoryLoaded {
                    read_id: id,
                    value,
                    labels,
                },
            ) if read_id == id => Ok(self.memory_loaded(now, read_id, value, labels, tr)),
            (Phase::Approval(pending), Intent::Approve { user, request_id })
                if pending.request_id == request_id =>
            {
                Ok(self.verdict(now, pending, user, true, String::new(), tr))
            }
            (
                Phase::Approval(pending),
                Intent::Reject {
                    user,
                    request_id,
                    reason,
                },
            ) if pending.request_id == request_id => {
                Ok(self.verdict(now, pending, user, false, reason, tr))
            }
            (
                phase @ (Phase::Running
                | Phase::Call(_)
                | Phase::Memory { .. }
                | Phase::Approval(_)),
                Intent::Tick,
            ) => {
                self.phase = phase;
                Ok(self.tick(now, tr))
            }
            (
                phase @ (Phase::Running
                | Phase::Call(_)
                | Phase::Memory { .. }
                | Phase::Approval(_)),
                Intent::Endorse { user, value },
            ) => {
                self.phase = phase;
                Ok(self.endorse(now, user, value, tr))
            }
            (
                phase @ (Phase::Created
                | Phase::Running
                | Phase::Call(_)
                | Phase::Memory { .. }
                | Phase::Approval(_)),
                Intent::Cancel { user, reason },
            ) => {
                self.phase = phase;
                Ok(self.cancel(now, user, reason, tr))
            }
            (Phase::Running, Intent::Complete { answer }) => {
                self.phase = Phase::Ended(Status::Completed);
                Ok(self.emit_into(tr, now, EventBody::Completed { answer }, None))
            }
            (
                phase @ (Phase::Created
                | Phase::Running
                | Phase::Call(_)
                | Phase::Memory { .. }
                | Phase::Approval(_)),
                Intent::Fail { error },
            ) => {
                self.phase = phase;
                Ok(self.end(now, Status::Failed, EventBody::Failed { error }, None, tr))
            }
            (phase, intent) => {
                let error = match (&phase, &intent) {
                    (
                        Phase::Call(_) | Phase::Memory { .. } | Phase::Approval(_) | Phase::Running,
                        i,
                    ) if referenced_id(i).is_some() => StepError::UnknownReference {
                        intent: kind.into(),
                        id: referenced_id(i).unwrap_or_default(),
                    },
                    _ => StepError::IllegalTransition {
                        intent: kind.into(),
                        status: status_of(&phase).as_str().into(),
                    },
                };
                self.phase = phase;
                Err(self.reject(now, kind, error))
            }
        }
    }

    /// Appends an event to the chain.
    fn emit(&mut self, now: u64, body: EventBody, decision: Option<Decision>) -> Event {
        self.chain
            .link(&self.config.id, &self.config.tenant, now, body, decision)
    }

    fn emit_into(
        &mut self,
        mut tr: Transition,
        now: u64,
        body: EventBody,
        decision: Option<Decision>,
    ) -> Transition {
        let event = self.emit(now, body, decision);
        tr.events.push(event);
        tr
    }

    fn reject(&mut self, now: u64, intent: &str, error: StepError) -> Rejected {
        let event = self.emit(
            now,
            EventBody::Rejected {
                intent: intent.into(),
                error: error.clone(),
            },
            None,
        );
        Rejected {
            error,
            event: Box::new(event),
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{}", self.next_id);
        self.next_id += 1;
        id
    }
}

/// A tool's output or a model's reply nested deeper than the log can hold is that call's failure
/// (not retried: the same call would answer the same), so the session moves on and the log stays
/// readable.
fn bound_results(intent: Intent) -> Intent {
    let (call_id, cost, whose) = match &intent {
        Intent::ToolReturned {
            call_id,
            output,
            cost,
        } if too_deep(output) => (call_id, *cost, "the tool's output"),
        Intent::ModelResponded {
            call_id,
            output,
            cost,
            ..
        } if too_deep(output) => (call_id, *cost, "the model's reply"),
        _ => return intent,
    };
    Intent::CallFailed {
        call_id: call_id.clone(),
        error: format!("{whose} is nested deeper than {MAX_JSON_DEPTH} levels"),
        retryable: false,
        cost,
        jitter_ms: 0,
    }
}

fn status_of(phase: &Phase) -> Status {
    match phase {
        Phase::Created => Status::Created,
        Phase::Running => Status::Running,
        Phase::Call(c) if matches!(c.proposal, Proposal::Model { .. }) => Status::WaitingModel,
        Phase::Call(_) => Status::WaitingTool,
        Phase::Memory { .. } => Status::WaitingMemory,
        Phase::Approval(_) => Status::WaitingApproval,
        Phase::Ended(s) => *s,
    }
}

/// The call, read or request id a result or verdict names.
fn referenced_id(intent: &Intent) -> Option<String> {
    match intent {
        Intent::ModelResponded { call_id, .. }
        | Intent::ToolReturned { call_id, .. }
        | Intent::CallFailed { call_id, .. }
        | Intent::InDoubt { call_id } => Some(call_id.clone()),
        Intent::MemoryLoaded { read_id, .. } => Some(read_id.clone()),
        Intent::Approve { request_id, .. } | Intent::Reject { request_id, .. } => {
            Some(request_id.clone())
        }
        _ => None,
    }
}
