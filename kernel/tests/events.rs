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
    assert_eq!(summary.sessions.get("s1"), Some(&(events.len() as u64)));
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
    let mut prev = kernel::event::GENESIS.to_owned();
    let b: Vec<String> = b
        .into_iter()
        .map(|line| {
            let mut v: Value = serde_json::from_str(&line).expect("json");
            v["prev"] = json!(prev);
            let h = kernel::event::event_hash(&v);
            v["hash"] = json!(h);
            prev = h;
            v.to_string()
        })
        .collect();
    let mixed: Vec<String> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let summary = verify(&mixed).expect("both chains verify");
    assert_eq!(summary.sessions.len(), 2);
}
