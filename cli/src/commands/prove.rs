//! `arbiter prove`: the author's properties and the standard findings, proved for every request
//! by Cedar's symbolic compiler (see `eval::prove`).
//!
//! Exit codes: 0 every property holds, 1 one fails or cannot be decided, 3 no solver to run.

use std::path::PathBuf;
use std::process::ExitCode;

use eval::prove::{SolverSpec, Verdict};

/// The exit code when no solver can be run: distinct, so CI can tell "not proved" from "false".
const NO_SOLVER: u8 = 3;

#[derive(clap::Args)]
pub struct Args {
    /// The policy directory.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// The properties file; default `properties.toml` in the policy directory.
    #[arg(long)]
    properties: Option<PathBuf>,
    /// The solver command (SMT-LIB 2 on stdin/stdout), e.g. `z3 -in`; default `$CVC5` or `cvc5`.
    #[arg(long)]
    solver: Option<String>,
    /// Also report each policy that never matches or can err.
    #[arg(long)]
    findings: bool,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let path = args
        .properties
        .clone()
        .unwrap_or_else(|| args.policies.join("properties.toml"));
    let props = eval::prove::properties::load(&path)?;
    let Some(solver) = SolverSpec::find(args.solver.as_deref()) else {
        let wanted = args
            .solver
            .clone()
            .unwrap_or_else(|| std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into()));
        eprintln!(
            "no solver: `{wanted}` cannot be run. Install cvc5 (or set CVC5), or pass --solver 'z3 -in'. Nothing was proved."
        );
        return Ok(ExitCode::from(NO_SOLVER));
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let report = eval::prove::prove(&args.policies, &props, dir, &solver, args.findings)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!("solver: {} ({})", solver.version, solver);
        for o in &report.outcomes {
            let set = format!("base+{}", o.packs.join("+"));
            match &o.verdict {
                Verdict::Holds { environments } => {
                    println!(
                        "holds   {set:<18} {} ({environments} request environments)",
                        o.property
                    );
                }
                Verdict::Fails {
                    action,
                    counterexample,
                } => {
                    println!("FAILS   {set:<18} {}", o.property);
                    println!("        counterexample ({action}):");
                    for line in counterexample.lines() {
                        println!("          {line}");
                    }
                }
                Verdict::Error { message } => {
                    println!("ERROR   {set:<18} {}: {message}", o.property);
                }
            }
        }
        for f in &report.findings {
            let what = f.kind.describe();
            println!("finding {} (base+{}): {what}", f.policy, f.packs.join("+"));
            if let Some(example) = &f.example {
                for line in example.lines() {
                    println!("          {line}");
                }
            }
        }
    }
    let failed = report
        .outcomes
        .iter()
        .filter(|o| !matches!(o.verdict, Verdict::Holds { .. }))
        .count();
    eprintln!(
        "{} of {} proof(s) hold; {} finding(s); solver {}",
        report.outcomes.len() - failed,
        report.outcomes.len(),
        report.findings.len(),
        solver.version
    );
    Ok(if report.holds() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
