//! Traces over OTLP to a real receiver: a loopback OTLP/HTTP endpoint built on the
//! `opentelemetry-proto` types decodes what the service's exporter sends, and the test checks the
//! span tree (a session's `invoke_agent` span, its `chat` and `execute_tool` children), the
//! `gen_ai.*` attributes, and each decision as an `arbiter.decision` span event.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use runtime::service::auth::{Tokens, hash};
use runtime::service::{PolicySource, Service};
use runtime::spans::{SpanRecorder, otlp};
use runtime::store::InMemoryStore;
use serde_json::json;

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

fn strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    match attr(attrs, key) {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("{key}: {other:?}"),
    }
}

fn call_id(effect: &kernel::Effect) -> String {
    match effect {
        kernel::Effect::CallModel { call_id, .. } | kernel::Effect::CallTool { call_id, .. } => {
            call_id.clone()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_trace_arrives_at_an_otlp_receiver() {
    // The receiver.
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .as_ref()
                        .map(|r| text(&r.attributes, "service.name").to_owned());
                    assert_eq!(service.as_deref(), Some("arbiter"));
                    for ss in rs.scope_spans {
                        sink.lock().unwrap().extend(ss.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The service, traced.
    let provider = otlp(&endpoint).expect("exporter");
    let recorder = Arc::new(SpanRecorder::new(provider.tracer("arbiter")));
    let mut tokens = Tokens::default();
    tokens.insert(&hash("tok"), "shopco".into(), "carol@shopco".into(), false);
    let policies = PolicySource {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(policies, tokens, Arc::new(InMemoryStore::default()))
        .unwrap()
        .traced(recorder);
    let caller = service.authenticate(Some("tok")).unwrap();
    service
        .create(
            &caller,
            serde_json::from_value(json!({"id": "t1", "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}))
                .unwrap(),
        )
        .await
        .unwrap();
    let step = |intent: serde_json::Value| {
        let service = service.clone();
        let caller = caller.clone();
        async move { service.step(&caller, "t1", intent).await.unwrap() }
    };
    let m = step(json!({"intent": "call_model", "model": "small", "estimated_tokens": 1000, "estimated_cost": 500})).await;
    let call = call_id(&m.effects[0]);
    step(json!({"intent": "model_responded", "call_id": call, "input_tokens": 300, "output_tokens": 40, "cost": 100, "output": {}})).await;
    let t = step(
        json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}),
    )
    .await;
    let call = call_id(&t.effects[0]);
    step(json!({"intent": "tool_returned", "call_id": call, "output": {"status": "shipped"}}))
        .await;
    step(json!({"intent": "call_tool", "tool": "issue_refund", "input": {"order_id": "ord-5", "amount": 30000}})).await;
    step(json!({"intent": "complete", "answer": "shipped"})).await;
    tokio::task::spawn_blocking(move || provider.force_flush().expect("flushed"))
        .await
        .unwrap();

    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = received.lock().unwrap().clone();
        if spans.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.abort();
    let by_name = |prefix: &str| {
        spans
            .iter()
            .find(|s| s.name.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix} span among {:?}",
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    };
    let root = by_name("invoke_agent");
    let chat = by_name("chat");
    let tool = by_name("execute_tool");
    assert_eq!(root.name, "invoke_agent support@shopco");
    assert!(
        root.parent_span_id.is_empty(),
        "the session span is the root"
    );
    for child in [chat, tool] {
        assert_eq!(child.trace_id, root.trace_id, "{}", child.name);
        assert_eq!(child.parent_span_id, root.span_id, "{}", child.name);
        assert!(child.start_time_unix_nano >= root.start_time_unix_nano);
        assert!(child.end_time_unix_nano <= root.end_time_unix_nano);
    }
    assert_eq!(
        text(&root.attributes, "gen_ai.operation.name"),
        "invoke_agent"
    );
    assert_eq!(text(&root.attributes, "gen_ai.conversation.id"), "t1");
    assert_eq!(text(&root.attributes, "arbiter.tenant"), "shopco");
    assert_eq!(text(&root.attributes, "arbiter.status"), "completed");
    assert_eq!(chat.name, "chat small");
    assert_eq!(text(&chat.attributes, "gen_ai.request.model"), "small");
    assert_eq!(
        attr(&chat.attributes, "gen_ai.usage.input_tokens"),
        Some(&any_value::Value::IntValue(300))
    );
    assert_eq!(tool.name, "execute_tool lookup_order");
    assert_eq!(text(&tool.attributes, "gen_ai.tool.name"), "lookup_order");
    // Decisions: the tool's allow on its span, the refused refund on the session's.
    let allowed = tool
        .events
        .iter()
        .find(|e| e.name == "arbiter.decision")
        .expect("the tool call's decision");
    assert_eq!(
        text(&allowed.attributes, "arbiter.decision.effect"),
        "allow"
    );
    assert!(
        strings(&allowed.attributes, "arbiter.decision.policies")
            .contains(&"base.permit.tools".to_owned()),
        "{allowed:?}"
    );
    let denied = root
        .events
        .iter()
        .find(|e| {
            e.name == "arbiter.decision" && text(&e.attributes, "arbiter.decision.effect") == "deny"
        })
        .expect("the refused refund's decision on the session span");
    assert_eq!(
        text(&denied.attributes, "arbiter.decision.action"),
        "Action::\"issue_refund\""
    );
    assert!(
        strings(&denied.attributes, "arbiter.decision.policies")
            .contains(&"support.refund.session_cap".to_owned())
    );
    assert_eq!(text(&denied.attributes, "arbiter.decision.mode"), "enforce");
}
