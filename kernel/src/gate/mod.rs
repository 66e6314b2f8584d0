//! The gate between the kernel and Cedar: loads the bundle, authorizes requests, and turns Cedar's
//! answer into a [`Decision`] the kernel can record and act on.

mod compiled;
mod constant;
mod decision;
mod demand;
mod index;
mod keyed;
mod limits;
mod load;
mod reach;
mod set;
mod value;

pub use decision::{Basis, Decision, DeterminingPolicy, Mode, Obligations, Verdict};
pub(crate) use demand::Demand;
pub use load::{FORBID_ONLY, PERMIT_ONLY};
pub(crate) use load::{PolicyMeta, load_policies, load_schema, validate_policies};
pub(crate) use reach::Listing;
pub(crate) use value::Val;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Effect, Entities, EntityUid, PolicyId, PolicySet, Request, Response,
    Schema,
};

use crate::bundle::BundleHashes;
use set::Candidate;

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
    /// The whole bundle.
    pub policies: Candidate,
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
    pub context: Result<RequestContext, String>,
    /// The full context, when `context` leaves attributes out and the request is traced: the
    /// trace must show the request a reader of the schema would expect.
    pub full: Option<RequestContext>,
    /// Check the request against the schema. Requests the kernel builds from session state are
    /// well-typed by construction (see [`crate::Deployment`]'s request contract check, made once at
    /// load time, and the fuzzer's oracle, which validates every request), so only requests built
    /// from outside input, and that load-time check, pay for Cedar's validation.
    pub validate: bool,
}

/// A request's context.
pub(crate) enum RequestContext {
    /// Built by the kernel from session state: a record, converted for Cedar only when Cedar is
    /// asked.
    Built(Val),
}

impl RequestContext {
    /// The top-level attribute `name`.
    fn top(&self, name: &str) -> Option<Cow<'_, Val>> {
        match self {
            Self::Built(record) => record.get(name).map(Cow::Borrowed),
        }
    }

    fn to_cedar(&self) -> Result<Context, String> {
        match self {
            Self::Built(Val::Record(pairs)) => {
                let pairs = pairs
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.to_rx()?)))
                    .collect::<Result<Vec<_>, String>>()?;
                Context::from_pairs(pairs).map_err(|e| e.to_string())
            }
            Self::Built(_) => Err("the context is not a record".into()),
        }
    }
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
        let policies = Candidate::from(policies);
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
    /// A candidate set whose policies the kernel compiled is decided by its own evaluator unless
    /// that evaluator meets something Cedar could err on; every other set is asked of Cedar, and
    /// the Cedar request is built only then.
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
        let mut decision = Decision::named(names, mode);
        decision.lifted = lifted.to_vec();
        let invalid = |mut decision: Decision, error: String| {
            decision.errors.push(format!("invalid request: {error}"));
            decision.basis = Basis::Error;
            decision
        };
        let context = match ask.context {
            Ok(context) => context,
            Err(error) => return invalid(decision, error),
        };
        let (p, a, r) = (ask.principal, ask.action, ask.resource);
        let build = || {
            let context = context.to_cedar()?;
            Request::new(
                p.clone(),
                a.clone(),
                r.clone(),
                context,
                ask.validate.then_some(&self.schema),
            )
            .map_err(|e| crate::error::full_message(&e))
        };
        let candidates = self
            .index
            .candidates(a, p, &self.entities, Some(&context))
            .unwrap_or_else(|| index::Candidates {
                sets: vec![&self.policies],
                always: &[],
            });
        let RequestContext::Built(record) = &context;
        let input = Some(compiled::Input {
            principal: p,
            action: a,
            resource: r,
            context: record,
            entities: &self.entities,
            vars: Default::default(),
        });
        let mut satisfied: Vec<&compiled::Compiled> = Vec::new();
        let mut asked = Vec::new();
        for set in candidates.sets {
            let fast = input
                .as_ref()
                .and_then(|input| evaluate(set, input, lifted));
            if let Some(fast) = fast {
                satisfied.extend(fast);
            } else {
                asked.push(set);
            }
        }
        // Cedar checks extension values as it builds them and the schema when asked to: such a
        // request is built for Cedar whatever decides it, so its errors deny.
        let checked = record.has_extension();
        let mut request = None;
        if checked || ask.validate || trace.is_some() || !asked.is_empty() {
            match build() {
                Ok(built) => request = Some(built),
                Err(error) => return invalid(decision, error),
            }
        }
        let responses: Vec<Response> = match &request {
            Some(request) => asked
                .iter()
                .map(|set| self.ask_cedar(request, &set.cedar, lifted))
                .collect(),
            None => Vec::new(),
        };
        let always = candidates.always.iter().filter(|(id, _)| {
            !lifted
                .iter()
                .any(|l| AsRef::<str>::as_ref(id) == l.as_str())
        });
        let compiled = satisfied.iter().map(|c| (&c.id, c.effect));
        let (allowed, mut ids) =
            combine(&responses, always.map(|(id, e)| (id, *e)).chain(compiled));
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
        let mut erred: Vec<String> = responses
            .iter()
            .flat_map(|r| r.diagnostics().errors())
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    e.policy_id().to_string()
                }
            })
            .collect();
        erred.sort_unstable();
        erred.dedup();
        decision.erred = erred;
        decision.settle(allowed);
        if let (Some(trace), Some(request)) = (trace, request) {
            let full = ask.full.and_then(|context| {
                let context = context.to_cedar().ok()?;
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

    /// Cedar's answer over `set` minus `lifted`.
    fn ask_cedar(&self, request: &Request, set: &PolicySet, lifted: &[String]) -> Response {
        if lifted.is_empty() {
            return self.authorizer.is_authorized(request, set, &self.entities);
        }
        let mut reduced = set.clone();
        for id in lifted {
            // A lifted id names a static policy of the bundle: approvals only lift ids the gate
            // itself reported, so a failed removal means it is in another candidate set.
            let _ = reduced.remove_static(PolicyId::new(id));
        }
        self.authorizer
            .is_authorized(request, &reduced, &self.entities)
    }
}

/// The policies of `set` (but `lifted`) that `input` satisfies, by the kernel's evaluator; `None`
/// when the set is not compiled or one of its policies needs Cedar.
fn evaluate<'s>(
    set: &'s Candidate,
    input: &compiled::Input<'_>,
    lifted: &[String],
) -> Option<Vec<&'s compiled::Compiled>> {
    let mut satisfied = Vec::new();
    for policy in set.compiled()? {
        if lifted
            .iter()
            .any(|l| l.as_str() == AsRef::<str>::as_ref(&policy.id))
        {
            continue;
        }
        if policy.satisfied(input)? {
            satisfied.push(policy);
        }
    }
    Some(satisfied)
}

/// Cedar's answer over the union of disjoint policy sets, from its answers over each and the
/// policies found satisfied without asking it: denied with every satisfied forbid if there is one,
/// else allowed with every satisfied permit if there is one, else denied with none. (A denied
/// answer's reasons are its satisfied forbids; an allowed answer's are its satisfied permits.)
fn combine<'a>(
    responses: &'a [Response],
    satisfied: impl Iterator<Item = (&'a PolicyId, Effect)> + Clone,
) -> (bool, Vec<&'a PolicyId>) {
    let deny = cedar_policy::Decision::Deny;
    let with = |effect: Effect| {
        satisfied
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
