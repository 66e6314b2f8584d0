//! Typed errors: what went wrong loading a deployment, and why an intent was rejected. A leaf:
//! every layer above reports through these.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, SourceCode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::source::Located;

/// One problem found while building a [`crate::Deployment`], located in its source.
#[derive(Debug, Clone, Error)]
pub enum LoadError {
    /// The Cedar schema does not parse or is inconsistent.
    #[error("{at}: schema: {message}")]
    Schema {
        /// Where.
        at: Located,
        /// What Cedar said.
        message: String,
    },
    /// A policy file does not parse.
    #[error("{at}: policy syntax: {message}")]
    PolicySyntax {
        /// Where.
        at: Located,
        /// What Cedar said.
        message: String,
    },
    /// The schema does not accept a request the kernel makes (an edited `Session`, `History` or
    /// action context).
    #[error("{at}: the schema does not accept the kernel's {request}: {message}")]
    Contract {
        /// The schema.
        at: Located,
        /// Which request.
        request: String,
        /// What Cedar said.
        message: String,
    },
    /// A policy lacks `@id`, which decisions and approvals need to name it stably.
    #[error("{at}: policy has no @id(\"...\") annotation")]
    MissingId {
        /// Where the policy starts.
        at: Located,
    },
    /// Two policies share an `@id`.
    #[error("{at}: duplicate policy id `{id}`, first used at {first}")]
    DuplicateId {
        /// The second use.
        at: Located,
        /// The id.
        id: String,
        /// The first use.
        first: Located,
    },
    /// An annotation the kernel interprets has a value it cannot use.
    #[error("{at}: policy `{policy}`: {message}")]
    Annotation {
        /// Where the policy starts.
        at: Located,
        /// The policy id.
        policy: String,
        /// What is wrong.
        message: String,
    },
    /// A policy fails Cedar strict validation against the schema.
    #[error("{at}: policy `{policy}` fails strict validation: {message}")]
    Validation {
        /// Where.
        at: Located,
        /// The policy id.
        policy: String,
        /// What the validator said.
        message: String,
    },
    /// An entities file is malformed or does not match the schema.
    #[error("{at}: entities: {message}")]
    Entities {
        /// Where.
        at: Located,
        /// What is wrong, naming the entity.
        message: String,
    },
    /// A tool definition is malformed, or its JSON Schema uses something Cedar cannot type.
    #[error("{at}: tool `{tool}`: {message}")]
    Tool {
        /// Where.
        at: Located,
        /// The tool's name.
        tool: String,
        /// What is wrong, with the JSON pointer into the schema when there is one.
        message: String,
    },
    /// The counters file is malformed or names something that does not exist.
    #[error("{at}: counters: {message}")]
    Counters {
        /// Where.
        at: Located,
        /// What is wrong.
        message: String,
    },
}

impl LoadError {
    /// Where the problem is.
    pub fn location(&self) -> &Located {
        match self {
            Self::Schema { at, .. }
            | Self::PolicySyntax { at, .. }
            | Self::MissingId { at }
            | Self::DuplicateId { at, .. }
            | Self::Annotation { at, .. }
            | Self::Validation { at, .. }
            | Self::Entities { at, .. }
            | Self::Tool { at, .. }
            | Self::Counters { at, .. }
            | Self::Contract { at, .. } => at,
        }
    }
}

impl Diagnostic for LoadError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match self {
            Self::Schema { .. } => "arbiter::schema",
            Self::PolicySyntax { .. } => "arbiter::policy_syntax",
            Self::MissingId { .. } => "arbiter::missing_id",
            Self::DuplicateId { .. } => "arbiter::duplicate_id",
            Self::Annotation { .. } => "arbiter::annotation",
            Self::Validation { .. } => "arbiter::validation",
            Self::Entities { .. } => "arbiter::entities",
            Self::Tool { .. } => "arbiter::tool",
            Self::Counters { .. } => "arbiter::counters",
            Self::Contract { .. } => "arbiter::contract",
        };
        Some(Box::new(code))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.location().source_code()
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.location().label()
    }
}

/// Every problem found while building a deployment (the build reports them all, not the first).
#[derive(Debug, Clone, Error)]
#[error("{} problem(s) in the policy bundle:\n{}", .0.len(), list(.0))]
pub struct LoadErrors(pub Vec<LoadError>);

impl Diagnostic for LoadErrors {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.0.iter().map(|e| e as &dyn Diagnostic)))
    }
}

fn list(errors: &[LoadError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why the kernel refused an intent outright (as opposed to a policy denying it).
///
/// A rejected intent changes nothing but the log: the session appends a `rejected` event.
#[derive(Debug, Clone, PartialEq, Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum StepError {
    /// The intent is not legal in the session's current status.
    #[error("`{intent}` is not allowed while the session is {status}")]
    IllegalTransition {
        /// The intent's kind.
        intent: String,
        /// The session's status.
        status: String,
    },
    /// A result or verdict names a call, read or request the session is not waiting for.
    #[error("`{intent}` names `{id}`, but the session is not waiting for it")]
    UnknownReference {
        /// The intent's kind.
        intent: String,
        /// The id it named.
        id: String,
    },
    /// Logical time moved backwards.
    #[error("time went backwards: {now} ms is before the last step at {last} ms")]
    ClockWentBackwards {
        /// The time given.
        now: u64,
        /// The time of the previous step.
        last: u64,
    },
    /// No tool of that name is registered.
    #[error("no tool named `{tool}` is registered")]
    UnknownTool {
        /// The name asked for.
        tool: String,
    },
    /// The arguments fail the tool's JSON Schema or cannot be typed for Cedar.
    #[error("arguments of `{tool}` are invalid: {}", describe(.errors))]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Every violation, each naming the argument.
        errors: Vec<ArgumentError>,
    },
    /// The session's principal, user, budget or another entity it needs is not in the deployment.
    #[error("{message}")]
    BadSession {
        /// What is missing or wrong.
        message: String,
    },
    /// Data from outside is nested deeper than [`crate::MAX_JSON_DEPTH`] levels.
    #[error("{what} is nested deeper than {limit} levels")]
    TooDeep {
        /// Which data.
        what: String,
        /// The bound.
        limit: usize,
    },
    /// An event of the step has no canonical JSON, so it cannot be hashed into the chain. Nothing
    /// of the step is recorded or performed, and the session fails: a log with a gap or an
    /// unhashed event would pass for a whole one.
    #[error("the step cannot be recorded: {reason}")]
    Unrecordable {
        /// Why its event could not be hashed.
        reason: String,
    },
}

fn describe(errors: &[ArgumentError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One violation in a tool call's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgumentError {
    /// JSON pointer to the offending argument (`/amount`, `/items/2/sku`; `/` for the whole input).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// An error with its causes and help, for errors (like Cedar's entity errors) whose top line is vague.
pub(crate) fn full_message(e: &(dyn miette::Diagnostic + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    if let Some(help) = e.help() {
        parts.push(format!("help: {help}"));
    }
    parts.dedup();
    parts.join(": ")
}
