//! Two `arbiter serve` instances on one PostgreSQL store, as a load balancer sees them: a session
//! opened on A is read, streamed and stepped through B. The stream on B carries A's events in
//! order as they are appended (followed through notifications); a step proposed to B takes the
//! session's lease from A's last request and goes on from A's last step; a reconnect to either with
//! `Last-Event-ID` resumes with nothing missed or repeated. A hosted run driven by A waits for an
//! approval that is listed and granted through B: the control reaches A's run through the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../eval/tests/common/mod.rs"]
mod common;
mod served;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use runtime::store::{PostgresStore, SessionStore};
use served::{Served, request};

/// The SSE stream of `id` after `last` (all without), read to its end: (seq, kind) pairs.
fn stream(addr: &str, token: &str, id: &str, last: Option<u64>) -> Vec<(u64, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let resume = last.map_or(String::new(), |n| format!("Last-Event-ID: {n}\r\n"));
    write!(
        s,
        "GET /v1/sessions/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{resume}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, mut body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // De-chunk.
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        data.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    let mut out = Vec::new();
    let mut seq = None;
    for line in data.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            seq = Some(v.trim().parse::<u64>().unwrap());
        } else if let Some(kind) = line.strip_prefix("event:") {
            out.push((
                seq.take().expect("an id before each event"),
                kind.trim().to_owned(),
            ));
        }
    }
    out
}

fn post(addr: &str, token: &str, path: &str, body: &str) -> serde_json::Value {
    let (code, answer) = request(addr, "POST", path, Some(token), body);
    assert!(code == 200 || code == 201, "{path}: {code} {answer}");
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn a_session_opened_on_one_instance_streams_and_steps_through_the_other() {
    let Some(db) = common::PgSchema::new("cluster") else {
        return;
    };
    let dir = common::scratch("cluster");
    let tokens = dir.join("tokens.toml");
    let token = served::token(&tokens);
    let start = |name: &str| {
        Served::start(
            &tokens,
            &["--store", &db.url, "--instance", name, "--lease-ms", "1500"],
        )
    };
    let (a, b) = (start("a"), start("b"));
    let (a_addr, b_addr) = (a.addr().to_owned(), b.addr().to_owned());

    post(
        &a_addr,
        &token,
        "/v1/sessions",
        r#"{"id":"t-1","agent":"support@shopco","budget":"shopco","request":"Where is ord-1001?"}"#,
    );
    // B streams the session A opened, from the start, while A and B step it.
    let watcher = {
        let (addr, token) = (b_addr.clone(), token.clone());
        std::thread::spawn(move || stream(&addr, &token, "t-1", None))
    };
    std::thread::sleep(Duration::from_millis(300));
    let called = post(
        &a_addr,
        &token,
        "/v1/sessions/t-1/steps",
        r#"{"intent":{"intent":"call_tool","tool":"lookup_order","input":{"order_id":"ord-1001"}}}"#,
    );
    assert_eq!(called["outcome"], "decided", "{called}");
    let call_id = called["effects"][0]["call_id"].as_str().unwrap().to_owned();
    // The result is reported to B: it takes the lease and goes on from A's step.
    let returned = post(
        &b_addr,
        &token,
        "/v1/sessions/t-1/steps",
        &format!(
            r#"{{"intent":{{"intent":"tool_returned","call_id":"{call_id}","output":{{"status":"delivered"}}}}}}"#
        ),
    );
    assert_eq!(returned["status"], "running", "{returned}");
    // And the end to A again, which catches up with B's step first.
    let done = post(
        &a_addr,
        &token,
        "/v1/sessions/t-1/steps",
        r#"{"intent":{"intent":"complete","answer":"It was delivered."}}"#,
    );
    assert_eq!(done["status"], "completed", "{done}");

    let seen = watcher.join().unwrap();
    let store = PostgresStore::open(&db.url).unwrap();
    let stored = store.load("shopco", "t-1").unwrap();
    let logged: Vec<(u64, String)> = stored
        .events
        .iter()
        .map(|e| (e.seq, e.body.kind().to_owned()))
        .collect();
    assert_eq!(seen, logged, "B's stream is the log, in order, whole");
    assert!(logged.iter().any(|(_, k)| k == "tool_returned"));
    assert_eq!(stored.steps.len(), 4, "start, call, result, complete");

    // Resume on either instance after any seq: exactly the rest.
    for addr in [&a_addr, &b_addr] {
        let rest = stream(addr, &token, "t-1", Some(2));
        assert_eq!(rest, logged[3..].to_vec(), "resumed on {addr}");
    }
    // Both show the same state.
    for addr in [&a_addr, &b_addr] {
        let (code, view) = request(addr, "GET", "/v1/sessions/t-1", Some(&token), "");
        assert_eq!(code, 200);
        let view: serde_json::Value = serde_json::from_str(&view).unwrap();
        assert_eq!(view["status"], "completed", "{addr}: {view}");
        assert_eq!(view["last_seq"], logged.len() as u64 - 1, "{addr}: {view}");
    }
    // Written under a lease per request: A's, A's, B's, A's again.
    let fences: Vec<Option<i64>> = db
        .client()
        .query(
            "SELECT fence FROM arbiter_steps WHERE session = 't-1' ORDER BY n",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(fences.iter().all(Option::is_some), "{fences:?}");
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "each request took the lease afresh, each with a newer token: {fences:?}"
    );
    assert_eq!(a.stop().code(), Some(0));
    assert_eq!(b.stop().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hosted_run_driven_by_one_instance_is_approved_through_the_other() {
    use served::hosted::{agent_file, fake_model, script};
    let Some(db) = common::PgSchema::new("controls") else {
        return;
    };
    let dir = common::scratch("controls");
    let refunds = dir.join("refunds");
    let lookup = script(
        &dir,
        "lookup.sh",
        "echo '{\"status\": \"delivered\", \"amount\": 9999, \"customer_id\": \"cust-7\"}'\n",
    );
    let refund = script(
        &dir,
        "refund.sh",
        &format!(
            "echo \"$ARBITER_IDEMPOTENCY_KEY\" >> {}\necho '{{\"refund_id\": \"rf-1\"}}'\n",
            refunds.display()
        ),
    );
    // $60: above the $50 that needs an approver.
    let (_model, model_url) = fake_model(&dir, 6000);
    let agent = agent_file(&dir, &model_url, &lookup, &refund);
    let tokens = dir.join("tokens.toml");
    let carol = served::token(&tokens);
    let sam = served::token_for(&tokens, "sam@shopco");
    let agent_arg = format!("support={}", agent.display());
    let start = |name: &str| {
        Served::start(
            &tokens,
            &[
                "--store",
                &db.url,
                "--instance",
                name,
                "--lease-ms",
                "1500",
                "--agent",
                &agent_arg,
            ],
        )
    };
    let (a, b) = (start("a"), start("b"));
    let (a_addr, b_addr) = (a.addr().to_owned(), b.addr().to_owned());
    post(
        &a_addr,
        &carol,
        "/v1/runs",
        r#"{"id":"h-1","agent":"support","request":"Order ord-1001 arrived broken. Refund $60."}"#,
    );
    // B follows A's run to its approval and lists it.
    let mut request_id = None;
    for _ in 0..200 {
        let (code, list) = request(&b_addr, "GET", "/v1/approvals", Some(&sam), "");
        assert_eq!(code, 200, "{list}");
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        if let Some(r) = list.as_array().and_then(|l| l.first()) {
            assert_eq!(r["session"], "h-1", "{r}");
            request_id = r["request_id"].as_str().map(str::to_owned);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let request_id = request_id.expect("the run's approval is listed on B");
    assert!(!refunds.exists(), "no refund before the approval");
    // Granted through B: A's run takes it and goes on; B answers with what the run appended.
    let granted = post(
        &b_addr,
        &sam,
        &format!("/v1/sessions/h-1/approvals/{request_id}/approve"),
        "",
    );
    let kinds: Vec<&str> = granted["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"approval_granted"), "{granted}");
    let mut status = String::new();
    for _ in 0..200 {
        let (_, view) = request(&b_addr, "GET", "/v1/sessions/h-1", Some(&carol), "");
        let view: serde_json::Value = serde_json::from_str(&view).unwrap();
        status = view["status"].as_str().unwrap_or_default().to_owned();
        if status == "completed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, "completed");
    let refunded = std::fs::read_to_string(&refunds).unwrap();
    assert_eq!(refunded.lines().count(), 1, "{refunded}");
    let store = PostgresStore::open(&db.url).unwrap();
    let stored = store.load("shopco", "h-1").unwrap();
    assert!(
        stored.events.iter().any(|e| matches!(
            &e.body,
            kernel::EventBody::ApprovalGranted { user, .. } if user == "sam@shopco"
        )),
        "the approval is sam's, recorded in A's run"
    );
    // Every step was written by A: the control travelled, the run did not.
    let fences: Vec<Option<i64>> = db
        .client()
        .query(
            "SELECT DISTINCT fence FROM arbiter_steps WHERE session = 'h-1'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(fences.len(), 1, "{fences:?}");
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
