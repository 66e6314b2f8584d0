//! The OpenAI-compatible model adapter and the HTTP tool, end to end: the runtime drives a session
//! against the scripted fake server over real HTTP on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use eval::fake_model::{FakeModel, Reply, Script, ScriptedCall};
use kernel::{Deployment, EventBody, Mode, Session, SessionConfig, Status};
use runtime::models::openai::{OpenAiConfig, OpenAiModel, Pricing};
use runtime::{Credentials, HttpTool, Outcome, Runtime, SubprocessTool};
use serde_json::{Value, json};

const SMALL: Pricing = Pricing {
    input_price: 150_000,
    output_price: 600_000,
};

fn packs(names: &[&str]) -> Arc<Deployment> {
    let root = common::repo().join("policies");
    Arc::new(kernel::pack::load_packs(&root, names).expect("packs load"))
}

fn text(content: &str) -> Reply {
    Reply {
        content: Some(content.into()),
        ..Reply::default()
    }
}

fn call(name: &str, arguments: Value) -> Reply {
    Reply {
        tool_calls: vec![ScriptedCall {
            name: name.into(),
            arguments,
        }],
        ..Reply::default()
    }
}

fn status(code: u16) -> Reply {
    Reply {
        status: Some(code),
        ..Reply::default()
    }
}

async fn serve(replies: Vec<Reply>) -> FakeModel {
    FakeModel::start(
        Script {
            replies,
            per_conversation: false,
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("bind")
}

fn model(server: &FakeModel, deployment: &Deployment, tools: &[&str], stream: bool) -> OpenAiModel {
    OpenAiModel::new(OpenAiConfig {
        base_url: server.base_url(),
        model: "fake".into(),
        api_key: Some("sk-test".into()),
        system: Some("be brief".into()),
        tools: tools
            .iter()
            .filter_map(|t| deployment.tool(t).cloned())
            .collect(),
        max_tokens: 64,
        stream,
        pricing: SMALL,
    })
    .expect("client")
}

fn shopco(id: &str) -> SessionConfig {
    SessionConfig {
        id: id.into(),
        tenant: "shopco".into(),
        user: "carol@shopco".into(),
        agent: "support@shopco".into(),
        budget: "shopco".into(),
        mode: Mode::Enforce,
    }
}

/// A subprocess `lookup_order` that echoes its arguments with an amount.
fn lookup_order() -> Arc<SubprocessTool> {
    Arc::new(SubprocessTool::new(
        "python3",
        [
            "-c",
            "import json,sys; a=json.load(sys.stdin); print(json.dumps({'order_id': a['order_id'], 'amount': 1999}))",
        ],
    ))
}

async fn run(rt: Runtime, deployment: Arc<Deployment>, config: SessionConfig) -> Outcome {
    let session = Session::new(deployment, config).expect("session");
    rt.run(session, "Where is order ord-1?".into(), Vec::new(), None)
        .await
}

fn kinds(o: &Outcome) -> Vec<&'static str> {
    o.events.iter().map(|e| e.body.kind()).collect()
}

fn failure(o: &Outcome) -> String {
    o.events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Failed { error } => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_then_an_answer_streamed_or_not() {
    for stream in [false, true] {
        let deployment = packs(&["support"]);
        let server = serve(vec![
            call("lookup_order", json!({"order_id": "ord-1"})),
            Reply {
                usage: Some(vec![1000, 100]),
                ..text("Order ord-1 is on its way.")
            },
        ])
        .await;
        let rt = Runtime::new(
            Arc::new(model(&server, &deployment, &["lookup_order"], stream)),
            "small",
        )
        .tool("lookup_order", lookup_order());
        let out = run(rt, Arc::clone(&deployment), shopco("s1")).await;
        assert_eq!(
            out.status,
            Status::Completed,
            "stream={stream}: {:?}",
            kinds(&out)
        );
        assert!(out.events.iter().any(|e| matches!(
            &e.body,
            EventBody::Completed { answer } if answer == "Order ord-1 is on its way."
        )));
        // Settlement uses the reported usage and the Model entity's prices.
        let costs: Vec<u64> = out
            .events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::ModelResponded { cost, .. } => Some(*cost),
                _ => None,
            })
            .collect();
        assert_eq!(costs, vec![SMALL.cost(100, 20), SMALL.cost(1000, 100)]);

        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0]["stream"].as_bool().unwrap_or(false), stream);
        assert_eq!(requests[0]["tools"][0]["function"]["name"], "lookup_order");
        assert_eq!(requests[0]["_authorization"], "Bearer sk-test");
        // The second request carries the call and its result, paired by id.
        let msgs = requests[1]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let roles: Vec<&str> = msgs.iter().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(msgs[2]["tool_calls"][0]["id"], msgs[3]["tool_call_id"]);
        let result: Value = serde_json::from_str(msgs[3]["content"].as_str().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(result, json!({"order_id": "ord-1", "amount": 1999}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_is_reported_to_the_model_not_run() {
    let deployment = packs(&["support"]);
    // A bad order id fails the JSON Schema: rejected before authorization, never run.
    let server = serve(vec![
        call("lookup_order", json!({"order_id": "not-an-order"})),
        text("Sorry, I could not look that up."),
    ])
    .await;
    let rt = Runtime::new(
        Arc::new(model(&server, &deployment, &["lookup_order"], false)),
        "small",
    )
    .tool("lookup_order", lookup_order());
    let out = run(rt, deployment, shopco("s2")).await;
    assert_eq!(out.status, Status::Completed);
    assert!(!kinds(&out).contains(&"tool_called"));
    let requests = server.requests();
    let tool_msg = &requests[1]["messages"][3];
    assert_eq!(tool_msg["role"], "tool");
    let content = tool_msg["content"].as_str().unwrap_or_default();
    assert!(content.starts_with("not run:"), "{content}");
    assert!(content.contains("order_id"), "{content}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_within_the_policy_then_fail_cleanly() {
    // support.model.retries allows two retries: 429, 503, then a success.
    let deployment = packs(&["support"]);
    let server = serve(vec![status(429), status(503), text("done")]).await;
    let rt = Runtime::new(Arc::new(model(&server, &deployment, &[], true)), "small");
    let out = run(rt, Arc::clone(&deployment), shopco("s3")).await;
    assert_eq!(out.status, Status::Completed, "{:?}", kinds(&out));
    let retries = kinds(&out)
        .iter()
        .filter(|k| **k == "retry_scheduled")
        .count();
    assert_eq!(retries, 2);
    assert!(out.events.iter().any(|e| matches!(
        &e.body,
        EventBody::CallFailed { error, retryable: true, will_retry: true, .. } if error.contains("HTTP 429")
    )));

    // Three 429s exhaust the budget of retries: the session fails with the reason.
    let server = serve(vec![status(429), status(429), status(429), text("never")]).await;
    let rt = Runtime::new(Arc::new(model(&server, &deployment, &[], false)), "small");
    let out = run(rt, deployment, shopco("s4")).await;
    assert_eq!(out.status, Status::Failed, "{:?}", kinds(&out));
    assert!(failure(&out).contains("HTTP 429"), "{}", failure(&out));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_fail_the_session_without_retrying() {
    let deployment = packs(&["support"]);
    for (reply, stream, says) in [
        (
            Reply {
                raw: Some("<html>bad gateway</html>".into()),
                ..Reply::default()
            },
            false,
            "not JSON",
        ),
        (
            Reply {
                raw: Some(r#"{"choices": []}"#.into()),
                ..Reply::default()
            },
            false,
            "choices[0]",
        ),
        (
            Reply {
                cut_after: Some(2),
                ..text("a long answer that is cut")
            },
            true,
            "ended before",
        ),
    ] {
        let server = serve(vec![reply, text("never")]).await;
        let rt = Runtime::new(Arc::new(model(&server, &deployment, &[], stream)), "small");
        let out = run(rt, Arc::clone(&deployment), shopco("s5")).await;
        assert_eq!(out.status, Status::Failed, "{says}: {:?}", kinds(&out));
        let error = failure(&out);
        assert!(
            error.contains("malformed response") && error.contains(says),
            "{error}"
        );
        assert_eq!(server.requests().len(), 1, "{says}: not retried");
    }
}

/// (Authorization header, body) of each call a test tool server received; the body also holds
/// the `idempotency-key` header under `_idempotency_key`.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP tool server that records the `Authorization` header of each call.
async fn recording_tool() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/search",
            post(
                |State(seen): State<Seen>,
                 headers: HeaderMap,
                 axum::Json(body): axum::Json<Value>| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let mut body = body;
                    if let (Some(fields), Some(key)) = (
                        body.as_object_mut(),
                        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
                    ) {
                        fields.insert("_idempotency_key".into(), json!(key));
                    }
                    if let Ok(mut s) = seen.lock() {
                        s.push((auth, body));
                    }
                    axum::Json(json!({"hits": ["doc-1"]}))
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_s_http_calls_carry_its_own_credentials_and_the_model_sees_none() {
    let deployment = packs(&["enterprise"]);
    let (addr, seen) = recording_tool().await;
    let kb = HttpTool::new(format!("http://{addr}/search"))
        .and_then(|t| t.credential_header("Authorization", "KB_TOKEN", "Bearer "))
        .expect("tool");
    let mut creds = Credentials::default();
    creds
        .grant("northwind", "kb_search", "KB_TOKEN", "nw-secret-123")
        .grant("contoso", "kb_search", "KB_TOKEN", "ct-secret-456");
    for (tenant, user, secret, other) in [
        (
            "northwind",
            "nora@northwind",
            "nw-secret-123",
            "ct-secret-456",
        ),
        ("contoso", "cleo@contoso", "ct-secret-456", "nw-secret-123"),
    ] {
        let server = serve(vec![
            call("kb_search", json!({"query": "refund policy"})),
            text("ok"),
        ])
        .await;
        let rt = Runtime::new(
            Arc::new(model(&server, &deployment, &["kb_search"], false)),
            "shared-llm",
        )
        .tool("kb_search", Arc::new(kb.clone()))
        .credentials(creds.clone());
        let config = SessionConfig {
            id: format!("kb-{tenant}"),
            tenant: tenant.into(),
            user: user.into(),
            agent: format!("assistant@{tenant}"),
            budget: tenant.into(),
            mode: Mode::Enforce,
        };
        let before = seen.lock().map(|s| s.len()).unwrap_or(0);
        let out = run(rt, Arc::clone(&deployment), config).await;
        assert_eq!(out.status, Status::Completed, "{tenant}: {:?}", kinds(&out));
        let calls = seen
            .lock()
            .map(|s| s[before..].to_vec())
            .unwrap_or_default();
        assert_eq!(calls.len(), 1, "{tenant}");
        assert_eq!(calls[0].0, format!("Bearer {secret}"));
        assert_ne!(calls[0].0, format!("Bearer {other}"));
        // The idempotency key names tenant and session: call ids repeat between sessions.
        let key = calls[0].1["_idempotency_key"].as_str().unwrap_or_default();
        assert!(
            key.starts_with(&format!("{tenant}/kb-{tenant}/call-")),
            "{key}"
        );
        // Neither the model's requests nor the event log ever contain a secret.
        let model_traffic = serde_json::to_string(&server.requests()).unwrap_or_default();
        let log = kernel::event::encode_jsonl(&out.events);
        for s in ["nw-secret-123", "ct-secret-456"] {
            assert!(!model_traffic.contains(s) && !log.contains(s), "{s} leaked");
        }
    }

    // A tenant with no credential for the tool gets no request sent at all.
    let unknown = kb.clone();
    let call = runtime::ToolCall {
        call_id: "call-1".into(),
        attempt: 1,
        tenant: "initech".into(),
        session: "s-1".into(),
        input: json!({"query": "x"}),
        credentials: creds.for_call("initech", "kb_search"),
    };
    let before = seen.lock().map(|s| s.len()).unwrap_or(0);
    let result = runtime::Tool::call(&unknown, call).await;
    assert!(matches!(result, Err(runtime::ToolError::Unavailable(m)) if m.contains("KB_TOKEN")));
    assert_eq!(seen.lock().map(|s| s.len()).unwrap_or(0), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tool_statuses_map_to_retryable_or_permanent_failures() {
    let app = Router::new()
        .route(
            "/429",
            post(|| async { (axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route(
            "/400",
            post(|| async { (axum::http::StatusCode::BAD_REQUEST, "bad") }),
        )
        .route("/text", post(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let call = || runtime::ToolCall {
        call_id: "call-1".into(),
        attempt: 1,
        tenant: "acme".into(),
        session: "s-1".into(),
        input: json!({}),
        credentials: Default::default(),
    };
    let tool = |path: &str| HttpTool::new(format!("http://{addr}{path}")).expect("tool");
    use runtime::{Tool, ToolError};
    let r = tool("/429").call(call()).await;
    assert!(matches!(&r, Err(e) if e.retryable()), "{r:?}");
    let r = tool("/400").call(call()).await;
    assert!(
        matches!(
            &r,
            Err(ToolError::Failed {
                retryable: false,
                ..
            })
        ),
        "{r:?}"
    );
    let r = tool("/text").call(call()).await;
    assert!(matches!(&r, Err(ToolError::Malformed(_))), "{r:?}");
    // Nothing listens on port 9: a retryable failure, not a panic.
    let r = HttpTool::new("http://127.0.0.1:9/x")
        .expect("tool")
        .call(call())
        .await;
    assert!(matches!(&r, Err(e) if e.retryable()), "{r:?}");
}
