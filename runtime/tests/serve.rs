//! `arbiter serve` over real HTTP on loopback: authentication, tenant isolation on every endpoint,
//! every 4xx path, idempotent creation, the decision API end to end, approvals as the token's
//! user, SSE with `Last-Event-ID`, cancel before any step, policy reload, restart from SQLite, and
//! the OpenAPI document against the router.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::Api;
use runtime::service::auth::{Tokens, hash};
use runtime::service::{PolicySource, Service, http};
use runtime::store::sqlite::SqliteStore;
use runtime::store::{InMemoryStore, SessionStore};
use serde_json::{Value, json};

#[path = "api/mod.rs"]
mod api;

const CAROL: &str = "tok-carol";
const SAM: &str = "tok-sam";
const ADMIN: &str = "tok-admin";
const MALLORY: &str = "tok-mallory";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokens() -> Tokens {
    let mut t = Tokens::default();
    t.insert(&hash(CAROL), "shopco".into(), "carol@shopco".into(), false);
    t.insert(&hash(SAM), "shopco".into(), "sam@shopco".into(), false);
    t.insert(&hash(ADMIN), "shopco".into(), "sam@shopco".into(), true);
    t.insert(
        &hash(MALLORY),
        "othercorp".into(),
        "mallory@othercorp".into(),
        false,
    );
    t
}

async fn serve(policies: &Path, store: Arc<dyn SessionStore>) -> Api {
    let source = PolicySource {
        root: policies.to_owned(),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    api::start(Service::new(source, tokens(), store).expect("service")).await
}

async fn memory_api() -> Api {
    serve(&repo().join("policies"), Arc::new(InMemoryStore::default())).await
}

/// The session operations the tests repeat.
trait Sessions {
    async fn open(&self, token: &str, id: &str, request: &str) -> Value;
    async fn step(&self, token: &str, id: &str, intent: Value) -> Value;
    async fn waiting(&self, id: &str) -> String;
}

impl Sessions for Api {
    async fn open(&self, token: &str, id: &str, request: &str) -> Value {
        let (status, body) = self
            .post(
                token,
                "/v1/sessions",
                json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": request}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn step(&self, token: &str, id: &str, intent: Value) -> Value {
        let (status, body) = self
            .post(
                token,
                &format!("/v1/sessions/{id}/steps"),
                json!({"intent": intent}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A session waiting for approval of a $60 refund; returns the request id.
    async fn waiting(&self, id: &str) -> String {
        self.open(CAROL, id, "Refund $60 on ord-5").await;
        let body = self
            .step(
                CAROL,
                id,
                json!({"intent": "call_tool", "tool": "issue_refund", "input": {"order_id": "ord-5", "amount": 6000}}),
            )
            .await;
        assert_eq!(body["status"], "waiting_approval", "{body}");
        let (_, s) = self.get(CAROL, &format!("/v1/sessions/{id}")).await;
        s["pending_approval"].as_str().expect("pending").to_owned()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_known_bearer_token_are_refused() {
    let api = memory_api().await;
    for (label, req) in [
        (
            "no header",
            api.client.get(format!("{}/v1/approvals", api.base)),
        ),
        (
            "unknown token",
            api.client
                .get(format!("{}/v1/approvals", api.base))
                .bearer_auth("tok-nobody"),
        ),
        (
            "not bearer",
            api.client
                .get(format!("{}/v1/approvals", api.base))
                .header("authorization", format!("Basic {CAROL}")),
        ),
        (
            "create",
            api.client
                .post(format!("{}/v1/sessions", api.base))
                .json(&json!({"id": "x", "agent": "a", "budget": "b", "request": "r"})),
        ),
    ] {
        let (status, body) = api.send(req).await;
        assert_eq!(
            (status, code(&body)),
            (401, "unauthorized"),
            "{label}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_session_does_not_exist_for_it_on_any_endpoint() {
    let api = memory_api().await;
    let request_id = api.waiting("s1").await;
    let (_, before) = api.get(CAROL, "/v1/sessions/s1").await;
    let (_, absent) = api.get(MALLORY, "/v1/sessions/nope").await;
    assert_eq!(code(&absent), "not_found");
    let paths = [
        ("GET", "/v1/sessions/s1".to_owned(), json!(null)),
        ("GET", "/v1/sessions/s1/events".to_owned(), json!(null)),
        (
            "POST",
            "/v1/sessions/s1/steps".to_owned(),
            json!({"intent": {"intent": "tick"}}),
        ),
        (
            "POST",
            format!("/v1/sessions/s1/approvals/{request_id}/approve"),
            json!(null),
        ),
        (
            "POST",
            format!("/v1/sessions/s1/approvals/{request_id}/reject"),
            json!({}),
        ),
        ("POST", "/v1/sessions/s1/cancel".to_owned(), json!({})),
        (
            "POST",
            "/v1/sessions/s1/endorsements".to_owned(),
            json!({"value": "x"}),
        ),
    ];
    for (method, path, body) in paths {
        let url = format!("{}{path}", api.base);
        let req = if method == "GET" {
            api.client.get(url)
        } else if body.is_null() {
            api.client.post(url)
        } else {
            api.client.post(url).json(&body)
        };
        let (status, got) = api.send(req.bearer_auth(MALLORY)).await;
        assert_eq!(
            (status, code(&got)),
            (404, "not_found"),
            "{method} {path}: {got}"
        );
        // The same answer as for a session that does not exist (only the id differs).
        assert_eq!(
            got["error"]["message"]
                .as_str()
                .unwrap()
                .replace("s1", "nope"),
            absent["error"]["message"]
                .as_str()
                .unwrap()
                .replace("s1", "nope"),
            "{method} {path}"
        );
    }
    let (_, approvals) = api.get(MALLORY, "/v1/approvals").await;
    assert_eq!(approvals, json!([]));
    // Nothing the other tenant sent touched the session.
    let (_, after) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(before, after);
    // Ids are per tenant: the other tenant's `s1` is its own session.
    let (status, mine) = api
        .post(
            MALLORY,
            "/v1/sessions",
            json!({"id": "s1", "agent": "support@shopco", "budget": "shopco", "request": "hi"}),
        )
        .await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["session"]["tenant"], "othercorp");
    // Started as a user of another tenant on shopco's agent: policy refuses it.
    assert_eq!(mine["session"]["status"], "failed", "{mine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_a_typed_4xx_and_changes_nothing() {
    let api = memory_api().await;
    api.open(CAROL, "s1", "Where is ord-5?").await;
    let (_, before) = api.get(CAROL, "/v1/sessions/s1").await;
    let url = |p: &str| format!("{}{p}", api.base);
    let post = |p: &str| api.client.post(url(p)).bearer_auth(CAROL);
    let cases = [
        (
            "not JSON",
            post("/v1/sessions/s1/steps")
                .header("content-type", "application/json")
                .body("{\"intent\": "),
            400,
            "bad_json",
        ),
        (
            "unknown field",
            post("/v1/sessions/s1/steps").json(&json!({"intent": {"intent": "tick"}, "extra": 1})),
            422,
            "invalid",
        ),
        (
            "missing field",
            post("/v1/sessions").json(&json!({"id": "s2", "agent": "support@shopco"})),
            422,
            "invalid",
        ),
        (
            "not an intent",
            post("/v1/sessions/s1/steps").json(&json!({"intent": {"intent": "launch_missiles"}})),
            422,
            "invalid",
        ),
        (
            "approve through steps",
            post("/v1/sessions/s1/steps").json(
                &json!({"intent": {"intent": "approve", "user": "sam@shopco", "request_id": "approval-1"}}),
            ),
            400,
            "not_allowed",
        ),
        (
            "not application/json",
            post("/v1/sessions/s1/steps")
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            "too large",
            post("/v1/sessions/s1/steps")
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"intent\": {{\"intent\": \"fail\", \"error\": \"{}\"}}}}",
                    "x".repeat(http::MAX_BODY)
                )),
            413,
            "too_large",
        ),
        (
            "unknown session",
            post("/v1/sessions/nope/steps").json(&json!({"intent": {"intent": "tick"}})),
            404,
            "not_found",
        ),
        ("unknown endpoint", post("/v1/nothing"), 404, "not_found"),
        (
            "approval nobody waits for",
            post("/v1/sessions/s1/approvals/approval-9/approve"),
            404,
            "not_found",
        ),
        (
            "bad Last-Event-ID",
            api.client
                .get(url("/v1/sessions/s1/events"))
                .bearer_auth(CAROL)
                .header("last-event-id", "yesterday"),
            400,
            "bad_json",
        ),
        ("reload without admin", post("/v1/admin/reload"), 403, "forbidden"),
        (
            "empty id",
            post("/v1/sessions")
                .json(&json!({"id": "", "agent": "a", "budget": "b", "request": "r"})),
            422,
            "invalid",
        ),
    ];
    for (label, req, status, want) in cases {
        let (got, body) = api.send(req).await;
        assert_eq!((got, code(&body)), (status, want), "{label}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{label}: {body}"
        );
    }
    let (_, unknown) = api
        .send(
            post("/v1/sessions/s1/steps").json(&json!({"intent": {"intent": "tick"}, "extra": 1})),
        )
        .await;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("extra"),
        "the message names the field: {unknown}"
    );
    let (_, after) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(before, after, "no refused request changed the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_is_idempotent_on_the_clients_id() {
    let api = memory_api().await;
    let first = api.open(CAROL, "s1", "Where is ord-5?").await;
    let body = json!({"id": "s1", "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"});
    let (status, again) = api.post(CAROL, "/v1/sessions", body.clone()).await;
    assert_eq!(
        status, 200,
        "a retried creation answers the session: {again}"
    );
    assert_eq!(again["session"], first["session"]);
    assert_eq!(again["step"]["events"], json!([]), "nothing started twice");
    let mut other = body;
    other["request"] = json!("Refund everything");
    let (status, conflict) = api.post(CAROL, "/v1/sessions", other).await;
    assert_eq!((status, code(&conflict)), (409, "conflict"));
    // Concurrent retries of one creation: one 201, the rest 200, one session started.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = api.client.clone();
            let url = format!("{}/v1/sessions", api.base);
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(CAROL)
                    .json(&json!({"id": "s2", "agent": "support@shopco", "budget": "shopco", "request": "hi"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 200, 200, 200, 200, 200, 200, 201]);
    let (_, s2) = api.get(CAROL, "/v1/sessions/s2").await;
    assert_eq!(s2["last_seq"], 0, "one session_started: {s2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_elsewhere_asks_before_each_step_and_reports_each_result() {
    let api = memory_api().await;
    api.open(CAROL, "s1", "Where is ord-5?").await;
    let model = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "call_model", "model": "small", "estimated_tokens": 1000, "estimated_cost": 500}),
        )
        .await;
    assert_eq!(model["outcome"], "decided");
    assert_eq!(model["decision"]["effect"], "allow");
    let effect = &model["effects"][0];
    assert_eq!(effect["effect"], "call_model", "{model}");
    let call = effect["call_id"].as_str().unwrap();
    let replied = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "model_responded", "call_id": call, "input_tokens": 300, "output_tokens": 50, "cost": 120,
                   "output": {"calls": [{"tool": "lookup_order", "input": {"order_id": "ord-5"}}]}}),
        )
        .await;
    assert_eq!(replied["status"], "running", "{replied}");
    let tool = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}),
        )
        .await;
    assert_eq!(tool["decision"]["effect"], "allow", "{tool}");
    let effect = &tool["effects"][0];
    assert_eq!(effect["effect"], "call_tool");
    let call = effect["call_id"].as_str().unwrap();
    let returned = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "tool_returned", "call_id": call, "output": {"status": "shipped"}}),
        )
        .await;
    assert!(
        returned["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "tool_returned"),
        "{returned}"
    );
    // A denied call: the reply names the policy before anything ran.
    let denied = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "call_tool", "tool": "issue_refund", "input": {"order_id": "ord-5", "amount": 30000}}),
        )
        .await;
    assert_eq!(denied["decision"]["effect"], "deny");
    assert!(denied["effects"].as_array().unwrap().is_empty());
    let policies: Vec<&str> = denied["decision"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        policies.contains(&"support.refund.session_cap"),
        "{policies:?}"
    );
    // Arguments the schema refuses: rejected, recorded, no decision.
    let rejected = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "5"}}),
        )
        .await;
    assert_eq!(rejected["outcome"], "rejected");
    assert_eq!(
        rejected["error"]["error"], "invalid_arguments",
        "{rejected}"
    );
    let done = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "complete", "answer": "It shipped."}),
        )
        .await;
    assert_eq!(done["status"], "completed");
    let (_, view) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(
        view["cost_spent"], 120,
        "the model's actual cost settled: {view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_listed_and_decided_as_the_tokens_user() {
    let api = memory_api().await;
    let request_id = api.waiting("s1").await;
    let (_, listed) = api.get(SAM, "/v1/approvals").await;
    assert_eq!(listed[0]["session"], "s1");
    assert_eq!(listed[0]["request_id"], request_id.as_str());
    assert_eq!(
        listed[0]["request"]["request"]["input"]["amount"], 6000,
        "{listed}"
    );
    // Carol may not approve her own session's refund (base.approval.self).
    let own = api
        .post(
            CAROL,
            &format!("/v1/sessions/s1/approvals/{request_id}/approve"),
            json!(null),
        )
        .await;
    assert_eq!(own.0, 200);
    assert_eq!(own.1["decision"]["effect"], "deny", "{}", own.1);
    // Sam, an approver, may.
    let (status, granted) = api
        .post(
            SAM,
            &format!("/v1/sessions/s1/approvals/{request_id}/approve"),
            json!(null),
        )
        .await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["decision"]["effect"], "allow", "{granted}");
    assert_eq!(granted["effects"][0]["effect"], "call_tool", "{granted}");
    let approved_by = granted["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approval_granted")
        .map(|e| e["payload"]["user"].clone());
    assert_eq!(approved_by, Some(json!("sam@shopco")));
    let (_, listed) = api.get(SAM, "/v1/approvals").await;
    assert_eq!(listed, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_any_step_cancels() {
    let api = memory_api().await;
    api.open(CAROL, "s1", "Where is ord-5?").await;
    let (status, cancelled) = api
        .post(
            SAM,
            "/v1/sessions/s1/cancel",
            json!({"reason": "wrong customer"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let after = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}),
        )
        .await;
    assert_eq!(
        after["outcome"], "rejected",
        "a cancelled session takes no call: {after}"
    );
}

/// Reads SSE events (id, kind) until `n` have arrived or the stream ends.
async fn read_sse(res: &mut reqwest::Response, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("an event within 10 s");
        let Some(chunk) = chunk.unwrap() else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
            };
            if let (Some(id), Some(kind), Some(data)) = (field("id"), field("event"), field("data"))
            {
                let event: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(event["seq"].to_string(), id, "the SSE id is the seq");
                out.push((id.parse().unwrap(), kind));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_and_resume_after_last_event_id() {
    let api = memory_api().await;
    api.open(CAROL, "s1", "Where is ord-5?").await;
    let events_url = format!("{}/v1/sessions/s1/events", api.base);
    let mut res = api
        .client
        .get(&events_url)
        .bearer_auth(CAROL)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let first = read_sse(&mut res, 1).await;
    assert_eq!(first, [(0, "session_started".to_owned())]);
    // Live: a step's events arrive on the open stream.
    let tool = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}),
        )
        .await;
    let n = tool["events"].as_array().unwrap().len();
    let live = read_sse(&mut res, n).await;
    assert_eq!(live.first().map(|e| e.0), Some(1));
    drop(res);
    // Meanwhile, more happens.
    let call = tool["effects"][0]["call_id"].as_str().unwrap();
    api.step(
        CAROL,
        "s1",
        json!({"intent": "tool_returned", "call_id": call, "output": {"ok": true}}),
    )
    .await;
    api.step(CAROL, "s1", json!({"intent": "complete", "answer": "done"}))
        .await;
    let (_, view) = api.get(CAROL, "/v1/sessions/s1").await;
    let last = view["last_seq"].as_u64().unwrap();
    // Resume after the last one seen: nothing missed, nothing repeated, and the stream ends
    // with the session.
    let seen = live.last().unwrap().0;
    let mut res = api
        .client
        .get(&events_url)
        .bearer_auth(CAROL)
        .header("last-event-id", seen.to_string())
        .send()
        .await
        .unwrap();
    let rest = read_sse(&mut res, usize::MAX).await;
    let seqs: Vec<u64> = rest.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (seen + 1..=last).collect::<Vec<_>>());
    assert_eq!(rest.last().map(|e| e.1.as_str()), Some("completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_atomically_and_only_when_they_load() {
    let dir = std::env::temp_dir().join(format!("arbiter-serve-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&repo().join("policies"), &dir);
    let api = serve(&dir, Arc::new(InMemoryStore::default())).await;
    let old = api.open(CAROL, "before", "Where is ord-5?").await;
    let old_bundle = old["session"]["bundle"].clone();
    let support = dir.join("support/support.cedar");
    let original = std::fs::read_to_string(&support).unwrap();
    // A broken file: refused, the old set keeps serving.
    std::fs::write(
        &support,
        format!("{original}\nforbid (principal, action, resource) when {{"),
    )
    .unwrap();
    let (status, body) = api.post(ADMIN, "/v1/admin/reload", json!(null)).await;
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    let same = api.open(CAROL, "during", "Where is ord-5?").await;
    assert_eq!(same["session"]["bundle"], old_bundle);
    // A valid change: new sessions get it, the old session keeps its bundle.
    std::fs::write(
        &support,
        format!(
            "{original}\n@id(\"test.no_lookups\")\nforbid (principal, action == Action::\"lookup_order\", resource);\n"
        ),
    )
    .unwrap();
    let (status, reloaded) = api.post(ADMIN, "/v1/admin/reload", json!(null)).await;
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded["changed"], true);
    let new = api.open(CAROL, "after", "Where is ord-5?").await;
    assert_ne!(new["session"]["bundle"], old_bundle);
    let lookup =
        json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}});
    let in_old = api.step(CAROL, "before", lookup.clone()).await;
    assert_eq!(in_old["decision"]["effect"], "allow", "{in_old}");
    let in_new = api.step(CAROL, "after", lookup).await;
    assert_eq!(in_new["decision"]["effect"], "deny");
    assert_eq!(in_new["decision"]["policies"][0]["id"], "test.no_lookups");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_pending_approvals_survive_a_restart_on_sqlite() {
    let path = std::env::temp_dir().join(format!("arbiter-serve-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let request_id = {
        let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&path).unwrap());
        let api = serve(&repo().join("policies"), store).await;
        api.waiting("s1").await
    };
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let api = serve(&repo().join("policies"), store.clone()).await;
    let (_, view) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(view["status"], "waiting_approval", "{view}");
    assert_eq!(view["pending_approval"], request_id.as_str());
    assert_eq!(view["broken"], Value::Null);
    let (_, listed) = api.get(SAM, "/v1/approvals").await;
    assert_eq!(listed[0]["request_id"], request_id.as_str());
    let last = view["last_seq"].as_u64().unwrap();
    let (status, granted) = api
        .post(
            SAM,
            &format!("/v1/sessions/s1/approvals/{request_id}/approve"),
            json!(null),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        granted["events"][0]["seq"],
        last + 1,
        "the chain goes on: {granted}"
    );
    // Everything written before and after the restart is one verifiable chain.
    let stored = store.load("shopco", "s1").unwrap();
    let jsonl = kernel::event::encode_jsonl(&stored.events);
    kernel::event::verify_jsonl(&jsonl).expect("the log verifies");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_router() {
    let api = memory_api().await;
    let (status, doc) = api.get(CAROL, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    routes.sort();
    let want = [
        ("GET", "/v1/approvals"),
        ("GET", "/v1/sessions/{id}"),
        ("GET", "/v1/sessions/{id}/events"),
        ("POST", "/v1/admin/reload"),
        ("POST", "/v1/runs"),
        ("POST", "/v1/sessions"),
        ("POST", "/v1/sessions/{id}/approvals/{request_id}/approve"),
        ("POST", "/v1/sessions/{id}/approvals/{request_id}/reject"),
        ("POST", "/v1/sessions/{id}/cancel"),
        ("POST", "/v1/sessions/{id}/endorsements"),
        ("POST", "/v1/sessions/{id}/steps"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(m, p)| ((*m).into(), (*p).into()))
        .collect();
    assert_eq!(routes, want);
    // Every documented route is served (unauthenticated: 401, not 404 or 405), and with
    // another method it is not.
    for (method, path) in &routes {
        let path = path.replace("{id}", "s").replace("{request_id}", "r");
        let url = format!("{}{path}", api.base);
        let req = if method == "GET" {
            api.client.get(&url)
        } else {
            api.client.post(&url)
        };
        let (status, body) = api.send(req).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        let other = if method == "GET" {
            api.client.delete(&url)
        } else {
            api.client.put(&url)
        };
        let (status, _) = api.send(other).await;
        assert_eq!(status, 405, "{method} {path} with another method");
    }
    // Schemas the bodies reference are in the document.
    for schema in [
        "CreateSession",
        "SessionView",
        "StepResponse",
        "ErrorBody",
        "ApprovalView",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_expires_without_a_client_tick() {
    let dir = std::env::temp_dir().join(format!("arbiter-serve-expiry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&repo().join("policies"), &dir);
    let support = dir.join("support/support.cedar");
    let text = std::fs::read_to_string(&support).unwrap();
    assert!(text.contains("@approval_timeout_ms(\"120000\")"));
    std::fs::write(
        &support,
        text.replace(
            "@approval_timeout_ms(\"120000\")",
            "@approval_timeout_ms(\"300\")",
        ),
    )
    .unwrap();
    let source = PolicySource {
        root: dir.clone(),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(source, tokens(), Arc::new(InMemoryStore::default())).unwrap();
    let expiry = service.spawn_expiry(Duration::from_millis(50));
    let api = api::start(service).await;
    api.waiting("s1").await;
    let mut view = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = api.get(CAROL, "/v1/sessions/s1").await.1;
        if view["pending_approval"].is_null() {
            break;
        }
    }
    assert_eq!(view["pending_approval"], Value::Null, "expired: {view}");
    assert_eq!(view["status"], "running", "{view}");
    let (_, approvals) = api.get(SAM, "/v1/approvals").await;
    assert_eq!(approvals, json!([]));
    expiry.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sessions_events_leave_memory_and_still_stream_from_the_store() {
    let source = PolicySource {
        root: repo().join("policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(source, tokens(), Arc::new(InMemoryStore::default())).unwrap();
    let api = api::start(service.clone()).await;
    api.open(CAROL, "s1", "Where is ord-5?").await;
    api.open(CAROL, "s2", "Still running").await;
    api.step(CAROL, "s1", json!({"intent": "complete", "answer": "done"}))
        .await;
    let (_, before) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(
        service.evict_ended(Duration::ZERO),
        1,
        "only the ended session"
    );
    let (_, after) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(before, after, "its view is unchanged");
    let mut res = api
        .client
        .get(format!("{}/v1/sessions/s1/events", api.base))
        .bearer_auth(CAROL)
        .send()
        .await
        .unwrap();
    let streamed = read_sse(&mut res, usize::MAX).await;
    let last = after["last_seq"].as_u64().unwrap();
    assert_eq!(
        streamed.iter().map(|e| e.0).collect::<Vec<_>>(),
        (0..=last).collect::<Vec<_>>()
    );
    assert_eq!(streamed.last().map(|e| e.1.as_str()), Some("completed"));
    // Resuming after a seq reads the rest from the store too.
    let mut res = api
        .client
        .get(format!("{}/v1/sessions/s1/events", api.base))
        .bearer_auth(CAROL)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let rest = read_sse(&mut res, usize::MAX).await;
    assert_eq!(rest.first().map(|e| e.0), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_to_a_busy_session_is_refused_or_queued_as_asked() {
    let api = memory_api().await;
    api.open(CAROL, "s1", "Where are ord-5 and ord-6?").await;
    let lookup = |order: &str| json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": order}});
    let first = api.step(CAROL, "s1", lookup("ord-5")).await;
    assert_eq!(first["status"], "waiting_tool");
    let call = first["effects"][0]["call_id"].as_str().unwrap().to_owned();
    let (_, before) = api.get(CAROL, "/v1/sessions/s1").await;
    // Refused by default: 409 `busy`, nothing recorded.
    let (status, busy) = api
        .post(
            CAROL,
            "/v1/sessions/s1/steps",
            json!({"intent": lookup("ord-6")}),
        )
        .await;
    assert_eq!((status, code(&busy)), (409, "busy"), "{busy}");
    let (_, same) = api.get(CAROL, "/v1/sessions/s1").await;
    assert_eq!(before, same);
    // Queued: held until the first call's result is in, then decided.
    let queued = {
        let client = api.client.clone();
        let url = format!("{}/v1/sessions/s1/steps", api.base);
        let body = json!({"intent": lookup("ord-6"), "when_busy": "queue"});
        tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(CAROL)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!queued.is_finished(), "held while the session waits");
    let returned = api
        .step(
            CAROL,
            "s1",
            json!({"intent": "tool_returned", "call_id": call, "output": {"status": "shipped"}}),
        )
        .await;
    let (status, second) = queued.await.unwrap();
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["decision"]["effect"], "allow", "{second}");
    let first_seq = second["events"][0]["seq"].as_u64().unwrap();
    let returned_last = returned["events"].as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert!(first_seq > returned_last, "applied after the result");
}
