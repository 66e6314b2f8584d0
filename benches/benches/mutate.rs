//! Mutation testing of the shipped packs against the shipped scenarios, the way `arbiter mutate`
//! runs it: the suite replayed once, then every mutant of every policy file the scenarios load,
//! judged by the scenarios that load that file, on both cores. Target (issue 20): under 60 s.
//!
//! `cargo bench -p benches --bench mutate`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = eval::scenario_files(&[repo.join("scenarios")]).expect("scenarios");
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let report = eval::mutate::run(&files, threads);
    println!(
        "{} scenarios, {} mutants ({} killed, {} survived, {} stillborn) on {threads} thread(s)",
        report.scenarios,
        report.mutants.len(),
        report.killed(),
        report.survivors().len(),
        report.stillborn()
    );
    let mut group = c.benchmark_group("mutate");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("shipped_packs_and_scenarios", |b| {
        b.iter(|| eval::mutate::run(&files, threads))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
