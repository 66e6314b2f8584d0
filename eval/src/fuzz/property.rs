//! Author properties: statements about every decision, written the way a Cedar author reads a
//! request.
//!
//! ```text
//! no-allow: action == send_email when session.labels contains "untrusted"
//! no-allow: action in call_tool when resource.risk == "critical"
//! no-deny:  action == lookup_order when session.steps < 5 and session.tenant == "shopco"
//! ```
//!
//! `no-allow` fails on any allowed decision that matches; `no-deny` on any denial. `action ==`
//! names one action (a tool or built-in), `action in call_tool` any tool. Conditions, joined with
//! `and`, read a path into the request's context (`session.*`, `history.*`, `input.*`, ...) or
//! `resource.*` / `principal.*` (the entity's attributes, or `resource.id`), then one of `==`,
//! `!=`, `<`, `<=`, `>`, `>=` (numbers, strings, booleans) or `contains` (sets). An entity value
//! compares by its id. A path that does not exist makes the condition false.

use std::fmt;

use cedar_policy::{Entities, EvalResult, Request};

/// A parsed property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The text it was parsed from.
    pub text: String,
    forbid_allow: bool,
    action: ActionMatch,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ActionMatch {
    Exactly(String),
    AnyTool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    path: Vec<String>,
    op: Op,
    value: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    Long(i64),
    Bool(bool),
    Str(String),
}

/// Why a property does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PropertyError(String);

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Property {
    /// Parses `no-allow: action == X [when C and C ...]` (or `no-deny:`).
    pub fn parse(text: &str) -> Result<Self, PropertyError> {
        let err = |m: &str| PropertyError(format!("property `{text}`: {m}"));
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| err("expected `no-allow:` or `no-deny:` first"))?;
        let forbid_allow = match kind.trim() {
            "no-allow" => true,
            "no-deny" => false,
            other => {
                return Err(err(&format!(
                    "unknown kind `{other}`; use `no-allow` or `no-deny`"
                )));
            }
        };
        let tokens = tokenize(rest).map_err(|m| err(&m))?;
        let mut t = tokens.iter().map(String::as_str).peekable();
        if t.next() != Some("action") {
            return Err(err("expected `action == NAME` or `action in call_tool`"));
        }
        let action = match (t.next(), t.next()) {
            (Some("=="), Some(name)) => ActionMatch::Exactly(strip_action(name)),
            (Some("in"), Some(group)) if strip_action(group) == "call_tool" => ActionMatch::AnyTool,
            _ => return Err(err("expected `action == NAME` or `action in call_tool`")),
        };
        let mut conditions = Vec::new();
        match t.next() {
            None => {}
            Some("when") => loop {
                let path = t
                    .next()
                    .ok_or_else(|| err("expected a condition after `when`/`and`"))?;
                let op = match t.next() {
                    Some("==") => Op::Eq,
                    Some("!=") => Op::Ne,
                    Some("<") => Op::Lt,
                    Some("<=") => Op::Le,
                    Some(">") => Op::Gt,
                    Some(">=") => Op::Ge,
                    Some("contains") => Op::Contains,
                    other => {
                        return Err(err(&format!(
                            "expected an operator after `{path}`, found {other:?}"
                        )));
                    }
                };
                let raw = t
                    .next()
                    .ok_or_else(|| err(&format!("expected a value after `{path}`")))?;
                let value = literal(raw);
                let path: Vec<String> = path.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(err("a path is dot-separated names, like `session.labels`"));
                }
                conditions.push(Condition { path, op, value });
                match t.next() {
                    None => break,
                    Some("and") => {}
                    Some(other) => {
                        return Err(err(&format!("expected `and` or the end, found `{other}`")));
                    }
                }
            },
            Some(other) => {
                return Err(err(&format!("expected `when` or the end, found `{other}`")));
            }
        }
        Ok(Self {
            text: text.trim().to_owned(),
            forbid_allow,
            action,
            conditions,
        })
    }

    /// Whether a decision with `allowed` on `request` breaks this property.
    pub fn violated_by(&self, request: &Request, allowed: bool, entities: &Entities) -> bool {
        if allowed != self.forbid_allow {
            return false;
        }
        let Some(action) = request.action() else {
            return false;
        };
        let name = action.id().unescaped().to_owned();
        let matches = match &self.action {
            ActionMatch::Exactly(a) => *a == name,
            ActionMatch::AnyTool => !kernel::BUILTIN_ACTIONS.contains(&name.as_str()),
        };
        matches && self.conditions.iter().all(|c| c.holds(request, entities))
    }

    /// For a request of this property's action, whether each condition's path names a value in
    /// it; `None` for a request of another action. A path that names nothing on every request of
    /// its action is a misspelling (`context.attempt` for `context.session.attempt`), and the
    /// property could never fire.
    pub fn resolves(&self, request: &Request, entities: &Entities) -> Option<Vec<bool>> {
        let action = request.action()?;
        let name = action.id().unescaped().to_owned();
        let matches = match &self.action {
            ActionMatch::Exactly(a) => *a == name,
            ActionMatch::AnyTool => !kernel::BUILTIN_ACTIONS.contains(&name.as_str()),
        };
        matches.then(|| {
            self.conditions
                .iter()
                .map(|c| c.lookup(request, entities).is_some())
                .collect()
        })
    }

    /// The path of condition `i`, as written.
    pub fn condition_path(&self, i: usize) -> String {
        self.conditions
            .get(i)
            .map(|c| c.path.join("."))
            .unwrap_or_default()
    }
}

fn strip_action(s: &str) -> String {
    s.strip_prefix("Action::")
        .unwrap_or(s)
        .trim_matches('"')
        .to_owned()
}

fn literal(raw: &str) -> Literal {
    if let Some(s) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return Literal::Str(s.to_owned());
    }
    match raw {
        "true" => Literal::Bool(true),
        "false" => Literal::Bool(false),
        _ => raw
            .parse()
            .map_or_else(|_| Literal::Str(raw.to_owned()), Literal::Long),
    }
}

fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut tok = String::from('"');
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => tok.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            tok.push('"');
            out.push(tok);
        } else if "=!<>".contains(c) {
            let mut tok = String::new();
            while let Some(&c) = chars.peek().filter(|c| "=!<>".contains(**c)) {
                tok.push(c);
                chars.next();
            }
            out.push(tok);
        } else {
            let mut tok = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| !c.is_whitespace() && !"=!<>\"".contains(**c))
            {
                tok.push(c);
                chars.next();
            }
            out.push(tok);
        }
    }
    Ok(out)
}

impl Condition {
    fn holds(&self, request: &Request, entities: &Entities) -> bool {
        let Some(value) = self.lookup(request, entities) else {
            return false;
        };
        match (self.op, &value, &self.value) {
            (Op::Contains, EvalResult::Set(set), lit) => set.iter().any(|v| equal(v, lit)),
            (Op::Eq, v, lit) => equal(v, lit),
            (Op::Ne, v, lit) => !equal(v, lit),
            (op, EvalResult::Long(n), Literal::Long(m)) => match op {
                Op::Lt => n < m,
                Op::Le => n <= m,
                Op::Gt => n > m,
                Op::Ge => n >= m,
                _ => false,
            },
            _ => false,
        }
    }

    fn lookup(&self, request: &Request, entities: &Entities) -> Option<EvalResult> {
        let (first, rest) = self.path.split_first()?;
        let mut value = match first.as_str() {
            "principal" | "resource" => {
                let uid = if first == "principal" {
                    request.principal()?
                } else {
                    request.resource()?
                };
                let (attr, rest) = rest.split_first()?;
                let v = if attr == "id" {
                    EvalResult::String(uid.id().unescaped().to_owned())
                } else {
                    entities.get(uid)?.attr(attr)?.ok()?
                };
                return descend(v, rest);
            }
            "context" => request.context()?.get(rest.first()?)?,
            name => request.context()?.get(name)?,
        };
        let rest = if first == "context" {
            rest.get(1..).unwrap_or_default()
        } else {
            rest
        };
        for part in rest {
            value = match value {
                EvalResult::Record(r) => r.get(part)?.clone(),
                _ => return None,
            };
        }
        Some(value)
    }
}

fn descend(mut value: EvalResult, path: &[String]) -> Option<EvalResult> {
    for part in path {
        value = match value {
            EvalResult::Record(r) => r.get(part)?.clone(),
            _ => return None,
        };
    }
    Some(value)
}

fn equal(v: &EvalResult, lit: &Literal) -> bool {
    match (v, lit) {
        (EvalResult::Long(n), Literal::Long(m)) => n == m,
        (EvalResult::Bool(b), Literal::Bool(c)) => b == c,
        (EvalResult::String(s), Literal::Str(t)) => s == t,
        (EvalResult::EntityUid(u), Literal::Str(t)) => u.id().unescaped() == t,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_like_they_read() {
        let p = Property::parse(r#"no-allow: action == send_email when session.labels contains "untrusted" and input.amount > 5"#)
            .expect("parses");
        assert!(p.forbid_allow);
        assert_eq!(p.action, ActionMatch::Exactly("send_email".into()));
        assert_eq!(p.conditions.len(), 2);
        assert_eq!(p.conditions[0].value, Literal::Str("untrusted".into()));
        assert_eq!(p.conditions[1].op, Op::Gt);
        let any = Property::parse("no-deny: action in call_tool").expect("parses");
        assert_eq!(any.action, ActionMatch::AnyTool);
        for bad in [
            "allow: action == x",
            "no-allow action == x",
            "no-allow: action = x",
            "no-allow: action == x when",
            "no-allow: action == x when a ~ 1",
            "no-allow: action == x when a == \"open",
        ] {
            assert!(Property::parse(bad).is_err(), "{bad}");
        }
    }
}
