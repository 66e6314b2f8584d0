//! A recorded session (an MCP gateway's, a served one) as a scenario: its stored steps become the
//! scenario's raw `intents`, the tools registered one by one in its bundle (the gateway's upstream
//! tools) its `tools`, and what it decided its expectations — so `arbiter replay` shows it again
//! and `arbiter test` holds later policy changes to the same decisions.

use std::collections::BTreeMap;
use std::path::Path;

use kernel::event::{Event, EventBody};
use kernel::{BundleSources, Intent};

use crate::expect::occurrences;
use crate::scenario::{Expect, ExpectDecision, Scenario, SessionSpec, TimedIntent};

/// The scenario of `steps` (with the `events` they produced) of the session `config`, run under
/// `bundle`; the scenario file will sit in `dir` and load `packs` from `policies`.
pub fn scenario_of(
    config: &kernel::SessionConfig,
    steps: &[kernel::Step],
    events: &[Event],
    bundle: &BundleSources,
    (dir, policies, packs): (&Path, &Path, Vec<String>),
) -> Scenario {
    let request = steps
        .iter()
        .find_map(|s| match &s.intent {
            Intent::Start { request } => Some(request.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let status = events
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::Completed { .. } => Some(kernel::Status::Completed),
            EventBody::Failed { .. } => Some(kernel::Status::Failed),
            EventBody::Cancelled { .. } => Some(kernel::Status::Cancelled),
            EventBody::LimitReached { .. } => Some(kernel::Status::LimitReached),
            _ => None,
        })
        .unwrap_or(kernel::Status::Running);
    Scenario {
        name: format!("recorded session {}/{}", config.tenant, config.id),
        description: format!(
            "Exported from a store: {} steps, {} events, bundle {}.",
            steps.len(),
            events.len(),
            bundle.hash().unwrap_or_default()
        ),
        policies: Some(crate::fuzz::relative(dir, policies)),
        packs,
        mode: config.mode,
        session: SessionSpec {
            id: Some(config.id.clone()),
            tenant: config.tenant.clone(),
            user: config.user.clone(),
            agent: config.agent.clone(),
            budget: config.budget.clone(),
            model: String::new(),
            request,
        },
        entities: Vec::new(),
        tools: bundle.tools.iter().map(|(spec, _)| spec.clone()).collect(),
        policy_text: None,
        intents: steps
            .iter()
            .map(|s| TimedIntent {
                at_ms: s.t_ms,
                step: s.intent.clone(),
            })
            .collect(),
        tool_script: BTreeMap::new(),
        turns: Vec::new(),
        memory: Vec::new(),
        events: Vec::new(),
        expect: Expect {
            status,
            decisions: decisions(events),
            calls: BTreeMap::new(),
            kinds: Vec::new(),
            labels: None,
            invariants: false,
            properties: Vec::new(),
        },
        suite: None,
    }
}

/// Every decision of `events` (and every tool call refused for its arguments) as an expectation:
/// its effect and first determining policy, numbered as `expect` counts them.
fn decisions(events: &[Event]) -> Vec<ExpectDecision> {
    occurrences(events)
        .into_iter()
        .map(|o| ExpectDecision {
            action: o.action.to_owned(),
            nth: o.nth,
            effect: o.effect(),
            policy: o
                .decision
                .and_then(|d| d.policies.first())
                .map(|p| p.id.clone()),
            basis: None,
        })
        .collect()
}
