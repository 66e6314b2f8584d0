//! Arbiter's kernel: a pure, synchronous session state machine in which every transition is
//! authorized by Cedar and recorded as a hash-chained event.
//!
//! The kernel does no I/O and reads no clock: [`Session::step`] takes an [`Intent`] and the logical
//! time, and returns a [`Transition`] (the [`Decision`], the [`Event`]s appended, the [`Effect`]s a
//! driver must perform). Same inputs, byte-identical events.
//!
//! A [`Deployment`] is the compiled policy bundle a session runs against: the Cedar schema (with one
//! action generated per registered tool), the policy set keyed by `@id`, the entities, the tool
//! registry and the history counters. Build it once and share it between sessions.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
mod deployment;
mod error;
mod gate;
mod history;
mod intent;
mod session;
mod source;
mod tools;

pub mod event;
pub mod faults;
pub mod pack;
pub mod provenance;

pub use deployment::{BundleHashes, BundleSources, Deployment, DeploymentBuilder};
pub use error::{LoadError, LoadErrors, StepError};
pub use event::{Event, EventBody};
pub use gate::{Basis, Decision, DeterminingPolicy, Mode, Obligations, Traced, Verdict};
pub use history::CounterSpec;
pub use intent::{Intent, Step};
pub use session::{Effect, Rejected, Session, SessionConfig, Status, Transition};
pub use source::{Located, Source};
pub use tools::{ArgumentError, BUILTIN_ACTIONS, Risk, ToolSpec, uid};
