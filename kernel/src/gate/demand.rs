//! Which `context` attributes the policies of an action can read, decided from their text at load.
//!
//! A Cedar policy reads the context only through the variable `context` written in its text,
//! followed by attribute names (`context.a.b`) or using a record whole (`context == ...`,
//! `context.session == ...`); any other form after it (`context["a"]`, `context has a`) is taken as a
//! use of the whole context, so the analysis errs only towards building more. So a context that leaves out an attribute none of an action's
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

use crate::vocabulary::SESSION_ATTRIBUTES;

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
        // The text, not the JSON form: rendering a policy as JSON re-parses it (~60 µs each, 5 s
        // for 100,000 tenant policies); its text is at hand.
        self.scan(&policy.to_string());
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

    /// Records every read of `context` in a policy's text. Every read starts with the token
    /// `context` outside strings and comments, followed by `.name` accesses; anything else after
    /// it (`has`, `[`, `==`, a comment) counts as a use of the whole context, so a reading the scan
    /// does not understand only makes the demand larger, never smaller.
    fn scan(&mut self, text: &str) {
        let b = text.as_bytes();
        let mut i = 0;
        // The last token was `.`: a name here is an attribute, even one called `context`.
        let mut after_dot = false;
        while !self.all
            && let Some(&c) = b.get(i)
        {
            match c {
                b'"' => {
                    i = skip_string(b, i);
                    after_dot = false;
                }
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i = b
                        .get(i..)
                        .unwrap_or_default()
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(b.len(), |n| i + n);
                    after_dot = false;
                }
                c if is_ident_start(c) => {
                    let (word, end) = ident(text, i);
                    i = if word == "context" && !after_dot {
                        self.access(text, end)
                    } else {
                        end
                    };
                    after_dot = false;
                }
                c if c.is_ascii_whitespace() => i += 1,
                c => {
                    after_dot = c == b'.';
                    i += 1;
                }
            }
        }
    }

    /// Records the read that starts just after a `context` token at `i`; returns where it ends.
    fn access(&mut self, text: &str, i: usize) -> usize {
        let Some((first, i)) = member(text, i) else {
            self.record(&[]);
            return i;
        };
        match member(text, i) {
            // `context.a.b(...)` calls a method on `a`.
            Some((_, j)) if text.as_bytes().get(skip_ws(text.as_bytes(), j)) == Some(&b'(') => {
                self.record(&[first]);
                i
            }
            Some((second, j)) => {
                self.record(&[first, second]);
                j
            }
            None => {
                self.record(&[first]);
                i
            }
        }
    }

    /// Records a read of `context` (`[]`), of one attribute's whole value, or of an attribute
    /// under one.
    fn record(&mut self, path: &[&str]) {
        match path {
            [] => self.all = true,
            [top] => {
                if *top == "session" {
                    self.session = u32::MAX;
                }
                self.top.insert((*top).to_owned(), None);
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

/// `.name` at `i` (whitespace allowed around the dot): the name and where it ends.
fn member(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let dot = skip_ws(b, i);
    if b.get(dot) != Some(&b'.') {
        return None;
    }
    let start = skip_ws(b, dot + 1);
    b.get(start)
        .is_some_and(|&c| is_ident_start(c))
        .then(|| ident(text, start))
}

fn ident(text: &str, start: usize) -> (&str, usize) {
    let b = text.as_bytes();
    let len = b
        .get(start..)
        .unwrap_or_default()
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .unwrap_or(b.len().saturating_sub(start));
    (&text[start..start + len], start + len)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index just past the string literal opening at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
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
               forbid (principal, action, resource) when { context . session
                 .tenant.name == "x" };
               permit (principal, action, resource) when { context.input.x > 1 && context.amount > 0 };"#,
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
        let d = demand(
            r#"permit (principal, action, resource) when { context.session has in_doubt };"#,
        );
        assert!(d.wants_in("session", "steps") && !d.wants("history"));
    }

    #[test]
    fn what_the_scan_does_not_follow_widens_the_demand_to_everything() {
        for condition in [
            "context has session.in_doubt",
            r#"context["session"].steps > 1"#,
            "context // a comment\n .session.steps > 1",
            "context.session.labels.contains(\"x\") && context",
        ] {
            let d = demand(&format!(
                "permit (principal, action, resource) when {{ {condition} }};"
            ));
            assert!(
                d.wants("input") && d.wants_in("history", "n") && d.session() == u32::MAX,
                "{condition}"
            );
        }
    }

    #[test]
    fn strings_comments_and_attributes_named_context_are_not_reads() {
        let d = demand(
            r#"@id("context.session.id")
               permit (principal, action, resource) when {
                 // context.history.n
                 resource.context == "context.session.steps \" context.input" && principal. context == 1
               };"#,
        );
        assert!(!d.wants("session") && !d.wants("history") && !d.wants("input"));
        assert_eq!(d.session(), 0);
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
