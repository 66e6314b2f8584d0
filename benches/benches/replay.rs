//! Replay throughput: every shipped scenario replayed through the kernel and its log encoded as
//! JSONL, scenario files and deployments loaded beforehand. Divide the transitions printed once
//! by the time per iteration for transitions per second.
//!
//! `cargo bench -p benches --bench replay`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kernel::event::encode_jsonl;

/// The allocator the `arbiter` binary uses (see the README's Performance section).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = eval::scenario_files(&[root]).expect("scenarios");
    let loaded: Vec<_> = files
        .iter()
        .map(|f| {
            let l = eval::load(f).expect("scenario parses");
            let d = Arc::new(eval::deployment(&l).expect("deployment builds"));
            (l, d)
        })
        .collect();
    let transitions: usize = loaded
        .iter()
        .map(|(l, d)| eval::replay(l, Arc::clone(d)).expect("replays").transitions)
        .sum();
    println!(
        "{} scenarios, {transitions} transitions per iteration",
        loaded.len()
    );
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(transitions as u64));
    group.bench_function("all shipped scenarios + JSONL", |b| {
        b.iter(|| {
            for (l, d) in &loaded {
                let run = eval::replay(l, Arc::clone(d)).expect("replays");
                black_box(encode_jsonl(&run.events));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
