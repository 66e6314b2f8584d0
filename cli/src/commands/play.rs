//! `arbiter play`: play a scenario durably into a store, with some tools as real programs;
//! run it again after a crash and it resumes from the store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use miette::miette;

#[derive(clap::Args)]
pub struct Args {
    /// The scenario file.
    file: PathBuf,
    /// The store: `sqlite:PATH` (created if missing; an existing session resumes).
    #[arg(long)]
    store: String,
    /// Run this tool as a real program instead of its script: `NAME=PROGRAM` (JSON on stdin and
    /// stdout; `ARBITER_CALL_ID` is its idempotency key). Repeatable.
    #[arg(long = "tool")]
    tools: Vec<String>,
}

pub fn run(args: &Args, key: Option<runtime::store::SigningKey>) -> miette::Result<ExitCode> {
    let mut tools = BTreeMap::new();
    for t in &args.tools {
        let (name, program) = t
            .split_once('=')
            .ok_or_else(|| miette!("--tool takes NAME=PROGRAM, got `{t}`"))?;
        tools.insert(name.to_owned(), vec![program.to_owned()]);
    }
    let loaded = eval::load(&args.file)?;
    let deployment = Arc::new(eval::deployment(&loaded)?);
    // A mistyped name would leave the tool scripted while the user believes it real.
    let known: Vec<&str> = deployment.tool_names().collect();
    if let Some(name) = tools.keys().find(|n| !known.contains(&n.as_str())) {
        return Err(miette!(
            "--tool {name}: the scenario's deployment has no tool `{name}` (it has: {})",
            known.join(", ")
        ));
    }
    let store = super::audit::store_option(&args.store, key)?;
    let resumable =
        eval::resumable::Resumable::open(store, &deployment, &loaded.session_config(), tools)
            .map_err(|e| miette!("{}: {e}", args.store))?;
    let run = eval::replay::replay_resumable(&loaded, deployment, resumable)?;
    println!(
        "status: {}; {} events",
        run.status.as_str(),
        run.events.len()
    );
    Ok(if run.status == kernel::Status::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
