//! The driver's cost per agent step for a scripted loop: the figure
//! `benches/peers/langgraph_loop.py` compares with LangGraph's. One loop of 10 tool calls (21 agent
//! steps: 11 model calls, 10 tool calls), each authorized, its budget reserved and settled, and
//! every event hashed into the chain; reported per agent step.
//!
//! A binary of its own so it runs on the `arbiter` binary's allocator as is, not on the counting
//! wrapper the memory figures need (an atomic add on every allocation and free).
//!
//! `cargo bench -p benches --bench driver`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use criterion::{Criterion, criterion_group, criterion_main};
use kernel::Status;
use runtime::Runtime;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let deployment = benches::demo();
    let runtime = Arc::new(
        Runtime::new(Arc::new(benches::LoopModel { tool_calls: 10 }), "small").tool(
            "read_crm",
            Arc::new(benches::CrmTool {
                gate: None,
                started: Arc::new(AtomicUsize::new(0)),
            }),
        ),
    );
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    let mut group = c.benchmark_group("driver");
    group.throughput(criterion::Throughput::Elements(21));
    group.bench_function("scripted_loop_10_tool_calls", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let session = benches::acme_session(&deployment, i);
            let outcome = local.block_on(runtime.run(session, "loop".into(), Vec::new(), None));
            assert_eq!(outcome.status, Status::Completed);
            black_box(outcome.events.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
