//! The live runtime: cancellation mid-tool with a real subprocess (no orphan, latency measured),
//! clock ticks stopping a hung call, and a thousand concurrent sessions with isolated streams.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kernel::event::{encode_jsonl, verify_jsonl};
use kernel::{EventBody, Intent, Mode, Session, SessionConfig, Status};
use runtime::{
    Delivery, Estimate, EventHub, Message, Model, ModelCall, ModelError, ModelFuture, ModelReply,
    Runtime, SubprocessTool, Tool, ToolCall, ToolFuture, ToolOutput,
};
use serde_json::json;

/// A model that asks for one `web_search`, then answers.
struct OneSearch(Mutex<VecDeque<ModelReply>>);

impl OneSearch {
    fn new() -> Self {
        let search = ModelReply {
            input_tokens: 10,
            output_tokens: 5,
            cost: 0,
            output: json!("searching"),
            calls: vec![Intent::CallTool {
                tool: "web_search".into(),
                input: json!({"query": "q"}),
                estimated_cost: 0,
            }],
            answer: None,
        };
        let done = ModelReply {
            answer: Some("done".into()),
            calls: vec![],
            output: json!("done"),
            ..search.clone()
        };
        Self(Mutex::new(VecDeque::from([search, done])))
    }
}

impl Model for OneSearch {
    fn next_estimate(&self, _transcript: &[Message]) -> Option<Estimate> {
        self.0.lock().ok()?.front().map(|_| Estimate {
            tokens: 15,
            cost: 0,
        })
    }
    fn skip(&self) {
        self.0.lock().ok().map(|mut q| q.pop_front());
    }
    fn call(&self, _: ModelCall) -> ModelFuture<'_> {
        let reply = self.0.lock().ok().and_then(|mut q| q.pop_front());
        Box::pin(async move {
            reply.ok_or(ModelError {
                message: "no more".into(),
                retryable: false,
                cost: 0,
            })
        })
    }
}

/// A tool that sleeps, then answers.
struct Slow(Duration);

impl Tool for Slow {
    fn call(&self, _: ToolCall) -> ToolFuture<'_> {
        let d = self.0;
        Box::pin(async move {
            tokio::time::sleep(d).await;
            Ok(ToolOutput {
                value: json!("page"),
                cost: 0,
            })
        })
    }
}

#[tokio::test]
async fn cancelling_mid_tool_ends_the_session_and_kills_the_tool() {
    let pidfile = std::env::temp_dir().join(format!("arbiter-rt-cancel-{}", std::process::id()));
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let runtime = Arc::new(Runtime::new(Arc::new(OneSearch::new()), "small").tool(
        "web_search",
        Arc::new(SubprocessTool::new("sh", ["-c", script.as_str()])),
    ));
    let hub = EventHub::new(64);
    let mut events = hub.subscribe();
    let session = Session::new(demo(), config(Mode::Enforce)).expect("session");
    let handle = runtime.spawn(session, "search".into(), hub, None);
    for _ in 0..200 {
        if pidfile.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the tool started")
        .trim()
        .parse()
        .expect("pid");
    let asked = std::time::Instant::now();
    assert!(handle.cancel("alice@acme", "changed my mind"));
    let cancelled_after = loop {
        match events.next().await {
            Delivery::Event(e) if e.body.kind() == "cancelled" => break asked.elapsed(),
            Delivery::Closed => panic!("stream closed before the cancelled event"),
            _ => {}
        }
    };
    let outcome = handle.join().await.expect("joins");
    assert_eq!(outcome.status, Status::Cancelled);
    assert!(
        cancelled_after < Duration::from_millis(500),
        "cancel took {cancelled_after:?}"
    );
    eprintln!("cancel-to-terminal-event latency: {cancelled_after:?}");
    assert!(
        died(pid).await,
        "the tool's child {pid} survived the cancellation"
    );
    let _ = std::fs::remove_file(pidfile);
}

#[tokio::test(start_paused = true)]
async fn clock_ticks_stop_a_session_whose_tool_hangs() {
    let deployment = demo_with(
        "@id(\"test.five_seconds\") @limit(\"time\") forbid (principal, action == Action::\"continue_session\", resource) \
         when { context.session.elapsed_ms > 5000 };",
    );
    let runtime = Arc::new(
        Runtime::new(Arc::new(OneSearch::new()), "small")
            .tool("web_search", Arc::new(Slow(Duration::from_secs(20)))),
    );
    let session = Session::new(deployment, config(Mode::Enforce)).expect("session");
    let outcome = runtime
        .spawn(
            session,
            "search".into(),
            EventHub::new(64),
            Some(Duration::from_secs(1)),
        )
        .join()
        .await
        .expect("joins");
    assert_eq!(outcome.status, Status::LimitReached);
    let ticks = outcome
        .events
        .iter()
        .filter(|e| e.body.kind() == "clock_ticked")
        .count();
    assert_eq!(ticks, 5, "ticks at 1..=5 s pass, the 6 s tick is denied");
    assert!(matches!(
        outcome.events.last().map(|e| &e.body),
        Some(EventBody::LimitReached { .. })
    ));
    assert!(outcome.events.last().is_some_and(|e| e.t_ms == 6000));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_sessions_finish_with_isolated_streams() {
    let deployment = demo();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let cfg = SessionConfig {
            id: format!("s{i}"),
            tenant: tenant.into(),
            user: if i % 2 == 0 {
                "alice@acme".into()
            } else {
                "gina@globex".into()
            },
            agent: format!("assistant@{tenant}"),
            budget: tenant.into(),
            mode: Mode::Enforce,
        };
        let runtime = Arc::new(
            Runtime::new(Arc::new(OneSearch::new()), "small")
                .tool("web_search", Arc::new(Slow(Duration::from_millis(i % 50)))),
        );
        let session = Session::new(Arc::clone(&deployment), cfg).expect("session");
        tasks.spawn(async move {
            (
                i,
                runtime
                    .spawn(session, format!("request {i}"), EventHub::new(8), None)
                    .join()
                    .await,
            )
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.expect("task");
        let outcome = outcome.expect("session task");
        assert_eq!(outcome.status, Status::Completed, "session {i}");
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        assert!(
            outcome
                .events
                .iter()
                .all(|e| e.session == format!("s{i}") && e.tenant == tenant),
            "session {i} saw a foreign event"
        );
        let summary = verify_jsonl(&encode_jsonl(&outcome.events)).expect("chain verifies");
        assert_eq!(summary.sessions.len(), 1);
        assert!(outcome.events.iter().any(|e| matches!(&e.body, EventBody::SessionStarted { request, .. } if *request == format!("request {i}"))));
        done += 1;
    }
    assert_eq!(done, 1000);
}

/// A tool failing retryably `n` times, then answering.
struct Flaky(std::sync::atomic::AtomicU32, u32);

impl Tool for Flaky {
    fn call(&self, _: ToolCall) -> ToolFuture<'_> {
        let i = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let fails = i < self.1;
        Box::pin(async move {
            if fails {
                Err(runtime::ToolError::Failed {
                    message: "503".into(),
                    retryable: true,
                    cost: 0,
                })
            } else {
                Ok(ToolOutput {
                    value: json!("ok"),
                    cost: 0,
                })
            }
        })
    }
}

async fn flaky_run(failures: u32, jitter: Option<u64>) -> runtime::Outcome {
    let mut runtime = Runtime::new(Arc::new(OneSearch::new()), "small")
        .tool("web_search", Arc::new(Flaky(0.into(), failures)));
    if let Some(seed) = jitter {
        runtime = runtime.retry_jitter(seed);
    }
    let session = Session::new(demo(), config(Mode::Enforce)).expect("session");
    Arc::new(runtime)
        .spawn(session, "search".into(), EventHub::new(64), None)
        .join()
        .await
        .expect("joins")
}

fn retry_times(outcome: &runtime::Outcome) -> Vec<u64> {
    outcome
        .events
        .iter()
        .filter_map(|e| match e.body {
            EventBody::RetryScheduled { not_before_ms, .. } => Some(not_before_ms),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_flaky_tool_succeeds_within_its_retries_and_fails_cleanly_past_them() {
    // base.permit.tools: @max_retries("2") — three attempts in all.
    let ok = flaky_run(2, None).await;
    assert_eq!(ok.status, Status::Completed);
    assert_eq!(retry_times(&ok).len(), 2);
    let exhausted = flaky_run(3, None).await;
    assert_eq!(
        exhausted.status,
        Status::Completed,
        "the agent goes on after a failed tool"
    );
    let last_failure = exhausted.events.iter().rev().find_map(|e| match &e.body {
        EventBody::CallFailed {
            will_retry,
            attempt,
            ..
        } => Some((*will_retry, *attempt)),
        _ => None,
    });
    assert_eq!(last_failure, Some((false, 3)));
}

#[tokio::test(start_paused = true)]
async fn retry_jitter_is_seeded_and_recorded() {
    let plain = retry_times(&flaky_run(2, None).await);
    let a = retry_times(&flaky_run(2, Some(7)).await);
    let b = retry_times(&flaky_run(2, Some(7)).await);
    let c = retry_times(&flaky_run(2, Some(8)).await);
    assert_eq!(a, b, "same seed, same recorded retry times");
    assert_ne!(a, plain, "jitter moves the recorded retry times");
    assert_ne!(a, c, "another seed, other times");
}

/// A runtime that does not keep events still publishes every one: the hub's stream is the same
/// chain a keeping runtime returns, and the outcome holds none.
#[tokio::test(start_paused = true)]
async fn a_runtime_that_keeps_no_events_still_publishes_them_all() {
    let deployment = demo();
    let run = |keep: bool, hub: Option<EventHub>| {
        let deployment = Arc::clone(&deployment);
        async move {
            let runtime = Runtime::new(Arc::new(OneSearch::new()), "small")
                .tool("web_search", Arc::new(Slow(Duration::from_millis(5))))
                .keep_events(keep);
            let cfg = SessionConfig {
                id: "quiet".into(),
                tenant: "acme".into(),
                user: "alice@acme".into(),
                agent: "assistant@acme".into(),
                budget: "acme".into(),
                mode: Mode::Enforce,
            };
            let session = Session::new(deployment, cfg).expect("session");
            runtime
                .run(session, "find it".into(), Vec::new(), hub.as_ref())
                .await
        }
    };
    let kept = run(true, None).await;
    let hub = EventHub::new(64);
    let mut sub = hub.subscribe();
    let quiet = run(false, Some(hub.clone())).await;
    drop(hub);
    assert_eq!(quiet.status, Status::Completed);
    assert!(quiet.events.is_empty());
    let mut streamed = Vec::new();
    while let Delivery::Event(e) = sub.next().await {
        streamed.push(*e);
    }
    assert_eq!(streamed, kept.events);
    verify_jsonl(&encode_jsonl(&streamed)).expect("chain verifies");
}

/// A store whose appends wait (up to a few seconds) until `want` of them are inside at once,
/// recording the most it saw: a driver that blocked its worker threads on the store could never
/// have more appends waiting than it has workers, and group commit would gather nothing.
struct Rendezvous {
    want: usize,
    inside: Mutex<(usize, usize)>, // (now, most)
    arrived: std::sync::Condvar,
}

impl runtime::store::SessionLog for Rendezvous {
    fn begin(
        &self,
        _: &kernel::Deployment,
        _: &kernel::SessionConfig,
        _: u64,
    ) -> Result<(), runtime::store::StoreError> {
        Ok(())
    }

    fn append(
        &self,
        _: &str,
        _: &str,
        _: &kernel::Step,
        _: &[kernel::Event],
    ) -> Result<(), runtime::store::StoreError> {
        let mut inside = self.inside.lock().expect("lock");
        inside.0 += 1;
        inside.1 = inside.1.max(inside.0);
        self.arrived.notify_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while inside.1 < self.want && std::time::Instant::now() < deadline {
            inside = self
                .arrived
                .wait_timeout(inside, Duration::from_millis(50))
                .expect("wait")
                .0;
        }
        inside.0 -= 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_off_the_executor_so_more_sessions_than_workers_can_share_a_commit() {
    let deployment = demo();
    let store = Arc::new(Rendezvous {
        want: 6,
        inside: Mutex::new((0, 0)),
        arrived: std::sync::Condvar::new(),
    });
    let mut handles = Vec::new();
    for i in 0..8 {
        let runtime = Arc::new(
            Runtime::new(Arc::new(OneSearch::new()), "small")
                .tool("web_search", Arc::new(Slow(Duration::from_millis(1))))
                .log(Arc::clone(&store) as Arc<dyn runtime::store::SessionLog>),
        );
        let cfg = SessionConfig {
            id: format!("w{i}"),
            tenant: "acme".into(),
            user: "alice@acme".into(),
            agent: "assistant@acme".into(),
            budget: "acme".into(),
            mode: Mode::Enforce,
        };
        let session = Session::new(Arc::clone(&deployment), cfg).expect("session");
        handles.push(runtime.spawn(session, "find it".into(), EventHub::new(8), None));
    }
    for h in handles {
        let outcome = h.join().await.expect("task");
        assert_eq!(outcome.status, Status::Completed);
    }
    let most = store.inside.lock().expect("lock").1;
    assert!(
        most >= 6,
        "at most {most} appends were waiting at once on 2 workers"
    );
}
