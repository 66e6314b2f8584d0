//! Audit over stores: record runs, verify every chain, re-check every recorded decision.
//!
//! A re-check rebuilds the deployment a session ran under from the bundle the store kept (or takes
//! another one, to ask "what would today's policies have decided?"), replays the session's recorded
//! steps through the kernel, and compares each decision with the recorded one. Because the kernel
//! is deterministic, an unchanged bundle reproduces every decision exactly; any difference is
//! reported with the event that recorded the original.

use std::sync::Arc;

use kernel::event::{ChainError, ChainSummary, encode_jsonl, verify_jsonl};
use kernel::{Decision, Deployment, Event, Session};
use runtime::store::{SessionStore, StoreError};

use crate::replay::Run;

/// Writes a finished run (from replay) into `store` under `deployment`'s bundle.
pub fn record(
    store: &dyn SessionStore,
    deployment: &Deployment,
    config: &kernel::SessionConfig,
    run: &Run,
) -> Result<(), StoreError> {
    store.begin(deployment, config, 0)?;
    let mut next = 0;
    for (step, appended) in &run.steps {
        let events = run.events.get(next..next + appended).unwrap_or_default();
        store.append(&config.tenant, &config.id, step, events)?;
        next += appended;
    }
    Ok(())
}

/// One session's chain check.
pub struct Verified {
    /// Tenant and session id.
    pub session: (String, String),
    /// The chain summary, or the first bad link; or the store's own error.
    pub result: Result<Result<ChainSummary, ChainError>, StoreError>,
}

/// Verifies the hash chain of every session in `store`.
pub fn verify(store: &dyn SessionStore) -> Result<Vec<Verified>, StoreError> {
    Ok(store
        .sessions()?
        .into_iter()
        .map(|(tenant, id)| {
            let result = store
                .load(&tenant, &id)
                .map(|s| verify_jsonl(&encode_jsonl(&s.events)));
            Verified {
                session: (tenant, id),
                result,
            }
        })
        .collect())
}

/// A recorded decision the re-check did not reproduce.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The recorded event's seq.
    pub seq: u64,
    /// What was recorded.
    pub recorded: String,
    /// What the re-check decided (or why it could not).
    pub now: String,
}

/// One session's re-check.
#[derive(Debug, Clone)]
pub struct Rechecked {
    /// Tenant and session id.
    pub session: (String, String),
    /// Decisions compared.
    pub decisions: usize,
    /// The ones that differ.
    pub differences: Vec<Difference>,
    /// A problem that stopped the re-check (bundle missing, bundle text not matching the hashes its
    /// decisions recorded, a session that no longer starts).
    pub error: Option<String>,
}

/// Re-checks every session in `store`, against its recorded bundle or `against`.
pub fn recheck(
    store: &dyn SessionStore,
    against: Option<Arc<Deployment>>,
) -> Result<Vec<Rechecked>, StoreError> {
    let mut out = Vec::new();
    for (tenant, id) in store.sessions()? {
        let mut report = Rechecked {
            session: (tenant.clone(), id.clone()),
            decisions: 0,
            differences: Vec::new(),
            error: None,
        };
        if let Err(e) = recheck_one(store, &tenant, &id, against.clone(), &mut report) {
            report.error = Some(e);
        }
        out.push(report);
    }
    Ok(out)
}

fn recheck_one(
    store: &dyn SessionStore,
    tenant: &str,
    id: &str,
    against: Option<Arc<Deployment>>,
    report: &mut Rechecked,
) -> Result<(), String> {
    let stored = store.load(tenant, id).map_err(|e| e.to_string())?;
    let deployment = match against {
        Some(d) => d,
        None => {
            let sources = store
                .bundle(&stored.record.bundle)
                .map_err(|e| e.to_string())?;
            let d = sources
                .build()
                .map_err(|e| format!("the recorded bundle no longer builds: {e}"))?;
            // The stored text must be the one the decisions were made under.
            if let Some(recorded) = stored.events.iter().find_map(|e| e.decision.as_ref())
                && recorded.bundle.as_ref() != d.hashes()
            {
                return Err(format!(
                    "the stored bundle does not match the hashes its decisions recorded \
                     (policies {} recorded, {} stored): the policy, schema or entity text was altered",
                    short(&recorded.bundle.policies),
                    short(&d.hashes().policies)
                ));
            }
            Arc::new(d)
        }
    };
    let mut session =
        Session::new(deployment, stored.record.config.clone()).map_err(|e| e.to_string())?;
    let mut replayed: Vec<Event> = Vec::new();
    for step in &stored.steps {
        match session.step(step.intent.clone(), step.t_ms) {
            Ok(t) => replayed.extend(t.events),
            Err(r) => replayed.push(*r.event),
        }
    }
    for (i, recorded) in stored.events.iter().enumerate() {
        let Some(was) = &recorded.decision else {
            continue;
        };
        report.decisions += 1;
        let now = replayed.get(i);
        let same = now.is_some_and(|e| {
            e.body.kind() == recorded.body.kind()
                && e.decision.as_ref().is_some_and(|d| same_decision(d, was))
        });
        if !same {
            report.differences.push(Difference {
                seq: recorded.seq,
                recorded: describe(recorded),
                now: now.map_or_else(|| "no such event".into(), describe),
            });
        }
    }
    Ok(())
}

fn same_decision(a: &Decision, b: &Decision) -> bool {
    let ids = |d: &Decision| d.policies.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    a.action == b.action
        && a.resource == b.resource
        && a.effect == b.effect
        && a.basis == b.basis
        && ids(a) == ids(b)
        && a.errors == b.errors
}

fn describe(e: &Event) -> String {
    match &e.decision {
        Some(d) => {
            let ids: Vec<&str> = d.policies.iter().map(|p| p.id.as_str()).collect();
            format!(
                "{} {} {:?} by [{}]",
                e.body.kind(),
                crate::expect::action_name(d),
                d.effect,
                ids.join(", ")
            )
        }
        None => e.body.kind().to_owned(),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
