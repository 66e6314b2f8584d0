//! A store that signs: wraps any [`SessionStore`] and writes a signed checkpoint of a session's
//! chain head when the session ends and at least every [`CHECKPOINT_EVERY`] events before that.
//!
//! The checkpoint is written in the same transaction as the append whose head it signs (where the
//! store has transactions: SQLite and memory; [`SessionStore::append_signed`]), so a crash never
//! leaves an ended session unsigned, and a signature never names events that are not there.

use std::collections::HashMap;
use std::sync::Mutex;

use super::checkpoint::{Checkpoint, Head, SigningKey};
use super::{
    SessionLog, SessionRecord, SessionStore, Step, StoreError, StoredSession, TenantMemory,
};
use kernel::BundleSources;
use kernel::event::Event;

/// Events a session may append before its head is signed even though it has not ended.
pub const CHECKPOINT_EVERY: u64 = 128;

/// A store whose session heads are signed with `key`.
pub struct Signed<S> {
    inner: S,
    key: SigningKey,
    every: u64,
    /// Events appended since each open session's last checkpoint, and the store's last
    /// checkpoint (n, hash) once read. One lock: checkpoints are chained, so they are written one
    /// at a time.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    unsigned: HashMap<(String, String), u64>,
    last: Option<(u64, String)>,
}

impl<S: SessionStore> Signed<S> {
    /// Signs `inner`'s sessions with `key`.
    pub fn new(inner: S, key: SigningKey) -> Self {
        Self {
            inner,
            key,
            every: CHECKPOINT_EVERY,
            state: Mutex::new(State::default()),
        }
    }

    /// Signs at least every `events` events (at least 1) instead of [`CHECKPOINT_EVERY`].
    pub fn every(mut self, events: u64) -> Self {
        self.every = events.max(1);
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Appends `events` together with the checkpoint of the head they produce, as the store's
    /// next checkpoint. Another process signing into the same store makes the write conflict; the
    /// signer then re-reads where the sequence is and tries again.
    fn append_sealed(
        &self,
        state: &mut State,
        step: &Step,
        events: &[Event],
        head: Head,
    ) -> Result<(), StoreError> {
        let mut attempts = 0;
        loop {
            let (n, prev) = match &state.last {
                Some((n, hash)) => (n + 1, hash.clone()),
                None => match self.inner.last_checkpoint()? {
                    Some(c) => (c.n + 1, c.hash()),
                    None => (0, Checkpoint::genesis()),
                },
            };
            let c = self.key.sign(n, prev, head.clone());
            match self
                .inner
                .append_signed(&head.tenant, &head.session, step, events, &c)
            {
                Ok(()) => {
                    state.last = Some((c.n, c.hash()));
                    return Ok(());
                }
                Err(StoreError::CheckpointConflict { .. }) if attempts < 8 => {
                    attempts += 1;
                    state.last = None;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("a signer panicked holding the lock".into()))
    }
}

impl<S: SessionStore> SessionLog for Signed<S> {
    fn blocks(&self) -> bool {
        self.inner().blocks()
    }

    fn begin(
        &self,
        deployment: &kernel::Deployment,
        config: &kernel::SessionConfig,
        started_wall_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.begin(deployment, config, started_wall_ms)
    }

    /// Most appends only count: they go to the store concurrently, without the signer's lock.
    /// An append that ends the session or reaches the interval is written together with its
    /// checkpoint, one at a time (checkpoints are chained).
    fn append(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return self.inner.append(tenant, session, step, events);
        };
        let key = (tenant.to_owned(), session.to_owned());
        let closed = last.body.ends_session();
        let unsigned = self.lock()?.unsigned.get(&key).copied().unwrap_or(0) + events.len() as u64;
        if !closed && unsigned < self.every {
            self.inner.append(tenant, session, step, events)?;
            self.lock()?.unsigned.insert(key, unsigned);
            return Ok(());
        }
        let head = Head {
            tenant: key.0.clone(),
            session: key.1.clone(),
            events: last.seq + 1,
            head: last.hash.clone(),
            closed,
        };
        let mut state = self.lock()?;
        self.append_sealed(&mut state, step, events, head)?;
        state.unsigned.remove(&key);
        Ok(())
    }
}

impl<S: SessionStore> TenantMemory for Signed<S> {
    fn memory_get(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Vec<String>)>, StoreError> {
        self.inner.memory_get(tenant, scope, key)
    }

    fn memory_put(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        value: &serde_json::Value,
        labels: &[String],
    ) -> Result<(), StoreError> {
        self.inner.memory_put(tenant, scope, key, value, labels)
    }
}

impl<S: SessionStore> SessionStore for Signed<S> {
    fn put_bundle(&self, sources: &BundleSources) -> Result<String, StoreError> {
        self.inner.put_bundle(sources)
    }

    fn bundle(&self, hash: &str) -> Result<BundleSources, StoreError> {
        self.inner.bundle(hash)
    }

    fn has_bundle(&self, hash: &str) -> Result<bool, StoreError> {
        self.inner.has_bundle(hash)
    }

    fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.inner.create(record)
    }

    fn load(&self, tenant: &str, session: &str) -> Result<StoredSession, StoreError> {
        self.inner.load(tenant, session)
    }

    fn sessions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.sessions()
    }

    fn put_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(c)
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints()
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.last_checkpoint()
    }
}
