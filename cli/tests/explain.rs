//! `arbiter explain`'s counterfactuals: what would change a denial (a forbid removed, a context
//! value on the other side of a bound, a permit whose conditions do not hold) and, for an allow,
//! the forbids that came closest and the values that would trigger them. Every answer is
//! re-decided by Cedar before it is shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `refund` request of the demo pack with `amount` and the session's `refund_total` so far.
fn refund_context(amount: i64, refunded: i64) -> String {
    let provenance = r#"{"from_user": false, "from_trusted": false, "from_user_or_trusted": false,
        "from_untrusted": false, "novel": true, "labels": [], "embedded_from_untrusted": false, "embedded_novel": false}"#;
    format!(
        r#"{{"session": {session},
            "history": {{"tools_called": [], "emails_recent": 0, "refund_total": {refunded}}},
            "input": {{"order_id": "ord-1", "amount": {amount}}},
            "provenance": {{"order_id": {provenance}, "amount": {provenance}}}}}"#,
        session = session()
    )
}

fn session() -> &'static str {
    r#"{"id": "x", "tenant": {"__entity": {"type": "Tenant", "id": "acme"}},
        "user": {"__entity": {"type": "User", "id": "alice@acme"}},
        "agent": {"__entity": {"type": "Agent", "id": "assistant@acme"}},
        "steps": 0, "elapsed_ms": 0, "tokens": 0, "cost_spent": 0, "cost_reserved": 0,
        "budget_limit": 2000000, "tool_calls": 0, "model_calls": 0, "attempt": 1,
        "in_doubt": false, "labels": []}"#
}

fn explain(principal: &str, action: &str, resource: &str, context: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["explain", "--pack", "demo", "--principal", principal])
        .args([
            "--action",
            action,
            "--resource",
            resource,
            "--context",
            context,
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refund(amount: i64, refunded: i64) -> String {
    explain(
        "Agent::\"assistant@acme\"",
        "refund",
        "Tool::\"refund\"",
        &refund_context(amount, refunded),
    )
}

#[test]
fn a_denial_by_two_forbids_names_each_and_the_values_that_step_across_them() {
    let t = refund(20000, 45000);
    for line in [
        "would change: demo.refund.approval without it: deny by [demo.refund.cap]",
        "would change: demo.refund.approval + demo.refund.cap without all of them: allow by [base.permit.tools, demo.refund.permit]",
        // `amount > 10000`: the nearest amount that does not ask for approval.
        "would change: context.input.amount = 10000 (was 20000), stepping across demo.refund.approval: deny by [demo.refund.cap]",
        // `refund_total + amount > 50000`, solved for each attribute with the other kept.
        "would change: context.history.refund_total = 30000 (was 45000), stepping across demo.refund.cap: deny by [demo.refund.approval]",
        "would change: context.input.amount = 5000 (was 20000), stepping across demo.refund.cap: allow by [base.permit.tools, demo.refund.permit]",
    ] {
        assert!(t.contains(line), "missing `{line}` in:\n{t}");
    }
}

#[test]
fn an_allow_names_the_closest_forbids_and_what_would_trigger_them() {
    let t = refund(3000, 0);
    assert!(t.contains("decision:    Allow"), "{t}");
    for line in [
        "closest:     demo.refund.approval — holds: —; fails: context.input.amount > 10000",
        "would stop:  context.input.amount = 10001 (was 3000), by demo.refund.approval: deny by [demo.refund.approval]",
        "would stop:  context.history.refund_total = 47001 (was 0), by demo.refund.cap: deny by [demo.refund.cap]",
        "would stop:  context.session.in_doubt = true (was false), by base.recovery.in_doubt: deny by [base.recovery.in_doubt]",
    ] {
        assert!(t.contains(line), "missing `{line}` in:\n{t}");
    }
}

#[test]
fn a_denial_for_want_of_a_permit_names_the_permits_whose_conditions_fail() {
    let context = format!(
        r#"{{"session": {}, "history": {{"tools_called": [], "emails_recent": 0, "refund_total": 0}}, "reason": "done"}}"#,
        session()
    );
    let t = explain(
        "User::\"bob@acme\"",
        "cancel",
        "Agent::\"assistant@acme\"",
        &context,
    );
    assert!(t.contains("decision:    Deny (NotPermitted)"), "{t}");
    for line in [
        "would change: base.permit.cancel.own with its conditions dropped: allow by [base.permit.cancel.own]",
        "would change: base.permit.cancel.operator with its conditions dropped: allow by [base.permit.cancel.operator]",
    ] {
        assert!(t.contains(line), "missing `{line}` in:\n{t}");
    }
}
