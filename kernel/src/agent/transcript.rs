//! The conversation a model sees, kept by the loop (not by the model: a model adapter is shared by
//! many sessions, and the transcript must only ever hold what the kernel let through — a denied
//! call is answered with its denial, never run).

use serde_json::Value;

use crate::event::{Event, EventBody};
use crate::intent::Intent;

/// One message of the conversation a model sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The user's request.
    User {
        /// The text.
        content: String,
    },
    /// A model turn: text, tool calls, or both.
    Assistant {
        /// The text, if any.
        content: Option<String>,
        /// The tool calls it asked for.
        calls: Vec<ToolRequest>,
    },
    /// What became of one requested tool call.
    Tool {
        /// The [`ToolRequest::call_ref`] it answers.
        call_ref: String,
        /// The tool's output as JSON text, or why there is none (denied, failed, rejected).
        content: String,
    },
}

/// A tool call a model asked for, as it appears in the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    /// Pairs the request with its [`Message::Tool`] answer; assigned by the loop.
    pub call_ref: String,
    /// The tool.
    pub name: String,
    /// The arguments as the model gave them.
    pub arguments: Value,
}

/// The transcript with the bookkeeping that pairs requested calls with their answers.
#[derive(Debug, Default)]
pub(super) struct Transcript {
    pub(super) messages: Vec<Message>,
    /// The reference of the requested tool call being worked on.
    current: Option<String>,
    refs: u64,
}

impl Transcript {
    /// Records a model turn and returns one reference per call (tool calls only).
    pub(super) fn turn(
        &mut self,
        calls: &[Intent],
        answer: Option<&String>,
    ) -> Vec<Option<String>> {
        let mut requests = Vec::new();
        let refs = calls
            .iter()
            .map(|intent| {
                let Intent::CallTool { tool, input, .. } = intent else {
                    return None;
                };
                self.refs += 1;
                let call_ref = format!("ref-{}", self.refs);
                requests.push(ToolRequest {
                    call_ref: call_ref.clone(),
                    name: tool.clone(),
                    arguments: input.clone(),
                });
                Some(call_ref)
            })
            .collect();
        self.messages.push(Message::Assistant {
            content: answer.cloned(),
            calls: requests,
        });
        refs
    }

    /// The call proposed next is the one `call_ref` names (or none).
    pub(super) fn working_on(&mut self, call_ref: Option<String>) {
        self.current = call_ref;
    }

    /// Once the requested call being worked on is settled (the session no longer waits on it),
    /// tells the model what became of it.
    pub(super) fn settle(&mut self, settled: bool, events: &[Event]) {
        if !settled {
            return;
        }
        if let Some(call_ref) = self.current.take() {
            self.messages.push(Message::Tool {
                call_ref,
                content: outcome(events),
            });
        }
    }
}

/// What a settled tool call gives the model: its output, or why there is none.
fn outcome(events: &[Event]) -> String {
    for event in events.iter().rev() {
        let text = match &event.body {
            EventBody::ToolReturned { output, .. } => output.to_string(),
            EventBody::CallFailed {
                error,
                will_retry: false,
                ..
            } => format!("error: {error}"),
            EventBody::ApprovalRejected { reason, .. } => {
                format!("not run: the approver rejected it ({reason})")
            }
            EventBody::ApprovalExpired { .. } => "not run: the approval request expired".into(),
            EventBody::Rejected { error, .. } => format!("not run: {error}"),
            EventBody::Decision { .. } => match &event.decision {
                Some(d) if !d.proceeds() => {
                    let ids: Vec<&str> = d.policies.iter().map(|p| p.id.as_str()).collect();
                    if ids.is_empty() {
                        "not run: denied by policy (no policy permits it)".into()
                    } else {
                        format!("not run: denied by policy {}", ids.join(", "))
                    }
                }
                _ => continue,
            },
            _ => continue,
        };
        return text;
    }
    "not run".into()
}
