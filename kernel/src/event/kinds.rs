//! Event types: the envelope every event shares and one payload type per kind.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bundle::BundleHashes;
use crate::error::StepError;
use crate::gate::{Decision, Mode, Obligations};

/// One entry of a session's log.
///
/// `hash` is SHA-256 over the canonical JSON of every other field (see [`super::event_hash`]);
/// `prev` is the previous event's hash, [`super::GENESIS`] for `seq` 0. The kernel writes the
/// canonical form of these fields by hand (`chain::hash_of`): a new field goes there too, which the
/// test comparing it with the generic form enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the session's log, from 0, without gaps.
    pub seq: u64,
    /// The session id.
    pub session: String,
    /// The session's tenant.
    pub tenant: String,
    /// Logical time in milliseconds, as given to the step that appended the event.
    pub t_ms: u64,
    /// The kind and its payload.
    #[serde(flatten)]
    pub body: EventBody,
    /// The authorization that produced this event, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Hash of the previous event.
    pub prev: String,
    /// Hash of this event.
    pub hash: String,
}

/// What happened, one variant per kind (`kind` in JSON, the fields under `payload`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum EventBody {
    /// The session began; records who, in which mode, against which bundle.
    SessionStarted {
        /// The agent acting.
        agent: String,
        /// The user on whose behalf it acts.
        user: String,
        /// The budget entity charged.
        budget: String,
        /// Enforcement mode, chosen explicitly.
        mode: Mode,
        /// The user's request.
        request: String,
        /// The policy set, schema and entities every decision of the session is made under.
        bundle: BundleHashes,
    },
    /// A request was decided without producing any other event (usually a denial).
    Decision {
        /// What was asked, e.g. the tool and arguments.
        request: Value,
    },
    /// The kernel refused an intent before any authorization.
    Rejected {
        /// The intent's kind.
        intent: String,
        /// Why.
        error: StepError,
    },
    /// A model call was authorized and handed to the driver.
    ModelCalled {
        /// Correlates the response.
        call_id: String,
        /// The model entity id.
        model: String,
        /// 1 for a first try.
        attempt: u32,
        /// Estimated tokens.
        estimated_tokens: u64,
        /// Obligations for the driver.
        obligations: Obligations,
    },
    /// The model answered.
    ModelResponded {
        /// The call.
        call_id: String,
        /// Prompt tokens.
        input_tokens: u64,
        /// Completion tokens.
        output_tokens: u64,
        /// Actual cost, micro-units.
        cost: u64,
        /// The model's output (text, tool-call requests...).
        output: Value,
    },
    /// A tool call was authorized and handed to the driver.
    ToolCalled {
        /// Correlates the result.
        call_id: String,
        /// The tool.
        tool: String,
        /// 1 for a first try.
        attempt: u32,
        /// The validated arguments.
        input: Value,
        /// Obligations for the driver.
        obligations: Obligations,
        /// Per argument, where its value was found (`request`, `call-N`, `read-N`,
        /// `endorsement`); empty when found nowhere. What a reviewer asks when a value counted
        /// as the user's, trusted or untrusted.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        evidence: std::collections::BTreeMap<String, Vec<String>>,
    },
    /// A tool returned.
    ToolReturned {
        /// The call.
        call_id: String,
        /// The tool.
        tool: String,
        /// Its output.
        output: Value,
        /// Labels this result added to the session.
        labels_added: Vec<String>,
    },
    /// A model or tool call failed.
    CallFailed {
        /// The call.
        call_id: String,
        /// The tool name, or the model id.
        target: String,
        /// Which attempt failed.
        attempt: u32,
        /// The driver's description.
        error: String,
        /// Whether the driver judged it worth retrying.
        retryable: bool,
        /// Whether another attempt follows.
        will_retry: bool,
    },
    /// After a restart, a dispatched call had no recorded result: it may or may not have run.
    CallInDoubt {
        /// The call.
        call_id: String,
        /// The tool name, or the model id.
        target: String,
        /// The attempt whose outcome is unknown.
        attempt: u32,
    },
    /// A retry was authorized.
    RetryScheduled {
        /// The call.
        call_id: String,
        /// The tool name, or the model id.
        target: String,
        /// The attempt about to run.
        attempt: u32,
        /// Earliest logical time the driver may start it.
        not_before_ms: u64,
    },
    /// A memory read was authorized.
    MemoryRead {
        /// Correlates the loaded value.
        read_id: String,
        /// The scope.
        scope: String,
        /// The key.
        key: String,
    },
    /// A memory read completed.
    MemoryLoaded {
        /// The read.
        read_id: String,
        /// Whether the key held a value.
        found: bool,
        /// The value read.
        value: Option<Value>,
        /// Labels this read added to the session.
        labels_added: Vec<String>,
    },
    /// A memory write was authorized; the entry carries the session's labels.
    MemoryWritten {
        /// The scope.
        scope: String,
        /// The key.
        key: String,
        /// The value.
        value: Value,
        /// Labels stored with the entry.
        labels: Vec<String>,
    },
    /// Budget was reserved for a call.
    BudgetReserved {
        /// The call it is for.
        call_id: String,
        /// Micro-units reserved.
        amount: u64,
    },
    /// A reservation was settled with the actual cost.
    BudgetSettled {
        /// The call.
        call_id: String,
        /// What had been reserved.
        reserved: u64,
        /// What was actually spent.
        actual: u64,
        /// True when the actual cost passed the authorized reservation.
        violation: bool,
    },
    /// A request waits for a user's approval.
    ApprovalRequested {
        /// Names the request in approve/reject intents.
        request_id: String,
        /// The action asked.
        action: String,
        /// The resource asked.
        resource: String,
        /// The request's details (the tool's arguments...).
        request: Value,
        /// The `@approval` policies an approval would lift.
        policies: Vec<String>,
        /// When the request expires unanswered, if ever.
        expires_at_ms: Option<u64>,
    },
    /// A user approved.
    ApprovalGranted {
        /// The request.
        request_id: String,
        /// Who approved.
        user: String,
        /// The policies lifted for this one request.
        lifted: Vec<String>,
    },
    /// A user rejected.
    ApprovalRejected {
        /// The request.
        request_id: String,
        /// Who rejected.
        user: String,
        /// Why.
        reason: String,
    },
    /// Nobody answered in time; the request is denied.
    ApprovalExpired {
        /// The request.
        request_id: String,
    },
    /// A user vouched for a value; it now counts as coming from the user.
    ValueEndorsed {
        /// Who.
        user: String,
        /// The value.
        value: String,
    },
    /// Time passed and the session was allowed to continue.
    ClockTicked {
        /// Logical milliseconds since the session started.
        elapsed_ms: u64,
    },
    /// A `@limit` policy decided: the runtime stops the session.
    LimitReached {
        /// The limit's name (the annotation's value).
        limit: String,
        /// The deciding policies.
        policies: Vec<String>,
    },
    /// A user or operator cancelled the session.
    Cancelled {
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// The agent finished.
    Completed {
        /// The final answer.
        answer: String,
    },
    /// The session failed.
    Failed {
        /// Why.
        error: String,
    },
}

impl EventBody {
    /// True for the four kinds that end a session (completed, failed, cancelled, limit reached):
    /// nothing is appended after one.
    pub fn ends_session(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. }
                | Self::Failed { .. }
                | Self::Cancelled { .. }
                | Self::LimitReached { .. }
        )
    }

    /// The kind's name as it appears in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionStarted { .. } => "session_started",
            Self::Decision { .. } => "decision",
            Self::Rejected { .. } => "rejected",
            Self::ModelCalled { .. } => "model_called",
            Self::ModelResponded { .. } => "model_responded",
            Self::ToolCalled { .. } => "tool_called",
            Self::ToolReturned { .. } => "tool_returned",
            Self::CallFailed { .. } => "call_failed",
            Self::RetryScheduled { .. } => "retry_scheduled",
            Self::CallInDoubt { .. } => "call_in_doubt",
            Self::MemoryRead { .. } => "memory_read",
            Self::MemoryLoaded { .. } => "memory_loaded",
            Self::MemoryWritten { .. } => "memory_written",
            Self::BudgetReserved { .. } => "budget_reserved",
            Self::BudgetSettled { .. } => "budget_settled",
            Self::ApprovalRequested { .. } => "approval_requested",
            Self::ApprovalGranted { .. } => "approval_granted",
            Self::ApprovalRejected { .. } => "approval_rejected",
            Self::ApprovalExpired { .. } => "approval_expired",
            Self::ValueEndorsed { .. } => "value_endorsed",
            Self::ClockTicked { .. } => "clock_ticked",
            Self::LimitReached { .. } => "limit_reached",
            Self::Cancelled { .. } => "cancelled",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
        }
    }
}
