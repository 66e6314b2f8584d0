//! The append-only event stream: one type per kind, a SHA-256 hash chain over canonical JSON,
//! a JSONL codec and a verifier.

mod canonical;
mod chain;
mod jsonl;
mod kinds;
mod strict;

pub use canonical::Error as HashError;
pub(crate) use chain::hash_of;
pub use chain::sha256_hex;
pub use chain::{GENESIS, canonical_json, event_hash};
pub use jsonl::{ChainError, ChainProblem, ChainSummary, decode_jsonl, encode_jsonl, verify_jsonl};
pub use kinds::{Event, EventBody};
pub use strict::parse as strict_parse;
