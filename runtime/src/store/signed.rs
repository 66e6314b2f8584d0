//! A store that signs: wraps any [`SessionStore`] and writes a signed checkpoint of a session's
//! chain head when the session ends and at least every [`CHECKPOINT_EVERY`] events before that.
//!
//! The checkpoint is written after the append it covers is durable (the events come first), so a
//! crash between the two leaves a session whose last events are unsigned, never a signature over
//! events that are not there. A failed checkpoint write is returned as the append's error: the
//! events are kept, and the driver stops the session rather than go on unsigned.

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

    /// Signs `head` as the store's next checkpoint. Another process signing into the same store
    /// makes the write conflict; the signer then re-reads where the sequence is and tries again.
    fn seal(&self, state: &mut State, head: Head) -> Result<Checkpoint, StoreError> {
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
            match self.inner.put_checkpoint(&c) {
                Ok(()) => {
                    state.last = Some((c.n, c.hash()));
                    return Ok(c);
                }
                Err(StoreError::CheckpointConflict { .. }) if attempts < 8 => {
                    attempts += 1;
                    state.last = None;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S: SessionStore> SessionLog for Signed<S> {
    fn begin(
        &self,
        deployment: &kernel::Deployment,
        config: &kernel::SessionConfig,
        started_wall_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.begin(deployment, config, started_wall_ms)
    }

    fn append(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.inner.append(tenant, session, step, events)?;
        let Some(last) = events.last() else {
            return Ok(());
        };
        let closed = last.body.ends_session();
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError::Backend("a signer panicked holding the lock".into()))?;
        let key = (tenant.to_owned(), session.to_owned());
        let unsigned = state.unsigned.get(&key).copied().unwrap_or(0) + events.len() as u64;
        if !closed && unsigned < self.every {
            state.unsigned.insert(key, unsigned);
            return Ok(());
        }
        state.unsigned.remove(&key);
        let head = Head {
            tenant: key.0,
            session: key.1,
            events: last.seq + 1,
            head: last.hash.clone(),
            closed,
        };
        self.seal(&mut state, head).map(|_| ())
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
