//! A suite of a thousand small scenarios, the way `arbiter test` runs it: files read and parsed,
//! deployments compiled once per policy set and shared, replays in parallel on both cores,
//! expectations checked. Target (issue 17): under 5 s on this machine.
//!
//! The scenarios are the shipped ones of the `support` and `limits` folders, copied under new
//! names into a temporary directory (ten copies of each, then more of the small ones up to 1,000),
//! each pointing `policies` at the repository's policy directory.
//!
//! `cargo bench -p benches --bench suite`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eval::runner::{Ids, run_all};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCENARIOS: usize = 1000;

fn suite() -> Vec<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let policies = repo.join("policies").canonicalize().expect("policies");
    let sources = eval::scenario_files(&[
        repo.join("scenarios/support"),
        repo.join("scenarios/limits"),
    ])
    .expect("scenarios");
    let dir = std::env::temp_dir().join(format!("arbiter-suite-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let texts: Vec<String> = sources
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            format!("policies = {:?}\n{text}", policies.display().to_string())
        })
        .collect();
    (0..SCENARIOS)
        .map(|i| {
            let path = dir.join(format!("s{i:04}.toml"));
            std::fs::write(&path, &texts[i % texts.len()]).expect("write");
            path
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = suite();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let results = run_all(&files, threads, Ids::Stem);
    let failed = results
        .iter()
        .filter(|r| !r.outcome.as_ref().is_ok_and(|ran| ran.failures.is_empty()))
        .count();
    assert_eq!(failed, 0, "every copied scenario passes");
    println!("{} scenarios on {threads} thread(s)", files.len());
    let mut group = c.benchmark_group("suite");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(files.len() as u64));
    group.bench_function("1000_scenarios_arbiter_test", |b| {
        b.iter(|| run_all(&files, threads, Ids::Stem))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
