//! The SQLite store end to end: every shipped scenario recorded re-checks to the same decisions;
//! tampering with any row, blob or bundle is caught; a file written at schema version 1 migrates
//! and still verifies. What every store must do (bundles, conflicts, memory by tenant,
//! checkpoints) is `store_conformance.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kernel::Step;
use kernel::{Intent, Mode, Session, SessionConfig};
use runtime::store::sqlite::SqliteStore;
use runtime::store::{InMemoryStore, SessionLog, SessionStore, StoreError};
use rusqlite::{Connection, params};

fn temp_db(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("arbiter-store-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Replays and records the named scenarios (all of them when empty) into `store`.
fn record_scenarios(store: &dyn SessionStore, only: &[&str]) -> usize {
    let files = eval::scenario_files(&[common::repo().join("scenarios")]).expect("scenarios");
    let mut n = 0;
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !only.is_empty() && !only.contains(&name.as_str()) {
            continue;
        }
        let (loaded, run, failures) = eval::run_file(&file).expect("scenario runs");
        assert!(failures.is_empty(), "{name}: {failures:?}");
        let deployment = eval::deployment(&loaded).expect("deployment");
        eval::audit::record(store, &deployment, &loaded.session_config(), &run).expect("record");
        n += 1;
    }
    n
}

fn verify_failures(store: &dyn SessionStore) -> Vec<String> {
    eval::audit::verify(store, None)
        .expect("verify")
        .sessions
        .into_iter()
        .filter_map(|v| match v.result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("{}: {e}", v.session.1)),
            Err(e) => Some(format!("{}: {e}", v.session.1)),
        })
        .collect()
}

#[test]
fn every_shipped_scenario_rechecks_to_the_same_events_byte_for_byte() {
    let path = temp_db("all");
    let store = SqliteStore::open(&path).expect("open");
    let n = record_scenarios(&store, &[]);
    assert!(n >= 80, "{n}");
    assert_eq!(verify_failures(&store), Vec::<String>::new());
    let reports = eval::audit::recheck(&store, None).expect("recheck");
    assert_eq!(reports.len(), n);
    let events: usize = reports.iter().map(|r| r.checked).sum();
    assert!(events > 1000, "{events}");
    for r in &reports {
        assert!(
            r.error.is_none() && r.differences.is_empty(),
            "{}: {:?} {:?}",
            r.session.1,
            r.error,
            r.differences
        );
    }
}

#[test]
fn an_altered_policy_text_or_a_changed_policy_is_flagged() {
    let path = temp_db("altered");
    let store = SqliteStore::open(&path).expect("open");
    record_scenarios(
        &store,
        &[
            "refund_approval_granted",
            "multi_step_refund_with_crm_retries",
        ],
    );
    drop(store);

    // Someone edits the stored policy text: the bundle no longer matches its decisions' hashes.
    let conn = Connection::open(&path).expect("raw");
    let changed = conn
        .execute(
            "UPDATE bundles SET sources = replace(sources, 'context.input.amount > 5000', 'context.input.amount > 20000')",
            [],
        )
        .expect("update");
    assert!(changed >= 1);
    drop(conn);
    let store = SqliteStore::open(&path).expect("open");
    let reports = eval::audit::recheck(&store, None).expect("recheck");
    assert!(
        reports
            .iter()
            .all(|r| r.error.as_deref().is_some_and(|e| e.contains("altered"))),
        "{reports:?}"
    );

    // Re-checked against an edited policy set, the approval that was needed no longer is.
    let dir = std::env::temp_dir().join(format!("arbiter-recheck-policies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_tree(&common::repo().join("policies"), &dir);
    let support = dir.join("support/support.cedar");
    let text = std::fs::read_to_string(&support).expect("read");
    std::fs::write(
        &support,
        text.replace(
            "context.input.amount > 5000",
            "context.input.amount > 20000",
        ),
    )
    .expect("write");
    let edited = Arc::new(kernel::pack::load_packs(&dir, &["support"]).expect("edited packs"));
    let reports = eval::audit::recheck(&store, Some(edited)).expect("recheck");
    let refund = reports
        .iter()
        .find(|r| r.session.1 == "refund_approval_granted")
        .expect("session");
    assert!(refund.error.is_none(), "{:?}", refund.error);
    assert!(
        refund
            .differences
            .iter()
            .any(|d| d.recorded.contains("support.refund.approval")),
        "{:?}",
        refund.differences
    );
    let other = reports
        .iter()
        .find(|r| r.session.1 == "multi_step_refund_with_crm_retries")
        .expect("session");
    assert!(other.differences.is_empty(), "{:?}", other.differences);
}

/// Runs `sql` on the raw file, then says what verification reports.
fn tamper(name: &str, sql: &str) -> Vec<String> {
    let path = temp_db(name);
    let store = SqliteStore::open(&path).expect("open");
    // This one has a model output large enough to be stored as a blob.
    record_scenarios(&store, &["refund_session_cap"]);
    assert_eq!(verify_failures(&store), Vec::<String>::new());
    drop(store);
    let conn = Connection::open(&path).expect("raw");
    conn.execute_batch(sql).expect("tamper");
    drop(conn);
    let store = SqliteStore::open(&path).expect("open");
    verify_failures(&store)
}

#[test]
fn tampered_deleted_reordered_rows_and_blobs_are_detected() {
    // A step's events are one JSON array in its row (schema version 4 on).
    let edited = tamper(
        "edit",
        "UPDATE steps SET events = replace(events, '\"mode\":\"enforce\"', '\"mode\":\"log_only\"') WHERE n = 0",
    );
    assert!(edited.iter().any(|e| e.contains("seq 0")), "{edited:?}");

    let deleted = tamper(
        "delete",
        "UPDATE steps SET events = (SELECT json_group_array(json(e.value)) FROM json_each(steps.events) AS e
                                    WHERE json_extract(e.value, '$.seq') != 3)
         WHERE EXISTS (SELECT 1 FROM json_each(steps.events) WHERE json_extract(value, '$.seq') = 3)",
    );
    assert_eq!(deleted.len(), 1, "{deleted:?}");

    let reordered = tamper(
        "reorder",
        "UPDATE steps SET n = -1 WHERE n = 1; UPDATE steps SET n = 1 WHERE n = 2; UPDATE steps SET n = 2 WHERE n = -1;",
    );
    assert_eq!(reordered.len(), 1, "{reordered:?}");

    let blob = tamper(
        "blob",
        "UPDATE tenant_blobs SET body = replace(body, 'ord-', 'ORD-')",
    );
    assert_eq!(blob.len(), 1, "a blob edit must break the chain: {blob:?}");
}

fn config(id: &str) -> SessionConfig {
    SessionConfig {
        id: id.into(),
        tenant: "shopco".into(),
        user: "carol@shopco".into(),
        agent: "support@shopco".into(),
        budget: "shopco".into(),
        mode: Mode::Enforce,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_runtime_writes_ahead_and_a_second_runtime_is_refused() {
    use runtime::Runtime;
    let path = temp_db("runtime");
    let deployment = Arc::new(
        kernel::pack::load_packs(&common::repo().join("policies"), &["support"]).expect("packs"),
    );
    let turn: eval::scenario::Turn = toml::from_str("answer = \"done\"").expect("turn");
    let model: Arc<dyn runtime::Model> =
        Arc::new(eval::scripted::ScriptedModel::new(vec![turn.clone(), turn]));
    let first = Runtime::new(Arc::clone(&model), "small")
        .store(Arc::new(SqliteStore::open(&path).expect("open")));
    let out = first
        .run(
            Session::new(Arc::clone(&deployment), config("rt1")).expect("s"),
            "hi".into(),
            Vec::new(),
            None,
        )
        .await;
    assert_eq!(out.status, kernel::Status::Completed);
    assert!(out.store_error.is_none());
    let store = SqliteStore::open(&path).expect("open");
    let stored = store.load("shopco", "rt1").expect("load");
    assert_eq!(
        stored.events, out.events,
        "the log holds exactly what was published"
    );

    let second =
        Runtime::new(model, "small").store(Arc::new(SqliteStore::open(&path).expect("open")));
    let out = second
        .run(
            Session::new(deployment, config("rt1")).expect("s"),
            "again".into(),
            Vec::new(),
            None,
        )
        .await;
    assert!(
        matches!(out.store_error, Some(StoreError::Exists { .. })),
        "{:?}",
        out.store_error
    );
    assert!(out.events.is_empty());
    assert_eq!(
        store.load("shopco", "rt1").expect("load").events,
        stored.events
    );
}

#[test]
fn files_from_every_earlier_version_migrate_and_still_verify() {
    for version in 1..runtime::store::sqlite::MIGRATIONS.len() {
        migrates_from(version);
    }
}

fn migrates_from(version: usize) {
    // Record into memory, then write the rows the way schema version 1 did (whole events, no
    // blobs); later versions only added tables, so those rows are valid at any earlier version.
    let memory = InMemoryStore::default();
    record_scenarios(&memory, &["untrusted_ticket_exfiltration"]);
    let (tenant, id) = memory.sessions().expect("sessions").remove(0);
    let stored = memory.load(&tenant, &id).expect("load");
    let bundle = memory.bundle(&stored.record.bundle).expect("bundle");

    let path = temp_db(&format!("v{version}"));
    let old = SqliteStore::open_at_version(&path, version).expect("old version");
    assert_eq!(old.version().expect("version"), version);
    drop(old);
    write_v1(&path, &stored, &bundle);

    let store = SqliteStore::open(&path).expect("migrates");
    assert_eq!(
        store.version().expect("version"),
        runtime::store::sqlite::MIGRATIONS.len()
    );
    assert_eq!(
        store.load(&tenant, &id).expect("load").events,
        stored.events
    );
    assert_eq!(verify_failures(&store), Vec::<String>::new());
    let reports = eval::audit::recheck(&store, None).expect("recheck");
    assert!(
        reports[0].error.is_none() && reports[0].differences.is_empty(),
        "{reports:?}"
    );
    // An append in the current layout (events in the step row) continues the migrated log, whose
    // length it reads from the legacy `events` rows.
    let next = Step {
        n: stored.steps.len() as u64,
        t_ms: 10_000,
        intent: Intent::Tick,
    };
    let mut session = Session::new(
        Arc::new(bundle.build().expect("bundle builds")),
        stored.record.config.clone(),
    )
    .expect("session");
    for s in &stored.steps {
        let _ = session.step(s.intent.clone(), s.t_ms);
    }
    let events = match session.step(Intent::Tick, 10_000) {
        Ok(t) => t.events,
        Err(r) => vec![*r.event],
    };
    store
        .append(&tenant, &id, &next, &events)
        .expect("append after migration");
    assert_eq!(verify_failures(&store), Vec::<String>::new());
}

fn write_v1(path: &Path, stored: &runtime::store::StoredSession, bundle: &kernel::BundleSources) {
    let conn = Connection::open(path).expect("raw");
    let c = &stored.record.config;
    conn.execute(
        "INSERT INTO bundles (hash, sources) VALUES (?1, ?2)",
        params![
            stored.record.bundle,
            serde_json::to_string(bundle).expect("json")
        ],
    )
    .expect("bundle");
    conn.execute(
        "INSERT INTO sessions (tenant, id, record) VALUES (?1, ?2, ?3)",
        params![
            c.tenant,
            c.id,
            serde_json::to_string(&stored.record).expect("json")
        ],
    )
    .expect("session");
    for s in &stored.steps {
        conn.execute(
            "INSERT INTO steps (tenant, session, n, t_ms, intent) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                c.tenant,
                c.id,
                s.n as i64,
                s.t_ms as i64,
                serde_json::to_string(&s.intent).expect("json")
            ],
        )
        .expect("step");
    }
    for e in &stored.events {
        conn.execute(
            "INSERT INTO events (tenant, session, seq, event) VALUES (?1, ?2, ?3, ?4)",
            params![
                c.tenant,
                c.id,
                e.seq as i64,
                serde_json::to_string(e).expect("json")
            ],
        )
        .expect("event");
    }
}

#[test]
fn a_session_cut_while_waiting_for_approval_resumes_with_the_same_request() {
    // The whole run, recorded; then the log cut right after the approval was requested, as if the
    // process had died while the approver was thinking.
    let file = common::repo().join("scenarios/support/refund_approval_granted.toml");
    let (loaded, full, _) = eval::run_file(&file).expect("scenario runs");
    let deployment = Arc::new(eval::deployment(&loaded).expect("deployment"));
    let path = temp_db("approval");
    let store = SqliteStore::open(&path).expect("open");
    eval::audit::record(&store, &deployment, &loaded.session_config(), &full).expect("record");
    let requested = full
        .events
        .iter()
        .position(|e| matches!(e.body, kernel::EventBody::ApprovalRequested { .. }))
        .expect("an approval request") as i64;
    let mut seen = 0;
    let cut_step = full
        .steps
        .iter()
        .position(|(_, n)| {
            seen += n;
            seen as i64 > requested
        })
        .expect("the step that asked") as i64;
    drop(store);
    let conn = Connection::open(&path).expect("raw");
    conn.execute("DELETE FROM events WHERE seq > ?1", [requested])
        .expect("cut events");
    conn.execute("DELETE FROM steps WHERE n > ?1", [cut_step])
        .expect("cut steps");
    drop(conn);

    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let durable = eval::resumable::Resumable::open(
        Arc::clone(&store),
        &deployment,
        &loaded.session_config(),
        Default::default(),
    )
    .expect("resume");
    let resumed = eval::replay::replay_resumable(&loaded, Arc::clone(&deployment), durable)
        .expect("resumed run");
    // Same request id, same expiry, same approval, same everything.
    assert_eq!(resumed.events, full.events);
    let (tenant, id) = (&loaded.session_config().tenant, &loaded.session_config().id);
    assert_eq!(store.load(tenant, id).expect("load").events, full.events);
}

/// A real log of `ticks` clock ticks after the start, for session `id`.
fn tick_log(
    deployment: &Arc<kernel::Deployment>,
    id: &str,
    ticks: u64,
) -> Vec<(Step, Vec<kernel::Event>)> {
    let mut s = Session::new(Arc::clone(deployment), config(id)).expect("session");
    let mut log = Vec::new();
    let mut intent = Intent::Start {
        request: "hi".into(),
    };
    for n in 0..=ticks {
        let events = s.step(intent.clone(), n * 10).expect("step").events;
        log.push((
            Step {
                n,
                t_ms: n * 10,
                intent: intent.clone(),
            },
            events,
        ));
        intent = Intent::Tick;
    }
    log
}

#[test]
fn group_commit_keeps_every_concurrent_log_whole_and_refuses_conflicts_alone() {
    use runtime::store::GroupCommit;
    let path = temp_db("group");
    let store =
        Arc::new(GroupCommit::new(SqliteStore::open(&path).expect("open")).expect("group commit"));
    let deployment = Arc::new(
        kernel::pack::load_packs(&common::repo().join("policies"), &["support"]).expect("packs"),
    );
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let deployment = Arc::clone(&deployment);
            std::thread::spawn(move || {
                let id = format!("g{i}");
                store.begin(&deployment, &config(&id), 0).expect("begin");
                let log = tick_log(&deployment, &id, 40);
                for (step, events) in &log {
                    store.append("shopco", &id, step, events).expect("append");
                }
                // A second writer's stale append: refused, and nothing else is disturbed.
                let (step, events) = &log[3];
                let stale = store.append("shopco", &id, step, events);
                assert!(
                    matches!(
                        stale,
                        Err(StoreError::Conflict {
                            expected: 3,
                            found: 41,
                            ..
                        })
                    ),
                    "{stale:?}"
                );
                // Creations go through the writer too: a taken id is refused alone.
                let again = store.begin(&deployment, &config(&id), 0);
                assert!(matches!(again, Err(StoreError::Exists { .. })), "{again:?}");
                log.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let events = t.join().expect("thread");
        let stored = store.load("shopco", &format!("g{i}")).expect("load");
        assert_eq!(stored.steps.len(), 41);
        assert_eq!(stored.events, events);
    }
    assert_eq!(verify_failures(store.as_ref()), Vec::<String>::new());
}

/// Data at the deepest nesting intake accepts (`kernel::MAX_JSON_DEPTH`) reads back from every
/// reader: the SQLite store (steps and events), JSONL, and `audit verify` (issue 16, 2).
#[test]
fn data_at_the_depth_bound_reads_back_from_the_store_and_jsonl() {
    let mut deep = serde_json::json!("bottom");
    for _ in 0..kernel::MAX_JSON_DEPTH {
        deep = serde_json::json!([deep]);
    }
    let store = SqliteStore::open(&temp_db("deep")).expect("open");
    let events = record_output(&store, "deep", deep);
    assert!(events.iter().any(|e| e.body.kind() == "tool_returned"));
    let loaded = store
        .load("shopco", "deep")
        .expect("the store reads it back");
    assert_eq!(loaded.events, events);
    let text = kernel::event::encode_jsonl(&events);
    assert_eq!(
        kernel::event::decode_jsonl(&text).expect("jsonl reads back"),
        events
    );
    kernel::event::verify_jsonl(&text).expect("verifies");
    assert!(verify_failures(&store).is_empty());
}

/// Records session `id` (tenant shopco) whose one tool call returns `output`; its events.
fn record_output(store: &SqliteStore, id: &str, output: serde_json::Value) -> Vec<kernel::Event> {
    let root = common::repo().join("policies");
    let deployment = Arc::new(kernel::pack::load_packs(&root, &["support"]).expect("packs"));
    store.begin(&deployment, &config(id), 0).expect("begin");
    let mut session = Session::new(Arc::clone(&deployment), config(id)).expect("session");
    let mut events = Vec::new();
    let mut n = 0;
    let mut apply = |session: &mut Session, intent: Intent, t_ms: u64| {
        let produced = match session.step(intent.clone(), t_ms) {
            Ok(t) => t,
            Err(r) => panic!("{r}"),
        };
        store
            .append("shopco", id, &Step { n, t_ms, intent }, &produced.events)
            .expect("append");
        n += 1;
        events.extend(produced.events.clone());
        produced
    };
    apply(
        &mut session,
        Intent::Start {
            request: "hi".into(),
        },
        0,
    );
    let t = apply(
        &mut session,
        Intent::CallTool {
            tool: "lookup_order".into(),
            input: serde_json::json!({"order_id": "ord-1"}),
            estimated_cost: 0,
        },
        1,
    );
    let call_id = t
        .effects
        .iter()
        .find_map(|e| match e {
            kernel::Effect::CallTool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .expect("a tool call");
    apply(
        &mut session,
        Intent::ToolReturned {
            call_id,
            output,
            cost: 0,
        },
        2,
    );
    events
}

/// Tool data can look like the store's own blob references: `{"$blob": "<hash>"}` in an output,
/// even naming another session's stored payload. It must read back as the data it was, never as
/// a reference (issue 16, 2).
#[test]
fn data_that_imitates_a_blob_reference_reads_back_as_data() {
    let path = temp_db("imitation");
    let store = SqliteStore::open(&path).expect("open");
    // Session a's large output is stored out of line.
    let secret = serde_json::json!({"card": "4111 1111 1111 1111", "pad": "x".repeat(400)});
    let a = record_output(&store, "a", secret.clone());
    let hash = kernel::event::sha256_hex(secret.to_string().as_bytes());
    // Session b's tool answers with what looks like a reference to it; c's with a dangling one.
    let b = record_output(&store, "b", serde_json::json!({"$blob": hash}));
    let c = record_output(&store, "c", serde_json::json!({"$blob": "0000"}));
    assert_eq!(store.load("shopco", "a").expect("a").events, a);
    assert_eq!(store.load("shopco", "b").expect("b reads back").events, b);
    assert_eq!(store.load("shopco", "c").expect("c reads back").events, c);
    assert!(
        verify_failures(&store).is_empty(),
        "{:?}",
        verify_failures(&store)
    );
    let text = serde_json::to_string(&b).expect("json");
    assert!(
        !text.contains("4111"),
        "another session's payload leaked into b"
    );
}

/// Stored payloads are kept per tenant: the same payload recorded by two tenants is two blobs,
/// and one tenant's blob never completes another tenant's events.
#[test]
fn blobs_are_scoped_by_tenant() {
    let path = temp_db("scoped");
    let store = SqliteStore::open(&path).expect("open");
    let payload = serde_json::json!({"pad": "y".repeat(400)});
    let events = record_output(&store, "a", payload);
    // The same events filed under another tenant (the store does not read them).
    let deployment = Arc::new(
        kernel::pack::load_packs(&common::repo().join("policies"), &["support"]).expect("packs"),
    );
    let mut other = config("a");
    other.tenant = "globex".into();
    store.begin(&deployment, &other, 0).expect("begin");
    let steps = store.load("shopco", "a").expect("a").steps;
    let mut at = 0;
    for (step, count) in steps.iter().zip([1usize, 2, 2]) {
        let _ = count;
        let end = events
            .iter()
            .position(|e| e.t_ms > step.t_ms)
            .unwrap_or(events.len());
        store
            .append("globex", "a", step, &events[at..end])
            .expect("append");
        at = end;
    }
    drop(store);
    let conn = Connection::open(&path).expect("raw");
    let kept: i64 = conn
        .query_row("SELECT COUNT(*) FROM tenant_blobs", [], |r| r.get(0))
        .expect("count");
    assert_eq!(kept, 2, "one blob per tenant");
    conn.execute("DELETE FROM tenant_blobs WHERE tenant = 'shopco'", [])
        .expect("delete");
    drop(conn);
    let store = SqliteStore::open(&path).expect("open");
    assert!(store.load("shopco", "a").is_err(), "shopco's blob is gone");
    assert_eq!(
        store
            .load("globex", "a")
            .expect("globex keeps its own")
            .events,
        events
    );
}

/// Rows written before schema version 5 marked moved fields in the event (`{"$blob": hash}`,
/// payloads in `blobs`); after migrating they still read back and verify.
#[test]
fn version_4_rows_with_blob_references_still_read_back() {
    let path = temp_db("v4blobs");
    let store = SqliteStore::open(&path).expect("open");
    let events = record_output(&store, "old", serde_json::json!({"pad": "z".repeat(400)}));
    drop(store);
    // Rewrite the rows the way version 4 wrote them.
    let conn = Connection::open(&path).expect("raw");
    let rows: Vec<(i64, String, String)> = conn
        .prepare("SELECT n, events, deflated FROM steps WHERE session = 'old'")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut rewritten = 0;
    for (n, text, deflated) in rows {
        let mut values: Vec<serde_json::Value> = serde_json::from_str(&text).expect("events");
        let moved: Vec<Vec<(String, String)>> = serde_json::from_str(&deflated).expect("moved");
        for (value, fields) in values.iter_mut().zip(&moved) {
            for (field, hash) in fields {
                value["payload"][field.as_str()] = serde_json::json!({"$blob": hash});
                rewritten += 1;
            }
        }
        conn.execute(
            "UPDATE steps SET events = ?1, deflated = NULL WHERE session = 'old' AND n = ?2",
            params![serde_json::to_string(&values).expect("json"), n],
        )
        .expect("update");
    }
    assert!(rewritten > 0, "the output must have been moved out");
    conn.execute_batch(
        "INSERT INTO blobs (hash, body) SELECT hash, body FROM tenant_blobs;
         DELETE FROM tenant_blobs;",
    )
    .expect("legacy blobs");
    drop(conn);
    let store = SqliteStore::open(&path).expect("open");
    assert_eq!(
        store.load("shopco", "old").expect("reads back").events,
        events
    );
    assert!(verify_failures(&store).is_empty());
}
