//! History-aware decisions: a `pay` call whose policies read a windowed count, a windowed sum
//! and an all-time sum, after 200, 10,000 and 1,000,000 prior events in the same session. The
//! counters are incremental, so the cost should not grow with the history.
//!
//! `cargo bench -p benches --bench history`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

/// The allocator the `arbiter` binary uses (see the README's Performance section).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("arbiter-history-bench-{}", std::process::id()));
    let deployment = benches::history_deployment(&dir);
    let mut group = c.benchmark_group("history");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for prior in [200usize, 10_000, 1_000_000] {
        let mut s = benches::started(&deployment);
        let (mut events, mut t) = (1, 0u64);
        let clock = Instant::now();
        // A call every 10 ms: a minute's window holds 6,000 calls, an hour's all of them.
        while events < prior {
            t += 10;
            events += benches::pay_round(&mut s, t);
        }
        println!(
            "{events} prior events recorded in {:.1} s",
            clock.elapsed().as_secs_f64()
        );
        group.bench_function(format!("pay_call_and_result/prior_events={prior}"), |b| {
            b.iter(|| {
                t += 10;
                black_box(benches::pay_round(&mut s, t))
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
