//! Load on `arbiter serve`, bounded (1,000 sessions, three tool calls each, two minutes at most)
//! and on loopback: 1,000 sessions run concurrently through the HTTP decision API, each with an SSE
//! subscriber from its start (every tenth drops its stream midway and resumes with
//! `Last-Event-ID`). Every subscriber must see exactly its session's stored events: none lost,
//! none repeated, none out of order, none of another session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runtime::service::auth::{Tokens, hash};
use runtime::service::{PolicySource, Service, http};
use runtime::store::{InMemoryStore, SessionStore};
use serde_json::{Value, json};

const SESSIONS: usize = 1_000;
const CALLS: usize = 3;
const TOKEN: &str = "tok-load";

/// Reads the stream until it ends (or `stop_after` events), returning (seq, kind, session) of each.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    after: Option<u64>,
    stop_after: Option<usize>,
) -> Vec<(u64, String, String)> {
    let mut req = client.get(&url).bearer_auth(TOKEN);
    if let Some(a) = after {
        req = req.header("last-event-id", a.to_string());
    }
    let mut res = req.send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut out = Vec::new();
    let mut buf = String::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue; // a keep-alive comment
            };
            let e: Value = serde_json::from_str(data.trim()).unwrap();
            let id: u64 = frame
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_eq!(Some(id), e["seq"].as_u64());
            out.push((
                id,
                e["kind"].as_str().unwrap().to_owned(),
                e["session"].as_str().unwrap().to_owned(),
            ));
            if stop_after.is_some_and(|n| out.len() >= n) {
                return out;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_with_subscribers_lose_repeat_and_reorder_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut tokens = Tokens::default();
    tokens.insert(&hash(TOKEN), "shopco".into(), "carol@shopco".into(), false);
    let store = Arc::new(InMemoryStore::default());
    let policies = PolicySource {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(policies, tokens, store.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(service)).await.unwrap();
    });
    let client = reqwest::Client::new();

    let run = async {
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let client = client.clone();
                let base = base.clone();
                tokio::spawn(async move {
                    let id = format!("load-{i}");
                    let post = |path: String, body: Value| {
                        let client = client.clone();
                        let url = format!("{base}{path}");
                        async move {
                            let res = client.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
                            assert!(res.status().is_success(), "{}", res.status());
                            res.json::<Value>().await.unwrap()
                        }
                    };
                    post(
                        "/v1/sessions".into(),
                        json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}),
                    )
                    .await;
                    let url = format!("{base}/v1/sessions/{id}/events");
                    // Every tenth subscriber reads two events, drops, and resumes after the second.
                    let resumes = i.is_multiple_of(10);
                    let first = tokio::spawn(subscribe(
                        client.clone(),
                        url.clone(),
                        None,
                        resumes.then_some(2),
                    ));
                    let steps = format!("/v1/sessions/{id}/steps");
                    for _ in 0..CALLS {
                        let asked = post(
                            steps.clone(),
                            json!({"intent": {"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}}),
                        )
                        .await;
                        let call = asked["effects"][0]["call_id"].as_str().unwrap().to_owned();
                        post(
                            steps.clone(),
                            json!({"intent": {"intent": "tool_returned", "call_id": call, "output": {"n": i}}}),
                        )
                        .await;
                    }
                    post(steps, json!({"intent": {"intent": "complete", "answer": "done"}})).await;
                    let mut seen = first.await.unwrap();
                    if resumes {
                        let after = seen.last().map(|e| e.0);
                        seen.extend(subscribe(client.clone(), url, after, None).await);
                    }
                    (id, seen)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };
    let results = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the load finishes within two minutes");
    server.abort();

    assert_eq!(results.len(), SESSIONS);
    for (id, seen) in results {
        let stored = store.load("shopco", &id).unwrap();
        let want: Vec<(u64, String, String)> = stored
            .events
            .iter()
            .map(|e| (e.seq, e.body.kind().to_owned(), e.session.clone()))
            .collect();
        assert_eq!(
            seen, want,
            "{id}: the stream differs from the stored events"
        );
        assert_eq!(want.last().map(|e| e.1.as_str()), Some("completed"), "{id}");
    }
}
