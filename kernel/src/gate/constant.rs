//! Policies that fail on every request they apply to: a condition whose first steps evaluate a
//! constant that errors (`9223372036854775807 + 1`). Cedar skips an erroring policy, the kernel
//! denies on any error, so such a forbid would pass validation and then deny everything it
//! scopes; `check` refuses it instead.
//!
//! Only what is evaluated on every request is looked at: a condition itself, both operands of an
//! arithmetic or comparison operator, a method's receiver and arguments, but only the left side of
//! `&&`/`||` and only the test of `if` (the rest may never be reached). A constant there is a
//! subtree that reads no variable; it is evaluated by Cedar on its own, exactly.

use cedar_policy::{Authorizer, Context, Entities, EntityUid, Policy, PolicySet, Request};
use serde_json::{Value, json};

/// Operators whose operands are all evaluated (their keys in Cedar's JSON form).
const STRICT: [&str; 15] = [
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "in",
    "contains",
    "containsAll",
    "containsAny",
    "isEmpty",
    "neg",
];

/// The error a constant that every request evaluates raises, if one does.
pub(crate) fn erring_constant(policy: &Policy) -> Option<String> {
    // Overflow is the error a validated policy can still raise on constants; a policy with no
    // arithmetic has none (and its JSON form costs ~60 µs to make, so most are not looked at).
    let text = policy.to_string();
    if !text.contains(['+', '-', '*']) {
        return None;
    }
    let est = policy.to_json().ok()?;
    let conditions = est.get("conditions")?.as_array()?;
    for condition in conditions {
        let mut constants = Vec::new();
        unconditional_constants(condition.get("body")?, &mut constants, 0);
        for c in constants {
            if let Some(error) = evaluate(c) {
                return Some(error);
            }
        }
    }
    None
}

/// Collects the maximal constant subtrees of `expr` that are evaluated whenever `expr` is.
fn unconditional_constants<'a>(expr: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
    if depth > super::limits::MAX_NESTING * 2 {
        return;
    }
    if is_constant(expr, 0) {
        if !matches!(expr.as_object().and_then(|o| o.keys().next()), Some(k) if k == "Value") {
            out.push(expr);
        }
        return;
    }
    let Some((op, body)) = expr.as_object().and_then(|o| o.iter().next()) else {
        return;
    };
    match op.as_str() {
        "&&" | "||" => {
            if let Some(left) = body.get("left") {
                unconditional_constants(left, out, depth + 1);
            }
        }
        "if-then-else" => {
            if let Some(test) = body.get("if") {
                unconditional_constants(test, out, depth + 1);
            }
        }
        op if STRICT.contains(&op) => {
            for key in ["left", "right", "arg"] {
                if let Some(sub) = body.get(key) {
                    unconditional_constants(sub, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Whether `expr` reads no variable (no principal, action, resource, context, slot or unknown).
fn is_constant(expr: &Value, depth: usize) -> bool {
    if depth > super::limits::MAX_NESTING * 2 {
        return false;
    }
    match expr {
        Value::Object(map) => map.iter().all(|(k, v)| {
            !matches!(k.as_str(), "Var" | "Slot" | "unknown") && is_constant(v, depth + 1)
        }),
        Value::Array(items) => items.iter().all(|v| is_constant(v, depth + 1)),
        _ => true,
    }
}

/// Evaluates `constant` with Cedar alone; its error, if it raises one.
fn evaluate(constant: &Value) -> Option<String> {
    let probe = json!({
        "effect": "permit",
        "principal": {"op": "All"},
        "action": {"op": "All"},
        "resource": {"op": "All"},
        "conditions": [{"kind": "when", "body": {"==": {"left": constant, "right": constant}}}],
    });
    let policy = Policy::from_json(None, probe).ok()?;
    let set = PolicySet::from_policies([policy]).ok()?;
    let uid: EntityUid = r#"Probe::"p""#.parse().ok()?;
    let request = Request::new(uid.clone(), uid.clone(), uid, Context::empty(), None).ok()?;
    let response = Authorizer::new().is_authorized(&request, &set, &Entities::empty());
    response
        .diagnostics()
        .errors()
        .next()
        .map(|e| e.to_string())
}
