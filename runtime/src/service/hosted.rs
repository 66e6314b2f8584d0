//! Hosted runs: Arbiter runs the agent itself (model and tools from an agent file) on the one
//! driver, [`crate::Runtime`], while the service shows the run like any other session. The runtime
//! writes each step through [`ServiceLog`]: to the store first (the write-ahead rule), then into the
//! service's mirror of the session, which applies the same step to its own kernel session — the
//! kernel is deterministic, so the mirror's events are the run's, and a divergence is caught and
//! reported rather than shown. Approvals, rejections, cancellation and endorsement reach the run as
//! live controls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kernel::event::Event;
use kernel::{Deployment, SessionConfig, Step};

use super::live::Live;
use crate::Runtime;
use crate::spans::SpanRecorder;
use crate::store::{SessionLog, SessionStore, StoreError};

/// A session's key: (tenant, id).
pub(super) type Key = (String, String);

/// The sessions of a service, by (tenant, id).
pub(super) type Sessions = Arc<RwLock<HashMap<Key, Arc<Mutex<Live>>>>>;

/// An agent the service runs itself.
pub struct HostedAgent {
    /// Model, tools and credentials (its log and memory are set by the service).
    pub runtime: Runtime,
    /// The policies its runs are decided under.
    pub deployment: Arc<Deployment>,
    /// Its tenant, agent and budget (id, user and mode come with each run).
    pub template: SessionConfig,
    /// How often a run's clock ticks (so `continue_session` and approval expiry apply).
    pub tick_every: Option<Duration>,
}

impl From<crate::agent_file::Agent> for HostedAgent {
    fn from(a: crate::agent_file::Agent) -> Self {
        Self {
            runtime: a.runtime,
            deployment: a.deployment,
            template: a.config,
            tick_every: Some(a.tick_every),
        }
    }
}

/// A registered agent, ready to run.
pub(super) struct Registered {
    pub(super) runtime: Arc<Runtime>,
    pub(super) deployment: Arc<Deployment>,
    pub(super) template: SessionConfig,
    pub(super) tick_every: Option<Duration>,
}

/// The log hosted runs write through: the store, then the service's mirror of the session.
pub(super) struct ServiceLog {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) sessions: Sessions,
    pub(super) spans: Option<Arc<SpanRecorder>>,
    /// Clustered: the run's lease is given back when it ends.
    pub(super) cluster: Option<Arc<super::cluster::Cluster>>,
}

impl ServiceLog {
    fn live(&self, tenant: &str, session: &str) -> Option<Arc<Mutex<Live>>> {
        self.sessions
            .read()
            .ok()?
            .get(&(tenant.to_owned(), session.to_owned()))
            .cloned()
    }
}

impl SessionLog for ServiceLog {
    fn blocks(&self) -> bool {
        self.store.blocks()
    }

    fn begin(
        &self,
        deployment: &Deployment,
        config: &SessionConfig,
        started_wall_ms: u64,
    ) -> Result<(), StoreError> {
        self.store.begin(deployment, config, started_wall_ms)?;
        if let Some(live) = self.live(&config.tenant, &config.id)
            && let Ok(mut live) = live.lock()
        {
            live.started_wall_ms = started_wall_ms;
        }
        Ok(())
    }

    fn append(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.store.append(tenant, session, step, events)?;
        let mut ended = false;
        if let Some(live) = self.live(tenant, session)
            && let Ok(mut live) = live.lock()
        {
            live.mirror(step, events);
            ended = live.session.status().is_terminal();
            if let Some(spans) = &self.spans {
                for e in events {
                    spans.record(e, live.started_wall_ms);
                }
            }
        }
        if ended && let Some(cluster) = &self.cluster {
            cluster.let_go(&(tenant.to_owned(), session.to_owned()));
        }
        Ok(())
    }
}
