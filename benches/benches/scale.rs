//! Scale with tenants and policies: per-request cost with 1, 100 and 10,000 tenants of ten
//! policies each (on top of base + demo), and with ~10 vs ~1,000 policies on one action (unscoped
//! and keyed by a literal, unscoped range tests, or each for one agent); memory and load time of
//! each deployment are printed once.
//!
//! `cargo bench -p benches --bench scale`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::Pile;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: benches::Counting = benches::Counting;

fn loaded<T>(what: &str, build: impl FnOnce() -> T) -> T {
    let (before, start) = (benches::Counting::live(), Instant::now());
    let out = build();
    let (elapsed, bytes) = (start.elapsed(), benches::Counting::live() - before);
    println!(
        "{what}: loaded in {:.2} s, {:.1} MiB live",
        elapsed.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for tenants in [1usize, 100, 10_000] {
        let deployment = loaded(&format!("{tenants} tenants"), || benches::tenants(tenants));
        let policies = deployment.cedar_policies().policies().count();
        println!("{tenants} tenants: {policies} policies");
        // The last tenant: its policies are the last filed, the worst case for any scan.
        let t = format!("t{}", tenants - 1);
        group.bench_function(format!("step_tool_call/tenants={tenants}"), |b| {
            b.iter_batched(
                || benches::started_in(&deployment, &t),
                |mut s| black_box(s.step(benches::refund(), 10).is_ok()),
                BatchSize::SmallInput,
            )
        });
    }
    let piles = [
        (0usize, Pile::Keyed),
        (1_000, Pile::Keyed),
        (1_000, Pile::Ordered),
        (1_000, Pile::PerAgent),
    ];
    for (extra, pile) in piles {
        let label = pile.label();
        let deployment = loaded(&format!("{extra} more {label} refund policies"), || {
            benches::on_one_action(extra, pile)
        });
        let on_refund = benches::policies_on(&deployment, "refund", &["call_tool"]);
        let name = format!("step_tool_call/refund_policies={on_refund}/{label}");
        group.bench_function(name, |b| {
            b.iter_batched(
                || benches::started(&deployment),
                |mut s| black_box(s.step(benches::refund(), 10).is_ok()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
