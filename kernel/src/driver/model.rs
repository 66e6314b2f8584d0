//! The model interface: an agent's next turn, requested through the driver.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use thiserror::Error;

use crate::intent::Intent;

/// What the agent estimates its next model call will cost (reserved before the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Tokens, prompt and completion.
    pub tokens: u64,
    /// Micro-units.
    pub cost: u64,
}

/// One message of the conversation a model sees.
///
/// The runtime keeps the transcript, not the model: a model adapter is shared by many sessions,
/// and the transcript must only ever hold what the kernel let through (a denied call is answered
/// with its denial, never run).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The user's request.
    User {
        /// The text.
        content: String,
    },
    /// A model turn: text, tool calls, or both.
    Assistant {
        /// The text, if any.
        content: Option<String>,
        /// The tool calls it asked for.
        calls: Vec<ToolRequest>,
    },
    /// What became of one requested tool call.
    Tool {
        /// The [`ToolRequest::call_ref`] it answers.
        call_ref: String,
        /// The tool's output as JSON text, or why there is none (denied, failed, rejected).
        content: String,
    },
}

/// A tool call a model asked for, as it appears in the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    /// Pairs the request with its [`Message::Tool`] answer; assigned by the runtime.
    pub call_ref: String,
    /// The tool.
    pub name: String,
    /// The arguments as the model gave them.
    pub arguments: Value,
}

/// One model call as the driver hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    /// The kernel's call id.
    pub call_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The `Model` entity id.
    pub model: String,
    /// The session's tenant.
    pub tenant: String,
    /// The conversation so far, starting with the user's request.
    pub transcript: Vec<Message>,
}

/// A model's answer: usage, the raw output, and what the agent does next.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost, micro-units.
    pub cost: u64,
    /// The output as recorded in `model_responded`.
    pub output: Value,
    /// The calls the model asks for (`CallTool`, `ReadMemory`, `WriteMemory` intents), run in order.
    pub calls: Vec<Intent>,
    /// The final answer, given once the calls are done.
    pub answer: Option<String>,
}

/// A failed model call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ModelError {
    /// What happened.
    pub message: String,
    /// Whether another attempt could succeed (rate limits, timeouts).
    pub retryable: bool,
    /// What the failed attempt cost.
    pub cost: u64,
}

/// The future a model returns; dropping it cancels the request.
pub type ModelFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ModelReply, ModelError>> + Send + 'a>>;

/// A model the agent talks to.
pub trait Model: Send + Sync {
    /// The estimate for the next call given the conversation so far (reserved from the budget
    /// before the call is made), or `None` when the agent has nothing more to ask.
    fn next_estimate(&self, transcript: &[Message]) -> Option<Estimate>;
    /// The next call was denied and never made: a scripted model drops that turn.
    fn skip(&self);
    /// Makes one call.
    fn call(&self, call: ModelCall) -> ModelFuture<'_>;

    /// What the agent does next after the reply recorded as `output` (a `model_responded` event):
    /// how a resumed session rebuilds its pending calls without asking the model again. `None`
    /// when this model cannot tell, and then its sessions cannot be resumed.
    fn reply_from_output(&self, output: &Value) -> Option<(Vec<Intent>, Option<String>)> {
        let _ = output;
        None
    }

    /// Whether the agent goes on after a model call failed for good (no retry left or allowed).
    /// A live model cannot: the runtime fails the session with the error. A scripted model moves
    /// to its next scripted turn, as the replay does.
    fn continues_after_failure(&self) -> bool {
        false
    }
}
