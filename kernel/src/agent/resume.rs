//! Picking a session up from its recorded steps: replay them (checking they reproduce the recorded
//! events), rebuild the agent's transcript and pending calls from the recorded model replies, and
//! declare whatever was in flight *in doubt*, for policy to decide whether it runs again.

use thiserror::Error;

use super::{AgentLoop, Message, Planner};
use crate::event::{Event, EventBody};
use crate::intent::{Intent, Step};
use crate::session::{Effect, Status};

/// Why a recorded session could not be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResumeError {
    /// The model cannot rebuild a plan from its recorded output.
    #[error("this model cannot rebuild its pending calls from the log")]
    CannotPlan,
    /// Replaying a step gave other events than the log holds.
    #[error("step {0} does not reproduce the recorded events")]
    Diverged(u64),
}

/// What resuming produced.
#[derive(Debug, Default)]
pub struct Resumed {
    /// The recorded events, reproduced.
    pub events: Vec<Event>,
    /// A memory read that was in flight, to perform again (reads have no side effect).
    pub reread: Option<Effect>,
}

impl AgentLoop {
    /// Replays `steps` into this (fresh) loop's session, checking each against the `recorded`
    /// events. The next [`AgentLoop::next`] then declares a call that was in flight in doubt.
    pub fn resume(
        &mut self,
        steps: Vec<Step>,
        recorded: Vec<Event>,
        planner: &dyn Planner,
    ) -> Result<Resumed, ResumeError> {
        let mut recorded = recorded.into_iter();
        let mut resumed = Resumed::default();
        let mut last_read = None;
        for step in steps {
            match &step.intent {
                Intent::Start { request } => {
                    if let Some(t) = &mut self.transcript {
                        t.messages.push(Message::User {
                            content: request.clone(),
                        });
                    }
                }
                Intent::ModelResponded { output, .. } => {
                    let (calls, answer) = planner
                        .plan_from_output(output)
                        .ok_or(ResumeError::CannotPlan)?;
                    self.plan(calls, answer);
                }
                Intent::CallTool { .. }
                | Intent::ReadMemory { .. }
                | Intent::WriteMemory { .. } => {
                    if let Some((_, call_ref)) = self.queue.pop_front()
                        && let Some(t) = &mut self.transcript
                    {
                        t.working_on(call_ref);
                    }
                }
                Intent::Complete { .. } => self.answer = None,
                _ => {}
            }
            let keep = std::mem::replace(&mut self.keep_intents, false);
            let stepped = self.apply(step.intent, step.t_ms);
            self.keep_intents = keep;
            let produced = stepped.events();
            let expected: Vec<Event> = recorded.by_ref().take(produced.len()).collect();
            if expected != produced {
                return Err(ResumeError::Diverged(step.n));
            }
            last_read = produced
                .iter()
                .rev()
                .find_map(|e| match &e.body {
                    EventBody::MemoryRead {
                        read_id,
                        scope,
                        key,
                    } => Some((read_id.clone(), scope.clone(), key.clone())),
                    _ => None,
                })
                .or(last_read);
            resumed.events.extend(expected);
        }
        if let Some(call_id) = self.session.call_in_flight().map(str::to_owned) {
            self.follow_up = Some(Intent::InDoubt { call_id });
        } else if self.session.status() == Status::WaitingMemory
            && let Some((read_id, scope, key)) = last_read
        {
            resumed.reread = Some(Effect::ReadMemory {
                read_id,
                scope,
                key,
            });
        }
        Ok(resumed)
    }
}
