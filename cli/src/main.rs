//! `arbiter`: check policy packs, explain a decision, replay and test scenarios, verify audit logs.

mod commands;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: after loading a large deployment (100,000 policies) glibc's
/// fragmented heap made every later allocation slower (a step 1.3–1.5× its cost in a small
/// deployment, `cargo bench -p benches --bench scale`); with mimalloc it stays flat.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A report is rendered whole, then written to stderr at once: stderr is unbuffered, and
/// rendering writes piece by piece (a report on a long line took minutes, one write per character).
fn main() -> ExitCode {
    match commands::Cli::parse().run() {
        Ok(code) => code,
        Err(report) => {
            use std::io::Write;
            let text = format!("Error: {report:?}\n");
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            ExitCode::FAILURE
        }
    }
}
