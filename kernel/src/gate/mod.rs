//! The gate between the kernel and Cedar: loads the bundle, authorizes requests, and turns Cedar's
//! answer into a [`Decision`] the kernel can record and act on.

mod decision;
mod load;

pub use decision::{Basis, Decision, DeterminingPolicy, Mode, Obligations, Verdict};
pub(crate) use load::{PolicyMeta, load_policies, load_schema, validate_policies};

use std::collections::HashMap;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet, Request,
    Schema,
};

use crate::deployment::BundleHashes;

/// One authorization as Cedar saw it: the exact request, the policies set aside, and the kernel's
/// decision. Collected only when a session traces requests (see [`crate::Session::trace_requests`]),
/// so a fuzzer can replay the request against Cedar directly.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The request, context included.
    pub request: Request,
    /// Policy ids removed from the set for this request (an approval's lift).
    pub lifted: Vec<String>,
    /// What the kernel decided.
    pub decision: Decision,
}

/// What the gate needs to answer requests; owned by a [`crate::Deployment`].
pub(crate) struct Gate {
    pub schema: Schema,
    pub policies: PolicySet,
    pub entities: Entities,
    pub meta: HashMap<PolicyId, PolicyMeta>,
    pub hashes: BundleHashes,
    authorizer: Authorizer,
    /// For each action in the schema, only the policies whose action scope can match it.
    by_action: HashMap<EntityUid, PolicySet>,
}

/// One request, built by the session from its state.
pub(crate) struct Ask<'a> {
    pub principal: &'a EntityUid,
    pub action: &'a EntityUid,
    pub resource: &'a EntityUid,
    pub context: Result<Context, String>,
    /// Check the request against the schema. Requests the kernel builds from session state are
    /// well-typed by construction (see [`crate::Deployment`]'s request contract check, made once at
    /// load time, and the fuzzer's oracle, which validates every request), so only requests built
    /// from outside input, and that load-time check, pay for Cedar's validation.
    pub validate: bool,
}

impl Gate {
    pub fn new(
        schema: Schema,
        policies: PolicySet,
        entities: Entities,
        meta: HashMap<PolicyId, PolicyMeta>,
        hashes: BundleHashes,
    ) -> Self {
        let by_action = index_by_action(&schema, &policies);
        Self {
            schema,
            policies,
            entities,
            meta,
            hashes,
            authorizer: Authorizer::new(),
            by_action,
        }
    }

    /// The policies a request for `action` is decided against (the whole set for an action the
    /// schema does not know, which request validation refuses anyway).
    pub fn candidates(&self, action: &EntityUid) -> &PolicySet {
        self.by_action.get(action).unwrap_or(&self.policies)
    }

    /// Decides `ask` with every policy except `lifted` (the ids an approval lifted); with `trace`,
    /// also records the exact Cedar request and the decision.
    ///
    /// Fails closed: an invalid request or any evaluation error denies, and the errors are kept.
    pub fn authorize(
        &self,
        ask: Ask<'_>,
        lifted: &[String],
        mode: Mode,
        trace: Option<&mut Vec<Traced>>,
    ) -> Decision {
        let mut decision =
            Decision::new(ask.principal, ask.action, ask.resource, mode, &self.hashes);
        decision.lifted = lifted.to_vec();
        let request = ask.context.and_then(|context| {
            Request::new(
                ask.principal.clone(),
                ask.action.clone(),
                ask.resource.clone(),
                context,
                ask.validate.then_some(&self.schema),
            )
            .map_err(|e| crate::deployment::full_message(&e))
        });
        let request = match request {
            Ok(r) => r,
            Err(error) => {
                decision.errors.push(format!("invalid request: {error}"));
                decision.basis = Basis::Error;
                return decision;
            }
        };
        let candidates = self.candidates(ask.action);
        let response = if lifted.is_empty() {
            self.authorizer
                .is_authorized(&request, candidates, &self.entities)
        } else {
            let mut reduced = candidates.clone();
            for id in lifted {
                // A lifted id names a static policy of this set: approvals only lift ids the
                // gate itself reported, so a failed removal means there is nothing to lift.
                let _ = reduced.remove_static(PolicyId::new(id));
            }
            self.authorizer
                .is_authorized(&request, &reduced, &self.entities)
        };
        let mut ids: Vec<&PolicyId> = response.diagnostics().reason().collect();
        ids.sort_unstable_by(|a, b| AsRef::<str>::as_ref(*a).cmp(AsRef::<str>::as_ref(*b)));
        decision.policies = ids
            .into_iter()
            .filter_map(|id| self.meta.get(id))
            .map(PolicyMeta::determining)
            .collect();
        let mut errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        errors.sort_unstable();
        decision.errors = errors;
        decision.settle(response.decision() == cedar_policy::Decision::Allow);
        if let Some(trace) = trace {
            trace.push(Traced {
                request,
                lifted: lifted.to_vec(),
                decision: decision.clone(),
            });
        }
        decision
    }
}

/// Splits the policy set by action. A policy whose action scope cannot match a request's action is
/// never satisfied and, since Cedar checks the scope before the conditions, never errs either, so
/// leaving it out changes neither the decision, nor the determining policies, nor the errors — only
/// the time (Cedar evaluates every policy it is given). The fuzzer's oracle re-asks Cedar with the
/// whole set for every decision, which checks this exactness on every fuzzed transition.
fn index_by_action(schema: &Schema, policies: &PolicySet) -> HashMap<EntityUid, PolicySet> {
    let groups = schema.action_entities().ok();
    let within = |action: &EntityUid, group: &EntityUid| {
        action == group
            || groups
                .as_ref()
                .is_some_and(|g| g.is_ancestor_of(group, action))
    };
    let mut out = HashMap::new();
    for action in schema.actions() {
        let mut set = PolicySet::new();
        for policy in policies.policies() {
            let matches = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => &a == action,
                ActionConstraint::In(list) => list.iter().any(|g| within(action, g)),
            };
            // Adding a policy of a valid set to an empty one cannot clash on ids; if it somehow
            // did, the action falls back to the whole set rather than to a partial one.
            if matches && set.add(policy.clone()).is_err() {
                set = policies.clone();
                break;
            }
        }
        out.insert(action.clone(), set);
    }
    out
}
