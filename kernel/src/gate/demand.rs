//! Which `context` attributes the policies of an action can read, decided from their text at load.
//!
//! A Cedar policy reads the context only through attribute names written in it (`context.a.b`,
//! `context["a"]`, `context has a`) or by using a record whole (`context == ...`,
//! `context.session == ...`). So a context that leaves out an attribute none of an action's
//! policies names evaluates every one of them exactly as the full context would: same decision,
//! same determining policies, same errors. Building the session part of the context was a quarter
//! of a step; most of it is attributes an action's policies never look at.
//!
//! Only values that cannot fail to build are left out (session and history attributes, provenance,
//! the literals an action adds); a tool's `input` is always built, since building it can fail and
//! a failure must deny. Requests checked against the schema (the load-time contract check) and
//! traced requests (the fuzzer's oracle) get the full context, which makes the oracle's
//! comparison with the whole policy set a check of this analysis too.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::Policy;
use serde_json::Value;

use crate::session::SESSION_ATTRIBUTES;

/// The attributes to build, two levels deep (`session.steps`); anything deeper is built whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Demand {
    /// Some policy uses `context` whole, or could not be analysed: build everything.
    all: bool,
    /// Top-level attributes read, each with the attributes read under it, or `None` when the
    /// attribute's value is used whole.
    top: BTreeMap<String, Option<BTreeSet<String>>>,
    /// The attributes of `context.session` read, as bits over [`SESSION_ATTRIBUTES`] (asked on
    /// every request, so kept ready).
    session: u32,
}

impl Demand {
    /// Adds what `policy` reads.
    pub fn add(&mut self, policy: &Policy) {
        if self.all {
            return;
        }
        match policy.to_json() {
            Ok(json) => self.visit(&json),
            Err(_) => self.all = true,
        }
    }

    /// Which attributes of `context.session` are read, as bits over [`SESSION_ATTRIBUTES`].
    pub fn session(&self) -> u32 {
        if self.all {
            return u32::MAX;
        }
        self.session
    }

    /// Whether the top-level attribute `name` is read at all.
    pub fn wants(&self, name: &str) -> bool {
        self.all || self.top.contains_key(name)
    }

    /// Whether `sub` under the top-level attribute `name` is read.
    pub fn wants_in(&self, name: &str, sub: &str) -> bool {
        self.all
            || match self.top.get(name) {
                Some(None) => true,
                Some(Some(subs)) => subs.contains(sub),
                None => false,
            }
    }

    fn visit(&mut self, expr: &Value) {
        match expr {
            Value::Object(map) => {
                if map.len() == 1
                    && let Some((op, Value::Object(args))) = map.iter().next()
                    && (op == "." || op == "has")
                    && let Some(left) = args.get("left")
                    && let Some(attrs) = args.get("attr").and_then(names)
                {
                    match context_path(left) {
                        Some(mut path) => {
                            path.extend(attrs);
                            // `context has a` needs `a` present, not its value.
                            self.record(&path, op == ".");
                        }
                        None => self.visit(left),
                    }
                    return;
                }
                if is_context(expr) {
                    self.record(&[], true);
                    return;
                }
                map.values().for_each(|v| self.visit(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.visit(v)),
            Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    fn record(&mut self, path: &[&str], whole: bool) {
        match path {
            [] => self.all = true,
            [top] if whole => {
                if *top == "session" {
                    self.session = u32::MAX;
                }
                self.top.insert((*top).to_owned(), None);
            }
            [top] => {
                self.top
                    .entry((*top).to_owned())
                    .or_insert_with(|| Some(BTreeSet::new()));
            }
            [top, sub, ..] => {
                if *top == "session"
                    && let Some(i) = SESSION_ATTRIBUTES.iter().position(|a| a == sub)
                {
                    self.session |= 1 << i;
                }
                if let Some(subs) = self
                    .top
                    .entry((*top).to_owned())
                    .or_insert_with(|| Some(BTreeSet::new()))
                {
                    subs.insert((*sub).to_owned());
                }
            }
        }
    }
}

/// The attribute names of an access (`"a"`) or of a `has` test (`"a"` or, for `has a.b`, `["a", "b"]`).
fn names(attr: &Value) -> Option<Vec<&str>> {
    match attr {
        Value::String(name) => Some(vec![name.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn is_context(expr: &Value) -> bool {
    expr.as_object().is_some_and(|m| m.len() == 1)
        && expr.get("Var").and_then(Value::as_str) == Some("context")
}

/// `["a", "b"]` for the expression `context.a.b`; `None` when `expr` is not such a chain.
fn context_path(expr: &Value) -> Option<Vec<&str>> {
    if is_context(expr) {
        return Some(Vec::new());
    }
    let args = expr.get(".")?;
    let mut path = context_path(args.get("left")?)?;
    path.push(args.get("attr")?.as_str()?);
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn demand(src: &str) -> Demand {
        let mut d = Demand::default();
        let set = cedar_policy::PolicySet::from_str(src).expect("policies");
        for p in set.policies() {
            d.add(p);
        }
        d
    }

    #[test]
    fn reads_attributes_two_levels_deep_and_nothing_else() {
        let d = demand(
            r#"forbid (principal, action, resource) when { context.session.steps > 3 };
               forbid (principal, action, resource) when { context.session.tenant.name == "x" };
               permit (principal, action, resource) when { context has amount && context["input"].x > 1 };"#,
        );
        assert!(d.wants("session") && d.wants_in("session", "steps"));
        assert!(d.wants_in("session", "tenant"));
        assert!(!d.wants_in("session", "labels"));
        let bit = |name: &str| {
            1u32 << SESSION_ATTRIBUTES
                .iter()
                .position(|a| *a == name)
                .unwrap_or(31)
        };
        assert_eq!(d.session(), bit("steps") | bit("tenant"));
        assert!(d.wants("amount") && d.wants_in("input", "x") && !d.wants_in("input", "y"));
        assert!(!d.wants("history") && !d.wants("provenance"));
    }

    #[test]
    fn a_record_used_whole_is_built_whole() {
        let d = demand(
            r#"permit (principal, action, resource) when { context.session == context.history };"#,
        );
        assert!(d.wants_in("session", "anything") && d.wants_in("history", "else"));
        assert_eq!(d.session(), u32::MAX);
        assert!(!d.wants("input"));
        let d = demand(r#"permit (principal, action, resource) when { context == {} };"#);
        assert!(d.wants("input") && d.wants_in("session", "steps"));
    }

    #[test]
    fn has_paths_count_as_reads() {
        let d = demand(
            r#"permit (principal, action, resource) when { context has session.in_doubt };"#,
        );
        assert!(d.wants_in("session", "in_doubt"));
        assert!(!d.wants_in("session", "steps"));
        let d = demand(r#"permit (principal, action, resource) when { context has history };"#);
        assert!(d.wants("history") && !d.wants_in("history", "n"));
    }

    #[test]
    fn context_inside_other_expressions_is_found() {
        let d = demand(
            r#"permit (principal, action, resource) when {
                 principal in context.session.tenant && [context.history.n].contains(1)
                 && (if context.a then context.b.c else 0) == 0 && context.d.contains("x")
                 && ip("10.0.0.1").isInRange(context.e.f) };"#,
        );
        for (top, sub) in [
            ("session", "tenant"),
            ("history", "n"),
            ("b", "c"),
            ("e", "f"),
        ] {
            assert!(d.wants_in(top, sub), "{top}.{sub}");
        }
        assert!(d.wants_in("a", "z") && d.wants_in("d", "z"));
        assert!(!d.wants_in("session", "steps") && !d.wants("input"));
    }
}
