//! Policies the kernel evaluates itself, each with Cedar's semantics or not at all.
//!
//! Cedar's interpreter costs about as much per policy as a whole kernel step does without it, and
//! most policies are a scope and a few comparisons. At load time each policy's JSON form
//! (Cedar's EST) is compiled into an [`Expr`] when every construct in it is one this module
//! implements (extension functions, tags, templates' slots are not); at request time the kernel
//! evaluates it in Cedar's order, short-circuiting where Cedar does.
//!
//! The evaluator never reports an error of its own: wherever Cedar could err (a missing
//! attribute or entity, a type mismatch, an overflow) or where an extension value takes part, it
//! answers `None`, and the gate asks Cedar about the policy's whole set, so errors are always
//! Cedar's. An answer of `Some(b)` claims that Cedar would evaluate the policy to `b` without
//! error; the differential property test in this module and the fuzzer's oracle (which re-asks
//! Cedar about every decision) check that claim.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Effect, Entities, EntityTypeName, EntityUid, Policy, PolicyId};
use serde_json::Value as Json;

use super::value::Val;

/// A policy the kernel can evaluate.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub id: PolicyId,
    pub effect: Effect,
    principal: Scope,
    action: ActionScope,
    resource: Scope,
    /// `(true, body)` for `when { body }`, `(false, body)` for `unless { body }`, in order.
    conditions: Vec<(bool, Expr)>,
}

#[derive(Debug)]
enum Scope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

#[derive(Debug)]
enum ActionScope {
    Any,
    Eq(EntityUid),
    In(Vec<EntityUid>),
}

#[derive(Debug, Clone, Copy)]
enum Var {
    Principal,
    Action,
    Resource,
    Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Contains,
    ContainsAll,
    ContainsAny,
    In,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    Char(char),
    Wildcard,
}

#[derive(Debug)]
enum Expr {
    Value(Val),
    Var(Var),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    Attr(Box<Expr>, String),
    Has(Box<Expr>, String),
    Like(Box<Expr>, Vec<Pat>),
    Is(Box<Expr>, EntityTypeName, Option<Box<Expr>>),
    IsEmpty(Box<Expr>),
    Set(Vec<Expr>),
    Record(Vec<(String, Expr)>),
}

/// What a request offers the evaluator.
pub(crate) struct Input<'a> {
    pub principal: &'a EntityUid,
    pub action: &'a EntityUid,
    pub resource: &'a EntityUid,
    /// A record.
    pub context: &'a Val,
    pub entities: &'a Entities,
    /// `principal`, `action` and `resource` as values, made on first use.
    pub vars: [OnceCell<Val>; 3],
}

impl Compiled {
    /// `policy` compiled, or `None` when it uses anything this module does not implement.
    pub fn new(policy: &Policy) -> Option<Self> {
        let json = policy.to_json().ok()?;
        let conditions = json
            .get("conditions")?
            .as_array()?
            .iter()
            .map(|c| {
                let when = match c.get("kind")?.as_str()? {
                    "when" => true,
                    "unless" => false,
                    _ => return None,
                };
                Some((when, expr(c.get("body")?)?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            id: policy.id().clone(),
            effect: policy.effect(),
            principal: scope(json.get("principal")?)?,
            action: action_scope(json.get("action")?)?,
            resource: scope(json.get("resource")?)?,
            conditions,
        })
    }

    /// Whether the policy is satisfied; `None` when Cedar could err on it (Cedar must answer).
    pub fn satisfied(&self, input: &Input<'_>) -> Option<bool> {
        let entities = input.entities;
        let holds = self.principal.holds(input.principal, entities)
            && self.action.holds(input.action, entities)
            && self.resource.holds(input.resource, entities);
        if !holds {
            return Some(false);
        }
        for (when, body) in &self.conditions {
            if boolean(&*eval(body, input)?)? != *when {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// Cedar's `a in b` for entities: the same entity, or `b` among `a`'s ancestors.
fn within(a: &EntityUid, b: &EntityUid, entities: &Entities) -> bool {
    a == b || entities.is_ancestor_of(b, a)
}

impl Scope {
    fn holds(&self, uid: &EntityUid, entities: &Entities) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(e) => uid == e,
            Self::In(e) => within(uid, e, entities),
            Self::Is(t) => uid.type_name() == t,
            Self::IsIn(t, e) => uid.type_name() == t && within(uid, e, entities),
        }
    }
}

impl ActionScope {
    fn holds(&self, uid: &EntityUid, entities: &Entities) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(e) => uid == e,
            Self::In(list) => list.iter().any(|e| within(uid, e, entities)),
        }
    }
}

fn boolean(v: &Val) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        _ => None,
    }
}

fn long(v: &Val) -> Option<i64> {
    match v {
        Val::Long(n) => Some(*n),
        _ => None,
    }
}

/// `expr`'s value, in Cedar's order of evaluation; `None` wherever Cedar could err.
fn eval<'a>(expr: &'a Expr, input: &'a Input<'_>) -> Option<Cow<'a, Val>> {
    let bool_of = |e: &'a Expr| eval(e, input).as_deref().and_then(boolean);
    let owned = |v: Val| Some(Cow::Owned(v));
    match expr {
        Expr::Value(v) => Some(Cow::Borrowed(v)),
        Expr::Var(Var::Context) => Some(Cow::Borrowed(input.context)),
        Expr::Var(var) => {
            let (uid, cell) = match var {
                Var::Principal => (input.principal, &input.vars[0]),
                Var::Action => (input.action, &input.vars[1]),
                _ => (input.resource, &input.vars[2]),
            };
            Some(Cow::Borrowed(
                cell.get_or_init(|| Val::Entity(Arc::new(uid.clone()))),
            ))
        }
        Expr::Not(e) => owned(Val::Bool(!bool_of(e)?)),
        Expr::Neg(e) => owned(Val::Long(long(&*eval(e, input)?)?.checked_neg()?)),
        Expr::And(a, _) if crate::faults::active(crate::faults::Fault::CompiledAndSkipsRight) => {
            owned(Val::Bool(bool_of(a)?))
        }
        Expr::And(a, b) => owned(Val::Bool(bool_of(a)? && bool_of(b)?)),
        Expr::Or(a, b) => owned(Val::Bool(bool_of(a)? || bool_of(b)?)),
        Expr::If(c, then, otherwise) => {
            if bool_of(c)? {
                eval(then, input)
            } else {
                eval(otherwise, input)
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, input)?, eval(b, input)?);
            owned(binary(*op, &a, &b, input.entities)?)
        }
        Expr::Attr(e, name) => match eval(e, input)? {
            Cow::Borrowed(v) => match v {
                Val::Record(_) => v.get(name).map(Cow::Borrowed),
                Val::Entity(uid) => entity_attr(uid, name, input.entities).map(Cow::Owned),
                _ => None,
            },
            Cow::Owned(v) => match v {
                Val::Record(_) => v.get(name).cloned().map(Cow::Owned),
                Val::Entity(uid) => entity_attr(&uid, name, input.entities).map(Cow::Owned),
                _ => None,
            },
        },
        Expr::Has(e, name) => {
            let v = eval(e, input)?;
            match &*v {
                Val::Record(_) => owned(Val::Bool(v.get(name).is_some())),
                // A missing entity has no attributes (no error, as in Cedar).
                Val::Entity(uid) => {
                    let entity = input.entities.get(uid);
                    owned(Val::Bool(entity.is_some_and(|e| e.attr(name).is_some())))
                }
                _ => None,
            }
        }
        Expr::Like(e, pattern) => match &*eval(e, input)? {
            Val::String(s) => owned(Val::Bool(like(s, pattern))),
            _ => None,
        },
        Expr::Is(e, ty, inside) => match &*eval(e, input)? {
            Val::Entity(uid) if uid.type_name() != ty => owned(Val::Bool(false)),
            Val::Entity(uid) => match inside {
                None => owned(Val::Bool(true)),
                Some(inside) => {
                    let inside = eval(inside, input)?;
                    let uid = Val::Entity(Arc::clone(uid));
                    owned(binary(Op::In, &uid, &inside, input.entities)?)
                }
            },
            _ => None,
        },
        Expr::IsEmpty(e) => match &*eval(e, input)? {
            Val::Set(items) => owned(Val::Bool(items.is_empty())),
            _ => None,
        },
        Expr::Set(items) => {
            let items = items
                .iter()
                .map(|e| eval(e, input).map(Cow::into_owned))
                .collect::<Option<Vec<_>>>()?;
            owned(Val::Set(items))
        }
        Expr::Record(pairs) => {
            let pairs = pairs
                .iter()
                .map(|(k, e)| Some((k.clone(), eval(e, input)?.into_owned())))
                .collect::<Option<Vec<_>>>()?;
            owned(Val::record(pairs).ok()?)
        }
    }
}

fn entity_attr(uid: &EntityUid, name: &str, entities: &Entities) -> Option<Val> {
    let value = entities.get(uid)?.attr(name)?.ok()?;
    Some(Val::from_eval(&value))
}

fn binary(op: Op, a: &Val, b: &Val, entities: &Entities) -> Option<Val> {
    let arith = |f: fn(i64, i64) -> Option<i64>| Some(Val::Long(f(long(a)?, long(b)?)?));
    let order = |f: fn(&i64, &i64) -> bool| Some(Val::Bool(f(&long(a)?, &long(b)?)));
    match op {
        Op::Eq => Some(Val::Bool(a.equals(b)?)),
        Op::Ne => Some(Val::Bool(!a.equals(b)?)),
        Op::Lt => order(i64::lt),
        Op::Le => order(i64::le),
        Op::Gt => order(i64::gt),
        Op::Ge => order(i64::ge),
        Op::Add => arith(i64::checked_add),
        Op::Sub => arith(i64::checked_sub),
        Op::Mul => arith(i64::checked_mul),
        Op::Contains => match a {
            Val::Set(items) => Some(Val::Bool(b.is_in(items)?)),
            _ => None,
        },
        Op::ContainsAll | Op::ContainsAny => {
            let (Val::Set(a), Val::Set(b)) = (a, b) else {
                return None;
            };
            let mut found = b.iter().map(|item| item.is_in(a));
            let answer = if op == Op::ContainsAll {
                found.try_fold(true, |all, f| Some(all & f?))?
            } else {
                found.try_fold(false, |any, f| Some(any | f?))?
            };
            Some(Val::Bool(answer))
        }
        Op::In => {
            let Val::Entity(a) = a else { return None };
            match b {
                Val::Entity(b) => Some(Val::Bool(within(a, b, entities))),
                Val::Set(items) => {
                    let mut found = false;
                    for item in items {
                        let Val::Entity(b) = item else { return None };
                        found |= within(a, b, entities);
                    }
                    Some(Val::Bool(found))
                }
                _ => None,
            }
        }
    }
}

/// Cedar's `like`: `*` matches any run of characters.
fn like(text: &str, pattern: &[Pat]) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Pat::Wildcard) => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(Pat::Char(c)) if Some(c) == text.get(t) => {
                t += 1;
                p += 1;
            }
            _ => match backtrack {
                Some((star, from)) => {
                    p = star + 1;
                    t = from + 1;
                    backtrack = Some((star, from + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|x| *x == Pat::Wildcard)
}

fn entity(json: &Json) -> Option<EntityUid> {
    EntityUid::from_json(json.clone()).ok()
}

fn type_name(json: &Json) -> Option<EntityTypeName> {
    EntityTypeName::from_str(json.as_str()?).ok()
}

fn scope(json: &Json) -> Option<Scope> {
    let e = || entity(json.get("entity")?);
    Some(match json.get("op")?.as_str()? {
        "All" => Scope::Any,
        "==" => Scope::Eq(e()?),
        "in" => Scope::In(e()?),
        "is" => {
            let ty = type_name(json.get("entity_type")?)?;
            match json.get("in") {
                None => Scope::Is(ty),
                Some(inside) => Scope::IsIn(ty, entity(inside.get("entity")?)?),
            }
        }
        _ => return None,
    })
}

fn action_scope(json: &Json) -> Option<ActionScope> {
    Some(match json.get("op")?.as_str()? {
        "All" => ActionScope::Any,
        "==" => ActionScope::Eq(entity(json.get("entity")?)?),
        "in" => match (json.get("entities"), json.get("entity")) {
            (Some(list), _) => ActionScope::In(
                list.as_array()?
                    .iter()
                    .map(entity)
                    .collect::<Option<Vec<_>>>()?,
            ),
            (None, Some(one)) => ActionScope::In(vec![entity(one)?]),
            (None, None) => return None,
        },
        _ => return None,
    })
}

fn value(json: &Json) -> Option<Val> {
    Some(match json {
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => Val::Long(n.as_i64()?),
        Json::String(s) => Val::String(s.clone()),
        Json::Array(items) => Val::Set(items.iter().map(value).collect::<Option<Vec<_>>>()?),
        Json::Object(map) => match map.get("__entity") {
            Some(uid) => Val::Entity(Arc::new(entity(uid)?)),
            None if map.contains_key("__extn") => return None,
            None => Val::record(
                map.iter()
                    .map(|(k, v)| Some((k.clone(), value(v)?)))
                    .collect::<Option<Vec<_>>>()?,
            )
            .ok()?,
        },
        Json::Null => return None,
    })
}

fn expr(json: &Json) -> Option<Expr> {
    let map = json.as_object().filter(|m| m.len() == 1)?;
    let (op, arg) = map.iter().next()?;
    let sub = |name: &str| Some(Box::new(expr(arg.get(name)?)?));
    let attr = || Some(arg.get("attr")?.as_str()?.to_owned());
    let binary = |op: Op| Some(Expr::Binary(op, sub("left")?, sub("right")?));
    Some(match op.as_str() {
        "Value" => Expr::Value(value(arg)?),
        "Var" => Expr::Var(match arg.as_str()? {
            "principal" => Var::Principal,
            "action" => Var::Action,
            "resource" => Var::Resource,
            "context" => Var::Context,
            _ => return None,
        }),
        "!" => Expr::Not(sub("arg")?),
        "neg" => Expr::Neg(sub("arg")?),
        "isEmpty" => Expr::IsEmpty(sub("arg")?),
        "&&" => Expr::And(sub("left")?, sub("right")?),
        "||" => Expr::Or(sub("left")?, sub("right")?),
        "==" => binary(Op::Eq)?,
        "!=" => binary(Op::Ne)?,
        "<" => binary(Op::Lt)?,
        "<=" => binary(Op::Le)?,
        ">" => binary(Op::Gt)?,
        ">=" => binary(Op::Ge)?,
        "+" => binary(Op::Add)?,
        "-" => binary(Op::Sub)?,
        "*" => binary(Op::Mul)?,
        "contains" => binary(Op::Contains)?,
        "containsAll" => binary(Op::ContainsAll)?,
        "containsAny" => binary(Op::ContainsAny)?,
        "in" => binary(Op::In)?,
        "." => Expr::Attr(sub("left")?, attr()?),
        "has" => Expr::Has(sub("left")?, attr()?),
        "like" => {
            let mut pattern = Vec::new();
            for part in arg.get("pattern")?.as_array()? {
                match part {
                    Json::String(w) if w == "Wildcard" => pattern.push(Pat::Wildcard),
                    _ => pattern.extend(part.get("Literal")?.as_str()?.chars().map(Pat::Char)),
                }
            }
            Expr::Like(sub("left")?, pattern)
        }
        "is" => {
            let inside = match arg.get("in") {
                Some(e) => Some(Box::new(expr(e)?)),
                None => None,
            };
            Expr::Is(sub("left")?, type_name(arg.get("entity_type")?)?, inside)
        }
        "if-then-else" => Expr::If(sub("if")?, sub("then")?, sub("else")?),
        "Set" => Expr::Set(arg.as_array()?.iter().map(expr).collect::<Option<_>>()?),
        "Record" => Expr::Record(
            arg.as_object()?
                .iter()
                .map(|(k, e)| Some((k.clone(), expr(e)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod oracle;
