//! Counterfactual explanations: what would change a decision. Every answer is checked by deciding
//! the changed request or policy set again with Cedar, so nothing here is a guess.
//!
//! - A denial by forbids: each determining forbid's removal, re-decided (does it then pass, and by
//!   which permits?), and the context values that would step outside its conditions — for each
//!   comparison of a context attribute with an integer, a boolean context attribute, or a
//!   `.contains(literal)` on a context set, the nearest value on the other side, substituted and
//!   re-decided.
//! - A denial for want of a permit: the permits whose scope covers the request but whose
//!   conditions do not hold (each shown passing once its conditions are dropped), with the context
//!   values that would make their comparisons hold.
//! - An allow: the forbids that came closest — those whose scope covers the request, ranked by how
//!   many of their conditions' `&&` operands already hold.
//!
//! The answers are Cedar's, on the whole context; the kernel decides the same request alike (the
//! differential oracle), except that it denies where a policy errs.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, Policy, PolicyId, PolicySet, Request,
    Schema,
};
use serde::Serialize;
use serde_json::{Value, json};

/// A policy whose removal (for a forbid) or whose conditions (for a permit) decide the request.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyChange {
    /// The policy.
    pub policy: String,
    /// The decision with the change made, and the policies that determine it.
    pub then: String,
}

/// A context value that would change the decision, checked by deciding again with it.
#[derive(Debug, Clone, Serialize)]
pub struct ValueChange {
    /// The policy whose condition it steps across.
    pub policy: String,
    /// The context attribute, e.g. `context.input.amount`.
    pub path: String,
    /// Its value in the request.
    pub was: Value,
    /// The value that changes the decision.
    pub would_be: Value,
    /// The decision with that value.
    pub then: String,
}

/// A forbid that did not apply to an allowed request, with how close it came.
#[derive(Debug, Clone, Serialize)]
pub struct NearMiss {
    /// The forbid.
    pub policy: String,
    /// Its `&&` operands that hold for this request.
    pub holding: Vec<String>,
    /// Those that do not.
    pub failing: Vec<String>,
}

/// What would change one decision.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counterfactual {
    /// Whether Cedar allows the request as it is.
    pub allowed: bool,
    /// Policy changes that flip or would be needed to flip the decision.
    pub policies: Vec<PolicyChange>,
    /// Context values that flip the decision.
    pub values: Vec<ValueChange>,
    /// For an allow: the forbids that came closest, closest first.
    pub closest_forbids: Vec<NearMiss>,
}

/// The request in Cedar's terms, with its context as JSON so values can be swapped in.
pub struct Asked<'a> {
    /// Principal, action and resource.
    pub uids: (EntityUid, EntityUid, EntityUid),
    /// The context JSON.
    pub context: &'a Value,
    /// The schema (the context is typed by the action).
    pub schema: &'a Schema,
    /// The policies.
    pub policies: &'a PolicySet,
    /// The entities.
    pub entities: &'a Entities,
}

impl Asked<'_> {
    /// Cedar's decision on this request with `context` and `policies`: allowed, and determining ids.
    fn decide(&self, context: &Value, policies: &PolicySet) -> Option<(bool, Vec<String>)> {
        let (p, a, r) = &self.uids;
        let ctx = Context::from_json_value(context.clone(), Some((self.schema, a))).ok()?;
        let request = Request::new(p.clone(), a.clone(), r.clone(), ctx, Some(self.schema)).ok()?;
        let response = Authorizer::new().is_authorized(&request, policies, self.entities);
        let mut ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        ids.sort();
        Some((response.decision() == Decision::Allow, ids))
    }
}

fn describe(outcome: Option<(bool, Vec<String>)>) -> String {
    match outcome {
        Some((true, ids)) => format!("allow by [{}]", ids.join(", ")),
        Some((false, ids)) if ids.is_empty() => "deny (no permit applies)".into(),
        Some((false, ids)) => format!("deny by [{}]", ids.join(", ")),
        None => "not a valid request".into(),
    }
}

/// What would change the decision on `asked`. `None` when the request itself is not valid.
pub fn counterfactual(asked: &Asked<'_>) -> Option<Counterfactual> {
    let (allowed, deciders) = asked.decide(asked.context, asked.policies)?;
    let mut out = Counterfactual {
        allowed,
        ..Counterfactual::default()
    };
    if allowed {
        out.closest_forbids = closest_forbids(asked);
        for miss in &out.closest_forbids {
            let pid = PolicyId::new(&miss.policy);
            if let Some(est) = asked.policies.policy(&pid).and_then(|p| p.to_json().ok()) {
                out.values
                    .extend(value_changes(asked, &miss.policy, &est, Side::MakeHold));
            }
        }
        return Some(out);
    }
    if deciders.is_empty() {
        // Denied for want of a permit: which permits would apply, if their conditions held?
        for policy in asked.policies.policies() {
            if policy.effect() != cedar_policy::Effect::Permit {
                continue;
            }
            let Some(est) = policy.to_json().ok() else {
                continue;
            };
            let Some(unconditional) = with_conditions(&est, json!([])) else {
                continue;
            };
            let Some(set) = replaced(asked.policies, policy.id(), unconditional) else {
                continue;
            };
            let then = asked.decide(asked.context, &set);
            if then.as_ref().is_some_and(|(a, _)| *a) {
                let id = policy.id().to_string();
                out.values
                    .extend(value_changes(asked, &id, &est, Side::MakeHold));
                out.policies.push(PolicyChange {
                    policy: id,
                    then: format!("with its conditions dropped: {}", describe(then)),
                });
            }
        }
        return Some(out);
    }
    for id in &deciders {
        let pid = PolicyId::new(id);
        let Some(policy) = asked.policies.policy(&pid) else {
            continue;
        };
        let mut without = asked.policies.clone();
        if without.remove_static(pid.clone()).is_err() {
            continue;
        }
        out.policies.push(PolicyChange {
            policy: id.clone(),
            then: format!(
                "without it: {}",
                describe(asked.decide(asked.context, &without))
            ),
        });
        if let Ok(est) = policy.to_json() {
            out.values
                .extend(value_changes(asked, id, &est, Side::MakeFail));
        }
    }
    if deciders.len() > 1 {
        let mut without = asked.policies.clone();
        for id in &deciders {
            let _ = without.remove_static(PolicyId::new(id));
        }
        out.policies.push(PolicyChange {
            policy: deciders.join(" + "),
            then: format!(
                "without all of them: {}",
                describe(asked.decide(asked.context, &without))
            ),
        });
    }
    Some(out)
}

/// Whether a value change should make a policy's comparison fail (step out of a forbid) or hold
/// (step into a permit).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    MakeFail,
    MakeHold,
}

/// For each comparison in the policy's conditions between a context attribute and an integer
/// (and each boolean context attribute, and each `.contains(literal)` on a context set), the
/// nearest value on the wanted side, kept only when deciding again with it flips the decision.
fn value_changes(asked: &Asked<'_>, policy: &str, est: &Value, side: Side) -> Vec<ValueChange> {
    let mut candidates: Vec<(Vec<String>, Value)> = Vec::new();
    let conditions = est
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &conditions {
        let unless = c.get("kind").and_then(Value::as_str) == Some("unless");
        // In an `unless`, the body must hold for the policy not to apply, and vice versa.
        let want_true = (side == Side::MakeHold) != unless;
        if let Some(body) = c.get("body") {
            collect(body, want_true, asked.context, &mut candidates);
        }
    }
    let before = asked.decide(asked.context, asked.policies);
    let mut out = Vec::new();
    for (path, value) in candidates {
        let Some(was) = lookup(asked.context, &path) else {
            continue;
        };
        if was == value {
            continue;
        }
        let mut changed = asked.context.clone();
        if !set(&mut changed, &path, value.clone()) {
            continue;
        }
        let then = asked.decide(&changed, asked.policies);
        let flips = then.as_ref().map(|t| t.0) != before.as_ref().map(|b| b.0);
        // Stepping out of one of several forbids is worth showing even while the others deny.
        let leaves = side == Side::MakeFail
            && then
                .as_ref()
                .is_some_and(|(_, ids)| !ids.iter().any(|i| i == policy));
        if !flips && !leaves {
            continue;
        }
        out.push(ValueChange {
            policy: policy.to_owned(),
            path: format!("context.{}", path.join(".")),
            was,
            would_be: value,
            then: describe(then),
        });
    }
    out
}

/// Walks an expression (under `&&` and `!`) for `context.<path> OP integer`, boolean attributes and
/// `context.<path>.contains(literal)`, proposing the value that makes each atom `want`.
fn collect(e: &Value, want: bool, context: &Value, out: &mut Vec<(Vec<String>, Value)>) {
    let Some((op, arg)) = e.as_object().and_then(|m| m.iter().next()) else {
        return;
    };
    match op.as_str() {
        "&&" | "||" => {
            for side in ["left", "right"] {
                if let Some(x) = arg.get(side) {
                    collect(x, want, context, out);
                }
            }
        }
        "!" => {
            if let Some(x) = arg.get("arg") {
                collect(x, !want, context, out);
            }
        }
        "<" | "<=" | ">" | ">=" => {
            let (Some(l), Some(r)) = (arg.get("left"), arg.get("right")) else {
                return;
            };
            // Normalize to `term OP n`, where the term is a context attribute or a sum of them.
            let (term, n, op) = match (literal(r), literal(l)) {
                (Some(n), _) => (l, n, op.as_str()),
                (None, Some(n)) => (r, n, mirror(op)),
                _ => return,
            };
            // `a + b + c OP n`: move one attribute, the others kept at their values.
            let mut summands = Vec::new();
            if !sum_of_paths(term, &mut summands) {
                return;
            }
            for (i, path) in summands.iter().enumerate() {
                let rest = summands
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .try_fold(0_i64, |acc, (_, p)| {
                        acc.checked_add(lookup(context, p)?.as_i64()?)
                    });
                let Some(bound) = rest.and_then(|r| n.checked_sub(r)) else {
                    continue;
                };
                push_bound(path.clone(), bound, op, want, out);
            }
        }
        "." => {
            if let Some(p) = context_path(e) {
                out.push((p, json!(want)));
            }
        }
        "contains" => {
            let (Some(l), Some(r)) = (arg.get("left"), arg.get("right")) else {
                return;
            };
            if let (Some(p), Some(Value::String(s))) = (context_path(l), r.get("Value")) {
                out.push((p, json!({ "contains": s, "want": want })));
            }
        }
        _ => {}
    }
}

/// The value of `path` nearest the bound `n` on the side where `path OP n` is `want`.
fn push_bound(
    path: Vec<String>,
    n: i64,
    op: &str,
    want: bool,
    out: &mut Vec<(Vec<String>, Value)>,
) {
    let v = match (op, want) {
        ("<", true) | (">=", false) => n.checked_sub(1),
        ("<=", false) | (">", true) => n.checked_add(1),
        _ => Some(n),
    };
    if let Some(v) = v {
        out.push((path, json!(v)));
    }
}

/// A context attribute, or a sum of them, as its attribute paths.
fn sum_of_paths(e: &Value, out: &mut Vec<Vec<String>>) -> bool {
    if let Some(plus) = e.get("+") {
        return match (plus.get("left"), plus.get("right")) {
            (Some(l), Some(r)) => sum_of_paths(l, out) && sum_of_paths(r, out),
            _ => false,
        };
    }
    match context_path(e) {
        Some(p) => {
            out.push(p);
            true
        }
        None => false,
    }
}

fn mirror(op: &str) -> &'static str {
    match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        _ => "<=",
    }
}

fn literal(e: &Value) -> Option<i64> {
    e.get("Value")?.as_i64()
}

/// `context.a.b` as `["a", "b"]`.
fn context_path(e: &Value) -> Option<Vec<String>> {
    let dot = e.get(".")?;
    let attr = dot.get("attr")?.as_str()?.to_owned();
    let left = dot.get("left")?;
    if left.get("Var").and_then(Value::as_str) == Some("context") {
        return Some(vec![attr]);
    }
    let mut path = context_path(left)?;
    path.push(attr);
    Some(path)
}

fn lookup(v: &Value, path: &[String]) -> Option<Value> {
    let mut at = v;
    for p in path {
        at = at.get(p)?;
    }
    Some(at.clone())
}

/// Sets `path` to `value`; a `{contains, want}` proposal edits the set at `path` instead.
fn set(v: &mut Value, path: &[String], value: Value) -> bool {
    let mut at = v;
    for p in path {
        match at.get_mut(p) {
            Some(next) => at = next,
            None => return false,
        }
    }
    if let (Some(s), Some(want)) = (
        value.get("contains").and_then(Value::as_str),
        value.get("want").and_then(Value::as_bool),
    ) {
        let Some(items) = at.as_array_mut() else {
            return false;
        };
        if want {
            items.push(json!(s));
        } else {
            items.retain(|i| i.as_str() != Some(s));
        }
        return true;
    }
    *at = value;
    true
}

fn with_conditions(est: &Value, conditions: Value) -> Option<Value> {
    let mut e = est.clone();
    *e.get_mut("conditions")? = conditions;
    Some(e)
}

/// `set` with policy `id` replaced by the policy whose JSON form is `est`.
fn replaced(set: &PolicySet, id: &PolicyId, est: Value) -> Option<PolicySet> {
    let mut out = set.clone();
    out.remove_static(id.clone()).ok()?;
    out.add(Policy::from_json(Some(id.clone()), est).ok()?)
        .ok()?;
    Some(out)
}

/// Forbids whose scope covers the allowed request (they deny it once their conditions are
/// dropped), ranked by how many of their conditions' `&&` operands hold.
fn closest_forbids(asked: &Asked<'_>) -> Vec<NearMiss> {
    let mut out: Vec<(u8, NearMiss)> = Vec::new();
    for policy in asked.policies.policies() {
        if policy.effect() != cedar_policy::Effect::Forbid {
            continue;
        }
        let Some(est) = policy.to_json().ok() else {
            continue;
        };
        let Some(bare) = with_conditions(&est, json!([])) else {
            continue;
        };
        let Some(set) = replaced(asked.policies, policy.id(), bare) else {
            continue;
        };
        if asked.decide(asked.context, &set).is_none_or(|(a, _)| a) {
            continue; // its scope does not cover this request
        }
        let mut miss = NearMiss {
            policy: policy.id().to_string(),
            holding: Vec::new(),
            failing: Vec::new(),
        };
        let conditions = est
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in conditions {
            let kind = c.get("kind").cloned().unwrap_or(json!("when"));
            let mut operands = Vec::new();
            if let Some(body) = c.get("body") {
                conjuncts(body, &mut operands);
            }
            for operand in operands {
                let single = json!([{ "kind": kind, "body": operand }]);
                let Some(probe) = with_conditions(&est, single) else {
                    continue;
                };
                let text = operand_text(&est, &operand, &kind);
                let Some(set) = replaced(asked.policies, policy.id(), probe) else {
                    continue;
                };
                // The probe forbid denies exactly when this operand holds (in its clause's sense).
                match asked.decide(asked.context, &set) {
                    Some((false, ids)) if ids.contains(&policy.id().to_string()) => {
                        miss.holding.push(text);
                    }
                    _ => miss.failing.push(text),
                }
            }
        }
        out.push((scope_rank(&est), miss));
    }
    // Fewest failing operands first; then most holding; then the most specific action scope
    // (a rule about this very action comes closer than one about every call).
    out.sort_by_key(|(rank, m)| (m.failing.len(), std::cmp::Reverse(m.holding.len()), *rank));
    out.into_iter().take(3).map(|(_, m)| m).collect()
}

/// 0 for `action == A`, 1 for `action in [...]`, 2 for any action.
fn scope_rank(est: &Value) -> u8 {
    match est.pointer("/action/op").and_then(Value::as_str) {
        Some("==") => 0,
        Some("All") | None => 2,
        Some(_) => 1,
    }
}

fn conjuncts(e: &Value, out: &mut Vec<Value>) {
    match e.get("&&") {
        Some(and) => {
            for side in ["left", "right"] {
                if let Some(x) = and.get(side) {
                    conjuncts(x, out);
                }
            }
        }
        None => out.push(e.clone()),
    }
}

/// An operand as Cedar text (`unless` operands shown negated, as the condition they stand for).
pub(crate) fn operand_text(est: &Value, operand: &Value, kind: &Value) -> String {
    let body = if kind == "unless" {
        json!({ "!": { "arg": operand } })
    } else {
        operand.clone()
    };
    let probe = with_conditions(est, json!([{ "kind": "when", "body": body }]))
        .and_then(|e| Policy::from_json(None, e).ok())
        .map(|p| p.to_string())
        .unwrap_or_default();
    probe
        .rfind("when {")
        .and_then(|i| probe.get(i + 6..))
        .map(|s| {
            s.trim()
                .trim_end_matches(';')
                .trim()
                .trim_end_matches('}')
                .trim()
                .to_owned()
        })
        .unwrap_or(probe)
}

/// Parses `Type::"id"` (the CLI's form of a uid).
pub fn uid(s: &str) -> Option<EntityUid> {
    EntityUid::from_str(s).ok()
}
