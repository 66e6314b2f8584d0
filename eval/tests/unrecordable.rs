//! An event that cannot be hashed never reaches the log: the step fails as a whole with a typed
//! error, the chain stays whole, and the session ends (fault `UnhashableEvent`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use kernel::event::{encode_jsonl, verify_jsonl};
use kernel::faults::{Fault, inject};
use kernel::{Event, Intent, Mode, Session, SessionConfig, Status, StepError};
use serde_json::json;

#[test]
fn an_unhashable_event_fails_the_step_and_keeps_the_chain_whole() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let deployment = Arc::new(kernel::pack::load_packs(&root, &["demo"]).expect("demo loads"));
    let config = SessionConfig {
        id: "s1".into(),
        tenant: "acme".into(),
        user: "alice@acme".into(),
        agent: "assistant@acme".into(),
        budget: "acme".into(),
        mode: Mode::Enforce,
    };
    let mut session = Session::new(deployment, config).expect("session");
    let mut log: Vec<Event> = Vec::new();
    inject(Some(Fault::UnhashableEvent));
    let start = session.step(
        Intent::Start {
            request: "look up c1".into(),
        },
        0,
    );
    log.extend(start.expect("start").events);
    assert!(log.len() < 3, "the fault must hit a later step");
    // The tool call's reservation and `tool_called` events reach seq 2.
    let call = session.step(
        Intent::CallTool {
            tool: "read_crm".into(),
            input: json!({"customer_id": "c1"}),
            estimated_cost: 0,
        },
        10,
    );
    inject(None);
    let rejected = match call {
        Err(r) => r,
        Ok(t) => panic!("the step should have failed, got {t:?}"),
    };
    assert!(
        matches!(rejected.error, StepError::Unrecordable { .. }),
        "{:?}",
        rejected.error
    );
    assert!(!rejected.event.hash.is_empty());
    assert_eq!(
        rejected.event.seq,
        log.len() as u64,
        "no event of the step is kept"
    );
    log.push(*rejected.event);
    assert_eq!(session.status(), Status::Failed);
    verify_jsonl(&encode_jsonl(&log)).expect("the chain is whole");
    // Nothing more happens in the session.
    let after = session.step(Intent::Tick, 20);
    assert!(after.is_err());
}
