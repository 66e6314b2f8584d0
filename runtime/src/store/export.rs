//! A store as one self-contained JSONL file, for a reviewer who is handed the record rather than
//! access to the database: `arbiter audit export` writes it; `audit verify` and `audit recheck`
//! read it back into an [`InMemoryStore`] and audit it exactly as they audit a store.
//!
//! Every line is an object with one key naming what it holds, in this order: `arbiter_export`
//! (the format version), `bundle` (a bundle's hash and its sources), `session` (a session's
//! header), `step` and `event` (the session's steps and events, each naming its tenant and
//! session), and `checkpoint` (the store's signed checkpoints, in order). Reading is strict: a
//! duplicate key, an unknown line kind or a bundle whose text does not hash to its name is refused
//! with the line number; nothing is repaired, so what was handed over is what gets audited.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::{Checkpoint, InMemoryStore, SessionRecord, SessionStore, StoreError, StoredSession};
use kernel::event::Event;
use kernel::{BundleSources, Step};

/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    ArbiterExport {
        version: u64,
    },
    Bundle {
        hash: String,
        sources: Box<BundleSources>,
    },
    Session(SessionRecord),
    Step(Owned<Step>),
    Event(Box<Event>),
    Checkpoint(Checkpoint),
}

/// A step with the session it belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct Owned<T> {
    tenant: String,
    session: String,
    #[serde(flatten)]
    item: T,
}

/// Why an export could not be written or read.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not what an export holds.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Writes every bundle, session, step, event and checkpoint of `store` to `out`.
pub fn write(store: &dyn SessionStore, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut line = |l: &Line| -> Result<(), ExportError> {
        serde_json::to_writer(&mut *out, l).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    line(&Line::ArbiterExport { version: VERSION })?;
    let sessions = store.sessions()?;
    let mut loaded = Vec::with_capacity(sessions.len());
    let mut bundles = BTreeMap::new();
    for (tenant, id) in &sessions {
        let s = store.load(tenant, id)?;
        if !bundles.contains_key(&s.record.bundle) {
            let sources = store.bundle(&s.record.bundle)?;
            bundles.insert(s.record.bundle.clone(), sources);
        }
        loaded.push(s);
    }
    for (hash, sources) in bundles {
        line(&Line::Bundle {
            hash,
            sources: Box::new(sources),
        })?;
    }
    for s in loaded {
        let (tenant, session) = (&s.record.config.tenant, &s.record.config.id);
        line(&Line::Session(s.record.clone()))?;
        for step in s.steps {
            line(&Line::Step(Owned {
                tenant: tenant.clone(),
                session: session.clone(),
                item: step,
            }))?;
        }
        for event in s.events {
            line(&Line::Event(Box::new(event)))?;
        }
    }
    for c in store.checkpoints()? {
        line(&Line::Checkpoint(c))?;
    }
    out.flush()?;
    Ok(())
}

/// Whether `text` starts as an export (rather than a plain event log).
pub fn is_export(text: &str) -> bool {
    let first = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    first.trim_start().starts_with("{\"arbiter_export\"")
}

/// Reads an export into a store. Events are kept as given, even where they contradict their
/// chain or their steps: finding that is the audit's job, not the reader's.
pub fn read(text: &str) -> Result<InMemoryStore, ExportError> {
    let store = InMemoryStore::default();
    let mut sessions: BTreeMap<(String, String), StoredSession> = BTreeMap::new();
    let mut versioned = false;
    for (i, raw) in text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .enumerate()
    {
        let at = |problem: String| ExportError::Line {
            line: i + 1,
            problem,
        };
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = kernel::event::strict_parse(raw).map_err(|e| at(e.to_string()))?;
        let line: Line = serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
        if !versioned {
            match line {
                Line::ArbiterExport { version } if version == VERSION => {
                    versioned = true;
                    continue;
                }
                Line::ArbiterExport { version } => {
                    return Err(at(format!(
                        "export format {version}; this build reads format {VERSION}"
                    )));
                }
                _ => return Err(at("an export starts with its `arbiter_export` line".into())),
            }
        }
        let unknown = |tenant: &str, session: &str| {
            at(format!(
                "names session {tenant}/{session}, which no earlier `session` line declares"
            ))
        };
        match line {
            Line::ArbiterExport { .. } => return Err(at("a second `arbiter_export` line".into())),
            Line::Bundle { hash, sources } => {
                let actual = sources.hash().map_err(|e| at(e.to_string()))?;
                if actual != hash {
                    return Err(at(format!(
                        "bundle {hash}: its sources hash to {actual} (the text was altered)"
                    )));
                }
                store.put_bundle(&sources)?;
            }
            Line::Session(record) => {
                let key = (record.config.tenant.clone(), record.config.id.clone());
                if sessions.contains_key(&key) {
                    return Err(at(format!("session {}/{} appears twice", key.0, key.1)));
                }
                sessions.insert(
                    key,
                    StoredSession {
                        record,
                        steps: Vec::new(),
                        events: Vec::new(),
                    },
                );
            }
            Line::Step(owned) => sessions
                .get_mut(&(owned.tenant.clone(), owned.session.clone()))
                .ok_or_else(|| unknown(&owned.tenant, &owned.session))?
                .steps
                .push(owned.item),
            Line::Event(event) => sessions
                .get_mut(&(event.tenant.clone(), event.session.clone()))
                .ok_or_else(|| unknown(&event.tenant, &event.session))?
                .events
                .push(*event),
            Line::Checkpoint(c) => store.restore_checkpoint(c)?,
        }
    }
    if !versioned {
        return Err(ExportError::Line {
            line: 1,
            problem: "empty: an export starts with its `arbiter_export` line".into(),
        });
    }
    for (_, s) in sessions {
        store.restore(s)?;
    }
    Ok(store)
}
