//! Per-transition cost: bare Cedar over the whole deployed set vs one full `Session::step`.
//!
//! `cargo bench -p benches --bench step`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, EntityUid, Request};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kernel::Intent;
use serde_json::json;

/// The allocator the `arbiter` binary uses (see the README's Performance section).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let deployment = benches::demo();

    // (a) Cedar alone: request, context and entities prebuilt.
    let provenance = json!({"from_user": true, "from_trusted": false, "from_user_or_trusted": true,
        "from_untrusted": false, "novel": false, "labels": [], "embedded_from_untrusted": false,
        "embedded_novel": false});
    let context = Context::from_json_value(
        json!({
            "session": {
                "id": "bench", "tenant": {"__entity": {"type": "Tenant", "id": "acme"}},
                "user": {"__entity": {"type": "User", "id": "alice@acme"}},
                "agent": {"__entity": {"type": "Agent", "id": "assistant@acme"}},
                "steps": 1, "elapsed_ms": 10, "tokens": 0, "cost_spent": 0, "cost_reserved": 0,
                "budget_limit": 2000000, "tool_calls": 0, "model_calls": 0, "attempt": 1, "in_doubt": false, "labels": []
            },
            "history": {"tools_called": [], "emails_recent": 0, "refund_total": 0},
            "input": {"order_id": "ord-1", "amount": 2500},
            "provenance": {"order_id": provenance, "amount": provenance}
        }),
        None,
    )
    .expect("context");
    let uid = |s: &str| EntityUid::from_str(s).expect("uid");
    let request = Request::new(
        uid(r#"Agent::"assistant@acme""#),
        uid(r#"Action::"refund""#),
        uid(r#"Tool::"refund""#),
        context,
        Some(deployment.cedar_schema()),
    )
    .unwrap_or_else(|e| panic!("request: {e}: {e:?}"));
    let authorizer = Authorizer::new();
    let (policies, entities) = (deployment.cedar_policies(), deployment.cedar_entities());
    assert!(
        authorizer
            .is_authorized(&request, policies, entities)
            .decision()
            == cedar_policy::Decision::Allow
    );
    c.bench_function("cedar_is_authorized_full_set", |b| {
        b.iter(|| black_box(authorizer.is_authorized(black_box(&request), policies, entities)))
    });

    // (b) One full step: JSON Schema validation, context from session state, authorization of the
    // call and of the budget reservation, state update, two hashed events.
    c.bench_function("session_step_tool_call", |b| {
        b.iter_batched(
            || benches::started(&deployment),
            |mut s| {
                let intent = Intent::CallTool {
                    tool: "refund".into(),
                    input: json!({"order_id": "ord-1", "amount": 2500}),
                    estimated_cost: 0,
                };
                black_box(s.step(intent, 10).is_ok())
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
