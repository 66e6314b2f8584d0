//! A scenario run through the async driver instead of the pure replay: the scenario's turns become
//! a scripted [`Model`], its tool scripts scripted [`Tool`]s that sleep their latency, its events
//! scheduled controls. Under tokio's paused clock this yields the replay's event stream exactly,
//! which is what the equivalence test checks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel::{Deployment, Session};
use runtime::{
    Estimate, Message, Model, ModelCall, ModelError, ModelFuture, ModelReply, Outcome, Runtime,
    Tool, ToolCall, ToolError, ToolFuture, ToolOutput,
};

use crate::ScenarioError;
use crate::call_answers::CallAnswers;
use crate::scenario::{LoadedScenario, ToolScript, Turn};

/// The scenario's model turns, one per call.
pub struct ScriptedModel {
    turns: Mutex<VecDeque<Turn>>,
    answers: Arc<Mutex<CallAnswers>>,
}

impl ScriptedModel {
    /// A model answering with `turns` in order.
    pub fn new(turns: Vec<Turn>) -> Self {
        Self::sharing(turns, Arc::default())
    }

    /// A model whose turns' calls queue their own answers in `answers`, for the tools to take.
    pub fn sharing(turns: Vec<Turn>, answers: Arc<Mutex<CallAnswers>>) -> Self {
        Self {
            turns: Mutex::new(turns.into()),
            answers,
        }
    }

    fn pop(&self) -> Option<Turn> {
        self.turns.lock().ok().and_then(|mut t| t.pop_front())
    }
}

impl Model for ScriptedModel {
    fn continues_after_failure(&self) -> bool {
        true
    }

    fn next_estimate(&self, _transcript: &[Message]) -> Option<Estimate> {
        let turns = self.turns.lock().ok()?;
        let (tokens, cost) = turns.front()?.estimate();
        Some(Estimate { tokens, cost })
    }

    fn skip(&self) {
        self.pop();
    }

    fn call(&self, _call: ModelCall) -> ModelFuture<'_> {
        let turn = self.pop();
        if let Some(t) = turn.as_ref().filter(|t| t.fail.is_none())
            && let Ok(mut answers) = self.answers.lock()
        {
            answers.planned(&t.calls);
        }
        Box::pin(async move {
            let Some(turn) = turn else {
                return Err(ModelError {
                    message: "the script has no turn left".into(),
                    retryable: false,
                    cost: 0,
                });
            };
            tokio::time::sleep(Duration::from_millis(turn.latency_ms)).await;
            if let Some(message) = &turn.fail {
                return Err(ModelError {
                    message: message.clone(),
                    retryable: turn.retryable,
                    cost: turn.cost,
                });
            }
            Ok(ModelReply {
                input_tokens: turn.input_tokens,
                output_tokens: turn.output_tokens,
                cost: turn.cost,
                output: turn.output(),
                calls: turn.calls.iter().filter_map(|c| c.intent()).collect(),
                answer: turn.answer.clone(),
            })
        })
    }
}

/// A tool answering from its script, one response per call (retries included).
pub struct ScriptedTool {
    name: String,
    script: Option<ToolScript>,
    calls: AtomicUsize,
    answers: Arc<Mutex<CallAnswers>>,
}

impl ScriptedTool {
    /// Tool `name` following `script` (none: answers `{"ok": true}` after 10 ms), except for the
    /// calls whose own answers the model queued in `answers`.
    pub fn new(name: &str, script: Option<ToolScript>, answers: Arc<Mutex<CallAnswers>>) -> Self {
        Self {
            name: name.to_owned(),
            script,
            calls: AtomicUsize::new(0),
            answers,
        }
    }
}

impl Tool for ScriptedTool {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        let own = self
            .answers
            .lock()
            .ok()
            .and_then(|mut a| a.answer(&self.name, &call.call_id, call.attempt, &call.input));
        let (latency, cost, response) = match (own, &self.script) {
            (Some(r), script) => {
                let (latency, cost) = script.as_ref().map_or((10, 0), |s| (s.latency_ms, s.cost));
                (r.latency_ms.unwrap_or(latency), r.cost.unwrap_or(cost), r)
            }
            (None, Some(script)) => script.response(self.calls.fetch_add(1, Ordering::SeqCst)),
            (None, None) => (10, 0, crate::scenario::default_response()),
        };
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(latency)).await;
            match response.fail {
                Some(message) => Err(ToolError::Failed {
                    message,
                    retryable: response.retryable,
                    cost,
                }),
                None => Ok(ToolOutput {
                    value: response.output.unwrap_or_default(),
                    cost,
                }),
            }
        })
    }
}

/// Runs a (turn-scripted) scenario through the driver.
pub async fn run_on_runtime(
    s: &LoadedScenario,
    deployment: Arc<Deployment>,
) -> Result<Outcome, ScenarioError> {
    let spec = &s.scenario.session;
    let session = Session::new(Arc::clone(&deployment), s.session_config())
        .map_err(|e| ScenarioError::invalid(&s.source, None, &format!("session: {e}")))?;
    let answers: Arc<Mutex<CallAnswers>> = Arc::default();
    let mut runtime = Runtime::new(
        Arc::new(ScriptedModel::sharing(
            s.scenario.turns.clone(),
            Arc::clone(&answers),
        )),
        spec.model.clone(),
    );
    for name in deployment.tool_names() {
        let script = s.scenario.tool_script.get(name).cloned();
        let tool = ScriptedTool::new(name, script, Arc::clone(&answers));
        runtime = runtime.tool(name, Arc::new(tool));
    }
    if let Ok(mut memory) = runtime.memory().lock() {
        for m in &s.scenario.memory {
            let tenant = m.tenant.clone().unwrap_or_else(|| spec.tenant.clone());
            memory.insert(
                (tenant, m.scope.clone(), m.key.clone()),
                (m.value.clone(), m.labels.clone()),
            );
        }
    }
    let schedule = s
        .scenario
        .events
        .iter()
        .map(|e| (e.at_ms, e.control()))
        .collect();
    Ok(runtime
        .run(session, spec.request.clone(), schedule, None)
        .await)
}
