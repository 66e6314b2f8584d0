//! Policies filed by the literal their condition first compares a context attribute with.
//!
//! A deployment that piles rules onto one action often writes them as
//! `when { context.input.order_id == "ord-7" && ... }` or `when { context.input.amount > 500 }`.
//! Cedar evaluates a condition left to right and stops at the first false conjunct. `==` never
//! errs (values of different types are just unequal), and `<`, `<=`, `>`, `>=` on two integers
//! never err either. So once the request's value at that path is known, every such policy whose
//! first comparison is false is unsatisfied without error, exactly as if Cedar had evaluated it,
//! and only the others need asking. When the path is missing from the request (its attribute
//! access would err), or an ordering meets a value that is not an integer (a type error), all of
//! them are asked, so their errors are kept.

use std::collections::HashMap;

use cedar_policy::Policy;
use serde_json::Value;

use super::set::Candidate;
use super::value::Val;

/// A literal a condition compares with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Literal {
    Bool(bool),
    Long(i64),
    String(String),
}

impl Literal {
    fn of(value: &Val) -> Option<Self> {
        match value {
            Val::Bool(b) => Some(Self::Bool(*b)),
            Val::Long(n) => Some(Self::Long(*n)),
            Val::String(s) => Some(Self::String(s.clone())),
            _ => None,
        }
    }
}

/// An integer comparison, written with the context attribute on the left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Less,
    LessEq,
    Greater,
    GreaterEq,
}

impl Order {
    fn holds(self, value: i64, literal: i64) -> bool {
        match self {
            Self::Less => value < literal,
            Self::LessEq => value <= literal,
            Self::Greater => value > literal,
            Self::GreaterEq => value >= literal,
        }
    }

    /// `op` as written with the attribute on the left, or (`flipped`) on the right.
    fn of(op: &str, flipped: bool) -> Option<Self> {
        Some(match (op, flipped) {
            ("<", false) | (">", true) => Self::Less,
            ("<=", false) | (">=", true) => Self::LessEq,
            (">", false) | ("<", true) => Self::Greater,
            (">=", false) | ("<=", true) => Self::GreaterEq,
            _ => return None,
        })
    }
}

/// What a policy's first comparison tests the attribute against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Equals(Literal),
    Ordered(Order, i64),
}

/// The policies of one action whose conditions start by comparing `context.<path>` with a
/// literal.
#[derive(Default)]
pub(crate) struct Keyed {
    pub path: Vec<String>,
    pub by_literal: HashMap<Literal, Candidate>,
    pub ordered: Vec<(Order, i64, Candidate)>,
    /// Every ordered policy in one set: asked instead of many small sets when many hold (the
    /// others in it are false without error, so asking them too changes nothing).
    pub ordered_all: Candidate,
}

/// More holding orderings than this are asked as one set: each Cedar call has a fixed cost.
const SMALL_SETS: usize = 8;

impl Keyed {
    /// Files `policy`, whose first comparison is `key`; false when its id was already filed.
    pub fn add(&mut self, key: Key, policy: Policy) -> bool {
        match key {
            Key::Equals(literal) => self.by_literal.entry(literal).or_default().add(policy),
            Key::Ordered(order, n) => {
                let mut set = Candidate::default();
                let added = self.ordered_all.add(policy.clone()) && set.add(policy);
                self.ordered.push((order, n, set));
                added
            }
        }
    }

    /// The top-level context attribute the path starts with.
    pub fn top(&self) -> Option<&str> {
        self.path.first().map(String::as_str)
    }

    /// The sets a request must be decided against, given the value of its context attribute
    /// [`Self::top`] (`None` when the context lacks it).
    pub fn candidates<'a>(&'a self, top: Option<&Val>) -> Vec<&'a Candidate> {
        let all = || {
            let ordered = std::iter::once(&self.ordered_all).filter(|s| !s.is_empty());
            self.by_literal.values().chain(ordered).collect()
        };
        // A missing attribute errs in every one of them: let Cedar report it.
        let rest = self.path.get(1..).unwrap_or_default();
        let Some(value) = top.and_then(|top| resolve(top, rest)) else {
            return all();
        };
        let equal = Literal::of(value).and_then(|l| self.by_literal.get(&l));
        match *value {
            Val::Long(n) => {
                let holding: Vec<&Candidate> = self
                    .ordered
                    .iter()
                    .filter(|(order, literal, _)| order.holds(n, *literal))
                    .map(|(_, _, set)| set)
                    .collect();
                let ordered = if holding.len() > SMALL_SETS {
                    vec![&self.ordered_all]
                } else {
                    holding
                };
                equal.into_iter().chain(ordered).collect()
            }
            // An ordering on anything else is a type error: let Cedar report it.
            _ => {
                let ordered = std::iter::once(&self.ordered_all).filter(|s| !s.is_empty());
                equal.into_iter().chain(ordered).collect()
            }
        }
    }
}

/// The value at `path` under `value`; `None` when evaluating the access would err.
fn resolve<'v>(value: &'v Val, path: &[String]) -> Option<&'v Val> {
    path.iter().try_fold(value, |value, name| value.get(name))
}

/// `(path, key)` when the policy (as JSON) has a first condition `when { context.<path> ==
/// <literal> && ... }` (either side of `==`), or an integer ordering in that place: what Cedar
/// evaluates first after the scope.
pub(crate) fn key_of(policy: &Value) -> Option<(Vec<String>, Key)> {
    let first = policy.get("conditions")?.as_array()?.first()?;
    if first.get("kind")?.as_str()? != "when" {
        return None;
    }
    let mut body = first.get("body")?;
    while let Some(and) = only(body, "&&") {
        body = and.get("left")?;
    }
    let map = body.as_object().filter(|m| m.len() == 1)?;
    let (op, args) = map.iter().next()?;
    let (left, right) = (args.get("left")?, args.get("right")?);
    let (path, literal, flipped) = match (context_path(left), context_path(right)) {
        (Some(path), None) => (path, literal(right)?, false),
        (None, Some(path)) => (path, literal(left)?, true),
        _ => return None,
    };
    let key = match (op.as_str(), literal) {
        ("==", literal) => Key::Equals(literal),
        (op, Literal::Long(n)) => Key::Ordered(Order::of(op, flipped)?, n),
        _ => return None,
    };
    Some((path, key))
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
    use cedar_policy::{Context, PolicyId, PolicySet};
    use std::str::FromStr;

    fn key(condition: &str) -> Option<(Vec<String>, Key)> {
        let text = format!("forbid (principal, action, resource) {condition};");
        let policy = cedar_policy::Policy::from_str(&text).expect("policy");
        key_of(&policy.to_json().expect("json"))
    }

    #[test]
    fn only_a_leading_comparison_of_a_context_path_with_a_literal_is_a_key() {
        let order = |s: &str| {
            Some((
                vec!["input".into(), "order_id".into()],
                Key::Equals(Literal::String(s.into())),
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
            Some((
                vec!["session".into(), "steps".into()],
                Key::Equals(Literal::Long(3))
            ))
        );
        let amount = |order, n| {
            Some((
                vec!["input".into(), "amount".into()],
                Key::Ordered(order, n),
            ))
        };
        assert_eq!(
            key("when { context.input.amount > 5 }"),
            amount(Order::Greater, 5)
        );
        assert_eq!(
            key("when { 5 > context.input.amount }"),
            amount(Order::Less, 5)
        );
        assert_eq!(
            key("when { 5 <= context.input.amount && false }"),
            amount(Order::GreaterEq, 5)
        );
        assert_eq!(key(r#"when { context.input.amount < "x" }"#), None);
        for not_keyed in [
            r#"when { context.input.amount + 1 > 1 && context.input.order_id == "o" }"#,
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
                Candidate::from(PolicySet::from_str(&text).expect("set")),
            );
            assert_eq!(by_literal.len(), i + 1);
        }
        let mut keyed = Keyed {
            path: vec!["input".into(), "x".into()],
            by_literal,
            ..Keyed::default()
        };
        for (i, n) in [10, 20, 30, 40, 50, 60, 70, 80, 90].into_iter().enumerate() {
            let text = format!(
                "@id(\"c{i}\") forbid (principal, action, resource) when {{ context.input.x > {n} }};"
            );
            let policy = cedar_policy::Policy::parse(Some(PolicyId::new(format!("c{i}"))), text);
            assert!(keyed.add(Key::Ordered(Order::Greater, n), policy.expect("policy")));
        }
        let context =
            |json: serde_json::Value| Context::from_json_value(json, None).expect("context");
        let ids = |sets: Vec<&Candidate>| -> Vec<String> {
            let mut ids: Vec<String> = sets
                .iter()
                .flat_map(|s| {
                    s.cedar
                        .policies()
                        .filter_map(|p| p.annotation("id").map(str::to_owned))
                })
                .collect();
            ids.sort();
            ids
        };
        let with = |json| {
            let input = context(json).get("input").map(|v| Val::from_eval(&v));
            ids(keyed.candidates(input.as_ref()))
        };
        let orderings: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
        let plus = |ids: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
            all.extend(orderings.iter().cloned());
            all.sort();
            all
        };
        // A string: its literal, and every ordering (which errs on a string).
        assert_eq!(with(serde_json::json!({"input": {"x": "b"}})), plus(&["b"]));
        assert_eq!(with(serde_json::json!({"input": {"x": "z"}})), plus(&[]));
        // An integer: no literal matches; the orderings that hold, or all once many hold.
        assert!(with(serde_json::json!({"input": {"x": 1}})).is_empty());
        assert_eq!(with(serde_json::json!({"input": {"x": 11}})), ["c0"]);
        assert_eq!(with(serde_json::json!({"input": {"x": 85}})).len(), 8);
        assert_eq!(with(serde_json::json!({"input": {"x": 95}})), plus(&[]));
        assert_eq!(with(serde_json::json!({"input": {}})), plus(&["a", "b"]));
        assert_eq!(with(serde_json::json!({"input": 1})), plus(&["a", "b"]));
    }
}
