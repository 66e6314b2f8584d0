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
    /// The estimate for the next call, or `None` when the agent has nothing more to ask.
    fn next_estimate(&self) -> Option<Estimate>;
    /// The next call was denied and never made: a scripted model drops that turn.
    fn skip(&self);
    /// Makes one call.
    fn call(&self, call: ModelCall) -> ModelFuture<'_>;
}
