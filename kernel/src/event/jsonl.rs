//! JSONL: one event per line; decoding and chain verification.

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

use super::chain::{GENESIS, event_hash};
use super::kinds::Event;

/// Events as JSONL, one per line, each line ending in `\n`.
pub fn encode_jsonl<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    let mut out = Vec::new();
    for event in events {
        let line = out.len();
        // An `Event` holds only strings, integers, booleans and JSON values: it always serializes
        // (were it not to, its line would be left empty rather than half-written).
        if serde_json::to_writer(&mut out, event).is_err() {
            out.truncate(line);
        }
        out.push(b'\n');
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A leading UTF-8 byte order mark is an editor's, not the log's.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Typed events from JSONL (blank lines skipped; a duplicate key anywhere is refused). The error
/// names the 1-based line.
pub fn decode_jsonl(text: &str) -> Result<Vec<Event>, ChainError> {
    let mut events = Vec::new();
    for (i, line) in without_bom(text).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = super::strict::parse(line)
            .and_then(serde_json::from_value)
            .map_err(|e| ChainError {
                line: i + 1,
                session: None,
                seq: None,
                problem: ChainProblem::Malformed(e.to_string()),
            })?;
        events.push(event);
    }
    Ok(events)
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Events checked.
    pub events: usize,
    /// Sessions by (tenant, session id), each with its number of events.
    pub sessions: BTreeMap<(String, String), u64>,
}

/// The first place a log stops being the log the kernel wrote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}{}: {problem}", describe(.session, .seq))]
pub struct ChainError {
    /// 1-based line of the offending event.
    pub line: usize,
    /// Its session, when readable.
    pub session: Option<String>,
    /// Its `seq`, when readable: the first bad seq.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: ChainProblem,
}

fn describe(session: &Option<String>, seq: &Option<u64>) -> String {
    match (session, seq) {
        (Some(s), Some(q)) => format!(" (session {s}, seq {q})"),
        (Some(s), None) => format!(" (session {s})"),
        (None, Some(q)) => format!(" (seq {q})"),
        (None, None) => String::new(),
    }
}

/// Kinds of chain breakage.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainProblem {
    /// Not a JSON event (a duplicate key included).
    #[error("not a valid event: {0}")]
    Malformed(String),
    /// The log holds no event at all: it proves nothing, whatever was deleted.
    #[error("the log holds no event")]
    Empty,
    /// The content no longer matches its hash: the event was edited.
    #[error(
        "content does not match its hash (recorded {recorded}, computed {computed}): the event was edited"
    )]
    Edited {
        /// The `hash` field.
        recorded: String,
        /// The hash of the content.
        computed: String,
    },
    /// `seq` is not the next one: an event before it was deleted, or events were reordered.
    #[error("expected seq {expected}: an event was deleted, inserted or reordered")]
    OutOfSequence {
        /// The seq that should have come.
        expected: u64,
    },
    /// `prev` does not name the previous event's hash.
    #[error(
        "prev does not match the previous event's hash: an event was replaced, inserted or reordered"
    )]
    BrokenLink,
}

/// Verifies every session chain in a JSONL log (sessions, keyed by tenant and id, may
/// interleave).
///
/// Detects any edit, deletion, insertion or reordering inside a chain, a duplicate key anywhere,
/// and an empty log; the error names the first bad `seq`. Truncating a log's tail leaves a valid
/// shorter chain: anchoring the last hash elsewhere is what catches that.
pub fn verify_jsonl(text: &str) -> Result<ChainSummary, ChainError> {
    let mut heads: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    let mut events = 0;
    for (i, line) in without_bom(text).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |session: Option<String>, seq: Option<u64>, problem| ChainError {
            line: i + 1,
            session,
            seq,
            problem,
        };
        let value: Value = super::strict::parse(line)
            .map_err(|e| bad(None, None, ChainProblem::Malformed(e.to_string())))?;
        let session = value
            .get("session")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let seq = value.get("seq").and_then(Value::as_u64);
        let (Some(session), Some(seq)) = (session.clone(), seq) else {
            let problem = ChainProblem::Malformed("missing `session` or `seq`".into());
            return Err(bad(session, seq, problem));
        };
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let (recorded, prev, tenant) = (field("hash"), field("prev"), field("tenant"));
        let computed = event_hash(&value);
        if computed != recorded {
            let problem = ChainProblem::Edited { recorded, computed };
            return Err(bad(Some(session), Some(seq), problem));
        }
        let key = (tenant, session);
        let (expected, expected_prev) = match heads.get(&key) {
            Some((last, hash)) => (last + 1, hash.as_str()),
            None => (0, GENESIS),
        };
        let session = key.1.clone();
        if seq != expected {
            return Err(bad(
                Some(session),
                Some(seq),
                ChainProblem::OutOfSequence { expected },
            ));
        }
        if prev != expected_prev {
            return Err(bad(Some(session), Some(seq), ChainProblem::BrokenLink));
        }
        heads.insert(key, (seq, recorded));
        events += 1;
    }
    if events == 0 {
        return Err(ChainError {
            line: 1,
            session: None,
            seq: None,
            problem: ChainProblem::Empty,
        });
    }
    let sessions = heads
        .into_iter()
        .map(|(s, (last, _))| (s, last + 1))
        .collect();
    Ok(ChainSummary { events, sessions })
}
