//! Condition coverage: for each `when`/`unless` clause of each policy, and each operand of every
//! `&&`/`||` in it, whether the suite saw it both true and false on a request the policy's scope
//! covers. A clause only ever seen true is one whose `false` side no scenario tests (and the other
//! way round) — finer than policy coverage, which only asks whether a policy ever decided.
//!
//! Every request a scenario's session asked is traced with its whole context, and each operand is
//! evaluated on it by Cedar as a one-policy set (the policy's scope, the operand as its only
//! condition). A request the scope does not cover, or on which the operand errs, counts for
//! neither side.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cedar_policy::{Authorizer, Decision, Entities, Policy, PolicySet, Request};
use serde::Serialize;
use serde_json::{Value, json};

use crate::counterfactual::operand_text;
use crate::replay::replay_traced;
use crate::runner::DeploymentCache;
use crate::scenario::load;

/// One clause or operand and what the suite saw of it.
#[derive(Debug, Clone, Serialize)]
pub struct Operand {
    /// The policy.
    pub policy: String,
    /// Which clause: `when #1`, `unless #2`...
    pub clause: String,
    /// The clause's body, or one operand inside it, as Cedar text.
    pub text: String,
    /// Seen true on some covered request.
    pub seen_true: bool,
    /// Seen false on some covered request.
    pub seen_false: bool,
}

/// Condition coverage of a suite.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Conditions {
    /// Every clause and operand, by policy.
    pub operands: Vec<Operand>,
    /// Requests evaluated.
    pub requests: usize,
    /// Scenarios that could not run, with why.
    pub errors: Vec<(String, String)>,
}

impl Conditions {
    /// The share of clauses and operands seen both true and false, in percent (100 for none).
    pub fn percent(&self) -> f64 {
        if self.operands.is_empty() {
            return 100.0;
        }
        let both = self
            .operands
            .iter()
            .filter(|o| o.seen_true && o.seen_false)
            .count();
        both as f64 * 100.0 / self.operands.len() as f64
    }
}

/// Replays `files`, traces every request, and evaluates every clause and operand of every policy
/// of their deployments on the requests its scope covers.
pub fn of(files: &[PathBuf]) -> Conditions {
    let cache = DeploymentCache::default();
    let mut out = Conditions::default();
    // Requests by deployment (scenarios sharing a policy set share its deployment).
    let mut by_deployment: Vec<(Arc<kernel::Deployment>, Vec<Request>)> = Vec::new();
    for file in files {
        let traced = load(file).and_then(|s| {
            let d = cache.get(&s)?;
            let (_, requests) = replay_traced(&s, Arc::clone(&d))?;
            Ok((d, requests))
        });
        match traced {
            Ok((d, requests)) => {
                out.requests += requests.len();
                match by_deployment.iter_mut().find(|(x, _)| Arc::ptr_eq(x, &d)) {
                    Some((_, all)) => all.extend(requests),
                    None => by_deployment.push((d, requests)),
                }
            }
            Err(e) => out.errors.push((file.display().to_string(), e.to_string())),
        }
    }
    let mut seen: BTreeMap<(String, usize, String), Operand> = BTreeMap::new();
    for (deployment, requests) in &by_deployment {
        let entities = deployment.cedar_entities();
        for policy in deployment.cedar_policies().policies() {
            let Ok(est) = policy.to_json() else { continue };
            let id = policy.id().to_string();
            let Some(scope) = probe(&est, None) else {
                continue;
            };
            let covered: Vec<&Request> = requests
                .iter()
                .filter(|r| holds(&scope, r, entities) == Some(true))
                .collect();
            let clauses = est
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, clause) in clauses.iter().enumerate() {
                let kind = clause.get("kind").and_then(Value::as_str).unwrap_or("when");
                let Some(body) = clause.get("body") else {
                    continue;
                };
                let mut operands = vec![body.clone()];
                sides(body, &mut operands);
                for operand in operands {
                    let text = operand_text(&est, &operand, &json!("when"));
                    let key = (id.clone(), i, text.clone());
                    let row = seen.entry(key).or_insert_with(|| Operand {
                        policy: id.clone(),
                        clause: format!("{kind} #{}", i + 1),
                        text,
                        seen_true: false,
                        seen_false: false,
                    });
                    if row.seen_true && row.seen_false {
                        continue;
                    }
                    let Some(p) = probe(&est, Some(&operand)) else {
                        continue;
                    };
                    for r in &covered {
                        match holds(&p, r, entities) {
                            Some(true) => row.seen_true = true,
                            Some(false) => row.seen_false = true,
                            None => {}
                        }
                        if row.seen_true && row.seen_false {
                            break;
                        }
                    }
                }
            }
        }
    }
    out.operands = seen.into_values().collect();
    out
}

/// Both sides of every `&&` and `||` under `e`, outermost first.
fn sides(e: &Value, out: &mut Vec<Value>) {
    let Some((op, arg)) = e.as_object().and_then(|m| m.iter().next()) else {
        return;
    };
    if op == "&&" || op == "||" {
        for side in ["left", "right"] {
            if let Some(x) = arg.get(side) {
                out.push(x.clone());
                sides(x, out);
            }
        }
    } else if op == "!"
        && let Some(x) = arg.get("arg")
    {
        sides(x, out);
    }
}

/// A one-policy set: the policy's scope as a permit, with `operand` as its only condition (none:
/// the scope alone).
fn probe(est: &Value, operand: Option<&Value>) -> Option<PolicySet> {
    let mut e = est.clone();
    *e.get_mut("effect")? = json!("permit");
    *e.get_mut("conditions")? = match operand {
        Some(body) => json!([{ "kind": "when", "body": body }]),
        None => json!([]),
    };
    if let Some(a) = e.get_mut("annotations") {
        *a = json!({});
    }
    let mut set = PolicySet::new();
    set.add(Policy::from_json(None, e).ok()?).ok()?;
    Some(set)
}

/// Whether the probe allows the request; `None` when it errs.
fn holds(probe: &PolicySet, request: &Request, entities: &Entities) -> Option<bool> {
    let response = Authorizer::new().is_authorized(request, probe, entities);
    if response.diagnostics().errors().next().is_some() {
        return None;
    }
    Some(response.decision() == Decision::Allow)
}
