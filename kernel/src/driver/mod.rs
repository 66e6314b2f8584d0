//! The async driver (feature `driver`, on by default): the thin layer that performs the effects the
//! pure kernel returns. Tools are reached only through the [`Tool`] trait; the runtime resolves a
//! tenant's credentials and hands a tool exactly those, nothing from its own environment.
//!
//! This module holds the controlled tool interface and its subprocess adapter, the per-session event
//! hub, and the `tracing` mapping of events; the runtime that owns sessions and models builds on them.

mod credentials;
mod hub;
mod model;
mod runtime;
mod subprocess;
pub mod telemetry;
mod tool;

pub use credentials::Credentials;
pub use hub::{Delivery, EventHub, Subscriber};
pub use model::{Estimate, Model, ModelCall, ModelError, ModelFuture, ModelReply};
pub use runtime::{Control, MemoryStore, Outcome, Runtime, SessionHandle};
pub use subprocess::SubprocessTool;
pub use tool::{Tool, ToolCall, ToolError, ToolFuture, ToolOutput};
