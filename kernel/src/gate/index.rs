//! Which policies can apply to a request, decided from policy scopes at load time.
//!
//! Cedar evaluates every policy it is given. A policy whose scope cannot match a request is never
//! satisfied and, since Cedar checks the scope before the conditions, never errs either, so leaving
//! it out changes neither the decision, nor the determining policies, nor the errors — only the
//! time. Policies are split by action, then by the entity their principal scope names
//! (`principal == E`, `principal in E`, `principal is T in E`): such a policy can only match a
//! principal that is `E` or has `E` among its ancestors, so a request from one tenant's agent
//! never evaluates another tenant's policies.
//!
//! Within the shared sets, a policy's action constraint, which the filing already decided, is
//! dropped, so Cedar does not rebuild and re-check it on every evaluation; a shared policy left
//! with nothing to check (`permit (principal, action == A, resource);`) is not given to Cedar at
//! all, only counted among the satisfied ones; and one whose condition starts by comparing a
//! context attribute with a literal is filed by that comparison (see [`super::keyed`]). The
//! fuzzer's oracle re-asks Cedar with the whole, unmodified set for every decision, which checks
//! all of this on every fuzzed transition.

use std::collections::HashMap;

use std::borrow::Cow;

use super::RequestContext;
use super::demand::Demand;
use super::keyed::{Keyed, key_of};
use super::set::Candidate;
use super::value::Val;
use cedar_policy::{
    ActionConstraint, Effect, Entities, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, Schema,
};

/// What a request must be decided against.
pub(crate) struct Candidates<'a> {
    /// Disjoint policy sets, each decided on its own.
    pub sets: Vec<&'a Candidate>,
    /// Policies satisfied by every request for the action, with their effects.
    pub always: &'a [(PolicyId, Effect)],
}

/// The policies of one action.
#[derive(Default)]
struct ForAction {
    /// A policy could not be filed (never expected): decide this action against the whole set.
    unindexed: bool,
    /// Policies satisfied by every request for the action: no condition, no principal or
    /// resource scope (`permit (principal, action == A, resource);`). Cedar is not asked about
    /// them; they never err, so they are simply among the satisfied policies.
    always: Vec<(PolicyId, Effect)>,
    /// Other policies whose principal scope names no entity, but for those filed by the literal
    /// their condition starts by comparing a context attribute with (one entry per path).
    shared: Candidate,
    keyed: Vec<Keyed>,
    /// Policies whose principal scope names an entity, by that entity.
    scoped: HashMap<EntityUid, Candidate>,
    /// The context attributes any of them reads.
    demand: Demand,
}

/// The policy set split by action and principal scope.
pub(crate) struct PolicyIndex {
    actions: HashMap<EntityUid, ForAction>,
}

impl PolicyIndex {
    pub fn new(schema: &Schema, policies: &PolicySet) -> Self {
        let groups = schema.action_entities().ok();
        let within = |action: &EntityUid, group: &EntityUid| {
            action == group
                || groups
                    .as_ref()
                    .is_some_and(|g| g.is_ancestor_of(group, action))
        };
        let mut actions: HashMap<EntityUid, ForAction> = schema
            .actions()
            .map(|a| (a.clone(), ForAction::default()))
            .collect();
        for policy in policies.policies() {
            match policy.action_constraint() {
                ActionConstraint::Eq(a) => {
                    if let Some(slot) = actions.get_mut(&a) {
                        slot.add(policy);
                    }
                }
                ActionConstraint::In(list) => {
                    for (action, slot) in actions.iter_mut() {
                        if list.iter().any(|g| within(action, g)) {
                            slot.add(policy);
                        }
                    }
                }
                ActionConstraint::Any => actions.values_mut().for_each(|slot| slot.add(policy)),
            }
        }
        Self { actions }
    }

    /// What a request by `principal` for `action` must be decided against; `None` for an action
    /// the schema does not know (decide against the whole set).
    pub fn candidates<'a>(
        &'a self,
        action: &EntityUid,
        principal: &EntityUid,
        entities: &Entities,
        context: Option<&RequestContext>,
    ) -> Option<Candidates<'a>> {
        let slot = self.actions.get(action).filter(|s| !s.unindexed)?;
        let mut sets = vec![&slot.shared];
        if !crate::faults::active(crate::faults::Fault::ForgetKeyedPolicies) {
            // Each top-level attribute is read out of the context once, however many paths
            // start with it.
            let mut tops: Vec<(&str, Option<Cow<'_, Val>>)> = Vec::new();
            for keyed in &slot.keyed {
                let top = keyed.top().unwrap_or_default();
                let value = match tops.iter().position(|(name, _)| *name == top) {
                    Some(at) => tops.get(at).and_then(|(_, v)| v.as_deref()),
                    None => {
                        tops.push((top, context.and_then(|c| c.top(top))));
                        tops.last().and_then(|(_, v)| v.as_deref())
                    }
                };
                sets.extend(keyed.candidates(value));
            }
        }
        let forget = crate::faults::active(crate::faults::Fault::ForgetScopedPolicies);
        if !slot.scoped.is_empty() && !forget {
            let ancestors = entities.ancestors(principal).into_iter().flatten();
            for entity in std::iter::once(principal).chain(ancestors) {
                sets.extend(slot.scoped.get(entity));
            }
        }
        let always = if crate::faults::active(crate::faults::Fault::ForgetAlwaysPolicies) {
            &[]
        } else {
            slot.always.as_slice()
        };
        // An empty set answers "denied, nothing applies" and adds nothing to the combination.
        sets.retain(|set| !set.is_empty());
        Some(Candidates { sets, always })
    }

    /// The context attributes a request for `action` needs; `None` for all of them (an action
    /// the schema does not know, decided against the whole set).
    pub fn demand(&self, action: &EntityUid) -> Option<&Demand> {
        let slot = self.actions.get(action).filter(|s| !s.unindexed)?;
        Some(&slot.demand)
    }
}

impl ForAction {
    fn add(&mut self, policy: &Policy) {
        self.demand.add(policy);
        let (set, policy) = match policy.principal_constraint() {
            PrincipalConstraint::Eq(e)
            | PrincipalConstraint::In(e)
            | PrincipalConstraint::IsIn(_, e) => {
                (self.scoped.entry(e).or_default(), policy.clone())
            }
            PrincipalConstraint::Any | PrincipalConstraint::Is(_) => {
                let json = policy.to_json().ok();
                let key = json.as_ref().and_then(key_of);
                let Some(narrowed) = narrowed(policy, json) else {
                    self.always.push((policy.id().clone(), policy.effect()));
                    return;
                };
                match key {
                    Some((path, key)) => {
                        if !self.keyed_for(path).add(key, narrowed) {
                            self.unindexed = true;
                        }
                        return;
                    }
                    None => (&mut self.shared, narrowed),
                }
            }
        };
        // The ids of a valid set are unique, so adding to a subset cannot clash; if it somehow
        // did, the action falls back to the whole set rather than to a partial one.
        if !set.add(policy) {
            self.unindexed = true;
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "`at` is a position just found in, or just pushed to, `keyed`"
    )]
    fn keyed_for(&mut self, path: Vec<String>) -> &mut Keyed {
        let at = match self.keyed.iter().position(|k| k.path == path) {
            Some(at) => at,
            None => {
                self.keyed.push(Keyed {
                    path,
                    ..Keyed::default()
                });
                self.keyed.len() - 1
            }
        };
        &mut self.keyed[at]
    }
}

/// `policy` without its action constraint, which its set already guarantees (Cedar would rebuild
/// it, a set for `action in [...]`, on every evaluation); the original when it cannot be rewritten;
/// `None` when no scope or condition is left to check.
/// Only shared policies are rewritten: they are few and every request evaluates them, while
/// rewriting each of 100,000 tenant policies would cost load time and memory for one comparison.
fn narrowed(policy: &Policy, json: Option<serde_json::Value>) -> Option<Policy> {
    let Some(mut json) = json else {
        return Some(policy.clone());
    };
    let all = serde_json::json!({"op": "All"});
    let unconditional = json
        .get("conditions")
        .and_then(|c| c.as_array())
        .is_some_and(Vec::is_empty);
    if unconditional && json.get("principal") == Some(&all) && json.get("resource") == Some(&all) {
        return None;
    }
    if matches!(policy.action_constraint(), ActionConstraint::Any) {
        return Some(policy.clone());
    }
    let rewrite = || {
        *json.get_mut("action")? = all;
        Policy::from_json(Some(policy.id().clone()), json).ok()
    };
    Some(rewrite().unwrap_or_else(|| policy.clone()))
}
