//! Durable session state: what a store keeps so a session can be audited, re-checked and resumed.
//!
//! A session's durable record is its configuration, the bundle it runs under (kept once by content
//! hash), and its **steps**: every intent applied, with its logical time, written together with
//! the events it produced *before* the driver performs any effect (write-ahead). Because the kernel
//! is deterministic, replaying the steps against the bundle rebuilds the session exactly — its
//! state and, byte for byte, its events — which is how sessions resume and how `audit recheck`
//! re-evaluates every recorded decision.
//!
//! Appends are checked against the log's current length: a second writer of the same session gets
//! [`StoreError::Conflict`] and writes nothing (one writer per session).

pub mod checkpoint;
pub mod export;
mod group;
mod memory;
pub mod postgres;
mod signed;
pub mod sqlite;

pub use checkpoint::{Checkpoint, PublicKey, SigningKey};
pub use group::GroupCommit;
pub use memory::InMemoryStore;
pub use postgres::PostgresStore;
pub use signed::{CHECKPOINT_EVERY, Signed};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use kernel::Step;
use kernel::event::Event;
use kernel::{BundleSources, SessionConfig};

/// A session's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Who runs it.
    pub config: SessionConfig,
    /// [`BundleSources::hash`] of the bundle it runs under.
    pub bundle: String,
    /// Wall-clock start (ms since the Unix epoch), so logical time can go on after a restart.
    pub started_wall_ms: u64,
}

/// Everything stored for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// The header.
    pub record: SessionRecord,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// Every event, in order.
    pub events: Vec<Event>,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// Another writer got there first: the log was not where this writer expected it.
    #[error(
        "session {tenant}/{session}: another writer appended first (expected step {expected}, the log has {found})"
    )]
    Conflict {
        /// The tenant.
        tenant: String,
        /// The session.
        session: String,
        /// The step this writer was about to append.
        expected: u64,
        /// How many steps the log already has.
        found: u64,
    },
    /// The session already exists (creating it twice).
    #[error("session {tenant}/{session} already exists")]
    Exists {
        /// The tenant.
        tenant: String,
        /// The session.
        session: String,
    },
    /// Another signer got there first: the store's checkpoint sequence was not where this signer
    /// expected it.
    #[error("another signer wrote checkpoint {expected} first (the store has {found})")]
    CheckpointConflict {
        /// The checkpoint this signer was about to write.
        expected: u64,
        /// How many checkpoints the store already has.
        found: u64,
    },
    /// The writer's lease on the session is gone (expired, or taken over by another instance):
    /// the database refused its fencing token and wrote nothing.
    #[error("fenced off: {0}")]
    Fenced(String),
    /// No such session or bundle.
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored data does not decode.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A bundle has no canonical JSON, so it has no hash to be kept under.
    #[error("the bundle cannot be hashed: {0}")]
    Unhashable(#[from] kernel::event::HashError),
    /// The backend failed (I/O, locking, SQL).
    #[error("store backend: {0}")]
    Backend(String),
}

/// The write-ahead log a driver needs: create a session, append its steps. The whole contract a
/// recorder has to meet (a test double, a forwarder); [`SessionStore`] adds reading back.
pub trait SessionLog: Send + Sync {
    /// Whether a write may block the thread on I/O (a callee on an async executor then moves it
    /// off the executor); an in-memory store says no, so its writes cost no thread hand-off.
    fn blocks(&self) -> bool {
        true
    }
    /// Keeps `deployment`'s bundle and creates the session under it; [`StoreError::Exists`] when
    /// the id is taken for the tenant.
    fn begin(
        &self,
        deployment: &kernel::Deployment,
        config: &SessionConfig,
        started_wall_ms: u64,
    ) -> Result<(), StoreError>;
    /// Appends one step and its events atomically; [`StoreError::Conflict`] unless `step.n` is the
    /// log's length.
    fn append(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<(), StoreError>;
}

/// Durable memory entries with their labels. Keyed by tenant first: no call can reach another
/// tenant's scope, whatever scope name it passes.
pub trait TenantMemory: Send + Sync {
    /// A memory entry and its labels.
    fn memory_get(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Vec<String>)>, StoreError>;
    /// Writes a memory entry with its labels.
    fn memory_put(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        value: &serde_json::Value,
        labels: &[String],
    ) -> Result<(), StoreError>;
}

/// Where sessions are kept: the log, read back (resume, audit), bundles kept once by content hash,
/// and tenant memory.
pub trait SessionStore: SessionLog + TenantMemory {
    /// Keeps a bundle once; returns its hash.
    fn put_bundle(&self, sources: &BundleSources) -> Result<String, StoreError>;
    /// A bundle by hash.
    fn bundle(&self, hash: &str) -> Result<BundleSources, StoreError>;
    /// Whether a bundle is kept; stores answer without reading it back.
    fn has_bundle(&self, hash: &str) -> Result<bool, StoreError> {
        match self.bundle(hash) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Creates a session; [`StoreError::Exists`] when the id is taken for the tenant.
    fn create(&self, record: &SessionRecord) -> Result<(), StoreError>;
    /// One session, whole.
    fn load(&self, tenant: &str, session: &str) -> Result<StoredSession, StoreError>;
    /// Every (tenant, session id), sorted.
    fn sessions(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Appends a signed checkpoint; [`StoreError::CheckpointConflict`] unless `c.n` is the number
    /// of checkpoints kept.
    fn put_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError>;
    /// [`SessionLog::append`] and [`SessionStore::put_checkpoint`] of the head it produces, in one
    /// transaction where the store has them (SQLite, memory): a crash never leaves a session's
    /// end unsigned. On any conflict neither is written. The default writes one after the other.
    fn append_signed(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.append(tenant, session, step, events)?;
        self.put_checkpoint(checkpoint)
    }
    /// Every checkpoint, in order of `n`.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// The last checkpoint, if any.
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;
}

/// [`StoreError::CheckpointConflict`] unless `c` is the next of `found` checkpoints: what every
/// store checks before it keeps one.
pub(crate) fn check_next(c: &Checkpoint, found: u64) -> Result<(), StoreError> {
    if c.n == found {
        Ok(())
    } else {
        Err(StoreError::CheckpointConflict {
            expected: c.n,
            found,
        })
    }
}

/// [`SessionLog::begin`] for a store: keeps the bundle unless it is kept already, then creates
/// the session under it.
pub fn begin_session<S: SessionStore + ?Sized>(
    store: &S,
    deployment: &kernel::Deployment,
    config: &SessionConfig,
    started_wall_ms: u64,
) -> Result<(), StoreError> {
    let bundle = deployment.bundle_hash()?;
    if !store.has_bundle(bundle)? {
        store.put_bundle(deployment.sources())?;
    }
    store.create(&SessionRecord {
        config: config.clone(),
        bundle: bundle.to_owned(),
        started_wall_ms,
    })
}
