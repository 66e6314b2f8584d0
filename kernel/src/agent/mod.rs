//! The agent loop, once, as a sans-IO machine: model turn → proposed calls → authorize → effects
//! → results → next turn, with retries, approvals, cancellation and resume.
//!
//! [`AgentLoop`] owns a [`Session`] and plays the agent around it. It does no I/O and reads no
//! clock: a driver asks it what to do next ([`AgentLoop::next`], given the time), writes each
//! [`Stepped`] ahead and performs its effects, hands results back ([`AgentLoop::deliver`]) and
//! outside happenings ([`AgentLoop::control`], or a schedule given up front), and waits when told
//! to. The async runtime, scenario replay and durable scripted runs are such drivers; what differs
//! between them is only how effects are performed and how time passes.
//!
//! Order of business at each call of `next`, which every driver therefore shares: a step that
//! must follow the last one (an in-doubt declaration after resume, a failure after a model call
//! failed for good); a delivered result (it wins a tie with a control due at the same instant);
//! a control that is due; then, while running, the next call the last model reply asked for, its
//! answer, or another model call while the model has something to say.

mod control;
mod resume;
mod transcript;

pub use control::Control;
pub use resume::{ResumeError, Resumed};
pub use transcript::{Message, ToolRequest};

use std::collections::VecDeque;

use serde_json::Value;

use crate::intent::{Intent, Step};
use crate::session::{Rejected, Session, Status, Transition};
use transcript::Transcript;

/// What the agent estimates its next model call will cost (reserved before the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Tokens, prompt and completion.
    pub tokens: u64,
    /// Micro-units.
    pub cost: u64,
}

/// What the agent does after a model reply: the calls it asks for (`CallTool`, `ReadMemory`,
/// `WriteMemory` intents, run in order) and the final answer, given once the calls are done.
pub type Plan = (Vec<Intent>, Option<String>);

/// The synchronous side of the model the loop plans with (the call itself is the driver's).
pub trait Planner {
    /// The estimate for the next call given the conversation so far (reserved from the budget
    /// before the call is made), or `None` when the agent has nothing more to ask.
    fn next_estimate(&mut self, transcript: &[Message]) -> Option<Estimate>;
    /// The next call was denied and never made: a scripted model drops that turn.
    fn skip(&mut self);
    /// Whether the agent goes on after a model call failed for good (no retry left or allowed).
    /// A live model cannot: the loop fails the session with the error. A scripted model moves on.
    fn continues_after_failure(&self) -> bool;
    /// The plan recorded in a `model_responded` output: how a resumed session rebuilds its
    /// pending calls without asking the model again. `None` when this model cannot tell, and then
    /// its sessions cannot be resumed.
    fn plan_from_output(&self, output: &Value) -> Option<Plan> {
        let _ = output;
        None
    }
}

/// A result handed back to the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The result as an intent (`ToolReturned`, `ModelResponded`, `MemoryLoaded`, `CallFailed`…).
    pub intent: Intent,
    /// A model reply's plan, when the model answered.
    pub plan: Option<Plan>,
    /// Whether it answers a model call (a model failure may end the session).
    pub from_model: bool,
}

impl Answer {
    /// A tool, memory or other non-model result.
    pub fn result(intent: Intent) -> Self {
        Self {
            intent,
            plan: None,
            from_model: false,
        }
    }
}

/// One step the session took: write it ahead (its intent, time and events), publish its events,
/// then perform its effects — in that order, so no effect happens that the log does not hold.
#[derive(Debug)]
pub struct Stepped {
    /// Position in the session's steps, from 0.
    pub n: u64,
    /// The logical time it was applied at.
    pub t_ms: u64,
    /// The intent, when the loop keeps intents ([`AgentLoop::keep_intents`]).
    pub intent: Option<Intent>,
    /// The status before the step.
    pub before: Status,
    /// The session's answer: a transition, or the rejection of an illegal intent.
    pub result: Result<Transition, Rejected>,
}

impl Stepped {
    /// The events the step appended.
    pub fn events(&self) -> &[crate::event::Event] {
        match &self.result {
            Ok(t) => &t.events,
            Err(r) => std::slice::from_ref(r.event.as_ref()),
        }
    }

    /// The step as a store keeps it (`None` unless the loop keeps intents).
    pub fn step(&self) -> Option<Step> {
        Some(Step {
            n: self.n,
            t_ms: self.t_ms,
            intent: self.intent.clone()?,
        })
    }
}

/// What the driver does next.
#[derive(Debug)]
pub enum Next {
    /// The session took a step.
    Stepped(Box<Stepped>),
    /// Nothing to do now: wait for the result of the effect in flight (if the driver has one),
    /// a control from outside (if it can receive any), or until `until`, when the next scheduled
    /// control falls due. With none of those to wait for, the run is over.
    Wait {
        /// The logical time of the next scheduled control.
        until: Option<u64>,
    },
    /// The session has ended.
    Finished,
}

/// The agent loop around one session.
pub struct AgentLoop {
    session: Session,
    model: String,
    /// The calls the last model reply asked for, with their transcript references, and its answer.
    queue: VecDeque<(Intent, Option<String>)>,
    answer: Option<String>,
    transcript: Option<Transcript>,
    schedule: VecDeque<(u64, Control)>,
    delivered: Option<Answer>,
    follow_up: Option<Intent>,
    steps: u64,
    keep_intents: bool,
}

impl AgentLoop {
    /// A loop around `session` whose model is the `Model` entity `model`. It keeps a transcript
    /// and the intents of its steps; turn either off where nobody reads them.
    pub fn new(session: Session, model: impl Into<String>) -> Self {
        Self {
            session,
            model: model.into(),
            queue: VecDeque::new(),
            answer: None,
            transcript: Some(Transcript::default()),
            schedule: VecDeque::new(),
            delivered: None,
            follow_up: None,
            steps: 0,
            keep_intents: true,
        }
    }

    /// Whether to keep the conversation for the model (a scripted model does not read it).
    pub fn keep_transcript(mut self, keep: bool) -> Self {
        self.transcript = keep.then(Transcript::default);
        self
    }

    /// Whether each [`Stepped`] carries its intent (what a store writes).
    pub fn keep_intents(mut self, keep: bool) -> Self {
        self.keep_intents = keep;
        self
    }

    /// Controls to apply at their logical times (ms); same-time controls keep their order.
    pub fn schedule(mut self, mut controls: Vec<(u64, Control)>) -> Self {
        controls.sort_by_key(|(at, _)| *at);
        self.schedule = controls.into();
        self
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The conversation so far (empty when not kept).
    pub fn transcript(&self) -> &[Message] {
        self.transcript.as_ref().map_or(&[], |t| &t.messages)
    }

    /// Whether the session waits on the result of an effect (a model call, a tool call or a memory
    /// read): only then is the driver's effect in flight worth waiting for.
    pub fn awaits_effect(&self) -> bool {
        matches!(
            self.session.status(),
            Status::WaitingModel | Status::WaitingTool | Status::WaitingMemory
        )
    }

    /// When the next scheduled control falls due.
    pub fn next_control_at(&self) -> Option<u64> {
        self.schedule.front().map(|(at, _)| *at)
    }

    /// Whether scheduled controls remain.
    pub fn has_scheduled(&self) -> bool {
        !self.schedule.is_empty()
    }

    /// Starts the session with the user's request.
    pub fn start(&mut self, request: String, now: u64) -> Stepped {
        if let Some(t) = &mut self.transcript {
            t.messages.push(Message::User {
                content: request.clone(),
            });
        }
        self.apply(Intent::Start { request }, now)
    }

    /// Applies an outside happening now (a live control).
    pub fn control(&mut self, control: Control, now: u64) -> Stepped {
        let request_id = self.session.pending_approval().unwrap_or("none").to_owned();
        self.apply(control.into_intent(request_id), now)
    }

    /// Applies `intent` now, outside the agent's plan: a raw-intent scenario or a fuzz case steps
    /// the session directly, but through the loop, so its steps are numbered and kept alike.
    pub fn propose(&mut self, intent: Intent, now: u64) -> Stepped {
        self.apply(intent, now)
    }

    /// Hands back the result of the effect in flight; the next [`AgentLoop::next`] applies it.
    pub fn deliver(&mut self, answer: Answer) {
        self.delivered = Some(answer);
    }

    /// What to do at logical time `now`.
    pub fn next(&mut self, now: u64, planner: &mut dyn Planner) -> Next {
        if self.session.status().is_terminal() {
            return Next::Finished;
        }
        if let Some(intent) = self.follow_up.take() {
            return Next::Stepped(Box::new(self.apply(intent, now)));
        }
        if let Some(answer) = self.delivered.take() {
            return Next::Stepped(Box::new(self.apply_answer(answer, now, planner)));
        }
        if self.schedule.front().is_some_and(|(at, _)| *at <= now)
            && let Some((_, control)) = self.schedule.pop_front()
        {
            return Next::Stepped(Box::new(self.control(control, now)));
        }
        if self.session.status() == Status::Running {
            if let Some((intent, call_ref)) = self.queue.pop_front() {
                if let Some(t) = &mut self.transcript {
                    t.working_on(call_ref);
                }
                return Next::Stepped(Box::new(self.apply(intent, now)));
            }
            if let Some(answer) = self.answer.take() {
                return Next::Stepped(Box::new(self.apply(Intent::Complete { answer }, now)));
            }
            if let Some(estimate) = planner.next_estimate(self.transcript()) {
                let intent = Intent::CallModel {
                    model: self.model.clone(),
                    estimated_tokens: estimate.tokens,
                    estimated_cost: estimate.cost,
                };
                let stepped = self.apply(intent, now);
                if self.session.status() == Status::Running {
                    planner.skip(); // denied: the model never ran this turn
                }
                return Next::Stepped(Box::new(stepped));
            }
        }
        Next::Wait {
            until: self.next_control_at(),
        }
    }

    fn apply_answer(&mut self, answer: Answer, now: u64, planner: &mut dyn Planner) -> Stepped {
        if let Some((calls, text)) = answer.plan {
            self.plan(calls, text);
        }
        let failed = match &answer.intent {
            Intent::CallFailed { error, .. } if answer.from_model => Some(error.clone()),
            _ => None,
        };
        let stepped = self.apply(answer.intent, now);
        if let Some(error) = failed
            && self.session.status() == Status::Running
            && !planner.continues_after_failure()
        {
            let error = format!("the model call failed for good: {error}");
            self.follow_up = Some(Intent::Fail { error });
        }
        stepped
    }

    /// Queues the calls a model reply asked for and records the turn in the transcript.
    fn plan(&mut self, calls: Vec<Intent>, answer: Option<String>) {
        let refs = match &mut self.transcript {
            Some(t) => t.turn(&calls, answer.as_ref()),
            None => Vec::new(),
        };
        let mut refs = refs.into_iter();
        self.queue = calls
            .into_iter()
            .map(|intent| (intent, refs.next().flatten()))
            .collect();
        self.answer = answer;
    }

    /// Steps the session at `now`.
    fn apply(&mut self, intent: Intent, now: u64) -> Stepped {
        let before = self.session.status();
        let kept = self.keep_intents.then(|| intent.clone());
        let n = self.steps;
        self.steps += 1;
        let result = self.session.step(intent, now);
        let stepped = Stepped {
            n,
            t_ms: now,
            intent: kept,
            before,
            result,
        };
        if let Some(t) = &mut self.transcript {
            let status = self.session.status();
            t.settle(
                status == Status::Running || status.is_terminal(),
                stepped.events(),
            );
        }
        stepped
    }
}
