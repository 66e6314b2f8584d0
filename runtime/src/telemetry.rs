//! Events as `tracing` records named after the OpenTelemetry GenAI semantic conventions, so any
//! OTel pipeline (tracing-opentelemetry, an OTLP exporter) can ship them.
//!
//! Names: `invoke_agent` (session start and end), `chat` (model calls and responses), `execute_tool`
//! (tool calls, results and failures); other events are recorded as `arbiter.<kind>`. Attributes use
//! the `gen_ai.*` names (`gen_ai.operation.name`, `gen_ai.agent.id`, `gen_ai.request.model`,
//! `gen_ai.tool.name`, `gen_ai.tool.call.id`, `gen_ai.usage.input_tokens`,
//! `gen_ai.usage.output_tokens`) plus `arbiter.*` ones for what the conventions lack (seq, tenant,
//! decision effect and policies).

use tracing::info;

use kernel::event::{Event, EventBody};

/// Emits one `tracing` event for `event` at INFO level (target `kernel::driver::telemetry`).
pub fn record(event: &Event) {
    let effect = event
        .decision
        .as_ref()
        .map(|d| if d.allowed() { "allow" } else { "deny" })
        .unwrap_or("");
    let policies = event
        .decision
        .as_ref()
        .map(|d| {
            d.policies
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let (seq, session, tenant, kind) = (
        event.seq,
        event.session.as_str(),
        event.tenant.as_str(),
        event.body.kind(),
    );
    match &event.body {
        EventBody::SessionStarted { agent, .. } => info!(
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.id = agent.as_str(),
            gen_ai.conversation.id = session,
            arbiter.tenant = tenant,
            arbiter.seq = seq,
            arbiter.kind = kind,
            "invoke_agent"
        ),
        EventBody::Completed { .. }
        | EventBody::Failed { .. }
        | EventBody::Cancelled { .. }
        | EventBody::LimitReached { .. } => info!(
            gen_ai.operation.name = "invoke_agent",
            gen_ai.conversation.id = session,
            arbiter.tenant = tenant,
            arbiter.seq = seq,
            arbiter.kind = kind,
            arbiter.decision = effect,
            arbiter.policies = policies.as_str(),
            "invoke_agent"
        ),
        EventBody::ModelCalled { call_id, model, .. } => info!(
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model.as_str(),
            arbiter.call_id = call_id.as_str(),
            gen_ai.conversation.id = session,
            arbiter.tenant = tenant,
            arbiter.seq = seq,
            arbiter.kind = kind,
            arbiter.decision = effect,
            arbiter.policies = policies.as_str(),
            "chat"
        ),
        EventBody::ModelResponded {
            call_id,
            input_tokens,
            output_tokens,
            ..
        } => info!(
            gen_ai.operation.name = "chat",
            gen_ai.usage.input_tokens = input_tokens,
            gen_ai.usage.output_tokens = output_tokens,
            arbiter.call_id = call_id.as_str(),
            gen_ai.conversation.id = session,
            arbiter.tenant = tenant,
            arbiter.seq = seq,
            arbiter.kind = kind,
            "chat"
        ),
        EventBody::ToolCalled { call_id, tool, .. }
        | EventBody::ToolReturned { call_id, tool, .. } => info!(
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = tool.as_str(),
            gen_ai.tool.call.id = call_id.as_str(),
            gen_ai.conversation.id = session,
            arbiter.tenant = tenant,
            arbiter.seq = seq,
            arbiter.kind = kind,
            arbiter.decision = effect,
            arbiter.policies = policies.as_str(),
            "execute_tool"
        ),
        EventBody::CallFailed {
            call_id,
            target,
            error,
            ..
        } => info!(
            gen_ai.operation.name = "execute_tool", gen_ai.tool.name = target.as_str(), gen_ai.tool.call.id = call_id.as_str(),
            error.type = error.as_str(), gen_ai.conversation.id = session, arbiter.tenant = tenant, arbiter.seq = seq,
            arbiter.kind = kind,
            "execute_tool"
        ),
        _ => info!(
            gen_ai.conversation.id = session,
            arbiter.tenant = tenant,
            arbiter.seq = seq,
            arbiter.kind = kind,
            arbiter.decision = effect,
            arbiter.policies = policies.as_str(),
            "arbiter.{kind}"
        ),
    }
}
