//! Failover for real: two `arbiter serve` processes on one PostgreSQL store run 200 hosted
//! support runs, each a lookup (an idempotent tool) then a refund (a non-idempotent one), both
//! real programs that record every effect in a file and linger so the kill lands mid-call. One
//! process is SIGKILLed mid-run; the other takes its runs over once their leases expire. Then:
//! every run is settled (completed, or waiting for an approver because its refund was in doubt);
//! every log verifies, signatures included, and re-checks; no refund ran twice, and no lookup's
//! effect landed twice; every effect is in a log and every recorded result has its effect; runs
//! of the dead instance were continued by the live one under a new fencing token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../eval/tests/common/mod.rs"]
mod common;
mod served;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use kernel::EventBody;
use runtime::store::{PostgresStore, SessionStore};
use served::hosted::{agent_file, fake_model, script};
use served::{Served, request};

const RUNS: usize = 200;
const LEASE_MS: u64 = 1500;
/// The instances sign with this seed (through `ARBITER_SIGNING_KEY`).
const SEED: &str = "0202020202020202020202020202020202020202020202020202020202020202";

fn status(addr: &str, token: &str, id: &str) -> String {
    let (code, body) = request(addr, "GET", &format!("/v1/sessions/{id}"), Some(token), "");
    assert_eq!(code, 200, "{id}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["status"].as_str().unwrap().to_owned()
}

#[test]
fn a_killed_instance_s_runs_are_taken_over_with_nothing_lost_or_repeated() {
    let Some(db) = common::PgSchema::new("failover") else {
        return;
    };
    let dir = common::scratch("failover");
    let lookups = dir.join("lookups");
    let lookups_raw = dir.join("lookups.raw");
    let refunds = dir.join("refunds");
    // Idempotent: records every invocation, applies its effect once per call id.
    let lookup = script(
        &dir,
        "lookup.sh",
        &format!(
            "echo \"$ARBITER_IDEMPOTENCY_KEY\" >> {raw}\nflock {lock} sh -c 'grep -qx \"$ARBITER_IDEMPOTENCY_KEY\" {done} 2>/dev/null || echo \"$ARBITER_IDEMPOTENCY_KEY\" >> {done}'\nsleep 0.3\necho '{{\"status\": \"delivered\", \"amount\": 1999, \"customer_id\": \"cust-7\"}}'\n",
            raw = lookups_raw.display(),
            lock = dir.join("lookups.lock").display(),
            done = lookups.display()
        ),
    );
    // Not idempotent: every invocation is a refund.
    let refund = script(
        &dir,
        "refund.sh",
        &format!(
            "echo \"$ARBITER_IDEMPOTENCY_KEY\" >> {refunds}\nsleep 0.3\necho \"{{\\\"refund_id\\\": \\\"rf-$ARBITER_IDEMPOTENCY_KEY\\\", \\\"amount\\\": 500}}\"\n",
            refunds = refunds.display()
        ),
    );
    let (model, model_url) = fake_model(&dir, 500);
    let agent = agent_file(&dir, &model_url, &lookup, &refund);
    let tokens = dir.join("tokens.toml");
    let token = served::token(&tokens);
    let agent_arg = format!("support={}", agent.display());
    let lease = LEASE_MS.to_string();
    let start = |name: &str| {
        Served::start_with(
            &tokens,
            &[
                "--store",
                &db.url,
                "--instance",
                name,
                "--lease-ms",
                &lease,
                "--agent",
                &agent_arg,
            ],
            &[("ARBITER_SIGNING_KEY", SEED)],
        )
    };
    let a = start("a");
    let b = start("b");
    let (a_addr, b_addr) = (a.addr().to_owned(), b.addr().to_owned());

    // 200 runs, alternately on each instance.
    let ids: Vec<String> = (0..RUNS).map(|i| format!("r-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let addr = if i % 2 == 0 { &a_addr } else { &b_addr };
        let body = format!(
            r#"{{"id":"{id}","agent":"support","request":"Order ord-1001 arrived broken. Please refund it."}}"#
        );
        let (code, answer) = request(addr, "POST", "/v1/runs", Some(&token), &body);
        assert!(code == 201 || code == 200, "{id}: {code} {answer}");
    }
    // Mid-run: A's runs are in their lookups or refunds.
    std::thread::sleep(Duration::from_millis(450));
    a.kill();
    let killed = Instant::now();

    // B serves A's runs (reads, then takeover): every run settles.
    let settled = |s: &str| matches!(s, "completed" | "waiting_approval" | "failed" | "cancelled");
    let deadline = killed + Duration::from_secs(120);
    let mut pending: BTreeSet<String> = ids.iter().cloned().collect();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} run(s) never settled after the kill: {:?}",
            pending.len(),
            pending.iter().take(5).collect::<Vec<_>>()
        );
        pending.retain(|id| !settled(&status(&b_addr, &token, id)));
        std::thread::sleep(Duration::from_millis(100));
    }
    let all_settled = killed.elapsed();
    let final_status: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), status(&b_addr, &token, id)))
        .collect();
    assert_eq!(b.stop().code(), Some(0));
    drop(model);

    // The logs: every one verifies (chain and signature) and re-checks.
    let store = PostgresStore::open(&db.url).unwrap();
    let key = runtime::store::SigningKey::from_hex(SEED).unwrap().public();
    let trust = eval::audit::Trust {
        key: &key,
        witness: None,
    };
    let verified = eval::audit::verify(&store, Some(&trust)).expect("verify");
    assert_eq!(verified.sessions.len(), RUNS);
    for s in &verified.sessions {
        assert!(
            matches!(s.result, Ok(Ok(_))),
            "{:?}: chain broken",
            s.session
        );
        assert!(!s.failed(), "{:?}: fails the audit", s.session);
        // An ended run's head is signed with its last append; one waiting for an approver is
        // open (signed every 128 events, and these have fewer).
        if final_status[&s.session.1] == "completed" {
            assert_eq!(
                s.signature,
                Some(eval::audit::Signature::Signed),
                "{:?}: not signed",
                s.session
            );
        }
    }
    assert!(!verified.manifest.expect("manifest").failed());
    for r in eval::audit::recheck(&store, None).expect("recheck") {
        assert!(
            r.error.is_none() && r.differences.is_empty(),
            "re-check: {r:?}"
        );
    }

    // Effects against logs.
    let lines = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let refunded = lines(&refunds);
    let unique_refunds: BTreeSet<&String> = refunded.iter().collect();
    assert_eq!(
        refunded.len(),
        unique_refunds.len(),
        "a refund ran twice (a non-idempotent call repeated)"
    );
    let looked_up = lines(&lookups);
    let unique_lookups: BTreeSet<&String> = looked_up.iter().collect();
    assert_eq!(
        looked_up.len(),
        unique_lookups.len(),
        "a lookup's effect landed twice"
    );
    let (mut called, mut returned, mut in_doubt, mut taken_over) =
        (BTreeSet::new(), BTreeSet::new(), 0, 0);
    for (tenant, id) in store.sessions().unwrap() {
        let stored = store.load(&tenant, &id).unwrap();
        for e in &stored.events {
            match &e.body {
                EventBody::ToolCalled { call_id, .. } => {
                    called.insert(format!("{tenant}/{id}/{call_id}"));
                }
                EventBody::ToolReturned { call_id, .. } => {
                    returned.insert(format!("{tenant}/{id}/{call_id}"));
                }
                EventBody::CallInDoubt { .. } => in_doubt += 1,
                _ => {}
            }
        }
    }
    // No lost event: every effect that ran was a call the log allowed, and every result the log
    // holds came from an effect that ran.
    let effects: BTreeSet<String> = unique_refunds
        .iter()
        .chain(unique_lookups.iter())
        .map(|s| (*s).clone())
        .collect();
    assert!(
        effects.is_subset(&called),
        "effects with no call in any log: {:?}",
        effects.difference(&called).take(5).collect::<Vec<_>>()
    );
    assert!(
        returned.is_subset(&effects),
        "results with no effect: {:?}",
        returned.difference(&effects).take(5).collect::<Vec<_>>()
    );
    // Written under two leases: the dead instance's token, then the survivor's.
    let mut raw = db.client();
    let a_runs: BTreeSet<&String> = ids.iter().step_by(2).collect();
    let mut b_lapsed = 0;
    for row in raw
        .query(
            "SELECT session, count(DISTINCT fence) FROM arbiter_steps GROUP BY session",
            &[],
        )
        .unwrap()
    {
        let (session, fences): (String, i64) = (row.get(0), row.get(1));
        // A run of B's changes hands only if B's own lease lapsed under load (its writes were
        // refused meanwhile, and the run resumed as any taken over): legal, and counted apart.
        if fences > 1 && a_runs.contains(&session) {
            taken_over += 1;
        } else if fences > 1 {
            b_lapsed += 1;
        }
    }
    eprintln!(
        "{RUNS} runs; {taken_over} of A's taken over by B ({b_lapsed} of B's after a lapsed lease); \
         {in_doubt} call(s) in doubt; all settled {all_settled:?} after the kill (lease {LEASE_MS} ms); \
         {} refunds, {} lookups; final: {:?}",
        unique_refunds.len(),
        unique_lookups.len(),
        final_status
            .values()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, s| {
                *m.entry(s.as_str()).or_default() += 1;
                m
            })
    );
    assert!(taken_over > 0, "the kill landed after A's runs were over");
    assert!(in_doubt > 0, "the kill landed between calls, not in one");
    assert!(
        final_status
            .values()
            .all(|s| s == "completed" || s == "waiting_approval"),
        "{final_status:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
