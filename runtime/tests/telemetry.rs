//! Events as `tracing` records under OpenTelemetry GenAI names. Alone in its binary: `tracing`
//! caches callsite interest process-wide, so a concurrent test emitting the same events with no
//! subscriber could make this test's scoped subscriber miss them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use runtime::EventHub;

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
    let events = sample_events();
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
