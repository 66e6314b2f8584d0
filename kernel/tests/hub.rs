//! Live event delivery and its `tracing` form.
#![cfg(feature = "driver")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use kernel::driver::{Delivery, EventHub};
use kernel::{Event, Intent, Mode, Session};
use serde_json::json;

/// A short real session's events: start, a model call and response, a tool call and result.
fn events() -> Vec<Event> {
    let mut s = Session::new(demo(), config(Mode::Enforce)).expect("session");
    let mut out = Vec::new();
    out.extend(
        step(
            &mut s,
            Intent::Start {
                request: "hi".into(),
            },
            0,
        )
        .events,
    );
    let t = step(
        &mut s,
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 10,
            estimated_cost: 5,
        },
        1,
    );
    let id = call_id(&t);
    out.extend(t.events);
    out.extend(
        step(
            &mut s,
            Intent::ModelResponded {
                call_id: id,
                input_tokens: 7,
                output_tokens: 3,
                cost: 4,
                output: json!("x"),
            },
            2,
        )
        .events,
    );
    let t = step(&mut s, tool("web_search", json!({"query": "q"})), 3);
    let id = call_id(&t);
    out.extend(t.events);
    out.extend(step(&mut s, returned(&id, json!("page")), 4).events);
    out.extend(
        step(
            &mut s,
            Intent::Complete {
                answer: "done".into(),
            },
            5,
        )
        .events,
    );
    out
}

#[tokio::test]
async fn subscribers_get_every_event_in_order() {
    let hub = EventHub::new(64);
    let mut a = hub.subscribe();
    let mut b = hub.subscribe();
    let events = events();
    for e in &events {
        assert_eq!(hub.publish(e), 2);
    }
    for sub in [&mut a, &mut b] {
        for e in &events {
            assert_eq!(sub.next().await, Delivery::Event(Box::new(e.clone())));
        }
    }
    drop(hub);
    assert_eq!(a.next().await, Delivery::Closed);
}

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_never_blocks_the_publisher() {
    let hub = EventHub::new(4);
    let mut slow = hub.subscribe();
    let events = events();
    assert!(events.len() > 6);
    // Publishing is synchronous: it returns at once even though nobody reads.
    for e in &events {
        hub.publish(e);
    }
    let missed = events.len() as u64 - 4;
    assert_eq!(slow.next().await, Delivery::Lagged { missed });
    for e in &events[events.len() - 4..] {
        assert_eq!(slow.next().await, Delivery::Event(Box::new(e.clone())));
    }
}

/// Records every tracing event's message and fields.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().expect("lock").push(fields);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn events_are_traced_under_opentelemetry_genai_names() {
    let capture = Capture::default();
    let hub = EventHub::new(64);
    let events = events();
    tracing::subscriber::with_default(capture.clone(), || {
        for e in &events {
            hub.publish(e);
        }
    });
    let seen = capture.0.lock().expect("lock").clone();
    assert_eq!(seen.len(), events.len(), "one record per event");
    let find = |message: &str, key: &str, value: &str| {
        seen.iter().any(|f| {
            f.get("message").map(String::as_str) == Some(message)
                && f.get(key).map(String::as_str) == Some(value)
        })
    };
    assert!(
        find("invoke_agent", "gen_ai.agent.id", "assistant@acme"),
        "{seen:?}"
    );
    assert!(find("chat", "gen_ai.request.model", "small"), "{seen:?}");
    assert!(
        find("chat", "gen_ai.usage.input_tokens", "7")
            && find("chat", "gen_ai.usage.output_tokens", "3"),
        "{seen:?}"
    );
    assert!(
        find("execute_tool", "gen_ai.tool.name", "web_search"),
        "{seen:?}"
    );
    assert!(
        find("execute_tool", "arbiter.decision", "allow"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|f| f.contains_key("arbiter.seq") && f.contains_key("gen_ai.conversation.id"))
    );
}
