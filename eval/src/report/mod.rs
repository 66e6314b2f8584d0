//! The compliance report: one document a reviewer reads without running anything. It gathers
//! what the other tools establish — validation and hashes of each policy set, every policy with
//! its coverage and mutation status, the proofs and findings, every scenario with its result and
//! decision timeline (each allowed tool call beside the forbids that could have stopped it), and
//! the verification of a store — and renders it as Markdown and as one self-contained HTML page
//! ([`render`]).

pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::PolicySet;
use kernel::{BundleHashes, Deployment, EventBody};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Signature, StoreReport};
use crate::mutate::Outcome;
use crate::prove::{Properties, SolverSpec};
use crate::runner::{Ids, run_all};

/// What goes into a report.
pub struct Inputs<'a> {
    /// The policy directory.
    pub policies: &'a Path,
    /// The scenario files.
    pub scenarios: &'a [PathBuf],
    /// The properties to prove and the directory they were read from, if any.
    pub properties: Option<(Properties, PathBuf)>,
    /// The solver, if one can run.
    pub solver: Option<SolverSpec>,
    /// A store's audit, with how it was named.
    pub store: Option<(String, StoreReport)>,
    /// Whether to run mutation testing (a few seconds on the shipped suite).
    pub mutate: bool,
}

/// One policy set (base and a pack): whether it validates, and its hashes.
#[derive(Debug, Clone, Serialize)]
pub struct SetRow {
    /// `base` or `base+PACK`.
    pub name: String,
    /// `Ok(hashes)` when it loads and validates, else every problem found.
    pub result: Result<BundleHashes, String>,
}

/// One policy with what the suite knows of it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    /// The `@id`.
    pub id: String,
    /// The file it is in.
    pub file: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// Its text.
    pub text: String,
    /// Scenarios in which it decided something.
    pub scenarios: Vec<String>,
    /// Mutants killed, survived, stillborn (when mutation ran).
    pub mutants: Option<(usize, usize, usize)>,
    /// Surviving mutants: what was changed, and the diff.
    pub survivors: Vec<(String, String)>,
}

/// One decision in a scenario's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Logical time.
    pub t_ms: u64,
    /// The event kind.
    pub kind: String,
    /// The action decided.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// `allow` or `deny`.
    pub effect: String,
    /// The policies that decided it.
    pub policies: Vec<String>,
    /// For an allowed tool call: the forbids whose scope covers this action, with their
    /// conditions — the rules that would have stopped it had their conditions held.
    pub stoppers: Vec<(String, String)>,
}

/// One scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRow {
    /// The file.
    pub file: String,
    /// Its name.
    pub name: String,
    /// Final status.
    pub status: String,
    /// Unmet expectations (empty: passed), or why it could not run.
    pub failures: Vec<String>,
    /// Every decision, in order.
    pub timeline: Vec<Step>,
}

/// One session of the audited store.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    /// `tenant/id`.
    pub session: String,
    /// Whether its chain (and signature, when checked) verified.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The audited store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSection {
    /// The store, as named.
    pub source: String,
    /// Each session.
    pub sessions: Vec<SessionRow>,
    /// The signed checkpoints, when a key was given.
    pub manifest: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The policy directory.
    pub policies_dir: String,
    /// Each policy set.
    pub sets: Vec<SetRow>,
    /// Every policy of every set, once, by id.
    pub policies: Vec<PolicyRow>,
    /// Policy coverage, percent.
    pub coverage: f64,
    /// Mutation score, percent, with killed / judged, when mutation ran.
    pub mutation: Option<(f64, usize, usize)>,
    /// The proofs, or why there are none.
    pub proofs: Result<crate::prove::Report, String>,
    /// Every scenario.
    pub scenarios: Vec<ScenarioRow>,
    /// The store, when one was given.
    pub store: Option<StoreSection>,
}

/// Gathers the report.
pub fn gather(inputs: Inputs<'_>) -> Report {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let sets = sets(inputs.policies);
    let results = run_all(inputs.scenarios, threads, Ids::Stem);
    let coverage = crate::coverage::of(&results);

    let mut policies: BTreeMap<String, PolicyRow> = BTreeMap::new();
    let mut stoppers_by_bundle: BTreeMap<String, BTreeMap<String, Vec<(String, String)>>> =
        BTreeMap::new();
    let mut scenarios = Vec::new();
    for r in &results {
        let file = r.path.display().to_string();
        let ran = match &r.outcome {
            Ok(ran) => ran,
            Err(e) => {
                scenarios.push(ScenarioRow {
                    file,
                    name: String::new(),
                    status: "not run".into(),
                    failures: vec![e.to_string()],
                    timeline: Vec::new(),
                });
                continue;
            }
        };
        add_policies(&ran.deployment, &mut policies);
        let bundle = ran.deployment.bundle_hash().unwrap_or_default().to_owned();
        let stoppers = stoppers_by_bundle
            .entry(bundle)
            .or_insert_with(|| forbids_by_action(&ran.deployment));
        let timeline = ran
            .run
            .events
            .iter()
            .filter_map(|e| {
                let d = e.decision.as_ref()?;
                let action = unquote(&d.action);
                let is_tool = ran.deployment.tool(&action).is_some();
                let allowed = d.allowed();
                Some(Step {
                    t_ms: e.t_ms,
                    kind: e.body.kind().to_owned(),
                    action: action.clone(),
                    resource: d.resource.clone(),
                    effect: if allowed { "allow" } else { "deny" }.into(),
                    policies: d.deciders().into_iter().map(str::to_owned).collect(),
                    stoppers: if allowed
                        && is_tool
                        && matches!(e.body, EventBody::ToolCalled { .. })
                    {
                        stoppers.get(&action).cloned().unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect();
        scenarios.push(ScenarioRow {
            file,
            name: ran.loaded.scenario.name.clone(),
            status: ran.run.status.as_str().to_owned(),
            failures: ran.failures.iter().map(ToString::to_string).collect(),
            timeline,
        });
    }
    for (id, scenarios) in &coverage.policies {
        if let Some(row) = policies.get_mut(id) {
            row.scenarios = scenarios.iter().cloned().collect();
        }
    }

    let mut mutation = None;
    if inputs.mutate {
        let m = crate::mutate::of(&results, threads);
        for j in &m.mutants {
            let Some(row) = policies.get_mut(&j.mutant.policy) else {
                continue;
            };
            let counts = row.mutants.get_or_insert((0, 0, 0));
            match &j.outcome {
                Outcome::Killed { .. } => counts.0 += 1,
                Outcome::Survived { .. } => {
                    counts.1 += 1;
                    row.survivors.push((
                        j.mutant.operator.describe().to_owned(),
                        j.mutant.diff.clone(),
                    ));
                }
                Outcome::Stillborn { .. } => counts.2 += 1,
            }
        }
        mutation = Some((m.score(), m.killed(), m.killed() + m.survivors().len()));
    }

    let proofs = match (&inputs.properties, &inputs.solver) {
        (None, _) => Err("no properties file".to_owned()),
        (Some(_), None) => Err("no SMT solver could be run: nothing was proved".to_owned()),
        (Some((props, dir)), Some(solver)) => {
            crate::prove::prove(inputs.policies, props, dir, solver, true)
                .map_err(|e| e.to_string())
        }
    };

    let store = inputs
        .store
        .map(|(source, report)| store_section(source, &report));
    Report {
        policies_dir: inputs.policies.display().to_string(),
        sets,
        policies: policies.into_values().collect(),
        coverage: coverage.percent(),
        mutation,
        proofs,
        scenarios,
        store,
    }
}

/// `base` alone, then base with each pack, as `arbiter check` loads them.
fn sets(root: &Path) -> Vec<SetRow> {
    // A directory that cannot be listed shows as base alone, whose load then names the problem.
    let packs = kernel::pack::pack_names(root).unwrap_or_default();
    std::iter::once(None)
        .chain(packs.iter().map(Some))
        .map(|pack| {
            let names: Vec<&str> = pack.iter().map(|p| p.as_str()).collect();
            let name = pack.map_or_else(|| "base".to_owned(), |p| format!("base+{p}"));
            let result = kernel::pack::load_packs(root, &names)
                .map(|d| d.hashes().clone())
                .map_err(|e| {
                    let mut text = e.to_string();
                    if let kernel::pack::PackError::Invalid(errors) = &e {
                        for problem in &errors.0 {
                            text.push_str(&format!("\n{problem}"));
                        }
                    }
                    text
                });
            SetRow { name, result }
        })
        .collect()
}

/// Every policy of `deployment` not yet listed, with its file and text.
fn add_policies(deployment: &Deployment, rows: &mut BTreeMap<String, PolicyRow>) {
    for source in &deployment.sources().policies {
        let Ok(set) = PolicySet::from_str(&source.text) else {
            continue;
        };
        for p in set.policies() {
            let Some(id) = p.annotation("id") else {
                continue;
            };
            rows.entry(id.to_owned()).or_insert_with(|| PolicyRow {
                id: id.to_owned(),
                file: source.name.clone(),
                effect: format!("{:?}", p.effect()).to_lowercase(),
                text: p.to_string(),
                scenarios: Vec::new(),
                mutants: None,
                survivors: Vec::new(),
            });
        }
    }
}

/// For each tool of the deployment, the forbids whose action scope covers it, with their
/// conditions as text.
fn forbids_by_action(deployment: &Deployment) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let tools: Vec<String> = deployment.tool_names().map(str::to_owned).collect();
    for policy in deployment.cedar_policies().policies() {
        if policy.effect() != cedar_policy::Effect::Forbid {
            continue;
        }
        let Ok(est) = policy.to_json() else { continue };
        let id = policy.id().to_string();
        let condition = conditions_text(&policy.to_string());
        for tool in &tools {
            if covers(&est, tool) {
                out.entry(tool.clone())
                    .or_default()
                    .push((id.clone(), condition.clone()));
            }
        }
    }
    // Policy sets iterate in no fixed order; the report lists them by id.
    for forbids in out.values_mut() {
        forbids.sort();
    }
    out
}

/// Whether a policy's action scope covers the tool's action (directly, or through `call_tool`).
fn covers(est: &Value, tool: &str) -> bool {
    let scope = est.get("action");
    let names = |v: &Value| -> Vec<String> {
        let one = |e: &Value| e.get("id").and_then(Value::as_str).map(str::to_owned);
        match v {
            Value::Array(items) => items.iter().filter_map(one).collect(),
            other => one(other).into_iter().collect(),
        }
    };
    match scope.and_then(|s| s.get("op")).and_then(Value::as_str) {
        Some("All") | None => true,
        Some("==") => scope
            .and_then(|s| s.get("entity"))
            .is_some_and(|e| names(e).iter().any(|n| n == tool)),
        Some("in") => {
            let listed = scope
                .and_then(|s| s.get("entity").or_else(|| s.get("entities")))
                .map(names)
                .unwrap_or_default();
            listed.iter().any(|n| n == tool || n == "call_tool")
        }
        Some(_) => false,
    }
}

/// The `when`/`unless` clauses of a policy's text (everything after its scope).
fn conditions_text(text: &str) -> String {
    let start = ["when", "unless"]
        .iter()
        .filter_map(|k| {
            text.find(&format!("\n{k}"))
                .or_else(|| text.find(&format!(") {k}")))
        })
        .min();
    match start {
        Some(i) => text
            .get(i..)
            .unwrap_or_default()
            .trim_start_matches(')')
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        None => "(always)".into(),
    }
}

fn unquote(action: &str) -> String {
    action
        .strip_prefix("Action::\"")
        .and_then(|a| a.strip_suffix('"'))
        .unwrap_or(action)
        .to_owned()
}

fn store_section(source: String, report: &StoreReport) -> StoreSection {
    let sessions = report
        .sessions
        .iter()
        .map(|v| {
            let (tenant, id) = &v.session;
            let chain = match &v.result {
                Ok(Ok(_)) if v.closed => format!("chain intact, {} events, ended", v.events),
                Ok(Ok(_)) => format!("chain intact, {} events, still open", v.events),
                Ok(Err(e)) => format!("chain BROKEN: {e}"),
                Err(e) => format!("cannot be read: {e}"),
            };
            let signature = match &v.signature {
                None => String::new(),
                Some(Signature::Signed) => "; signed head verified".into(),
                Some(Signature::Partly { signed }) => {
                    format!("; first {signed} events signed, the rest not yet")
                }
                Some(Signature::Missing) => "; no checkpoint names it".into(),
                Some(other) => format!("; signature CONTRADICTED: {other:?}"),
            };
            SessionRow {
                session: format!("{tenant}/{id}"),
                ok: !v.failed(),
                detail: format!("{chain}{signature}"),
            }
        })
        .collect();
    let manifest = report.manifest.as_ref().map(|m| {
        format!(
            "{} of {} checkpoint(s) verified; head {}{}",
            m.trusted,
            m.total,
            m.head.as_deref().unwrap_or("(none)"),
            m.problem
                .as_ref()
                .map(|p| format!("; TAMPERED: {p}"))
                .unwrap_or_default()
        )
    });
    StoreSection {
        source,
        sessions,
        manifest,
    }
}
