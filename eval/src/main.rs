//! `arbiter`: check policy packs, explain a decision, replay and test scenarios, verify audit logs.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> miette::Result<ExitCode> {
    cli::Cli::parse().run()
}
