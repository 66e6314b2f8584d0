//! The gate between the kernel and Cedar: loads the bundle, authorizes requests, and turns Cedar's
//! answer into a [`Decision`] the kernel can record and act on.

mod decision;
mod demand;
mod index;
mod keyed;
mod load;

pub use decision::{Basis, Decision, DeterminingPolicy, Mode, Obligations, Verdict};
pub(crate) use demand::Demand;
pub(crate) use load::{PolicyMeta, load_policies, load_schema, validate_policies};

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Effect, Entities, EntityUid, PolicyId, PolicySet, Request, Response,
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
    /// Shared by every decision, which records them.
    pub hashes: Arc<BundleHashes>,
    authorizer: Authorizer,
    /// Which policies can apply to a request.
    index: index::PolicyIndex,
    /// Every entity and action uid as written (`Type::"id"`), which decisions record: formatting a
    /// uid, escaping included, cost more than looking it up.
    names: HashMap<EntityUid, String>,
}

/// One request, built by the session from its state.
pub(crate) struct Ask<'a> {
    pub principal: &'a EntityUid,
    pub action: &'a EntityUid,
    pub resource: &'a EntityUid,
    pub context: Result<Context, String>,
    /// The full context, when `context` leaves attributes out and the request is traced: the
    /// trace must show the request a reader of the schema would expect.
    pub full: Option<Context>,
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
        let index = index::PolicyIndex::new(&schema, &policies);
        let actions = schema.actions().cloned();
        let names = entities
            .iter()
            .map(|e| e.uid())
            .chain(actions)
            .map(|uid| {
                let name = uid.to_string();
                (uid, name)
            })
            .collect();
        Self {
            schema,
            policies,
            entities,
            meta,
            hashes: Arc::new(hashes),
            authorizer: Authorizer::new(),
            index,
            names,
        }
    }

    /// `uid` as written in decisions.
    fn name(&self, uid: &EntityUid) -> String {
        self.names
            .get(uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// The context attributes the policies of `action` read; `None` for all (see [`Demand`]).
    pub fn demand(&self, action: &EntityUid) -> Option<&Demand> {
        self.index.demand(action)
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
        let names = [ask.principal, ask.action, ask.resource].map(|uid| self.name(uid));
        let mut decision = Decision::named(names, mode, &self.hashes);
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
        let candidates = self
            .index
            .candidates(ask.action, ask.principal, &self.entities, request.context())
            .unwrap_or_else(|| index::Candidates {
                sets: vec![&self.policies],
                always: &[],
            });
        let (sets, always) = (candidates.sets, candidates.always);
        let responses: Vec<Response> = sets
            .iter()
            .map(|set| {
                if lifted.is_empty() {
                    return self.authorizer.is_authorized(&request, set, &self.entities);
                }
                let mut reduced = (*set).clone();
                for id in lifted {
                    // A lifted id names a static policy of the bundle: approvals only lift ids the
                    // gate itself reported, so a failed removal means it is in another candidate set.
                    let _ = reduced.remove_static(PolicyId::new(id));
                }
                self.authorizer
                    .is_authorized(&request, &reduced, &self.entities)
            })
            .collect();
        let always = always.iter().filter(|(id, _)| {
            !lifted
                .iter()
                .any(|l| AsRef::<str>::as_ref(id) == l.as_str())
        });
        let (allowed, mut ids) = combine(&responses, always);
        ids.sort_unstable_by(|a, b| AsRef::<str>::as_ref(*a).cmp(AsRef::<str>::as_ref(*b)));
        decision.policies = ids
            .into_iter()
            .filter_map(|id| self.meta.get(id))
            .map(|m| Arc::clone(&m.determining))
            .collect();
        let mut errors: Vec<String> = responses
            .iter()
            .flat_map(|r| r.diagnostics().errors())
            .map(|e| e.to_string())
            .collect();
        errors.sort_unstable();
        decision.errors = errors;
        decision.settle(allowed);
        if let Some(trace) = trace {
            let full = ask.full.and_then(|context| {
                let (p, a, r) = (ask.principal, ask.action, ask.resource);
                Request::new(p.clone(), a.clone(), r.clone(), context, None).ok()
            });
            trace.push(Traced {
                request: full.unwrap_or(request),
                lifted: lifted.to_vec(),
                decision: decision.clone(),
            });
        }
        decision
    }
}

/// Cedar's answer over the union of disjoint policy sets, from its answers over each and the
/// policies satisfied without asking: denied with every satisfied forbid if there is one, else
/// allowed with every satisfied permit if there is one, else denied with none. (A denied answer's
/// reasons are its satisfied forbids; an allowed answer's are its satisfied permits.)
fn combine<'a>(
    responses: &'a [Response],
    always: impl Iterator<Item = &'a (PolicyId, Effect)> + Clone,
) -> (bool, Vec<&'a PolicyId>) {
    let deny = cedar_policy::Decision::Deny;
    let with = |effect: Effect| {
        always
            .clone()
            .filter(move |(_, e)| *e == effect)
            .map(|(id, _)| id)
    };
    let forbids: Vec<&PolicyId> = responses
        .iter()
        .filter(|r| r.decision() == deny)
        .flat_map(|r| r.diagnostics().reason())
        .chain(with(Effect::Forbid))
        .collect();
    if !forbids.is_empty() {
        return (false, forbids);
    }
    let permits: Vec<&PolicyId> = responses
        .iter()
        .filter(|r| r.decision() != deny)
        .flat_map(|r| r.diagnostics().reason())
        .chain(with(Effect::Permit))
        .collect();
    (!permits.is_empty(), permits)
}
