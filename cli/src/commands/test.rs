//! `arbiter test`: replay every scenario, a table of results, failures explained, and a last line
//! `N passed, N failed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use eval::runner::{Ids, Ran};

#[derive(clap::Args)]
pub struct Args {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Also record every run into a store (`sqlite:PATH`) for `audit verify` / `audit recheck`;
    /// sessions are then named by their file's path, unique across suites.
    #[arg(long)]
    store: Option<String>,
    /// One JSON object per scenario (file, result, status, every decision with the policies that
    /// decided it, failures) instead of the table.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
}

/// A scenario's machine-readable result.
fn json_line(file: &str, ran: &Ran, ms: f64) -> serde_json::Value {
    let decisions: Vec<serde_json::Value> = ran
        .run
        .events
        .iter()
        .filter_map(|e| {
            let d = e.decision.as_ref()?;
            Some(serde_json::json!({
                "seq": e.seq,
                "kind": e.body.kind(),
                "action": d.action,
                "resource": d.resource,
                "effect": d.effect,
                "basis": d.basis,
                "policies": d.policies.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
                "erred": d.erred,
            }))
        })
        .collect();
    serde_json::json!({
        "file": file,
        "name": ran.loaded.scenario.name,
        "result": if ran.failures.is_empty() { "pass" } else { "fail" },
        "status": ran.run.status.as_str(),
        "steps": ran.run.transitions,
        "decisions": decisions,
        "failures": ran.failures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "ms": ms,
    })
}

pub fn run(args: &Args, key: Option<runtime::store::SigningKey>) -> miette::Result<ExitCode> {
    let files = eval::scenario_files(&args.paths)?;
    let store = args
        .store
        .as_deref()
        .map(|s| super::audit::store_option(s, key))
        .transpose()?;
    let threads = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Sessions recorded into one store need ids unique across suites that share file names.
    let ids = if store.is_some() {
        Ids::Path
    } else {
        Ids::Stem
    };
    let started = Instant::now();
    let results = eval::runner::run_all(&files, threads, ids);
    let wall = started.elapsed().as_secs_f64();
    let (mut passed, mut failed) = (0, 0);
    let mut details = Vec::new();
    let mut suite = eval::suite::Report::default();
    if !args.json {
        println!(
            "{:<58} {:<6} {:>6} {:>9} {:>8}",
            "scenario", "result", "steps", "decisions", "time"
        );
    }
    let total = results.len();
    for r in results {
        let name = r.path.display().to_string();
        let ms = r.ms;
        match r.outcome {
            Ok(ran) => {
                let (loaded, run, failures) = (&ran.loaded, &ran.run, &ran.failures);
                let ran = &ran;
                if let Some(store) = &store {
                    eval::audit::record(
                        store.as_ref(),
                        &ran.deployment,
                        &loaded.session_config(),
                        run,
                    )
                    .map_err(|e| miette::miette!("{name}: cannot record: {e}"))?;
                }
                let decisions = eval::expect::decisions(&run.events).count();
                let ok = failures.is_empty();
                if let Some(entry) = &loaded.scenario.suite {
                    suite.record(entry, run.status, ok, &run.events);
                }
                if args.json {
                    println!("{}", json_line(&name, ran, ms));
                } else {
                    let result = if ok { "pass" } else { "FAIL" };
                    println!(
                        "{name:<58} {result:<6} {:>6} {decisions:>9} {ms:>6.1}ms",
                        run.transitions
                    );
                }
                if ok {
                    passed += 1;
                } else {
                    failed += 1;
                    details.push((
                        name,
                        failures.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    ));
                }
            }
            Err(e) => {
                failed += 1;
                let text = e.to_string();
                let report = format!("{:?}", miette::Report::new(e));
                if args.json {
                    let line = serde_json::json!({"file": name, "result": "error", "error": text, "ms": ms});
                    println!("{line}");
                } else {
                    println!(
                        "{name:<58} {:<6} {:>6} {:>9} {ms:>6.1}ms",
                        "ERROR", "-", "-"
                    );
                }
                details.push((name, vec![report]));
            }
        }
    }
    if args.json {
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    for (name, reasons) in &details {
        println!("\n{name}:");
        for r in reasons {
            println!("  - {r}");
        }
    }
    let table = suite.render();
    if !table.is_empty() {
        println!("\n{table}");
    }
    println!("\n{total} scenario(s) in {wall:.2} s on {threads} thread(s)");
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
