//! Checking a run against the scenario's expectations; each failure says expected vs actual and
//! points at the event concerned.

use std::fmt;

use kernel::{Decision, Event, EventBody, StepError, Verdict};

use crate::replay::Run;
use crate::scenario::{Expect, Expected};

/// One unmet expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// The event concerned, as its JSON line, when there is one.
    pub event: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, got {}", self.expected, self.actual)?;
        if let Some(e) = &self.event {
            write!(f, "\n      event: {e}")?;
        }
        Ok(())
    }
}

/// The action id of a decision (`Action::"refund"` → `refund`).
pub fn action_name(d: &Decision) -> &str {
    d.action
        .strip_prefix("Action::\"")
        .and_then(|a| a.strip_suffix('"'))
        .unwrap_or(&d.action)
}

/// Every decision in the run with the event that carries it.
pub fn decisions(events: &[Event]) -> impl Iterator<Item = (&Event, &Decision)> {
    events
        .iter()
        .filter_map(|e| e.decision.as_ref().map(|d| (e, d)))
}

/// The action of `e` if it is a proposal as expectations count them — a decision, or (for a tool)
/// a call refused for its arguments before any decision — with its decision if it had one.
fn occurrence(e: &Event) -> Option<(&str, Option<&Decision>)> {
    match (&e.decision, &e.body) {
        (Some(d), _) => Some((action_name(d), Some(d))),
        (
            None,
            EventBody::Rejected {
                error: StepError::InvalidArguments { tool, .. },
                ..
            },
        ) => Some((tool.as_str(), None)),
        _ => None,
    }
}

/// Every proposal of `action` in order: its decisions, and (for a tool) the calls refused for
/// their arguments before any decision.
fn proposals<'a>(
    events: &'a [Event],
    action: &'a str,
) -> impl Iterator<Item = (&'a Event, Option<&'a Decision>)> {
    events
        .iter()
        .filter_map(move |e| occurrence(e).and_then(|(a, d)| (a == action).then_some((e, d))))
}

/// One proposal as expectations count it: the `nth` of its action.
pub struct Occurrence<'a> {
    /// The action (a tool name, `approve`, `spend_budget`...).
    pub action: &'a str,
    /// Which proposal of that action, from 1.
    pub nth: usize,
    /// The event that carries it.
    pub event: &'a Event,
    /// Its decision; `None` for a call refused for its arguments.
    pub decision: Option<&'a Decision>,
}

impl Occurrence<'_> {
    /// Allowed, denied, or refused before any policy ran.
    pub fn effect(&self) -> Expected {
        match self.decision.map(|d| d.effect) {
            Some(Verdict::Allow) => Expected::Allow,
            Some(Verdict::Deny) => Expected::Deny,
            None => Expected::Rejected,
        }
    }
}

/// Every proposal of a run, numbered per action as `expect.decisions` counts them.
pub fn occurrences(events: &[Event]) -> Vec<Occurrence<'_>> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    events
        .iter()
        .filter_map(|e| {
            let (action, decision) = occurrence(e)?;
            let nth = seen.entry(action).or_insert(0);
            *nth += 1;
            Some(Occurrence {
                action,
                nth: *nth,
                event: e,
                decision,
            })
        })
        .collect()
}

fn line(e: &Event) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// Checks `run` against `expect`.
pub fn check(expect: &Expect, run: &Run) -> Vec<Failure> {
    let mut failures = Vec::new();
    if run.status != expect.status {
        failures.push(Failure {
            expected: format!("final status `{}`", expect.status.as_str()),
            actual: format!("`{}`", run.status.as_str()),
            event: run.events.last().map(line),
        });
    }
    for want in &expect.decisions {
        let found = proposals(&run.events, &want.action).nth(want.nth - 1);
        let label = format!("decision #{} on `{}`", want.nth, want.action);
        let Some((event, d)) = found else {
            let count = proposals(&run.events, &want.action).count();
            failures.push(Failure {
                expected: label,
                actual: format!("{count} such decision(s)"),
                event: None,
            });
            continue;
        };
        let Some(d) = d else {
            if want.effect != Expected::Rejected {
                failures.push(Failure {
                    expected: format!("{label} to be {:?}", want.effect).to_lowercase(),
                    actual: "rejected (its arguments fail the tool's schema)".into(),
                    event: Some(line(event)),
                });
            }
            continue;
        };
        let effect = match d.effect {
            Verdict::Allow => Expected::Allow,
            Verdict::Deny => Expected::Deny,
        };
        let ids: Vec<&str> = d.policies.iter().map(|p| p.id.as_str()).collect();
        let policy_ok = want
            .policy
            .as_ref()
            .is_none_or(|p| ids.contains(&p.as_str()));
        let basis_ok = want.basis.is_none_or(|b| b == d.basis);
        if effect != want.effect || !policy_ok || !basis_ok {
            let mut expected = format!("{label} to be {:?}", want.effect).to_lowercase();
            if let Some(p) = &want.policy {
                expected.push_str(&format!(" by `{p}`"));
            }
            if let Some(b) = want.basis {
                expected.push_str(&format!(" ({b:?})"));
            }
            let actual =
                format!("{:?} ({:?}) by [{}]", d.effect, d.basis, ids.join(", ")).to_lowercase();
            failures.push(Failure {
                expected,
                actual,
                event: Some(line(event)),
            });
        }
    }
    for (tool, want) in &expect.calls {
        let got = run
            .events
            .iter()
            .filter(|e| matches!(&e.body, EventBody::ToolCalled { tool: t, .. } if t == tool))
            .count();
        if got != *want {
            failures.push(Failure {
                expected: format!("`{tool}` called {want} time(s)"),
                actual: format!("{got}"),
                event: None,
            });
        }
    }
    for kind in &expect.kinds {
        if !run.events.iter().any(|e| e.body.kind() == kind) {
            failures.push(Failure {
                expected: format!("a `{kind}` event"),
                actual: "none".into(),
                event: None,
            });
        }
    }
    for v in &run.violations {
        failures.push(Failure {
            expected: if v.invariant == crate::fuzz::names::PROPERTY {
                "the property to hold".into()
            } else {
                format!("invariant `{}` to hold", v.invariant)
            },
            actual: format!("broken at step {}: {}", v.step, v.detail),
            event: None,
        });
    }
    if let Some(labels) = &expect.labels {
        let mut want = labels.clone();
        want.sort();
        if want != run.labels {
            failures.push(Failure {
                expected: format!("labels {want:?}"),
                actual: format!("{:?}", run.labels),
                event: None,
            });
        }
    }
    failures
}
