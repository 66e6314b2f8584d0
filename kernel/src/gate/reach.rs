//! Whether a principal could ever be permitted an action on a resource, whatever the context —
//! for listing tools (`tools/list` shows only those), never for deciding a call.
//!
//! Cedar's type-aware partial evaluation decides the request with the context unknown: principal,
//! resource and entities are concrete, so `resource.risk != "critical"` is evaluated and
//! `context.paths.all.contains(..)` is left as a residual. "No" means every request is denied
//! whatever its context; "yes" promises nothing (a call may still be denied). Forbids that carry
//! `@approval` are left out first, since an approval can lift them. Partial evaluation is an
//! experimental Cedar feature; where it fails, the answer is "yes" (the call is still decided).

use cedar_policy::{
    Decision, Effect, Entities, EntityUid, PartialEntities, PartialEntityUid, PartialRequest,
    PolicySet, Schema,
};

/// The policies partial evaluation runs over: the set without its `@approval` forbids.
pub(crate) fn liftable_removed(policies: &PolicySet) -> PolicySet {
    let kept = policies
        .policies()
        .filter(|p| !(p.effect() == Effect::Forbid && p.annotation("approval").is_some()))
        .cloned();
    PolicySet::from_policies(kept).unwrap_or_else(|_| policies.clone())
}

/// Whether some request `(principal, action, resource)` could be permitted by `policies` (already
/// passed through [`liftable_removed`]).
pub(crate) fn may_permit(
    schema: &Schema,
    policies: &PolicySet,
    entities: &Entities,
    request: (&EntityUid, &EntityUid, &EntityUid),
) -> bool {
    let (principal, action, resource) = request;
    let Ok(request) = PartialRequest::new(
        PartialEntityUid::from_concrete(principal.clone()),
        action.clone(),
        PartialEntityUid::from_concrete(resource.clone()),
        None,
        schema,
    ) else {
        return true;
    };
    let Ok(partial) = PartialEntities::from_concrete(entities.clone(), schema) else {
        return true;
    };
    match policies.tpe(&request, &partial, schema) {
        Ok(response) => response.decision() != Some(Decision::Deny),
        Err(_) => true,
    }
}
