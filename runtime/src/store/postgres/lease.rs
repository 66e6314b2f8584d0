//! Session leases: which instance drives a session now. A lease names its holder, a fencing token
//! and an expiry, all on the database's clock (instances' clocks never compare). Taking a lease
//! from nobody, from an expired holder or after a release raises the token; the store then writes
//! that session's steps with the token, and the `arbiter_fence` trigger refuses any step whose
//! token is not the live lease's — so an instance that stalled past its expiry, or lost its lease
//! to another, cannot extend the log however it behaves.

use std::time::Duration;

use super::super::StoreError;
use super::{Fences, PostgresStore, natural, pg_error};

/// A lease this store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token the session's steps are written with.
    pub fence: i64,
    /// The session's steps in the log when the lease was taken (none when the session is not
    /// created yet): a holder whose copy has fewer must catch up before it writes.
    pub steps: Option<u64>,
}

/// The answer to [`PostgresStore::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is this store's until it expires (renew it) or is released.
    Held(Lease),
    /// Another holder's lease is live.
    Busy {
        /// Who holds it.
        owner: String,
        /// How long until it expires unless renewed, in ms.
        remaining_ms: i64,
    },
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The leases a renewal lost: held with these tokens when it began, not found still held by the
/// statements, and at the same token in `now`. A lease given back and taken afresh while the
/// statements ran has a new token: it is held, not lost (forgetting its token would send the
/// next step unfenced, and the trigger would refuse it).
fn lost(
    held: Vec<((String, String), i64)>,
    kept: &[(String, String)],
    now: &Fences,
) -> Vec<(String, String)> {
    held.into_iter()
        .filter(|(k, f)| !kept.contains(k) && now.get(k) == Some(f))
        .map(|(k, _)| k)
        .collect()
}

impl PostgresStore {
    /// Takes the lease of `tenant/session` for `owner` for `ttl`, unless another owner's is live.
    /// Taking it over (from nobody, a released or an expired lease) raises the fencing token;
    /// taking it again while holding it keeps the token and extends the expiry.
    pub fn acquire(
        &self,
        tenant: &str,
        session: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Acquired, StoreError> {
        let (t, s, o, ms) = (
            tenant.to_owned(),
            session.to_owned(),
            owner.to_owned(),
            millis(ttl),
        );
        let acquired = self.leases()?.with(move |c| {
            let take = super::prepared::prepared(
                c,
                "INSERT INTO arbiter_leases AS l (tenant, session, owner, fence, expires_at)
                     VALUES ($1, $2, $3, 1, clock_timestamp() + $4::float8 * interval '1 millisecond')
                     ON CONFLICT (tenant, session) DO UPDATE
                       SET owner = EXCLUDED.owner,
                           fence = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at >= clock_timestamp()
                                        THEN l.fence ELSE l.fence + 1 END,
                           expires_at = EXCLUDED.expires_at
                       WHERE l.owner IS NULL OR l.owner = EXCLUDED.owner OR l.expires_at < clock_timestamp()
                     RETURNING fence, (SELECT steps FROM arbiter_sessions WHERE tenant = $1 AND id = $2)",
            )?;
            let row = c
                .query_opt(&take, &[&t, &s, &o, &ms])
                .map_err(pg_error)?;
            if let Some(row) = row {
                let steps: Option<i64> = row.get(1);
                return Ok(Acquired::Held(Lease {
                    fence: row.get(0),
                    steps: steps.map(natural).transpose()?,
                }));
            }
            let row = c
                .query_one(
                    "SELECT coalesce(owner, ''), (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint
                     FROM arbiter_leases WHERE tenant = $1 AND session = $2",
                    &[&t, &s],
                )
                .map_err(pg_error)?;
            Ok(Acquired::Busy {
                owner: row.get(0),
                remaining_ms: row.get(1),
            })
        })?;
        if let Acquired::Held(lease) = &acquired {
            self.fences()?
                .insert((tenant.to_owned(), session.to_owned()), lease.fence);
        }
        Ok(acquired)
    }

    /// Gives the lease up (if this store still holds it): the next taker need not wait for it to
    /// expire. The token stays; the next taker raises it.
    pub fn release(&self, tenant: &str, session: &str, owner: &str) -> Result<(), StoreError> {
        let Some(fence) = self
            .fences()?
            .remove(&(tenant.to_owned(), session.to_owned()))
        else {
            return Ok(());
        };
        let (t, s, o) = (tenant.to_owned(), session.to_owned(), owner.to_owned());
        self.leases()?.with(move |c| {
            let give = super::prepared::prepared(
                c,
                "UPDATE arbiter_leases SET owner = NULL
                 WHERE tenant = $1 AND session = $2 AND owner = $3 AND fence = $4",
            )?;
            c.execute(&give, &[&t, &s, &o, &fence]).map_err(pg_error)?;
            Ok(())
        })
    }

    /// Extends every lease this store holds by `ttl` from now — one that expired too, as long as
    /// nobody took it in between (its token is unchanged); returns the ones it had lost (taken
    /// by another, or released), which it no longer holds. Writes made while a lease was expired
    /// were refused all the same.
    pub fn renew(&self, owner: &str, ttl: Duration) -> Result<Vec<(String, String)>, StoreError> {
        let held: Vec<((String, String), i64)> = self
            .fences()?
            .iter()
            .map(|(k, f)| (k.clone(), *f))
            .collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let tenants: Vec<String> = held.iter().map(|((t, _), _)| t.clone()).collect();
        let sessions: Vec<String> = held.iter().map(|((_, s), _)| s.clone()).collect();
        let fences: Vec<i64> = held.iter().map(|(_, f)| *f).collect();
        let (o, ms) = (owner.to_owned(), millis(ttl));
        // Rows an append holds (its trigger share-locks the lease) are skipped, never waited for:
        // a renewal must neither stall behind appends nor deadlock with them. A skipped lease is
        // renewed next time (every third of its life); whether it is still ours is read apart.
        let kept: Vec<(String, String)> = self.leases()?.with(move |c| {
            let held = "unnest($2::text[], $3::text[], $4::bigint[]) AS h(tenant, session, fence)";
            c.execute(
                &format!(
                    "WITH mine AS (
                       SELECT l.tenant, l.session FROM arbiter_leases l JOIN {held}
                         ON l.tenant = h.tenant AND l.session = h.session AND l.fence = h.fence
                       WHERE l.owner = $1
                       FOR UPDATE OF l SKIP LOCKED)
                     UPDATE arbiter_leases AS l
                       SET expires_at = clock_timestamp() + $5::float8 * interval '1 millisecond'
                     FROM mine WHERE l.tenant = mine.tenant AND l.session = mine.session"
                ),
                &[&o, &tenants, &sessions, &fences, &ms],
            )
            .map_err(pg_error)?;
            Ok(c.query(
                &format!(
                    "SELECT l.tenant, l.session FROM arbiter_leases l JOIN {held}
                       ON l.tenant = h.tenant AND l.session = h.session AND l.fence = h.fence
                     WHERE l.owner = $1"
                ),
                &[&o, &tenants, &sessions, &fences],
            )
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        let mut fences = self.fences()?;
        let lost = lost(held, &kept, &fences);
        for k in &lost {
            fences.remove(k);
        }
        Ok(lost)
    }

    /// Sessions whose lease expired while held: its holder stopped renewing (it died, or
    /// stalled — this store's own included). What a survivor takes over.
    pub fn expired(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.leases()?.with(move |c| {
            Ok(c.query(
                "SELECT tenant, session FROM arbiter_leases
                 WHERE owner IS NOT NULL AND expires_at < clock_timestamp()
                 ORDER BY tenant, session",
                &[],
            )
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    /// The lease connections (two), opened on first use.
    fn leases(&self) -> Result<&super::pool::Pool, StoreError> {
        if let Some(p) = self.shared.leases.get() {
            return Ok(p);
        }
        let fresh =
            super::pool::Pool::connect_with(&self.shared.url, 2, "SET synchronous_commit = off")?;
        Ok(self.shared.leases.get_or_init(|| fresh))
    }

    /// Whether this store holds the lease of `tenant/session` (as far as it knows).
    pub fn holds(&self, tenant: &str, session: &str) -> bool {
        self.fence(tenant, session).ok().flatten().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> (String, String) {
        ("t".to_owned(), s.to_owned())
    }

    #[test]
    fn a_lease_retaken_during_a_renewal_is_not_lost() {
        let held = vec![
            (key("gone"), 3),
            (key("kept"), 4),
            (key("retaken"), 7),
            (key("released"), 5),
        ];
        let kept = vec![key("kept")];
        // While the renewal ran, `retaken` was given back and taken again (token 8), and
        // `released` was given back for good.
        let now: Fences = [(key("gone"), 3), (key("kept"), 4), (key("retaken"), 8)]
            .into_iter()
            .collect();
        assert_eq!(lost(held, &kept, &now), vec![key("gone")]);
    }
}
