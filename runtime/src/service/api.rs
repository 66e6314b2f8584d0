//! The request and response bodies of the HTTP API, with their OpenAPI schemas. Kernel values
//! (intents, events, decisions, effects) travel in their own JSON forms, the ones the event log
//! and the scenario format use, and are described here as objects.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Opens a session for the caller's tenant and user. Creating the same id again with the same
/// body answers the existing session (a retried request never opens two); with another body, 409.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Client-chosen id, unique in the tenant.
    pub id: String,
    /// `Agent` entity id.
    pub agent: String,
    /// `Budget` entity id.
    pub budget: String,
    /// The user's request.
    pub request: String,
    /// `enforce` (default) or `log_only`.
    #[serde(default)]
    pub mode: ApiMode,
}

/// Starts a hosted run: Arbiter calls the model and the tools of a registered agent itself. The
/// run id is its session's id; the same body again answers the existing run (200), another 409.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// Client-chosen run id (its session's id), unique in the tenant.
    pub id: String,
    /// A registered agent's name (`arbiter serve --agent NAME=FILE`).
    pub agent: String,
    /// The user's request.
    pub request: String,
    /// `enforce` (default) or `log_only`.
    #[serde(default)]
    pub mode: ApiMode,
}

/// Whether decisions are enforced or only recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiMode {
    /// Denials stop the step.
    #[default]
    Enforce,
    /// Denials are recorded; the step goes ahead.
    LogOnly,
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// The user it acts for.
    pub user: String,
    /// The agent.
    pub agent: String,
    /// The budget charged.
    pub budget: String,
    /// `created`, `running`, `waiting_tool`, `waiting_approval`, `completed`, ...
    pub status: String,
    /// Steps taken.
    pub steps: u64,
    /// Micro-units spent.
    pub cost_spent: u64,
    /// Labels the session carries (`untrusted`, `pii`, ...).
    pub labels: Vec<String>,
    /// The approval request waiting, if any.
    pub pending_approval: Option<String>,
    /// The `seq` of its last event (the SSE id to resume after).
    pub last_seq: Option<u64>,
    /// Hash of the policy bundle it runs under (kept for its whole life across reloads).
    pub bundle: String,
    /// Set when the store refused a write: the session takes no more steps here.
    pub broken: Option<String>,
}

/// One proposed step: a kernel intent in its JSON form, e.g.
/// `{"intent": "call_tool", "tool": "lookup_order", "input": {...}}` before acting, or
/// `{"intent": "tool_returned", "call_id": "call-2", "output": {...}}` after.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// The intent: `call_model`, `model_responded`, `call_tool`, `tool_returned`, `call_failed`,
    /// `read_memory`, `write_memory`, `tick`, or `complete`.
    #[schema(value_type = Object)]
    pub intent: Value,
    /// What to do when this is a new proposal and the session still waits for the answer to an
    /// earlier one: `reject` (default: 409 `busy`, nothing recorded) or `queue` (held until the
    /// session is ready, up to 30 s; parallel tool calls from one agent then take turns).
    #[serde(default)]
    pub when_busy: WhenBusy,
}

/// The answer to a proposal that finds its session busy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenBusy {
    /// Refuse it (409 `busy`); nothing is recorded.
    #[default]
    Reject,
    /// Hold it until the session is ready, then apply it.
    Queue,
}

/// What a step came to. Kernel values are serialized as they are, in their log form.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepResponse {
    /// `decided` (a policy decision was made), `applied` (a result or control with no decision of
    /// its own), or `rejected` (refused before any policy ran; see `error`).
    pub outcome: String,
    /// The step's main decision: effect, basis, determining policies, obligations.
    #[schema(value_type = Option<Object>)]
    pub decision: Option<kernel::Decision>,
    /// Why the kernel refused the intent (`rejected` only).
    #[schema(value_type = Option<Object>)]
    pub error: Option<kernel::StepError>,
    /// Events appended, in order (their `seq` continue the session's stream).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<kernel::event::Event>,
    /// What the caller must now do: `call_model` or `call_tool` (then report the result with its
    /// `call_id`), or `abort`. Memory reads and writes are done by the service.
    #[schema(value_type = Vec<Object>)]
    pub effects: Vec<kernel::Effect>,
    /// The session's status after the step.
    pub status: String,
}

/// A request waiting for a user's approval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    /// The session.
    pub session: String,
    /// The request id to approve or reject.
    pub request_id: String,
    /// The `approval_requested` event's payload: what is asked, by which policy, with what evidence.
    #[schema(value_type = Object)]
    pub request: Value,
}

/// A reason, optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (recorded).
    #[serde(default)]
    pub reason: String,
}

/// A value the caller's user vouches for.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The value, as it will appear in an argument.
    pub value: String,
}

/// The policy set now serving new sessions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    /// Its bundle hash.
    pub bundle: String,
    /// Whether it differs from the one before.
    pub changed: bool,
}

/// Every 4xx and 5xx body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `unauthorized`, `not_found`, `conflict`, `bad_json`, `invalid`,
    /// `too_large`, `unsupported_media_type`, `not_allowed`, `forbidden`, `unavailable`.
    pub code: String,
    /// For people: what is wrong, naming the field or line when known.
    pub message: String,
}
