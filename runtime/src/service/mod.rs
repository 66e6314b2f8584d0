//! `arbiter serve`: Arbiter as a shared service. Agents that run elsewhere open a session, propose
//! each step (a model call, a tool call with its arguments, a memory read or write) and get the
//! kernel's decision before acting, then report the result so budgets settle and provenance and
//! labels are tracked — the same kernel, the same events, the same store as a hosted run.
//!
//! The contract:
//! - Every request carries a bearer token naming one tenant and one user ([`auth`]); a session of
//!   another tenant answers 404, as one that does not exist.
//! - A step is in the store before its events are streamed or its effects returned; a store that
//!   refuses a write stops that session (503), never half-applies it.
//! - Creation is idempotent on the client's id: the same body answers the existing session.
//! - Policies reload atomically and only when they load; a session keeps the bundle it started
//!   under, new sessions get the new one.
//! - Events stream as Server-Sent Events whose id is the event's `seq`; `Last-Event-ID` resumes
//!   with nothing missed or repeated.
//!
//! Files: this one holds [`Service`] (what the API can do, HTTP-free); `live` one held session;
//! `api` the bodies; `auth` tokens; `error` the refusals; `http` the axum router over it.

pub mod api;
pub mod auth;
pub mod error;
mod hosted;
pub mod http;
mod live;

pub use hosted::HostedAgent;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kernel::{Deployment, Intent, Mode, Session, SessionConfig};
use std::sync::Mutex;

use crate::store::{SessionStore, StoreError};
pub use api::WhenBusy;
use api::{ApiMode, ApprovalView, CreateSession, Reloaded, SessionView, StepResponse};
use auth::{Caller, Tokens};
use error::ApiError;
use live::Live;

/// Where the service's policies come from.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The policies directory (`schema.cedarschema`, `base/`, packs).
    pub root: PathBuf,
    /// Packs loaded beside `base`.
    pub packs: Vec<String>,
    /// Tools registered beside the packs' own, with their origin (the MCP gateway's upstream
    /// tools).
    pub tools: Vec<(kernel::ToolSpec, String)>,
}

impl PolicySource {
    /// Loads the deployment these policies make.
    pub fn load(&self) -> Result<Deployment, kernel::pack::PackError> {
        let packs: Vec<&str> = self.packs.iter().map(String::as_str).collect();
        let mut builder = kernel::pack::builder_for(&self.root, &packs)?;
        for (spec, origin) in &self.tools {
            builder = builder.tool(spec.clone(), origin.clone());
        }
        builder.build().map_err(kernel::pack::PackError::Invalid)
    }
}

/// Creation locks: enough that concurrent creations of different ids rarely wait on each other.
const CREATION_SHARDS: usize = 64;

/// The memory scope (per tenant) where the service marks which sessions are hosted runs. No
/// `MemoryScope` entity has this id, so no agent's read or write of it is ever authorized.
const HOSTED_SCOPE: &str = "arbiter.service/hosted-runs";

/// Why a restored hosted run takes no steps until [`Service::resume_hosted`] picks it up.
const INTERRUPTED: &str =
    "a hosted run interrupted by a restart, not resumed (its agent is not registered here)";

/// The service: sessions by tenant and id, the policies new sessions start under, the store.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    policies: RwLock<PolicySource>,
    deployment: RwLock<Arc<Deployment>>,
    tokens: Tokens,
    store: Arc<dyn SessionStore>,
    sessions: hosted::Sessions,
    /// Agents the service runs itself, by name.
    agents: HashMap<String, hosted::Registered>,
    /// Serializes creations of one id (by shard), so two racing creations never both start it
    /// while creations of other ids go on.
    creating: Vec<Mutex<()>>,
    /// Where traces go (`--otlp`), if anywhere.
    spans: Option<Arc<crate::spans::SpanRecorder>>,
}

/// Milliseconds since the Unix epoch.
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn poisoned() -> ApiError {
    ApiError::Unavailable("a session's lock is poisoned".into())
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no session `{id}`"))
}

impl Service {
    /// A service over `store`, serving sessions under `policies` (loaded now) to `tokens`.
    /// Sessions already in the store are restored: replayed under the bundle each started with.
    pub fn new(
        policies: PolicySource,
        tokens: Tokens,
        store: Arc<dyn SessionStore>,
    ) -> Result<Self, ServiceError> {
        let deployment = Arc::new(policies.load().map_err(ServiceError::Policies)?);
        let service = Self {
            inner: Arc::new(Inner {
                policies: RwLock::new(policies),
                deployment: RwLock::new(deployment),
                tokens,
                store,
                sessions: Arc::new(RwLock::new(HashMap::new())),
                agents: HashMap::new(),
                creating: (0..CREATION_SHARDS).map(|_| Mutex::new(())).collect(),
                spans: None,
            }),
        };
        service.restore()?;
        Ok(service)
    }

    /// Sends every event from now on to `spans` as well (traces; see [`crate::spans`]). Call it
    /// right after [`Service::new`], before the service is shared.
    pub fn traced(mut self, spans: Arc<crate::spans::SpanRecorder>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.spans = Some(spans);
        }
        self
    }

    /// Registers `agent` under `name` for hosted runs (`POST /v1/runs`). Call it after
    /// [`Service::traced`], before the service is shared.
    pub fn host(mut self, name: &str, agent: HostedAgent) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            let log = hosted::ServiceLog {
                store: Arc::clone(&inner.store),
                sessions: Arc::clone(&inner.sessions),
                spans: inner.spans.clone(),
            };
            let runtime = agent
                .runtime
                .log(Arc::new(log))
                .tenant_memory(Arc::clone(&inner.store) as Arc<dyn crate::store::TenantMemory>)
                .keep_events(false);
            inner.agents.insert(
                name.to_owned(),
                hosted::Registered {
                    runtime: Arc::new(runtime),
                    deployment: agent.deployment,
                    template: agent.template,
                    tick_every: agent.tick_every,
                },
            );
        }
        self
    }

    /// Starts a hosted run: Arbiter calls the model and the tools itself. Idempotent on the run id
    /// like [`Service::create`] (the run id is the session id); a cancel that arrives before the
    /// run's first step still cancels it (controls queue behind the start).
    pub async fn run(
        &self,
        caller: &Caller,
        req: api::CreateRun,
    ) -> Result<(bool, SessionView), ApiError> {
        let agent = self
            .inner
            .agents
            .get(&req.agent)
            .filter(|a| a.template.tenant == caller.tenant)
            .ok_or_else(|| ApiError::NotFound(format!("no agent `{}`", req.agent)))?;
        let config = SessionConfig {
            id: req.id.clone(),
            tenant: caller.tenant.clone(),
            user: caller.user.clone(),
            agent: agent.template.agent.clone(),
            budget: agent.template.budget.clone(),
            mode: match req.mode {
                ApiMode::Enforce => Mode::Enforce,
                ApiMode::LogOnly => Mode::LogOnly,
            },
        };
        valid_id(&req.id)?;
        let _creating = self.creation_lock(caller, &req.id)?;
        if let Ok(existing) = self.find(caller, &req.id) {
            let live = existing.lock().map_err(|_| poisoned())?;
            if *live::config_of(&live) == config
                && live.request == req.request
                && live.hosted.is_some()
            {
                return Ok((false, live.view()));
            }
            return Err(ApiError::Conflict(format!(
                "session `{}` exists with another agent, mode, user or request",
                req.id
            )));
        }
        let new = || {
            kernel::Session::new(Arc::clone(&agent.deployment), config.clone())
                .map_err(|e| ApiError::Invalid(e.to_string()))
        };
        let (session, mirror) = (new()?, new()?);
        let store = self.inner.store.as_ref();
        live::io(store, || {
            store.memory_put(
                &caller.tenant,
                HOSTED_SCOPE,
                &req.id,
                &serde_json::json!({ "agent": req.agent }),
                &[],
            )
        })
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let live = Arc::new(Mutex::new(Live::hosted(mirror, req.request.clone())));
        self.inner
            .sessions
            .write()
            .map_err(|_| poisoned())?
            .insert((caller.tenant.clone(), req.id.clone()), Arc::clone(&live));
        let handle = agent.runtime.spawn(
            session,
            req.request,
            crate::EventHub::new(16),
            agent.tick_every,
        );
        let mut held = live.lock().map_err(|_| poisoned())?;
        held.hosted = Some(handle);
        Ok((true, held.view()))
    }

    /// Picks up every stored hosted run a restart interrupted whose agent is registered here:
    /// the runtime replays its steps (checking they reproduce its events), declares what was in
    /// flight in doubt, and drives it on, writing through the service as before. Call it after
    /// [`Service::host`], on the tokio runtime the service runs on. Returns how many were resumed;
    /// a run whose agent is not registered stays `broken`.
    pub fn resume_hosted(&self) -> Result<usize, ServiceError> {
        let store = &self.inner.store;
        let mut resumed = 0;
        for ((tenant, id), live) in self.held(|_| true) {
            let Ok(mut live) = live.lock() else { continue };
            if live.hosted.is_some()
                || live.session.status().is_terminal()
                || live.broken.as_deref() != Some(INTERRUPTED)
            {
                continue;
            }
            let Some((marker, _)) = store
                .memory_get(&tenant, HOSTED_SCOPE, &id)
                .map_err(ServiceError::Store)?
            else {
                continue;
            };
            let Some(agent) = marker
                .get("agent")
                .and_then(|a| a.as_str())
                .and_then(|name| self.inner.agents.get(name))
                .filter(|a| a.template.tenant == tenant)
            else {
                continue;
            };
            let stored = store.load(&tenant, &id).map_err(ServiceError::Store)?;
            let deployment = Arc::clone(live.session.deployment());
            let session = kernel::Session::new(deployment, live.session.config().clone())
                .map_err(|e| ServiceError::Restore(format!("{tenant}/{id}: {e}")))?;
            let handle =
                agent
                    .runtime
                    .resume(session, stored, crate::EventHub::new(16), agent.tick_every);
            live.hosted = Some(handle);
            live.broken = None;
            resumed += 1;
        }
        Ok(resumed)
    }

    fn observe(&self, live: &Live, events: &[kernel::event::Event]) {
        if let Some(spans) = &self.inner.spans {
            for e in events {
                spans.record(e, live.started_wall_ms);
            }
        }
    }

    /// Replays every stored session under its own bundle.
    fn restore(&self) -> Result<(), ServiceError> {
        let store = &self.inner.store;
        let mut bundles: HashMap<String, Arc<Deployment>> = HashMap::new();
        let mut restored = HashMap::new();
        for (tenant, id) in store.sessions().map_err(ServiceError::Store)? {
            let stored = store.load(&tenant, &id).map_err(ServiceError::Store)?;
            let hash = stored.record.bundle.clone();
            let deployment = match bundles.get(&hash) {
                Some(d) => Arc::clone(d),
                None => {
                    let sources = store.bundle(&hash).map_err(ServiceError::Store)?;
                    let d = Arc::new(sources.build().map_err(|e| {
                        ServiceError::Restore(format!("{tenant}/{id}: its bundle {hash}: {e}"))
                    })?);
                    bundles.insert(hash, Arc::clone(&d));
                    d
                }
            };
            let mut live = Live::restore(deployment, stored)
                .map_err(|e| ServiceError::Restore(format!("{tenant}/{id}: {e}")))?;
            let hosted = store
                .memory_get(&tenant, HOSTED_SCOPE, &id)
                .map_err(ServiceError::Store)?
                .is_some();
            if hosted && !live.session.status().is_terminal() && live.broken.is_none() {
                live.broken = Some(INTERRUPTED.into());
            }
            if live.session.status().is_terminal() {
                live.evict();
            }
            restored.insert((tenant, id), Arc::new(Mutex::new(live)));
        }
        if let Ok(mut sessions) = self.inner.sessions.write() {
            *sessions = restored;
        }
        Ok(())
    }

    /// The sessions whose key passes `keep`, taken out of the table so none of their locks is
    /// taken while the table is read.
    fn held(&self, keep: impl Fn(&hosted::Key) -> bool) -> Vec<(hosted::Key, Arc<Mutex<Live>>)> {
        match self.inner.sessions.read() {
            Ok(s) => s
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The ids of the caller's tenant's sessions held now, sorted.
    pub fn session_ids(&self, caller: &Caller) -> Vec<String> {
        let mut ids: Vec<String> = self
            .held(|(tenant, _)| *tenant == caller.tenant)
            .into_iter()
            .map(|((_, id), _)| id)
            .collect();
        ids.sort();
        ids
    }

    /// Who `token` acts as.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        token
            .and_then(|t| self.inner.tokens.caller(t))
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }

    fn deployment(&self) -> Arc<Deployment> {
        self.inner
            .deployment
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |d| Arc::clone(&d))
    }

    fn find(&self, caller: &Caller, id: &str) -> Result<Arc<Mutex<Live>>, ApiError> {
        let sessions = self
            .inner
            .sessions
            .read()
            .map_err(|_| ApiError::Unavailable("the session table is poisoned".into()))?;
        sessions
            .get(&(caller.tenant.clone(), id.to_owned()))
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Opens a session (or answers the one this id already names, when opened with the same body):
    /// `true` when it was created now.
    pub async fn create(
        &self,
        caller: &Caller,
        req: CreateSession,
    ) -> Result<(bool, SessionView, StepResponse), ApiError> {
        valid_id(&req.id)?;
        let _creating = self.creation_lock(caller, &req.id)?;
        let config = SessionConfig {
            id: req.id.clone(),
            tenant: caller.tenant.clone(),
            user: caller.user.clone(),
            agent: req.agent.clone(),
            budget: req.budget.clone(),
            mode: match req.mode {
                ApiMode::Enforce => Mode::Enforce,
                ApiMode::LogOnly => Mode::LogOnly,
            },
        };
        if let Ok(existing) = self.find(caller, &req.id) {
            let live = existing.lock().map_err(|_| poisoned())?;
            if *live::config_of(&live) == config && live.request == req.request {
                let view = live.view();
                let status = view.status.clone();
                return Ok((false, view, empty_response(status)));
            }
            return Err(ApiError::Conflict(format!(
                "session `{}` exists with another agent, budget, mode, user or request",
                req.id
            )));
        }
        let deployment = self.deployment();
        let session = Session::new(Arc::clone(&deployment), config.clone())
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        let now = wall_ms();
        let store = self.inner.store.as_ref();
        live::io(store, || store.begin(&deployment, &config, now)).map_err(|e| match e {
            StoreError::Exists { .. } => ApiError::Conflict(e.to_string()),
            other => ApiError::Unavailable(other.to_string()),
        })?;
        let (live, applied) = Live::start(store, session, req.request, now)?;
        self.observe(&live, &applied.events);
        let view = live.view();
        let response = applied.response(&view.status);
        let mut sessions = self
            .inner
            .sessions
            .write()
            .map_err(|_| ApiError::Unavailable("the session table is poisoned".into()))?;
        sessions.insert((caller.tenant.clone(), req.id), Arc::new(Mutex::new(live)));
        Ok((true, view, response))
    }

    /// The lock that serializes creations of this id.
    fn creation_lock(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<std::sync::MutexGuard<'_, ()>, ApiError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&caller.tenant, id).hash(&mut h);
        let shard = usize::try_from(h.finish() % CREATION_SHARDS as u64).unwrap_or(0);
        self.inner
            .creating
            .get(shard)
            .ok_or_else(|| ApiError::Unavailable("no creation shard".into()))?
            .lock()
            .map_err(|_| poisoned())
    }

    /// A session's state.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<SessionView, ApiError> {
        Ok(self
            .find(caller, id)?
            .lock()
            .map_err(|_| poisoned())?
            .view())
    }

    /// Proposes one step (or reports a result). Approvals, rejections, cancellation and endorsement
    /// act as the token's user and have their own methods; `start`, `memory_loaded` and
    /// `in_doubt` are the service's own.
    pub async fn step(
        &self,
        caller: &Caller,
        id: &str,
        intent: serde_json::Value,
    ) -> Result<StepResponse, ApiError> {
        self.step_when(caller, id, intent, WhenBusy::Reject).await
    }

    /// [`Service::step`], choosing what happens to a proposal that arrives while the session waits
    /// for the answer to an earlier one (a tool's result, an approval).
    pub async fn step_when(
        &self,
        caller: &Caller,
        id: &str,
        intent: serde_json::Value,
        when_busy: WhenBusy,
    ) -> Result<StepResponse, ApiError> {
        let intent: Intent = serde_json::from_value(intent)
            .map_err(|e| ApiError::Invalid(format!("`intent`: {e}")))?;
        self.propose(caller, id, intent, when_busy).await
    }

    /// [`Service::step_when`] with the intent already typed (the MCP gateway's calls and results,
    /// which need no round trip through JSON).
    pub async fn propose(
        &self,
        caller: &Caller,
        id: &str,
        intent: Intent,
        when_busy: WhenBusy,
    ) -> Result<StepResponse, ApiError> {
        match intent {
            Intent::CallModel { .. }
            | Intent::ModelResponded { .. }
            | Intent::CallTool { .. }
            | Intent::ToolReturned { .. }
            | Intent::CallFailed { .. }
            | Intent::ReadMemory { .. }
            | Intent::WriteMemory { .. }
            | Intent::Tick
            | Intent::Complete { .. }
            | Intent::Fail { .. } => {}
            other => {
                return Err(ApiError::NotAllowed(format!(
                    "`{}` is not proposed through steps: {}",
                    other.kind(),
                    match other.kind() {
                        "approve" | "reject" => "use /approvals/{request_id}/approve or /reject",
                        "cancel" => "use /cancel",
                        "endorse" => "use /endorsements",
                        _ => "the service applies it itself",
                    }
                )));
            }
        }
        self.apply_when(caller, id, intent, when_busy).await
    }

    async fn apply(
        &self,
        caller: &Caller,
        id: &str,
        intent: Intent,
    ) -> Result<StepResponse, ApiError> {
        self.apply_when(caller, id, intent, WhenBusy::Reject).await
    }

    async fn apply_when(
        &self,
        caller: &Caller,
        id: &str,
        intent: Intent,
        when_busy: WhenBusy,
    ) -> Result<StepResponse, ApiError> {
        let session = self.find(caller, id)?;
        // A hosted run takes approvals, rejections, cancellation and endorsement as live
        // controls; the answer is what its run appended once it took the control.
        let sent = {
            let live = session.lock().map_err(|_| poisoned())?;
            match &live.hosted {
                None => None,
                Some(handle) => {
                    let control = control_of(intent.clone())?;
                    let before = live.count;
                    let changes = live.published.subscribe();
                    if !handle.send(control) {
                        return Err(ApiError::Conflict(format!("run `{id}` has ended")));
                    }
                    Some((before, changes))
                }
            }
        };
        if let Some((before, mut changes)) = sent {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                changes.wait_for(|n| *n > before),
            )
            .await;
            let live = session.lock().map_err(|_| poisoned())?;
            let events = live.events.get(before..).unwrap_or_default();
            let decision = events.iter().find_map(|e| e.decision.clone());
            return Ok(StepResponse {
                outcome: if decision.is_some() {
                    "decided"
                } else {
                    "applied"
                }
                .into(),
                decision,
                error: None,
                events: events.to_vec(),
                effects: Vec::new(),
                status: live.session.status().as_str().to_owned(),
            });
        }
        // A new proposal while the session waits for a result is busy: refused at once, or held
        // until the session is ready (at most QUEUE_FOR), as the request chose. Nothing is
        // recorded for a refused or timed-out one.
        let deadline = tokio::time::Instant::now() + QUEUE_FOR;
        loop {
            let mut changes = {
                let mut live = session.lock().map_err(|_| poisoned())?;
                if !busy(&live, &intent) {
                    let applied = live.apply(self.inner.store.as_ref(), intent, wall_ms())?;
                    self.observe(&live, &applied.events);
                    let status = live.session.status().as_str().to_owned();
                    return Ok(applied.response(&status));
                }
                let busy = ApiError::Busy(format!(
                    "session `{id}` is {} : it takes a new `{}` once that is answered",
                    live.session.status().as_str(),
                    intent.kind()
                ));
                if when_busy == WhenBusy::Reject {
                    return Err(busy);
                }
                live.published.subscribe()
            };
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(ApiError::Busy(format!(
                    "session `{id}` stayed busy for {} s; the `{}` was not applied",
                    QUEUE_FOR.as_secs(),
                    intent.kind()
                )));
            }
        }
    }

    /// Approves the waiting request `request_id` as the caller's user (an authorized `approve`).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        request_id: &str,
    ) -> Result<StepResponse, ApiError> {
        self.pending(caller, id, request_id).await?;
        let intent = Intent::Approve {
            user: caller.user.clone(),
            request_id: request_id.to_owned(),
        };
        self.apply(caller, id, intent).await
    }

    /// Rejects the waiting request `request_id` as the caller's user.
    pub async fn reject(
        &self,
        caller: &Caller,
        id: &str,
        request_id: &str,
        reason: String,
    ) -> Result<StepResponse, ApiError> {
        self.pending(caller, id, request_id).await?;
        let intent = Intent::Reject {
            user: caller.user.clone(),
            request_id: request_id.to_owned(),
            reason,
        };
        self.apply(caller, id, intent).await
    }

    async fn pending(&self, caller: &Caller, id: &str, request_id: &str) -> Result<(), ApiError> {
        let session = self.find(caller, id)?;
        let live = session.lock().map_err(|_| poisoned())?;
        if live.session.pending_approval() == Some(request_id) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "session `{id}` waits for no approval `{request_id}`"
            )))
        }
    }

    /// Cancels a session as the caller's user (an authorized `cancel`).
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
        reason: String,
    ) -> Result<StepResponse, ApiError> {
        let intent = Intent::Cancel {
            user: caller.user.clone(),
            reason,
        };
        self.apply(caller, id, intent).await
    }

    /// The caller's user vouches for `value` in session `id` (an authorized `endorse`).
    pub async fn endorse(
        &self,
        caller: &Caller,
        id: &str,
        value: String,
    ) -> Result<StepResponse, ApiError> {
        let intent = Intent::Endorse {
            user: caller.user.clone(),
            value,
        };
        self.apply(caller, id, intent).await
    }

    /// Every request waiting for approval in the caller's tenant.
    pub async fn approvals(&self, caller: &Caller) -> Result<Vec<ApprovalView>, ApiError> {
        let mut out = Vec::new();
        for (_, s) in self.held(|(tenant, _)| *tenant == caller.tenant) {
            if let Some(a) = s.lock().map_err(|_| poisoned())?.approval() {
                out.push(a);
            }
        }
        out.sort_by(|a, b| (&a.session, &a.request_id).cmp(&(&b.session, &b.request_id)));
        Ok(out)
    }

    /// The session's events after `after` (all when `None`), and a receiver that changes when
    /// more arrive; `ended` once the session can append no more.
    pub async fn events_after(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<u64>,
    ) -> Result<EventsPage, ApiError> {
        let session = self.find(caller, id)?;
        let from = after.map_or(0, |a| {
            usize::try_from(a).unwrap_or(usize::MAX).saturating_add(1)
        });
        let (evicted, changes) = {
            let live = session.lock().map_err(|_| poisoned())?;
            if !live.evicted {
                return Ok(EventsPage {
                    after,
                    events: live.events.get(from..).unwrap_or_default().to_vec(),
                    ended: live.session.status().is_terminal() || live.broken.is_some(),
                    changes: live.published.subscribe(),
                });
            }
            (live.evicted, live.published.subscribe())
        };
        // An evicted session has ended: its events are read back from the store.
        let store = self.inner.store.as_ref();
        let stored = live::io(store, || store.load(&caller.tenant, id))
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(EventsPage {
            after,
            events: stored.events.get(from..).unwrap_or_default().to_vec(),
            ended: evicted,
            changes,
        })
    }

    /// Reloads the policies: atomically, and only if they load. Sessions keep their bundle.
    pub fn reload(&self) -> Result<Reloaded, ApiError> {
        let source = self
            .inner
            .policies
            .read()
            .map_err(|_| ApiError::Unavailable("the policy source is poisoned".into()))?
            .clone();
        self.reload_from(&source)
    }

    /// Replaces the tools registered beside the packs' (see [`PolicySource::tools`]) and reloads:
    /// atomically, and only if the policies validate against the new tools. Sessions keep their
    /// bundle.
    pub fn reload_tools(
        &self,
        tools: Vec<(kernel::ToolSpec, String)>,
    ) -> Result<Reloaded, ApiError> {
        let mut source = self
            .inner
            .policies
            .write()
            .map_err(|_| ApiError::Unavailable("the policy source is poisoned".into()))?;
        let mut next = source.clone();
        next.tools = tools;
        let reloaded = self.reload_from(&next)?;
        *source = next;
        Ok(reloaded)
    }

    /// The deployment new sessions start under.
    pub fn current(&self) -> Arc<Deployment> {
        self.deployment()
    }

    fn reload_from(&self, source: &PolicySource) -> Result<Reloaded, ApiError> {
        let loaded = source.load().map_err(|e| {
            ApiError::Invalid(format!(
                "the policies do not load; the old set keeps serving: {e}"
            ))
        })?;
        let bundle = loaded
            .bundle_hash()
            .map(str::to_owned)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        let mut current = self
            .inner
            .deployment
            .write()
            .map_err(|_| ApiError::Unavailable("the policy slot is poisoned".into()))?;
        let changed = current.bundle_hash().ok() != Some(bundle.as_str());
        *current = Arc::new(loaded);
        Ok(Reloaded { bundle, changed })
    }

    /// Applies a `tick` to every session whose approval request has expired unanswered, so it is
    /// recorded as expired (and the agent may go on) without a client having to tick. Returns how
    /// many were ticked.
    pub async fn expire_due(&self) -> usize {
        let now = wall_ms();
        let mut ticked = 0;
        for (_, s) in self.held(|_| true) {
            let Ok(mut live) = s.lock() else { continue };
            // Hosted runs tick on their own.
            if live.hosted.is_none() && live.broken.is_none() && live.approval_due(now) {
                let store = self.inner.store.as_ref();
                if let Ok(applied) = live.apply(store, Intent::Tick, now) {
                    self.observe(&live, &applied.events);
                    ticked += 1;
                }
            }
        }
        ticked
    }

    /// Drops from memory the events of sessions that ended more than `after` ago (their SSE
    /// streams then read the store). Returns how many were dropped.
    pub fn evict_ended(&self, after: std::time::Duration) -> usize {
        let mut evicted = 0;
        for (_, s) in self.held(|_| true) {
            let Ok(mut live) = s.lock() else { continue };
            if !live.evicted && live.ended_at.is_some_and(|t| t.elapsed() >= after) {
                live.evict();
                evicted += 1;
            }
        }
        evicted
    }

    /// Runs [`Service::expire_due`] every `period` until the service is dropped, and drops the
    /// events of sessions over for a minute from memory ([`Service::evict_ended`]).
    pub fn spawn_expiry(&self, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let service = Service { inner };
                service.expire_due().await;
                service.evict_ended(std::time::Duration::from_secs(60));
            }
        })
    }

    /// The bundle hash new sessions start under.
    pub fn bundle(&self) -> String {
        self.deployment()
            .bundle_hash()
            .map(str::to_owned)
            .unwrap_or_default()
    }
}

/// How long a queued proposal waits for a busy session.
const QUEUE_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `intent` is a new proposal the session cannot take now because it waits for an answer.
fn busy(live: &Live, intent: &Intent) -> bool {
    use kernel::Status;
    let proposal = matches!(
        intent,
        Intent::CallModel { .. }
            | Intent::CallTool { .. }
            | Intent::ReadMemory { .. }
            | Intent::WriteMemory { .. }
            | Intent::Complete { .. }
    );
    proposal
        && matches!(
            live.session.status(),
            Status::WaitingModel
                | Status::WaitingTool
                | Status::WaitingMemory
                | Status::WaitingApproval
        )
        && live.hosted.is_none()
        && live.broken.is_none()
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "`id`: 1 to 200 characters, no control characters".into(),
        ));
    }
    Ok(())
}

/// The live control a hosted run takes for one of the user intents.
fn control_of(intent: Intent) -> Result<crate::Control, ApiError> {
    use crate::Control;
    Ok(match intent {
        Intent::Approve { user, .. } => Control::Approve { user },
        Intent::Reject { user, reason, .. } => Control::Reject { user, reason },
        Intent::Cancel { user, reason } => Control::Cancel { user, reason },
        Intent::Endorse { user, value } => Control::Endorse { user, value },
        other => {
            return Err(ApiError::NotAllowed(format!(
                "a hosted run takes no `{}` from clients",
                other.kind()
            )));
        }
    })
}

fn empty_response(status: String) -> StepResponse {
    StepResponse {
        outcome: "applied".into(),
        decision: None,
        error: None,
        events: Vec::new(),
        effects: Vec::new(),
        status,
    }
}

/// A slice of a session's events and how to wait for more.
pub struct EventsPage {
    /// The seq these events follow.
    pub after: Option<u64>,
    /// Events after the one asked for, in order.
    pub events: Vec<kernel::event::Event>,
    /// The session will append nothing more.
    pub ended: bool,
    /// Changes when the session appends events.
    pub changes: tokio::sync::watch::Receiver<usize>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The policies do not load.
    #[error("the policies do not load: {0}")]
    Policies(#[source] kernel::pack::PackError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// A stored session could not be restored.
    #[error("restoring {0}")]
    Restore(String),
}
