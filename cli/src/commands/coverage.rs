//! `arbiter coverage`: which policies the scenarios exercise (see `eval::coverage`).

use std::path::PathBuf;
use std::process::ExitCode;

use eval::runner::{Ids, run_all};

#[derive(clap::Args)]
pub struct Args {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Exit 1 when fewer than this percentage of the policies are exercised.
    #[arg(long)]
    min: Option<f64>,
    /// The whole matrix as JSON (policy → scenarios) instead of the table.
    #[arg(long)]
    json: bool,
    /// Also each `when`/`unless` clause and `&&`/`||` operand: seen both true and false?
    #[arg(long)]
    conditions: bool,
    /// With `--conditions`: exit 1 when fewer than this percentage were seen both ways.
    #[arg(long, requires = "conditions")]
    min_conditions: Option<f64>,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let files = eval::scenario_files(&args.paths)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let results = run_all(&files, threads, Ids::Stem);
    let coverage = eval::coverage::of(&results);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&coverage).unwrap_or_default()
        );
    } else {
        for (policy, scenarios) in &coverage.policies {
            let first: Vec<&str> = scenarios
                .iter()
                .take(2)
                .map(|s| s.rsplit('/').next().unwrap_or(s))
                .collect();
            let more = scenarios.len().saturating_sub(first.len());
            println!(
                "{:>4}  {policy:<48} {}{}",
                scenarios.len(),
                first.join(", "),
                if more > 0 {
                    format!(" +{more}")
                } else {
                    String::new()
                }
            );
        }
        for (file, error) in &coverage.errors {
            eprintln!("not run: {file}: {error}");
        }
        let unexercised = coverage.unexercised();
        if !unexercised.is_empty() {
            println!("never exercised: {}", unexercised.join(", "));
        }
    }
    let mut conditions_below = false;
    if args.conditions {
        let c = eval::coverage::conditions::of(&files);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
        } else {
            for o in c.operands.iter().filter(|o| !(o.seen_true && o.seen_false)) {
                let seen = match (o.seen_true, o.seen_false) {
                    (true, false) => "only true ",
                    (false, true) => "only false",
                    _ => "never     ",
                };
                println!("{seen}  {} {}: {}", o.policy, o.clause, o.text);
            }
        }
        let both = c
            .operands
            .iter()
            .filter(|o| o.seen_true && o.seen_false)
            .count();
        let percent = c.percent();
        eprintln!(
            "{both} of {} clauses and operands seen both true and false ({percent:.1}%) over {} request(s)",
            c.operands.len(),
            c.requests
        );
        if let Some(min) = args.min_conditions
            && percent < min
        {
            eprintln!("below --min-conditions {min}%");
            conditions_below = true;
        }
    }
    let percent = coverage.percent();
    eprintln!(
        "{} of {} policies exercised ({percent:.1}%) by {} scenario(s)",
        coverage.policies.len() - coverage.unexercised().len(),
        coverage.policies.len(),
        files.len()
    );
    Ok(match args.min {
        Some(min) if percent < min => {
            eprintln!("below --min {min}%");
            ExitCode::FAILURE
        }
        _ if conditions_below => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}
