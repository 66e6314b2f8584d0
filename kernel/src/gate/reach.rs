//! Which actions a principal could ever be permitted, read from policy scopes alone — for
//! listing tools (`tools/list` shows only those), never for deciding a call.
//!
//! The answer errs towards "yes": conditions are assumed satisfiable, so a tool may be shown and
//! still be denied on every call. It says "no" only when no permit's scope can match the request,
//! or a forbid without conditions and without `@approval` (an approval could lift it) matches its
//! whole scope.

use cedar_policy::{
    ActionConstraint, Effect, Entities, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema,
};

/// Whether some request `(principal, action, resource)` could be permitted by `policies`.
pub(crate) fn may_permit(
    schema: &Schema,
    policies: &PolicySet,
    entities: &Entities,
    request: (&EntityUid, &EntityUid, &EntityUid),
) -> bool {
    let (principal, action, resource) = request;
    let groups = schema.action_entities().ok();
    let is_in = |entity: &EntityUid, group: &EntityUid| {
        entity == group
            || entities
                .ancestors(entity)
                .is_some_and(|mut a| a.any(|x| x == group))
    };
    let action_in = |group: &EntityUid| {
        action == group
            || groups
                .as_ref()
                .is_some_and(|g| g.is_ancestor_of(group, action))
    };
    let applies = |policy: &Policy| {
        let principal_ok = match policy.principal_constraint() {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(e) => &e == principal,
            PrincipalConstraint::In(e) => is_in(principal, &e),
            PrincipalConstraint::Is(t) => principal.type_name() == &t,
            PrincipalConstraint::IsIn(t, e) => principal.type_name() == &t && is_in(principal, &e),
        };
        let action_ok = match policy.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(a) => &a == action,
            ActionConstraint::In(list) => list.iter().any(action_in),
        };
        let resource_ok = match policy.resource_constraint() {
            ResourceConstraint::Any => true,
            ResourceConstraint::Eq(e) => &e == resource,
            ResourceConstraint::In(e) => is_in(resource, &e),
            ResourceConstraint::Is(t) => resource.type_name() == &t,
            ResourceConstraint::IsIn(t, e) => resource.type_name() == &t && is_in(resource, &e),
        };
        principal_ok && action_ok && resource_ok
    };
    let unconditional = |policy: &Policy| {
        policy.annotation("approval").is_none()
            && policy
                .to_json()
                .ok()
                .and_then(|j| {
                    j.get("conditions")
                        .and_then(|c| c.as_array())
                        .map(Vec::is_empty)
                })
                .unwrap_or(false)
    };
    let mut permitted = false;
    for policy in policies.policies().filter(|p| applies(p)) {
        match policy.effect() {
            Effect::Forbid if unconditional(policy) => return false,
            Effect::Forbid => {}
            Effect::Permit => permitted = true,
        }
    }
    permitted
}
