//! The session runtime: drives one kernel session to its end, performing each effect through the
//! tools, the model and the memory store, on a clock read from tokio (paused in tests, so a
//! scripted run is exact and instant).
//!
//! The agent loop is the replay's: while running, propose the next call the last model reply asked
//! for, then its answer, then another model call while the model has something to say. A call's
//! result arrives when it is ready unless a scheduled control (approval, rejection, cancellation,
//! tick) falls due first; a control due now is applied before anything else. `@timeout_ms` cuts a
//! call (the late answer is dropped: a retryable failure); an abort drops the in-flight future,
//! which stops the tool (a subprocess tool kills its process group).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::{
    Credentials, EventHub, Message, Model, ModelCall, Subscriber, Tool, ToolCall, ToolRequest,
};
use crate::event::{Event, EventBody};
use crate::intent::Intent;
use crate::session::{Effect, Session, Status};
use crate::store::{SessionStore, Step, StoreError, StoredSession};

/// Something that happens to a session from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A user approves the waiting request.
    Approve {
        /// The user.
        user: String,
    },
    /// A user rejects the waiting request.
    Reject {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// A user cancels the session.
    Cancel {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// A user vouches for a value.
    Endorse {
        /// The user.
        user: String,
        /// The value.
        value: String,
    },
    /// A clock tick (`continue_session`).
    Tick,
}

impl Control {
    /// The intent this control is; `request_id` names the request an approval or rejection answers.
    pub fn into_intent(self, request_id: String) -> Intent {
        match self {
            Self::Approve { user } => Intent::Approve { user, request_id },
            Self::Reject { user, reason } => Intent::Reject {
                user,
                request_id,
                reason,
            },
            Self::Cancel { user, reason } => Intent::Cancel { user, reason },
            Self::Endorse { user, value } => Intent::Endorse { user, value },
            Self::Tick => Intent::Tick,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The final status (`running` when the model had nothing more to say).
    pub status: Status,
    /// Why the run stopped early without reaching an end state: its store refused a write (another
    /// writer owns the session, or the backend failed). Nothing after the refused step was done.
    pub store_error: Option<crate::store::StoreError>,
}

/// Memory entries with their labels, by (scope, key).
pub type MemoryStore = BTreeMap<(String, String), (Value, Vec<String>)>;

/// What performs a session's effects.
pub struct Runtime {
    model: Arc<dyn Model>,
    model_id: String,
    tools: BTreeMap<String, Arc<dyn Tool>>,
    credentials: Credentials,
    memory: Arc<Mutex<MemoryStore>>,
    jitter: Option<Mutex<u64>>,
    store: Option<Arc<dyn SessionStore>>,
    keep_events: bool,
}

/// Retry jitter is drawn below this many milliseconds.
const MAX_JITTER_MS: u64 = 100;

/// A result on its way back to the kernel, with what the agent does next when it is a model reply.
struct Answer {
    intent: Intent,
    next: Option<(Vec<Intent>, Option<String>)>,
    from_model: bool,
}

type InFlight<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

impl Runtime {
    /// A runtime whose agent talks to `model` (the `Model` entity `model_id`).
    pub fn new(model: Arc<dyn Model>, model_id: impl Into<String>) -> Self {
        Self {
            model,
            model_id: model_id.into(),
            tools: BTreeMap::new(),
            credentials: Credentials::default(),
            memory: Arc::default(),
            jitter: None,
            store: None,
            keep_events: true,
        }
    }

    /// Whether runs keep every event for their [`Outcome`] (the default). A deployment whose
    /// sessions publish to a hub or a store can turn this off: a session then holds no event in
    /// memory, however long it runs, and `Outcome::events` is empty.
    pub fn keep_events(mut self, keep: bool) -> Self {
        self.keep_events = keep;
        self
    }

    /// Makes runs durable: each session is created in `store` with its bundle, and every step is
    /// written with its events before any effect it returns is performed (write-ahead), so a tool
    /// never runs unless the decision to run it is on disk. A refused write stops the run.
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds up to 100 ms of jitter, drawn from a generator seeded with `seed`, to every retry's
    /// backoff. The kernel receives the value with the failure and records the resulting
    /// `not_before_ms`, so a run stays replayable; without this, retries have no jitter.
    pub fn retry_jitter(mut self, seed: u64) -> Self {
        self.jitter = Some(Mutex::new(seed));
        self
    }

    /// The next jitter value (splitmix64), or 0 when jitter is off.
    fn next_jitter(&self) -> u64 {
        let Some(state) = &self.jitter else { return 0 };
        let Ok(mut s) = state.lock() else { return 0 };
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % MAX_JITTER_MS
    }

    /// Registers the implementation of the tool `name`.
    pub fn tool(mut self, name: impl Into<String>, tool: Arc<dyn Tool>) -> Self {
        self.tools.insert(name.into(), tool);
        self
    }

    /// Sets the per-tenant credentials handed to tools.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The memory store (shared by every session this runtime drives).
    pub fn memory(&self) -> Arc<Mutex<MemoryStore>> {
        Arc::clone(&self.memory)
    }

    /// Starts `session` on its own task and returns a handle to steer it: controls sent through the
    /// handle (cancel, approve, reject) apply as soon as they arrive, even mid-call, and with
    /// `tick_every` the clock ticks on its own so `continue_session` policies can stop a stalled
    /// run. Events go to `hub` as they happen (subscribe before spawning to see them all).
    pub fn spawn(
        self: &Arc<Self>,
        session: Session,
        request: String,
        hub: EventHub,
        tick_every: Option<Duration>,
    ) -> SessionHandle {
        self.launch(session, Begin::Fresh(request), hub, tick_every)
    }

    /// Resumes a session from its store record (a fresh `session` built from the record's
    /// configuration and bundle): replays the recorded steps — checking that they reproduce the
    /// recorded events — rebuilds the agent's transcript and pending calls from the recorded model
    /// replies, declares a call that was in flight *in doubt* (policy decides whether it runs
    /// again), and carries on like [`Runtime::spawn`]. Logical time resumes where the log stopped.
    pub fn resume(
        self: &Arc<Self>,
        session: Session,
        stored: StoredSession,
        hub: EventHub,
        tick_every: Option<Duration>,
    ) -> SessionHandle {
        self.launch(session, Begin::Resume(Box::new(stored)), hub, tick_every)
    }

    /// Runs a session on its own task, steered by live controls.
    fn launch(
        self: &Arc<Self>,
        session: Session,
        begin: Begin,
        hub: EventHub,
        tick_every: Option<Duration>,
    ) -> SessionHandle {
        let (sender, receiver) = mpsc::unbounded_channel();
        let rt = Arc::clone(self);
        let task_hub = hub.clone();
        // Boxed, the session is held once on the heap, not inline in both this task's future and
        // the run's (about 1.2 KiB per live session).
        let session = Box::new(session);
        let task = tokio::spawn(async move {
            rt.run_with(
                session,
                begin,
                Vec::new(),
                Some(&task_hub),
                Some(receiver),
                tick_every,
            )
            .await
        });
        SessionHandle {
            controls: sender,
            hub,
            task,
        }
    }

    /// Runs `session` from its start with `request`, applying `schedule`d controls at their
    /// logical times (ms from the start), publishing every event to `hub` when given.
    pub async fn run(
        &self,
        session: Session,
        request: String,
        schedule: Vec<(u64, Control)>,
        hub: Option<&EventHub>,
    ) -> Outcome {
        self.run_with(
            Box::new(session),
            Begin::Fresh(request),
            schedule,
            hub,
            None,
            None,
        )
        .await
    }

    async fn run_with(
        &self,
        mut session: Box<Session>,
        begin: Begin,
        schedule: Vec<(u64, Control)>,
        hub: Option<&EventHub>,
        live: Option<mpsc::UnboundedReceiver<Control>>,
        tick_every: Option<Duration>,
    ) -> Outcome {
        let resumed_at = match &begin {
            Begin::Resume(stored) => stored.steps.last().map_or(0, |s| s.t_ms),
            Begin::Fresh(_) => 0,
        };
        let now = Instant::now();
        let t0 = now
            .checked_sub(Duration::from_millis(resumed_at))
            .unwrap_or(now);
        if let (Some(store), Begin::Fresh(_)) = (&self.store, &begin) {
            let created = store.begin(session.deployment(), session.config(), wall_ms());
            if let Err(e) = created {
                return Outcome {
                    status: session.status(),
                    events: Vec::new(),
                    store_error: Some(e),
                };
            }
        }
        let mut controls: Vec<(u64, Control)> = schedule;
        controls.sort_by_key(|(at, _)| *at); // stable: same-time controls keep their order
        let mut run = Run {
            rt: self,
            t0,
            tenant: session.config().tenant.clone(),
            events: Vec::new(),
            transcript: Vec::new(),
            current: None,
            refs: 0,
            controls: controls.into(),
            queue: VecDeque::new(),
            answer: None,
            in_flight: None,
            hub,
            live,
            tick_every,
            next_tick: t0 + tick_every.unwrap_or_default(),
            steps: 0,
            store_error: None,
        };
        match begin {
            Begin::Fresh(request) => {
                run.transcript.push(Message::User {
                    content: request.clone(),
                });
                run.apply(&mut session, Intent::Start { request });
            }
            Begin::Resume(stored) => run.restore(&mut session, *stored),
        }
        run.drive(&mut session).await;
        Outcome {
            status: session.status(),
            events: run.events,
            store_error: run.store_error,
        }
    }
}

struct Run<'a> {
    rt: &'a Runtime,
    t0: Instant,
    tenant: String,
    events: Vec<Event>,
    /// What the model will see on its next call.
    transcript: Vec<Message>,
    /// The transcript reference of the requested tool call being worked on.
    current: Option<String>,
    refs: u64,
    controls: VecDeque<(u64, Control)>,
    /// The calls the last model reply asked for, with their transcript references.
    queue: VecDeque<(Intent, Option<String>)>,
    answer: Option<String>,
    in_flight: Option<InFlight<'a>>,
    hub: Option<&'a EventHub>,
    live: Option<mpsc::UnboundedReceiver<Control>>,
    tick_every: Option<Duration>,
    next_tick: Instant,
    /// Steps written to the store so far.
    steps: u64,
    store_error: Option<crate::store::StoreError>,
}

/// How a run begins: a new session with the user's request, or a stored one picking up.
enum Begin {
    Fresh(String),
    Resume(Box<StoredSession>),
}

/// What the next outside happening is.
enum External {
    Scheduled,
    Tick,
    Live(Option<Control>),
}

impl<'a> Run<'a> {
    fn now(&self) -> u64 {
        u64::try_from((Instant::now() - self.t0).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    async fn drive(&mut self, session: &mut Session) {
        while !session.status().is_terminal() && self.store_error.is_none() {
            if self
                .controls
                .front()
                .is_some_and(|(at, _)| *at <= self.now())
            {
                self.control(session);
                continue;
            }
            match session.status() {
                Status::Running => {
                    if let Some((intent, call_ref)) = self.queue.pop_front() {
                        self.current = call_ref;
                        self.apply(session, intent);
                    } else if let Some(answer) = self.answer.take() {
                        self.apply(session, Intent::Complete { answer });
                    } else if let Some(estimate) = self.rt.model.next_estimate(&self.transcript) {
                        let intent = Intent::CallModel {
                            model: self.rt.model_id.clone(),
                            estimated_tokens: estimate.tokens,
                            estimated_cost: estimate.cost,
                        };
                        self.apply(session, intent);
                        if session.status() == Status::Running {
                            self.rt.model.skip(); // denied: the model never ran this turn
                        }
                    } else if !self.next_control(session).await {
                        return; // nothing more to say, nobody else to hear from
                    }
                }
                Status::WaitingModel | Status::WaitingTool | Status::WaitingMemory => {
                    let Some(mut fut) = self.in_flight.take() else {
                        if !self.next_control(session).await {
                            return;
                        }
                        continue;
                    };
                    // The result wins a tie with an outside happening due at the same instant.
                    let a = if self.expects_external() {
                        tokio::select! {
                            biased;
                            answer = &mut fut => answer,
                            external = self.external() => {
                                self.in_flight = Some(fut);
                                self.handle_external(session, external);
                                continue;
                            }
                        }
                    } else {
                        fut.await
                    };
                    if let Some((calls, answer)) = a.next {
                        self.queue_calls(calls, answer);
                    }
                    let mut intent = a.intent;
                    if let Intent::CallFailed {
                        retryable: true,
                        jitter_ms,
                        ..
                    } = &mut intent
                    {
                        *jitter_ms = self.rt.next_jitter();
                    }
                    let failed = match &intent {
                        Intent::CallFailed { error, .. } if a.from_model => Some(error.clone()),
                        _ => None,
                    };
                    self.apply(session, intent);
                    if let Some(error) = failed
                        && session.status() == Status::Running
                        && !self.rt.model.continues_after_failure()
                    {
                        let error = format!("the model call failed for good: {error}");
                        self.apply(session, Intent::Fail { error });
                    }
                }
                Status::WaitingApproval => {
                    if !self.next_control(session).await {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Waits for the next outside happening and applies it; false when none can come.
    async fn next_control(&mut self, session: &mut Session) -> bool {
        while self.expects_external() {
            let external = self.external().await;
            if self.handle_external(session, external) {
                return true;
            }
        }
        false
    }

    /// Whether anything can still happen from outside.
    fn expects_external(&self) -> bool {
        !self.controls.is_empty() || self.tick_every.is_some() || self.live.is_some()
    }

    /// The earliest of: the next scheduled control, the next tick, a live control.
    async fn external(&mut self) -> External {
        let due = self.controls.front().map(|(at, _)| self.at(*at));
        let tick = self.tick_every.map(|_| self.next_tick);
        let live = self.live.as_mut();
        tokio::select! {
            biased;
            () = wait(due) => External::Scheduled,
            () = wait(tick) => External::Tick,
            control = recv(live) => External::Live(control),
        }
    }

    /// Applies an outside happening; false when it was only the live channel closing.
    fn handle_external(&mut self, session: &mut Session, external: External) -> bool {
        match external {
            External::Scheduled => self.control(session),
            External::Tick => {
                self.next_tick += self.tick_every.unwrap_or_default();
                self.apply_control(session, Control::Tick);
            }
            External::Live(Some(control)) => self.apply_control(session, control),
            External::Live(None) => {
                self.live = None;
                return false;
            }
        }
        true
    }

    fn control(&mut self, session: &mut Session) {
        if let Some((_, control)) = self.controls.pop_front() {
            self.apply_control(session, control);
        }
    }

    fn apply_control(&mut self, session: &mut Session, control: Control) {
        let request_id = session.pending_approval().unwrap_or("none").to_owned();
        let intent = control.into_intent(request_id);
        self.apply(session, intent);
    }

    /// Replays a stored session into `session` and this run's agent state, then declares whatever
    /// was in flight in doubt. A log the session does not reproduce stops the run.
    fn restore(&mut self, session: &mut Session, stored: StoredSession) {
        let mut recorded = stored.events.into_iter();
        let mut last_read = None;
        for step in stored.steps {
            match &step.intent {
                Intent::Start { request } => self.transcript.push(Message::User {
                    content: request.clone(),
                }),
                Intent::ModelResponded { output, .. } => {
                    match self.rt.model.reply_from_output(output) {
                        Some((calls, answer)) => self.queue_calls(calls, answer),
                        None => {
                            self.store_error = Some(StoreError::Corrupt(
                                "this model cannot rebuild its pending calls from the log".into(),
                            ));
                            return;
                        }
                    }
                }
                Intent::CallTool { .. }
                | Intent::ReadMemory { .. }
                | Intent::WriteMemory { .. } => {
                    if let Some((_, call_ref)) = self.queue.pop_front() {
                        self.current = call_ref;
                    }
                }
                Intent::Complete { .. } => self.answer = None,
                _ => {}
            }
            let produced = match session.step(step.intent, step.t_ms) {
                Ok(t) => t.events,
                Err(r) => vec![*r.event],
            };
            let expected: Vec<Event> = recorded.by_ref().take(produced.len()).collect();
            if expected != produced {
                self.store_error = Some(StoreError::Corrupt(format!(
                    "step {} does not reproduce the recorded events",
                    step.n
                )));
                return;
            }
            self.answer_current(session, &produced);
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
            if self.rt.keep_events {
                self.events.extend(produced);
            }
            self.steps += 1;
        }
        if let Some(call_id) = session.call_in_flight().map(str::to_owned) {
            self.apply(session, Intent::InDoubt { call_id });
        } else if session.status() == Status::WaitingMemory
            && let Some((read_id, scope, key)) = last_read
        {
            let now = self.now();
            self.perform(
                Effect::ReadMemory {
                    read_id,
                    scope,
                    key,
                },
                now,
            );
        }
    }

    /// Queues the calls a model reply asked for and records the turn in the transcript.
    fn queue_calls(&mut self, calls: Vec<Intent>, answer: Option<String>) {
        let mut requests = Vec::new();
        self.queue = calls
            .into_iter()
            .map(|intent| {
                let Intent::CallTool { tool, input, .. } = &intent else {
                    return (intent, None);
                };
                self.refs += 1;
                let call_ref = format!("ref-{}", self.refs);
                requests.push(ToolRequest {
                    call_ref: call_ref.clone(),
                    name: tool.clone(),
                    arguments: input.clone(),
                });
                (intent, Some(call_ref))
            })
            .collect();
        self.transcript.push(Message::Assistant {
            content: answer.clone(),
            calls: requests,
        });
        self.answer = answer;
    }

    /// Steps the session at the current time, publishes its events, performs its effects.
    fn apply(&mut self, session: &mut Session, intent: Intent) {
        if self.store_error.is_some() {
            return;
        }
        let now = self.now();
        let step = self.rt.store.as_ref().map(|_| Step {
            n: self.steps,
            t_ms: now,
            intent: intent.clone(),
        });
        let result = session.step(intent, now);
        if let (Some(store), Some(step)) = (&self.rt.store, step) {
            let events = match &result {
                Ok(t) => t.events.as_slice(),
                Err(r) => std::slice::from_ref(r.event.as_ref()),
            };
            let c = session.config();
            if let Err(e) = append_off_executor(store.as_ref(), &c.tenant, &c.id, &step, events) {
                self.store_error = Some(e);
                self.in_flight = None;
                return;
            }
            self.steps += 1;
        }
        let transition = match result {
            Ok(t) => t,
            Err(rejected) => {
                self.answer_current(session, std::slice::from_ref(&rejected.event));
                self.publish(*rejected.event);
                return;
            }
        };
        self.answer_current(session, &transition.events);
        for event in transition.events {
            self.publish(event);
        }
        for effect in transition.effects {
            self.perform(effect, now);
        }
    }

    /// Once the requested call being worked on is settled (the session no longer waits on it),
    /// tells the model what became of it.
    fn answer_current(&mut self, session: &Session, events: &[Event]) {
        let settled = matches!(session.status(), Status::Running) || session.status().is_terminal();
        if !settled {
            return;
        }
        if let Some(call_ref) = self.current.take() {
            self.transcript.push(Message::Tool {
                call_ref,
                content: outcome(events),
            });
        }
    }

    fn publish(&mut self, event: Event) {
        if let Some(hub) = self.hub {
            hub.publish(&event);
        }
        if self.rt.keep_events {
            self.events.push(event);
        }
    }

    fn perform(&mut self, effect: Effect, now: u64) {
        let rt = self.rt;
        match effect {
            Effect::CallTool {
                call_id,
                tool,
                input,
                attempt,
                not_before_ms,
                obligations,
            } => {
                // Only a retry's backoff waits: a timer, even one already due, costs a timer tick.
                let start = (not_before_ms > now).then(|| self.at(not_before_ms));
                let call = ToolCall {
                    call_id: call_id.clone(),
                    attempt,
                    tenant: self.tenant.clone(),
                    input,
                    credentials: rt.credentials.for_call(&self.tenant, &tool),
                };
                let implementation = rt.tools.get(&tool).cloned();
                self.in_flight = Some(Box::pin(async move {
                    if let Some(start) = start {
                        sleep_until(start).await;
                    }
                    let Some(implementation) = implementation else {
                        let error = format!("no implementation registered for tool `{tool}`");
                        return Answer {
                            intent: Intent::CallFailed {
                                call_id,
                                error,
                                retryable: false,
                                cost: 0,
                                jitter_ms: 0,
                            },
                            next: None,
                            from_model: false,
                        };
                    };
                    let result = match obligations.timeout_ms {
                        Some(ms) => timeout(Duration::from_millis(ms), implementation.call(call))
                            .await
                            .map_err(|_| ms),
                        None => Ok(implementation.call(call).await),
                    };
                    let intent = match result {
                        Ok(Ok(out)) => Intent::ToolReturned {
                            call_id,
                            output: out.value,
                            cost: out.cost,
                        },
                        Ok(Err(e)) => {
                            let (retryable, cost) = match &e {
                                super::ToolError::Failed {
                                    retryable, cost, ..
                                } => (*retryable, *cost),
                                _ => (false, 0),
                            };
                            Intent::CallFailed {
                                call_id,
                                error: e.to_string(),
                                retryable,
                                cost,
                                jitter_ms: 0,
                            }
                        }
                        Err(ms) => timed_out(call_id, ms),
                    };
                    Answer {
                        intent,
                        next: None,
                        from_model: false,
                    }
                }));
            }
            Effect::CallModel {
                call_id,
                model,
                attempt,
                not_before_ms,
                obligations,
            } => {
                // Only a retry's backoff waits: a timer, even one already due, costs a timer tick.
                let start = (not_before_ms > now).then(|| self.at(not_before_ms));
                let call = ModelCall {
                    call_id: call_id.clone(),
                    attempt,
                    model,
                    tenant: self.tenant.clone(),
                    transcript: self.transcript.clone(),
                };
                self.in_flight = Some(Box::pin(async move {
                    if let Some(start) = start {
                        sleep_until(start).await;
                    }
                    let result = match obligations.timeout_ms {
                        Some(ms) => timeout(Duration::from_millis(ms), rt.model.call(call))
                            .await
                            .map_err(|_| ms),
                        None => Ok(rt.model.call(call).await),
                    };
                    match result {
                        Ok(Ok(reply)) => Answer {
                            intent: Intent::ModelResponded {
                                call_id,
                                input_tokens: reply.input_tokens,
                                output_tokens: reply.output_tokens,
                                cost: reply.cost,
                                output: reply.output,
                            },
                            next: Some((reply.calls, reply.answer)),
                            from_model: true,
                        },
                        Ok(Err(e)) => Answer {
                            intent: Intent::CallFailed {
                                call_id,
                                error: e.message,
                                retryable: e.retryable,
                                cost: e.cost,
                                jitter_ms: 0,
                            },
                            next: None,
                            from_model: true,
                        },
                        Err(ms) => Answer {
                            intent: timed_out(call_id, ms),
                            next: None,
                            from_model: true,
                        },
                    }
                }));
            }
            Effect::ReadMemory {
                read_id,
                scope,
                key,
            } => {
                let entry = match &rt.store {
                    // Durable memory is keyed by the session's tenant. A failed read stops the
                    // run rather than passing for a miss.
                    Some(store) => match store.memory_get(&self.tenant, &scope, &key) {
                        Ok(entry) => entry,
                        Err(e) => {
                            self.store_error = Some(e);
                            return;
                        }
                    },
                    None => rt
                        .memory
                        .lock()
                        .ok()
                        .and_then(|m| m.get(&(scope, key)).cloned()),
                };
                let (value, labels) = entry.map_or((None, Vec::new()), |(v, l)| (Some(v), l));
                let answer = Answer {
                    intent: Intent::MemoryLoaded {
                        read_id,
                        value,
                        labels,
                    },
                    next: None,
                    from_model: false,
                };
                self.in_flight = Some(Box::pin(std::future::ready(answer)));
            }
            Effect::WriteMemory {
                scope,
                key,
                value,
                labels,
            } => match &rt.store {
                Some(store) => {
                    if let Err(e) = store.memory_put(&self.tenant, &scope, &key, &value, &labels) {
                        self.store_error = Some(e);
                    }
                }
                None => {
                    if let Ok(mut m) = rt.memory.lock() {
                        m.insert((scope, key), (value, labels));
                    }
                }
            },
            Effect::Abort { .. } => self.in_flight = None,
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

/// Writes a step ahead without stalling the executor. On a multi-threaded runtime the worker hands
/// its other tasks to another thread while this one waits for the store, so every session waiting
/// on a commit at the same moment can share it (see [`crate::store::GroupCommit`]); on a
/// current-thread runtime, where that is impossible, it waits in place.
fn append_off_executor(
    store: &dyn SessionStore,
    tenant: &str,
    session: &str,
    step: &Step,
    events: &[Event],
) -> Result<(), StoreError> {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(|| store.append(tenant, session, step, events))
    } else {
        store.append(tenant, session, step, events)
    }
}

/// Milliseconds since the Unix epoch (the driver may read clocks; the kernel never does).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn wait(until: Option<Instant>) {
    match until {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: Option<&mut mpsc::UnboundedReceiver<Control>>) -> Option<Control> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Steers a session running on its own task.
pub struct SessionHandle {
    controls: mpsc::UnboundedSender<Control>,
    hub: EventHub,
    task: JoinHandle<Outcome>,
}

impl SessionHandle {
    /// Asks to cancel the session on behalf of `user` (authorized like any cancel); false once the
    /// session has ended.
    pub fn cancel(&self, user: &str, reason: &str) -> bool {
        self.controls
            .send(Control::Cancel {
                user: user.into(),
                reason: reason.into(),
            })
            .is_ok()
    }

    /// `user` vouches for `value`, which then counts as coming from the user.
    pub fn endorse(&self, user: &str, value: &str) -> bool {
        self.controls
            .send(Control::Endorse {
                user: user.into(),
                value: value.into(),
            })
            .is_ok()
    }

    /// `user` approves the waiting request.
    pub fn approve(&self, user: &str) -> bool {
        self.controls
            .send(Control::Approve { user: user.into() })
            .is_ok()
    }

    /// `user` rejects the waiting request.
    pub fn reject(&self, user: &str, reason: &str) -> bool {
        self.controls
            .send(Control::Reject {
                user: user.into(),
                reason: reason.into(),
            })
            .is_ok()
    }

    /// Whether the session's task has ended (reached an end state, or was stopped by its store).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// A new live subscriber to the session's events.
    pub fn subscribe(&self) -> Subscriber {
        self.hub.subscribe()
    }

    /// Waits for the session to end (or for the model to have nothing more to say).
    pub async fn join(self) -> Result<Outcome, tokio::task::JoinError> {
        drop(self.controls);
        self.task.await
    }
}

fn timed_out(call_id: String, ms: u64) -> Intent {
    Intent::CallFailed {
        call_id,
        error: format!("timed out after {ms} ms"),
        retryable: true,
        cost: 0,
        jitter_ms: 0,
    }
}
