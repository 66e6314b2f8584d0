//! Mutation testing of a policy set: would the suite notice if a rule were weakened?
//!
//! Each mutant is the policy set with one small change to one policy — dropped, its effect
//! flipped, a condition dropped or negated, one operand of an `&&`/`||` dropped or negated, a
//! numeric bound moved by one, `<` swapped with `<=`, an `@approval` or `@limit` dropped, a scope
//! widened to everything. The scenarios that load the mutated file are replayed under it: a
//! mutant is **killed** when some scenario's expectations fail (or it can no longer run),
//! **survives** when every one still passes — a rule nobody tests — and is **stillborn** when the
//! mutated set does not validate against the schema (no one could deploy it, so it counts for
//! neither side). Only the scenario expectations judge (not the event snapshots), exactly what
//! `arbiter test` checks.
//!
//! Mutants are made on Cedar's JSON form of the policy (the EST) and spliced back into the file
//! in place of the original text, so everything else in the file is byte-identical; a survivor is
//! shown as a line diff of the policy before and after, both printed by Cedar's formatter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cedar_policy::{Policy, PolicySet};
use kernel::{Deployment, Source};
use serde::Serialize;
use serde_json::{Value, json};

use crate::expect::check;
use crate::replay::replay;
use crate::runner::{FileResult, Ids, Ran, run_all};

/// The kind of change a mutant makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// The policy removed.
    DropPolicy,
    /// `permit` ↔ `forbid` (annotations the new effect does not take are dropped with it).
    FlipEffect,
    /// One `when`/`unless` clause removed.
    DropCondition,
    /// One clause negated (`when` ↔ `unless`).
    NegateCondition,
    /// One side of an `&&` or `||` removed (the node replaced by the other side).
    DropOperand,
    /// One side of an `&&` or `||` negated.
    NegateOperand,
    /// An integer literal compared with `<`, `<=`, `>` or `>=` moved by one.
    MoveBound,
    /// `<` ↔ `<=`, `>` ↔ `>=`.
    SwapStrictness,
    /// The `@approval` annotation removed, with its timeout and self-approval (the forbid no
    /// longer asks, it just denies).
    DropApproval,
    /// The `@limit` annotation removed (the forbid no longer ends the session).
    DropLimit,
    /// The principal, action or resource scope widened to everything.
    WidenScope,
}

impl Operator {
    /// A short phrase for listings.
    pub fn describe(self) -> &'static str {
        match self {
            Operator::DropPolicy => "drop the policy",
            Operator::FlipEffect => "flip permit/forbid",
            Operator::DropCondition => "drop a condition",
            Operator::NegateCondition => "negate a condition",
            Operator::DropOperand => "drop an operand",
            Operator::NegateOperand => "negate an operand",
            Operator::MoveBound => "move a bound by one",
            Operator::SwapStrictness => "swap < and <=",
            Operator::DropApproval => "drop @approval",
            Operator::DropLimit => "drop @limit",
            Operator::WidenScope => "widen a scope",
        }
    }
}

/// One mutated policy set: a single policy of a single file changed.
#[derive(Debug, Clone, Serialize)]
pub struct Mutant {
    /// The mutated policy's `@id`.
    pub policy: String,
    /// The file it is in.
    pub file: String,
    /// What was changed.
    pub operator: Operator,
    /// The policy before and after as a line diff: `-` and `+` lines with two unchanged lines of
    /// context, `…` for lines left out.
    pub diff: String,
    /// The whole file with the mutation spliced in.
    #[serde(skip)]
    pub text: String,
}

/// What the suite made of a mutant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A scenario noticed.
    Killed {
        /// The first scenario that failed.
        scenario: String,
        /// Its first unmet expectation (or why it could not run).
        failure: String,
    },
    /// Every scenario that loads the file still passes.
    Survived {
        /// How many scenarios ran under the mutant.
        scenarios: usize,
    },
    /// The mutated set does not build (schema validation); it counts for neither side.
    Stillborn {
        /// The build error.
        reason: String,
    },
}

/// A mutant and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    /// The mutant.
    #[serde(flatten)]
    pub mutant: Mutant,
    /// What the suite made of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The result of mutating every policy file the suite loads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every mutant, by file, policy and operator.
    pub mutants: Vec<Judged>,
    /// Scenarios that passed unmutated and judged the mutants.
    pub scenarios: usize,
    /// Scenarios left out because they fail (or cannot run) unmutated, with why.
    pub excluded: Vec<(String, String)>,
}

impl Report {
    /// Killed mutants.
    pub fn killed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Killed { .. }))
    }

    /// Surviving mutants.
    pub fn survivors(&self) -> Vec<&Judged> {
        self.mutants
            .iter()
            .filter(|j| matches!(j.outcome, Outcome::Survived { .. }))
            .collect()
    }

    /// Mutants that did not validate.
    pub fn stillborn(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Stillborn { .. }))
    }

    /// Killed over killed plus survived, in percent (100 with no such mutant).
    pub fn score(&self) -> f64 {
        let killed = self.killed();
        let judged = killed + self.survivors().len();
        if judged == 0 {
            return 100.0;
        }
        killed as f64 * 100.0 / judged as f64
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.mutants.iter().filter(|j| f(&j.outcome)).count()
    }
}

/// Every mutant of every policy in `source` (a file of Cedar policies), in file order. A file
/// that does not parse has none (the unmutated build reports it).
pub fn mutants(source: &Source) -> Vec<Mutant> {
    let text: &str = &source.text;
    let Ok(set) = PolicySet::from_str(text) else {
        return Vec::new();
    };
    // `from_str` names policies policy0..N in file order; each one's text is found after the
    // previous one's, so a policy repeated verbatim is still spliced in the right place.
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| {
        AsRef::<str>::as_ref(p.id())
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(0)
    });
    let mut out = Vec::new();
    let mut cursor = 0;
    for policy in policies {
        let original = policy.to_string();
        let Some(start) = text
            .get(cursor..)
            .and_then(|rest| rest.find(&original))
            .map(|o| cursor + o)
        else {
            continue;
        };
        let end = start + original.len();
        cursor = end;
        let Ok(est) = policy.to_json() else { continue };
        let id = policy.annotation("id").unwrap_or("(no @id)").to_owned();
        let before = pretty_est(&est).unwrap_or_else(|| original.clone());
        let splice = |replacement: &str| {
            let mut t = String::with_capacity(text.len() + replacement.len());
            t.push_str(text.get(..start).unwrap_or_default());
            t.push_str(replacement);
            t.push_str(text.get(end..).unwrap_or_default());
            t
        };
        out.push(Mutant {
            policy: id.clone(),
            file: source.name.clone(),
            operator: Operator::DropPolicy,
            diff: line_diff(&before, ""),
            text: splice(""),
        });
        for (operator, changed) in est_mutants(&est) {
            let Ok(p) = Policy::from_json(None, changed) else {
                continue;
            };
            let cedar = p.to_string();
            let after = pretty(&cedar);
            if after == before {
                continue;
            }
            out.push(Mutant {
                policy: id.clone(),
                file: source.name.clone(),
                operator,
                diff: line_diff(&before, &after),
                text: splice(&cedar),
            });
        }
    }
    out
}

/// `@approval` and the annotations that only mean something beside it (the kernel refuses them
/// alone), so dropping it drops them too.
const APPROVAL: &[&str] = &["approval", "approval_timeout_ms", "self_approval"];

/// The policy's mutations other than dropping it, on its JSON form.
fn est_mutants(est: &Value) -> Vec<(Operator, Value)> {
    let mut out = Vec::new();
    let mut with = |operator, f: &dyn Fn(&mut Value) -> Option<()>| {
        let mut v = est.clone();
        if f(&mut v).is_some() {
            out.push((operator, v));
        }
    };
    with(Operator::FlipEffect, &|v| {
        let (flipped, meaningless) = match v.get("effect")?.as_str()? {
            "permit" => ("forbid", &kernel::PERMIT_ONLY[..]),
            _ => ("permit", &kernel::FORBID_ONLY[..]),
        };
        *v.get_mut("effect")? = json!(flipped);
        if let Some(annotations) = v.get_mut("annotations").and_then(Value::as_object_mut) {
            for key in meaningless {
                annotations.remove(*key);
            }
        }
        Some(())
    });
    for (operator, keys) in [
        (Operator::DropApproval, APPROVAL),
        (Operator::DropLimit, &["limit"][..]),
    ] {
        with(operator, &|v| {
            let annotations = v.get_mut("annotations")?.as_object_mut()?;
            let first = keys.first()?;
            annotations.remove(*first)?;
            for key in keys {
                annotations.remove(*key);
            }
            Some(())
        });
    }
    for scope in ["principal", "action", "resource"] {
        with(Operator::WidenScope, &|v| {
            let s = v.get_mut(scope)?;
            if s.get("op")?.as_str()? == "All" {
                return None;
            }
            *s = json!({ "op": "All" });
            Some(())
        });
    }
    let conditions = est
        .get("conditions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..conditions {
        with(Operator::DropCondition, &|v| {
            let list = v.get_mut("conditions")?.as_array_mut()?;
            (i < list.len()).then(|| {
                list.remove(i);
            })
        });
        with(Operator::NegateCondition, &|v| {
            let kind = v.pointer_mut(&format!("/conditions/{i}/kind"))?;
            let negated = if kind.as_str()? == "when" {
                "unless"
            } else {
                "when"
            };
            *kind = json!(negated);
            Some(())
        });
        let mut nodes = Vec::new();
        if let Some(body) = est.pointer(&format!("/conditions/{i}/body")) {
            operator_nodes(body, &format!("/conditions/{i}/body"), &mut nodes);
        }
        for (at, op) in nodes {
            if op == "&&" || op == "||" {
                for side in ["left", "right"] {
                    with(Operator::DropOperand, &|v| {
                        let other = if side == "left" { "right" } else { "left" };
                        let kept = v.pointer(&format!("{at}/{op}/{other}"))?.clone();
                        *v.pointer_mut(&at)? = kept;
                        Some(())
                    });
                    with(Operator::NegateOperand, &|v| {
                        let operand = v.pointer_mut(&format!("{at}/{op}/{side}"))?;
                        *operand = json!({ "!": { "arg": operand.take() } });
                        Some(())
                    });
                }
                continue;
            }
            with(Operator::SwapStrictness, &|v| {
                let node = v.pointer_mut(&at)?.as_object_mut()?;
                let inner = node.remove(op)?;
                let swapped = match op {
                    "<" => "<=",
                    "<=" => "<",
                    ">" => ">=",
                    _ => ">",
                };
                node.insert(swapped.into(), inner);
                Some(())
            });
            for side in ["left", "right"] {
                for delta in [-1_i64, 1] {
                    with(Operator::MoveBound, &|v| {
                        let literal = v.pointer_mut(&format!("{at}/{op}/{side}/Value"))?;
                        let moved = literal.as_i64()?.checked_add(delta)?;
                        *literal = json!(moved);
                        Some(())
                    });
                }
            }
        }
    }
    out
}

/// JSON pointers of the `&&`, `||` and ordering comparisons in an expression, outermost first.
fn operator_nodes(v: &Value, at: &str, out: &mut Vec<(String, &'static str)>) {
    const OPS: [&str; 6] = ["&&", "||", "<", "<=", ">", ">="];
    match v {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(op) = map
                    .keys()
                    .next()
                    .and_then(|k| OPS.iter().find(|o| **o == k))
            {
                out.push((at.to_owned(), op));
            }
            for (k, child) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                operator_nodes(child, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                operator_nodes(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn pretty_est(est: &Value) -> Option<String> {
    let p = Policy::from_json(None, est.clone()).ok()?;
    Some(pretty(&p.to_string()))
}

/// Cedar's formatter, so the before and after of a diff differ only where the mutant does.
fn pretty(cedar: &str) -> String {
    let config = cedar_policy_formatter::Config {
        line_width: 100,
        indent_width: 2,
    };
    cedar_policy_formatter::policies_str_to_pretty(cedar, &config)
        .map_or_else(|_| cedar.trim().to_owned(), |s| s.trim().to_owned())
}

/// The changed lines with up to two unchanged lines around each change; `…` marks lines left out.
fn line_diff(before: &str, after: &str) -> String {
    let diff = similar::TextDiff::from_lines(before, after);
    let mut out = String::new();
    for (n, group) in diff.grouped_ops(2).iter().enumerate() {
        if n > 0 || group.first().is_some_and(|op| op.old_range().start > 0) {
            out.push_str("  …\n");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => "- ",
                    similar::ChangeTag::Insert => "+ ",
                    similar::ChangeTag::Equal => "  ",
                };
                out.push_str(sign);
                out.push_str(change.value().trim_end_matches('\n'));
                out.push('\n');
            }
        }
    }
    out
}

/// A mutant waiting to be judged, with the scenarios that load its file (most likely killers
/// first: those where the policy decided something).
struct Job {
    mutant: Mutant,
    original: Source,
    scenarios: Vec<usize>,
}

/// Replays `files`, then every mutant of every policy file their deployments load, on `threads`
/// workers. Scenarios that fail unmutated are left out of the judging and listed.
pub fn run(files: &[PathBuf], threads: usize) -> Report {
    of(&run_all(files, threads, Ids::Stem), threads)
}

/// [`run`] on a suite already replayed (its results as [`run_all`] gives them), for callers that
/// need the unmutated run too and should not replay it twice.
pub fn of(results: &[FileResult], threads: usize) -> Report {
    let mut report = Report::default();
    let mut passing: Vec<&Ran> = Vec::new();
    for r in results {
        let name = r.path.display().to_string();
        match &r.outcome {
            Ok(ran) if ran.failures.is_empty() => passing.push(ran),
            Ok(ran) => {
                let why = ran
                    .failures
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                report.excluded.push((name, why));
            }
            Err(e) => report.excluded.push((name, e.to_string())),
        }
    }
    report.scenarios = passing.len();

    // Which scenarios load each policy file, and which policies decided something in each.
    let mut loaders: BTreeMap<(String, Arc<str>), (Source, Vec<usize>)> = BTreeMap::new();
    let mut decided: Vec<BTreeSet<&str>> = Vec::new();
    for (i, ran) in passing.iter().enumerate() {
        for s in &ran.deployment.sources().policies {
            loaders
                .entry((s.name.clone(), Arc::clone(&s.text)))
                .or_insert_with(|| (s.clone(), Vec::new()))
                .1
                .push(i);
        }
        let ids = ran.run.events.iter().filter_map(|e| e.decision.as_ref());
        decided.push(
            ids.flat_map(|d| {
                d.policies
                    .iter()
                    .map(|p| p.id.as_str())
                    .chain(d.erred.iter().map(String::as_str))
            })
            .collect(),
        );
    }
    let mut jobs = Vec::new();
    for (source, scenarios) in loaders.into_values() {
        for mutant in mutants(&source) {
            let mut order = scenarios.clone();
            order.sort_by_key(|i| {
                !decided
                    .get(*i)
                    .is_some_and(|d| d.contains(mutant.policy.as_str()))
            });
            jobs.push(Job {
                mutant,
                original: source.clone(),
                scenarios: order,
            });
        }
    }

    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(job), Some(slot)) = (jobs.get(i), slots.get(i)) else {
                        break;
                    };
                    let outcome = judge(job, &passing);
                    *slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome);
                }
            });
        }
    });
    for (job, slot) in jobs.into_iter().zip(slots) {
        let outcome = slot
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(Outcome::Stillborn {
                reason: "not judged (a worker stopped)".into(),
            });
        report.mutants.push(Judged {
            mutant: job.mutant,
            outcome,
        });
    }
    report
}

/// Replays the job's scenarios under the mutant until one fails. Each distinct deployment the
/// scenarios share is rebuilt once with the mutated file in place of the original.
fn judge(job: &Job, passing: &[&Ran]) -> Outcome {
    let mut built: HashMap<*const Deployment, Arc<Deployment>> = HashMap::new();
    for &i in &job.scenarios {
        let Some(ran) = passing.get(i) else { continue };
        let key = Arc::as_ptr(&ran.deployment);
        let deployment = match built.get(&key) {
            Some(d) => Arc::clone(d),
            None => {
                let mut sources = ran.deployment.sources().clone();
                for p in &mut sources.policies {
                    if *p == job.original {
                        *p = Source::new(p.name.clone(), job.mutant.text.clone());
                    }
                }
                match sources.build() {
                    Ok(d) => Arc::clone(built.entry(key).or_insert_with(|| Arc::new(d))),
                    Err(e) => {
                        let first = e.0.first().map(ToString::to_string);
                        return Outcome::Stillborn {
                            reason: first.unwrap_or_else(|| e.to_string()),
                        };
                    }
                }
            }
        };
        let scenario = ran.loaded.path.display().to_string();
        match replay(&ran.loaded, deployment) {
            Ok(run) => {
                if let Some(f) = check(&ran.loaded.scenario.expect, &run).first() {
                    return Outcome::Killed {
                        scenario,
                        failure: f.to_string(),
                    };
                }
            }
            Err(e) => {
                return Outcome::Killed {
                    scenario,
                    failure: e.to_string(),
                };
            }
        }
    }
    Outcome::Survived {
        scenarios: job.scenarios.len(),
    }
}
