//! The session state machine against the shipped base + demo packs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use kernel::{Basis, Effect, EventBody, Intent, Mode, Session, Status, StepError, Verdict};
use serde_json::json;

#[test]
fn a_session_runs_from_start_to_completion() {
    let mut s = Session::new(demo(), config(Mode::Enforce)).expect("session");
    assert_eq!(s.status(), Status::Created);
    let t = step(
        &mut s,
        Intent::Start {
            request: "hi".into(),
        },
        5,
    );
    assert_eq!(kinds(&t), ["session_started"]);
    assert_eq!(s.status(), Status::Running);

    let t = step(
        &mut s,
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 500,
            estimated_cost: 300,
        },
        10,
    );
    assert_eq!(kinds(&t), ["budget_reserved", "model_called"]);
    assert_eq!(s.status(), Status::WaitingModel);
    let id = call_id(&t);
    let t = step(
        &mut s,
        Intent::ModelResponded {
            call_id: id,
            input_tokens: 200,
            output_tokens: 100,
            cost: 250,
            output: json!("ok"),
        },
        20,
    );
    assert_eq!(kinds(&t), ["budget_settled", "model_responded"]);
    assert_eq!(s.cost_spent(), 250);

    let t = step(&mut s, tool("web_search", json!({"query": "rust"})), 30);
    assert_eq!(s.status(), Status::WaitingTool);
    let t = step(&mut s, returned(&call_id(&t), json!(["result"])), 40);
    assert_eq!(kinds(&t), ["budget_settled", "tool_returned"]);
    let t = step(
        &mut s,
        Intent::Complete {
            answer: "done".into(),
        },
        50,
    );
    assert_eq!(kinds(&t), ["completed"]);
    assert_eq!(s.status(), Status::Completed);
    assert_eq!(s.steps(), 2);
}

#[test]
fn a_denied_tool_call_produces_no_effect() {
    let mut s = started();
    let t = step(
        &mut s,
        tool("wire_transfer", json!({"iban": "DE00", "amount": 5})),
        1,
    );
    let d = t.decision.clone().expect("decision");
    assert_eq!(d.effect, Verdict::Deny);
    assert_eq!(
        d.basis,
        Basis::NotPermitted,
        "no permit covers a critical tool"
    );
    assert!(t.effects.is_empty());
    assert_eq!(kinds(&t), ["decision"]);
    assert_eq!(s.status(), Status::Running);
}

#[test]
fn forbidden_is_told_apart_from_not_permitted_and_names_the_policy() {
    let mut s = started();
    let t = step(&mut s, tool("web_search", json!({"query": "x"})), 1);
    step(&mut s, returned(&call_id(&t), json!("page")), 2);
    assert_eq!(s.labels().collect::<Vec<_>>(), ["untrusted"]);
    let t = step(
        &mut s,
        tool("send_email", json!({"to": "a@b.example", "subject": "s"})),
        3,
    );
    let d = t.decision.clone().expect("decision");
    assert_eq!((d.effect, d.basis), (Verdict::Deny, Basis::Forbidden));
    assert_eq!(
        d.policies.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["base.flow.no_egress_after_untrusted"]
    );
    assert!(t.effects.is_empty());
}

#[test]
fn illegal_transitions_are_rejected_with_an_event_and_change_nothing() {
    let mut s = started();
    let r = s
        .step(returned("call-99", json!(null)), 1)
        .expect_err("no such call");
    assert!(matches!(r.error, StepError::UnknownReference { ref id, .. } if id == "call-99"));
    assert_eq!(r.event.body.kind(), "rejected");
    assert_eq!(s.status(), Status::Running);

    let r = s
        .step(
            Intent::Start {
                request: "again".into(),
            },
            1,
        )
        .expect_err("already started");
    assert!(matches!(r.error, StepError::IllegalTransition { .. }));

    let r = s.step(Intent::Tick, 1).map(|_| ());
    assert!(r.is_ok(), "same time is fine");
    step(&mut s, Intent::Tick, 10);
    let r = s.step(Intent::Tick, 5).expect_err("time went backwards");
    assert_eq!(r.error, StepError::ClockWentBackwards { now: 5, last: 10 });

    step(&mut s, Intent::Complete { answer: "x".into() }, 20);
    for intent in [
        Intent::Tick,
        tool("web_search", json!({"query": "q"})),
        Intent::Complete { answer: "y".into() },
    ] {
        let r = s.step(intent, 30).expect_err("terminal");
        assert!(
            matches!(r.error, StepError::IllegalTransition { ref status, .. } if status == "completed")
        );
    }
    assert_eq!(s.status(), Status::Completed);

    let mut s = started();
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 1);
    let r = s.step(
        Intent::ModelResponded {
            call_id: call_id(&t),
            input_tokens: 1,
            output_tokens: 1,
            cost: 0,
            output: json!(null),
        },
        2,
    );
    assert!(r.is_err(), "a model response for a tool call is refused");
    let r = s
        .step(tool("web_search", json!({"query": "q"})), 2)
        .expect_err("one call at a time");
    assert!(
        matches!(r.error, StepError::IllegalTransition { ref status, .. } if status == "waiting_tool")
    );
}

#[test]
fn arguments_failing_the_json_schema_are_a_recorded_rejection() {
    let mut s = started();
    let r = s
        .step(tool("refund", json!({"order_id": "42", "amount": -5})), 1)
        .expect_err("invalid");
    let StepError::InvalidArguments { tool: name, errors } = &r.error else {
        panic!("{:?}", r.error)
    };
    assert_eq!(name, "refund");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"/amount") && paths.contains(&"/order_id"),
        "{paths:?}"
    );
    match &r.event.body {
        EventBody::Rejected { error, .. } => assert_eq!(error, &r.error),
        other => panic!("{other:?}"),
    }
    let r = s
        .step(tool("no_such_tool", json!({})), 1)
        .expect_err("unknown");
    assert_eq!(
        r.error,
        StepError::UnknownTool {
            tool: "no_such_tool".into()
        }
    );
    let r = s
        .step(
            tool("wire_transfer", json!({"iban": "x", "amount": 1.000_01})),
            1,
        )
        .expect_err("decimal");
    assert!(
        r.error.to_string().contains("4 decimal places"),
        "{}",
        r.error
    );
    assert_eq!(s.status(), Status::Running);
    assert_eq!(s.steps(), 0);
}

#[test]
fn typed_arguments_reach_policies() {
    let mut s = started();
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-1", "amount": 10_000})),
        1,
    );
    assert!(
        t.decision.clone().expect("d").allowed(),
        "exactly at the threshold needs no approval"
    );
    step(&mut s, returned(&call_id(&t), json!({})), 2);
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-2", "amount": 10_001})),
        3,
    );
    assert_eq!(s.status(), Status::WaitingApproval);
    assert_eq!(kinds(&t), ["approval_requested"]);
}

#[test]
fn obligations_come_from_the_determining_permits_strictest_first() {
    let mut s = started();
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 1);
    let Some(Effect::CallTool { obligations, .. }) = t.effects.first() else {
        panic!("{:?}", t.effects)
    };
    assert_eq!(
        (obligations.timeout_ms, obligations.max_retries),
        (Some(30_000), Some(2))
    );
    step(&mut s, returned(&call_id(&t), json!(1)), 2);
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-1", "amount": 5})),
        3,
    );
    let Some(Effect::CallTool { obligations, .. }) = t.effects.first() else {
        panic!("{:?}", t.effects)
    };
    assert_eq!(
        (obligations.timeout_ms, obligations.max_retries),
        (Some(5_000), Some(1))
    );
}

#[test]
fn retries_follow_max_retries_with_backoff_and_are_reauthorized() {
    let mut s = started();
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 0);
    let id = call_id(&t);
    let fail = |id: &str| Intent::CallFailed {
        call_id: id.into(),
        error: "503".into(),
        retryable: true,
        cost: 0,
        jitter_ms: 0,
    };
    let t = step(&mut s, fail(&id), 100);
    assert_eq!(
        kinds(&t),
        [
            "budget_settled",
            "call_failed",
            "budget_reserved",
            "retry_scheduled"
        ]
    );
    let Some(Effect::CallTool {
        attempt,
        not_before_ms,
        ..
    }) = t.effects.first()
    else {
        panic!()
    };
    assert_eq!((*attempt, *not_before_ms), (2, 200));
    let d = t.decision.clone().expect("retry decision");
    assert!(d.allowed());
    let t = step(&mut s, fail(&id), 300);
    let Some(Effect::CallTool {
        attempt,
        not_before_ms,
        ..
    }) = t.effects.first()
    else {
        panic!()
    };
    assert_eq!((*attempt, *not_before_ms), (3, 500), "backoff doubles");
    let t = step(&mut s, fail(&id), 600);
    assert!(
        t.effects.is_empty(),
        "max_retries 2 means three attempts in all"
    );
    assert!(matches!(
        t.events.last().map(|e| &e.body),
        Some(EventBody::CallFailed {
            will_retry: false,
            ..
        })
    ));
    assert_eq!(s.status(), Status::Running);
    assert_eq!(s.steps(), 1, "retries are attempts, not steps");

    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 700);
    let id = call_id(&t);
    let t = step(
        &mut s,
        Intent::CallFailed {
            call_id: id,
            error: "bad request".into(),
            retryable: false,
            cost: 0,
            jitter_ms: 0,
        },
        800,
    );
    assert!(t.effects.is_empty(), "permanent errors are not retried");
}

#[test]
fn a_retry_is_denied_when_policy_caps_the_attempt_number() {
    let deployment = demo_with(
        "@id(\"test.one_retry\") forbid (principal, action in Action::\"call_tool\", resource) \
         when { context.session.attempt > 2 };",
    );
    let mut s = started_on(deployment, config(Mode::Enforce));
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 0);
    let id = call_id(&t);
    let fail = Intent::CallFailed {
        call_id: id.clone(),
        error: "503".into(),
        retryable: true,
        cost: 0,
        jitter_ms: 0,
    };
    assert_eq!(step(&mut s, fail.clone(), 1).effects.len(), 1);
    let t = step(&mut s, fail, 2);
    assert!(t.effects.is_empty());
    let d = t.decision.clone().expect("denied retry");
    assert_eq!(d.policies[0].id, "test.one_retry");
}

#[test]
fn approval_waits_then_lifts_exactly_the_annotated_policies_for_that_request() {
    let mut s = started();
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-7", "amount": 20_000})),
        1,
    );
    assert!(t.effects.is_empty());
    let EventBody::ApprovalRequested {
        request_id,
        policies,
        expires_at_ms,
        ..
    } = &t.events[0].body
    else {
        panic!("{:?}", t.events)
    };
    assert_eq!(policies, &["demo.refund.approval"]);
    assert_eq!(*expires_at_ms, Some(600_001));
    let request_id = request_id.clone();

    // Alice is not an approver: her approval is denied and the request keeps waiting.
    let t = step(
        &mut s,
        Intent::Approve {
            user: "alice@acme".into(),
            request_id: request_id.clone(),
        },
        2,
    );
    assert!(!t.decision.clone().expect("d").allowed());
    assert!(t.effects.is_empty());
    assert_eq!(s.status(), Status::WaitingApproval);
    // An approver from another tenant cannot approve either.
    let t = step(
        &mut s,
        Intent::Approve {
            user: "gina@globex".into(),
            request_id: request_id.clone(),
        },
        3,
    );
    assert_eq!(
        t.decision.clone().expect("d").policies[0].id,
        "base.tenant.principal"
    );
    assert_eq!(s.status(), Status::WaitingApproval);

    let t = step(
        &mut s,
        Intent::Approve {
            user: "bob@acme".into(),
            request_id,
        },
        4,
    );
    assert_eq!(
        kinds(&t),
        ["approval_granted", "budget_reserved", "tool_called"]
    );
    let called = t
        .events
        .last()
        .and_then(|e| e.decision.clone())
        .expect("decision");
    assert_eq!(called.lifted, ["demo.refund.approval"]);
    assert!(called.allowed());
    assert!(matches!(t.effects.as_slice(), [Effect::CallTool { tool, .. }] if tool == "refund"));
    step(&mut s, returned(&call_id(&t), json!({})), 5);

    // The next refund over the threshold needs its own approval.
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-8", "amount": 15_000})),
        6,
    );
    assert_eq!(kinds(&t), ["approval_requested"]);
    let EventBody::ApprovalRequested { request_id, .. } = &t.events[0].body else {
        panic!()
    };
    let t = step(
        &mut s,
        Intent::Approve {
            user: "bob@acme".into(),
            request_id: request_id.clone(),
        },
        7,
    );
    step(&mut s, returned(&call_id(&t), json!({})), 8);

    // 20,000 + 15,000 spent: 20,000 more passes the $500 cap, which no approval lifts.
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-9", "amount": 20_000})),
        9,
    );
    let d = t.decision.clone().expect("d");
    assert_eq!(
        kinds(&t),
        ["decision"],
        "a non-approval forbid denies outright"
    );
    let ids: Vec<&str> = d.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["demo.refund.approval", "demo.refund.cap"]);
}

#[test]
fn a_rejected_or_expired_approval_denies() {
    let mut s = started();
    let t = step(
        &mut s,
        tool("delete_records", json!({"customer_ids": ["c1"]})),
        1,
    );
    let EventBody::ApprovalRequested {
        request_id,
        policies,
        ..
    } = &t.events[0].body
    else {
        panic!()
    };
    assert_eq!(policies, &["base.approval.high_risk"]);
    let t = step(
        &mut s,
        Intent::Reject {
            user: "bob@acme".into(),
            request_id: request_id.clone(),
            reason: "no".into(),
        },
        2,
    );
    assert_eq!(kinds(&t), ["approval_rejected"]);
    assert!(t.effects.is_empty());
    assert_eq!(s.status(), Status::Running);

    let t = step(
        &mut s,
        tool("delete_records", json!({"customer_ids": ["c1"]})),
        10,
    );
    let EventBody::ApprovalRequested {
        request_id,
        expires_at_ms,
        ..
    } = &t.events[0].body
    else {
        panic!()
    };
    assert_eq!(*expires_at_ms, Some(300_010));
    let t = step(&mut s, Intent::Tick, 300_009);
    assert_eq!(kinds(&t), ["clock_ticked"]);
    let t = step(&mut s, Intent::Tick, 300_010);
    assert_eq!(kinds(&t), ["clock_ticked", "approval_expired"]);
    assert_eq!(s.status(), Status::Running);
    let r = s.step(
        Intent::Approve {
            user: "bob@acme".into(),
            request_id: request_id.clone(),
        },
        300_011,
    );
    assert!(r.is_err(), "an expired request cannot be approved");
}

#[test]
fn a_cedar_evaluation_error_denies_and_is_recorded() {
    // This forbid overflows for any positive amount; Cedar skips erroring policies, so without
    // failing closed the base permit would allow the spend.
    let deployment = demo_with(
        "@id(\"test.overflow\") forbid (principal, action == Action::\"spend_budget\", resource) \
         when { context.amount * 9223372036854775807 > 0 };",
    );
    let mut s = started_on(deployment, config(Mode::Enforce));
    let t = step(
        &mut s,
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 10,
            estimated_cost: 2,
        },
        1,
    );
    let d = t.decision.clone().expect("d");
    assert_eq!((d.effect, d.basis), (Verdict::Deny, Basis::Error));
    // The policy that erred is named as such; `policies` keeps the satisfied permit, as Cedar
    // reports it (issue 16, smaller).
    assert_eq!(d.erred, ["test.overflow"]);
    assert!(d.policies.iter().all(|p| p.id != "test.overflow"));
    assert!(
        d.errors
            .iter()
            .any(|e| e.contains("test.overflow") && e.contains("overflow")),
        "{:?}",
        d.errors
    );
    assert!(t.effects.is_empty());
    // The call's own decision (allowed), then the reservation's (the error that denied it).
    assert_eq!(kinds(&t), ["decision", "decision"]);
    assert!(t.events[0].decision.as_ref().is_some_and(|d| d.allowed()));
    assert!(
        t.events[1]
            .decision
            .as_ref()
            .is_some_and(|d| !d.errors.is_empty()),
        "the event records why"
    );
}

#[test]
fn budgets_are_reserved_before_and_settled_after_with_violations_recorded() {
    let mut s = started();
    let t = step(
        &mut s,
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 10,
            estimated_cost: 1_000,
        },
        1,
    );
    assert!(matches!(
        t.events[0].body,
        EventBody::BudgetReserved { amount: 1_000, .. }
    ));
    let t = step(
        &mut s,
        Intent::ModelResponded {
            call_id: call_id(&t),
            input_tokens: 5,
            output_tokens: 5,
            cost: 1_500,
            output: json!(""),
        },
        2,
    );
    assert!(matches!(
        t.events[0].body,
        EventBody::BudgetSettled {
            reserved: 1_000,
            actual: 1_500,
            violation: true,
            ..
        }
    ));
    assert_eq!(s.cost_spent(), 1_500);

    // The acme budget is 2,000,000: a call estimated past what is left stops the session.
    let t = step(
        &mut s,
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 10,
            estimated_cost: 1_998_501,
        },
        3,
    );
    assert_eq!(kinds(&t), ["decision", "decision", "limit_reached"]);
    assert!(
        matches!(&t.events[2].body, EventBody::LimitReached { limit, .. } if limit == "budget")
    );
    assert!(t.effects.is_empty());
    assert_eq!(s.status(), Status::LimitReached);
}

#[test]
fn a_model_the_entity_store_does_not_know_is_never_called() {
    let mut s = started();
    let t = step(
        &mut s,
        Intent::CallModel {
            model: "unheard-of".into(),
            estimated_tokens: 10,
            estimated_cost: 1,
        },
        1,
    );
    let d = t.decision.clone().expect("d");
    assert!(!d.allowed());
    assert!(
        d.policies.iter().any(|p| p.id == "base.model.known"),
        "{d:?}"
    );
    assert!(t.effects.is_empty());
}

#[test]
fn the_step_limit_stops_the_session() {
    let mut s = started();
    for i in 0..50 {
        let t = step(
            &mut s,
            Intent::WriteMemory {
                scope: "acme/notes".into(),
                key: format!("k{i}"),
                value: json!(i),
            },
            i,
        );
        assert!(t.decision.clone().expect("d").allowed(), "step {i}");
    }
    let t = step(
        &mut s,
        Intent::WriteMemory {
            scope: "acme/notes".into(),
            key: "k50".into(),
            value: json!(50),
        },
        60,
    );
    assert!(t.effects.is_empty());
    assert!(
        matches!(&t.events.last().map(|e| &e.body), Some(EventBody::LimitReached { limit, .. }) if limit == "steps")
    );
    assert_eq!(s.status(), Status::LimitReached);
}

#[test]
fn a_clock_tick_past_the_time_limit_stops_a_session_even_mid_tool() {
    let mut s = started();
    let t = step(&mut s, tool("web_search", json!({"query": "hangs"})), 1_000);
    let id = call_id(&t);
    let t = step(&mut s, Intent::Tick, 600_000);
    assert_eq!(kinds(&t), ["clock_ticked"]);
    let t = step(&mut s, Intent::Tick, 600_001);
    assert_eq!(
        t.effects,
        [Effect::Abort {
            call_id: id.clone()
        }]
    );
    assert_eq!(kinds(&t), ["budget_settled", "limit_reached"]);
    assert_eq!(s.status(), Status::LimitReached);
    let r = s
        .step(returned(&id, json!("late")), 700_000)
        .expect_err("late result");
    assert!(matches!(r.error, StepError::IllegalTransition { .. }));
}

#[test]
fn a_user_can_cancel_mid_tool_but_not_across_tenants() {
    let mut s = started();
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 1);
    let id = call_id(&t);
    let t = step(
        &mut s,
        Intent::Cancel {
            user: "gina@globex".into(),
            reason: "mine now".into(),
        },
        2,
    );
    assert!(!t.decision.clone().expect("d").allowed());
    assert_eq!(s.status(), Status::WaitingTool);
    let t = step(
        &mut s,
        Intent::Cancel {
            user: "alice@acme".into(),
            reason: "changed my mind".into(),
        },
        3,
    );
    assert_eq!(t.effects, [Effect::Abort { call_id: id }]);
    assert_eq!(kinds(&t), ["budget_settled", "cancelled"]);
    assert_eq!(s.status(), Status::Cancelled);
}

#[test]
fn labels_flow_through_memory_into_later_sessions() {
    let deployment = demo();
    let mut s = started_on(deployment.clone(), config(Mode::Enforce));
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 1);
    step(&mut s, returned(&call_id(&t), json!("injected text")), 2);
    let t = step(
        &mut s,
        Intent::WriteMemory {
            scope: "acme/notes".into(),
            key: "summary".into(),
            value: json!("..."),
        },
        3,
    );
    let stored = match t.effects.as_slice() {
        [Effect::WriteMemory { labels, .. }] => labels.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(stored, ["untrusted"]);

    let mut later = started_on(
        deployment,
        kernel::SessionConfig {
            id: "s2".into(),
            ..config(Mode::Enforce)
        },
    );
    let t = step(
        &mut later,
        Intent::ReadMemory {
            scope: "acme/notes".into(),
            key: "summary".into(),
        },
        1,
    );
    let read_id = match t.effects.as_slice() {
        [Effect::ReadMemory { read_id, .. }] => read_id.clone(),
        other => panic!("{other:?}"),
    };
    let t = step(
        &mut later,
        Intent::MemoryLoaded {
            read_id,
            value: Some(json!("...")),
            labels: stored,
        },
        2,
    );
    assert!(
        matches!(&t.events[0].body, EventBody::MemoryLoaded { labels_added, .. } if labels_added == &["untrusted"])
    );
    let t = step(
        &mut later,
        tool("send_email", json!({"to": "a@b.example", "subject": "s"})),
        3,
    );
    assert!(
        !t.decision.clone().expect("d").allowed(),
        "the reader inherits the taint"
    );
}

#[test]
fn tenants_cannot_reach_each_others_memory_tools_or_agents() {
    let mut s = started();
    let t = step(
        &mut s,
        Intent::ReadMemory {
            scope: "globex/notes".into(),
            key: "k".into(),
        },
        1,
    );
    assert_eq!(
        t.decision.clone().expect("d").policies[0].id,
        "base.tenant.memory"
    );
    let t = step(
        &mut s,
        Intent::WriteMemory {
            scope: "nowhere".into(),
            key: "k".into(),
            value: json!(1),
        },
        2,
    );
    assert!(
        !t.decision.clone().expect("d").allowed(),
        "an unknown scope is in no tenant"
    );
    let t = step(&mut s, tool("globex_ledger", json!({})), 3);
    assert_eq!(
        t.decision.clone().expect("d").policies[0].id,
        "base.tenant.tool"
    );

    // A session of another tenant's agent does not even start inside acme.
    let cfg = kernel::SessionConfig {
        agent: "assistant@globex".into(),
        ..config(Mode::Enforce)
    };
    let mut s = Session::new(demo(), cfg).expect("session");
    let t = step(
        &mut s,
        Intent::Start {
            request: "hi".into(),
        },
        0,
    );
    assert_eq!(
        t.decision.clone().expect("d").policies[0].id,
        "base.tenant.start"
    );
    assert_eq!(s.status(), Status::Failed);
    let t = s.step(tool("web_search", json!({"query": "q"})), 1);
    assert!(t.is_err(), "nothing runs after a refused start");
}

#[test]
fn history_counters_drive_windowed_and_summed_limits() {
    let mut s = started();
    let email = || tool("send_email", json!({"to": "c@d.example", "subject": "s"}));
    for now in [0, 10, 20] {
        let t = step(&mut s, email(), now);
        step(&mut s, returned(&call_id(&t), json!("sent")), now + 1);
    }
    let t = step(&mut s, email(), 30);
    assert_eq!(
        t.decision.clone().expect("d").policies[0].id,
        "demo.email.rate"
    );
    let t = step(&mut s, email(), 300_000);
    assert!(
        t.decision.clone().expect("d").allowed(),
        "the first email left the 5-minute window"
    );
    step(&mut s, returned(&call_id(&t), json!("sent")), 300_001);

    for (i, amount) in [10_000, 10_000, 10_000, 10_000, 10_000]
        .into_iter()
        .enumerate()
    {
        let now = 300_100 + 2 * i as u64;
        let t = step(
            &mut s,
            tool(
                "refund",
                json!({"order_id": format!("ord-{i}"), "amount": amount}),
            ),
            now,
        );
        assert!(t.decision.clone().expect("d").allowed());
        step(&mut s, returned(&call_id(&t), json!({})), now + 1);
    }
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-9", "amount": 1})),
        300_200,
    );
    assert_eq!(
        t.decision.clone().expect("d").policies[0].id,
        "demo.refund.cap"
    );
}

#[test]
fn log_only_records_denials_but_lets_effects_proceed() {
    let mut s = started_on(demo(), config(Mode::LogOnly));
    let t = step(
        &mut s,
        tool("wire_transfer", json!({"iban": "DE00", "amount": 5})),
        1,
    );
    let d = t.decision.clone().expect("d");
    assert_eq!((d.effect, d.mode), (Verdict::Deny, Mode::LogOnly));
    assert!(matches!(t.effects.as_slice(), [Effect::CallTool { .. }]));
    assert_eq!(s.status(), Status::WaitingTool);
}

#[test]
fn a_session_needs_an_existing_budget() {
    let cfg = kernel::SessionConfig {
        budget: "nope".into(),
        ..config(Mode::Enforce)
    };
    let err = Session::new(demo(), cfg).err().expect("no budget");
    assert!(err.to_string().contains("nope"), "{err}");
}

/// `depth` arrays inside each other around a string.
fn nested(depth: usize) -> serde_json::Value {
    let mut v = json!("bottom");
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

/// JSON nested near serde_json's reading limit (128) from a tool or model was recorded but could
/// not be read back (the event adds levels). Intake now bounds it well below every reader's
/// limit: a too-deep result is the call's failure, too-deep arguments a rejection — and the log
/// always reads back.
#[test]
fn too_deeply_nested_data_is_refused_at_intake_and_the_log_reads_back() {
    use kernel::event::{decode_jsonl, encode_jsonl};
    let mut s = started();
    let mut log = Vec::new();

    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 1);
    let id = call_id(&t);
    log.extend(t.events);
    let t = step(&mut s, returned(&id, nested(125)), 2);
    assert!(kinds(&t).contains(&"call_failed"), "{:?}", kinds(&t));
    assert!(
        t.events.iter().any(|e| serde_json::to_string(e)
            .unwrap_or_default()
            .contains("nested deeper than 64")),
        "{:?}",
        t.events
    );
    log.extend(t.events);

    // Just inside the bound, the output is taken as it is.
    let t = step(&mut s, tool("web_search", json!({"query": "r"})), 3);
    let id = call_id(&t);
    log.extend(t.events);
    let t = step(&mut s, returned(&id, nested(kernel::MAX_JSON_DEPTH - 1)), 4);
    assert!(kinds(&t).contains(&"tool_returned"), "{:?}", kinds(&t));
    log.extend(t.events);

    // Arguments too deep are rejected before any policy runs.
    let err = s
        .step(
            tool("web_search", json!({"query": "q", "x": nested(100)})),
            5,
        )
        .expect_err("too deep");
    assert!(err.to_string().contains("nested deeper than 64"), "{err}");
    log.push(*err.event);

    let text = encode_jsonl(&log);
    assert_eq!(decode_jsonl(&text).expect("reads back"), log);
}

/// An argument the tool's schema does not declare would reach the tool while no policy could see
/// it (a `bcc` to an outside address). Records are closed: it is refused, naming the argument,
/// even where the schema leaves `additionalProperties` open (issue 16, 4).
#[test]
fn an_argument_the_schema_does_not_declare_is_refused() {
    let mut s = started();
    let err = s
        .step(
            tool(
                "read_crm",
                json!({"customer_id": "c1", "bcc": "eve@evil.example"}),
            ),
            1,
        )
        .expect_err("undeclared argument");
    match &err.error {
        kernel::StepError::InvalidArguments { errors, .. } => {
            assert!(
                errors
                    .iter()
                    .any(|e| e.path == "/bcc" && e.message.contains("not declared")),
                "{errors:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Declared arguments alone still go through.
    let t = step(&mut s, tool("read_crm", json!({"customer_id": "c1"})), 2);
    assert!(kinds(&t).contains(&"tool_called"), "{:?}", kinds(&t));
}

/// `@approval("cfo")` names the role the approver must hold, on top of being an approver: the
/// approve request's `context.approval_roles` carries every role the lifted policies name and
/// `base.approval.role` forbids an approver without all of them (issue 16, 4).
#[test]
fn an_approval_annotation_names_the_role_the_approver_must_hold() {
    let built = kernel::pack::builder_for(&root(), &["demo"])
        .expect("packs")
        .policies(kernel::Source::new(
            "cfo.cedar",
            r#"@id("cfo.large_refund")
               @approval("cfo")
               forbid (principal, action == Action::"refund", resource)
               when { context.input.amount > 30000 };"#,
        ))
        .entities(kernel::Source::new(
            "cfo.json",
            r#"[{ "uid": { "type": "User", "id": "carl@acme" },
                  "attrs": { "roles": ["approver", "cfo"] },
                  "parents": [{ "type": "Tenant", "id": "acme" }] }]"#,
        ))
        .build()
        .expect("builds");
    let mut s = started_on(std::sync::Arc::new(built), config(Mode::Enforce));
    let t = step(
        &mut s,
        tool("refund", json!({"order_id": "ord-7", "amount": 35_000})),
        1,
    );
    let request_id = match &t.events[0].body {
        EventBody::ApprovalRequested {
            request_id,
            policies,
            ..
        } => {
            assert_eq!(policies, &["cfo.large_refund", "demo.refund.approval"]);
            request_id.clone()
        }
        other => panic!("{other:?}"),
    };
    // Bob is an approver but not a CFO.
    let t = step(
        &mut s,
        Intent::Approve {
            user: "bob@acme".into(),
            request_id: request_id.clone(),
        },
        2,
    );
    let d = t.decision.expect("decided");
    assert!(!d.allowed());
    assert_eq!(d.policies[0].id, "base.approval.role");
    assert_eq!(s.status(), Status::WaitingApproval);
    // Carl is both.
    let t = step(
        &mut s,
        Intent::Approve {
            user: "carl@acme".into(),
            request_id,
        },
        3,
    );
    assert_eq!(kinds(&t)[0], "approval_granted");
}
