//! The kernel invariants, checked after every step of a session, plus author properties.
//!
//! Each invariant is named; a violation says which, at which step, and why.

use std::collections::BTreeSet;

use cedar_policy::{Authorizer, Decision as CedarDecision, EntityUid, PolicyId, Request};
use kernel::{
    Decision, Deployment, Effect, EventBody, Mode, Rejected, Session, Status, Transition,
};

use super::property::Property;

/// Names of the invariants, as reported.
pub mod names {
    /// An effect appeared without an allowing decision for that exact request.
    pub const EFFECT_WITHOUT_ALLOW: &str = "effect-without-allow";
    /// The kernel's decision differs from Cedar's on the same request.
    pub const ORACLE: &str = "differential-oracle";
    /// A request the kernel built does not validate against the schema.
    pub const INVALID_REQUEST: &str = "invalid-request";
    /// Settled spend passed the budget although every settlement stayed within its reservation.
    pub const BUDGET: &str = "budget-overspent";
    /// More steps than the base pack's step limit allows.
    pub const STEPS: &str = "step-limit-exceeded";
    /// An effect after the session ended.
    pub const AFTER_END: &str = "effect-after-terminal";
    /// A memory read or write outside the session's tenant.
    pub const TENANT: &str = "cross-tenant-memory";
    /// A label disappeared.
    pub const LABELS: &str = "label-lost";
    /// The event chain does not verify or seq is not contiguous.
    pub const CHAIN: &str = "event-chain";
    /// Replaying the same intents gave different bytes.
    pub const DETERMINISM: &str = "nondeterministic";
    /// The kernel panicked.
    pub const PANIC: &str = "panic";
    /// An author property failed.
    pub const PROPERTY: &str = "property";
    /// An approve, cancel, endorse or tick named another resource than the session's agent. The
    /// base pack has no rule for this (one could never hold); this check is what stands for it.
    pub const SESSION_RESOURCE: &str = "foreign-session-resource";
}

/// The base pack's step limit (`base.limit.steps`).
const BASE_STEP_LIMIT: u64 = 50;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (see [`names`]) or `property`.
    pub invariant: &'static str,
    /// 0-based index of the intent that broke it.
    pub step: usize,
    /// What happened.
    pub detail: String,
}

/// Watches one session step by step.
pub struct Monitor {
    deployment: std::sync::Arc<Deployment>,
    properties: Vec<Property>,
    mode: Mode,
    tenant: Option<EntityUid>,
    /// The session's agent, as a decision names its resource.
    agent: String,
    /// Per property: whether a request of its action was seen, and per condition whether its path
    /// named a value on at least one of them.
    resolved: Vec<(bool, Vec<bool>)>,
    /// The last step observed, which the end-of-run checks are reported at.
    last_step: usize,
    authorizer: Authorizer,
    labels: BTreeSet<String>,
    honest_settlements: bool,
    budget_limit: Option<i64>,
    steps: u64,
    spent: u64,
    /// Violations found so far.
    pub violations: Vec<Violation>,
    /// Decisions seen: (allowed, denied).
    pub decisions: (usize, usize),
    /// Policy ids that determined at least one decision.
    pub policies: BTreeSet<String>,
}

impl Monitor {
    /// A monitor for a session of `tenant` in `mode`.
    pub fn new(
        deployment: std::sync::Arc<Deployment>,
        properties: Vec<Property>,
        mode: Mode,
        tenant: &str,
        agent: &str,
        budget: &str,
    ) -> Self {
        let budget_limit = kernel::uid("Budget", budget)
            .ok()
            .and_then(|b| deployment.cedar_entities().get(&b))
            .and_then(|e| e.attr("limit"))
            .and_then(Result::ok)
            .and_then(|v| {
                if let cedar_policy::EvalResult::Long(n) = v {
                    Some(n)
                } else {
                    None
                }
            });
        let resolved = properties.iter().map(|_| (false, Vec::new())).collect();
        Self {
            deployment,
            properties,
            resolved,
            last_step: 0,
            mode,
            tenant: kernel::uid("Tenant", tenant).ok(),
            agent: kernel::uid("Agent", agent)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            authorizer: Authorizer::new(),
            labels: BTreeSet::new(),
            honest_settlements: true,
            budget_limit,
            steps: 0,
            spent: 0,
            violations: Vec::new(),
            decisions: (0, 0),
            policies: BTreeSet::new(),
        }
    }

    /// The violations, with one more per property condition whose path named nothing on any
    /// request of the property's action (so the property could never have fired).
    pub fn finish(mut self) -> Vec<Violation> {
        let last = self.last_step;
        for (p, (seen, paths)) in self.properties.iter().zip(&self.resolved) {
            if !seen {
                continue;
            }
            for (i, ok) in paths.iter().enumerate() {
                if !ok {
                    self.violations.push(Violation {
                        invariant: names::PROPERTY,
                        step: last,
                        detail: format!(
                            "`{p}`: `{}` names nothing on any request of its action, so the property could never fire (a misspelt path? the context holds session, history, input, provenance...)",
                            p.condition_path(i)
                        ),
                    });
                }
            }
        }
        self.violations
    }

    fn flag(&mut self, invariant: &'static str, step: usize, detail: String) {
        self.violations.push(Violation {
            invariant,
            step,
            detail,
        });
    }

    /// Checks one step: `before` is the status before it, `result` what it returned.
    pub fn observe(
        &mut self,
        step: usize,
        before: Status,
        result: &Result<Transition, Rejected>,
        session: &Session,
    ) {
        self.last_step = step;
        let t = match result {
            Ok(t) => t,
            Err(_) => {
                self.after_state(step, session);
                return;
            }
        };
        if before.is_terminal() && !t.effects.is_empty() {
            self.flag(
                names::AFTER_END,
                step,
                format!("{} effect(s) after `{}`", t.effects.len(), before.as_str()),
            );
        }
        self.effects_have_allows(step, t);
        self.oracle(step, t);
        for e in &t.events {
            if let EventBody::BudgetSettled {
                actual, violation, ..
            } = e.body
            {
                self.spent = self.spent.saturating_add(actual);
                self.honest_settlements &= !violation;
            }
            if matches!(
                e.body,
                EventBody::ToolCalled { .. }
                    | EventBody::ModelCalled { .. }
                    | EventBody::MemoryRead { .. }
                    | EventBody::MemoryWritten { .. }
            ) {
                self.steps += 1;
            }
            if let Some(d) = &e.decision {
                if d.allowed() {
                    self.decisions.0 += 1;
                } else {
                    self.decisions.1 += 1;
                }
                self.policies
                    .extend(d.policies.iter().map(|p| p.id.clone()));
            }
            self.tenancy(step, e);
        }
        for traced in &t.traced {
            let d = &traced.decision;
            let about_the_session = [
                r#"Action::"approve""#,
                r#"Action::"cancel""#,
                r#"Action::"endorse""#,
                r#"Action::"continue_session""#,
            ]
            .contains(&d.action.as_str());
            if about_the_session && d.resource != self.agent {
                let detail = format!("{} on {}, not {}", d.action, d.resource, self.agent);
                self.flag(names::SESSION_RESOURCE, step, detail);
            }
            for (p, seen) in self.properties.iter().zip(self.resolved.iter_mut()) {
                if let Some(flags) = p.resolves(&traced.request, self.deployment.cedar_entities()) {
                    seen.0 = true;
                    seen.1.resize(flags.len(), false);
                    for (s, f) in seen.1.iter_mut().zip(flags) {
                        *s |= f;
                    }
                }
            }
            for p in &self.properties {
                if p.violated_by(
                    &traced.request,
                    traced.decision.allowed(),
                    self.deployment.cedar_entities(),
                ) {
                    let detail = format!(
                        "`{p}` broken by {} {} {}",
                        traced.decision.principal, traced.decision.action, traced.decision.resource
                    );
                    self.violations.push(Violation {
                        invariant: names::PROPERTY,
                        step,
                        detail,
                    });
                }
            }
        }
        self.after_state(step, session);
    }

    fn after_state(&mut self, step: usize, session: &Session) {
        let now: BTreeSet<String> = session.labels().map(str::to_owned).collect();
        if let Some(lost) = self.labels.difference(&now).next() {
            self.flag(names::LABELS, step, format!("label `{lost}` disappeared"));
        }
        self.labels = now;
        // Steps are counted from the events, independently of the kernel's own counter.
        if self.mode == Mode::Enforce && self.steps > BASE_STEP_LIMIT {
            self.flag(
                names::STEPS,
                step,
                format!("{} steps taken, limit {BASE_STEP_LIMIT}", self.steps),
            );
        } else if session.steps() != self.steps {
            self.flag(
                names::STEPS,
                step,
                format!(
                    "kernel counts {} steps, the log shows {}",
                    session.steps(),
                    self.steps
                ),
            );
        }
        // Spend is summed from the settlements in the log, independently of the kernel's counter.
        if let Some(limit) = self.budget_limit
            && self.honest_settlements
            && self.mode == Mode::Enforce
            && i64::try_from(self.spent).unwrap_or(i64::MAX) > limit
        {
            self.flag(
                names::BUDGET,
                step,
                format!("settled {} against a {limit} budget", self.spent),
            );
        } else if session.cost_spent() != self.spent {
            self.flag(
                names::BUDGET,
                step,
                format!(
                    "kernel counts {} spent, the log settles {}",
                    session.cost_spent(),
                    self.spent
                ),
            );
        }
    }

    /// Every call, read or write effect is backed, in the same step, by an event carrying an
    /// allowing decision for that action and resource (and, for calls, an allowed reservation).
    fn effects_have_allows(&mut self, step: usize, t: &Transition) {
        if self.mode == Mode::LogOnly {
            return;
        }
        let allowed = |kind: &str, action: &str, resource: &str| {
            t.events.iter().any(|e| {
                e.body.kind() == kind
                    && e.decision.as_ref().is_some_and(|d| {
                        d.allowed() && d.action == action && d.resource == resource
                    })
            })
        };
        let reserved = t.events.iter().any(|e| {
            e.body.kind() == "budget_reserved" && e.decision.as_ref().is_some_and(Decision::allowed)
        });
        for effect in &t.effects {
            let ok = match effect {
                Effect::CallTool { tool, attempt, .. } => {
                    let kind = if *attempt > 1 {
                        "retry_scheduled"
                    } else {
                        "tool_called"
                    };
                    reserved
                        && allowed(
                            kind,
                            &format!("Action::\"{tool}\""),
                            &format!("Tool::\"{tool}\""),
                        )
                }
                Effect::CallModel { model, attempt, .. } => {
                    let kind = if *attempt > 1 {
                        "retry_scheduled"
                    } else {
                        "model_called"
                    };
                    reserved
                        && allowed(
                            kind,
                            "Action::\"call_model\"",
                            &format!("Model::\"{model}\""),
                        )
                }
                Effect::ReadMemory { scope, .. } => allowed(
                    "memory_read",
                    "Action::\"read_memory\"",
                    &format!("MemoryScope::\"{scope}\""),
                ),
                Effect::WriteMemory { scope, .. } => allowed(
                    "memory_written",
                    "Action::\"write_memory\"",
                    &format!("MemoryScope::\"{scope}\""),
                ),
                Effect::Abort { .. } => true,
            };
            if !ok {
                self.flag(names::EFFECT_WITHOUT_ALLOW, step, format!("{effect:?}"));
            }
        }
    }

    /// The kernel skips Cedar's request validation at run time (its requests are well-typed by
    /// construction); this re-validates every one against the schema.
    fn validate(&mut self, step: usize, request: &Request) {
        let parts = (
            request.principal(),
            request.action(),
            request.resource(),
            request.context(),
        );
        let (Some(p), Some(a), Some(r), Some(c)) = parts else {
            self.flag(
                names::INVALID_REQUEST,
                step,
                format!("{request}: not concrete"),
            );
            return;
        };
        let schema = self.deployment.cedar_schema();
        if let Err(e) = Request::new(p.clone(), a.clone(), r.clone(), c.clone(), Some(schema)) {
            self.flag(names::INVALID_REQUEST, step, format!("{a} {r}: {e}"));
        }
    }

    /// Each traced request, asked of Cedar directly (minus the policies an approval lifted), gives
    /// the kernel's verdict (an error denies), the same determining policies and the same errors.
    fn oracle(&mut self, step: usize, t: &Transition) {
        for traced in &t.traced {
            self.validate(step, &traced.request);
            let policies = self.deployment.cedar_policies();
            let response = if traced.lifted.is_empty() {
                self.authorizer.is_authorized(
                    &traced.request,
                    policies,
                    self.deployment.cedar_entities(),
                )
            } else {
                let mut reduced = policies.clone();
                for id in &traced.lifted {
                    let _ = reduced.remove_static(PolicyId::new(id));
                }
                self.authorizer.is_authorized(
                    &traced.request,
                    &reduced,
                    self.deployment.cedar_entities(),
                )
            };
            let errors = response.diagnostics().errors().count();
            let allow = response.decision() == CedarDecision::Allow && errors == 0;
            let mut ids: Vec<String> = response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .collect();
            ids.sort();
            let d = &traced.decision;
            let kernel_ids: Vec<String> = d.policies.iter().map(|p| p.id.clone()).collect();
            if allow != d.allowed() || ids != kernel_ids || errors != d.errors.len() {
                let detail = format!(
                    "{} {} {}: cedar says allow={allow} by {ids:?} with {errors} error(s); kernel says allow={} by {kernel_ids:?} with {} error(s)",
                    d.principal,
                    d.action,
                    d.resource,
                    d.allowed(),
                    d.errors.len()
                );
                self.flag(names::ORACLE, step, detail);
            }
        }
    }

    /// Under enforcement, memory is only read or written inside the session's tenant.
    fn tenancy(&mut self, step: usize, e: &kernel::Event) {
        if self.mode == Mode::LogOnly {
            return;
        }
        let scope = match &e.body {
            EventBody::MemoryRead { scope, .. } | EventBody::MemoryWritten { scope, .. } => scope,
            _ => return,
        };
        let inside = match (kernel::uid("MemoryScope", scope), &self.tenant) {
            (Ok(uid), Some(tenant)) => self
                .deployment
                .cedar_entities()
                .ancestors(&uid)
                .is_some_and(|mut a| a.any(|p| p == tenant)),
            _ => false,
        };
        if !inside {
            let tenant = self
                .tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let detail = format!(
                "`{}` on scope `{scope}` outside tenant {tenant}",
                e.body.kind()
            );
            self.flag(names::TENANT, step, detail);
        }
    }
}
