//! The async driver (feature `driver`, on by default): the thin layer that performs the effects the
//! pure kernel returns. Tools are reached only through the [`Tool`] trait; the runtime resolves a
//! tenant's credentials and hands a tool exactly those, nothing from its own environment.
//!
//! This module holds the controlled tool interface and its subprocess adapter; the runtime that owns
//! sessions, models and subscribers builds on it.

mod credentials;
mod subprocess;
mod tool;

pub use credentials::Credentials;
pub use subprocess::SubprocessTool;
pub use tool::{Tool, ToolCall, ToolError, ToolFuture};
