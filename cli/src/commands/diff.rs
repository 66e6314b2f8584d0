//! `arbiter diff`: every decision a policy edit changes, over the scenarios (see `eval::diff`).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The policy directory before the edit.
    #[arg(long)]
    base: PathBuf,
    /// The policy directory after it.
    #[arg(long)]
    head: PathBuf,
    /// Scenario files or directories.
    #[arg(long = "scenarios", default_value = "scenarios")]
    scenarios: Vec<PathBuf>,
    /// Exit 1 when any decision changed (a CI gate on a policy repository).
    #[arg(long)]
    fail_on_change: bool,
    /// One JSON object per changed decision instead of the table.
    #[arg(long)]
    json: bool,
}

fn side(s: Option<&eval::diff::Side>) -> String {
    match s {
        None => "(not proposed)".into(),
        Some(s) if s.policies.is_empty() => s.effect.clone(),
        Some(s) => format!("{} by {}", s.effect, s.policies.join(", ")),
    }
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let files = eval::scenario_files(&args.scenarios)?;
    let changed = eval::diff::scenarios(&files, &args.base, &args.head)?;
    for c in &changed {
        if args.json {
            println!("{}", serde_json::to_string(c).unwrap_or_default());
        } else {
            println!(
                "{}: {} #{}: {} → {}",
                c.scenario,
                c.action,
                c.nth,
                side(c.base.as_ref()),
                side(c.head.as_ref())
            );
        }
    }
    let scenarios: std::collections::BTreeSet<&str> =
        changed.iter().map(|c| c.scenario.as_str()).collect();
    eprintln!(
        "{} decision(s) changed in {} of {} scenario(s)",
        changed.len(),
        scenarios.len(),
        files.len()
    );
    Ok(if args.fail_on_change && !changed.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
