//! A call whose outcome a restart lost: `InDoubt` records the doubt and asks policy whether to run
//! it again — an idempotent tool re-runs under the same call id, anything else waits for approval.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use kernel::{Effect, EventBody, Intent, Mode, Session, SessionConfig, StepError};
use serde_json::json;

fn support() -> Session {
    let root = common::root();
    let deployment = Arc::new(kernel::pack::load_packs(&root, &["support"]).expect("packs"));
    let config = SessionConfig {
        id: "r1".into(),
        tenant: "shopco".into(),
        user: "carol@shopco".into(),
        agent: "support@shopco".into(),
        budget: "shopco".into(),
        mode: Mode::Enforce,
    };
    let mut s = Session::new(deployment, config).expect("session");
    common::step(
        &mut s,
        Intent::Start {
            request: "hi".into(),
        },
        0,
    );
    s
}

fn in_doubt(call_id: &str) -> Intent {
    Intent::InDoubt {
        call_id: call_id.into(),
    }
}

#[test]
fn an_idempotent_call_in_doubt_reruns_under_the_same_id() {
    let mut s = support();
    let t = common::step(
        &mut s,
        common::tool("crm_lookup", json!({"customer_id": "c1"})),
        1,
    );
    let id = common::call_id(&t);
    let t = common::step(&mut s, in_doubt(&id), 50);
    assert_eq!(
        common::kinds(&t),
        [
            "budget_settled",
            "call_in_doubt",
            "budget_reserved",
            "retry_scheduled"
        ]
    );
    let rerun = t.effects.iter().find_map(|e| match e {
        Effect::CallTool {
            call_id, attempt, ..
        } => Some((call_id.clone(), *attempt)),
        _ => None,
    });
    assert_eq!(rerun, Some((id.clone(), 2)));
    // The result of the re-run settles the call normally.
    let t = common::step(&mut s, common::returned(&id, json!({"name": "Ann"})), 60);
    assert!(common::kinds(&t).contains(&"tool_returned"));
}

#[test]
fn a_non_idempotent_call_in_doubt_waits_for_an_approver() {
    let mut s = support();
    let t = common::step(
        &mut s,
        common::tool("issue_refund", json!({"order_id": "ord-1", "amount": 100})),
        1,
    );
    let id = common::call_id(&t);
    let t = common::step(&mut s, in_doubt(&id), 50);
    assert_eq!(
        common::kinds(&t),
        ["budget_settled", "call_in_doubt", "approval_requested"]
    );
    let policies = t.events.iter().find_map(|e| match &e.body {
        EventBody::ApprovalRequested { policies, .. } => Some(policies.clone()),
        _ => None,
    });
    assert_eq!(policies, Some(vec!["base.recovery.in_doubt".to_owned()]));
    // Nothing runs until an approver says so; the approved re-run is a new call.
    assert!(
        t.effects
            .iter()
            .all(|e| !matches!(e, Effect::CallTool { .. }))
    );
    let request_id = s.pending_approval().map(str::to_owned).unwrap_or_default();
    let t = common::step(
        &mut s,
        Intent::Approve {
            user: "sam@shopco".into(),
            request_id,
        },
        60,
    );
    assert!(
        common::kinds(&t).contains(&"tool_called"),
        "{:?}",
        common::kinds(&t)
    );
}

#[test]
fn in_doubt_for_a_call_that_is_not_in_flight_is_refused() {
    let mut s = support();
    let r = s.step(in_doubt("call-9"), 1);
    assert!(matches!(
        r.map_err(|r| r.error),
        Err(StepError::UnknownReference { .. } | StepError::IllegalTransition { .. })
    ));
}
