//! `arbiter diff`: every decision a policy edit changes, over the scenarios or the sessions a store
//! recorded (see `eval::diff`).

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
    #[arg(
        long = "scenarios",
        default_value = "scenarios",
        conflicts_with = "log"
    )]
    scenarios: Vec<PathBuf>,
    /// Re-decide the sessions recorded in a store (`sqlite:PATH`) or an export instead.
    #[arg(long)]
    log: Option<String>,
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
    let (changed, total, what) = match &args.log {
        Some(source) => {
            let store = super::audit::open_audited(source)?.ok_or_else(|| {
                miette::miette!("{source}: --log needs the recorded steps: give `sqlite:PATH` or an `audit export` file")
            })?;
            let (changed, unchecked, total) =
                eval::diff::log(store.as_ref(), &args.base, &args.head)
                    .map_err(|e| miette::miette!("{source}: {e}"))?;
            for u in &unchecked {
                eprintln!("not re-decided: {}: {}", u.session, u.error);
            }
            if !unchecked.is_empty() {
                return Err(miette::miette!(
                    "{} of {total} recorded session(s) could not be re-decided",
                    unchecked.len()
                ));
            }
            (changed, total, "recorded session(s)")
        }
        None => {
            let files = eval::scenario_files(&args.scenarios)?;
            let changed = eval::diff::scenarios(&files, &args.base, &args.head)?;
            (changed, files.len(), "scenario(s)")
        }
    };
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
        "{} decision(s) changed in {} of {total} {what}",
        changed.len(),
        scenarios.len(),
    );
    Ok(if args.fail_on_change && !changed.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
