//! Sessions as OpenTelemetry traces, built from the event stream: one `invoke_agent` span per
//! session with a child `chat` span per model call attempt and an `execute_tool` span per tool call
//! attempt (the GenAI semantic conventions' names and `gen_ai.*` attributes), and each decision as
//! an `arbiter.decision` span event on the span it concerns (effect, basis, action, determining
//! policies, mode). Times are the events' own (the session's wall-clock start plus `t_ms`), so a
//! trace says when things happened, not when they were exported.
//!
//! [`otlp`] makes a provider that ships them over OTLP/HTTP (protobuf) in batches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel::Decision;
use kernel::event::{Event, EventBody};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

/// Turns events into spans; feed it every event of every session, in order per session.
pub struct SpanRecorder {
    tracer: SdkTracer,
    open: Mutex<HashMap<(String, String), Trace>>,
}

/// A session's open spans.
struct Trace {
    root: Span,
    /// In-flight model and tool calls, by call id.
    calls: HashMap<String, Span>,
}

fn at(started_wall_ms: u64, t_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(started_wall_ms.saturating_add(t_ms))
}

fn decision_attributes(d: &Decision) -> Vec<KeyValue> {
    let policies: Vec<StringValue> = d.policies.iter().map(|p| p.id.clone().into()).collect();
    vec![
        KeyValue::new("arbiter.decision.action", d.action.clone()),
        KeyValue::new(
            "arbiter.decision.effect",
            if d.allowed() { "allow" } else { "deny" },
        ),
        KeyValue::new(
            "arbiter.decision.basis",
            serde_json::to_value(d.basis)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        KeyValue::new(
            "arbiter.decision.policies",
            Value::Array(Array::String(policies)),
        ),
        KeyValue::new(
            "arbiter.decision.mode",
            serde_json::to_value(d.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
    ]
}

impl SpanRecorder {
    /// A recorder writing through `tracer`.
    pub fn new(tracer: SdkTracer) -> Self {
        Self {
            tracer,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Records one event of a session that started at `started_wall_ms` (ms since the epoch).
    pub fn record(&self, event: &Event, started_wall_ms: u64) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        let key = (event.tenant.clone(), event.session.clone());
        let now = at(started_wall_ms, event.t_ms);
        if let EventBody::SessionStarted { agent, user, .. } = &event.body {
            let root = self
                .tracer
                .span_builder(format!("invoke_agent {agent}"))
                .with_kind(SpanKind::Internal)
                .with_start_time(now)
                .with_attributes([
                    KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                    KeyValue::new("gen_ai.agent.id", agent.clone()),
                    KeyValue::new("gen_ai.conversation.id", event.session.clone()),
                    KeyValue::new("arbiter.tenant", event.tenant.clone()),
                    KeyValue::new("arbiter.user", user.clone()),
                ])
                .start_with_context(&self.tracer, &Context::new());
            open.insert(
                key.clone(),
                Trace {
                    root,
                    calls: HashMap::new(),
                },
            );
        }
        let Some(trace) = open.get_mut(&key) else {
            return; // a session this recorder did not see start
        };
        let parent = Context::new().with_remote_span_context(trace.root.span_context().clone());
        let mut ended = false;
        let mut concerns: Option<String> = None;
        match &event.body {
            EventBody::ModelCalled {
                call_id,
                model,
                attempt,
                ..
            } => {
                let span = self
                    .tracer
                    .span_builder(format!("chat {model}"))
                    .with_kind(SpanKind::Client)
                    .with_start_time(now)
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", "chat"),
                        KeyValue::new("gen_ai.request.model", model.clone()),
                        KeyValue::new("arbiter.call_id", call_id.clone()),
                        KeyValue::new("arbiter.attempt", i64::from(*attempt)),
                    ])
                    .start_with_context(&self.tracer, &parent);
                trace.calls.insert(call_id.clone(), span);
                concerns = Some(call_id.clone());
            }
            EventBody::ToolCalled {
                call_id,
                tool,
                attempt,
                ..
            } => {
                let span = self
                    .tracer
                    .span_builder(format!("execute_tool {tool}"))
                    .with_kind(SpanKind::Internal)
                    .with_start_time(now)
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", "execute_tool"),
                        KeyValue::new("gen_ai.tool.name", tool.clone()),
                        KeyValue::new("gen_ai.tool.call.id", call_id.clone()),
                        KeyValue::new("arbiter.attempt", i64::from(*attempt)),
                    ])
                    .start_with_context(&self.tracer, &parent);
                trace.calls.insert(call_id.clone(), span);
                concerns = Some(call_id.clone());
            }
            EventBody::ModelResponded {
                call_id,
                input_tokens,
                output_tokens,
                ..
            } => {
                if let Some(mut span) = trace.calls.remove(call_id) {
                    span.set_attribute(KeyValue::new(
                        "gen_ai.usage.input_tokens",
                        i64::try_from(*input_tokens).unwrap_or(i64::MAX),
                    ));
                    span.set_attribute(KeyValue::new(
                        "gen_ai.usage.output_tokens",
                        i64::try_from(*output_tokens).unwrap_or(i64::MAX),
                    ));
                    span.end_with_timestamp(now);
                }
            }
            EventBody::ToolReturned { call_id, .. } => {
                if let Some(mut span) = trace.calls.remove(call_id) {
                    span.end_with_timestamp(now);
                }
            }
            EventBody::CallFailed { call_id, error, .. } => {
                if let Some(mut span) = trace.calls.remove(call_id) {
                    span.set_attribute(KeyValue::new("error.type", error.clone()));
                    span.set_status(Status::error(error.clone()));
                    span.end_with_timestamp(now);
                }
            }
            EventBody::Completed { .. }
            | EventBody::Failed { .. }
            | EventBody::Cancelled { .. }
            | EventBody::LimitReached { .. } => ended = true,
            _ => {}
        }
        if let Some(d) = &event.decision {
            let mut attrs = decision_attributes(d);
            attrs.push(KeyValue::new(
                "arbiter.seq",
                i64::try_from(event.seq).unwrap_or(i64::MAX),
            ));
            attrs.push(KeyValue::new("arbiter.event", event.body.kind()));
            let span = concerns
                .as_ref()
                .and_then(|c| trace.calls.get_mut(c))
                .unwrap_or(&mut trace.root);
            span.add_event_with_timestamp("arbiter.decision", now, attrs);
        }
        if ended && let Some(mut trace) = open.remove(&key) {
            for (_, mut span) in trace.calls.drain() {
                span.set_status(Status::error("the session ended first"));
                span.end_with_timestamp(now);
            }
            trace
                .root
                .set_attribute(KeyValue::new("arbiter.status", event.body.kind()));
            if !matches!(event.body, EventBody::Completed { .. }) {
                trace.root.set_status(Status::error(event.body.kind()));
            }
            trace.root.end_with_timestamp(now);
        }
    }
}

/// A tracer provider exporting to an OTLP/HTTP endpoint (`http://host:4318`, or the full
/// `.../v1/traces`) in batches, as service `arbiter`.
pub fn otlp(endpoint: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    // reqwest is built without a default TLS provider (see `tools::http`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("arbiter")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
