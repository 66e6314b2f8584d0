//! Sessions: heap per idle and per 100-event kernel session; 100,000 concurrent scripted sessions
//! in the driver (heap per waiting session, every event accounted for). Figures printed once; the
//! driver's time per step is `benches/driver.rs` (without this binary's counting allocator).
//!
//! `cargo bench -p benches --bench sessions`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kernel::{Effect, Intent, Session, Status};
use runtime::{EventHub, Runtime};

#[global_allocator]
static ALLOC: benches::Counting = benches::Counting;

const KIB: f64 = 1024.0;

/// Heap per started, idle kernel session, and per session after at least 100 events.
fn kernel_sessions(deployment: &Arc<kernel::Deployment>) {
    let n = 10_000;
    let before = benches::Counting::live();
    let idle: Vec<Session> = (0..n).map(|i| started(deployment, i)).collect();
    let per_idle = (benches::Counting::live() - before) as f64 / n as f64;
    drop(idle);
    let n = 1_000;
    let before = benches::Counting::live();
    let mut events = 0;
    let busy: Vec<Session> = (0..n)
        .map(|i| {
            let (s, e) = hundred_events(deployment, i);
            events += e;
            s
        })
        .collect();
    let per_busy = (benches::Counting::live() - before) as f64 / n as f64;
    println!(
        "kernel session: {:.1} KiB idle, {:.1} KiB after {} events",
        per_idle / KIB,
        per_busy / KIB,
        events / n
    );
    drop(busy);
}

fn started(deployment: &Arc<kernel::Deployment>, i: usize) -> Session {
    let mut s = benches::acme_session(deployment, i);
    let start = Intent::Start {
        request: "look up our gold customers".into(),
    };
    if let Err(e) = s.step(start, 0) {
        panic!("start: {}", e.error);
    }
    s
}

/// Tool calls and their results until the session has recorded at least 100 events.
fn hundred_events(deployment: &Arc<kernel::Deployment>, i: usize) -> (Session, usize) {
    let mut s = started(deployment, i);
    let (mut events, mut t) = (1, 0);
    while events < 100 && s.status() == Status::Running {
        t += 10;
        let Ok(tr) = s.step(benches::read_crm(events), t) else {
            break;
        };
        events += tr.events.len();
        let call_id = tr.effects.iter().find_map(|e| match e {
            Effect::CallTool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        });
        let Some(call_id) = call_id else { break };
        let output = serde_json::json!({"name": format!("customer {events}"), "tier": "gold"});
        let result = Intent::ToolReturned {
            call_id,
            output,
            cost: 0,
        };
        match s.step(result, t + 5) {
            Ok(tr) => events += tr.events.len(),
            Err(_) => break,
        }
    }
    assert!(events >= 100, "session {i} stopped at {events} events");
    (s, events)
}

/// `n` driver sessions, each held inside its first tool call until all have started; reports heap
/// per waiting session, then releases them. The runtime keeps no events: it writes every step
/// ahead to a store that checks each session's chain (seq, prev, hash) and counts the events.
fn concurrent(rt: &tokio::runtime::Runtime, deployment: &Arc<kernel::Deployment>, n: usize) {
    let (open, gate) = tokio::sync::watch::channel(false);
    let started = Arc::new(AtomicUsize::new(0));
    let check = Arc::new(benches::ChainCheck::default());
    let runtime = Arc::new(
        Runtime::new(Arc::new(benches::LoopModel { tool_calls: 1 }), "small")
            .tool(
                "read_crm",
                Arc::new(benches::CrmTool {
                    gate: Some(gate),
                    started: Arc::clone(&started),
                }),
            )
            .keep_events(false)
            .log(Arc::clone(&check) as Arc<dyn runtime::store::SessionLog>),
    );
    let before = benches::Counting::live();
    let clock = Instant::now();
    let handles: Vec<_> = rt.block_on(async {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let session = benches::acme_session(deployment, i);
                runtime.spawn(session, format!("request {i}"), EventHub::new(1), None)
            })
            .collect();
        while started.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handles
    });
    let waiting = benches::Counting::live() - before;
    let ramp = clock.elapsed();
    let _ = open.send(true);
    let (mut completed, mut failed) = (0usize, 0usize);
    rt.block_on(async {
        for h in handles {
            match h.join().await {
                Ok(o) if o.status == Status::Completed && o.store_error.is_none() => completed += 1,
                Ok(_) => failed += 1,
                Err(e) => panic!("session task: {e}"),
            }
        }
    });
    let events = check.events.load(Ordering::Relaxed);
    let broken = check.broken.load(Ordering::Relaxed);
    assert_eq!(
        (completed, broken),
        (n, 0),
        "every session completes with a whole chain"
    );
    println!(
        "driver: {n} concurrent sessions started in {:.2} s, {:.1} KiB heap each while waiting on a tool (store's chain heads included); all completed in {:.2} s; {events} events from {} sessions written ahead, every chain whole",
        ramp.as_secs_f64(),
        waiting as f64 / n as f64 / KIB,
        clock.elapsed().as_secs_f64(),
        check.sessions(),
    );
}

fn bench(_: &mut Criterion) {
    let deployment = benches::demo();
    kernel_sessions(&deployment);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    concurrent(&rt, &deployment, 100_000);
}

criterion_group!(benches, bench);
criterion_main!(benches);
