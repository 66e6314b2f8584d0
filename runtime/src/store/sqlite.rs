//! The SQLite store (feature `sqlite`, bundled SQLite): the embedded default for durable runs.
//!
//! Every append is one `BEGIN IMMEDIATE` transaction that first checks the log's length, so two
//! processes on one file serialize and the loser gets [`StoreError::Conflict`]. A step is one row
//! of `steps` holding its intent and its events as a JSON array: rows are keyed by session, so
//! concurrent sessions' appends land on different B-tree pages, and every row written is a page
//! the commit writes to the WAL (one row per event as well made each append cost twice the pages).
//! Large payload fields (tool inputs and outputs, model outputs, memory values: anything over
//! [`INLINE_LIMIT`] bytes of JSON) are stored once per tenant in `tenant_blobs` by SHA-256. Which
//! fields were moved out is recorded beside the events (the step row's `deflated` column), never
//! inside them, so data cannot imitate a reference; the hash chain covers the inflated event, so
//! a tampered blob is caught like a tampered row. (Rows written before schema version 5 marked a
//! moved field in the event itself as `{"$blob": "<hash>"}`, stored in `blobs`; they are read as
//! they were written.)
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] upgrades a file from any
//! earlier version in order, each in its own transaction.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::{
    Checkpoint, SessionLog, SessionRecord, SessionStore, Step, StoreError, StoredSession,
    TenantMemory,
};
use kernel::BundleSources;
use kernel::event::{Event, sha256_hex};

/// Payload fields whose JSON is longer than this go to `blobs`.
pub const INLINE_LIMIT: usize = 256;

/// Schema versions, in order: version `i + 1` is reached by running `MIGRATIONS[i]`.
pub const MIGRATIONS: [&str; 6] = [
    // 1: sessions, their steps and events, bundles by hash.
    "CREATE TABLE bundles (hash TEXT PRIMARY KEY, sources TEXT NOT NULL);
     CREATE TABLE sessions (tenant TEXT NOT NULL, id TEXT NOT NULL, record TEXT NOT NULL,
                            PRIMARY KEY (tenant, id));
     CREATE TABLE steps (tenant TEXT NOT NULL, session TEXT NOT NULL, n INTEGER NOT NULL,
                         t_ms INTEGER NOT NULL, intent TEXT NOT NULL,
                         PRIMARY KEY (tenant, session, n));
     CREATE TABLE events (tenant TEXT NOT NULL, session TEXT NOT NULL, seq INTEGER NOT NULL,
                          event TEXT NOT NULL, PRIMARY KEY (tenant, session, seq));",
    // 2: large payloads stored once by content hash.
    "CREATE TABLE blobs (hash TEXT PRIMARY KEY, body TEXT NOT NULL);",
    // 3: memory scopes, keyed by tenant first.
    "CREATE TABLE memory (tenant TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,
                          value TEXT NOT NULL, labels TEXT NOT NULL,
                          PRIMARY KEY (tenant, scope, key));",
    // 4: a step's events live in its own row, as one JSON array, with the log's length after it
    // (`end_seq`): an append writes one row instead of one per event plus the step. Steps written
    // before keep NULL in both columns and their events stay rows of `events`.
    "ALTER TABLE steps ADD COLUMN end_seq INTEGER;
     ALTER TABLE steps ADD COLUMN events TEXT;",
    // 5: which payload fields a step's events moved out is kept beside them (`deflated`: per
    // event, its [field, hash] pairs), and moved payloads are kept per tenant.
    "ALTER TABLE steps ADD COLUMN deflated TEXT;
     CREATE TABLE tenant_blobs (tenant TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL,
                                PRIMARY KEY (tenant, hash));",
    // 6: signed checkpoints, the store's manifest (`store::checkpoint`), one JSON body per row.
    "CREATE TABLE checkpoints (n INTEGER PRIMARY KEY, body TEXT NOT NULL);",
];

/// A SQLite file holding sessions.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::from_connection(conn, MIGRATIONS.len())
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::from_connection(
            Connection::open_in_memory().map_err(backend)?,
            MIGRATIONS.len(),
        )
    }

    /// Opens `path` migrated only up to `version` (tests of migrations start from old versions).
    pub fn open_at_version(path: &Path, version: usize) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::from_connection(conn, version)
    }

    fn from_connection(mut conn: Connection, target: usize) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(backend)?;
        // Without the query planner stability guarantee, the bundled SQLite (built with STAT4)
        // marks the cached length-check statements expired whenever their parameters are bound,
        // so every append parsed and planned them again: a quarter of the group-commit writer's
        // time. Every query here is a primary-key lookup, so a fixed plan loses nothing.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        migrate(&mut conn, target)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Sets how many WAL pages trigger a checkpoint (SQLite's default is 1,000). Many sessions
    /// appending at once rewrite the same leaf pages again and again, and a checkpoint copies and
    /// syncs each page once however often it was rewritten, so [`super::GroupCommit`] raises it;
    /// a lone writer is better off with the default, which keeps reusing a small WAL file instead
    /// of growing it (growing costs every commit's sync a metadata write).
    pub fn checkpoint_every(&self, pages: u32) -> Result<(), StoreError> {
        self.with(|c| {
            c.pragma_update(None, "wal_autocheckpoint", pages)
                .map_err(backend)
        })
    }

    /// The schema version of the open file.
    pub fn version(&self) -> Result<usize, StoreError> {
        self.with(|c| version(c))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| backend("a writer panicked holding the connection"))?;
        f(&mut conn)
    }
}

fn version(c: &Connection) -> Result<usize, StoreError> {
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    usize::try_from(v).map_err(backend)
}

/// Runs the migrations between the file's version and `target`.
fn migrate(conn: &mut Connection, target: usize) -> Result<(), StoreError> {
    let from = version(conn)?;
    if from > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the file is at schema version {from}, newer than this build's {}",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(from) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The event's JSON with large payload fields moved out (left `null`), which fields those were
/// with their hashes, and the blobs to store.
fn deflate(event: &Event) -> Result<(String, Moved, Blobs), StoreError> {
    // Most events carry no large field, and no payload field is longer than the whole body: when
    // the body is short, the event is written directly, without building a `Value` to edit.
    let mut body = Count(0);
    serde_json::to_writer(&mut body, &event.body)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if body.0 <= INLINE_LIMIT {
        return Ok((to_json(event)?, Vec::new(), Vec::new()));
    }
    let mut value = serde_json::to_value(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (mut moved, mut blobs) = (Vec::new(), Vec::new());
    if let Some(Value::Object(payload)) = value.get_mut("payload") {
        for (name, field) in payload.iter_mut() {
            let text = field.to_string();
            if text.len() > INLINE_LIMIT {
                let hash = sha256_hex(text.as_bytes());
                *field = Value::Null;
                moved.push((name.clone(), hash.clone()));
                blobs.push((hash, text));
            }
        }
    }
    Ok((value.to_string(), moved, blobs))
}

/// Counts the bytes written to it.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Puts the fields a row written before schema version 5 marked `{"$blob": ...}` back, from
/// `blobs`.
fn inflate_legacy(c: &Connection, mut value: Value, at: &str) -> Result<Event, StoreError> {
    if let Some(Value::Object(payload)) = value.get_mut("payload") {
        for field in payload.values_mut() {
            let Some(hash) = field
                .get("$blob")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let body: Option<String> = c
                .query_row("SELECT body FROM blobs WHERE hash = ?1", [&hash], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(backend)?;
            let body =
                body.ok_or_else(|| StoreError::Corrupt(format!("{at}: blob {hash} is missing")))?;
            *field = from_json(&body, &format!("{at}: blob {hash}"))?;
        }
    }
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("{at}: {e}")))
}

/// Puts the fields a step row moved out back, from the tenant's blobs: only the fields its
/// `deflated` column names, whatever the data looks like.
fn inflate(
    c: &Connection,
    tenant: &str,
    mut value: Value,
    moved: &[(String, String)],
    at: &str,
) -> Result<Event, StoreError> {
    for (name, hash) in moved {
        let body: Option<String> = c
            .prepare_cached("SELECT body FROM tenant_blobs WHERE tenant = ?1 AND hash = ?2")
            .and_then(|mut st| st.query_row(params![tenant, hash], |r| r.get(0)).optional())
            .map_err(backend)?;
        let body =
            body.ok_or_else(|| StoreError::Corrupt(format!("{at}: blob {hash} is missing")))?;
        let field = value
            .get_mut("payload")
            .and_then(|p| p.get_mut(name.as_str()))
            .ok_or_else(|| StoreError::Corrupt(format!("{at}: no payload field `{name}`")))?;
        *field = from_json(&body, &format!("{at}: blob {hash}"))?;
    }
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("{at}: {e}")))
}

/// One write the group-commit writer can batch with others: a session created or a step appended.
pub(crate) enum Write {
    Create(NewSession),
    Append(Row),
}

impl Write {
    fn apply(&self, c: &Connection) -> Result<(), StoreError> {
        match self {
            Write::Create(new) => new.write(c),
            Write::Append(row) => row.write(c),
        }
    }
}

/// A session's header ready to insert.
pub(crate) struct NewSession {
    tenant: String,
    id: String,
    record: String,
}

impl NewSession {
    pub(crate) fn new(record: &SessionRecord) -> Result<Self, StoreError> {
        Ok(Self {
            tenant: record.config.tenant.clone(),
            id: record.config.id.clone(),
            record: to_json(record)?,
        })
    }

    /// Inserts the header; [`StoreError::Exists`] when the id is taken for the tenant.
    fn write(&self, c: &Connection) -> Result<(), StoreError> {
        let inserted = c
            .prepare_cached(
                "INSERT OR IGNORE INTO sessions (tenant, id, record) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute(params![self.tenant, self.id, self.record]))
            .map_err(backend)?;
        if inserted == 0 {
            return Err(StoreError::Exists {
                tenant: self.tenant.clone(),
                session: self.id.clone(),
            });
        }
        Ok(())
    }
}

/// One step ready to write: its intent and its events already serialized (outside the lock, and
/// with group commit on the appending thread, not the writer's).
pub(crate) struct Row {
    tenant: String,
    session: String,
    n: u64,
    t_ms: u64,
    intent: String,
    /// The seq of the step's first and last events, when it has any.
    seqs: Option<(u64, u64)>,
    /// The step's events, deflated, as one JSON array.
    events: String,
    /// Per event, the fields moved out of it and their hashes (`[]` when none was).
    deflated: String,
    blobs: Blobs,
}

/// Payload fields moved out of an event: (SHA-256, JSON text).
type Blobs = Vec<(String, String)>;

/// Which payload fields of one event were moved out: (field, SHA-256).
type Moved = Vec<(String, String)>;

impl Row {
    pub(crate) fn new(
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<Self, StoreError> {
        let mut text = String::from("[");
        let (mut blobs, mut deflated) = (Vec::new(), Vec::new());
        for (i, event) in events.iter().enumerate() {
            let (one, moved, out) = deflate(event)?;
            if i > 0 {
                text.push(',');
            }
            text.push_str(&one);
            deflated.push(moved);
            blobs.extend(out);
        }
        text.push(']');
        // Most steps move nothing: an empty list says so for all their events.
        if deflated.iter().all(Vec::is_empty) {
            deflated.clear();
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            session: session.to_owned(),
            n: step.n,
            t_ms: step.t_ms,
            intent: to_json(&step.intent)?,
            seqs: events
                .first()
                .zip(events.last())
                .map(|(a, z)| (a.seq, z.seq)),
            events: text,
            deflated: to_json(&deflated)?,
            blobs,
        })
    }

    /// Checks the log's length and writes, inside the caller's transaction or savepoint. The
    /// length is read from the session's last step row (found through the primary key), so an
    /// append costs the same at any length.
    fn write(&self, c: &Connection) -> Result<(), StoreError> {
        let (tenant, session) = (self.tenant.as_str(), self.session.as_str());
        // Statements are prepared once per connection and reused (rusqlite's statement cache):
        // parsing the SQL again for every row cost more than the insert.
        let last: Option<(Option<i64>, Option<i64>)> = c
            .prepare_cached(
                "SELECT last.n, last.end_seq FROM sessions
                 LEFT JOIN (SELECT n, end_seq FROM steps WHERE tenant = ?1 AND session = ?2
                            ORDER BY n DESC LIMIT 1) AS last
                 WHERE tenant = ?1 AND id = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![tenant, session], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(backend)?;
        let (found, next_seq) = match last {
            None => return Err(StoreError::NotFound(format!("session {tenant}/{session}"))),
            Some((None, _)) => (0, 0),
            Some((Some(n), Some(end))) => (n + 1, end),
            // The last step was written before schema version 4: its events are rows of `events`.
            Some((Some(n), None)) => (n + 1, legacy_log_length(c, tenant, session)?),
        };
        let found = u64::try_from(found).map_err(backend)?;
        let next_seq = u64::try_from(next_seq).map_err(backend)?;
        if self.n != found || self.seqs.is_some_and(|(first, _)| first != next_seq) {
            return Err(StoreError::Conflict {
                tenant: tenant.to_owned(),
                session: session.to_owned(),
                expected: self.n,
                found,
            });
        }
        let end_seq = self.seqs.map_or(next_seq, |(_, last)| last + 1);
        for (hash, body) in &self.blobs {
            c.prepare_cached(
                "INSERT OR IGNORE INTO tenant_blobs (tenant, hash, body) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute(params![tenant, hash, body]))
            .map_err(backend)?;
        }
        c.prepare_cached(
            "INSERT INTO steps (tenant, session, n, t_ms, intent, end_seq, events, deflated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut st| {
            st.execute(params![
                tenant,
                session,
                self.n as i64,
                self.t_ms as i64,
                self.intent,
                end_seq as i64,
                self.events,
                self.deflated
            ])
        })
        .map_err(backend)?;
        Ok(())
    }
}

/// The log's length counted in the `events` table, where steps kept their events before schema
/// version 4.
fn legacy_log_length(c: &Connection, tenant: &str, session: &str) -> Result<i64, StoreError> {
    c.prepare_cached(
        "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE tenant = ?1 AND session = ?2",
    )
    .and_then(|mut st| st.query_row(params![tenant, session], |r| r.get(0)))
    .map_err(backend)
}

impl SqliteStore {
    /// Writes many session headers and steps (of any sessions) in one transaction — one fsync for
    /// all — each under its own savepoint, so one refused write (a conflict, a taken id) does not
    /// undo the others.
    pub(crate) fn write_group(&self, writes: &[Write]) -> Vec<Result<(), StoreError>> {
        // Optimistically, every write in one transaction with no savepoints: a group where every
        // append is in order (the usual case) pays for nothing else.
        let all = self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            for write in writes {
                write.apply(&tx)?;
            }
            tx.commit().map_err(backend)
        });
        if all.is_ok() {
            return writes.iter().map(|_| Ok(())).collect();
        }
        // Something failed and the transaction rolled back: again, one savepoint per write, so each
        // write gets its own answer.
        let done = self.with(|c| {
            let mut tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                let result = match tx.savepoint() {
                    Ok(sp) => match write.apply(&sp) {
                        Ok(()) => sp.commit().map_err(backend),
                        Err(e) => Err(e), // dropping the savepoint rolls it back
                    },
                    Err(e) => Err(backend(e)),
                };
                results.push(result);
            }
            tx.commit().map_err(backend)?;
            Ok(results)
        });
        match done {
            Ok(results) => results,
            Err(e) => writes.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

impl SessionLog for SqliteStore {
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
        let row = Row::new(tenant, session, step, events)?;
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            row.write(&tx)?;
            tx.commit().map_err(backend)
        })
    }
}

/// Writes checkpoint `c` in `tx`; [`StoreError::CheckpointConflict`] unless it is the next one.
fn write_checkpoint(tx: &rusqlite::Transaction<'_>, c: &Checkpoint) -> Result<(), StoreError> {
    let body = to_json(c)?;
    let found: i64 = tx
        .query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))
        .map_err(backend)?;
    super::check_next(c, u64::try_from(found).map_err(backend)?)?;
    let n = i64::try_from(c.n).map_err(backend)?;
    tx.execute(
        "INSERT INTO checkpoints (n, body) VALUES (?1, ?2)",
        params![n, body],
    )
    .map_err(backend)?;
    Ok(())
}

impl TenantMemory for SqliteStore {
    fn memory_get(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<(Value, Vec<String>)>, StoreError> {
        self.with(|c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT value, labels FROM memory WHERE tenant = ?1 AND scope = ?2 AND key = ?3",
                    params![tenant, scope, key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            let at = format!("memory {tenant}/{scope}/{key}");
            row.map(|(v, l)| Ok((from_json(&v, &at)?, from_json(&l, &at)?)))
                .transpose()
        })
    }

    fn memory_put(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        value: &Value,
        labels: &[String],
    ) -> Result<(), StoreError> {
        let (value, labels) = (to_json(value)?, to_json(&labels)?);
        self.with(|c| {
            c.execute(
                "INSERT INTO memory (tenant, scope, key, value, labels) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, scope, key) DO UPDATE SET value = ?4, labels = ?5",
                params![tenant, scope, key, value, labels],
            )
            .map_err(backend)?;
            Ok(())
        })
    }
}

impl SessionStore for SqliteStore {
    fn put_bundle(&self, sources: &BundleSources) -> Result<String, StoreError> {
        let hash = sources.hash()?;
        let text = to_json(sources)?;
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO bundles (hash, sources) VALUES (?1, ?2)",
                params![hash, text],
            )
            .map_err(backend)?;
            Ok(hash)
        })
    }

    fn has_bundle(&self, hash: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM bundles WHERE hash = ?1")
                .and_then(|mut st| st.exists([hash]))
                .map_err(backend)
        })
    }

    fn bundle(&self, hash: &str) -> Result<BundleSources, StoreError> {
        self.with(|c| {
            let text: Option<String> = c
                .query_row("SELECT sources FROM bundles WHERE hash = ?1", [hash], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(backend)?;
            let text = text.ok_or_else(|| StoreError::NotFound(format!("bundle {hash}")))?;
            from_json(&text, &format!("bundle {hash}"))
        })
    }

    fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let new = NewSession::new(record)?;
        self.with(|c| new.write(c))
    }

    fn load(&self, tenant: &str, session: &str) -> Result<StoredSession, StoreError> {
        self.with(|c| {
            let record: Option<String> = c
                .query_row(
                    "SELECT record FROM sessions WHERE tenant = ?1 AND id = ?2",
                    params![tenant, session],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let record = record
                .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))?;
            let record: SessionRecord = from_json(&record, &format!("session {tenant}/{session}"))?;

            // Events of steps written before schema version 4 come first: those steps do.
            let mut q = c
                .prepare(
                    "SELECT seq, event FROM events WHERE tenant = ?1 AND session = ?2 ORDER BY seq",
                )
                .map_err(backend)?;
            let raw: Vec<(i64, String)> = q
                .query_map(params![tenant, session], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            let mut events = Vec::with_capacity(raw.len());
            for (seq, text) in raw {
                let at = format!("session {tenant}/{session} row seq {seq}");
                events.push(inflate_legacy(c, from_json(&text, &at)?, &at)?);
            }

            let mut q = c
                .prepare(
                    "SELECT n, t_ms, intent, events, deflated FROM steps
                     WHERE tenant = ?1 AND session = ?2 ORDER BY n",
                )
                .map_err(backend)?;
            type Raw = (i64, i64, String, Option<String>, Option<String>);
            let raw: Vec<Raw> = q
                .query_map(params![tenant, session], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            let mut steps = Vec::with_capacity(raw.len());
            for (n, t_ms, intent, step_events, deflated) in raw {
                let at = format!("session {tenant}/{session} step {n}");
                steps.push(Step {
                    n: u64::try_from(n).map_err(backend)?,
                    t_ms: u64::try_from(t_ms).map_err(backend)?,
                    intent: from_json(&intent, &at)?,
                });
                let Some(text) = step_events else { continue };
                let values: Vec<Value> = from_json(&text, &at)?;
                // Rows from before schema version 5 have no `deflated` column value.
                let moved: Option<Vec<Moved>> = deflated.map(|d| from_json(&d, &at)).transpose()?;
                for (i, value) in values.into_iter().enumerate() {
                    let at = format!("{at} event {i}");
                    events.push(match &moved {
                        Some(moved) => {
                            let none = Vec::new();
                            inflate(c, tenant, value, moved.get(i).unwrap_or(&none), &at)?
                        }
                        None => inflate_legacy(c, value, &at)?,
                    });
                }
            }
            Ok(StoredSession {
                record,
                steps,
                events,
            })
        })
    }

    fn sessions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut q = c
                .prepare("SELECT tenant, id FROM sessions ORDER BY tenant, id")
                .map_err(backend)?;
            let rows = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn put_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            write_checkpoint(&tx, c)?;
            tx.commit().map_err(backend)
        })
    }

    fn append_signed(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let row = Row::new(tenant, session, step, events)?;
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            row.write(&tx)?;
            write_checkpoint(&tx, checkpoint)?;
            tx.commit().map_err(backend)
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with(|c| {
            let mut q = c
                .prepare("SELECT n, body FROM checkpoints ORDER BY n")
                .map_err(backend)?;
            let rows: Vec<(i64, String)> = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            rows.iter()
                .map(|(n, body)| from_json(body, &format!("checkpoint row {n}")))
                .collect()
        })
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.with(|c| {
            let row: Option<(i64, String)> = c
                .query_row(
                    "SELECT n, body FROM checkpoints ORDER BY n DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(n, body)| from_json(&body, &format!("checkpoint row {n}")))
                .transpose()
        })
    }
}
