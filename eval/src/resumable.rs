//! Resumable scripted runs: the replay's agent loop with a store underneath and real subprocess
//! tools, resumable after the process dies at any point.
//!
//! Write-ahead: every step is appended (with its events) before the player acts on its effects, so
//! a tool runs only after its `tool_called` is on disk. On start, a session already in the store
//! is resumed: the scenario is played again from the beginning, each step checked against the log
//! (same intent, same time, byte-identical events) instead of written, and real tools are not run
//! for results the log already holds. When the log runs out while a call it dispatched has no
//! recorded result, the call is declared **in doubt** (`Intent::InDoubt`) and policy decides:
//! base re-runs idempotent tools (same call id, so the tool can deduplicate) and sends anything
//! else to an approver.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use kernel::{Deployment, Event, Intent, SessionConfig, Step};
use runtime::store::{SessionStore, StoreError};
use runtime::tools::{SubprocessTool, Tool, ToolCall, result_intent};
use serde_json::Value;

/// A store-backed run in progress.
pub struct Resumable {
    store: Arc<dyn SessionStore>,
    tenant: String,
    session: String,
    /// Recorded steps and events not yet matched by the resumed run.
    log: VecDeque<Step>,
    events: VecDeque<Event>,
    /// Calls dispatched by this process (call id, attempt): only those may run here.
    live: BTreeSet<(String, u32)>,
    /// Whether the step being applied came from the log (its effects happened before the restart).
    replaying: bool,
    /// Real tools: name → program and arguments.
    tools: BTreeMap<String, Vec<String>>,
    /// Why the run stopped (a store refusal, a log the scenario does not reproduce).
    pub error: Option<String>,
    /// Steps replayed from the log, and calls declared in doubt.
    pub resumed_steps: usize,
    /// Calls this process declared in doubt.
    pub in_doubt: usize,
}

impl Resumable {
    /// Opens the session in `store` (resuming it when it exists).
    pub fn open(
        store: Arc<dyn SessionStore>,
        deployment: &Deployment,
        config: &SessionConfig,
        tools: BTreeMap<String, Vec<String>>,
    ) -> Result<Self, StoreError> {
        let (log, events) = match store.load(&config.tenant, &config.id) {
            Ok(stored) => (stored.steps.into(), stored.events.into()),
            Err(StoreError::NotFound(_)) => {
                store.begin(deployment, config, 0)?;
                (VecDeque::new(), VecDeque::new())
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            store,
            tenant: config.tenant.clone(),
            session: config.id.clone(),
            log,
            events,
            live: BTreeSet::new(),
            replaying: false,
            tools,
            error: None,
            resumed_steps: 0,
            in_doubt: 0,
        })
    }

    /// Writes a step ahead of its effects, or, while resuming, checks it against the log. False
    /// when the run must stop.
    pub(crate) fn record(&mut self, step: &Step, events: &[Event]) -> bool {
        self.replaying = !self.log.is_empty();
        if let Some(logged) = self.log.pop_front() {
            let recorded: Vec<Event> = self
                .events
                .drain(..events.len().min(self.events.len()))
                .collect();
            if &logged != step || recorded != events {
                self.error = Some(format!(
                    "step {} does not reproduce the log (recorded {:?} at {} ms, now {:?} at {} ms): \
                     the scenario or the policies changed since the run was recorded",
                    step.n,
                    logged.intent.kind(),
                    logged.t_ms,
                    step.intent.kind(),
                    step.t_ms
                ));
                return false;
            }
            self.resumed_steps += 1;
            return true;
        }
        match self.store.append(&self.tenant, &self.session, step, events) {
            Ok(()) => true,
            Err(e) => {
                self.error = Some(e.to_string());
                false
            }
        }
    }

    /// A call was handed out; it may run here only if the step that handed it out was new (not
    /// replayed from the log: then it may have run before the restart).
    pub(crate) fn dispatched(&mut self, call_id: &str, attempt: u32) {
        if !self.replaying {
            self.live.insert((call_id.to_owned(), attempt));
        }
    }

    /// The result of a real tool call: the recorded one while resuming, `InDoubt` when the call
    /// was dispatched before the restart and its result never recorded, else the tool's own.
    /// `None` for tools that stay scripted.
    pub(crate) fn answer(
        &mut self,
        tool: &str,
        call_id: &str,
        attempt: u32,
        input: &Value,
    ) -> Option<Intent> {
        let command = self.tools.get(tool)?.clone();
        if let Some(next) = self.log.front() {
            return Some(next.intent.clone());
        }
        if !self.live.contains(&(call_id.to_owned(), attempt)) {
            self.in_doubt += 1;
            return Some(Intent::InDoubt {
                call_id: call_id.to_owned(),
            });
        }
        Some(run_tool(
            &command,
            (&self.tenant, &self.session),
            call_id,
            attempt,
            input,
        ))
    }
}

/// Runs a real tool through the runtime's subprocess adapter (the one tool protocol: JSON on
/// stdin, JSON on stdout, an empty environment but `PATH` and the call's id and attempt, its
/// idempotency key), waiting for it in place: the scripted run is synchronous.
fn run_tool(
    command: &[String],
    (tenant, session): (&str, &str),
    call_id: &str,
    attempt: u32,
    input: &Value,
) -> Intent {
    let failed = |error: String| Intent::CallFailed {
        call_id: call_id.to_owned(),
        error,
        retryable: false,
        cost: 0,
        jitter_ms: 0,
    };
    let Some((program, args)) = command.split_first() else {
        return failed("empty tool command".into());
    };
    let executor = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(executor) => executor,
        Err(e) => return failed(format!("cannot start the tool's executor: {e}")),
    };
    let tool = SubprocessTool::new(program, args.iter().cloned());
    let call = ToolCall {
        call_id: call_id.to_owned(),
        attempt,
        tenant: tenant.to_owned(),
        session: session.to_owned(),
        input: input.clone(),
        credentials: BTreeMap::new(),
    };
    result_intent(call_id.to_owned(), executor.block_on(tool.call(call)))
}
