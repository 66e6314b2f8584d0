//! What only the PostgreSQL store does, against a real server (`ARBITER_PG_URL`, started by
//! `.ci/run`): session leases whose fencing tokens the **database** enforces — a stale or missing
//! token is refused by its trigger even when written with plain SQL, behind the store's back —
//! takeover after expiry, renewal reporting lost leases, release; notifications of every append
//! and catch-up by `seq`; numbered migrations, and a database newer than the build refused; a
//! clustered service whose step is fenced off rebuilding its copy from the log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use kernel::event::Event;
use kernel::{Intent, Session, Step};
use runtime::store::postgres::lease::Acquired;
use runtime::store::postgres::listen::Appended;
use runtime::store::postgres::schema;
use runtime::store::{PostgresStore, SessionLog, SessionStore, StoreError};

use common::shopco as config;

/// A session's next steps: ticks after a start, each with its events.
struct Script {
    session: Session,
    n: u64,
}

impl Script {
    fn new(store: &PostgresStore, id: &str) -> Self {
        let deployment = Arc::new(
            kernel::pack::load_packs(&common::repo().join("policies"), &["support"])
                .expect("packs"),
        );
        store.begin(&deployment, &config(id), 0).expect("begin");
        let session = Session::new(deployment, config(id)).expect("session");
        Self { session, n: 0 }
    }

    fn next(&mut self) -> (Step, Vec<Event>) {
        let intent = if self.n == 0 {
            Intent::Start {
                request: "hi".into(),
            }
        } else {
            Intent::Tick
        };
        let t_ms = self.n * 10;
        let events = match self.session.step(intent.clone(), t_ms) {
            Ok(t) => t.events,
            Err(r) => vec![*r.event],
        };
        let step = Step {
            n: self.n,
            t_ms,
            intent,
        };
        self.n += 1;
        (step, events)
    }
}

fn held(a: Acquired) -> i64 {
    match a {
        Acquired::Held(l) => l.fence,
        Acquired::Busy { owner, .. } => panic!("busy: held by {owner}"),
    }
}

#[test]
fn leases_fence_writes_in_the_database() {
    let Some(db) = common::PgSchema::new("leases") else {
        return;
    };
    let a = PostgresStore::open(&db.url).expect("a");
    let b = PostgresStore::open(&db.url).expect("b");
    let mut s = Script::new(&a, "s1");

    // No lease yet: a single-instance writer (arbiter test, play) appends without one.
    let (step, events) = s.next();
    a.append("shopco", "s1", &step, &events)
        .expect("unleased append");

    // A takes the lease: its appends carry the token; B is told who holds it.
    let short = Duration::from_millis(400);
    let f1 = held(a.acquire("shopco", "s1", "a", short).expect("acquire"));
    assert!(a.holds("shopco", "s1"));
    let (step, events) = s.next();
    a.append("shopco", "s1", &step, &events)
        .expect("leased append");
    match b.acquire("shopco", "s1", "b", short).expect("b tries") {
        Acquired::Busy {
            owner,
            remaining_ms,
        } => {
            assert_eq!(owner, "a");
            assert!(remaining_ms > 0 && remaining_ms <= 400, "{remaining_ms}");
        }
        other => panic!("B took a live lease: {other:?}"),
    }

    // B writes without the lease: refused by the database, nothing written.
    let (step, events) = s.next();
    let refused = b.append("shopco", "s1", &step, &events);
    assert!(
        matches!(&refused, Err(StoreError::Fenced(m)) if m.contains("token none refused")),
        "{refused:?}"
    );
    // Plain SQL with a stale token, behind any store's back: the trigger refuses it too.
    let mut raw = db.client();
    let err = raw
        .execute(
            "INSERT INTO arbiter_steps (tenant, session, n, step, fence) VALUES ('shopco', 's1', 2, '{}', $1)",
            &[&(f1 - 1)],
        )
        .expect_err("a stale token written by hand");
    assert_eq!(err.code().map(|c| c.code()), Some("AR001"), "{err:?}");
    assert_eq!(a.load("shopco", "s1").expect("load").steps.len(), 2);

    // A stalls past its expiry: its own write is refused though nobody has taken over yet.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        b.expired().expect("expired"),
        vec![("shopco".to_owned(), "s1".to_owned())]
    );
    let late = a.append("shopco", "s1", &step, &events);
    assert!(
        matches!(&late, Err(StoreError::Fenced(m)) if m.contains("expired")),
        "{late:?}"
    );

    // B takes over: the token rises, B writes, A's stale token is refused, A's renewal reports
    // the loss.
    let f2 = held(
        b.acquire("shopco", "s1", "b", Duration::from_secs(30))
            .expect("take over"),
    );
    assert_eq!(f2, f1 + 1);
    b.append("shopco", "s1", &step, &events).expect("B appends");
    let (step, events) = s.next();
    let stale = a.append("shopco", "s1", &step, &events);
    assert!(
        matches!(&stale, Err(StoreError::Fenced(m)) if m.contains(&format!("token {f1} refused"))),
        "{stale:?}"
    );
    assert_eq!(
        a.renew("a", short).expect("renew"),
        vec![("shopco".to_owned(), "s1".to_owned())]
    );
    assert!(!a.holds("shopco", "s1"));
    assert!(
        b.renew("b", Duration::from_secs(30))
            .expect("renew")
            .is_empty()
    );

    // Release: the next taker need not wait, and gets a new token.
    b.release("shopco", "s1", "b").expect("release");
    let f3 = held(
        a.acquire("shopco", "s1", "a", short)
            .expect("after release"),
    );
    assert_eq!(f3, f2 + 1);
    a.append("shopco", "s1", &step, &events).expect("A again");
    // Holding it again keeps the token.
    assert_eq!(
        held(a.acquire("shopco", "s1", "a", short).expect("again")),
        f3
    );

    let stored = b.load("shopco", "s1").expect("load");
    assert_eq!(stored.steps.len(), 4);
    assert_eq!(
        stored.steps.iter().map(|s| s.n).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn appends_notify_and_followers_catch_up_by_seq() {
    let Some(db) = common::PgSchema::new("notify") else {
        return;
    };
    let a = PostgresStore::open(&db.url).expect("a");
    let b = PostgresStore::open(&db.url).expect("b");
    let (tx, mut rx) = tokio::sync::broadcast::channel(64);
    let _listener = b.listen(tx).expect("listen");
    // LISTEN is in place once `listen` returns.
    let mut s = Script::new(&a, "n1");
    let mut written = 0;
    for _ in 0..3 {
        let (step, events) = s.next();
        written += events.len() as u64;
        a.append("shopco", "n1", &step, &events).expect("append");
    }
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        match rx.try_recv() {
            Ok(Appended::To {
                tenant,
                session,
                events,
            }) if tenant == "shopco" && session == "n1" => seen.push(events),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(seen.len(), 3, "notifications: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&written));

    // Catch-up from where a follower stands: exactly the tail, in order.
    let whole = b.load("shopco", "n1").expect("load");
    let (steps, events) = b.load_after("shopco", "n1", 1, 2).expect("tail");
    assert_eq!(steps, whole.steps[1..].to_vec());
    assert_eq!(events, whole.events[2..].to_vec());
}

#[test]
fn migrations_run_once_and_a_newer_database_is_refused() {
    let Some(db) = common::PgSchema::new("migrate") else {
        return;
    };
    let first = PostgresStore::open(&db.url).expect("first open migrates");
    drop(first);
    let _again = PostgresStore::open(&db.url).expect("second open finds it done");
    let mut raw = db.client();
    let versions: Vec<i64> = raw
        .query("SELECT version FROM arbiter_schema ORDER BY version", &[])
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=schema::VERSION).collect::<Vec<_>>());
    raw.execute(
        "INSERT INTO arbiter_schema (version) VALUES ($1)",
        &[&(schema::VERSION + 1)],
    )
    .expect("from the future");
    let refused = PostgresStore::open(&db.url).err().expect("refused");
    assert!(refused.to_string().contains("upgrade Arbiter"), "{refused}");
}

/// A clustered service whose step the database refuses (fenced off: here by a trigger the test
/// adds, refusing the first step it sees, as the lease trigger does once a lease is lost) answers
/// 503 and rebuilds its copy of the session from the log, so the same instance takes the next
/// step instead of keeping the session broken; store and copy agree afterwards.
#[test]
fn a_fenced_off_step_leaves_the_session_reloaded_from_the_log() {
    use runtime::service::api::CreateSession;
    use runtime::service::auth::{Caller, Tokens};
    use runtime::service::error::ApiError;
    use runtime::service::{ClusterConfig, PolicySource, Service};
    use serde_json::json;

    let Some(db) = common::PgSchema::new("refenced") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = PostgresStore::open(&db.url).expect("open");
    let policies = PolicySource {
        root: common::repo().join("policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(policies, Tokens::default(), Arc::new(store.clone()))
        .expect("service")
        .clustered(ClusterConfig {
            store: store.clone(),
            instance: "a".into(),
            lease: Duration::from_secs(5),
        })
        .expect("clustered");
    let carol = Caller {
        tenant: "shopco".into(),
        user: "carol@shopco".into(),
        admin: false,
    };
    let open: CreateSession = serde_json::from_value(json!({
        "id": "s1", "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"
    }))
    .expect("body");
    rt.block_on(service.create(&carol, open)).expect("created");
    db.client()
        .batch_execute(
            "CREATE SEQUENCE refuse_once;
             CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('refuse_once') = 1 THEN
                 RAISE EXCEPTION 'test: fenced off' USING ERRCODE = 'AR001';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_once BEFORE INSERT ON arbiter_steps
               FOR EACH ROW EXECUTE FUNCTION refuse_once();",
        )
        .expect("trigger");
    let call =
        json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}});
    let refused = rt.block_on(service.step(&carol, "s1", call.clone())).err();
    assert!(
        matches!(&refused, Some(ApiError::Unavailable(m)) if m.contains("fenced off")),
        "{refused:?}"
    );
    let asked = rt
        .block_on(service.step(&carol, "s1", call))
        .expect("the next step is taken");
    assert!(asked.decision.is_some(), "{asked:?}");
    let view = rt.block_on(service.get(&carol, "s1")).expect("view");
    let stored = store.load("shopco", "s1").expect("load");
    assert_eq!(
        view.last_seq,
        stored.events.last().map(|e| e.seq),
        "store and copy agree"
    );
    assert!(
        stored
            .events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64),
        "no gap in the log"
    );
}
