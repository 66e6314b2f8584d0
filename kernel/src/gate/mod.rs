//! The gate between the kernel and Cedar: loads the bundle, authorizes requests, and turns Cedar's
//! answer into a [`Decision`] the kernel can record and act on.

mod decision;
mod load;

pub use decision::{Basis, Decision, DeterminingPolicy, Mode, Obligations, Verdict};
pub(crate) use load::{PolicyMeta, load_policies, load_schema, validate_policies};

use std::collections::HashMap;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet, Request, Schema,
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
}

/// One request, built by the session from its state.
pub(crate) struct Ask<'a> {
    pub principal: &'a EntityUid,
    pub action: &'a EntityUid,
    pub resource: &'a EntityUid,
    pub context: Result<Context, String>,
}

impl Gate {
    pub fn new(
        schema: Schema,
        policies: PolicySet,
        entities: Entities,
        meta: HashMap<PolicyId, PolicyMeta>,
        hashes: BundleHashes,
    ) -> Self {
        Self {
            schema,
            policies,
            entities,
            meta,
            hashes,
            authorizer: Authorizer::new(),
        }
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
                Some(&self.schema),
            )
            .map_err(|e| e.to_string())
        });
        let request = match request {
            Ok(r) => r,
            Err(error) => {
                decision.errors.push(format!("invalid request: {error}"));
                decision.basis = Basis::Error;
                return decision;
            }
        };
        let response = if lifted.is_empty() {
            self.authorizer
                .is_authorized(&request, &self.policies, &self.entities)
        } else {
            let mut reduced = self.policies.clone();
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
