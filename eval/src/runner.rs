//! Running a suite of scenario files: in parallel over the cores, each deployment compiled once per
//! policy set and shared by every scenario that uses it.
//!
//! Compiling a bundle costs tens of milliseconds; replaying a small scenario, tens of
//! microseconds. Scenarios that name the same policy directory and packs and carry no inline
//! entities, tools or policies share one [`Deployment`] (immutable, so sharing changes no byte of
//! any event); the rest compile their own. Results come back in file order whatever order the
//! workers finished in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kernel::Deployment;

use crate::ScenarioError;
use crate::expect::{Failure, check};
use crate::replay::{Run, deployment, replay};
use crate::scenario::{LoadedScenario, load};

/// A scenario that ran.
pub struct Ran {
    /// The scenario.
    pub loaded: LoadedScenario,
    /// The deployment it ran under (shared with the other scenarios of its policy set).
    pub deployment: Arc<Deployment>,
    /// Its run.
    pub run: Run,
    /// Its unmet expectations.
    pub failures: Vec<Failure>,
}

/// One file's outcome.
pub struct FileResult {
    /// The file, as given.
    pub path: PathBuf,
    /// The scenario and its run, or why it could not run.
    pub outcome: Result<Ran, ScenarioError>,
    /// Wall time of this file (load, deployment lookup or build, replay, checks), ms.
    pub ms: f64,
}

/// A policy directory and the packs loaded from it.
type PolicySet = (PathBuf, Vec<String>);

/// Deployments by policy set, for scenarios without inline bundle content.
#[derive(Default)]
pub struct DeploymentCache {
    built: Mutex<HashMap<PolicySet, Arc<Deployment>>>,
}

impl DeploymentCache {
    /// The scenario's deployment: shared when its bundle is just its packs, built otherwise.
    pub fn get(&self, s: &LoadedScenario) -> Result<Arc<Deployment>, ScenarioError> {
        let inline = !s.scenario.entities.is_empty()
            || !s.scenario.tools.is_empty()
            || s.scenario.policy_text.is_some();
        if inline {
            return deployment(s).map(Arc::new);
        }
        let key = (s.policies_root()?, s.scenario.packs.clone());
        if let Some(d) = self.lock().get(&key) {
            return Ok(Arc::clone(d));
        }
        // Built outside the lock: two workers may build the same set once each at the start,
        // which costs less than making every other worker wait.
        let built = Arc::new(deployment(s)?);
        Ok(Arc::clone(self.lock().entry(key).or_insert(built)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PolicySet, Arc<Deployment>>> {
        // A worker that panicked mid-insert leaves a map that is still whole.
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How sessions are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// The scenario's `session.id`, else its file stem (what snapshots are recorded with).
    Stem,
    /// The scenario's `session.id`, else its path as given without the extension: unique across
    /// suites whose files share names (for recording into one store).
    Path,
}

/// Runs one file against the cache.
pub fn run_one(path: &Path, cache: &DeploymentCache, ids: Ids) -> FileResult {
    let started = Instant::now();
    let outcome = load(path).and_then(|mut loaded| {
        if ids == Ids::Path && loaded.scenario.session.id.is_none() {
            loaded.scenario.session.id =
                Some(path.with_extension("").to_string_lossy().into_owned());
        }
        let deployment = cache.get(&loaded)?;
        let run = replay(&loaded, Arc::clone(&deployment))?;
        let failures = check(&loaded.scenario.expect, &run);
        Ok(Ran {
            loaded,
            deployment,
            run,
            failures,
        })
    });
    FileResult {
        path: path.to_owned(),
        outcome,
        ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Runs every file on `threads` workers (at least one); results in the order of `files`.
pub fn run_all(files: &[PathBuf], threads: usize, ids: Ids) -> Vec<FileResult> {
    let cache = DeploymentCache::default();
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<FileResult>>> = files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(files.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(path), Some(slot)) = (files.get(i), slots.get(i)) else {
                        break;
                    };
                    let result = run_one(path, &cache, ids);
                    *slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .zip(files)
        .map(|(slot, path)| {
            slot.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| FileResult {
                    path: path.clone(),
                    outcome: Err(ScenarioError::Io {
                        path: path.clone(),
                        source: std::io::Error::other("the worker running it stopped"),
                    }),
                    ms: 0.0,
                })
        })
        .collect()
}
