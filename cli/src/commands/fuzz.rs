//! `arbiter fuzz`: generated sessions against a policy directory, every invariant checked after
//! every step, author properties, shrunk failures, optionally saved as scenario files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use eval::fuzz::{Fuzz, Property, save_failure};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// Sessions to generate.
    #[arg(long, default_value_t = 1000)]
    cases: usize,
    /// Seed: the same seed generates the same worlds and sessions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The policy directory.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Packs to fuzz on top of `base` (repeatable); default: base alone and every pack in the directory.
    #[arg(long = "pack")]
    packs: Vec<String>,
    /// An author property, e.g. `no-allow: action == send_email when session.labels contains "untrusted"` (repeatable).
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Write each shrunk failure as a scenario file in this directory.
    #[arg(long)]
    save_failures: Option<PathBuf>,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let properties = args
        .properties
        .iter()
        .map(|p| Property::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette::miette!("{e}"))?;
    let packs: Vec<Option<String>> = if args.packs.is_empty() {
        let mut found = vec![None];
        let entries = std::fs::read_dir(&args.policies)
            .map_err(|e| miette::miette!("cannot read {}: {e}", args.policies.display()))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir() && e.file_name() != "base")
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        found.extend(names.into_iter().map(Some));
        found
    } else {
        args.packs.iter().cloned().map(Some).collect()
    };
    let worlds = Fuzz::worlds(&args.policies, &packs, args.seed)?;
    let fuzz = Fuzz {
        worlds,
        properties,
        seed: args.seed,
    };

    let bar = ProgressBar::new(args.cases as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} cases  {msg}  [{elapsed_precise}, eta {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (summary, failures) = fuzz.run(args.cases, |done, s| {
        if done % 97 == 0 || done == args.cases {
            bar.set_position(done as u64);
            let v: usize = s.violations.values().sum();
            bar.set_message(format!("{} transitions, {v} violation(s)", s.transitions));
        }
    });
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();

    let labels: Vec<String> = packs
        .iter()
        .map(|p| p.clone().map_or("base".into(), |p| format!("base + {p}")))
        .collect();
    println!("policy sets:        {}", labels.join(", "));
    println!("seed:               {}", args.seed);
    println!("cases:              {}", summary.cases);
    println!(
        "transitions:        {} ({:.0}/s over {secs:.1} s)",
        summary.transitions,
        summary.transitions as f64 / secs.max(1e-9)
    );
    println!(
        "decisions:          {} allow, {} deny; {} intents refused outright",
        summary.allowed, summary.denied, summary.rejected
    );
    let all: std::collections::BTreeSet<String> = fuzz
        .worlds
        .iter()
        .flat_map(|w| w.deployment.policy_ids())
        .collect();
    let unexercised: Vec<&String> = all
        .iter()
        .filter(|id| !summary.policies.contains(*id))
        .collect();
    println!(
        "policies exercised: {} of {}",
        summary.policies.len(),
        all.len()
    );
    if !unexercised.is_empty() {
        let names: Vec<&str> = unexercised.iter().map(|s| s.as_str()).collect();
        println!("never decisive:     {}", names.join(", "));
    }
    let total: usize = summary.violations.values().sum();
    println!("violations:         {total}");
    for (kind, n) in &summary.violations {
        println!("  {kind}: {n}");
    }
    for (i, f) in failures.iter().enumerate() {
        println!(
            "\nshortest counterexample #{} ({} steps):",
            i + 1,
            f.case.steps.len()
        );
        for v in &f.outcome.violations {
            println!("  step {}: {} — {}", v.step, v.invariant, v.detail);
        }
        for (n, t) in f.outcome.intents.iter().enumerate() {
            println!(
                "  {n:>3} @{:>7}ms {}",
                t.at_ms,
                serde_json::to_string(&t.step).unwrap_or_default()
            );
        }
        if let Some(dir) = &args.save_failures {
            match save_failure(dir, &args.policies, &fuzz, f, i + 1) {
                Ok(path) => println!("  saved as {}", path.display()),
                Err(e) => println!("  could not save: {e}"),
            }
        }
    }
    Ok(if total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
