//! Controls for hosted runs across instances: approve, reject, cancel and endorse reach a run
//! only through the instance driving it, so an instance that is not queues the control here and
//! notifies ([`super::CONTROLS`]); the driver takes the session's queued controls, in the order
//! they were sent, and deletes them as it takes them (one taker). Controls left by a driver that
//! died are taken by the instance that takes its runs over.

use super::super::StoreError;
use super::{CONTROLS, PostgresStore, pg_error};

impl PostgresStore {
    /// Queues `intent` (an approve, reject, cancel or endorse intent as JSON) for the driver of
    /// `tenant/session`, and notifies.
    pub fn send_control(
        &self,
        tenant: &str,
        session: &str,
        intent: &str,
    ) -> Result<(), StoreError> {
        let (t, s, i) = (tenant.to_owned(), session.to_owned(), intent.to_owned());
        self.with(move |c| {
            let mut tx = c.transaction().map_err(pg_error)?;
            tx.execute(
                "INSERT INTO arbiter_controls (tenant, session, intent) VALUES ($1, $2, $3)",
                &[&t, &s, &i],
            )
            .map_err(pg_error)?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CONTROLS, &format!("{t}\u{1f}{s}")],
            )
            .map_err(pg_error)?;
            tx.commit().map_err(pg_error)
        })
    }

    /// Takes (and deletes) every control queued for `tenant/session`, oldest first.
    pub fn take_controls(&self, tenant: &str, session: &str) -> Result<Vec<String>, StoreError> {
        let (t, s) = (tenant.to_owned(), session.to_owned());
        self.with(move |c| {
            Ok(c.query(
                "WITH taken AS (DELETE FROM arbiter_controls WHERE tenant = $1 AND session = $2
                                RETURNING id, intent)
                 SELECT intent FROM taken ORDER BY id",
                &[&t, &s],
            )
            .map_err(pg_error)?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }
}
