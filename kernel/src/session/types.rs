//! The session's public vocabulary: configuration, status, effects and transitions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StepError;
use crate::event::Event;
use crate::gate::{Decision, Mode, Obligations};

/// Who runs a session, for whom, against which budget, in which mode. There is no default:
/// the enforcement mode in particular must be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Session id (unique per tenant).
    pub id: String,
    /// `Tenant` entity id.
    pub tenant: String,
    /// `User` entity id of the user the agent acts for.
    pub user: String,
    /// `Agent` entity id.
    pub agent: String,
    /// `Budget` entity id charged for model and tool calls.
    pub budget: String,
    /// Enforce decisions, or only record them.
    pub mode: Mode,
}

/// Where a session is in its lifecycle.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Built, not started.
    Created,
    /// Ready for the agent's next proposal.
    Running,
    /// A model call is in flight.
    WaitingModel,
    /// A tool call is in flight.
    WaitingTool,
    /// A memory read is in flight.
    WaitingMemory,
    /// A request waits for a user's approval.
    WaitingApproval,
    /// Finished with an answer.
    Completed,
    /// Failed.
    Failed,
    /// Cancelled by a user or operator.
    Cancelled,
    /// Stopped by a `@limit` policy or a denied `continue_session`.
    LimitReached,
}

impl Status {
    /// True for the four end states.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::LimitReached
        )
    }

    /// The status's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::WaitingModel => "waiting_model",
            Self::WaitingTool => "waiting_tool",
            Self::WaitingMemory => "waiting_memory",
            Self::WaitingApproval => "waiting_approval",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::LimitReached => "limit_reached",
        }
    }
}

/// Work the driver must do. Only ever emitted for a request the gate allowed (or, in `log_only`
/// mode, recorded a denial for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Call a model; answer with `ModelResponded` or `CallFailed`.
    CallModel {
        /// Echo this in the answer.
        call_id: String,
        /// The model.
        model: String,
        /// 1 for a first try.
        attempt: u32,
        /// Do not start before this logical time (retry backoff).
        not_before_ms: u64,
        /// Timeout, retries...
        obligations: Obligations,
    },
    /// Call a tool; answer with `ToolReturned` or `CallFailed`.
    CallTool {
        /// Echo this in the answer.
        call_id: String,
        /// The tool.
        tool: String,
        /// The validated arguments.
        input: Value,
        /// 1 for a first try.
        attempt: u32,
        /// Do not start before this logical time (retry backoff).
        not_before_ms: u64,
        /// Timeout, retries...
        obligations: Obligations,
    },
    /// Read memory; answer with `MemoryLoaded`.
    ReadMemory {
        /// Echo this in the answer.
        read_id: String,
        /// The scope.
        scope: String,
        /// The key.
        key: String,
    },
    /// Store a memory entry with its labels. Needs no answer.
    WriteMemory {
        /// The scope.
        scope: String,
        /// The key.
        key: String,
        /// The value.
        value: Value,
        /// Labels to store with it; whoever reads it later picks them up.
        labels: Vec<String>,
    },
    /// Stop an in-flight call or read and discard its result.
    Abort {
        /// The call or read id.
        call_id: String,
    },
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The main authorization of this step, if it made one.
    pub decision: Option<Decision>,
    /// Events appended, in order.
    pub events: Vec<Event>,
    /// Effects for the driver, in order.
    pub effects: Vec<Effect>,
    /// The Cedar requests behind this step's decisions, when tracing is on.
    pub traced: Vec<crate::gate::Traced>,
}

/// An intent the kernel refused before authorization: the error, and the event that records it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    /// Why.
    pub error: StepError,
    /// The `rejected` event appended to the log.
    pub event: Box<Event>,
}
