//! The model interface: an agent's next turn, requested through the driver; and its
//! OpenAI-compatible adapter.

pub mod openai;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use thiserror::Error;

use kernel::Intent;
pub use kernel::agent::{Estimate, Message, ToolRequest};

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
    fn plan_from_output(&self, output: &Value) -> Option<(Vec<Intent>, Option<String>)> {
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
