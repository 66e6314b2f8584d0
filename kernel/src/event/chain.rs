//! Canonical JSON and the SHA-256 chain.
//!
//! Canonical form: object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings
//! escaped as serde_json escapes them, numbers as serde_json prints them. Hashing the canonical form
//! of a parsed line, not the line's bytes, lets a verifier accept any key order a tool may write
//! while still catching every change of content.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of a session's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `value` in canonical JSON.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is deterministic; serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// The hash of an event given as JSON: SHA-256 (lower-case hex) of the canonical JSON of every
/// field except `hash`. `prev` is one of those fields, which is what chains the events.
pub fn event_hash(event: &Value) -> String {
    let digest = match event {
        Value::Object(map) if map.contains_key("hash") => {
            let mut without = map.clone();
            without.remove("hash");
            Sha256::digest(canonical_json(&Value::Object(without)).as_bytes())
        }
        other => Sha256::digest(canonical_json(other).as_bytes()),
    };
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [true, null], "é": "x\"y", "A": 1.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"A":1.5,"z":[true,null],"é":"x\"y"},"b":1}"#
        );
    }

    #[test]
    fn hash_ignores_key_order_and_the_hash_field_but_nothing_else() {
        let a = json!({"seq": 0, "prev": GENESIS, "kind": "x", "hash": "whatever"});
        let b = json!({"kind": "x", "prev": GENESIS, "seq": 0});
        assert_eq!(event_hash(&a), event_hash(&b));
        let c = json!({"kind": "x", "prev": GENESIS, "seq": 1});
        assert_ne!(event_hash(&a), event_hash(&c));
        assert_eq!(event_hash(&a).len(), 64);
    }
}
