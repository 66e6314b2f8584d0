//! The async driver (feature `driver`, on by default): the thin layer that performs the effects the
//! pure kernel returns. Tools are reached only through the [`Tool`] trait; the runtime resolves a
//! tenant's credentials and hands a tool exactly those, nothing from its own environment.
//!
//! This module holds the controlled tool interface with its subprocess and HTTP adapters, the model
//! interface with its OpenAI-compatible adapter, the per-session event hub, the `tracing` mapping
//! of events, and the runtime that drives sessions with them.

mod credentials;
mod http;
mod hub;
mod model;
pub mod openai;
mod runtime;
mod subprocess;
pub mod telemetry;
mod tool;

pub use credentials::Credentials;
pub use http::HttpTool;
pub(crate) use http::http_client;
pub use hub::{Delivery, EventHub, Subscriber};
pub use model::{
    Estimate, Message, Model, ModelCall, ModelError, ModelFuture, ModelReply, ToolRequest,
};
pub use runtime::{Control, MemoryStore, Outcome, Runtime, SessionHandle};
pub use subprocess::SubprocessTool;
pub use tool::{Tool, ToolCall, ToolError, ToolFuture, ToolOutput};
