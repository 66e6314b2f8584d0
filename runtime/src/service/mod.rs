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
//! `api` the bodies; `auth` tokens; `error` the refusals; `http` the axum router over it;
//! `hosted` hosted runs; `cluster` several instances on one PostgreSQL store.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod error;
mod hosted;
pub mod http;
mod live;

pub use cluster::ClusterConfig;
pub use hosted::HostedAgent;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kernel::{Deployment, Intent, Mode, Session, SessionConfig};
use std::sync::Mutex;

use crate::store::{self, SessionStore, StoreError};
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
    /// Other instances share the store ([`Service::clustered`]).
    cluster: Option<Arc<cluster::Cluster>>,
    /// Deployments built from stored bundles, by hash.
    bundles: Mutex<HashMap<String, Arc<Deployment>>>,
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
                cluster: None,
                bundles: Mutex::new(HashMap::new()),
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

    /// Shares the store with other instances (see [`cluster`]): sessions are driven under leases,
    /// followed when another instance drives them, and hosted runs of a dead instance taken over.
    /// Call it right after [`Service::new`] (and [`Service::traced`]), before [`Service::host`].
    pub fn clustered(mut self, config: ClusterConfig) -> Result<Self, ServiceError> {
        let started = Arc::new(cluster::Cluster::start(config).map_err(ServiceError::Store)?);
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.cluster = Some(started);
        }
        // A run interrupted by a restart here may be driven by another instance now: it is
        // followed, and taken over only once its lease expires.
        for (_, live) in self.held(|_| true) {
            if let Ok(mut live) = live.lock()
                && live.broken.as_deref() == Some(INTERRUPTED)
            {
                live.broken = None;
                live.driven_elsewhere = true;
            }
        }
        Ok(self)
    }

    /// Registers `agent` under `name` for hosted runs (`POST /v1/runs`). Call it after
    /// [`Service::traced`], before the service is shared.
    pub fn host(mut self, name: &str, agent: HostedAgent) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            let log = hosted::ServiceLog {
                store: Arc::clone(&inner.store),
                sessions: Arc::clone(&inner.sessions),
                spans: inner.spans.clone(),
                cluster: inner.cluster.clone(),
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
        let key = (caller.tenant.clone(), req.id.clone());
        if let Some(cluster) = &self.inner.cluster {
            let taken = cluster
                .take(&key)
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            if let Err(owner) = taken {
                return Err(ApiError::Conflict(format!(
                    "run `{}` is being started by instance `{owner}`",
                    req.id
                )));
            }
        }
        let store = self.inner.store.as_ref();
        live::io(store, || {
            store.memory_put(
                &caller.tenant,
                HOSTED_SCOPE,
                &req.id,
                &serde_json::json!({ "agent": req.agent, "request": req.request }),
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
        if self.inner.cluster.is_some() {
            return Ok(self.take_over());
        }
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
            let request = marker.get("request").and_then(|r| r.as_str());
            if stored.steps.is_empty() {
                live.request = request.unwrap_or_default().to_owned();
            }
            match drive_stored(agent, &live, stored, request) {
                Ok(handle) => {
                    live.hosted = Some(handle);
                    live.broken = None;
                    resumed += 1;
                }
                Err(why) => live.broken = Some(format!("{INTERRUPTED}: {why}")),
            }
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
        let mut restored = HashMap::new();
        for (tenant, id) in store.sessions().map_err(ServiceError::Store)? {
            let stored = store.load(&tenant, &id).map_err(ServiceError::Store)?;
            let mut live = self.restored(&tenant, &id, stored)?;
            if live.driven_elsewhere {
                live.driven_elsewhere = false;
                live.broken = Some(INTERRUPTED.into());
            }
            restored.insert((tenant, id), Arc::new(Mutex::new(live)));
        }
        if let Ok(mut sessions) = self.inner.sessions.write() {
            *sessions = restored;
        }
        Ok(())
    }

    /// A stored session rebuilt under its own bundle; a hosted run not over is marked
    /// `driven_elsewhere` (its driver is not this copy).
    fn restored(
        &self,
        tenant: &str,
        id: &str,
        stored: crate::store::StoredSession,
    ) -> Result<Live, ServiceError> {
        let store = &self.inner.store;
        let hash = stored.record.bundle.clone();
        let cached = self
            .inner
            .bundles
            .lock()
            .ok()
            .and_then(|b| b.get(&hash).cloned());
        let deployment = match cached {
            Some(d) => d,
            None => {
                let sources = live::io(store.as_ref(), || store.bundle(&hash))
                    .map_err(ServiceError::Store)?;
                let d = Arc::new(sources.build().map_err(|e| {
                    ServiceError::Restore(format!("{tenant}/{id}: its bundle {hash}: {e}"))
                })?);
                if let Ok(mut b) = self.inner.bundles.lock() {
                    b.insert(hash, Arc::clone(&d));
                }
                d
            }
        };
        let mut live = Live::restore(deployment, stored)
            .map_err(|e| ServiceError::Restore(format!("{tenant}/{id}: {e}")))?;
        let hosted = live::io(store.as_ref(), || {
            store.memory_get(tenant, HOSTED_SCOPE, id)
        })
        .map_err(ServiceError::Store)?
        .is_some();
        if hosted && !live.session.status().is_terminal() && live.broken.is_none() {
            live.driven_elsewhere = true;
        }
        if live.session.status().is_terminal() {
            live.evict();
        }
        Ok(live)
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
        self.find_key(&(caller.tenant.clone(), id.to_owned()))
    }

    /// A session held here or, clustered, one another instance created (loaded and followed
    /// from now on).
    fn find_key(&self, key: &hosted::Key) -> Result<Arc<Mutex<Live>>, ApiError> {
        let held = self
            .inner
            .sessions
            .read()
            .map_err(|_| ApiError::Unavailable("the session table is poisoned".into()))?
            .get(key)
            .cloned();
        match held {
            Some(live) => Ok(live),
            None if self.inner.cluster.is_some() => self.load_shared(key),
            None => Err(not_found(&key.1)),
        }
    }

    /// The copy of `key` this instance holds, if any (never loaded from the store).
    fn local(&self, key: &hosted::Key) -> Option<Arc<Mutex<Live>>> {
        self.inner.sessions.read().ok()?.get(key).cloned()
    }

    /// Loads a session another instance created into the table.
    fn load_shared(&self, key: &hosted::Key) -> Result<Arc<Mutex<Live>>, ApiError> {
        let store = self.inner.store.as_ref();
        let stored = match live::io(store, || store.load(&key.0, &key.1)) {
            Ok(s) => s,
            Err(StoreError::NotFound(_)) => return Err(not_found(&key.1)),
            Err(e) => return Err(ApiError::Unavailable(e.to_string())),
        };
        let live = self
            .restored(&key.0, &key.1, stored)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let mut sessions = self
            .inner
            .sessions
            .write()
            .map_err(|_| ApiError::Unavailable("the session table is poisoned".into()))?;
        Ok(Arc::clone(
            sessions
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Mutex::new(live))),
        ))
    }

    /// Clustered: brings a copy this instance does not drive up to the log (steps another
    /// instance appended), when it is stale or behind `steps`.
    fn catch_up(&self, live: &mut Live, steps: Option<u64>) -> Result<(), ApiError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(());
        };
        if live.hosted.is_some() || !(live.stale || steps.is_some_and(|n| n > live.logged())) {
            return Ok(());
        }
        let c = live.session.config();
        let (tenant, id) = (c.tenant.clone(), c.id.clone());
        let (from_step, from_seq) = (live.logged(), live.count as u64);
        let (steps, events) =
            cluster::io(|| cluster.pg.load_after(&tenant, &id, from_step, from_seq))
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        live.follow(steps, events);
        if live.driven_elsewhere && live.session.status().is_terminal() {
            live.driven_elsewhere = false;
        }
        Ok(())
    }

    /// Opens a session (or answers the one this id already names, when opened with the same body):
    /// `true` when it was created now.
    pub async fn create(
        &self,
        caller: &Caller,
        req: CreateSession,
    ) -> Result<(bool, SessionView, StepResponse), ApiError> {
        valid_id(&req.id)?;
        let _hold = match &self.inner.cluster {
            Some(c) => Some(c.hold(&(caller.tenant.clone(), req.id.clone())).await?),
            None => None,
        };
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
        let session = self.find(caller, id)?;
        let mut live = session.lock().map_err(|_| poisoned())?;
        self.catch_up(&mut live, None)?;
        Ok(live.view())
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
        let key = (caller.tenant.clone(), id.to_owned());
        let session = self.find_key(&key)?;
        // A hosted run takes approvals, rejections, cancellation and endorsement as live
        // controls; the answer is what its run appended once it took the control.
        let sent = {
            let mut live = session.lock().map_err(|_| poisoned())?;
            if live.driven_elsewhere {
                self.catch_up(&mut live, None)?;
            }
            if live.driven_elsewhere {
                // Another instance drives the run: the control goes to it through the store, and
                // the answer is what the run appended, as followed here.
                let Some(cluster) = &self.inner.cluster else {
                    return Err(ApiError::Conflict(format!(
                        "run `{id}` is driven elsewhere and this instance shares no store with it"
                    )));
                };
                control_of(intent.clone())?;
                let text =
                    serde_json::to_string(&intent).map_err(|e| ApiError::Invalid(e.to_string()))?;
                cluster::io(|| cluster.pg.send_control(&key.0, &key.1, &text))
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                Some((live.count, live.published.subscribe()))
            } else {
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
            // Clustered: the session's lease for this attempt (not while queued, so the answer
            // the session waits for can come through another instance).
            let hold = match &self.inner.cluster {
                Some(c) => Some(c.hold(&key).await?),
                None => None,
            };
            let mut changes = {
                let mut live = session.lock().map_err(|_| poisoned())?;
                self.catch_up(&mut live, hold.as_ref().and_then(|h| h.steps))?;
                if !busy(&live, &intent) {
                    let applied = match live.apply(self.inner.store.as_ref(), intent, wall_ms()) {
                        Ok(applied) => applied,
                        Err(e) => {
                            if live.broken.is_some() && self.inner.cluster.is_some() {
                                self.rebuild(&mut live);
                            }
                            return Err(e);
                        }
                    };
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
            drop(hold);
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
        let mut live = session.lock().map_err(|_| poisoned())?;
        self.catch_up(&mut live, None)?;
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
            let mut live = s.lock().map_err(|_| poisoned())?;
            self.catch_up(&mut live, None)?;
            if let Some(a) = live.approval() {
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
            let mut live = session.lock().map_err(|_| poisoned())?;
            self.catch_up(&mut live, None)?;
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
        // Hosted runs tick on their own.
        let due = |live: &Live| {
            live.hosted.is_none()
                && !live.driven_elsewhere
                && live.broken.is_none()
                && live.approval_due(now)
        };
        for (key, s) in self.held(|_| true) {
            if !s.lock().is_ok_and(|live| due(&live)) {
                continue;
            }
            // Clustered, every instance looks; the one that gets the lease ticks, and the others
            // find it ticked once they catch up.
            let hold = match &self.inner.cluster {
                Some(c) => match c.hold(&key).await {
                    Ok(h) => Some(h),
                    Err(_) => continue,
                },
                None => None,
            };
            let Ok(mut live) = s.lock() else { continue };
            if self
                .catch_up(&mut live, hold.as_ref().and_then(|h| h.steps))
                .is_err()
                || !due(&live)
            {
                continue;
            }
            let store = self.inner.store.as_ref();
            if let Ok(applied) = live.apply(store, Intent::Tick, now) {
                self.observe(&live, &applied.events);
                ticked += 1;
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

    /// Clustered: starts following other instances' appends, renewing this instance's leases
    /// every third of the lease time, and taking over hosted runs whose lease expired. The tasks
    /// end when the service is dropped. Nothing without a cluster.
    pub fn spawn_cluster(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(cluster) = self.inner.cluster.clone() else {
            return Vec::new();
        };
        let mut appended = cluster.appended.subscribe();
        let weak = Arc::downgrade(&self.inner);
        let follow = tokio::spawn(async move {
            loop {
                let notice = appended.recv().await;
                let Some(inner) = weak.upgrade() else { return };
                let service = Service { inner };
                match notice {
                    Ok(store::postgres::listen::Appended::To {
                        tenant,
                        session,
                        events,
                    }) => service.on_appended(&(tenant, session), events),
                    Ok(store::postgres::listen::Appended::Control { tenant, session }) => {
                        service.deliver_controls(&(tenant, session));
                    }
                    Ok(store::postgres::listen::Appended::Resync)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        service.resync();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let every = cluster.lease / 3;
        let renew = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let service = Service { inner };
                service.renew_leases();
                service.take_over();
            }
        });
        vec![follow, renew]
    }

    /// Another instance (or this one) appended to `key`, which now has `events` events.
    fn on_appended(&self, key: &hosted::Key, events: u64) {
        let held = self.local(key);
        let Some(live) = held else {
            // A session created elsewhere: follow it from now on (it is read whole).
            let _ = self.load_shared(key);
            return;
        };
        let Ok(mut live) = live.lock() else { return };
        if live.hosted.is_some() || live.count as u64 >= events {
            return;
        }
        live.stale = true;
        if live.published.receiver_count() > 0 {
            let _ = self.catch_up(&mut live, None);
        }
    }

    /// Hands the controls queued for `key` to its run, if this instance drives it (another
    /// instance's driver takes its own).
    fn deliver_controls(&self, key: &hosted::Key) {
        let Some(cluster) = &self.inner.cluster else {
            return;
        };
        let held = self.local(key);
        let Some(live) = held else { return };
        let Ok(live) = live.lock() else { return };
        let Some(handle) = &live.hosted else { return };
        let Ok(queued) = cluster::io(|| cluster.pg.take_controls(&key.0, &key.1)) else {
            return;
        };
        for text in queued {
            if let Ok(control) = serde_json::from_str::<Intent>(&text)
                .map_err(|e| ApiError::Invalid(e.to_string()))
                .and_then(control_of)
            {
                handle.send(control);
            }
        }
    }

    /// Notifications may have been missed: every followed copy is stale; watched ones catch up.
    fn resync(&self) {
        for (key, _) in self.held(|_| true) {
            self.deliver_controls(&key);
        }
        for (_, live) in self.held(|_| true) {
            let Ok(mut live) = live.lock() else { continue };
            if live.hosted.is_none() {
                live.stale = true;
                if live.published.receiver_count() > 0 {
                    let _ = self.catch_up(&mut live, None);
                }
            }
        }
    }

    /// A hosted run whose lease was lost (this instance stalled past it and another took over)
    /// stops being driven here and is followed instead — its runtime's next write is refused by
    /// the database anyway.
    fn renew_leases(&self) {
        let Some(cluster) = &self.inner.cluster else {
            return;
        };
        for key in cluster.lost() {
            let held = self.local(&key);
            if let Some(live) = held
                && let Ok(mut live) = live.lock()
                && live.hosted.take().is_some()
            {
                live.driven_elsewhere = true;
                live.stale = true;
            }
        }
    }

    /// Takes over the hosted runs whose lease expired while held (by another instance, or by
    /// this one whose run stopped) and whose agent is registered here: lease taken with a new token, log replayed, what was in flight
    /// declared in doubt (as after a restart). Returns how many.
    fn take_over(&self) -> usize {
        let Some(cluster) = &self.inner.cluster else {
            return 0;
        };
        let store = &self.inner.store;
        let mut candidates = cluster::io(|| cluster.pg.expired()).unwrap_or_default();
        // Runs of this instance whose runtime stopped short of an end (a write refused while
        // its lease had lapsed): resumed here as any taken-over run.
        for (key, live) in self.held(|_| true) {
            if let Ok(mut live) = live.lock()
                && live
                    .hosted
                    .as_ref()
                    .is_some_and(crate::SessionHandle::is_finished)
                && !live.session.status().is_terminal()
            {
                live.hosted = None;
                live.driven_elsewhere = true;
                candidates.push(key);
            }
        }
        let mut taken = 0;
        for key in candidates {
            // Never a second driver for a run this instance drives.
            let driven_here = self
                .local(&key)
                .is_some_and(|l| l.lock().is_ok_and(|l| l.hosted.is_some()));
            if driven_here {
                continue;
            }
            let (tenant, id) = (&key.0, &key.1);
            let Ok(Some((marker, _))) = live::io(store.as_ref(), || {
                store.memory_get(tenant, HOSTED_SCOPE, id)
            }) else {
                continue;
            };
            let Some(agent) = marker
                .get("agent")
                .and_then(|a| a.as_str())
                .and_then(|name| self.inner.agents.get(name))
                .filter(|a| a.template.tenant == *tenant)
            else {
                continue;
            };
            if !matches!(cluster.take(&key), Ok(Ok(()))) {
                continue;
            }
            let resumed = (|| {
                let stored = live::io(store.as_ref(), || store.load(tenant, id)).ok()?;
                let mut fresh = self.restored(tenant, id, stored.clone()).ok()?;
                if !fresh.driven_elsewhere {
                    // Over, or broken: nothing to drive.
                    return Some((fresh, false));
                }
                let request = marker.get("request").and_then(|r| r.as_str());
                if stored.steps.is_empty() {
                    fresh.request = request.unwrap_or_default().to_owned();
                }
                fresh.hosted = Some(drive_stored(agent, &fresh, stored, request).ok()?);
                fresh.driven_elsewhere = false;
                Some((fresh, true))
            })();
            let Some((fresh, driving)) = resumed else {
                cluster.let_go(&key);
                continue;
            };
            if !driving {
                cluster.let_go(&key);
            }
            self.replace(&key, fresh);
            if driving {
                // Controls sent to the run's last driver that it never took.
                self.deliver_controls(&key);
            }
            taken += usize::from(driving);
        }
        taken
    }

    /// Clustered: the store refused a step this copy took (its lease was lost meanwhile, so the
    /// database fenced it off), leaving the copy a step ahead of the log. The log is the truth:
    /// the copy is rebuilt from it, and the next request goes on from there instead of finding
    /// the session broken on this instance for good. A copy that cannot be rebuilt stays broken.
    fn rebuild(&self, live: &mut Live) {
        let (tenant, id) = {
            let c = live.session.config();
            (c.tenant.clone(), c.id.clone())
        };
        let store = self.inner.store.as_ref();
        let Ok(stored) = live::io(store, || store.load(&tenant, &id)) else {
            return;
        };
        let Ok(mut fresh) = self.restored(&tenant, &id, stored) else {
            return;
        };
        if fresh.broken.is_some() {
            return;
        }
        std::mem::swap(&mut fresh.published, &mut live.published);
        *live = fresh;
        let count = live.count;
        live.published.send_replace(count);
    }

    /// Puts `fresh` in the table as `key`'s copy; streams watching the old copy go on watching
    /// this one (its change channel moves over).
    fn replace(&self, key: &hosted::Key, mut fresh: Live) {
        let existing = self.local(key);
        match existing {
            Some(live) => {
                if let Ok(mut old) = live.lock() {
                    std::mem::swap(&mut fresh.published, &mut old.published);
                    *old = fresh;
                    let count = old.count;
                    old.published.send_replace(count);
                }
            }
            None => {
                if let Ok(mut sessions) = self.inner.sessions.write() {
                    sessions.insert(key.clone(), Arc::new(Mutex::new(fresh)));
                }
            }
        }
    }

    /// The bundle hash new sessions start under.
    pub fn bundle(&self) -> String {
        self.deployment()
            .bundle_hash()
            .map(str::to_owned)
            .unwrap_or_default()
    }
}

/// Drives a stored hosted run on from its log: resumed when it has steps (replayed, what was in
/// flight declared in doubt), started when it was created and never started (its request from the
/// run's marker).
fn drive_stored(
    agent: &hosted::Registered,
    mirror: &Live,
    stored: crate::store::StoredSession,
    request: Option<&str>,
) -> Result<crate::SessionHandle, String> {
    let session = kernel::Session::new(
        Arc::clone(mirror.session.deployment()),
        mirror.session.config().clone(),
    )
    .map_err(|e| e.to_string())?;
    let hub = crate::EventHub::new(16);
    if stored.steps.is_empty() {
        let request = request.ok_or("it never started, and its request was not kept")?;
        return Ok(agent
            .runtime
            .start_created(session, request.to_owned(), hub, agent.tick_every));
    }
    Ok(agent.runtime.resume(session, stored, hub, agent.tick_every))
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
