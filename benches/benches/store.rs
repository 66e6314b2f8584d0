//! The durable path: appending steps with their events to SQLite (one `BEGIN IMMEDIATE`
//! transaction per step, `synchronous=FULL`, WAL), with group commit from threads and from the
//! driver, and `audit verify` per 1,000 events.
//!
//! `cargo bench -p benches --bench store`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kernel::event::{encode_jsonl, verify_jsonl};
use kernel::{Event, Intent, Mode, Session, SessionConfig};
use runtime::store::sqlite::SqliteStore;
use runtime::store::{SessionLog, SessionRecord, SessionStore, Step};

/// The allocator the `arbiter` binary uses (see the README's Performance section).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let deployment = benches::demo();
    let config = SessionConfig {
        id: "bench".into(),
        tenant: "acme".into(),
        user: "alice@acme".into(),
        agent: "assistant@acme".into(),
        budget: "acme".into(),
        mode: Mode::Enforce,
    };
    // A real log: the start, then clock ticks, each a decision and one hashed event.
    let mut session = Session::new(deployment.clone(), config.clone()).expect("session");
    let mut log: Vec<(Step, Vec<Event>)> = Vec::new();
    let mut intent = Intent::Start {
        request: "bench".into(),
    };
    let mut events_total = 0;
    while events_total < 1000 {
        let n = log.len() as u64;
        let events = session.step(intent.clone(), n * 10).expect("step").events;
        events_total += events.len();
        log.push((
            Step {
                n,
                t_ms: n * 10,
                intent,
            },
            events,
        ));
        intent = Intent::Tick;
    }
    let dir = std::env::temp_dir().join(format!("arbiter-bench-store-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events_total as u64));
    let mut round = 0;
    group.bench_function(
        "sqlite: append 1,000 events, one transaction per step",
        |b| {
            b.iter_batched(
                || {
                    round += 1;
                    let store = SqliteStore::open(&dir.join(format!("b{round}.db"))).expect("open");
                    let bundle = store.put_bundle(deployment.sources()).expect("bundle");
                    let record = SessionRecord {
                        config: config.clone(),
                        bundle,
                        started_wall_ms: 0,
                    };
                    store.create(&record).expect("create");
                    store
                },
                |store| {
                    for (step, events) in &log {
                        black_box(store.append("acme", "bench", step, events).is_ok());
                    }
                },
                BatchSize::PerIteration,
            )
        },
    );
    // Group commit: 32, then 128 sessions appending concurrently, each the same 1,000-event log
    // under its own id; every append still waits for its commit. More writers make larger groups
    // for each fsync.
    for sessions in [32usize, 128] {
        group.throughput(Throughput::Elements((events_total * sessions) as u64));
        let name = format!("sqlite group commit: {sessions} sessions × 1,000 events");
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    let store = SqliteStore::open(&dir.join(format!("g{round}.db"))).expect("open");
                    let store = std::sync::Arc::new(
                        runtime::store::GroupCommit::new(store).expect("group commit"),
                    );
                    for i in 0..sessions {
                        let mut c = config.clone();
                        c.id = format!("s{i}");
                        store.begin(&deployment, &c, 0).expect("begin");
                    }
                    store
                },
                |store| {
                    std::thread::scope(|scope| {
                        for i in 0..sessions {
                            let (store, log) = (&store, &log);
                            scope.spawn(move || {
                                let id = format!("s{i}");
                                for (step, events) in log {
                                    black_box(store.append("acme", &id, step, events).is_ok());
                                }
                            });
                        }
                    });
                },
                BatchSize::PerIteration,
            )
        });
    }
    // The driver end to end: 256 scripted sessions (10 tool calls each) on a 2-worker runtime, every
    // step written ahead to SQLite through group commit before its effects run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio");
    let driven = 256;
    let per_session = {
        let probe = std::sync::Arc::new(benches::ChainCheck::default());
        let runtime =
            driver_runtime(std::sync::Arc::clone(&probe) as std::sync::Arc<dyn SessionLog>);
        rt.block_on(runtime.run(
            benches::acme_session(&deployment, 0),
            "loop".into(),
            Vec::new(),
            None,
        ));
        probe.events.load(std::sync::atomic::Ordering::Relaxed)
    };
    group.throughput(Throughput::Elements((per_session * driven) as u64));
    group.bench_function(
        format!("driver: {driven} sessions × {per_session} events, group commit"),
        |b| {
            b.iter_batched(
                || {
                    round += 1;
                    let store = SqliteStore::open(&dir.join(format!("d{round}.db"))).expect("open");
                    let store: std::sync::Arc<dyn SessionLog> = std::sync::Arc::new(
                        runtime::store::GroupCommit::new(store).expect("group commit"),
                    );
                    std::sync::Arc::new(driver_runtime(store))
                },
                |runtime| {
                    rt.block_on(async {
                        let handles: Vec<_> = (0..driven)
                            .map(|i| {
                                let session = benches::acme_session(&deployment, i);
                                runtime.spawn(
                                    session,
                                    "loop".into(),
                                    runtime::EventHub::new(1),
                                    None,
                                )
                            })
                            .collect();
                        for h in handles {
                            let outcome = h.join().await.expect("task");
                            assert!(outcome.store_error.is_none(), "{:?}", outcome.store_error);
                        }
                    })
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.throughput(Throughput::Elements(events_total as u64));
    let events: Vec<Event> = log.into_iter().flat_map(|(_, e)| e).collect();
    let text = encode_jsonl(&events);
    assert!(verify_jsonl(&text).is_ok());
    group.bench_function("audit verify: 1,000 events of JSONL", |b| {
        b.iter(|| black_box(verify_jsonl(black_box(&text)).is_ok()))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scripted 10-tool-call loop, keeping no events, writing ahead to `store`.
/// The scripted loop with `log` behind it (its memory stays the runtime's: the loop reads none).
fn driver_runtime(log: std::sync::Arc<dyn SessionLog>) -> runtime::Runtime {
    runtime::Runtime::new(
        std::sync::Arc::new(benches::LoopModel { tool_calls: 10 }),
        "small",
    )
    .tool(
        "read_crm",
        std::sync::Arc::new(benches::CrmTool {
            gate: None,
            started: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }),
    )
    .keep_events(false)
    .log(log)
}

criterion_group!(benches, bench);
criterion_main!(benches);
