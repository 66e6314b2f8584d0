//! The controlled interface every tool is called through, with its subprocess and HTTP adapters
//! and the per-tenant credentials handed to them.

mod credentials;
mod http;
mod subprocess;

pub use credentials::Credentials;
pub use http::HttpTool;
pub(crate) use http::http_client;
pub use subprocess::SubprocessTool;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use thiserror::Error;

/// One call as the driver hands it to a tool: already authorized, arguments already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The kernel's call id (stable across retries), unique within its session only: the
    /// idempotency key is [`ToolCall::idempotency_key`].
    pub call_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The session's tenant.
    pub tenant: String,
    /// The session's id.
    pub session: String,
    /// The validated arguments.
    pub input: Value,
    /// The credentials the tenant's configuration grants this tool (environment name → secret).
    pub credentials: BTreeMap<String, String>,
}

impl ToolCall {
    /// `tenant/session/call_id`: stable across retries and restarts of the call, and distinct
    /// between sessions (call ids repeat from one session to the next, so a tool deduplicating by
    /// the call id alone would take one session's refund for another's).
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.session, self.call_id)
    }
}

/// What a tool produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The result.
    pub value: Value,
    /// What the call cost, in micro-units (0 when unknown).
    pub cost: u64,
}

impl From<Value> for ToolOutput {
    fn from(value: Value) -> Self {
        Self { value, cost: 0 }
    }
}

/// Why a tool call did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ToolError {
    /// The tool reported a failure.
    #[error("{message}")]
    Failed {
        /// What it said.
        message: String,
        /// Whether another attempt could succeed.
        retryable: bool,
        /// What the failed attempt cost, in micro-units.
        cost: u64,
    },
    /// The tool answered something that is not the JSON it promised.
    #[error("malformed output: {0}")]
    Malformed(String),
    /// The tool could not be started at all.
    #[error("cannot start the tool: {0}")]
    Unavailable(String),
}

impl ToolError {
    /// Whether the driver may retry (within the `@max_retries` obligation).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Failed {
                retryable: true,
                ..
            }
        )
    }
}

/// A call's outcome as the intent that hands it to the kernel.
pub fn result_intent(call_id: String, result: Result<ToolOutput, ToolError>) -> kernel::Intent {
    match result {
        Ok(out) => kernel::Intent::ToolReturned {
            call_id,
            output: out.value,
            cost: out.cost,
        },
        Err(e) => {
            let cost = match &e {
                ToolError::Failed { cost, .. } => *cost,
                _ => 0,
            };
            kernel::Intent::CallFailed {
                call_id,
                retryable: e.retryable(),
                error: e.to_string(),
                cost,
                jitter_ms: 0,
            }
        }
    }
}

/// The future a tool returns. Dropping it cancels the call: an adapter must stop the work it
/// started (kill processes, abort requests) when dropped, which is how timeouts and user
/// cancellation reach it.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<ToolOutput, ToolError>> + Send + 'a>>;

/// A tool the driver can call.
pub trait Tool: Send + Sync {
    /// Runs one call.
    fn call(&self, call: ToolCall) -> ToolFuture<'_>;
}
