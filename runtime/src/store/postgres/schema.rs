//! The store's tables, kept at their newest version by numbered migrations. Each migration runs
//! once, in its own transaction, under an advisory lock so two instances starting together never
//! both apply it; `arbiter_schema` records which have run. A database newer than this build (a
//! version it does not know) is refused rather than written with an older idea of the tables.

use postgres::Client;

use super::super::StoreError;
use super::backend;

/// Any number; only Arbiter's instances take this advisory lock.
const MIGRATION_LOCK: i64 = 0x0041_7262_6974_6572; // "Arbiter"

/// The migrations, in order; version = index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: the log, bundles, memory and checkpoints (issue 21, first part).
    "
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
",
    // 2: session leases with fencing tokens, enforced by the database: a step carrying a token
    // other than the live lease's (or none, once the session has a lease) is refused with
    // SQLSTATE AR001, whatever the writer believes.
    "
CREATE TABLE arbiter_leases (
  tenant TEXT NOT NULL, session TEXT NOT NULL, owner TEXT, fence BIGINT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (tenant, session));
ALTER TABLE arbiter_steps ADD COLUMN fence BIGINT;
CREATE FUNCTION arbiter_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE held BIGINT; holder TEXT; until TIMESTAMPTZ;
BEGIN
  SELECT fence, owner, expires_at INTO held, holder, until FROM arbiter_leases
    WHERE tenant = NEW.tenant AND session = NEW.session FOR SHARE;
  IF NOT FOUND THEN
    IF NEW.fence IS NULL THEN RETURN NEW; END IF;
    RAISE EXCEPTION USING ERRCODE = 'AR001',
      MESSAGE = format('fencing token %s names no lease of %s/%s', NEW.fence, NEW.tenant, NEW.session);
  END IF;
  IF NEW.fence IS DISTINCT FROM held OR holder IS NULL OR until < clock_timestamp() THEN
    RAISE EXCEPTION USING ERRCODE = 'AR001',
      MESSAGE = format('fencing token %s refused: the lease of %s/%s is at token %s, held by %s, %s',
        coalesce(NEW.fence::text, 'none'), NEW.tenant, NEW.session, held, coalesce(holder, 'nobody'),
        CASE WHEN until < clock_timestamp() THEN 'expired' ELSE 'live' END);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER arbiter_steps_fenced BEFORE INSERT ON arbiter_steps
  FOR EACH ROW EXECUTE FUNCTION arbiter_fence();
",
    // 3: controls (approve, reject, cancel, endorse) for a hosted run, sent through any instance
    // and taken by the one driving it.
    "
CREATE TABLE arbiter_controls (
  id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, session TEXT NOT NULL, intent TEXT NOT NULL);
CREATE INDEX arbiter_controls_session ON arbiter_controls (tenant, session);
",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`]; returns the version it found.
pub(super) fn migrate(client: &mut Client) -> Result<i64, StoreError> {
    let mut tx = client.transaction().map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS arbiter_schema (version BIGINT NOT NULL)")
        .map_err(backend)?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM arbiter_schema", &[])
        .map_err(backend)?
        .get(0);
    if found > VERSION {
        return Err(StoreError::Backend(format!(
            "the database's schema is at version {found}; this build knows up to {VERSION} (upgrade Arbiter)"
        )));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Backend(format!("migration {}: {e}", i + 1)))?;
        tx.execute(
            "INSERT INTO arbiter_schema (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(found)
}
