//! Command-line interface: argument parsing and one module per command.

mod audit;
mod check;
mod coverage;
mod diff;
mod explain;
mod fake_model;
mod fuzz;
mod mcp_gateway;
mod mutate;
mod play;
mod policy_set;
mod prove;
mod replay;
mod report;
mod run;
mod serve;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Arbiter: an agent runtime whose every step is authorized by Cedar policies.
#[derive(Parser)]
#[command(name = "arbiter", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Sign the heads of sessions written to a store with this private key file (from `arbiter
    /// keygen`); without it, the key in `ARBITER_SIGNING_KEY` (hex), if set.
    #[arg(long, global = true)]
    signing_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and strictly validate the schema, every pack's policies, entities, tools and counters.
    Check {
        /// The policy directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Which policies the scenarios exercise: a policy × scenario matrix, the policies never
    /// exercised, and a `--min` gate.
    Coverage(coverage::Args),
    /// Prove the properties in `properties.toml` for every request, with an SMT solver.
    Prove(prove::Args),
    /// Write the compliance report (Markdown and one self-contained HTML page): validation and
    /// hashes, coverage and mutation per policy, proofs, scenario timelines, a store's audit.
    Report(report::Args),
    /// Mutate every policy the scenarios load and report which mutants the scenarios miss.
    Mutate(mutate::Args),
    /// Replay the scenarios under two policy directories and list every decision that changed.
    Diff(diff::Args),
    /// Decide one request and show the determining policies, obligations and errors.
    Explain(explain::Args),
    /// Replay one scenario and list its decisions (or print its events).
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// Print the JSONL event log instead of the summary.
        #[arg(long)]
        events: bool,
    },
    /// Replay every scenario and check its expectations.
    Test(test::Args),
    /// Run one live session from an agent file, printing its events as they happen.
    Run(run::Args),
    /// Serve a scripted OpenAI-compatible model endpoint (for trying `run` without a model).
    FakeModel(fake_model::Args),
    /// Play a scenario durably into a store (`sqlite:PATH`), some tools as real programs; run it
    /// again after a crash and it resumes.
    Play(play::Args),
    /// Generate sessions and check the kernel's invariants and author properties.
    Fuzz(fuzz::Args),
    /// Audit logs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve the decision API over HTTP: sessions, steps, approvals, event streams.
    Serve(serve::Args),
    /// Stand between an MCP client and its MCP servers: every tool call authorized, recorded and
    /// provenance-checked (stdio, or Streamable HTTP with `--listen`).
    McpGateway(mcp_gateway::Args),
    /// Make a bearer token for `serve` (printed once) and the hashed entry for its tokens file.
    Token(serve::TokenArgs),
    /// Make an Ed25519 key pair for signing stores' checkpoints.
    Keygen(audit::KeygenArgs),
    /// Print the JSON Schema of the scenario format.
    ScenarioSchema,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chains of a JSONL event log, an export, or every session in a store
    /// (`sqlite:PATH`), naming the first bad seq; with `--key`, every session's signed head and the
    /// store's signed manifest too.
    Verify(audit::VerifyArgs),
    /// Replay every recorded session of a store or export and compare every event byte for byte
    /// (or, with `--policies`, re-decide every decision under other policies).
    Recheck(audit::RecheckArgs),
    /// Write a store as one self-contained JSONL file (bundles, sessions, steps, events,
    /// checkpoints) that `verify` and `recheck` accept.
    Export(audit::ExportArgs),
    /// Write one recorded session (a gateway's, a served one) as a scenario that `replay` and
    /// `test` run: its steps as intents, its decisions as expectations.
    Scenario(audit::ScenarioArgs),
}

impl Cli {
    /// Runs the command; problems come back as located `miette` reports.
    pub fn run(self) -> miette::Result<ExitCode> {
        let key = || audit::signing_key(self.signing_key.as_deref());
        match self.command {
            Command::Check { policies } => check::run(&policies),
            Command::Explain(args) => explain::run(&args),
            Command::Diff(args) => diff::run(&args),
            Command::Coverage(args) => coverage::run(&args),
            Command::Mutate(args) => mutate::run(&args),
            Command::Report(args) => report::run(&args),
            Command::Prove(args) => prove::run(&args),
            Command::Replay { file, events } => replay::run(&file, events),
            Command::Test(args) => test::run(&args, key()?),
            Command::Fuzz(args) => fuzz::run(&args),
            Command::Run(args) => run::run(&args, key()?),
            Command::Play(args) => play::run(&args, key()?),
            Command::Keygen(args) => audit::keygen(&args),
            Command::Serve(args) => serve::run(&args, key()?),
            Command::McpGateway(args) => mcp_gateway::run(&args, key()?),
            Command::Token(args) => serve::token(&args),
            Command::FakeModel(args) => fake_model::run(&args),
            Command::Audit {
                command: AuditCommand::Verify(args),
            } => audit::verify(&args),
            Command::Audit {
                command: AuditCommand::Export(args),
            } => audit::export(&args),
            Command::Audit {
                command: AuditCommand::Recheck(args),
            } => audit::recheck(&args),
            Command::Audit {
                command: AuditCommand::Scenario(args),
            } => audit::scenario(&args),
            Command::ScenarioSchema => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&eval::scenario::json_schema())
                        .unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
