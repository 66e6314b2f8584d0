//! The store on PostgreSQL (`--store postgres://...`), for several `arbiter serve` instances on one
//! database. Same contract as the SQLite store: a step and its events are appended in one
//! transaction, and only as the session's next step — the database refuses any other (the
//! session's row is locked for the check, and `(tenant, session, n)` is a primary key), so two
//! writers can never both extend a log. Events are kept as their JSON text, not `jsonb`, so they
//! read back byte for byte and their hash chain verifies.
//!
//! Beyond the other stores: session **leases** with fencing tokens checked by a trigger in the
//! database ([`lease`]), and a **notification** on every append (`LISTEN arbiter_appended`,
//! [`listen`]) so an instance can follow sessions another one drives. Connections live on worker
//! threads (`pool`) that also group concurrent appends into one commit.

mod controls;
pub mod lease;
pub mod listen;
mod pool;
mod prepared;
pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kernel::BundleSources;
use kernel::event::Event;
use postgres::Transaction;

use super::{
    Checkpoint, SessionLog, SessionRecord, SessionStore, Step, StoreError, StoredSession,
    TenantMemory,
};

/// Connections per store (each on its own thread).
const CONNECTIONS: usize = 4;

/// The channel every append notifies, with `tenant`, `session` and the session's event count
/// after the append, separated by U+001F.
pub const CHANNEL: &str = "arbiter_appended";

/// The channel a control sent for a hosted run notifies, with `tenant` and `session` separated
/// by U+001F.
pub const CONTROLS: &str = "arbiter_controls";

/// A session store in a PostgreSQL database. Cheap to clone: clones share connections and leases.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    pool: pool::Pool,
    /// The fencing token of every lease this store holds, by (tenant, session): appends of those
    /// sessions carry it; the database refuses them once another holder has the lease.
    fences: Mutex<Fences>,
    /// Connections of their own for leases, opened on first use: taking, giving back and
    /// renewing leases must not queue behind a burst of appends (or leases lapse under load), and
    /// they commit without waiting for the disk (`synchronous_commit = off`) — safe, because a
    /// step written under a lease is a synchronous commit, which makes every earlier commit
    /// durable with it; a lease change lost in a database crash only delays the next taker.
    leases: std::sync::OnceLock<pool::Pool>,
}

/// Fencing tokens by (tenant, session).
type Fences = HashMap<(String, String), i64>;

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A PostgreSQL error as a store error: a refused fencing token is [`StoreError::Fenced`]; others
/// keep the server's message (the client's own display says only "db error").
pub(crate) fn pg_error(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code() == "AR001" => StoreError::Fenced(db.message().to_owned()),
        Some(db) => StoreError::Backend(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Backend(e.to_string()),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(corrupt)
}

fn count(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{n} is past PostgreSQL's BIGINT")))
}

fn natural(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(corrupt)
}

/// One append, ready to write: a step, its events, the fencing token of the lease it is written
/// under (if any) and, for a signing store, the checkpoint of the head it produces.
pub(super) struct Append {
    tenant: String,
    session: String,
    n: u64,
    step: String,
    events: Vec<(u64, String)>,
    fence: Option<i64>,
    checkpoint: Option<Checkpoint>,
}

impl Append {
    /// Writes inside an open transaction: the session row locked, the step checked to be next,
    /// the fencing token checked by the database's trigger, then the notification (delivered at
    /// commit, never for a rolled-back append).
    fn write(&self, tx: &mut Transaction<'_>) -> Result<(), StoreError> {
        use prepared::prepared;
        let (tenant, session) = (&self.tenant, &self.session);
        let first_seq = self
            .events
            .first()
            .map(|(seq, _)| count(*seq))
            .transpose()?;
        // The session's row, locked and moved on only if the log is where this writer expects.
        let moved = prepared(
            tx,
            "UPDATE arbiter_sessions SET steps = steps + 1, events = events + $5
             WHERE tenant = $1 AND id = $2 AND steps = $3 AND ($4::bigint IS NULL OR events = $4)
             RETURNING events",
        )?;
        let added = count(self.events.len() as u64)?;
        let row = tx
            .query_opt(
                &moved,
                &[tenant, session, &count(self.n)?, &first_seq, &added],
            )
            .map_err(pg_error)?;
        let Some(row) = row else {
            let found = tx
                .query_opt(
                    "SELECT steps FROM arbiter_sessions WHERE tenant = $1 AND id = $2",
                    &[tenant, session],
                )
                .map_err(pg_error)?
                .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))?;
            return Err(StoreError::Conflict {
                tenant: tenant.clone(),
                session: session.clone(),
                expected: self.n,
                found: natural(found.get(0))?,
            });
        };
        let total: i64 = row.get(0);
        let step = prepared(
            tx,
            "INSERT INTO arbiter_steps (tenant, session, n, step, fence) VALUES ($1, $2, $3, $4, $5)",
        )?;
        tx.execute(
            &step,
            &[tenant, session, &count(self.n)?, &self.step, &self.fence],
        )
        .map_err(pg_error)?;
        let seqs = self
            .events
            .iter()
            .map(|(seq, _)| count(*seq))
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<&str> = self.events.iter().map(|(_, t)| t.as_str()).collect();
        let events = prepared(
            tx,
            "INSERT INTO arbiter_events (tenant, session, seq, event)
             SELECT $1, $2, s, e FROM unnest($3::bigint[], $4::text[]) AS u(s, e)",
        )?;
        tx.execute(&events, &[tenant, session, &seqs, &texts])
            .map_err(pg_error)?;
        if let Some(c) = &self.checkpoint {
            checkpoint_in(tx, c)?;
        }
        let payload = format!("{tenant}\u{1f}{session}\u{1f}{total}");
        let notify = prepared(tx, "SELECT pg_notify($1, $2)")?;
        tx.execute(&notify, &[&CHANNEL, &payload])
            .map_err(pg_error)?;
        Ok(())
    }
}

fn checkpoint_in(tx: &mut Transaction<'_>, c: &Checkpoint) -> Result<(), StoreError> {
    // Serialize signers: the table is locked for the count and the insert.
    tx.batch_execute("LOCK TABLE arbiter_checkpoints IN EXCLUSIVE MODE")
        .map_err(pg_error)?;
    let found: i64 = tx
        .query_one("SELECT count(*) FROM arbiter_checkpoints", &[])
        .map_err(pg_error)?
        .get(0);
    super::check_next(c, natural(found)?)?;
    tx.execute(
        "INSERT INTO arbiter_checkpoints (n, checkpoint) VALUES ($1, $2)",
        &[&count(c.n)?, &json(c)?],
    )
    .map_err(pg_error)?;
    Ok(())
}

impl PostgresStore {
    /// Connects (`postgres://user@host:port/db`, or key=value pairs) and brings the tables to
    /// [`schema::VERSION`].
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let pool = pool::Pool::connect(url, CONNECTIONS)?;
        pool.with(schema::migrate)?;
        Ok(Self {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                pool,
                fences: Mutex::new(HashMap::new()),
                leases: std::sync::OnceLock::new(),
            }),
        })
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.shared.pool.with(f)
    }

    fn fence(&self, tenant: &str, session: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .fences()?
            .get(&(tenant.to_owned(), session.to_owned()))
            .copied())
    }

    fn fences(&self) -> Result<std::sync::MutexGuard<'_, Fences>, StoreError> {
        self.shared
            .fences
            .lock()
            .map_err(|_| StoreError::Backend("the lease table is poisoned".into()))
    }

    fn append_job(
        &self,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let append = Append {
            tenant: tenant.to_owned(),
            session: session.to_owned(),
            n: step.n,
            step: json(step)?,
            events: events
                .iter()
                .map(|e| Ok((e.seq, json(e)?)))
                .collect::<Result<_, StoreError>>()?,
            fence: self.fence(tenant, session)?,
            checkpoint: checkpoint.cloned(),
        };
        self.shared.pool.append(append)
    }

    /// The steps from `steps_from` and the events from `events_from` of a session, read in one
    /// snapshot: how a follower catches up with what another instance appended.
    pub fn load_after(
        &self,
        tenant: &str,
        session: &str,
        steps_from: u64,
        events_from: u64,
    ) -> Result<(Vec<Step>, Vec<Event>), StoreError> {
        let (tenant, session) = (tenant.to_owned(), session.to_owned());
        let (steps_from, events_from) = (count(steps_from)?, count(events_from)?);
        self.with(move |c| {
            read_log(c, &tenant, &session, false, (steps_from, events_from))
                .map(|(_, steps, events)| (steps, events))
        })
    }
}

/// A session's record text (when asked for), steps and events.
type LogRead = (Option<String>, Vec<Step>, Vec<Event>);

/// The record (when `with_record`), the steps from `from.0` and the events from `from.1` of a
/// session, read in one snapshot.
fn read_log(
    c: &mut postgres::Client,
    tenant: &str,
    session: &str,
    with_record: bool,
    from: (i64, i64),
) -> Result<LogRead, StoreError> {
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_error)?;
    let record = if with_record {
        Some(
            tx.query_opt(
                "SELECT record FROM arbiter_sessions WHERE tenant = $1 AND id = $2",
                &[&tenant, &session],
            )
            .map_err(pg_error)?
            .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))?
            .get(0),
        )
    } else {
        None
    };
    let steps = rows_of::<Step>(
        &mut tx,
        "SELECT step FROM arbiter_steps WHERE tenant = $1 AND session = $2 AND n >= $3 ORDER BY n",
        tenant,
        session,
        from.0,
    )?;
    let events = rows_of::<Event>(
        &mut tx,
        "SELECT event FROM arbiter_events WHERE tenant = $1 AND session = $2 AND seq >= $3 ORDER BY seq",
        tenant,
        session,
        from.1,
    )?;
    tx.commit().map_err(pg_error)?;
    Ok((record, steps, events))
}

/// Decodes the JSON text of `sql`'s single column, for (tenant, session, from).
fn rows_of<T: serde::de::DeserializeOwned>(
    tx: &mut Transaction<'_>,
    sql: &str,
    tenant: &str,
    session: &str,
    from: i64,
) -> Result<Vec<T>, StoreError> {
    tx.query(sql, &[&tenant, &session, &from])
        .map_err(pg_error)?
        .iter()
        .map(|r| serde_json::from_str::<T>(&r.get::<_, String>(0)).map_err(corrupt))
        .collect()
}

impl SessionLog for PostgresStore {
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
        self.append_job(tenant, session, step, events, None)
    }
}

impl TenantMemory for PostgresStore {
    fn memory_get(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Vec<String>)>, StoreError> {
        let (tenant, scope, key) = (tenant.to_owned(), scope.to_owned(), key.to_owned());
        self.with(move |c| {
            let row = c
                .query_opt(
                    "SELECT value, labels FROM arbiter_memory WHERE tenant = $1 AND scope = $2 AND key = $3",
                    &[&tenant, &scope, &key],
                )
                .map_err(pg_error)?;
            row.map(|r| {
                let (value, labels): (String, String) = (r.get(0), r.get(1));
                Ok((
                    serde_json::from_str(&value).map_err(corrupt)?,
                    serde_json::from_str(&labels).map_err(corrupt)?,
                ))
            })
            .transpose()
        })
    }

    fn memory_put(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        value: &serde_json::Value,
        labels: &[String],
    ) -> Result<(), StoreError> {
        let (value, labels) = (json(value)?, json(&labels)?);
        let (tenant, scope, key) = (tenant.to_owned(), scope.to_owned(), key.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO arbiter_memory (tenant, scope, key, value, labels) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, scope, key) DO UPDATE SET value = EXCLUDED.value, labels = EXCLUDED.labels",
                &[&tenant, &scope, &key, &value, &labels],
            )
            .map_err(pg_error)?;
            Ok(())
        })
    }
}

impl SessionStore for PostgresStore {
    fn put_bundle(&self, sources: &BundleSources) -> Result<String, StoreError> {
        let hash = sources.hash()?;
        let text = json(sources)?;
        let key = hash.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO arbiter_bundles (hash, sources) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                &[&key, &text],
            )
            .map_err(pg_error)?;
            Ok(())
        })?;
        Ok(hash)
    }

    fn has_bundle(&self, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.with(move |c| {
            Ok(
                c.query_opt("SELECT 1 FROM arbiter_bundles WHERE hash = $1", &[&hash])
                    .map_err(pg_error)?
                    .is_some(),
            )
        })
    }

    fn bundle(&self, hash: &str) -> Result<BundleSources, StoreError> {
        let hash = hash.to_owned();
        self.with(move |c| {
            let row = c
                .query_opt(
                    "SELECT sources FROM arbiter_bundles WHERE hash = $1",
                    &[&hash],
                )
                .map_err(pg_error)?
                .ok_or_else(|| StoreError::NotFound(format!("bundle {hash}")))?;
            let text: String = row.get(0);
            serde_json::from_str(&text).map_err(corrupt)
        })
    }

    fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let (tenant, id) = (record.config.tenant.clone(), record.config.id.clone());
        let text = json(record)?;
        self.with(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO arbiter_sessions (tenant, id, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&tenant, &id, &text],
                )
                .map_err(pg_error)?;
            if inserted == 0 {
                return Err(StoreError::Exists {
                    tenant,
                    session: id,
                });
            }
            Ok(())
        })
    }

    fn load(&self, tenant: &str, session: &str) -> Result<StoredSession, StoreError> {
        let (tenant, session) = (tenant.to_owned(), session.to_owned());
        self.with(move |c| {
            let (record, steps, events) = read_log(c, &tenant, &session, true, (0, 0))?;
            Ok(StoredSession {
                record: serde_json::from_str(record.as_deref().unwrap_or_default())
                    .map_err(corrupt)?,
                steps,
                events,
            })
        })
    }

    fn sessions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT tenant, id FROM arbiter_sessions ORDER BY tenant, id",
                &[],
            )
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let cp = cp.clone();
        self.with(move |c| {
            let mut tx = c.transaction().map_err(pg_error)?;
            checkpoint_in(&mut tx, &cp)?;
            tx.commit().map_err(pg_error)
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
        self.append_job(tenant, session, step, events, Some(checkpoint))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with(|c| {
            c.query("SELECT checkpoint FROM arbiter_checkpoints ORDER BY n", &[])
                .map_err(pg_error)?
                .iter()
                .map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(corrupt))
                .collect()
        })
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.with(|c| {
            c.query_opt(
                "SELECT checkpoint FROM arbiter_checkpoints ORDER BY n DESC LIMIT 1",
                &[],
            )
            .map_err(pg_error)?
            .map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(corrupt))
            .transpose()
        })
    }
}
