//! Arbiter's evaluation layer: the scenario format, deterministic replay on the kernel's agent
//! loop, expectations, snapshot rendering and fuzzing; scenarios run on the async runtime
//! (`scripted`) or resumably into a store with real tools (`resumable`); audits and the scripted
//! model server the `arbiter` commands use.
#![forbid(unsafe_code)]

pub mod audit;
pub mod call_answers;
pub mod counterfactual;
pub mod coverage;
pub mod diff;
pub mod expect;
pub mod fake_model;
pub mod fuzz;
pub mod mutate;
pub mod prove;
pub mod recorded;
pub mod replay;
pub mod report;
pub mod resumable;
pub mod runner;
pub mod scenario;
pub mod scripted;
pub mod snapshot;
pub mod suite;

pub use expect::{Failure, check};
pub use replay::{Run, deployment, replay};
/// A scenario that cannot be read, parsed or run: the runtime's located file error.
pub use runtime::FileError as ScenarioError;
pub use scenario::{LoadedScenario, Scenario, load, parse};

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads, replays and checks one scenario file.
pub fn run_file(path: &Path) -> Result<(LoadedScenario, Run, Vec<Failure>), ScenarioError> {
    let loaded = load(path)?;
    let deployment = Arc::new(deployment(&loaded)?);
    let run = replay(&loaded, deployment)?;
    let failures = check(&loaded.scenario.expect, &run);
    Ok((loaded, run, failures))
}

/// Every `*.toml` scenario under `paths` (files are taken as given), sorted.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ScenarioError> {
    let io = |source| ScenarioError::Io {
        path: dir.into(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}
