//! Answers scripted per proposed call (`responses` on a turn's call), shared by the replay and the
//! driver so both pick the same answer.
//!
//! A turn's calls queue up per tool when the model answers. The first attempt of a call that runs
//! takes the oldest queued call of its tool with the same input; the calls queued before it were
//! proposals that never ran (denied, refused for their arguments, rejected by the approver) and
//! are dropped. So a call's own answers are its, whatever happens to the calls around it; a call
//! without its own answers takes the tool's script, whose answers are consumed per attempt.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use crate::scenario::{Call, ToolResponse};

/// The queued calls and the answers of the calls that ran.
#[derive(Debug, Default)]
pub struct CallAnswers {
    queued: BTreeMap<String, VecDeque<(Value, Vec<ToolResponse>)>>,
    running: BTreeMap<String, Vec<ToolResponse>>,
}

impl CallAnswers {
    /// A model turn proposed `calls`: they replace whatever the previous turn left queued.
    pub fn planned(&mut self, calls: &[Call]) {
        self.queued.clear();
        // A turn none of whose calls scripted answers queues nothing: the tools' scripts answer.
        if calls.iter().all(|c| c.responses.is_empty()) {
            return;
        }
        for c in calls {
            if let Some(tool) = &c.tool {
                self.queued
                    .entry(tool.clone())
                    .or_default()
                    .push_back((c.input.clone().unwrap_or(Value::Null), c.responses.clone()));
            }
        }
    }

    /// The answer to attempt `attempt` (from 1) of `call_id`, a call of `tool` with `input`, when
    /// its call scripted its own; `None`: the tool's script answers.
    pub fn answer(
        &mut self,
        tool: &str,
        call_id: &str,
        attempt: u32,
        input: &Value,
    ) -> Option<ToolResponse> {
        if !self.running.contains_key(call_id) {
            let queue = self.queued.get_mut(tool)?;
            let at = queue.iter().position(|(i, _)| i == input)?;
            queue.drain(..at);
            let (_, own) = queue.pop_front()?;
            self.running.insert(call_id.to_owned(), own);
        }
        let own = self.running.get(call_id)?;
        let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        own.get(i).or(own.last()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(tool: &str, input: Value, answers: &[&str]) -> Call {
        Call {
            tool: Some(tool.into()),
            input: Some(input),
            estimated_cost: 0,
            read_memory: None,
            write_memory: None,
            responses: answers
                .iter()
                .map(|a| ToolResponse {
                    output: Some(json!(a)),
                    fail: None,
                    retryable: false,
                    latency_ms: None,
                    cost: None,
                })
                .collect(),
        }
    }

    fn out(r: Option<ToolResponse>) -> Option<Value> {
        r.and_then(|r| r.output)
    }

    #[test]
    fn a_call_takes_its_own_answers_whatever_ran_before_it() {
        let mut a = CallAnswers::default();
        a.planned(&[
            call("pay", json!({"to": "mallory"}), &["never"]),
            call("pay", json!({"to": "bob"}), &["first", "retry"]),
            call("pay", json!({"to": "carol"}), &[]),
        ]);
        // The payment to mallory was denied: bob's call is the first to run.
        assert_eq!(
            out(a.answer("pay", "call-2", 1, &json!({"to": "bob"}))),
            Some(json!("first"))
        );
        assert_eq!(
            out(a.answer("pay", "call-2", 2, &json!({"to": "bob"}))),
            Some(json!("retry"))
        );
        assert_eq!(
            out(a.answer("pay", "call-2", 3, &json!({"to": "bob"}))),
            Some(json!("retry"))
        );
        // carol's call scripted nothing: the tool's script answers.
        assert!(
            a.answer("pay", "call-3", 1, &json!({"to": "carol"}))
                .is_none()
        );
        // A call no turn proposed, or another tool's: the script answers.
        assert!(
            a.answer("pay", "call-4", 1, &json!({"to": "dave"}))
                .is_none()
        );
        assert!(a.answer("mail", "call-5", 1, &json!({})).is_none());
    }

    #[test]
    fn a_new_turn_drops_what_the_last_one_left() {
        let mut a = CallAnswers::default();
        a.planned(&[call("pay", json!(1), &["old"])]);
        a.planned(&[call("pay", json!(1), &["new"])]);
        assert_eq!(
            out(a.answer("pay", "call-1", 1, &json!(1))),
            Some(json!("new"))
        );
    }
}
