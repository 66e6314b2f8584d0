//! The decision record: what was asked, what Cedar answered, why, and under which mode (the bundle is named once per session, in `session_started`).

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::EntityUid;
use serde::{Deserialize, Serialize};

/// Whether decisions are enforced or only recorded. Chosen explicitly when a session starts.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A denial stops the effect.
    Enforce,
    /// Decisions are recorded, effects proceed anyway (for trying a policy set on live traffic).
    LogOnly,
}

impl Mode {
    /// As written in files and events: `enforce` or `log_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::LogOnly => "log_only",
        }
    }
}

/// Allow or deny.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// Why the verdict is what it is.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// At least one permit matched and no forbid did.
    Permitted,
    /// A forbid matched.
    Forbidden,
    /// Nothing matched: denied by default.
    NotPermitted,
    /// The request was invalid or a policy failed to evaluate: denied (fail closed).
    Error,
}

/// A policy that determined a decision, with its annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeterminingPolicy {
    /// The policy's `@id`.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// Every annotation except `id`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Duties the driver must honour for an allowed call, from the determining permits' annotations.
/// Where several permits set one, the strictest (smallest) wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligations {
    /// Cancel the call after this many milliseconds (`@timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry a retryable failure at most this many times (`@max_retries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// One authorization, as recorded in the event that it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The principal, as a Cedar entity uid.
    pub principal: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// Allow or deny.
    pub effect: Verdict,
    /// Forbidden, merely not permitted, permitted, or an error.
    pub basis: Basis,
    /// The determining policies (shared with the bundle: decisions are cloned into events).
    pub policies: Vec<Arc<DeterminingPolicy>>,
    /// The policies whose evaluation failed, by `@id`, sorted: on an error denial, these decided
    /// it (`policies` still lists the ones satisfied, as Cedar reports them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erred: Vec<String>,
    /// Evaluation or request errors; any error denies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Policies an approval lifted for this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifted: Vec<String>,
    /// The enforcement mode in force.
    pub mode: Mode,
}

impl Decision {
    /// The policies that decided it, by `@id`: those that erred for an error denial, else the
    /// determining ones.
    pub fn deciders(&self) -> Vec<&str> {
        if self.erred.is_empty() {
            self.policies.iter().map(|p| p.id.as_str()).collect()
        } else {
            self.erred.iter().map(String::as_str).collect()
        }
    }

    pub(crate) fn new(
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
        mode: Mode,
    ) -> Self {
        let names = [principal, action, resource].map(ToString::to_string);
        Self::named(names, mode)
    }

    /// A denial pending Cedar's answer, for a request whose principal, action and resource are
    /// given as written (`Type::"id"`).
    pub(crate) fn named([principal, action, resource]: [String; 3], mode: Mode) -> Self {
        Self {
            principal,
            action,
            resource,
            effect: Verdict::Deny,
            basis: Basis::NotPermitted,
            policies: Vec::new(),
            erred: Vec::new(),
            errors: Vec::new(),
            lifted: Vec::new(),
            mode,
        }
    }

    /// Fixes effect and basis from Cedar's answer; errors override an Allow.
    pub(crate) fn settle(&mut self, cedar_allowed: bool) {
        let forbidden = self.policies.iter().any(|p| p.effect == "forbid");
        // The `FailOpen` fault simulates trusting Cedar's verdict despite errors.
        let errors_deny =
            !self.errors.is_empty() && !crate::faults::active(crate::faults::Fault::FailOpen);
        (self.effect, self.basis) = if errors_deny {
            (Verdict::Deny, Basis::Error)
        } else if cedar_allowed {
            (Verdict::Allow, Basis::Permitted)
        } else if forbidden {
            (Verdict::Deny, Basis::Forbidden)
        } else {
            (Verdict::Deny, Basis::NotPermitted)
        };
    }

    /// True when allowed.
    pub fn allowed(&self) -> bool {
        self.effect == Verdict::Allow
    }

    /// True when the effect proceeds: allowed, or denied in `log_only` mode.
    pub fn proceeds(&self) -> bool {
        self.allowed() || self.mode == Mode::LogOnly
    }

    /// The `@limit` this denial hit, if a limit policy decided it.
    pub fn limit(&self) -> Option<&str> {
        if self.basis != Basis::Forbidden {
            return None;
        }
        self.policies
            .iter()
            .find_map(|p| p.annotations.get("limit").map(String::as_str))
    }

    /// The forbids an approval could lift: `Some` when every deciding policy is an `@approval`
    /// forbid and the denial is not an error.
    pub fn approval_policies(&self) -> Option<Vec<String>> {
        let all = self.basis == Basis::Forbidden
            && self
                .policies
                .iter()
                .all(|p| p.annotations.contains_key("approval"));
        all.then(|| self.policies.iter().map(|p| p.id.clone()).collect())
    }

    /// The smallest `name` annotation among the deciding policies, as a number.
    pub(crate) fn min_annotation(&self, name: &str) -> Option<u64> {
        self.policies
            .iter()
            .filter_map(|p| p.annotations.get(name)?.parse::<u64>().ok())
            .min()
    }

    /// Obligations from the determining permits.
    pub fn obligations(&self) -> Obligations {
        if !self.allowed() {
            return Obligations::default();
        }
        Obligations {
            timeout_ms: self.min_annotation("timeout_ms"),
            max_retries: self
                .min_annotation("max_retries")
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}
