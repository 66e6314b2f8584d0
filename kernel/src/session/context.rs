//! Session state → Cedar context, built directly from values (no JSON round trip).

use cedar_policy::{Context, RestrictedExpression as Rx};

use super::Session;

pub(crate) fn long(n: u64) -> Rx {
    Rx::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(crate) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Rx {
    Rx::new_set(items.into_iter().map(|s| Rx::new_string(s.to_owned())))
}

fn attempt_value(attempt: u32) -> Rx {
    if crate::faults::active(crate::faults::Fault::IllTypedContext) {
        return Rx::new_string(attempt.to_string());
    }
    long(u64::from(attempt))
}

impl Session {
    /// `{ session, history, ..extra }` at logical time `now`, for a call on its `attempt`.
    pub(crate) fn context(
        &mut self,
        now: u64,
        attempt: u32,
        extra: Vec<(&str, Rx)>,
    ) -> Result<Context, String> {
        let elapsed = self.started_at.map_or(0, |s| now.saturating_sub(s));
        let c = &self.counts;
        let session = Rx::new_record([
            ("id".to_owned(), Rx::new_string(self.config.id.clone())),
            (
                "tenant".to_owned(),
                Rx::new_entity_uid(self.uids.tenant.clone()),
            ),
            (
                "user".to_owned(),
                Rx::new_entity_uid(self.uids.user.clone()),
            ),
            (
                "agent".to_owned(),
                Rx::new_entity_uid(self.uids.agent.clone()),
            ),
            ("steps".to_owned(), long(c.steps)),
            ("elapsed_ms".to_owned(), long(elapsed)),
            ("tokens".to_owned(), long(c.tokens)),
            ("cost_spent".to_owned(), long(c.cost_spent)),
            ("cost_reserved".to_owned(), long(c.cost_reserved)),
            ("budget_limit".to_owned(), Rx::new_long(self.budget_limit)),
            ("tool_calls".to_owned(), long(c.tool_calls)),
            ("model_calls".to_owned(), long(c.model_calls)),
            ("attempt".to_owned(), attempt_value(attempt)),
            ("in_doubt".to_owned(), Rx::new_bool(self.in_doubt)),
            (
                "labels".to_owned(),
                strings(self.labels.iter().map(String::as_str)),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let deployment = std::sync::Arc::clone(&self.deployment);
        let mut history: Vec<(String, Rx)> = self
            .history
            .values(&deployment.counters, now)
            .map(|(name, v)| (name.to_owned(), Rx::new_long(v)))
            .collect();
        history.push((
            "tools_called".to_owned(),
            strings(self.history.tools_called.iter().map(String::as_str)),
        ));
        let history = Rx::new_record(history).map_err(|e| e.to_string())?;
        let pairs = [
            ("session".to_owned(), session),
            ("history".to_owned(), history),
        ]
        .into_iter()
        .chain(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Context::from_pairs(pairs).map_err(|e| e.to_string())
    }
}

/// `context` attributes of an `approve` request beyond session and history.
pub(crate) fn approve_extra(
    granted: bool,
    request_action: String,
    request_resource: String,
    policies: &[String],
) -> Vec<(&'static str, Rx)> {
    vec![
        ("granted", Rx::new_bool(granted)),
        ("request_action", Rx::new_string(request_action)),
        ("request_resource", Rx::new_string(request_resource)),
        ("policies", strings(policies.iter().map(String::as_str))),
    ]
}

/// `context` attributes of a `cancel` request beyond session and history.
pub(crate) fn cancel_extra(reason: &str) -> Vec<(&'static str, Rx)> {
    vec![("reason", Rx::new_string(reason.to_owned()))]
}

/// `context` attributes of an `endorse` request beyond session and history.
pub(crate) fn endorse_extra(value: &str) -> Vec<(&'static str, Rx)> {
    vec![("value", Rx::new_string(value.to_owned()))]
}
