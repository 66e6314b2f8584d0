//! Intents: the transitions a driver proposes to a session.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One proposed transition. Results (`ModelResponded`, `ToolReturned`, `CallFailed`,
/// `MemoryLoaded`) answer an effect the session emitted and must name its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "intent", rename_all = "snake_case", deny_unknown_fields)]
pub enum Intent {
    /// Start the session with the user's request.
    Start {
        /// What the user asked for.
        request: String,
    },
    /// The agent wants to call a model.
    CallModel {
        /// The `Model` entity id.
        model: String,
        /// Estimated tokens (prompt and completion).
        estimated_tokens: u64,
        /// Estimated cost in micro-units, reserved before the call.
        estimated_cost: u64,
    },
    /// A model call finished.
    ModelResponded {
        /// The call id from the effect.
        call_id: String,
        /// Prompt tokens used.
        input_tokens: u64,
        /// Completion tokens used.
        output_tokens: u64,
        /// Actual cost, micro-units.
        cost: u64,
        /// The model's output.
        output: Value,
    },
    /// The agent wants to call a tool.
    CallTool {
        /// The registered tool's name.
        tool: String,
        /// The arguments (validated against the tool's JSON Schema).
        input: Value,
        /// Estimated cost in micro-units, reserved before the call.
        #[serde(default)]
        estimated_cost: u64,
    },
    /// A tool call finished.
    ToolReturned {
        /// The call id from the effect.
        call_id: String,
        /// The tool's output.
        output: Value,
        /// Actual cost, micro-units.
        #[serde(default)]
        cost: u64,
    },
    /// A model or tool call failed.
    CallFailed {
        /// The call id from the effect.
        call_id: String,
        /// What happened.
        error: String,
        /// Whether another attempt could succeed (timeouts, rate limits...).
        retryable: bool,
        /// Cost incurred by the failed attempt.
        #[serde(default)]
        cost: u64,
        /// Random delay (ms) the driver adds to a retry's backoff, so retries of many sessions do
        /// not synchronise. Randomness comes in as an input; the kernel records it.
        #[serde(default, skip_serializing_if = "is_zero")]
        jitter_ms: u64,
    },
    /// The agent wants to read memory.
    ReadMemory {
        /// The `MemoryScope` entity id.
        scope: String,
        /// The key.
        key: String,
    },
    /// A memory read finished.
    MemoryLoaded {
        /// The read id from the effect.
        read_id: String,
        /// The stored value, if any.
        value: Option<Value>,
        /// The labels stored with the entry.
        #[serde(default)]
        labels: Vec<String>,
    },
    /// The agent wants to write memory.
    WriteMemory {
        /// The `MemoryScope` entity id.
        scope: String,
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// A user approves a waiting request.
    Approve {
        /// The `User` entity id.
        user: String,
        /// The request id from `approval_requested`.
        request_id: String,
    },
    /// A user rejects a waiting request.
    Reject {
        /// The `User` entity id.
        user: String,
        /// The request id.
        request_id: String,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// A user or operator cancels the session.
    Cancel {
        /// The `User` entity id.
        user: String,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// After a restart: the call `call_id` was dispatched but no result was recorded, so it may
    /// or may not have run. Policy decides whether it runs again.
    InDoubt {
        /// The call id from the effect.
        call_id: String,
    },
    /// A user vouches for a value, which then counts as coming from the user (`endorse`).
    Endorse {
        /// The user.
        user: String,
        /// The value, as it will appear in an argument.
        value: String,
    },
    /// Time passed: ask `continue_session`.
    Tick,
    /// The agent produced its final answer.
    Complete {
        /// The answer.
        answer: String,
    },
    /// The driver hit an unrecoverable failure.
    Fail {
        /// What happened.
        error: String,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Intent {
    /// The intent's kind as it appears in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::CallModel { .. } => "call_model",
            Self::ModelResponded { .. } => "model_responded",
            Self::CallTool { .. } => "call_tool",
            Self::ToolReturned { .. } => "tool_returned",
            Self::CallFailed { .. } => "call_failed",
            Self::ReadMemory { .. } => "read_memory",
            Self::MemoryLoaded { .. } => "memory_loaded",
            Self::WriteMemory { .. } => "write_memory",
            Self::Approve { .. } => "approve",
            Self::Reject { .. } => "reject",
            Self::Cancel { .. } => "cancel",
            Self::Endorse { .. } => "endorse",
            Self::InDoubt { .. } => "in_doubt",
            Self::Tick => "tick",
            Self::Complete { .. } => "complete",
            Self::Fail { .. } => "fail",
        }
    }
}

/// One applied intent with its logical time and position: what a store keeps of a session, and
/// what replaying rebuilds it from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the session's steps, from 0.
    pub n: u64,
    /// The logical time it was applied at.
    pub t_ms: u64,
    /// The intent.
    pub intent: Intent,
}

/// How deep JSON from outside (tool arguments and outputs, model replies, memory writes) may be
/// nested. Every reader of a log (serde_json stops at 128 levels) must read back what was
/// recorded, and an event or a store row wraps the data in a few levels of its own: the bound
/// stays well below.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether `value` is nested deeper than [`MAX_JSON_DEPTH`]. Iterative: a value built in
/// process can be deeper than any stack.
pub(crate) fn too_deep(value: &Value) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        if depth > MAX_JSON_DEPTH {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}
