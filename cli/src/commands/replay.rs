//! `arbiter replay`: one scenario, its decisions (or its events as JSONL).

use std::path::Path;
use std::process::ExitCode;

use eval::expect::action_name;
use kernel::event::encode_jsonl;

pub fn run(file: &Path, events: bool) -> miette::Result<ExitCode> {
    let (loaded, run, failures) = eval::run_file(file)?;
    if events {
        print!("{}", encode_jsonl(&run.events));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: {}", loaded.source.name, loaded.scenario.name);
    for e in &run.events {
        match &e.decision {
            Some(d) => {
                // An error denial was decided by the policies that erred.
                let ids = d.deciders();
                println!(
                    "  {:>4} {:>8}ms {:<20} {:<16} {:<5} {:<13} {}",
                    e.seq,
                    e.t_ms,
                    e.body.kind(),
                    action_name(d),
                    format!("{:?}", d.effect).to_lowercase(),
                    format!("{:?}", d.basis).to_lowercase(),
                    ids.join(", ")
                );
            }
            None => println!("  {:>4} {:>8}ms {}", e.seq, e.t_ms, e.body.kind()),
        }
    }
    println!("status: {}", run.status.as_str());
    for f in &failures {
        println!("  FAIL {f}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
