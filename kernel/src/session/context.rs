//! Session state → the request context, built directly as values (no JSON round trip, and no
//! Cedar expressions unless Cedar is asked: see [`crate::gate::Val`]).

use std::sync::Arc;

use super::Session;
use crate::gate::{Demand, RequestContext, Val};
use crate::vocabulary::SESSION_ATTRIBUTES;

pub(crate) fn long(n: u64) -> Val {
    Val::long(n)
}

pub(crate) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Val {
    Val::strings(items)
}

fn attempt_value(attempt: u32) -> Val {
    if crate::faults::active(crate::faults::Fault::IllTypedContext) {
        return Val::String(attempt.to_string());
    }
    long(u64::from(attempt))
}

impl Session {
    /// `{ session, history, ..extra }` at logical time `now`, for a call on its `attempt`, with
    /// only the attributes `demand` names (all of them for `None`). `input` is always kept: building
    /// it can fail, and that failure must deny (see [`crate::gate::Demand`]).
    pub(crate) fn context(
        &mut self,
        now: u64,
        attempt: u32,
        extra: Vec<(&str, Val)>,
        demand: Option<&Demand>,
    ) -> Result<RequestContext, String> {
        let wants = |top: &str| demand.is_none_or(|d| d.wants(top));
        let wants_in = |top: &str, sub: &str| demand.is_none_or(|d| d.wants_in(top, sub));
        let mut pairs: Vec<(String, Val)> = Vec::with_capacity(2 + extra.len());
        if wants("session") {
            let mut wanted = demand.map_or(u32::MAX, Demand::session);
            if demand.is_some() && crate::faults::active(crate::faults::Fault::OverPrunedContext) {
                let labels = SESSION_ATTRIBUTES.iter().position(|a| *a == "labels");
                wanted &= !labels.map_or(0, |i| 1 << i);
            }
            let session = self.session_record(now, attempt, wanted)?;
            pairs.push(("session".to_owned(), session));
        }
        // Windowed counters expire on every read, wanted or not, so a counter no policy of this
        // action reads still forgets old entries.
        let deployment = std::sync::Arc::clone(&self.deployment);
        let counters = self.history.values(&deployment.counters, now);
        if wants("history") {
            let mut history: Vec<(String, Val)> = counters
                .filter(|(name, _)| wants_in("history", name))
                .map(|(name, v)| (name.to_owned(), Val::Long(v)))
                .collect();
            if wants_in("history", "tools_called") {
                history.push((
                    "tools_called".to_owned(),
                    strings(self.history.tools_called.iter().map(String::as_str)),
                ));
            }
            pairs.push(("history".to_owned(), Val::record(history)?));
        } else {
            counters.for_each(drop);
        }
        pairs.extend(
            extra
                .into_iter()
                .filter(|(k, _)| *k == "input" || wants(k))
                .map(|(k, v)| (k.to_owned(), v)),
        );
        Val::record(pairs).map(RequestContext::Built)
    }

    /// `context.session`, with the attributes `wanted` accepts.
    fn session_record(&self, now: u64, attempt: u32, wanted: u32) -> Result<Val, String> {
        let elapsed = self.started_at.map_or(0, |s| now.saturating_sub(s));
        let c = &self.counts;
        let value = |name: &str| match name {
            "id" => Val::String(self.config.id.clone()),
            "tenant" => Val::Entity(Arc::clone(&self.uids.tenant)),
            "user" => Val::Entity(Arc::clone(&self.uids.user)),
            "agent" => Val::Entity(Arc::clone(&self.uids.agent)),
            "steps" => long(c.steps),
            "elapsed_ms" => long(elapsed),
            "tokens" => long(c.tokens),
            "cost_spent" => long(c.cost_spent),
            "cost_reserved" => long(c.cost_reserved),
            "budget_limit" => Val::Long(self.budget_limit),
            "tool_calls" => long(c.tool_calls),
            "model_calls" => long(c.model_calls),
            "attempt" => attempt_value(attempt),
            "in_doubt" => Val::Bool(self.in_doubt),
            // "labels", the last of SESSION_ATTRIBUTES.
            _ => strings(self.labels.iter().map(String::as_str)),
        };
        let attrs = SORTED_SESSION_ATTRIBUTES
            .iter()
            .filter(|i| wanted & (1 << **i) != 0)
            .filter_map(|i| SESSION_ATTRIBUTES.get(*i))
            .map(|name| ((*name).to_owned(), value(name)));
        Val::record(attrs)
    }
}

/// Positions in [`SESSION_ATTRIBUTES`] in the order of the names, the order of a record's
/// attributes.
const SORTED_SESSION_ATTRIBUTES: [usize; 15] = [3, 12, 9, 8, 7, 5, 0, 13, 14, 11, 4, 1, 6, 10, 2];

/// `context` attributes of an `approve` request beyond session and history.
pub(crate) fn approve_extra(
    granted: bool,
    request_action: String,
    request_resource: String,
    policies: &[String],
    roles: &[String],
    self_approval: bool,
) -> Vec<(&'static str, Val)> {
    vec![
        ("approval_roles", strings(roles.iter().map(String::as_str))),
        ("granted", Val::Bool(granted)),
        ("self_approval", Val::Bool(self_approval)),
        ("request_action", Val::String(request_action)),
        ("request_resource", Val::String(request_resource)),
        ("policies", strings(policies.iter().map(String::as_str))),
    ]
}

/// `context` attributes of a `start_session` request beyond session and history.
pub(crate) fn start_extra(mode: crate::gate::Mode) -> Vec<(&'static str, Val)> {
    vec![("mode", Val::String(mode.as_str().to_owned()))]
}

/// `context` attributes of a `cancel` request beyond session and history.
pub(crate) fn cancel_extra(reason: &str) -> Vec<(&'static str, Val)> {
    vec![("reason", Val::String(reason.to_owned()))]
}

/// `context` attributes of an `endorse` request beyond session and history.
pub(crate) fn endorse_extra(value: &str) -> Vec<(&'static str, Val)> {
    vec![("value", Val::String(value.to_owned()))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_attributes_are_listed_in_name_order() {
        let names: Vec<&str> = SORTED_SESSION_ATTRIBUTES
            .iter()
            .map(|i| SESSION_ATTRIBUTES[*i])
            .collect();
        let mut sorted = SESSION_ATTRIBUTES.to_vec();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
