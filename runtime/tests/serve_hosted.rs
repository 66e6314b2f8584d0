//! Hosted runs through `arbiter serve`: Arbiter calls the model and the tools itself on the one
//! driver, and the run is a session like any other — its events stream, its approvals are listed
//! and decided as the token's user, its creation is idempotent, a cancel sent before its first
//! step cancels it, and the service's mirror of it agrees with the run event for event.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::Api;
use kernel::{Intent, Mode, SessionConfig};
use runtime::service::auth::{Tokens, hash};
use runtime::service::{HostedAgent, PolicySource, Service};
use runtime::store::{InMemoryStore, SessionStore};
use runtime::{
    Estimate, Message, Model, ModelCall, ModelError, ModelFuture, ModelReply, Runtime, Tool,
    ToolCall, ToolFuture, ToolOutput,
};
use serde_json::{Value, json};

#[path = "api/mod.rs"]
mod api;

const CAROL: &str = "tok-carol";
const SAM: &str = "tok-sam";
const MALLORY: &str = "tok-mallory";

/// A model answering from a script, each reply after `delay`.
struct Scripted {
    replies: Mutex<VecDeque<ModelReply>>,
    delay: Duration,
}

impl Model for Scripted {
    fn next_estimate(&self, _: &[Message]) -> Option<Estimate> {
        Some(Estimate {
            tokens: 100,
            cost: 10,
        })
    }

    fn skip(&self) {
        self.replies.lock().unwrap().pop_front();
    }

    fn call(&self, _: ModelCall) -> ModelFuture<'_> {
        let reply = self.replies.lock().unwrap().pop_front();
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            reply.ok_or(ModelError {
                message: "no reply left".into(),
                retryable: false,
                cost: 0,
            })
        })
    }
}

fn reply(calls: Vec<Intent>, answer: Option<&str>) -> ModelReply {
    ModelReply {
        input_tokens: 50,
        output_tokens: 10,
        cost: 5,
        output: json!({}),
        calls,
        answer: answer.map(str::to_owned),
    }
}

fn tool(name: &str, input: Value) -> Intent {
    Intent::CallTool {
        tool: name.into(),
        input,
        estimated_cost: 0,
    }
}

struct Answers(Value);

impl Tool for Answers {
    fn call(&self, _: ToolCall) -> ToolFuture<'_> {
        let value = self.0.clone();
        Box::pin(async move { Ok(ToolOutput { value, cost: 0 }) })
    }
}

/// The served API and the store behind it.
struct Hosted {
    api: Api,
    store: Arc<dyn SessionStore>,
}

impl std::ops::Deref for Hosted {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn serve(replies: Vec<ModelReply>, delay: Duration) -> Hosted {
    serve_on(replies, delay, Arc::new(InMemoryStore::default())).await
}

async fn serve_on(
    replies: Vec<ModelReply>,
    delay: Duration,
    store: Arc<dyn SessionStore>,
) -> Hosted {
    let mut tokens = Tokens::default();
    tokens.insert(&hash(CAROL), "shopco".into(), "carol@shopco".into(), false);
    tokens.insert(&hash(SAM), "shopco".into(), "sam@shopco".into(), false);
    tokens.insert(
        &hash(MALLORY),
        "othercorp".into(),
        "mallory@othercorp".into(),
        false,
    );
    let policies = PolicySource {
        root: repo().join("policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let deployment = Arc::new(policies.load().unwrap());
    let model = Scripted {
        replies: Mutex::new(replies.into()),
        delay,
    };
    let agent = HostedAgent {
        runtime: Runtime::new(Arc::new(model), "small")
            .tool(
                "lookup_order",
                Arc::new(Answers(json!({"status": "shipped"}))),
            )
            .tool(
                "issue_refund",
                Arc::new(Answers(json!({"refund_id": "rf-1"}))),
            ),
        deployment,
        template: SessionConfig {
            id: String::new(),
            tenant: "shopco".into(),
            user: String::new(),
            agent: "support@shopco".into(),
            budget: "shopco".into(),
            mode: Mode::Enforce,
        },
        tick_every: None,
    };
    let service = Service::new(policies, tokens, store.clone())
        .unwrap()
        .host("support", agent);
    service.resume_hosted().unwrap();
    Hosted {
        api: api::start(service).await,
        store,
    }
}

impl Hosted {
    /// Polls the session until `done` holds (10 s at most).
    async fn until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let (_, view) = self.get(CAROL, &format!("/v1/sessions/{id}")).await;
            if done(&view) {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("session {id} never got there");
    }
}

/// A service on a new store at `path` starts run `id`, then stops while its (slow) model is
/// answering: the run is left `waiting_model` in the store.
async fn interrupted(path: &std::path::Path, id: &str) {
    let _ = std::fs::remove_file(path);
    let store = Arc::new(runtime::store::sqlite::SqliteStore::open(path).unwrap());
    let api = serve_on(
        vec![reply(vec![], Some("late"))],
        Duration::from_secs(30),
        store,
    )
    .await;
    api.post(
        CAROL,
        "/v1/runs",
        json!({"id": id, "agent": "support", "request": "Where is ord-5?"}),
    )
    .await;
    api.until(id, |v| v["status"] == "waiting_model").await;
}

fn kinds(events: &[kernel::event::Event]) -> Vec<&str> {
    events.iter().map(|e| e.body.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_run_calls_its_model_and_tools_and_is_a_session_like_any_other() {
    let api = serve(
        vec![
            reply(
                vec![tool("lookup_order", json!({"order_id": "ord-5"}))],
                None,
            ),
            reply(vec![], Some("It shipped.")),
        ],
        Duration::ZERO,
    )
    .await;
    let body = json!({"id": "r1", "agent": "support", "request": "Where is ord-5?"});
    let (status, run) = api.post(CAROL, "/v1/runs", body.clone()).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["user"], "carol@shopco");
    let view = api.until("r1", |v| v["status"] == "completed").await;
    assert_eq!(
        view["broken"],
        Value::Null,
        "the mirror agrees with the run: {view}"
    );
    // The stream of a finished run: every event, then the end.
    let res = api
        .client
        .get(format!("{}/v1/sessions/r1/events", api.base))
        .bearer_auth(CAROL)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    let streamed = text.matches("\nevent:").count() + usize::from(text.starts_with("event:"));
    let stored = api.store.load("shopco", "r1").unwrap();
    assert_eq!(streamed, stored.events.len(), "{text}");
    let k = kinds(&stored.events);
    for kind in [
        "session_started",
        "model_called",
        "tool_called",
        "tool_returned",
        "completed",
    ] {
        assert!(k.contains(&kind), "{kind} in {k:?}");
    }
    let jsonl = kernel::event::encode_jsonl(&stored.events);
    kernel::event::verify_jsonl(&jsonl).expect("the run's log verifies");
    // Idempotent: the same body answers the run; another body, or a step from the client, is refused.
    let (status, again) = api.post(CAROL, "/v1/runs", body).await;
    assert_eq!(status, 200, "{again}");
    let (status, _) = api
        .post(
            CAROL,
            "/v1/runs",
            json!({"id": "r1", "agent": "support", "request": "Refund it"}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, refused) = api
        .post(
            CAROL,
            "/v1/sessions/r1/steps",
            json!({"intent": {"intent": "tick"}}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("not_allowed"))
    );
    // Another tenant sees neither the agent nor the run.
    let (status, _) = api
        .post(
            MALLORY,
            "/v1/runs",
            json!({"id": "x", "agent": "support", "request": "hi"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api.get(MALLORY, "/v1/sessions/r1").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_runs_approval_is_decided_over_the_api() {
    let api = serve(
        vec![
            reply(
                vec![tool(
                    "issue_refund",
                    json!({"order_id": "ord-5", "amount": 6000}),
                )],
                None,
            ),
            reply(vec![], Some("Refunded.")),
        ],
        Duration::ZERO,
    )
    .await;
    api.post(
        CAROL,
        "/v1/runs",
        json!({"id": "r2", "agent": "support", "request": "Refund $60 on ord-5"}),
    )
    .await;
    let view = api.until("r2", |v| v["status"] == "waiting_approval").await;
    let request_id = view["pending_approval"].as_str().unwrap().to_owned();
    let (_, listed) = api.get(SAM, "/v1/approvals").await;
    assert_eq!(listed[0]["request_id"], request_id.as_str());
    let (status, granted) = api
        .post(
            SAM,
            &format!("/v1/sessions/r2/approvals/{request_id}/approve"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{granted}");
    assert!(
        granted["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "approval_granted" && e["payload"]["user"] == "sam@shopco"),
        "{granted}"
    );
    let view = api.until("r2", |v| v["status"] == "completed").await;
    assert_eq!(view["broken"], Value::Null, "{view}");
    let stored = api.store.load("shopco", "r2").unwrap();
    assert!(kinds(&stored.events).contains(&"tool_returned"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_before_the_run_starts_cancels_it() {
    // The model would take ten seconds: the cancel must not wait for it.
    let api = serve(vec![reply(vec![], Some("late"))], Duration::from_secs(10)).await;
    let (status, _) = api
        .post(
            CAROL,
            "/v1/runs",
            json!({"id": "r3", "agent": "support", "request": "Where is ord-5?"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, cancelled) = api
        .post(
            SAM,
            "/v1/sessions/r3/cancel",
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let view = api.until("r3", |v| v["status"] == "cancelled").await;
    assert_eq!(view["broken"], Value::Null, "{view}");
    let stored = api.store.load("shopco", "r3").unwrap();
    let k = kinds(&stored.events);
    assert!(!k.contains(&"model_responded"), "{k:?}");
    assert_eq!(k.last(), Some(&"cancelled"), "{k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_run_interrupted_by_a_restart_is_resumed_and_finishes() {
    let path = std::env::temp_dir().join(format!("arbiter-hosted-{}.db", std::process::id()));
    let open = || -> Arc<dyn SessionStore> {
        Arc::new(runtime::store::sqlite::SqliteStore::open(&path).unwrap())
    };
    interrupted(&path, "r4").await;
    // The next one picks the run up: the model call in flight is re-issued and the run completes.
    let api = serve_on(
        vec![
            reply(
                vec![tool("lookup_order", json!({"order_id": "ord-5"}))],
                None,
            ),
            reply(vec![], Some("It shipped.")),
        ],
        Duration::ZERO,
        open(),
    )
    .await;
    let view = api.until("r4", |v| v["status"] == "completed").await;
    assert_eq!(
        view["broken"],
        Value::Null,
        "the mirror agrees with the resumed run: {view}"
    );
    let stored = api.store.load("shopco", "r4").unwrap();
    let k = kinds(&stored.events);
    assert!(k.contains(&"tool_returned"), "{k:?}");
    let jsonl = kernel::event::encode_jsonl(&stored.events);
    kernel::event::verify_jsonl(&jsonl).expect("one chain across the restart");
    let (status, refused) = api
        .post(
            CAROL,
            "/v1/sessions/r4/steps",
            json!({"intent": {"intent": "tick"}}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("not_allowed"))
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_run_whose_agent_is_gone_after_a_restart_takes_no_client_steps() {
    let path = std::env::temp_dir().join(format!("arbiter-hosted-gone-{}.db", std::process::id()));
    let open = || -> Arc<dyn SessionStore> {
        Arc::new(runtime::store::sqlite::SqliteStore::open(&path).unwrap())
    };
    interrupted(&path, "r5").await;
    // Restarted without registering the agent.
    let mut tokens = Tokens::default();
    tokens.insert(&hash(CAROL), "shopco".into(), "carol@shopco".into(), false);
    let policies = PolicySource {
        root: repo().join("policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(policies, tokens, open()).unwrap();
    assert_eq!(service.resume_hosted().unwrap(), 0);
    let caller = service.authenticate(Some(CAROL)).unwrap();
    let view = service.get(&caller, "r5").await.unwrap();
    assert_eq!(view.status, "waiting_model");
    assert!(
        view.broken
            .as_deref()
            .is_some_and(|b| b.contains("restart")),
        "{view:?}"
    );
    let refused = service.step(&caller, "r5", json!({"intent": "tick"})).await;
    assert_eq!(refused.unwrap_err().code(), "unavailable");
    let _ = std::fs::remove_file(&path);
}

/// A run that stopped between being created in the store and taking its first step (its process
/// died in between) is started on the next start: it has no step to resume from, so its request
/// comes from the run's marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_run_created_but_never_started_is_started_after_a_restart() {
    let path = std::env::temp_dir().join(format!("arbiter-unstarted-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store: Arc<dyn SessionStore> =
        Arc::new(runtime::store::sqlite::SqliteStore::open(&path).unwrap());
    // What a service leaves when it dies right after `begin`: the record and the run's marker.
    let policies = PolicySource {
        root: repo().join("policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let deployment = policies.load().unwrap();
    let config = SessionConfig {
        id: "r9".into(),
        tenant: "shopco".into(),
        user: "carol@shopco".into(),
        agent: "support@shopco".into(),
        budget: "shopco".into(),
        mode: Mode::Enforce,
    };
    store.begin(&deployment, &config, 1).unwrap();
    store
        .memory_put(
            "shopco",
            "arbiter.service/hosted-runs",
            "r9",
            &json!({"agent": "support", "request": "Where is ord-5?"}),
            &[],
        )
        .unwrap();
    let api = serve_on(
        vec![reply(vec![], Some("It shipped."))],
        Duration::ZERO,
        store,
    )
    .await;
    let view = api.until("r9", |v| v["status"] == "completed").await;
    assert_eq!(view["broken"], Value::Null, "{view}");
    let stored = api.store.load("shopco", "r9").unwrap();
    assert!(
        matches!(&stored.steps[0].intent, Intent::Start { request } if request == "Where is ord-5?"),
        "{:?}",
        stored.steps[0]
    );
    let _ = std::fs::remove_file(&path);
}
