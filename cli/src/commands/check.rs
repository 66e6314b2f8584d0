//! `arbiter check`: every pack, loaded on top of `base`, must parse and strictly validate.

use std::path::Path;
use std::process::ExitCode;

use kernel::pack::{PackError, load_packs, pack_names};

pub fn run(root: &Path) -> miette::Result<ExitCode> {
    let packs = pack_names(root)?;
    let mut sets: Vec<Vec<&str>> = vec![vec![]];
    sets.extend(packs.iter().map(|p| vec![p.as_str()]));
    let mut problems = 0;
    for set in sets {
        let label = std::iter::once("base")
            .chain(set.iter().copied())
            .collect::<Vec<_>>()
            .join(" + ");
        match load_packs(root, &set) {
            Ok(d) => println!(
                "ok    {label}: {} policies, {} tools, strict validation passed",
                d.policy_ids().len(),
                d.tool_names().count()
            ),
            Err(PackError::Invalid(errors)) => {
                problems += errors.0.len();
                println!("FAIL  {label}: {} problem(s)", errors.0.len());
                for e in errors.0 {
                    eprintln!("{:?}", miette::Report::new(e));
                }
            }
            Err(e) => {
                problems += 1;
                println!("FAIL  {label}");
                eprintln!("{:?}", miette::Report::new(e));
            }
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
