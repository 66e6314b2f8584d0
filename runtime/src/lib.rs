//! Arbiter's async runtime: the layer that performs the effects the pure kernel returns.
//!
//! The kernel decides; this crate acts. Tools are reached only through the [`Tool`] trait, models
//! through [`Model`]; the runtime resolves a tenant's credentials and hands a tool exactly those,
//! nothing from its own environment. Every step is written to a [`store`] before its effects run.
//!
//! Module map (each depends only on those listed before it):
//! - [`tools`]: the controlled tool interface, subprocess and HTTP adapters, credentials;
//! - [`models`]: the model interface and its OpenAI-compatible adapter;
//! - [`store`]: session stores (memory, SQLite, group commit);
//! - [`telemetry`], [`hub`]: events as `tracing` records, and live per-session subscribers;
//! - [`driver`]: drives sessions with all of the above;
//! - [`service`]: `arbiter serve`, the HTTP service over the kernel;
//! - [`gateway`]: `arbiter mcp-gateway`, the MCP server in front of upstream MCP servers, deciding
//!   through [`service`];
//! - [`agent_file`]: an agent file (policies, who runs it, model endpoint, tools) made into a
//!   [`Runtime`], with [`FileError`] for any file Arbiter reads.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent_file;
pub mod driver;
mod error;
pub mod gateway;
pub mod hub;
pub mod models;
pub mod service;
pub mod spans;
pub mod store;
pub mod telemetry;
pub mod tools;

pub use driver::{Control, Outcome, Runtime, SessionHandle, SharedMemory};
pub use error::FileError;
pub use hub::{Delivery, EventHub, Subscriber};
pub use models::{
    Estimate, Message, Model, ModelCall, ModelError, ModelFuture, ModelReply, ToolRequest,
};
pub use tools::{
    Credentials, HttpTool, SubprocessTool, Tool, ToolCall, ToolError, ToolFuture, ToolOutput,
};
