//! The fuzz loop: seeded generation, shrinking of failing cases, a summary, and failures written
//! out as scenario files that `arbiter test` replays with the invariants switched on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::case::{Case, Outcome, case, run};
use super::property::Property;
use super::world::{MODEL, World};
use crate::ScenarioError;
use crate::scenario::{Expect, Scenario, SessionSpec};

/// Shrinking stops after this many attempts.
const MAX_SHRINK_STEPS: usize = 2_000;

/// A fuzz run's configuration.
pub struct Fuzz {
    /// The worlds cases run in.
    pub worlds: Vec<World>,
    /// Author properties to check.
    pub properties: Vec<Property>,
    /// The seed (same seed, same cases).
    pub seed: u64,
}

/// A failing case, shrunk.
pub struct Failure {
    /// The minimal case found.
    pub case: Case,
    /// What running it found.
    pub outcome: Outcome,
}

/// Totals over a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Cases run.
    pub cases: usize,
    /// Kernel transitions.
    pub transitions: usize,
    /// Intents refused outright by the kernel.
    pub rejected: usize,
    /// Allowed decisions.
    pub allowed: usize,
    /// Denied decisions.
    pub denied: usize,
    /// Policies that determined at least one decision.
    pub policies: BTreeSet<String>,
    /// Violations by invariant (or `property`).
    pub violations: BTreeMap<String, usize>,
}

impl Fuzz {
    /// Seeds the generator.
    pub fn rng(seed: u64) -> TestRng {
        let mut bytes = [0u8; 32];
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(
                &(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes(),
            );
        }
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
    }

    /// Generates one world per pack from the seed.
    pub fn worlds(
        root: &Path,
        packs: &[Option<String>],
        seed: u64,
    ) -> Result<Vec<World>, ScenarioError> {
        let mut rng = Self::rng(seed.wrapping_add(1));
        packs
            .iter()
            .map(|p| World::generate(root, p.as_deref(), &mut rng))
            .collect()
    }

    /// Runs `cases` cases; calls `progress` after each; returns the summary and the failures,
    /// each shrunk to a minimal case.
    pub fn run(
        &self,
        cases: usize,
        mut progress: impl FnMut(usize, &Summary),
    ) -> (Summary, Vec<Failure>) {
        let config = Config {
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(config, Self::rng(self.seed));
        let strategy = case(self.worlds.len());
        let mut summary = Summary::default();
        let mut failures: Vec<Failure> = Vec::new();
        for i in 0..cases {
            let Ok(mut tree) = strategy.new_tree(&mut runner) else {
                continue;
            };
            let current = tree.current();
            let outcome = self.run_case(&current);
            summary.cases += 1;
            summary.transitions += outcome.transitions;
            summary.allowed += outcome.decisions.0;
            summary.rejected += outcome.rejected;
            summary.denied += outcome.decisions.1;
            summary.policies.extend(outcome.policies.iter().cloned());
            if !outcome.violations.is_empty() {
                for v in &outcome.violations {
                    *summary
                        .violations
                        .entry(v.invariant.to_owned())
                        .or_default() += 1;
                }
                // One shrunk example per kind of violation is enough to act on.
                let kinds: BTreeSet<&str> =
                    outcome.violations.iter().map(|v| v.invariant).collect();
                let known = failures.iter().any(|f| {
                    f.outcome
                        .violations
                        .iter()
                        .any(|v| kinds.contains(v.invariant))
                });
                if !known {
                    failures.push(self.shrink(&mut tree, current, outcome));
                }
            }
            progress(i + 1, &summary);
        }
        (summary, failures)
    }

    fn run_case(&self, case: &Case) -> Outcome {
        match self.worlds.get(case.world) {
            Some(world) => run(world, case, &self.properties),
            None => Outcome::default(),
        }
    }

    /// Proptest's shrinking loop: simplify while the case still fails, step back when it passes.
    fn shrink(
        &self,
        tree: &mut impl ValueTree<Value = Case>,
        case: Case,
        outcome: Outcome,
    ) -> Failure {
        let kinds: BTreeSet<&'static str> =
            outcome.violations.iter().map(|v| v.invariant).collect();
        let mut best = Failure { case, outcome };
        for _ in 0..MAX_SHRINK_STEPS {
            if !tree.simplify() {
                break;
            }
            loop {
                let candidate = tree.current();
                let o = self.run_case(&candidate);
                if o.violations.iter().any(|v| kinds.contains(v.invariant)) {
                    best = Failure {
                        case: candidate,
                        outcome: o,
                    };
                    break;
                }
                if !tree.complicate() {
                    break;
                }
            }
        }
        best
    }
}

/// Writes a failure as a scenario file in `dir`, replayed by `arbiter test` with the invariants
/// (and properties) switched on; returns its path.
pub fn save_failure(
    dir: &Path,
    policies_root: &Path,
    fuzz: &Fuzz,
    failure: &Failure,
    index: usize,
) -> std::io::Result<PathBuf> {
    let world = fuzz
        .worlds
        .get(failure.case.world)
        .ok_or_else(|| std::io::Error::other("no such world"))?;
    std::fs::create_dir_all(dir)?;
    let config = failure.case.config();
    let kinds: BTreeSet<&str> = failure
        .outcome
        .violations
        .iter()
        .map(|v| v.invariant)
        .collect();
    let scenario = Scenario {
        name: format!(
            "fuzz regression: {}",
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        ),
        description: failure
            .outcome
            .violations
            .iter()
            .map(|v| format!("step {}: {} — {}", v.step, v.invariant, v.detail))
            .collect::<Vec<_>>()
            .join("\n"),
        policies: Some(relative(dir, policies_root)),
        packs: world.pack.iter().cloned().collect(),
        mode: config.mode,
        session: SessionSpec {
            id: Some(config.id.clone()),
            tenant: config.tenant,
            user: config.user,
            agent: config.agent,
            budget: config.budget,
            model: MODEL.into(),
            request: "fuzz".into(),
        },
        entities: world.entities.clone(),
        tools: world.tools.clone(),
        policy_text: (!world.policy_text.is_empty()).then(|| world.policy_text.clone()),
        intents: failure.outcome.intents.clone(),
        tool_script: BTreeMap::new(),
        turns: Vec::new(),
        memory: Vec::new(),
        events: Vec::new(),
        expect: Expect {
            status: failure.outcome.status.unwrap_or(kernel::Status::Created),
            decisions: Vec::new(),
            calls: BTreeMap::new(),
            kinds: Vec::new(),
            labels: None,
            invariants: true,
            properties: fuzz.properties.iter().map(|p| p.text.clone()).collect(),
        },
        suite: None,
    };
    let text = toml::to_string(&scenario).map_err(std::io::Error::other)?;
    let path = dir.join(format!("fuzz_failure_{index}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `to` relative to `from` (both made absolute), for a portable `policies = "..."`.
pub(crate) fn relative(from: &Path, to: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let norm = |p: PathBuf| -> Vec<Component<'static>> {
        let mut out: Vec<Component<'static>> = Vec::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(match other {
                    Component::Normal(s) => {
                        Component::Normal(Box::leak(s.to_os_string().into_boxed_os_str()))
                    }
                    Component::RootDir => Component::RootDir,
                    _ => continue,
                }),
            }
        }
        out
    };
    let (f, t) = (norm(abs(from)), norm(abs(to)));
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in t.iter().skip(common) {
        rel.push(c.as_os_str());
    }
    rel.display().to_string()
}
