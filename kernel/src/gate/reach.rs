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

/// What partial evaluation runs over, built once per deployment: the policy set without its
/// `@approval` forbids, and the entities in the form partial evaluation takes.
pub(crate) struct Listing {
    policies: PolicySet,
    /// `None` when the entities cannot be converted (then every answer is "yes").
    entities: Option<PartialEntities>,
}

impl Listing {
    pub(crate) fn new(schema: &Schema, policies: &PolicySet, entities: &Entities) -> Self {
        let kept = policies
            .policies()
            .filter(|p| !(p.effect() == Effect::Forbid && p.annotation("approval").is_some()))
            .cloned();
        Self {
            policies: PolicySet::from_policies(kept).unwrap_or_else(|_| policies.clone()),
            entities: PartialEntities::from_concrete(entities.clone(), schema).ok(),
        }
    }

    /// Whether some request `(principal, action, resource)` could be permitted.
    pub(crate) fn may_permit(
        &self,
        schema: &Schema,
        request: (&EntityUid, &EntityUid, &EntityUid),
    ) -> bool {
        let (principal, action, resource) = request;
        let Some(entities) = &self.entities else {
            return true;
        };
        let Ok(request) = PartialRequest::new(
            PartialEntityUid::from_concrete(principal.clone()),
            action.clone(),
            PartialEntityUid::from_concrete(resource.clone()),
            None,
            schema,
        ) else {
            return true;
        };
        match self.policies.tpe(&request, entities, schema) {
            Ok(response) => response.decision() != Some(Decision::Deny),
            Err(_) => true,
        }
    }
}
