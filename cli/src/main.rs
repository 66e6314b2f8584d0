//! `arbiter`: check policy packs, explain a decision, replay and test scenarios, verify audit logs.

mod commands;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: after loading a large deployment (100,000 policies) glibc's
/// fragmented heap made every later allocation slower (a step 1.3–1.5× its cost in a small
/// deployment, `cargo bench -p benches --bench scale`); with mimalloc it stays flat.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> miette::Result<ExitCode> {
    commands::Cli::parse().run()
}
