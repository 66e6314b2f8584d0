//! `arbiter mutate`: mutation testing of the policies the scenarios load (see `eval::mutate`).

use std::path::PathBuf;
use std::process::ExitCode;

use eval::mutate::Outcome;

#[derive(clap::Args)]
pub struct Args {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Exit 1 when the mutation score (killed / (killed + survived)) is below this percentage.
    #[arg(long)]
    min: Option<f64>,
    /// Every mutant and its outcome as JSON instead of the survivors' diffs.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let files = eval::scenario_files(&args.paths)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let report = eval::mutate::run(&files, threads);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for j in report.survivors() {
            let m = &j.mutant;
            let ran = match j.outcome {
                Outcome::Survived { scenarios } => scenarios,
                _ => 0,
            };
            println!(
                "survived: {} — {} ({}; {ran} scenario(s) still pass)",
                m.policy,
                m.operator.describe(),
                m.file
            );
            for line in m.diff.lines() {
                println!("    {line}");
            }
            println!();
        }
    }
    for (file, why) in &report.excluded {
        eprintln!("left out (fails unmutated): {file}: {why}");
    }
    let score = report.score();
    eprintln!(
        "mutation score {score:.1}%: {} of {} mutants killed, {} survived, {} stillborn (do not validate); {} scenario(s)",
        report.killed(),
        report.killed() + report.survivors().len(),
        report.survivors().len(),
        report.stillborn(),
        report.scenarios
    );
    Ok(match args.min {
        Some(min) if score < min => {
            eprintln!("below --min {min}%");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    })
}
