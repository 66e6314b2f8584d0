//! The error of a file Arbiter reads (an agent file, a scenario): which file and, when known,
//! line and column, or why its policies did not load.

use std::path::PathBuf;

use kernel::pack::PackError;
use kernel::{Located, Source};
use miette::{Diagnostic, LabeledSpan, SourceCode};
use thiserror::Error;

/// A file that cannot be read, parsed or used.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Located,
        /// What is wrong.
        message: String,
    },
    /// Its policies do not load.
    #[error("{file}: policies do not load: {source}")]
    Policies {
        /// The file that named them.
        file: String,
        /// Why.
        #[source]
        source: PackError,
    },
}

impl FileError {
    /// The file `source` is invalid at `span` (byte offset and length; the whole file when unknown).
    pub fn invalid(source: &Source, span: Option<(usize, usize)>, message: &str) -> Self {
        let at = span.map_or_else(|| source.whole(), |(o, l)| source.locate(o, l));
        Self::Invalid {
            at,
            message: message.to_owned(),
        }
    }
}

impl Diagnostic for FileError {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        match self {
            Self::Invalid { at, .. } => at.source_code(),
            _ => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self {
            Self::Invalid { at, .. } => at.label(),
            _ => None,
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        match self {
            Self::Policies {
                source: PackError::Invalid(errors),
                ..
            } => errors.related(),
            _ => None,
        }
    }
}
