//! Proofs over every request, not only the ones the scenarios try: the author's properties
//! ([`properties`]) and the standard findings per policy (never matches, can error), checked by
//! Cedar's symbolic compiler (`cedar-policy-symcc`) with an SMT solver.
//!
//! A proof covers every request that validates against the deployment's schema, one request
//! environment (principal type, action, resource type) at a time, with every entity store — not
//! just the shipped `entities.json` — so it holds for any tenant, user or tool. It is stated in
//! Cedar's semantics, where a policy that errs is skipped; the kernel denies on any error, so what
//! Cedar never allows, the kernel never allows either. An `@approval` forbid is part of the set:
//! "never allowed" means "never allowed before an approval lifts that forbid".

pub mod properties;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use cedar_policy::{PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet};
use kernel::Deployment;
use serde::Serialize;
use thiserror::Error;

pub use properties::{Check, Properties, Property};

/// Why a proof run could not start.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum ProveError {
    /// A policy set does not load.
    #[error("{root}: packs {packs:?} do not load")]
    Policies {
        /// The policy directory.
        root: PathBuf,
        /// The packs.
        packs: Vec<String>,
        /// Why.
        #[source]
        #[diagnostic_source]
        source: kernel::pack::PackError,
    },
    /// The solver could not be started.
    #[error("cannot start the solver `{command}`: {message}")]
    Solver {
        /// The command.
        command: String,
        /// Why.
        message: String,
    },
    /// The async runtime the solver is driven on could not be built.
    #[error("cannot start the runtime for the solver: {0}")]
    Runtime(std::io::Error),
}

/// The SMT solver a proof runs on: a program speaking SMT-LIB 2 on stdin and stdout.
#[derive(Debug, Clone, Serialize)]
pub struct SolverSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// What it says its version is (its first line of `--version`).
    pub version: String,
}

impl SolverSpec {
    /// `command` (a program and its arguments, split at whitespace, e.g. `z3 -in`) if given; else
    /// `$CVC5`, else `cvc5` on the `PATH`, run as `cvc5 --lang smt --strings-exp --tlimit=60000`
    /// (`like` compiles to string constraints, which cvc5 before 1.1 only takes with
    /// `--strings-exp`). `None` when that program cannot be run.
    pub fn find(command: Option<&str>) -> Option<Self> {
        let (program, args) = match command {
            Some(c) => {
                let mut words = c.split_whitespace().map(str::to_owned);
                (PathBuf::from(words.next()?), words.collect())
            }
            None => (
                PathBuf::from(std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into())),
                ["--lang", "smt", "--strings-exp", "--tlimit=60000"]
                    .map(String::from)
                    .to_vec(),
            ),
        };
        let out = Command::new(&program).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default().trim();
        let version = first.strip_prefix("This is ").unwrap_or(first).to_owned();
        Some(Self {
            program,
            args,
            version,
        })
    }

    fn spawn(&self) -> Result<LocalSolver, ProveError> {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.args).kill_on_drop(true);
        LocalSolver::from_command(&mut command).map_err(|e| ProveError::Solver {
            command: self.to_string(),
            message: e.to_string(),
        })
    }
}

impl std::fmt::Display for SolverSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.display())?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// What became of one property on one policy set.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It holds for every request of every environment checked.
    Holds {
        /// Request environments checked.
        environments: usize,
    },
    /// A request breaks it.
    Fails {
        /// The environment's action.
        action: String,
        /// The request, its context and the entities, as the solver built them.
        counterexample: String,
    },
    /// It could not be decided (a condition that does not validate, the solver said `unknown`).
    Error {
        /// Why.
        message: String,
    },
}

/// A property's verdict on one policy set.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The property's name.
    pub property: String,
    /// The policy set: `base` and these packs.
    pub packs: Vec<String>,
    /// The check.
    pub check: Check,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A standard finding about one policy.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The policy's `@id`.
    pub policy: String,
    /// The policy set it was found in.
    pub packs: Vec<String>,
    /// What was found.
    pub kind: FindingKind,
    /// A request showing it (for `can_error`).
    pub example: Option<String>,
}

/// The standard findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// No request of any environment matches it: it can never decide anything.
    NeverMatches,
    /// Some request makes it fail to evaluate (the kernel then denies).
    CanError,
    /// Every request it matches, another policy of the same effect matches too: removing it
    /// changes no decision's effect (its annotations — obligations, `@approval`, `@limit` — may
    /// still matter).
    Redundant,
    /// A permit every request of which some forbid also matches: it can never allow anything.
    Shadowed,
}

impl FindingKind {
    /// What it means, for listings.
    pub fn describe(self) -> &'static str {
        match self {
            FindingKind::NeverMatches => "never matches any request",
            FindingKind::CanError => "can fail to evaluate (the kernel then denies)",
            FindingKind::Redundant => {
                "redundant: another policy of its effect matches every request it does"
            }
            FindingKind::Shadowed => "shadowed: a forbid matches every request it permits",
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The solver that ran.
    pub solver: SolverSpec,
    /// Each property on each of its policy sets.
    pub outcomes: Vec<Outcome>,
    /// The findings per policy.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every property holds (findings are advice, not failures).
    pub fn holds(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| matches!(o.verdict, Verdict::Holds { .. }))
    }
}

/// Proves `props` (read from a file in `props_dir`) over the policy directory `root`, and, with
/// `findings`, looks for policies that never match or can err in every set the properties name.
pub fn prove(
    root: &Path,
    props: &Properties,
    props_dir: &Path,
    solver: &SolverSpec,
    findings: bool,
) -> Result<Report, ProveError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProveError::Runtime)?;
    let start = || {
        CedarSymCompiler::new(solver.spawn()?).map_err(|e| ProveError::Solver {
            command: solver.to_string(),
            message: e.to_string(),
        })
    };
    runtime.block_on(async {
        let mut compiler = start()?;
        let mut sets = Sets::default();
        let mut outcomes = Vec::new();
        let all_packs = kernel::pack::pack_names(root).map_err(|source| ProveError::Policies {
            root: root.to_owned(),
            packs: Vec::new(),
            source,
        })?;
        let mut proved_sets = Vec::new();
        for p in &props.properties {
            let packs = p.packs.clone().unwrap_or_else(|| all_packs.clone());
            for pack in packs {
                let set = vec![pack];
                let deployment = sets.get(root, &set)?;
                let other = match &p.other {
                    Some(dir) => Some(sets.get(&props_dir.join(dir), &set)?),
                    None => None,
                };
                let verdict = check(&mut compiler, p, &deployment, other.as_deref()).await;
                if matches!(verdict, Verdict::Error { .. }) {
                    // A solver that failed may have exited: the next proof gets a fresh one.
                    compiler = start()?;
                }
                if !proved_sets.contains(&set) {
                    proved_sets.push(set.clone());
                }
                outcomes.push(Outcome {
                    property: p.name.clone(),
                    packs: set,
                    check: p.check,
                    verdict,
                });
            }
        }
        let mut found = Vec::new();
        if proved_sets.is_empty() {
            // No property names a set: look for findings in base with each pack.
            proved_sets = all_packs.iter().map(|p| vec![p.clone()]).collect();
        }
        if findings {
            let mut seen = std::collections::BTreeSet::new();
            for set in &proved_sets {
                let deployment = sets.get(root, set)?;
                for f in policy_findings(&mut compiler, &deployment, set).await {
                    // base's policies are in every set: report each finding once.
                    if seen.insert((f.policy.clone(), f.kind as u8)) {
                        found.push(f);
                    }
                }
            }
        }
        Ok(Report {
            solver: solver.clone(),
            outcomes,
            findings: found,
        })
    })
}

/// Deployments by (directory, packs), built once.
#[derive(Default)]
struct Sets(BTreeMap<(PathBuf, Vec<String>), std::sync::Arc<Deployment>>);

impl Sets {
    fn get(
        &mut self,
        root: &Path,
        packs: &[String],
    ) -> Result<std::sync::Arc<Deployment>, ProveError> {
        let key = (root.to_owned(), packs.to_vec());
        if let Some(d) = self.0.get(&key) {
            return Ok(std::sync::Arc::clone(d));
        }
        let names: Vec<&str> = packs.iter().map(String::as_str).collect();
        let d = kernel::pack::load_packs(root, &names).map_err(|source| ProveError::Policies {
            root: root.to_owned(),
            packs: packs.to_vec(),
            source,
        })?;
        let d = std::sync::Arc::new(d);
        self.0.insert(key, std::sync::Arc::clone(&d));
        Ok(d)
    }
}

/// The request environments whose action `actions` names (`call_tool`: every tool), or all.
fn environments(deployment: &Deployment, actions: &[String]) -> Vec<RequestEnv> {
    deployment
        .cedar_schema()
        .request_envs()
        .filter(|env| {
            if actions.is_empty() {
                return true;
            }
            let name = env.action().id().unescaped().to_owned();
            actions
                .iter()
                .any(|a| *a == name || (a == "call_tool" && deployment.tool(&name).is_some()))
        })
        .collect()
}

async fn check(
    compiler: &mut CedarSymCompiler<LocalSolver>,
    p: &Property,
    deployment: &Deployment,
    other: Option<&Deployment>,
) -> Verdict {
    let schema = deployment.cedar_schema();
    let envs = environments(deployment, &p.actions);
    if envs.is_empty() {
        // A proof over no request would "hold" and say nothing.
        return Verdict::Error {
            message: format!("no action of this policy set is among {:?}", p.actions),
        };
    }
    let condition = match (&p.check, &p.condition) {
        (Check::AllowedOnlyWhen, Some(c)) => {
            match PolicySet::from_str(&format!(
                "permit (principal, action, resource) when {{ {c} }};"
            )) {
                Ok(set) => Some(set),
                Err(e) => {
                    return Verdict::Error {
                        message: format!("condition `{c}` does not parse: {e}"),
                    };
                }
            }
        }
        _ => None,
    };
    for env in &envs {
        let action = env.action().to_string();
        let result = match p.check {
            Check::NeverErrors => never_errors(compiler, deployment, env).await,
            check => {
                let this =
                    match CompiledPolicySet::compile(deployment.cedar_policies(), env, schema) {
                        Ok(c) => c,
                        Err(e) => return error_at(&action, "the policy set", &e),
                    };
                let second = match (&condition, other) {
                    (Some(set), _) => Some(("the condition", set)),
                    (None, Some(o)) => Some(("the other policy set", o.cedar_policies())),
                    (None, None) => None,
                };
                let second = match second {
                    Some((what, set)) => match CompiledPolicySet::compile(set, env, schema) {
                        Ok(c) => Some(c),
                        Err(e) => return error_at(&action, what, &e),
                    },
                    None => None,
                };
                let found = match (check, second.as_ref()) {
                    (Check::AlwaysDenies, _) => {
                        compiler
                            .check_always_denies_with_counterexample_opt(&this)
                            .await
                    }
                    (Check::AllowedOnlyWhen | Check::Implies, Some(s)) => {
                        compiler
                            .check_implies_with_counterexample_opt(&this, s)
                            .await
                    }
                    (Check::Equivalent, Some(s)) => {
                        compiler
                            .check_equivalent_with_counterexample_opt(&this, s)
                            .await
                    }
                    (Check::Disjoint, Some(s)) => {
                        compiler
                            .check_disjoint_with_counterexample_opt(&this, s)
                            .await
                    }
                    _ => Ok(None),
                };
                found.map(|cex| cex.map(|e| e.to_string()))
            }
        };
        match result {
            Ok(None) => {}
            Ok(Some(counterexample)) => {
                return Verdict::Fails {
                    action,
                    counterexample,
                };
            }
            Err(e) => {
                return Verdict::Error {
                    message: format!("{action}: {e}"),
                };
            }
        }
    }
    Verdict::Holds {
        environments: envs.len(),
    }
}

fn error_at(action: &str, what: &str, e: &cedar_policy_symcc::err::Error) -> Verdict {
    let detail = match e {
        cedar_policy_symcc::err::Error::PolicyNotWellTyped { errs } => errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    Verdict::Error {
        message: format!("{what} does not validate for {action}: {detail}"),
    }
}

/// The first request of `env` on which some policy of the set errs, named with that policy.
async fn never_errors(
    compiler: &mut CedarSymCompiler<LocalSolver>,
    deployment: &Deployment,
    env: &RequestEnv,
) -> Result<Option<String>, cedar_policy_symcc::err::Error> {
    for policy in deployment.cedar_policies().policies() {
        let compiled = CompiledPolicy::compile(policy, env, deployment.cedar_schema())?;
        if let Some(cex) = compiler
            .check_never_errors_with_counterexample_opt(&compiled)
            .await?
        {
            let id = policy.annotation("id").unwrap_or("(no @id)");
            return Ok(Some(format!("`{id}` errs on\n{cex}")));
        }
    }
    Ok(None)
}

/// Policies that match no request in any environment they apply to, and policies that can err.
async fn policy_findings(
    compiler: &mut CedarSymCompiler<LocalSolver>,
    deployment: &Deployment,
    packs: &[String],
) -> Vec<Finding> {
    let schema: &Schema = deployment.cedar_schema();
    let mut out = Vec::new();
    for policy in deployment.cedar_policies().policies() {
        let id = policy.annotation("id").unwrap_or("(no @id)").to_owned();
        let mut matches_somewhere = false;
        let mut example = None;
        for env in policy.get_valid_request_envs(schema) {
            let Ok(compiled) = CompiledPolicy::compile(policy, &env, schema) else {
                continue;
            };
            if !matches_somewhere {
                // An error or `unknown` from the solver is not evidence that it never matches.
                matches_somewhere =
                    !matches!(compiler.check_never_matches_opt(&compiled).await, Ok(true));
            }
            if example.is_none()
                && let Ok(Some(cex)) = compiler
                    .check_never_errors_with_counterexample_opt(&compiled)
                    .await
            {
                example = Some(cex.to_string());
            }
        }
        if !matches_somewhere {
            out.push(Finding {
                policy: id.clone(),
                packs: packs.to_vec(),
                kind: FindingKind::NeverMatches,
                example: None,
            });
        } else {
            for kind in [FindingKind::Redundant, FindingKind::Shadowed] {
                if covered(compiler, deployment, policy, kind).await {
                    out.push(Finding {
                        policy: id.clone(),
                        packs: packs.to_vec(),
                        kind,
                        example: None,
                    });
                }
            }
        }
        if example.is_some() {
            out.push(Finding {
                policy: id,
                packs: packs.to_vec(),
                kind: FindingKind::CanError,
                example,
            });
        }
    }
    out
}

/// `policy` as a permit with no annotations (what it matches, as an allow).
fn as_permit(policy: &cedar_policy::Policy, id: &str) -> Option<cedar_policy::Policy> {
    let mut est = policy.to_json().ok()?;
    *est.get_mut("effect")? = serde_json::json!("permit");
    if let Some(a) = est.get_mut("annotations") {
        *a = serde_json::json!({});
    }
    cedar_policy::Policy::from_json(Some(cedar_policy::PolicyId::new(id)), est).ok()
}

/// Whether `policy` is redundant (every request it matches, another policy of its effect
/// matches) or, for a permit, shadowed (every request it matches, some forbid matches), in every
/// request environment it applies to. An undecided query counts as "no".
async fn covered(
    compiler: &mut CedarSymCompiler<LocalSolver>,
    deployment: &Deployment,
    policy: &cedar_policy::Policy,
    kind: FindingKind,
) -> bool {
    let schema = deployment.cedar_schema();
    let effect = policy.effect();
    if kind == FindingKind::Shadowed && effect != cedar_policy::Effect::Permit {
        return false;
    }
    let mut alone = PolicySet::new();
    let mut cover = PolicySet::new();
    let built = (|| {
        alone.add(as_permit(policy, "alone")?).ok()?;
        match kind {
            FindingKind::Shadowed => {
                // Allows exactly the requests no forbid matches.
                cover
                    .add(
                        cedar_policy::Policy::from_str("permit (principal, action, resource);")
                            .ok()?
                            .new_id(cedar_policy::PolicyId::new("all")),
                    )
                    .ok()?;
                for (i, f) in deployment
                    .cedar_policies()
                    .policies()
                    .filter(|p| p.effect() == cedar_policy::Effect::Forbid)
                    .enumerate()
                {
                    cover
                        .add(f.new_id(cedar_policy::PolicyId::new(format!("f{i}"))))
                        .ok()?;
                }
            }
            _ => {
                for (i, other) in deployment
                    .cedar_policies()
                    .policies()
                    .filter(|p| p.effect() == effect && p.id() != policy.id())
                    .enumerate()
                {
                    cover.add(as_permit(other, &format!("o{i}"))?).ok()?;
                }
            }
        }
        Some(())
    })();
    if built.is_none() {
        return false;
    }
    let mut any = false;
    for env in policy.get_valid_request_envs(schema) {
        let (Ok(a), Ok(c)) = (
            CompiledPolicySet::compile(&alone, &env, schema),
            CompiledPolicySet::compile(&cover, &env, schema),
        ) else {
            return false;
        };
        let holds = match kind {
            FindingKind::Shadowed => compiler.check_disjoint_opt(&a, &c).await,
            _ => compiler.check_implies_opt(&a, &c).await,
        };
        if !matches!(holds, Ok(true)) {
            return false;
        }
        any = true;
    }
    any
}
