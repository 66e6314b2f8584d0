//! The session runtime: drives kernel sessions to their end on tokio, performing each effect
//! through the tools, the model and the memory store, on a clock read from tokio (paused in
//! tests, so a scripted run is exact and instant).
//!
//! The agent loop itself is the kernel's [`AgentLoop`]; this module only performs its effects and
//! lets time pass. A call's result arrives when it is ready unless a control (approval,
//! rejection, cancellation, tick) falls due first. `@timeout_ms` cuts a call (the late answer is
//! dropped: a retryable failure); an abort drops the in-flight future, which stops the tool (a
//! subprocess tool kills its process group).
//!
//! Files: this one holds the public API ([`Runtime`], [`Outcome`]); `run` the loop that drives
//! an [`AgentLoop`]; `effects` how each effect is performed; `handle` the [`SessionHandle`] of a
//! spawned session.

mod effects;
mod handle;
mod run;

pub use handle::SessionHandle;
pub use kernel::agent::Control;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel::agent::AgentLoop;
use kernel::event::Event;
use kernel::{Session, Status};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::hub::EventHub;
use crate::models::Model;
use crate::store::{SessionLog, SessionStore, StoreError, StoredSession, TenantMemory};
use crate::tools::{Credentials, Tool};
use run::{Begin, Run};
pub(crate) use run::{off_executor, store_io};

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The final status (`running` when the model had nothing more to say).
    pub status: Status,
    /// Why the run stopped early without reaching an end state: its store refused a write (another
    /// writer owns the session, or the backend failed). Nothing after the refused step was done.
    pub store_error: Option<StoreError>,
}

/// Memory entries with their labels, by (tenant, scope, key): the memory of a runtime without a
/// store, shared by every session it drives. Keyed by tenant first, like a store's, so no session
/// reaches another tenant's entries whatever its mode or the scope it names.
pub type SharedMemory = BTreeMap<(String, String, String), (Value, Vec<String>)>;

/// What performs a session's effects.
pub struct Runtime {
    model: Arc<dyn Model>,
    model_id: String,
    tools: BTreeMap<String, Arc<dyn Tool>>,
    credentials: Credentials,
    memory: Arc<Mutex<SharedMemory>>,
    jitter: Option<Mutex<u64>>,
    /// Where steps are written ahead of their effects.
    log: Option<Arc<dyn SessionLog>>,
    /// Durable memory; without it, `memory`.
    tenant_memory: Option<Arc<dyn TenantMemory>>,
    keep_events: bool,
}

/// Retry jitter is drawn below this many milliseconds.
const MAX_JITTER_MS: u64 = 100;

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
            log: None,
            tenant_memory: None,
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
    /// Memory reads and writes go to the store too, keyed by the session's tenant.
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.log = Some(Arc::clone(&store) as Arc<dyn SessionLog>);
        self.tenant_memory = Some(store);
        self
    }

    /// Keeps memory entries in `memory` (keyed by tenant), whatever log the runs write to.
    pub fn tenant_memory(mut self, memory: Arc<dyn TenantMemory>) -> Self {
        self.tenant_memory = Some(memory);
        self
    }

    /// Makes runs durable with a write-ahead log only (a recorder that cannot read back, so runs
    /// cannot be resumed from it); memory stays the runtime's own.
    pub fn log(mut self, log: Arc<dyn SessionLog>) -> Self {
        self.log = Some(log);
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

    /// The memory of a runtime without a store (shared by every session this runtime drives).
    pub fn memory(&self) -> Arc<Mutex<SharedMemory>> {
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

    /// Starts, on its own task, a session its log already holds with no step (a run that stopped
    /// between creating it and starting it): what [`Runtime::resume`] does for a log with steps.
    pub fn start_created(
        self: &Arc<Self>,
        session: Session,
        request: String,
        hub: EventHub,
        tick_every: Option<Duration>,
    ) -> SessionHandle {
        self.launch(session, Begin::Created(request), hub, tick_every)
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
        SessionHandle::new(sender, hub, task)
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
        self.run_with(session, Begin::Fresh(request), schedule, hub, None, None)
            .await
    }

    async fn run_with(
        &self,
        session: Session,
        begin: Begin,
        schedule: Vec<(u64, Control)>,
        hub: Option<&EventHub>,
        live: Option<mpsc::UnboundedReceiver<Control>>,
        tick_every: Option<Duration>,
    ) -> Outcome {
        if let (Some(store), Begin::Fresh(_)) = (&self.log, &begin) {
            let created = store.begin(session.deployment(), session.config(), wall_ms());
            if let Err(e) = created {
                return Outcome {
                    status: session.status(),
                    events: Vec::new(),
                    store_error: Some(e),
                };
            }
        }
        // Boxed, the loop (and its session) is held once on the heap, not inline in both the
        // spawned task's future and the run's (about 1.2 KiB per live session).
        let agent = Box::new(
            AgentLoop::new(session, self.model_id.clone())
                .keep_intents(self.log.is_some())
                .schedule(schedule),
        );
        let mut run = Run::new(self, agent, &begin, hub, live, tick_every);
        run.begin(begin);
        run.drive().await;
        run.finish()
    }
}

/// Milliseconds since the Unix epoch (the driver may read clocks; the kernel never does).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
