//! The event stream: determinism, JSONL round trip, and tamper detection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use kernel::event::{ChainProblem, decode_jsonl, encode_jsonl, verify_jsonl};
use kernel::{Event, Intent, Mode, Session};
use serde_json::{Value, json};

/// A session touching most event kinds, driven by a fixed script.
fn scripted_run() -> Vec<Event> {
    let mut s = Session::new(demo(), config(Mode::Enforce)).expect("session");
    let mut events = Vec::new();
    let mut push = |r: Result<kernel::Transition, kernel::Rejected>| -> Option<kernel::Transition> {
        match r {
            Ok(t) => {
                events.extend(t.events.clone());
                Some(t)
            }
            Err(rej) => {
                events.push(*rej.event);
                None
            }
        }
    };
    push(s.step(
        Intent::Start {
            request: "refund and search".into(),
        },
        0,
    ));
    let t = push(s.step(
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 50,
            estimated_cost: 40,
        },
        1,
    ))
    .expect("t");
    push(s.step(
        Intent::ModelResponded {
            call_id: call_id(&t),
            input_tokens: 20,
            output_tokens: 20,
            cost: 35,
            output: json!({"tool_calls": ["refund"]}),
        },
        2,
    ));
    let t = push(s.step(
        tool("refund", json!({"order_id": "ord-1", "amount": 50_000})),
        3,
    ))
    .expect("t");
    let request_id = match &t.events[0].body {
        kernel::EventBody::ApprovalRequested { request_id, .. } => request_id.clone(),
        other => panic!("{other:?}"),
    };
    let t = push(s.step(
        Intent::Approve {
            user: "bob@acme".into(),
            request_id,
        },
        4,
    ))
    .expect("t");
    push(s.step(
        Intent::CallFailed {
            call_id: call_id(&t),
            error: "timeout".into(),
            retryable: true,
            cost: 0,
            jitter_ms: 0,
        },
        5,
    ));
    push(s.step(returned(&call_id(&t), json!({"ok": true})), 6));
    push(s.step(tool("refund", json!({"order_id": "bad", "amount": 0})), 7));
    push(s.step(
        Intent::WriteMemory {
            scope: "acme/notes".into(),
            key: "k".into(),
            value: json!("v"),
        },
        8,
    ));
    push(s.step(Intent::Tick, 9));
    push(s.step(
        Intent::Complete {
            answer: "done".into(),
        },
        10,
    ));
    events
}

#[test]
fn the_same_intents_give_byte_identical_events() {
    let a = encode_jsonl(&scripted_run());
    let b = encode_jsonl(&scripted_run());
    assert_eq!(a, b);
    assert!(a.lines().count() >= 15, "{a}");
}

#[test]
fn jsonl_round_trips_and_verifies() {
    let events = scripted_run();
    let text = encode_jsonl(&events);
    assert_eq!(decode_jsonl(&text).expect("decodes"), events);
    let summary = verify_jsonl(&text).expect("verifies");
    assert_eq!(summary.events, events.len());
    assert_eq!(
        summary.sessions.get(&("acme".to_owned(), "s1".to_owned())),
        Some(&(events.len() as u64))
    );
}

fn lines() -> Vec<String> {
    encode_jsonl(&scripted_run())
        .lines()
        .map(str::to_owned)
        .collect()
}

fn verify(lines: &[String]) -> Result<kernel::event::ChainSummary, kernel::event::ChainError> {
    verify_jsonl(&lines.join("\n"))
}

#[test]
fn an_edited_event_is_detected_at_its_seq() {
    let mut l = lines();
    let mut v: Value = serde_json::from_str(&l[4]).expect("json");
    v["t_ms"] = json!(999);
    l[4] = v.to_string();
    let err = verify(&l).expect_err("edit");
    assert_eq!(err.seq, Some(4));
    assert!(matches!(err.problem, ChainProblem::Edited { .. }));

    // Editing a nested decision field is caught too.
    let mut l = lines();
    let i = l
        .iter()
        .position(|x| x.contains("\"effect\":\"deny\""))
        .expect("a denial");
    l[i] = l[i].replace("\"effect\":\"deny\"", "\"effect\":\"allow\"");
    assert_eq!(verify(&l).expect_err("edit").seq, Some(i as u64));
}

#[test]
fn an_edit_with_a_recomputed_hash_still_breaks_the_next_link() {
    let mut l = lines();
    let mut v: Value = serde_json::from_str(&l[3]).expect("json");
    v["payload"] = json!({"forged": true});
    v["hash"] = json!(kernel::event::event_hash(&v));
    l[3] = v.to_string();
    let err = verify(&l).expect_err("forged");
    assert_eq!((err.seq, err.problem), (Some(4), ChainProblem::BrokenLink));
}

#[test]
fn deletion_insertion_and_reordering_are_detected() {
    let mut l = lines();
    l.remove(5);
    let err = verify(&l).expect_err("deleted");
    assert_eq!(
        (err.seq, err.problem),
        (Some(6), ChainProblem::OutOfSequence { expected: 5 })
    );

    let mut l = lines();
    let dup = l[2].clone();
    l.insert(3, dup);
    let err = verify(&l).expect_err("inserted");
    assert_eq!(err.seq, Some(2));

    let mut l = lines();
    l.swap(6, 7);
    let err = verify(&l).expect_err("reordered");
    assert_eq!(err.seq, Some(7));

    let mut l = lines();
    l[0] = "not json".into();
    assert!(matches!(
        verify(&l).expect_err("garbage").problem,
        ChainProblem::Malformed(_)
    ));
}

#[test]
fn interleaved_sessions_verify_independently() {
    let a = lines();
    let b: Vec<String> = lines()
        .into_iter()
        .map(|x| x.replace("\"session\":\"s1\"", "\"session\":\"s2\""))
        .collect();
    // Re-chain b: its hashes changed with the session id, so recompute them in order.
    let b = rechain(b);
    let mixed: Vec<String> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let summary = verify(&mixed).expect("both chains verify");
    assert_eq!(summary.sessions.len(), 2);
}

/// Re-chains `lines` after an edit, as a forger who can write the file would.
fn rechain(lines: Vec<String>) -> Vec<String> {
    let mut prev = kernel::event::GENESIS.to_owned();
    lines
        .into_iter()
        .map(|line| {
            let mut v: Value = serde_json::from_str(&line).expect("json");
            v["prev"] = json!(prev);
            let h = kernel::event::event_hash(&v);
            v["hash"] = json!(h);
            prev = h;
            v.to_string()
        })
        .collect()
}

#[test]
fn an_empty_log_proves_nothing_and_is_refused() {
    for text in ["", "\n", "  \n\n"] {
        let err = verify_jsonl(text).expect_err("an empty log must not verify");
        assert_eq!(err.problem, ChainProblem::Empty, "{text:?}");
    }
}

#[test]
fn a_duplicate_key_is_refused_wherever_it_is() {
    let l = lines();
    // At the top level: a second `t_ms` that a reader might see instead of the hashed one.
    let mut top = l.clone();
    top[2] = top[2].replacen("{\"seq\"", "{\"t_ms\":999,\"seq\"", 1);
    assert!(top[2].contains("\"t_ms\":999"), "{}", top[2]);
    let err = verify(&top).expect_err("duplicate top-level key");
    assert!(
        matches!(err.problem, ChainProblem::Malformed(ref m) if m.contains("duplicate key `t_ms`")),
        "{err}"
    );
    assert_eq!(err.line, 3);
    // Deep inside a payload.
    let mut deep = l.clone();
    let i = deep
        .iter()
        .position(|x| x.contains("\"kind\":\"decision\"") || x.contains("\"payload\":{"))
        .expect("a payload object");
    deep[i] = deep[i].replacen("\"payload\":{", "\"payload\":{\"x\":1,\"x\":2,", 1);
    let err = verify(&deep).expect_err("duplicate nested key");
    assert!(
        matches!(err.problem, ChainProblem::Malformed(ref m) if m.contains("duplicate key `x`")),
        "{err}"
    );
    assert!(decode_jsonl(&deep.join("\n")).is_err());
}

#[test]
fn a_byte_order_mark_is_not_tampering() {
    let text = format!("\u{feff}{}", encode_jsonl(&scripted_run()));
    let summary = verify_jsonl(&text).expect("a BOM before the first line is fine");
    assert_eq!(summary.events, scripted_run().len());
    assert_eq!(decode_jsonl(&text).expect("decodes"), scripted_run());
}

#[test]
fn chains_are_kept_per_tenant_and_session() {
    // Another tenant's session with the same id interleaves with the first: both verify.
    let a = lines();
    let b = rechain(
        lines()
            .into_iter()
            .map(|x| x.replace("\"tenant\":\"acme\"", "\"tenant\":\"globex\""))
            .collect(),
    );
    let mixed: Vec<String> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let summary = verify(&mixed).expect("two tenants may use the same session id");
    assert_eq!(
        summary.sessions.get(&("acme".to_owned(), "s1".to_owned())),
        Some(&(a.len() as u64))
    );
    assert_eq!(
        summary
            .sessions
            .get(&("globex".to_owned(), "s1".to_owned())),
        Some(&(b.len() as u64))
    );
    // Moving one event to the other tenant breaks both chains there.
    let mut moved = a.clone();
    moved[3] = moved[3].replace("\"tenant\":\"acme\"", "\"tenant\":\"globex\"");
    assert!(verify(&moved).is_err());
}
