//! Audit over stores (and exports, read into one): record runs, verify every chain and, with a
//! trusted key, every signed checkpoint; re-check every recorded session.
//!
//! A re-check rebuilds the deployment a session ran under from the bundle the store kept, replays
//! the session's recorded steps through the kernel, and compares every event byte for byte with
//! the recorded one: the kernel is deterministic, so a record whose events its own steps do not
//! produce (an edited output, a reordered step) is reported at the first event that differs. Given
//! other policies instead ("what would today's policies have decided?"), it compares decisions.

use std::sync::Arc;

use kernel::event::{ChainError, ChainSummary, canonical_json, encode_jsonl, verify_jsonl};
use kernel::{Decision, Deployment, Event, Session};
use runtime::store::{Checkpoint, PublicKey, SessionRecord, SessionStore, Step, StoreError};

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

/// One session's check.
pub struct Verified {
    /// Tenant and session id.
    pub session: (String, String),
    /// The chain summary, or the first bad link; or the store's own error.
    pub result: Result<Result<ChainSummary, ChainError>, StoreError>,
    /// Events in the chain.
    pub events: u64,
    /// Whether the chain ends with the event that ended the session. A session that has not
    /// ended is *open*: its unsigned tail may still grow, or may have been cut.
    pub closed: bool,
    /// With a trusted key: what the store's checkpoints say about this session.
    pub signature: Option<Signature>,
}

/// What the checkpoints say about one session's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A checkpoint signs the chain's last event.
    Signed,
    /// The first `signed` events are signed; the ones after are not.
    Partly {
        /// Events covered by the last checkpoint.
        signed: u64,
    },
    /// No checkpoint names the session.
    Missing,
    /// A checkpoint signed a head this chain does not hold (events were removed, rewritten, or
    /// added after the signed end).
    Contradicted {
        /// What the checkpoint signed.
        events: u64,
        /// Its head hash.
        head: String,
    },
}

impl Verified {
    /// Whether this session fails the audit. An open session whose chain holds, and whose signed
    /// prefix (with a key) holds, does not fail: it is reported as open, not as intact.
    pub fn failed(&self) -> bool {
        let chain_ok = matches!(self.result, Ok(Ok(_)));
        let signature_ok = match &self.signature {
            None | Some(Signature::Signed) => true,
            Some(Signature::Partly { .. } | Signature::Missing) => !self.closed,
            Some(Signature::Contradicted { .. }) => false,
        };
        !(chain_ok && signature_ok)
    }
}

/// The store's checkpoint sequence, checked against a trusted key.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Checkpoints that verified, in order (all of them unless `problem`).
    pub trusted: u64,
    /// Checkpoints in the store.
    pub total: u64,
    /// The hash of the last trusted checkpoint: an auditor who keeps it can later check, with
    /// `witness`, that the store was not rolled back past it.
    pub head: Option<String>,
    /// The first checkpoint that does not verify or does not link to the one before.
    pub problem: Option<String>,
    /// Sessions a trusted checkpoint names that the store no longer holds.
    pub deleted: Vec<(String, String)>,
    /// A witnessed checkpoint hash the sequence does not contain.
    pub witness_missing: Option<String>,
}

impl Manifest {
    /// Whether the manifest fails the audit.
    pub fn failed(&self) -> bool {
        self.problem.is_some() || !self.deleted.is_empty() || self.witness_missing.is_some()
    }
}

/// A store's audit: each session, and with a key the manifest.
pub struct StoreReport {
    /// Every session the store holds.
    pub sessions: Vec<Verified>,
    /// With a key: the checkpoint sequence.
    pub manifest: Option<Manifest>,
}

/// What an auditor trusts: the signer's public key, and optionally a checkpoint hash seen earlier.
pub struct Trust<'a> {
    /// The key checkpoints must be signed with.
    pub key: &'a PublicKey,
    /// A checkpoint hash (from an earlier `verify`) the sequence must still contain.
    pub witness: Option<&'a str>,
}

/// Verifies every session's hash chain in `store`; with `trust`, also every checkpoint's
/// signature, the sequence's links, and each session against its last signed head.
pub fn verify(
    store: &dyn SessionStore,
    trust: Option<&Trust<'_>>,
) -> Result<StoreReport, StoreError> {
    let (manifest, signed) = match trust {
        Some(t) => {
            let (m, s) = manifest(store, t)?;
            (Some(m), Some(s))
        }
        None => (None, None),
    };
    let sessions = store
        .sessions()?
        .into_iter()
        .map(|(tenant, id)| {
            let loaded = store.load(&tenant, &id);
            let (events, closed) = match &loaded {
                Ok(s) => (
                    s.events.len() as u64,
                    s.events.last().is_some_and(|e| e.body.ends_session()),
                ),
                Err(_) => (0, false),
            };
            let signature = signed.as_ref().map(|signed| {
                match (&loaded, signed.get(&(tenant.clone(), id.clone()))) {
                    (_, None) => Signature::Missing,
                    (Err(_), Some(c)) => Signature::Contradicted {
                        events: c.events,
                        head: c.head.clone(),
                    },
                    (Ok(s), Some(c)) => against_head(&s.events, c),
                }
            });
            let result = loaded.map(|s| {
                if s.events.is_empty() {
                    // A session created but not yet started has no chain to break.
                    Ok(ChainSummary {
                        events: 0,
                        sessions: Default::default(),
                    })
                } else {
                    verify_jsonl(&encode_jsonl(&s.events))
                }
            });
            Verified {
                session: (tenant, id),
                result,
                events,
                closed,
                signature,
            }
        })
        .collect();
    let mut report = StoreReport { sessions, manifest };
    if let Some(m) = &mut report.manifest {
        let held: std::collections::BTreeSet<_> =
            report.sessions.iter().map(|v| v.session.clone()).collect();
        m.deleted = signed
            .unwrap_or_default()
            .into_keys()
            .filter(|k| !held.contains(k))
            .collect();
    }
    Ok(report)
}

/// How a chain stands against its last signed head.
fn against_head(events: &[Event], c: &Checkpoint) -> Signature {
    let contradicted = || Signature::Contradicted {
        events: c.events,
        head: c.head.clone(),
    };
    let Some(at) = c.events.checked_sub(1) else {
        return contradicted();
    };
    let held = usize::try_from(at)
        .ok()
        .and_then(|i| events.get(i))
        .is_some_and(|e| e.hash == c.head);
    let len = events.len() as u64;
    if !held || (c.closed && len != c.events) {
        contradicted()
    } else if len == c.events {
        Signature::Signed
    } else {
        Signature::Partly { signed: c.events }
    }
}

/// Each session's last trusted checkpoint.
type LastSigned = std::collections::BTreeMap<(String, String), Checkpoint>;

/// Walks the checkpoint sequence: each must be signed by the trusted key and link to the one
/// before. Returns the report and, for each session, its last trusted checkpoint.
fn manifest(
    store: &dyn SessionStore,
    trust: &Trust<'_>,
) -> Result<(Manifest, LastSigned), StoreError> {
    let all = store.checkpoints()?;
    let mut m = Manifest {
        total: all.len() as u64,
        ..Manifest::default()
    };
    let mut last = std::collections::BTreeMap::new();
    let mut prev = Checkpoint::genesis();
    let mut witnessed = trust.witness.is_none();
    for (i, c) in all.into_iter().enumerate() {
        let problem = if c.n != i as u64 {
            Some(format!(
                "checkpoint {i} is numbered {}: one was removed or inserted",
                c.n
            ))
        } else if c.prev != prev {
            Some(format!(
                "checkpoint {i} does not follow checkpoint {}: one was removed, replaced or reordered",
                i.saturating_sub(1)
            ))
        } else {
            c.check(trust.key)
                .err()
                .map(|e| format!("checkpoint {i}: {e}"))
        };
        if let Some(p) = problem {
            m.problem = Some(p);
            break;
        }
        prev = c.hash();
        witnessed |= trust.witness == Some(prev.as_str());
        m.trusted += 1;
        m.head = Some(prev.clone());
        last.insert((c.tenant.clone(), c.session.clone()), c);
    }
    if !witnessed {
        m.witness_missing = trust.witness.map(str::to_owned);
    }
    Ok((m, last))
}

/// A recorded event the re-check did not reproduce.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The recorded event's seq (or the replayed one's, for an event the record lacks).
    pub seq: u64,
    /// What was recorded.
    pub recorded: String,
    /// What the re-check produced (or why it could not).
    pub now: String,
}

/// What a re-check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// Under the recorded bundle: every event, byte for byte (canonical JSON, hashes included).
    Events,
    /// Under another bundle (`--policies`): the decisions, which are what a policy change moves.
    Decisions,
}

/// One session's re-check.
#[derive(Debug, Clone)]
pub struct Rechecked {
    /// Tenant and session id.
    pub session: (String, String),
    /// What was compared.
    pub compared: Compared,
    /// Events (or, comparing decisions, decisions) compared.
    pub checked: usize,
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
            compared: if against.is_some() {
                Compared::Decisions
            } else {
                Compared::Events
            },
            checked: 0,
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
            if let Some(recorded) = stored.events.iter().find_map(|e| match &e.body {
                kernel::EventBody::SessionStarted { bundle, .. } => Some(bundle),
                _ => None,
            }) && recorded != d.hashes()
            {
                return Err(format!(
                    "the stored bundle does not match the hashes its decisions recorded \
                     (policies {} recorded, {} stored): the policy, schema or entity text was altered",
                    short(&recorded.policies),
                    short(&d.hashes().policies)
                ));
            }
            Arc::new(d)
        }
    };
    let replayed = replay_under(deployment, &stored.record.config, &stored.steps)?;
    match report.compared {
        Compared::Events => compare_events(&stored.events, &replayed, report),
        Compared::Decisions => compare_decisions(&stored.events, &replayed, report),
    }
    Ok(())
}

/// The events `steps` produce under the bundle `record` names in `store`: what the session's
/// events must be, byte for byte.
pub fn replay_steps(
    record: &SessionRecord,
    steps: &[Step],
    store: &dyn SessionStore,
) -> Result<Vec<Event>, String> {
    let sources = store.bundle(&record.bundle).map_err(|e| e.to_string())?;
    let deployment = sources
        .build()
        .map_err(|e| format!("the recorded bundle no longer builds: {e}"))?;
    replay_under(Arc::new(deployment), &record.config, steps)
}

/// The events recorded `steps` produce on `deployment` (a step it refuses yields its `rejected`
/// event): what `recheck` compares and `arbiter diff --log` pairs.
pub fn replay_under(
    deployment: Arc<Deployment>,
    config: &kernel::SessionConfig,
    steps: &[Step],
) -> Result<Vec<Event>, String> {
    let mut session = Session::new(deployment, config.clone()).map_err(|e| e.to_string())?;
    let mut replayed: Vec<Event> = Vec::new();
    for step in steps {
        match session.step(step.intent.clone(), step.t_ms) {
            Ok(t) => replayed.extend(t.events),
            Err(r) => replayed.push(*r.event),
        }
    }
    Ok(replayed)
}

/// Every event, byte for byte. Once one differs every later hash does too, so an event is
/// reported when its content (all but `prev` and `hash`) differs, or, if no content differs, the
/// first whose hash does; an event only one side has is reported as missing.
fn compare_events(recorded: &[Event], replayed: &[Event], report: &mut Rechecked) {
    let content = |e: &Event| {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("prev");
            map.remove("hash");
        }
        canonical_json(&v)
    };
    let mut first_hash = None;
    for i in 0..recorded.len().max(replayed.len()) {
        report.checked += 1;
        match (recorded.get(i), replayed.get(i)) {
            (Some(was), Some(now)) => {
                if content(was) != content(now) {
                    report.differences.push(Difference {
                        seq: was.seq,
                        recorded: describe_event(was),
                        now: describe_event(now),
                    });
                } else if was.hash != now.hash || was.prev != now.prev {
                    first_hash.get_or_insert(Difference {
                        seq: was.seq,
                        recorded: format!("{} with hash {}", was.body.kind(), short(&was.hash)),
                        now: format!("hash {}", short(&now.hash)),
                    });
                }
            }
            (Some(was), None) => report.differences.push(Difference {
                seq: was.seq,
                recorded: describe_event(was),
                now: "no such event (the recorded steps do not produce it)".into(),
            }),
            (None, Some(now)) => report.differences.push(Difference {
                seq: now.seq,
                recorded: "no such event (the record lacks it)".into(),
                now: describe_event(now),
            }),
            (None, None) => {}
        }
    }
    if report.differences.is_empty() {
        report.differences.extend(first_hash);
    }
}

fn compare_decisions(recorded: &[Event], replayed: &[Event], report: &mut Rechecked) {
    for (i, recorded) in recorded.iter().enumerate() {
        let Some(was) = &recorded.decision else {
            continue;
        };
        report.checked += 1;
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
}

/// An event in a line: its kind, its decision if any, and its payload cut to a readable length.
fn describe_event(e: &Event) -> String {
    let body = serde_json::to_value(&e.body).unwrap_or_default();
    let payload = body.get("payload").map(canonical_json).unwrap_or_default();
    let cut: String = payload.chars().take(160).collect();
    let more = if cut.len() < payload.len() { "…" } else { "" };
    format!("{} {cut}{more}", describe(e))
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
