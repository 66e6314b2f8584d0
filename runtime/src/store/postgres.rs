//! The store on PostgreSQL (`--store postgres://...`), for several `arbiter serve` instances on one
//! database. Same contract as the SQLite store: a step and its events are appended in one
//! transaction, and only as the session's next step — the database refuses any other (the
//! session's row is locked for the check, and `(tenant, session, n)` is a primary key), so two
//! writers can never both extend a log. Events are kept as their JSON text, not `jsonb`, so they
//! read back byte for byte and their hash chain verifies.
//!
//! Work in progress (issue 21): leases with fencing tokens, LISTEN/NOTIFY and the failover test
//! are not built yet; the store itself passes the conformance checks the other stores pass.

use std::sync::Mutex;

use kernel::BundleSources;
use kernel::event::Event;
use postgres::{Client, NoTls};

use super::{
    Checkpoint, SessionLog, SessionRecord, SessionStore, Step, StoreError, StoredSession,
    TenantMemory,
};

/// The schema, created on open when missing.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS arbiter_bundles (hash TEXT PRIMARY KEY, sources TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arbiter_sessions (
  tenant TEXT NOT NULL, id TEXT NOT NULL, record TEXT NOT NULL,
  steps BIGINT NOT NULL DEFAULT 0, events BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS arbiter_steps (
  tenant TEXT NOT NULL, session TEXT NOT NULL, n BIGINT NOT NULL, step TEXT NOT NULL,
  PRIMARY KEY (tenant, session, n));
CREATE TABLE IF NOT EXISTS arbiter_events (
  tenant TEXT NOT NULL, session TEXT NOT NULL, seq BIGINT NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY (tenant, session, seq));
CREATE TABLE IF NOT EXISTS arbiter_memory (
  tenant TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  labels TEXT NOT NULL, PRIMARY KEY (tenant, scope, key));
CREATE TABLE IF NOT EXISTS arbiter_checkpoints (n BIGINT PRIMARY KEY, checkpoint TEXT NOT NULL);
";

/// A session store in a PostgreSQL database.
pub struct PostgresStore {
    client: Mutex<Client>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
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

impl PostgresStore {
    /// Connects (`postgres://user@host:port/db`, or key=value pairs) and creates the tables.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(backend)?;
        client.batch_execute(SCHEMA).map_err(backend)?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self
            .client
            .lock()
            .map_err(|_| StoreError::Backend("a writer panicked holding the connection".into()))?;
        f(&mut client)
    }

    /// Appends inside an open transaction: the session row locked, the step checked to be next.
    fn append_in(
        tx: &mut postgres::Transaction<'_>,
        tenant: &str,
        session: &str,
        step: &Step,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let row = tx
            .query_opt(
                "SELECT steps, events FROM arbiter_sessions WHERE tenant = $1 AND id = $2 FOR UPDATE",
                &[&tenant, &session],
            )
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))?;
        let (steps, next_seq): (i64, i64) = (row.get(0), row.get(1));
        let found = u64::try_from(steps).map_err(corrupt)?;
        let next_seq = u64::try_from(next_seq).map_err(corrupt)?;
        if step.n != found || events.first().is_some_and(|e| e.seq != next_seq) {
            return Err(StoreError::Conflict {
                tenant: tenant.to_owned(),
                session: session.to_owned(),
                expected: step.n,
                found,
            });
        }
        tx.execute(
            "INSERT INTO arbiter_steps (tenant, session, n, step) VALUES ($1, $2, $3, $4)",
            &[&tenant, &session, &count(step.n)?, &json(step)?],
        )
        .map_err(backend)?;
        for e in events {
            tx.execute(
                "INSERT INTO arbiter_events (tenant, session, seq, event) VALUES ($1, $2, $3, $4)",
                &[&tenant, &session, &count(e.seq)?, &json(e)?],
            )
            .map_err(backend)?;
        }
        tx.execute(
            "UPDATE arbiter_sessions SET steps = steps + 1, events = events + $3 WHERE tenant = $1 AND id = $2",
            &[&tenant, &session, &count(events.len() as u64)?],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn checkpoint_in(tx: &mut postgres::Transaction<'_>, c: &Checkpoint) -> Result<(), StoreError> {
        // Serialize signers: the table is locked for the count and the insert.
        tx.batch_execute("LOCK TABLE arbiter_checkpoints IN EXCLUSIVE MODE")
            .map_err(backend)?;
        let found: i64 = tx
            .query_one("SELECT count(*) FROM arbiter_checkpoints", &[])
            .map_err(backend)?
            .get(0);
        super::check_next(c, u64::try_from(found).map_err(corrupt)?)?;
        tx.execute(
            "INSERT INTO arbiter_checkpoints (n, checkpoint) VALUES ($1, $2)",
            &[&count(c.n)?, &json(c)?],
        )
        .map_err(backend)?;
        Ok(())
    }
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
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            Self::append_in(&mut tx, tenant, session, step, events)?;
            tx.commit().map_err(backend)
        })
    }
}

impl TenantMemory for PostgresStore {
    fn memory_get(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Vec<String>)>, StoreError> {
        self.with(|c| {
            let row = c
                .query_opt(
                    "SELECT value, labels FROM arbiter_memory WHERE tenant = $1 AND scope = $2 AND key = $3",
                    &[&tenant, &scope, &key],
                )
                .map_err(backend)?;
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
        self.with(|c| {
            c.execute(
                "INSERT INTO arbiter_memory (tenant, scope, key, value, labels) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, scope, key) DO UPDATE SET value = EXCLUDED.value, labels = EXCLUDED.labels",
                &[&tenant, &scope, &key, &value, &labels],
            )
            .map_err(backend)?;
            Ok(())
        })
    }
}

impl SessionStore for PostgresStore {
    fn put_bundle(&self, sources: &BundleSources) -> Result<String, StoreError> {
        let hash = sources.hash()?;
        let text = json(sources)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO arbiter_bundles (hash, sources) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                &[&hash, &text],
            )
            .map_err(backend)?;
            Ok(())
        })?;
        Ok(hash)
    }

    fn has_bundle(&self, hash: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(
                c.query_opt("SELECT 1 FROM arbiter_bundles WHERE hash = $1", &[&hash])
                    .map_err(backend)?
                    .is_some(),
            )
        })
    }

    fn bundle(&self, hash: &str) -> Result<BundleSources, StoreError> {
        self.with(|c| {
            let row = c
                .query_opt(
                    "SELECT sources FROM arbiter_bundles WHERE hash = $1",
                    &[&hash],
                )
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound(format!("bundle {hash}")))?;
            let text: String = row.get(0);
            serde_json::from_str(&text).map_err(corrupt)
        })
    }

    fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let (tenant, id) = (&record.config.tenant, &record.config.id);
        let text = json(record)?;
        self.with(|c| {
            let inserted = c
                .execute(
                    "INSERT INTO arbiter_sessions (tenant, id, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[tenant, id, &text],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::Exists {
                    tenant: tenant.clone(),
                    session: id.clone(),
                });
            }
            Ok(())
        })
    }

    fn load(&self, tenant: &str, session: &str) -> Result<StoredSession, StoreError> {
        self.with(|c| {
            // One snapshot for the record, steps and events.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(backend)?;
            let record: String = tx
                .query_opt(
                    "SELECT record FROM arbiter_sessions WHERE tenant = $1 AND id = $2",
                    &[&tenant, &session],
                )
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound(format!("session {tenant}/{session}")))?
                .get(0);
            let steps = tx
                .query(
                    "SELECT step FROM arbiter_steps WHERE tenant = $1 AND session = $2 ORDER BY n",
                    &[&tenant, &session],
                )
                .map_err(backend)?
                .iter()
                .map(|r| serde_json::from_str::<Step>(&r.get::<_, String>(0)).map_err(corrupt))
                .collect::<Result<Vec<_>, _>>()?;
            let events = tx
                .query(
                    "SELECT event FROM arbiter_events WHERE tenant = $1 AND session = $2 ORDER BY seq",
                    &[&tenant, &session],
                )
                .map_err(backend)?
                .iter()
                .map(|r| serde_json::from_str::<Event>(&r.get::<_, String>(0)).map_err(corrupt))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(backend)?;
            Ok(StoredSession {
                record: serde_json::from_str(&record).map_err(corrupt)?,
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
            .map_err(backend)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            Self::checkpoint_in(&mut tx, cp)?;
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
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            Self::append_in(&mut tx, tenant, session, step, events)?;
            Self::checkpoint_in(&mut tx, checkpoint)?;
            tx.commit().map_err(backend)
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with(|c| {
            c.query("SELECT checkpoint FROM arbiter_checkpoints ORDER BY n", &[])
                .map_err(backend)?
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
            .map_err(backend)?
            .map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(corrupt))
            .transpose()
        })
    }
}
