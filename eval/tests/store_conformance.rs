//! One conformance suite for every store: in memory, SQLite, and PostgreSQL (a real server:
//! `.ci/run` starts one and sets `ARBITER_PG_URL`; without it the PostgreSQL run prints why and
//! is skipped, unless `ARBITER_REQUIRE_POSTGRES` is set, as in CI). Each store: a bundle kept once
//! under its hash; a session created twice refused; two writers racing on one session — the
//! second refused and the log whole; every support scenario recorded, verified and re-checked
//! byte for byte; memory keyed by tenant; checkpoints in sequence, a signed append atomic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use kernel::{Intent, Session, Step};
use runtime::store::checkpoint::Head;
use runtime::store::sqlite::SqliteStore;
use runtime::store::{InMemoryStore, PostgresStore, SessionStore, SigningKey, StoreError};

use common::shopco as config;

/// Two handles on one store (two connections where the store has them).
fn conformance(a: &dyn SessionStore, b: &dyn SessionStore) {
    let deployment = Arc::new(
        kernel::pack::load_packs(&common::repo().join("policies"), &["support"]).expect("packs"),
    );
    // Bundles: kept once, by hash.
    let hash = deployment.bundle_hash().expect("hash").to_owned();
    assert!(!a.has_bundle(&hash).expect("has"));
    a.begin(&deployment, &config("c1"), 0).expect("begin");
    assert!(b.has_bundle(&hash).expect("has"));
    assert_eq!(&b.bundle(&hash).expect("bundle"), deployment.sources());
    assert_eq!(a.put_bundle(deployment.sources()).expect("again"), hash);
    assert!(matches!(
        b.begin(&deployment, &config("c1"), 0),
        Err(StoreError::Exists { .. })
    ));

    // Two writers step the same session from the start: one wins, the other is refused.
    let start = Intent::Start {
        request: "hi".into(),
    };
    let step = Step {
        n: 0,
        t_ms: 0,
        intent: start.clone(),
    };
    let mut sa = Session::new(Arc::clone(&deployment), config("c1")).expect("session");
    let mut sb = Session::new(Arc::clone(&deployment), config("c1")).expect("session");
    let ea = sa.step(start.clone(), 0).expect("step").events;
    let eb = sb.step(start, 0).expect("step").events;
    a.append("shopco", "c1", &step, &ea).expect("a appends");
    let conflict = b.append("shopco", "c1", &step, &eb);
    assert!(
        matches!(
            &conflict,
            Err(StoreError::Conflict {
                expected: 0,
                found: 1,
                ..
            })
        ),
        "{conflict:?}"
    );
    let stored = b.load("shopco", "c1").expect("load");
    assert_eq!((stored.steps.len(), &stored.events), (1, &ea));
    assert!(matches!(
        a.load("shopco", "nope"),
        Err(StoreError::NotFound(_))
    ));

    // Every support scenario recorded, verified, and re-checked byte for byte.
    let files = eval::scenario_files(&[common::repo().join("scenarios/support")]).expect("files");
    for file in &files {
        let (loaded, run, failures) = eval::run_file(file).expect("runs");
        assert!(failures.is_empty(), "{}: {failures:?}", file.display());
        let deployment = eval::deployment(&loaded).expect("deployment");
        eval::audit::record(a, &deployment, &loaded.session_config(), &run).expect("record");
    }
    let sessions = b.sessions().expect("sessions");
    assert_eq!(sessions.len(), files.len() + 1);
    let mut sorted = sessions.clone();
    sorted.sort();
    assert_eq!(sessions, sorted, "sessions come back sorted");
    let verified = eval::audit::verify(b, None).expect("verify");
    assert!(verified.sessions.iter().all(|v| !v.failed()));
    for r in eval::audit::recheck(b, None).expect("recheck") {
        assert!(
            r.error.is_none() && r.differences.is_empty(),
            "{:?}: {:?} {:?}",
            r.session,
            r.error,
            r.differences
        );
    }

    // Memory is keyed by tenant.
    let v = serde_json::json!({"note": "acme only"});
    a.memory_put("acme", "shared/notes", "k", &v, &["pii".to_owned()])
        .expect("put");
    assert_eq!(
        b.memory_get("acme", "shared/notes", "k").expect("get"),
        Some((v, vec!["pii".to_owned()]))
    );
    assert_eq!(
        b.memory_get("globex", "shared/notes", "k").expect("get"),
        None
    );

    // Checkpoints: in sequence; a signed append is all or nothing.
    let key = SigningKey::generate().expect("key");
    let head = Head {
        tenant: "shopco".into(),
        session: "c1".into(),
        events: ea.len() as u64,
        head: ea.last().expect("event").hash.clone(),
        closed: false,
    };
    let c0 = key.sign(0, kernel::event::GENESIS.to_owned(), head.clone());
    a.put_checkpoint(&c0).expect("first checkpoint");
    assert!(matches!(
        b.put_checkpoint(&c0),
        Err(StoreError::CheckpointConflict {
            expected: 0,
            found: 1
        })
    ));
    assert_eq!(b.last_checkpoint().expect("last"), Some(c0.clone()));
    // A signed append whose step conflicts writes neither the step nor the checkpoint.
    let c1 = key.sign(1, c0.hash(), head);
    assert!(matches!(
        b.append_signed("shopco", "c1", &step, &eb, &c1),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(a.checkpoints().expect("checkpoints"), vec![c0]);
}

#[test]
fn the_in_memory_store_conforms() {
    let store = InMemoryStore::default();
    conformance(&store, &store);
}

#[test]
fn the_sqlite_store_conforms() {
    let path = std::env::temp_dir().join(format!("arbiter-conformance-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let a = SqliteStore::open(&path).expect("a");
    let b = SqliteStore::open(&path).expect("b");
    conformance(&a, &b);
}

#[test]
fn the_postgres_store_conforms() {
    let Some(db) = common::PgSchema::new("conformance") else {
        return;
    };
    let a = PostgresStore::open(&db.url).expect("a");
    let b = PostgresStore::open(&db.url).expect("b");
    conformance(&a, &b);
}
