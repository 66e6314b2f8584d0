//! Names every layer shares: the attributes of `context.session`. A leaf, so that the gate can
//! reason about which of them a policy reads without knowing the session that fills them in.

/// The attributes of `context.session`, in the order of the bits that select them (see
/// `gate::demand::Demand::session`).
pub(crate) const SESSION_ATTRIBUTES: [&str; 15] = [
    "id",
    "tenant",
    "user",
    "agent",
    "steps",
    "elapsed_ms",
    "tokens",
    "cost_spent",
    "cost_reserved",
    "budget_limit",
    "tool_calls",
    "model_calls",
    "attempt",
    "in_doubt",
    "labels",
];
