//! The in-memory store: the same contract as SQLite, for tests and runs that need no durability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{
    Checkpoint, SessionLog, SessionRecord, SessionStore, Step, StoreError, StoredSession,
    TenantMemory,
};
use kernel::BundleSources;
use kernel::event::Event;

/// Sessions and bundles in a mutex.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    bundles: BTreeMap<String, BundleSources>,
    sessions: BTreeMap<(String, String), StoredSession>,
    memory: BTreeMap<(String, String, String), (serde_json::Value, Vec<String>)>,
    checkpoints: Vec<Checkpoint>,
}

impl InMemoryStore {
    /// Appends a checkpoint as read from elsewhere, without the sequence check (see
    /// [`InMemoryStore::restore`]).
    pub fn restore_checkpoint(&self, c: Checkpoint) -> Result<(), StoreError> {
        self.with(|i| {
            i.checkpoints.push(c);
            Ok(())
        })
    }

    /// Puts a whole session in, as read from elsewhere (an export), without the append checks:
    /// an audit of what was handed over must see it as it is. Refuses an id already taken.
    pub fn restore(&self, session: StoredSession) -> Result<(), StoreError> {
        let key = (
            session.record.config.tenant.clone(),
            session.record.config.id.clone(),
        );
        self.with(|i| {
            if i.sessions.contains_key(&key) {
                return Err(StoreError::Exists {
                    tenant: key.0,
                    session: key.1,
                });
            }
            i.sessions.insert(key, session);
            Ok(())
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError::Backend("a writer panicked holding the lock".into()))?;
        f(&mut inner)
    }
}

impl SessionLog for InMemoryStore {
    fn blocks(&self) -> bool {
        false
    }

    fn begin(
        &self,
        deployment: &kernel::Deployment,
        config: &kernel::SessionConfig,
        started_wall_ms: u64,
    ) -> Result<(), StoreError> {
        super::begin_session(self, deployment, config, started_wall_ms)
    }

    fn append(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.with(|i| append(i, tenant, session, step, events))
    }
}

/// The append checks and write, under the store's lock.
fn append(
    i: &mut Inner,
    tenant: &str,
    session: &str,
    step: &Step,
    events: &[Event],
) -> Result<(), StoreError> {
    let s = i
        .sessions
        .get_mut(&(tenant.to_owned(), session.to_owned()))
        .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))?;
    let found = s.steps.len() as u64;
    let next_seq = s.events.len() as u64;
    if step.n != found || events.first().is_some_and(|e| e.seq != next_seq) {
        return Err(StoreError::Conflict {
            tenant: tenant.to_owned(),
            session: session.to_owned(),
            expected: step.n,
            found,
        });
    }
    s.steps.push(step.clone());
    s.events.extend_from_slice(events);
    Ok(())
}

impl TenantMemory for InMemoryStore {
    fn memory_get(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Vec<String>)>, StoreError> {
        let k = (tenant.to_owned(), scope.to_owned(), key.to_owned());
        self.with(|i| Ok(i.memory.get(&k).cloned()))
    }

    fn memory_put(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        value: &serde_json::Value,
        labels: &[String],
    ) -> Result<(), StoreError> {
        let k = (tenant.to_owned(), scope.to_owned(), key.to_owned());
        self.with(|i| {
            i.memory.insert(k, (value.clone(), labels.to_vec()));
            Ok(())
        })
    }
}

impl SessionStore for InMemoryStore {
    fn put_bundle(&self, sources: &BundleSources) -> Result<String, StoreError> {
        let hash = sources.hash()?;
        self.with(|i| {
            i.bundles
                .entry(hash.clone())
                .or_insert_with(|| sources.clone());
            Ok(hash)
        })
    }

    fn has_bundle(&self, hash: &str) -> Result<bool, StoreError> {
        self.with(|i| Ok(i.bundles.contains_key(hash)))
    }

    fn bundle(&self, hash: &str) -> Result<BundleSources, StoreError> {
        self.with(|i| {
            i.bundles
                .get(hash)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(format!("bundle {hash}")))
        })
    }

    fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let key = (record.config.tenant.clone(), record.config.id.clone());
        self.with(|i| {
            if i.sessions.contains_key(&key) {
                return Err(StoreError::Exists {
                    tenant: key.0,
                    session: key.1,
                });
            }
            i.sessions.insert(
                key,
                StoredSession {
                    record: record.clone(),
                    steps: Vec::new(),
                    events: Vec::new(),
                },
            );
            Ok(())
        })
    }

    fn load(&self, tenant: &str, session: &str) -> Result<StoredSession, StoreError> {
        self.with(|i| {
            i.sessions
                .get(&(tenant.to_owned(), session.to_owned()))
                .cloned()
                .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))
        })
    }

    fn sessions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|i| Ok(i.sessions.keys().cloned().collect()))
    }

    fn put_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.with(|i| put_checkpoint(i, c))
    }

    fn append_signed(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.with(|i| {
            super::check_next(checkpoint, i.checkpoints.len() as u64)?;
            append(i, tenant, session, step, events)?;
            put_checkpoint(i, checkpoint)
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with(|i| Ok(i.checkpoints.clone()))
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.with(|i| Ok(i.checkpoints.last().cloned()))
    }
}

fn put_checkpoint(i: &mut Inner, c: &Checkpoint) -> Result<(), StoreError> {
    super::check_next(c, i.checkpoints.len() as u64)?;
    i.checkpoints.push(c.clone());
    Ok(())
}
