//! `arbiter test`: replay every scenario, a table of results, failures explained, and a last line
//! `N passed, N failed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(
    paths: &[PathBuf],
    store: Option<&str>,
    key: Option<runtime::store::SigningKey>,
) -> miette::Result<ExitCode> {
    let files = eval::scenario_files(paths)?;
    let store = store
        .map(|s| super::audit::store_option(s, key))
        .transpose()?;
    let (mut passed, mut failed) = (0, 0);
    let mut details = Vec::new();
    let mut suite = eval::suite::Report::default();
    println!(
        "{:<58} {:<6} {:>6} {:>9} {:>8}",
        "scenario", "result", "steps", "decisions", "time"
    );
    for file in &files {
        let started = Instant::now();
        let outcome = eval::run_file(file);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let name = file.display().to_string();
        match outcome {
            Ok((loaded, run, failures)) => {
                if let Some(store) = &store {
                    let deployment = eval::deployment(&loaded)?;
                    eval::audit::record(
                        store.as_ref(),
                        &deployment,
                        &loaded.session_config(),
                        &run,
                    )
                    .map_err(|e| miette::miette!("{name}: cannot record: {e}"))?;
                }
                let decisions = eval::expect::decisions(&run.events).count();
                let ok = failures.is_empty();
                if let Some(entry) = &loaded.scenario.suite {
                    suite.record(entry, run.status, ok, &run.events);
                }
                let result = if ok { "pass" } else { "FAIL" };
                println!(
                    "{name:<58} {result:<6} {:>6} {decisions:>9} {ms:>6.1}ms",
                    run.transitions
                );
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
                println!(
                    "{name:<58} {:<6} {:>6} {:>9} {ms:>6.1}ms",
                    "ERROR", "-", "-"
                );
                details.push((name, vec![format!("{:?}", miette::Report::new(e))]));
            }
        }
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
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
