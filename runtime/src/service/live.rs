//! One session the service holds: the kernel session, its events (the SSE source), and the
//! write-ahead rule — a step is in the store before anyone sees its events or acts on its effects.

use std::sync::Arc;

use kernel::event::{Event, EventBody};
use kernel::{Deployment, Effect, Intent, Session, SessionConfig, Step, Transition};
use tokio::sync::watch;

use super::api::{ApprovalView, SessionView, StepResponse};
use super::error::ApiError;
pub(super) use crate::driver::store_io as io;
use crate::store::{SessionStore, StoredSession};

/// A session and everything the API shows of it.
pub struct Live {
    pub(super) session: Session,
    /// The user's request (creation is idempotent on it).
    pub(super) request: String,
    /// Wall-clock start, ms since the Unix epoch: logical time is measured from it.
    pub(super) started_wall_ms: u64,
    /// Every event, in `seq` order (`events[i].seq == i`) — emptied once the session has been
    /// over for a while (`evicted`): the store has them, and a long-lived service must not hold
    /// every session it ever ran.
    pub(super) events: Vec<Event>,
    /// The events were dropped from memory; read them from the store.
    pub(super) evicted: bool,
    /// How many events the session has, held or not.
    pub(super) count: usize,
    /// When the service saw the session end.
    pub(super) ended_at: Option<std::time::Instant>,
    /// Steps in the store.
    logged: u64,
    /// The number of events, for SSE subscribers to wait on.
    pub(super) published: watch::Sender<usize>,
    /// Why the session takes no more steps here (the store refused a write, or the stored steps do
    /// not reproduce its events).
    pub(super) broken: Option<String>,
    /// For a hosted run: the handle of the runtime task that drives it (this session is then its
    /// mirror, fed by [`super::hosted::ServiceLog`]).
    pub(super) hosted: Option<crate::SessionHandle>,
    /// A hosted run another instance drives (clustered): this copy follows its log.
    pub(super) driven_elsewhere: bool,
    /// Another instance appended to the session since this copy last caught up (clustered).
    pub(super) stale: bool,
}

/// What the service did for one request's steps.
pub(super) struct Applied {
    pub(super) outcome: &'static str,
    pub(super) decision: Option<kernel::Decision>,
    pub(super) error: Option<kernel::StepError>,
    pub(super) events: Vec<Event>,
    pub(super) effects: Vec<Effect>,
}

impl Live {
    /// A session created now: `Start` applied and logged.
    pub(super) fn start(
        store: &dyn SessionStore,
        session: Session,
        request: String,
        started_wall_ms: u64,
    ) -> Result<(Self, Applied), ApiError> {
        let mut live = Self::held(session, request.clone(), started_wall_ms, Vec::new(), 0);
        let applied = live.apply(store, Intent::Start { request }, started_wall_ms)?;
        Ok((live, applied))
    }

    /// Rebuilds a stored session by replaying its steps under `deployment`. A session whose steps
    /// do not reproduce its stored events is kept readable but takes no more steps.
    pub(super) fn restore(
        deployment: Arc<Deployment>,
        stored: StoredSession,
    ) -> Result<Self, kernel::StepError> {
        let StoredSession {
            record,
            steps,
            events: recorded,
        } = stored;
        let request = steps
            .first()
            .and_then(|s| match &s.intent {
                Intent::Start { request } => Some(request.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let logged = steps.len() as u64;
        let mut session = Session::new(deployment, record.config)?;
        let mut produced = Vec::with_capacity(recorded.len());
        for step in steps {
            match session.step(step.intent, step.t_ms) {
                Ok(t) => produced.extend(t.events),
                Err(r) => produced.push(*r.event),
            }
        }
        let broken = (produced != recorded)
            .then(|| "its stored steps do not reproduce its stored events".to_owned());
        let mut live = Self::held(session, request, record.started_wall_ms, recorded, logged);
        live.broken = broken;
        Ok(live)
    }

    /// The mirror of a hosted run, before its runtime starts it (its start time comes with the
    /// run's first write).
    pub(super) fn hosted(session: Session, request: String) -> Self {
        Self::held(session, request, 0, Vec::new(), 0)
    }

    /// A healthy session holding `events` after `logged` stored steps.
    fn held(
        session: Session,
        request: String,
        started_wall_ms: u64,
        events: Vec<Event>,
        logged: u64,
    ) -> Self {
        let count = events.len();
        Self {
            session,
            request,
            started_wall_ms,
            events,
            evicted: false,
            count,
            ended_at: None,
            logged,
            published: watch::channel(count).0,
            broken: None,
            hosted: None,
            driven_elsewhere: false,
            stale: false,
        }
    }

    /// Steps in the store, as far as this copy knows.
    pub(super) fn logged(&self) -> u64 {
        self.logged
    }

    /// Applies steps another instance appended (read from the store with their events): the
    /// kernel replays them, and a copy that produces other events than the stored ones stops
    /// taking steps (`broken`), though the stored events are still published.
    pub(super) fn follow(&mut self, steps: Vec<Step>, events: Vec<Event>) {
        let mut produced = Vec::with_capacity(events.len());
        self.logged += steps.len() as u64;
        for step in steps {
            match self.session.step(step.intent, step.t_ms) {
                Ok(t) => produced.extend(t.events),
                Err(r) => produced.push(*r.event),
            }
        }
        if produced != events && self.broken.is_none() {
            self.broken = Some(
                "the steps another instance appended do not reproduce their stored events here"
                    .into(),
            );
        }
        self.stale = false;
        self.publish(&events);
    }

    /// Applies a step the hosted run's runtime wrote (already in the store) to the mirror, and
    /// publishes the run's events. A mirror that produces other events than the run stops showing
    /// the run as healthy (`broken`), though the run's events are still published.
    pub(super) fn mirror(&mut self, step: &Step, events: &[Event]) {
        let produced = match self.session.step(step.intent.clone(), step.t_ms) {
            Ok(t) => t.events,
            Err(r) => vec![*r.event],
        };
        if produced != events && self.broken.is_none() {
            self.broken = Some(format!(
                "step {}: the service's mirror of the run produced other events than the run",
                step.n
            ));
        }
        self.logged += 1;
        self.publish(events);
    }

    /// Applies `intent` at wall time `now_wall_ms`, logs it, performs the memory effects it asks
    /// for (reads answered from the store, writes stored) and returns what the caller must know.
    pub(super) fn apply(
        &mut self,
        store: &dyn SessionStore,
        intent: Intent,
        now_wall_ms: u64,
    ) -> Result<Applied, ApiError> {
        if self.hosted.is_some() || self.driven_elsewhere {
            return Err(ApiError::NotAllowed(format!(
                "session `{}` is a hosted run: Arbiter takes its steps",
                self.session.config().id
            )));
        }
        if let Some(why) = &self.broken {
            return Err(ApiError::Unavailable(format!(
                "session `{}` takes no more steps: {why}",
                self.session.config().id
            )));
        }
        let mut applied = Applied {
            outcome: "applied",
            decision: None,
            error: None,
            events: Vec::new(),
            effects: Vec::new(),
        };
        let mut next = Some(intent);
        let mut first = true;
        while let Some(intent) = next.take() {
            let t_ms = now_wall_ms.saturating_sub(self.started_wall_ms);
            let step = Step {
                n: self.logged,
                t_ms,
                intent: intent.clone(),
            };
            let result = self.session.step(intent, t_ms);
            let events: Vec<Event> = match &result {
                Ok(t) => t.events.clone(),
                Err(r) => vec![(*r.event).clone()],
            };
            let c = self.session.config();
            if let Err(e) = io(store, || store.append(&c.tenant, &c.id, &step, &events)) {
                let why = format!("the store refused step {}: {e}", step.n);
                self.broken = Some(why.clone());
                return Err(ApiError::Unavailable(why));
            }
            self.logged += 1;
            self.publish(&events);
            applied.events.extend(events);
            match result {
                Err(rejected) => {
                    if first {
                        applied.outcome = "rejected";
                        applied.error = Some(rejected.error);
                    }
                }
                Ok(Transition {
                    decision, effects, ..
                }) => {
                    // `start` records its decision in `session_started` rather than returning it.
                    let decision = decision
                        .or_else(|| applied.events.iter().rev().find_map(|e| e.decision.clone()));
                    if first && decision.is_some() {
                        applied.outcome = "decided";
                        applied.decision = decision;
                    }
                    for effect in effects {
                        match effect {
                            Effect::ReadMemory {
                                read_id,
                                scope,
                                key,
                            } => {
                                let tenant = c_tenant(&self.session);
                                let (value, labels) =
                                    io(store, || store.memory_get(&tenant, &scope, &key))
                                        .map_err(|e| ApiError::Unavailable(e.to_string()))?
                                        .map_or((None, Vec::new()), |(v, l)| (Some(v), l));
                                next = Some(Intent::MemoryLoaded {
                                    read_id,
                                    value,
                                    labels,
                                });
                            }
                            Effect::WriteMemory {
                                scope,
                                key,
                                value,
                                labels,
                            } => {
                                let tenant = c_tenant(&self.session);
                                io(store, || {
                                    store.memory_put(&tenant, &scope, &key, &value, &labels)
                                })
                                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                            }
                            other => applied.effects.push(other),
                        }
                    }
                }
            }
            first = false;
        }
        Ok(applied)
    }

    fn publish(&mut self, events: &[Event]) {
        if !self.evicted {
            self.events.extend_from_slice(events);
        }
        self.count += events.len();
        if self.ended_at.is_none() && self.session.status().is_terminal() {
            self.ended_at = Some(std::time::Instant::now());
        }
        self.published.send_replace(self.count);
    }

    /// Drops the events from memory (the store keeps them).
    pub(super) fn evict(&mut self) {
        self.events = Vec::new();
        self.evicted = true;
    }

    /// The session as the API shows it.
    pub(super) fn view(&self) -> SessionView {
        let c = self.session.config();
        SessionView {
            id: c.id.clone(),
            tenant: c.tenant.clone(),
            user: c.user.clone(),
            agent: c.agent.clone(),
            budget: c.budget.clone(),
            status: self.session.status().as_str().to_owned(),
            steps: self.session.steps(),
            cost_spent: self.session.cost_spent(),
            labels: self.session.labels().map(str::to_owned).collect(),
            pending_approval: self.session.pending_approval().map(str::to_owned),
            last_seq: self.count.checked_sub(1).map(|n| n as u64),
            bundle: self
                .session
                .deployment()
                .bundle_hash()
                .map(str::to_owned)
                .unwrap_or_default(),
            broken: self.broken.clone(),
        }
    }

    /// Whether the approval this session waits for has passed its expiry at wall time `now`.
    pub(super) fn approval_due(&self, now_wall_ms: u64) -> bool {
        let Some(id) = self.session.pending_approval() else {
            return false;
        };
        let t = now_wall_ms.saturating_sub(self.started_wall_ms);
        self.events.iter().rev().any(|e| {
            matches!(&e.body, EventBody::ApprovalRequested { request_id, expires_at_ms: Some(at), .. }
                if request_id == id && t >= *at)
        })
    }

    /// The approval this session waits for, with what was asked.
    pub(super) fn approval(&self) -> Option<ApprovalView> {
        let id = self.session.pending_approval()?;
        let request = self.events.iter().rev().find_map(|e| match &e.body {
            EventBody::ApprovalRequested { request_id, .. } if request_id == id => {
                serde_json::to_value(e)
                    .ok()
                    .and_then(|v| v.get("payload").cloned())
            }
            _ => None,
        })?;
        Some(ApprovalView {
            session: self.session.config().id.clone(),
            request_id: id.to_owned(),
            request,
        })
    }
}

impl Applied {
    /// The response body.
    pub(super) fn response(self, status: &str) -> StepResponse {
        StepResponse {
            outcome: self.outcome.to_owned(),
            decision: self.decision,
            error: self.error,
            events: self.events,
            effects: self.effects,
            status: status.to_owned(),
        }
    }
}

fn c_tenant(session: &Session) -> String {
    session.config().tenant.clone()
}

/// The config of a session as it was opened.
pub(super) fn config_of(live: &Live) -> &SessionConfig {
    live.session.config()
}
