//! Arbiter's kernel: a pure, synchronous session state machine in which every transition is
//! authorized by Cedar and recorded as a hash-chained event, and the agent loop around it.
//!
//! The kernel does no I/O and reads no clock: [`Session::step`] takes an [`Intent`] and the logical
//! time, and returns a [`Transition`] (the [`Decision`], the [`Event`]s appended, the [`Effect`]s a
//! driver must perform). Same inputs, byte-identical events. [`agent::AgentLoop`] plays the agent
//! around a session (model turn → proposed calls → authorize → effects → results → next turn); the
//! async runtime, scenario replay and durable scripted runs all drive that one loop.
//!
//! A [`Deployment`] is the compiled policy bundle a session runs against: the Cedar schema (with one
//! action generated per registered tool), the policy set keyed by `@id`, the entities, the tool
//! registry and the history counters. Build it once and share it between sessions.
//!
//! # Module map
//!
//! Each module imports only from modules on earlier lines (`.ci/module-graph.py` checks it in CI):
//!
//! 1. `source`, `intent`, [`faults`], `bundle` (a bundle's hashes), `vocabulary` (the
//!    `context.session` attribute names), `schema_forms` (the JSON Schema forms generators write,
//!    rewritten into the ones Cedar types hold): leaves.
//! 2. `error`: typed load, step and argument errors.
//! 3. `gate`: Cedar — loading and strict validation, the policy index, the context demand, the
//!    kernel's own evaluator and its values, decisions.
//! 4. `cedar_type` (JSON Schema → Cedar types and values), [`event`] (event types, canonical
//!    JSON, the hash chain, JSONL and its verifier).
//! 5. [`provenance`]: the content index and argument origins.
//! 6. `tools`: registered tools, their generated actions and typed inputs.
//! 7. `history`: counters over a session's past.
//! 8. `deployment`: the compiled bundle.
//! 9. `session` (the state machine; it also completes [`DeploymentBuilder::build`] with the
//!    request-contract check, which needs sessions), [`pack`] (reads a policy directory).
//! 10. [`agent`]: the agent loop.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bundle;
mod cedar_type;
mod deployment;
mod error;
mod gate;
mod history;
mod intent;
mod schema_forms;
mod session;
mod source;
mod tools;
mod vocabulary;

pub mod agent;
pub mod event;
pub mod faults;
pub mod pack;
pub mod provenance;

pub use deployment::{BundleHashes, BundleSources, Deployment, DeploymentBuilder};
pub use error::{LoadError, LoadErrors, StepError};
pub use event::{Event, EventBody};
pub use gate::{Basis, Decision, DeterminingPolicy, Mode, Obligations, Traced, Verdict};
pub use gate::{FORBID_ONLY, PERMIT_ONLY};
pub use history::CounterSpec;
pub use intent::{Intent, MAX_JSON_DEPTH, Step};
pub use session::{Effect, Rejected, Session, SessionConfig, Status, Transition};
pub use source::{Located, Source};
pub use tools::{ArgumentError, BUILTIN_ACTIONS, PathRules, Risk, ToolSpec, uid};
