//! Policies filed by the literal their condition first compares a context attribute with.
//!
//! A deployment that piles rules onto one action often writes them as
//! `when { context.input.order_id == "ord-7" && ... }`. Cedar evaluates a condition left to right
//! and stops at the first false conjunct, and `==` never errs (values of different types are just
//! unequal). So once the request's value at that path is known, every such policy with another
//! literal is unsatisfied without error, exactly as if Cedar had evaluated it, and only the
//! policies filed under the request's value need asking. When the path is missing from the
//! request (its attribute access would err), all of them are asked, so their errors are kept.

use std::collections::HashMap;

use cedar_policy::{Context, EvalResult, PolicySet};
use serde_json::Value;

/// A literal a condition compares with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Literal {
    Bool(bool),
    Long(i64),
    String(String),
}

impl Literal {
    fn of(value: &EvalResult) -> Option<Self> {
        match value {
            EvalResult::Bool(b) => Some(Self::Bool(*b)),
            EvalResult::Long(n) => Some(Self::Long(*n)),
            EvalResult::String(s) => Some(Self::String(s.clone())),
            _ => None,
        }
    }
}

/// The policies of one action whose conditions start with `context.<path> == <literal>`.
pub(crate) struct Keyed {
    pub path: Vec<String>,
    pub by_literal: HashMap<Literal, PolicySet>,
}

impl Keyed {
    /// The sets a request with `context` must be decided against.
    pub fn candidates<'a>(&'a self, context: Option<&Context>) -> Vec<&'a PolicySet> {
        match context.map(|c| resolve(c, &self.path)) {
            Some(Some(value)) => Literal::of(&value)
                .and_then(|l| self.by_literal.get(&l))
                .into_iter()
                .collect(),
            // The attribute access errs in every one of them: let Cedar report it.
            Some(None) | None => self.by_literal.values().collect(),
        }
    }
}

/// The value at `path` in `context`; `None` when evaluating `context.<path>` would err.
fn resolve(context: &Context, path: &[String]) -> Option<EvalResult> {
    let (first, rest) = path.split_first()?;
    let mut value = context.get(first)?;
    for name in rest {
        value = match value {
            EvalResult::Record(record) => record.get(name)?.clone(),
            _ => return None,
        };
    }
    Some(value)
}

/// `(path, literal)` when the policy (as JSON) has a first condition `when { context.<path> ==
/// <literal> && ... }` (either side of `==`); what Cedar evaluates first after the scope.
pub(crate) fn key_of(policy: &Value) -> Option<(Vec<String>, Literal)> {
    let first = policy.get("conditions")?.as_array()?.first()?;
    if first.get("kind")?.as_str()? != "when" {
        return None;
    }
    let mut body = first.get("body")?;
    while let Some(and) = only(body, "&&") {
        body = and.get("left")?;
    }
    let eq = only(body, "==")?;
    let (left, right) = (eq.get("left")?, eq.get("right")?);
    match (context_path(left), context_path(right)) {
        (Some(path), None) => Some((path, literal(right)?)),
        (None, Some(path)) => Some((path, literal(left)?)),
        _ => None,
    }
}

/// The argument of `expr` when it is a one-key object `{op: ...}`.
fn only<'a>(expr: &'a Value, op: &str) -> Option<&'a Value> {
    let map = expr.as_object()?;
    (map.len() == 1).then(|| map.get(op))?
}

/// `["a", "b"]` for `context.a.b` (at least one attribute).
fn context_path(expr: &Value) -> Option<Vec<String>> {
    fn walk(expr: &Value, path: &mut Vec<String>) -> Option<()> {
        if let Some(var) = only(expr, "Var") {
            return (var.as_str()? == "context").then_some(());
        }
        let access = only(expr, ".")?;
        walk(access.get("left")?, path)?;
        path.push(access.get("attr")?.as_str()?.to_owned());
        Some(())
    }
    let mut path = Vec::new();
    walk(expr, &mut path)?;
    (!path.is_empty()).then_some(path)
}

fn literal(expr: &Value) -> Option<Literal> {
    match only(expr, "Value")? {
        Value::Bool(b) => Some(Literal::Bool(*b)),
        Value::String(s) => Some(Literal::String(s.clone())),
        Value::Number(n) => n.as_i64().map(Literal::Long),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn key(condition: &str) -> Option<(Vec<String>, Literal)> {
        let text = format!("forbid (principal, action, resource) {condition};");
        let policy = cedar_policy::Policy::from_str(&text).expect("policy");
        key_of(&policy.to_json().expect("json"))
    }

    #[test]
    fn only_a_leading_equality_on_a_context_path_is_a_key() {
        let order = |s: &str| {
            Some((
                vec!["input".into(), "order_id".into()],
                Literal::String(s.into()),
            ))
        };
        assert_eq!(
            key(r#"when { context.input.order_id == "o-1" }"#),
            order("o-1")
        );
        assert_eq!(
            key(r#"when { "o-2" == context.input.order_id && context.input.amount > 1 && true }"#),
            order("o-2")
        );
        assert_eq!(
            key("when { context.session.steps == 3 } unless { false }"),
            Some((vec!["session".into(), "steps".into()], Literal::Long(3)))
        );
        for not_keyed in [
            r#"when { context.input.amount > 1 && context.input.order_id == "o" }"#,
            r#"unless { context.input.order_id == "o" }"#,
            r#"when { context.input.order_id == context.input.other }"#,
            r#"when { context == {} }"#,
            r#"when { resource.name == "x" }"#,
            r#"when { context.input.order_id == "o" || true }"#,
            "",
        ] {
            assert_eq!(key(not_keyed), None, "{not_keyed}");
        }
    }

    #[test]
    fn a_request_asks_its_literal_or_everything_when_the_path_is_missing() {
        let mut by_literal = HashMap::new();
        for (i, id) in ["a", "b"].iter().enumerate() {
            let text = format!(
                "@id(\"{id}\") forbid (principal, action, resource) when {{ context.input.x == \"{id}\" }};"
            );
            by_literal.insert(
                Literal::String((*id).into()),
                PolicySet::from_str(&text).expect("set"),
            );
            assert_eq!(by_literal.len(), i + 1);
        }
        let keyed = Keyed {
            path: vec!["input".into(), "x".into()],
            by_literal,
        };
        let context =
            |json: serde_json::Value| Context::from_json_value(json, None).expect("context");
        let ids = |sets: Vec<&PolicySet>| -> Vec<String> {
            let mut ids: Vec<String> = sets
                .iter()
                .flat_map(|s| {
                    s.policies()
                        .filter_map(|p| p.annotation("id").map(str::to_owned))
                })
                .collect();
            ids.sort();
            ids
        };
        let with = |json| ids(keyed.candidates(Some(&context(json))));
        assert_eq!(with(serde_json::json!({"input": {"x": "b"}})), ["b"]);
        assert!(with(serde_json::json!({"input": {"x": "c"}})).is_empty());
        assert!(with(serde_json::json!({"input": {"x": 1}})).is_empty());
        assert_eq!(with(serde_json::json!({"input": {}})), ["a", "b"]);
        assert_eq!(with(serde_json::json!({"input": 1})), ["a", "b"]);
    }
}
