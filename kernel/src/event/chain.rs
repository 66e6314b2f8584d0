//! Canonical JSON and the SHA-256 chain.
//!
//! Canonical form: object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings
//! escaped as serde_json escapes them, numbers as serde_json prints them. Hashing the canonical form
//! of a parsed line, not the line's bytes, lets a verifier accept any key order a tool may write
//! while still catching every change of content.

use std::io::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::kinds::Event;
use crate::gate::Decision;

/// The `prev` of a session's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `value` in canonical JSON.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, None, &mut out);
    // Only `str`s and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value` canonically, leaving out the top-level key `skip`. Writing to a `Vec` or a
/// hasher cannot fail, so write errors are ignored.
fn write_canonical(value: &Value, skip: Option<&str>, out: &mut impl Write) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != skip)
                .collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let _ = out.write_all(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                write_string(k, out);
                let _ = out.write_all(b":");
                write_canonical(v, None, out);
            }
            let _ = out.write_all(b"}");
        }
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                write_canonical(v, None, out);
            }
            let _ = out.write_all(b"]");
        }
        Value::String(s) => write_string(s, out),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => {
            let _ = out.write_all(if *b { b"true" } else { b"false" });
        }
        Value::Null => {
            let _ = out.write_all(b"null");
        }
    }
}

fn write_string(s: &str, out: &mut impl Write) {
    // serde_json's string escaping is deterministic.
    let _ = serde_json::to_writer(out, s);
}

/// Feeds what is written into SHA-256, so the canonical form is never held in memory.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`event_hash`] of `serde_json::to_value(event)`, without building that value: the envelope's
/// fields are written in key order by hand, the rest by [`super::canonical`].
pub(crate) fn hash_of(event: &Event) -> Result<String, super::canonical::Error> {
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    if let Some(decision) = &event.decision {
        out.extend_from_slice(b"\"decision\":");
        write_decision(decision, &mut out);
        out.push(b',');
    }
    // `{"kind":...,"payload":...}` without its braces: both keys sort between `decision` and `prev`.
    let body = out.len();
    super::canonical::write(&event.body, None, &mut out)?;
    out.remove(body);
    out.pop();
    out.extend_from_slice(b",\"prev\":");
    write_string(&event.prev, &mut out);
    let _ = write!(out, ",\"seq\":{},\"session\":", event.seq);
    write_string(&event.session, &mut out);
    let _ = write!(out, ",\"t_ms\":{},\"tenant\":", event.t_ms);
    write_string(&event.tenant, &mut out);
    out.push(b'}');
    Ok(sha256_hex(&out))
}

/// The canonical JSON of `d`, written field by field in key order: a decision is in most events,
/// and through the generic writer its bundle and policies were a third of an event's hashing.
/// `a_decision_is_written_as_the_generic_writer_writes_it` holds the two together.
fn write_decision(d: &Decision, out: &mut Vec<u8>) {
    /// A unit enum, as serde writes it (the variant's name as a string).
    fn unit(value: &impl serde::Serialize, out: &mut Vec<u8>) {
        let _ = serde_json::to_writer(out, value);
    }
    out.extend_from_slice(b"{\"action\":");
    write_string(&d.action, out);
    out.extend_from_slice(b",\"basis\":");
    unit(&d.basis, out);
    out.extend_from_slice(b",\"effect\":");
    unit(&d.effect, out);
    for (name, list) in [
        ("erred", &d.erred),
        ("errors", &d.errors),
        ("lifted", &d.lifted),
    ] {
        if !list.is_empty() {
            let _ = write!(out, ",\"{name}\":[");
            separated(out, list, |item, out| write_string(item, out));
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"mode\":");
    unit(&d.mode, out);
    out.extend_from_slice(b",\"policies\":[");
    separated(out, &d.policies, |p, out| {
        out.push(b'{');
        if !p.annotations.is_empty() {
            // A BTreeMap iterates in key order, which is the canonical order.
            out.extend_from_slice(b"\"annotations\":{");
            separated(out, &p.annotations, |(k, v), out| {
                write_string(k, out);
                out.push(b':');
                write_string(v, out);
            });
            out.extend_from_slice(b"},");
        }
        out.extend_from_slice(b"\"effect\":");
        write_string(&p.effect, out);
        out.extend_from_slice(b",\"id\":");
        write_string(&p.id, out);
        out.push(b'}');
    });
    out.extend_from_slice(b"],\"principal\":");
    write_string(&d.principal, out);
    out.extend_from_slice(b",\"resource\":");
    write_string(&d.resource, out);
    out.push(b'}');
}

/// Each of `items` written by `each`, comma-separated.
fn separated<I: IntoIterator>(out: &mut Vec<u8>, items: I, each: impl Fn(I::Item, &mut Vec<u8>)) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(item, out);
    }
}

/// The hash of an event given as JSON: SHA-256 (lower-case hex) of the canonical JSON of every
/// field except `hash`. `prev` is one of those fields, which is what chains the events.
pub fn event_hash(event: &Value) -> String {
    let mut hasher = Hashing(Sha256::new());
    write_canonical(event, Some("hash"), &mut hasher);
    hex::encode(hasher.0.finalize())
}

/// SHA-256 of `bytes`, lower-case hex: how every hash in a log is written.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = [0u8; 64];
    // 32 bytes always fit in 64 hex digits, which are ASCII.
    let _ = hex::encode_to_slice(Sha256::digest(bytes), &mut hex);
    String::from_utf8_lossy(&hex).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    #[test]
    fn a_decision_is_written_as_the_generic_writer_writes_it() {
        use crate::gate::{Basis, DeterminingPolicy, Mode, Verdict};
        use std::sync::Arc;
        let policy = |id: &str, annotations: &[(&str, &str)]| {
            Arc::new(DeterminingPolicy {
                id: id.into(),
                effect: "permit".into(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            })
        };
        let mut d = Decision {
            principal: "Agent::\"a\\\"b\"".into(),
            action: "Action::\"call_tool\"".into(),
            resource: "Tool::\"é\"".into(),
            effect: Verdict::Allow,
            basis: Basis::Permitted,
            policies: vec![],
            erred: vec![],
            errors: vec![],
            lifted: vec![],
            mode: Mode::LogOnly,
        };
        let both = |d: &Decision| {
            let mut generic = Vec::new();
            crate::event::canonical::write(d, None, &mut generic).expect("canonical");
            let mut by_hand = Vec::new();
            write_decision(d, &mut by_hand);
            (String::from_utf8(generic), String::from_utf8(by_hand))
        };
        let (generic, by_hand) = both(&d);
        assert_eq!(generic, by_hand);
        d.policies = vec![
            policy("a", &[]),
            policy("b", &[("timeout_ms", "5"), ("approval", "x\ny")]),
        ];
        d.errors = vec!["e1".into(), "e \"2\"".into()];
        d.erred = vec!["a".into(), "b\"c".into()];
        d.lifted = vec!["l".into()];
        d.basis = Basis::NotPermitted;
        d.effect = Verdict::Deny;
        d.mode = Mode::Enforce;
        let (generic, by_hand) = both(&d);
        assert_eq!(generic, by_hand);
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [true, null], "é": "x\"y", "A": 1.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"A":1.5,"z":[true,null],"é":"x\"y"},"b":1}"#
        );
    }

    #[test]
    fn hashing_a_value_directly_matches_hashing_its_json() {
        #[derive(serde::Serialize)]
        enum Shape {
            Unit,
            Newtype(i8),
            Tuple(u8, String),
            Struct { z: f32, a: Option<bool> },
        }
        #[derive(serde::Serialize)]
        struct Inner {
            zeta: Vec<Shape>,
            alpha: std::collections::HashMap<u32, char>,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            seq: u64,
            hash: &'static str,
            #[serde(flatten)]
            inner: Inner,
            free: Value,
            none: Option<()>,
            bytes: &'static [u8],
            big: i128,
        }
        let value = Outer {
            seq: u64::MAX,
            hash: "left out",
            inner: Inner {
                zeta: vec![
                    Shape::Unit,
                    Shape::Newtype(-3),
                    Shape::Tuple(7, "t\u{1}\"".into()),
                    Shape::Struct {
                        z: 0.1,
                        a: Some(true),
                    },
                ],
                alpha: [(10, 'x'), (2, '\n')].into(),
            },
            free: json!({"b": [1.5, 1e300, -0.0, null], "a": {"é": "x", "Z": "\u{1F600}", "": {}}}),
            none: None,
            bytes: b"ab",
            big: -5,
        };
        let json = serde_json::to_value(&value).expect("json");
        let mut direct = Vec::new();
        crate::event::canonical::write(&value, Some("hash"), &mut direct).expect("canonical");
        let mut without_hash = json.clone();
        without_hash.as_object_mut().expect("object").remove("hash");
        assert_eq!(
            String::from_utf8(direct).expect("utf-8"),
            canonical_json(&without_hash)
        );
    }

    #[test]
    fn an_event_hashes_the_same_written_directly_or_through_its_json() {
        use crate::event::EventBody;
        let mut event = Event {
            seq: 7,
            session: "s-\"1\"".into(),
            tenant: "acme".into(),
            t_ms: 12,
            body: EventBody::ToolReturned {
                call_id: "call-1".into(),
                tool: "crm".into(),
                output: json!({"z": 1, "a": [1.25, "é"]}),
                labels_added: vec!["pii".into()],
            },
            decision: None,
            prev: GENESIS.into(),
            hash: "ignored".into(),
        };
        let direct = |e: &Event| hash_of(e).expect("canonical");
        let through_json = |e: &Event| event_hash(&serde_json::to_value(e).expect("json"));
        assert_eq!(direct(&event), through_json(&event));
        let uid = |s: &str| cedar_policy::EntityUid::from_str(s).expect("uid");
        let mut decision = crate::gate::Decision::new(
            &uid(r#"Agent::"a""#),
            &uid(r#"Action::"refund""#),
            &uid(r#"Tool::"refund""#),
            crate::gate::Mode::Enforce,
        );
        decision.errors.push("boom".into());
        event.decision = Some(decision);
        assert_eq!(direct(&event), through_json(&event));
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
