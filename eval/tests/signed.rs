//! The threat model's rows, each as an attack on a recorded store and what `verify`,
//! `verify --key` and `recheck` say about it (issue 16, 1). Every attacker here can write the store
//! (the file, its rows, an export) but does not hold the signing key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use eval::audit::{Signature, StoreReport, Trust};
use kernel::event::event_hash;
use kernel::{Event, EventBody, Intent};
use runtime::store::sqlite::SqliteStore;
use runtime::store::{
    Checkpoint, InMemoryStore, PublicKey, SessionStore, Signed, SigningKey, StoredSession, export,
};
use rusqlite::Connection;

const APPROVED: &str = "refund_approval_granted";
const OTHER: &str = "multi_step_refund_with_crm_retries";

fn temp_db(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("arbiter-signed-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Replays the named scenarios and records them into `store`.
fn record(store: &dyn SessionStore, names: &[&str]) {
    for name in names {
        let file = eval::scenario_files(&[common::repo().join("scenarios")])
            .expect("scenarios")
            .into_iter()
            .find(|f| f.file_stem().is_some_and(|s| s == *name))
            .expect("scenario");
        let (loaded, run, failures) = eval::run_file(&file).expect("runs");
        assert!(failures.is_empty(), "{failures:?}");
        let deployment = eval::deployment(&loaded).expect("deployment");
        eval::audit::record(store, &deployment, &loaded.session_config(), &run).expect("record");
    }
}

/// A SQLite file with `names` recorded and signed; returns its path and the trusted key.
fn signed_file(name: &str, names: &[&str]) -> (PathBuf, PublicKey) {
    let path = temp_db(name);
    let key = SigningKey::generate().expect("key");
    let public = key.public();
    let store = Signed::new(SqliteStore::open(&path).expect("open"), key);
    record(&store, names);
    (path, public)
}

fn verify(store: &dyn SessionStore, key: Option<&PublicKey>) -> StoreReport {
    let trust = key.map(|key| Trust { key, witness: None });
    eval::audit::verify(store, trust.as_ref()).expect("verify")
}

fn failed(report: &StoreReport) -> bool {
    report.sessions.iter().any(|v| v.failed())
        || report.manifest.as_ref().is_some_and(|m| m.failed())
}

fn raw(path: &PathBuf, sql: &str) {
    Connection::open(path)
        .expect("raw")
        .execute_batch(sql)
        .expect("tamper");
}

/// Recomputes `seq`, `prev` and `hash` the way the kernel does: what anyone who can write the
/// store can do, since the chain is unkeyed.
fn rechain(events: &mut [Event]) {
    let mut prev = kernel::event::GENESIS.to_owned();
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64;
        e.prev = prev;
        e.hash = event_hash(&serde_json::to_value(&*e).expect("json"));
        prev = e.hash.clone();
    }
}

/// A copy of `store` (bundles, sessions, checkpoints) with `session` replaced by `forge(session)`.
fn forged(
    store: &dyn SessionStore,
    id: &str,
    forge: impl FnOnce(&mut StoredSession),
) -> InMemoryStore {
    let mut forge = Some(forge);
    let copy = InMemoryStore::default();
    for (tenant, sid) in store.sessions().expect("sessions") {
        let mut s = store.load(&tenant, &sid).expect("load");
        copy.put_bundle(&store.bundle(&s.record.bundle).expect("bundle"))
            .expect("bundle");
        if sid == id
            && let Some(forge) = forge.take()
        {
            forge(&mut s);
        }
        copy.restore(s).expect("restore");
    }
    for c in store.checkpoints().expect("checkpoints") {
        copy.restore_checkpoint(c).expect("checkpoint");
    }
    copy
}

#[test]
fn a_cut_off_end_is_open_without_a_key_and_tampered_with_one() {
    let (path, key) = signed_file("truncate", &[APPROVED]);
    let last: i64 = Connection::open(&path)
        .expect("raw")
        .query_row("SELECT MAX(n) FROM steps", [], |r| r.get(0))
        .expect("max");
    // Drop the last step: its settlement, the final answer and `completed` go with it.
    raw(&path, &format!("DELETE FROM steps WHERE n = {last}"));
    let store = SqliteStore::open(&path).expect("open");

    let plain = verify(&store, None);
    let v = &plain.sessions[0];
    assert!(!v.closed, "without its end event the session is open");
    assert!(!v.failed(), "the chain that is left is whole");

    let keyed = verify(&store, Some(&key));
    let v = &keyed.sessions[0];
    assert!(
        matches!(v.signature, Some(Signature::Contradicted { .. })),
        "{:?}",
        v.signature
    );
    assert!(failed(&keyed));
}

#[test]
fn a_deleted_session_is_caught_by_the_signed_manifest_only() {
    let (path, key) = signed_file("delete", &[APPROVED, OTHER]);
    raw(
        &path,
        &format!(
            "DELETE FROM steps WHERE session = '{OTHER}'; DELETE FROM sessions WHERE id = '{OTHER}';"
        ),
    );
    let store = SqliteStore::open(&path).expect("open");
    assert!(
        !failed(&verify(&store, None)),
        "a chain cannot miss a whole session"
    );
    let keyed = verify(&store, Some(&key));
    let m = keyed.manifest.as_ref().expect("manifest");
    assert_eq!(m.deleted.len(), 1, "{:?}", m.deleted);
    assert_eq!(m.deleted[0].1, OTHER);
    assert!(failed(&keyed));
}

#[test]
fn a_rechained_history_without_its_approval_passes_the_chain_and_fails_the_signature() {
    let key = SigningKey::generate().expect("key");
    let public = key.public();
    let store = Signed::new(InMemoryStore::default(), key);
    record(&store, &[APPROVED]);
    assert!(!failed(&verify(&store, Some(&public))));

    let copy = forged(&store, APPROVED, |s| {
        let before = s.events.len();
        s.events
            .retain(|e| !matches!(e.body, EventBody::ApprovalGranted { .. }));
        assert_eq!(s.events.len(), before - 1);
        rechain(&mut s.events);
    });
    assert!(
        !failed(&verify(&copy, None)),
        "an unkeyed chain cannot tell a re-chained forgery"
    );
    let keyed = verify(&copy, Some(&public));
    assert!(
        matches!(
            keyed.sessions[0].signature,
            Some(Signature::Contradicted { .. })
        ),
        "{:?}",
        keyed.sessions[0].signature
    );
}

/// Edits the first tool output and the final answer in the events, re-chained.
fn edit_events(s: &mut StoredSession) {
    for e in &mut s.events {
        match &mut e.body {
            EventBody::ToolReturned { output, .. } => {
                *output = serde_json::json!({"status": "forged"});
                break;
            }
            _ => continue,
        }
    }
    for e in &mut s.events {
        if let EventBody::Completed { answer } = &mut e.body {
            *answer = "forged answer".into();
        }
    }
    rechain(&mut s.events);
}

#[test]
fn recheck_replays_the_steps_and_compares_every_event_byte_for_byte() {
    let key = SigningKey::generate().expect("key");
    let public = key.public();
    let store = Signed::new(InMemoryStore::default(), key);
    record(&store, &[APPROVED]);
    let clean = eval::audit::recheck(&store, None).expect("recheck");
    assert!(
        clean[0].differences.is_empty() && clean[0].error.is_none(),
        "{clean:?}"
    );
    assert!(clean[0].checked > 10);

    // Events edited and re-chained: the chain holds, the replayed steps do not produce them.
    let copy = forged(&store, APPROVED, edit_events);
    assert!(!failed(&verify(&copy, None)));
    let r = eval::audit::recheck(&copy, None).expect("recheck");
    assert!(
        r[0].differences
            .iter()
            .any(|d| d.recorded.contains("forged answer")),
        "{:?}",
        r[0].differences
    );
    assert!(
        r[0].differences
            .iter()
            .any(|d| d.recorded.contains("tool_returned")),
        "{:?}",
        r[0].differences
    );

    // Two steps swapped (the events left as they were): not the order the events came from.
    let copy = forged(&store, APPROVED, |s| {
        let (a, b) = (s.steps[1].intent.clone(), s.steps[2].intent.clone());
        s.steps[1].intent = b;
        s.steps[2].intent = a;
    });
    let r = eval::audit::recheck(&copy, None).expect("recheck");
    assert!(
        !r[0].differences.is_empty(),
        "reordered steps must be noticed"
    );

    // Steps and events both edited to agree: replay cannot tell; the signature does.
    let copy = forged(&store, APPROVED, |s| {
        for step in &mut s.steps {
            if let Intent::ToolReturned { output, .. } = &mut step.intent {
                *output = serde_json::json!({"status": "forged"});
                break;
            }
        }
        let replayed = eval::audit::replay_steps(&s.record, &s.steps, &store).expect("replay");
        s.events = replayed;
    });
    let r = eval::audit::recheck(&copy, None).expect("recheck");
    assert!(r[0].differences.is_empty(), "{:?}", r[0].differences);
    assert!(failed(&verify(&copy, Some(&public))));
}

#[test]
fn the_manifest_refuses_a_removed_or_foreign_checkpoint_and_a_witness_catches_a_rollback() {
    let key = SigningKey::generate().expect("key");
    let public = key.public();
    let store = Signed::new(InMemoryStore::default(), key);
    record(&store, &[APPROVED, OTHER, "untrusted_ticket_exfiltration"]);
    let checkpoints = store.checkpoints().expect("checkpoints");
    assert_eq!(checkpoints.len(), 3, "one per ended session");

    let with = |keep: &dyn Fn(usize, &Checkpoint) -> Option<Checkpoint>| {
        let copy = InMemoryStore::default();
        for (tenant, id) in store.sessions().expect("sessions") {
            let s = store.load(&tenant, &id).expect("load");
            copy.put_bundle(&store.bundle(&s.record.bundle).expect("b"))
                .expect("b");
            copy.restore(s).expect("restore");
        }
        for (i, c) in checkpoints.iter().enumerate() {
            if let Some(c) = keep(i, c) {
                copy.restore_checkpoint(c).expect("c");
            }
        }
        copy
    };
    // The middle checkpoint removed: the next one no longer follows.
    let report = verify(&with(&|i, c| (i != 1).then(|| c.clone())), Some(&public));
    let m = report.manifest.expect("manifest");
    assert!(
        m.problem
            .as_deref()
            .is_some_and(|p| p.contains("checkpoint 1")),
        "{m:?}"
    );

    // A checkpoint re-signed by another key (an insider's own).
    let insider = SigningKey::generate().expect("key");
    let report = verify(
        &with(&|i, c| {
            Some(if i == 2 {
                let head = runtime::store::checkpoint::Head {
                    tenant: c.tenant.clone(),
                    session: c.session.clone(),
                    events: c.events,
                    head: c.head.clone(),
                    closed: c.closed,
                };
                insider.sign(c.n, c.prev.clone(), head)
            } else {
                c.clone()
            })
        }),
        Some(&public),
    );
    let m = report.manifest.expect("manifest");
    assert!(
        m.problem
            .as_deref()
            .is_some_and(|p| p.contains("not the trusted key")),
        "{m:?}"
    );

    // The newest checkpoint removed (a rollback of the store's tail): indistinguishable from a
    // session that never ended, unless the auditor kept the manifest head an earlier verify printed.
    let earlier_head = checkpoints[2].hash();
    let rolled_back = with(&|i, c| (i != 2).then(|| c.clone()));
    let report = verify(&rolled_back, Some(&public));
    assert!(!report.manifest.as_ref().expect("m").failed());
    let witnessed = eval::audit::verify(
        &rolled_back,
        Some(&Trust {
            key: &public,
            witness: Some(&earlier_head),
        }),
    )
    .expect("verify");
    assert_eq!(
        witnessed.manifest.expect("m").witness_missing.as_deref(),
        Some(earlier_head.as_str())
    );
}

#[test]
fn an_ended_session_nobody_signed_fails_and_an_open_one_is_signed_every_n_events() {
    // Recorded without a key, verified with one: every ended session is unsigned.
    let store = InMemoryStore::default();
    record(&store, &[APPROVED]);
    let key = SigningKey::generate().expect("key");
    let report = verify(&store, Some(&key.public()));
    assert_eq!(report.sessions[0].signature, Some(Signature::Missing));
    assert!(report.sessions[0].failed());

    // A session cut mid-run (a crash) under a signer that signs every 4 events: open, its
    // signed prefix holds, at most 3 events unsigned.
    let public = key.public();
    let signed = Signed::new(InMemoryStore::default(), key).every(4);
    let file = common::repo().join(format!("scenarios/support/{APPROVED}.toml"));
    let (loaded, run, _) = eval::run_file(&file).expect("runs");
    let deployment = eval::deployment(&loaded).expect("deployment");
    let config = loaded.session_config();
    use runtime::store::SessionLog;
    signed.begin(&deployment, &config, 0).expect("begin");
    let mut next = 0;
    for (step, appended) in run.steps.iter().take(run.steps.len() - 2) {
        signed
            .append(
                &config.tenant,
                &config.id,
                step,
                &run.events[next..next + appended],
            )
            .expect("append");
        next += appended;
    }
    let report = verify(&signed, Some(&public));
    let v = &report.sessions[0];
    assert!(!v.closed && !v.failed(), "{:?}", v.signature);
    match v.signature {
        Some(Signature::Partly { signed }) => {
            assert!(v.events - signed < 4, "{signed} of {}", v.events)
        }
        Some(Signature::Signed) => {}
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn an_export_is_audited_as_the_store_it_came_from() {
    let (path, key) = signed_file("export", &[APPROVED, OTHER]);
    let store = SqliteStore::open(&path).expect("open");
    let mut text = Vec::new();
    export::write(&store, &mut text).expect("export");
    let text = String::from_utf8(text).expect("utf8");
    assert!(export::is_export(&text));

    let read = export::read(&text).expect("reads back");
    assert!(!failed(&verify(&read, Some(&key))));
    let r = eval::audit::recheck(&read, None).expect("recheck");
    assert!(
        r.iter()
            .all(|r| r.differences.is_empty() && r.error.is_none()),
        "{r:?}"
    );

    // An event edited in the file: its chain breaks.
    let edited = text.replacen("\"kind\":\"completed\"", "\"kind\":\"failed\"", 1);
    let read = export::read(&edited);
    match read {
        Ok(store) => assert!(failed(&verify(&store, None))),
        Err(e) => assert!(e.to_string().contains("line"), "{e}"),
    }
    // The bundle's text edited: refused with its line, never audited under the wrong policies.
    let tampered = text.replacen("amount > 5000", "amount > 50000", 1);
    assert_ne!(tampered, text);
    let err = export::read(&tampered).expect_err("refused");
    assert!(err.to_string().starts_with("line 2:"), "{err}");
    // A duplicate key anywhere is refused.
    let dup = text.replacen(
        "{\"arbiter_export\":{\"version\":1}}",
        "{\"arbiter_export\":{\"version\":1,\"version\":1}}",
        1,
    );
    assert!(
        export::read(&dup)
            .expect_err("refused")
            .to_string()
            .starts_with("line 1:")
    );
}
