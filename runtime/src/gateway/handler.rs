//! The MCP server a client talks to: `tools/list` filtered by policy, `tools/call` through the
//! kernel, approvals asked of the user by elicitation.
//!
//! Sessions: under the stateless protocol there is no MCP session, so the gateway keeps its own.
//! A call names it by the `_meta` key [`SESSION_META`] or, over HTTP, the header
//! [`SESSION_HEADER`]; otherwise a connection (a stdio client, or an HTTP client's MCP session)
//! has one of its own. The first call of a session may carry the user's request in `_meta`
//! ([`REQUEST_META`]), so that `from_user` provenance works as in a hosted run.

use std::time::Duration;

use kernel::event::EventBody;
use kernel::{Effect, Intent, Verdict};
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest, InputRequiredResult, InputResponses, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::{ElicitationError, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::Value;

use super::Gateway;
use crate::service::WhenBusy;
use crate::service::api::{ApiMode, CreateSession, StepResponse};
use crate::service::auth::Caller;
use crate::service::error::ApiError;

/// The `_meta` key naming the gateway session a call belongs to.
pub const SESSION_META: &str = "arbiter.dev/session";
/// The HTTP header naming it.
pub const SESSION_HEADER: &str = "arbiter-session";
/// The `_meta` key carrying the user's request (read on a session's first call).
pub const REQUEST_META: &str = "arbiter.dev/request";

/// The answer a user gives when asked to approve a call.
#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Approval {
    /// Approve this call?
    approve: bool,
}
rmcp::elicit_safe!(Approval);

/// One client connection (a stdio client, or an HTTP client's MCP session).
#[derive(Clone)]
pub struct Connection {
    gateway: Gateway,
    /// Who it acts as when it is not named by a bearer token (stdio).
    caller: Option<Caller>,
    /// Its session when a call names none.
    session: String,
    /// The sessions it opened, ended when it closes.
    opened: std::sync::Arc<std::sync::Mutex<Vec<(Caller, String)>>>,
}

impl Connection {
    /// A connection acting as `caller` (the config's principal, for stdio), or, with `None`, as
    /// the bearer token of each HTTP request.
    pub fn new(gateway: Gateway, caller: Option<Caller>) -> Self {
        let mut seed = [0u8; 8];
        let session = match getrandom::fill(&mut seed) {
            Ok(()) => format!("mcp-{}", hex::encode(seed)),
            Err(_) => format!("mcp-{}", std::process::id()),
        };
        Self {
            gateway,
            caller,
            session,
            opened: std::sync::Arc::default(),
        }
    }

    /// Ends every session this connection opened (`completed`: the client went away), so each
    /// is whole in the log. A session already ended is left as it is.
    pub async fn close(&self) {
        let opened = self.opened.lock().map(|o| o.clone()).unwrap_or_default();
        for (caller, id) in opened {
            let done = Intent::Complete {
                answer: "the MCP client disconnected".into(),
            };
            let _ = self
                .gateway
                .service()
                .propose(&caller, &id, done, WhenBusy::Queue)
                .await;
        }
    }

    /// The caller of a request: the connection's, or the one its bearer token names.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, String> {
        if let Some(caller) = &self.caller {
            return Ok(caller.clone());
        }
        let token = self
            .parts(context)
            .and_then(|p| p.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        self.gateway
            .service()
            .authenticate(token)
            .map_err(|e| e.to_string())
    }

    fn parts<'a>(
        &self,
        context: &'a RequestContext<RoleServer>,
    ) -> Option<&'a http::request::Parts> {
        context.extensions.get::<http::request::Parts>()
    }

    /// The session a call belongs to.
    fn session_of(
        &self,
        meta: Option<&JsonObject>,
        context: &RequestContext<RoleServer>,
    ) -> String {
        meta.and_then(|m| m.get(SESSION_META))
            .and_then(Value::as_str)
            .or_else(|| {
                self.parts(context)
                    .and_then(|p| p.headers.get(SESSION_HEADER))
                    .and_then(|v| v.to_str().ok())
            })
            .map_or_else(|| self.session.clone(), str::to_owned)
    }

    /// Opens the session unless this gateway already has.
    async fn open(&self, caller: &Caller, id: &str, request: String) -> Result<(), String> {
        let key = (caller.tenant.clone(), id.to_owned());
        let known = self
            .gateway
            .inner
            .opened
            .lock()
            .map(|o| o.contains(&key))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let principal = self
            .gateway
            .principal()
            .ok_or("the gateway's config names no [principal] (its agent and budget)")?;
        let body = CreateSession {
            id: id.to_owned(),
            agent: principal.agent.clone(),
            budget: principal.budget.clone(),
            request,
            mode: match principal.mode {
                super::config::ConfigMode::Enforce => ApiMode::Enforce,
                super::config::ConfigMode::LogOnly => ApiMode::LogOnly,
            },
        };
        match self.gateway.service().create(caller, body).await {
            Ok((_, view, _)) if view.status == "failed" => {
                Err(format!("session `{id}` could not start (see its events)"))
            }
            // Opened elsewhere (another connection, an earlier gateway run on the same store).
            Ok(_) | Err(ApiError::Conflict(_)) => {
                if let Ok(mut o) = self.gateway.inner.opened.lock() {
                    o.insert(key);
                }
                if let Ok(mut o) = self.opened.lock() {
                    o.push((caller.clone(), id.to_owned()));
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// One `tools/call`, decided, forwarded if allowed, and reported.
    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, String> {
        let caller = self.caller(&context)?;
        if let Err(e) = self.gateway.refresh().await {
            tracing::warn!("tool list refresh failed, the old list stays: {e}");
        }
        let catalog = self.gateway.catalog();
        let entry = catalog
            .tools
            .get(request.name.as_ref())
            .ok_or_else(|| format!("no tool `{}` behind this gateway", request.name))?;
        // The SDK may hand `_meta` over in the request or in its context.
        let meta = request
            .meta
            .as_ref()
            .map(|m| &m.0.0)
            .filter(|m| !m.is_empty())
            .unwrap_or(&context.meta.0.0);
        let meta = Some(meta);
        let session = self.session_of(meta, &context);
        let user_request = meta
            .and_then(|m| m.get(REQUEST_META))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.open(&caller, &session, user_request).await?;
        let intent = Intent::CallTool {
            tool: entry.spec.name.clone(),
            input: Value::Object(request.arguments.clone().unwrap_or_default()),
            estimated_cost: 0,
        };
        let service = self.gateway.service();
        let step = |intent: Intent| async {
            service
                .propose(&caller, &session, intent, WhenBusy::Queue)
                .await
                .map_err(|e| e.to_string())
        };
        let mut response = match &request.request_state {
            // The retry of a call that needed the user's input (2026-07-28): the answer decides.
            Some(state) => {
                self.resume(
                    &caller,
                    state,
                    request.input_responses.as_ref(),
                    &entry.spec.name,
                )
                .await?
            }
            None => step(intent).await?,
        };
        if response.status == "waiting_approval" {
            if modern(&context) {
                return self.input_required(&session, &response).map(Into::into);
            }
            response = self
                .approval(&caller, &session, &response, &context)
                .await?;
        }
        loop {
            let Some(Effect::CallTool {
                call_id,
                input,
                obligations,
                ..
            }) = response
                .effects
                .iter()
                .find(|e| matches!(e, Effect::CallTool { .. }))
                .cloned()
            else {
                return Err(refusal(&response));
            };
            let upstream = self
                .gateway
                .upstream(&entry.server)
                .ok_or_else(|| format!("upstream `{}` is gone", entry.server))?;
            let arguments = match input {
                Value::Object(map) => map,
                _ => JsonObject::new(),
            };
            let timeout = obligations.timeout_ms.map(Duration::from_millis);
            match upstream.call(&entry.upstream, arguments, timeout).await {
                Ok(mut result) => {
                    let output = serde_json::to_value(&result).map_err(|e| e.to_string())?;
                    step(Intent::ToolReturned {
                        call_id,
                        output,
                        cost: 0,
                    })
                    .await?;
                    // Results of servers at 2025-era versions carry no `resultType`.
                    result.result_type.get_or_insert(ResultType::COMPLETE);
                    return Ok(result.into());
                }
                Err(error) => {
                    response = step(Intent::CallFailed {
                        call_id,
                        error: error.clone(),
                        retryable: error.starts_with("timed out"),
                        cost: 0,
                        jitter_ms: 0,
                    })
                    .await?;
                    if !response
                        .effects
                        .iter()
                        .any(|e| matches!(e, Effect::CallTool { .. }))
                    {
                        return Err(format!("`{}` failed: {error}", request.name));
                    }
                }
            }
        }
    }

    /// The session waits for an approval: asks the user by elicitation if the client can be
    /// asked, else waits for one given through the HTTP API (when the gateway is configured to),
    /// else rejects it so the session can go on. The answer is recorded as the caller's
    /// `approve` or `reject`, itself authorized.
    async fn approval(
        &self,
        caller: &Caller,
        session: &str,
        response: &StepResponse,
        context: &RequestContext<RoleServer>,
    ) -> Result<StepResponse, String> {
        let (request_id, message) = question(response)?;
        let policies = approval_policies(response);
        let service = self.gateway.service();
        let answer = context.peer.elicit::<Approval>(message).await;
        let why = format!(
            "the call needs an approval under policy {}{}",
            policies.join(", "),
            response
                .decision
                .as_ref()
                .map(reasons)
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let reject = |reason: String| {
            let request_id = request_id.clone();
            async move {
                service
                    .reject(caller, session, &request_id, reason.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Err::<StepResponse, String>(reason)
            }
        };
        match answer {
            Ok(Some(Approval { approve: true })) => service
                .approve(caller, session, &request_id)
                .await
                .map_err(|e| e.to_string()),
            Ok(_) | Err(ElicitationError::UserDeclined) | Err(ElicitationError::UserCancelled) => {
                reject(format!("{why}, and you declined it")).await
            }
            Err(ElicitationError::CapabilityNotSupported) | Err(_) => {
                let wait = self.gateway.inner.approval_wait;
                if !wait.is_zero()
                    && let Some(r) = self.wait_for_approval(caller, session, wait).await
                {
                    return Ok(r);
                }
                reject(format!(
                    "{why}; this client cannot be asked (no elicitation) and none came through the API, so it was rejected"
                ))
                .await
            }
        }
    }

    /// At 2026-07-28 a server may not ask the client mid-request: the call answers with an
    /// input-required result carrying the approval question, and the client calls again with the
    /// answer and `requestState` (the session and the approval request it answers).
    fn input_required(
        &self,
        session: &str,
        response: &StepResponse,
    ) -> Result<InputRequiredResult, String> {
        let (request_id, message) = question(response)?;
        let schema = ElicitationSchema::from_type::<Approval>().map_err(|e| e.to_string())?;
        let ask = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: schema,
        };
        let state = serde_json::json!({"session": session, "request_id": request_id}).to_string();
        let requests = [(
            APPROVAL_INPUT.to_owned(),
            InputRequest::Elicitation(ElicitRequest::new(ask)),
        )];
        Ok(InputRequiredResult::new(
            Some(requests.into_iter().collect()),
            Some(state),
        ))
    }

    /// The retry after [`Connection::input_required`]: records the user's answer as the caller's
    /// `approve` or `reject` of exactly the request the state names.
    async fn resume(
        &self,
        caller: &Caller,
        state: &str,
        responses: Option<&InputResponses>,
        tool: &str,
    ) -> Result<StepResponse, String> {
        #[derive(Deserialize)]
        struct State {
            session: String,
            request_id: String,
        }
        let state: State = serde_json::from_str(state)
            .map_err(|e| format!("`requestState` is not one this gateway gave: {e}"))?;
        // The answer is for exactly the call that was asked about: same session, waiting on that
        // very request, for this tool.
        let pending = self
            .gateway
            .service()
            .approvals(caller)
            .await
            .map_err(|e| e.to_string())?;
        let waiting = pending
            .iter()
            .find(|a| a.session == state.session && a.request_id == state.request_id)
            .ok_or("`requestState` names no approval waiting in your sessions")?;
        let action = waiting.request.get("action").and_then(Value::as_str);
        if action != Some(format!("Action::\"{tool}\"").as_str()) {
            return Err(format!(
                "`requestState` answers a question about {}, not this call of `{tool}`",
                action.unwrap_or("another call")
            ));
        }
        let answer = responses
            .and_then(|r| r.get(APPROVAL_INPUT))
            .and_then(|v| serde_json::from_value::<ElicitResult>(v.clone()).ok());
        let approved = answer.as_ref().is_some_and(|a| {
            a.action == ElicitationAction::Accept
                && a.content
                    .as_ref()
                    .and_then(|c| c.get("approve"))
                    .and_then(Value::as_bool)
                    == Some(true)
        });
        let service = self.gateway.service();
        if approved {
            return service
                .approve(caller, &state.session, &state.request_id)
                .await
                .map_err(|e| e.to_string());
        }
        let reason = if answer.is_some() {
            "the call needed your approval, and you declined it"
        } else {
            "the call needed your approval, and no answer came with the retry"
        };
        service
            .reject(caller, &state.session, &state.request_id, reason.to_owned())
            .await
            .map_err(|e| e.to_string())?;
        Err(reason.to_owned())
    }

    /// Waits up to `wait` for the session to leave `waiting_approval` through the HTTP API; the
    /// call it dispatched, as a response, if it was approved.
    async fn wait_for_approval(
        &self,
        caller: &Caller,
        session: &str,
        wait: Duration,
    ) -> Option<StepResponse> {
        let service = self.gateway.service();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Subscribed before the status is read, so no change between the two is missed.
            let mut page = service.events_after(caller, session, None).await.ok()?;
            let view = service.get(caller, session).await.ok()?;
            if view.status == "waiting_approval" {
                tokio::time::timeout_at(deadline, page.changes.changed())
                    .await
                    .ok()?
                    .ok()?;
                continue;
            }
            let page = service.events_after(caller, session, None).await.ok()?;
            let effects = match &page.events.last()?.body {
                EventBody::ToolCalled {
                    call_id,
                    tool,
                    attempt,
                    input,
                    obligations,
                    ..
                } => vec![Effect::CallTool {
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    input: input.clone(),
                    attempt: *attempt,
                    not_before_ms: 0,
                    obligations: obligations.clone(),
                }],
                _ => Vec::new(),
            };
            return Some(StepResponse {
                outcome: "decided".into(),
                decision: page.events.iter().rev().find_map(|e| e.decision.clone()),
                error: None,
                events: Vec::new(),
                effects,
                status: view.status,
            });
        }
    }
}

/// The key of the approval question in an input-required result.
const APPROVAL_INPUT: &str = "approval";

/// Whether the request speaks 2026-07-28 or later, where a server may not ask the client
/// anything mid-request.
fn modern(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The `@approval` policies a waiting step asks about.
fn approval_policies(response: &StepResponse) -> Vec<String> {
    response
        .events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ApprovalRequested { policies, .. } => Some(policies.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The approval request a waiting step made, and the question to put to the user.
fn question(response: &StepResponse) -> Result<(String, String), String> {
    response
        .events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ApprovalRequested {
                request_id,
                policies,
                request,
                ..
            } => Some((
                request_id.clone(),
                format!(
                    "Policy {} asks for your approval of this call:\n{}",
                    policies.join(", "),
                    serde_json::to_string_pretty(request).unwrap_or_default()
                ),
            )),
            _ => None,
        })
        .ok_or_else(|| "the session waits for an approval it did not ask for here".into())
}

/// Why a step dispatched no call, as the model should read it.
fn refusal(response: &StepResponse) -> String {
    if let Some(error) = &response.error {
        return format!("refused before any policy ran: {error}");
    }
    let decision = response.decision.as_ref().or_else(|| {
        response
            .events
            .iter()
            .rev()
            .find_map(|e| e.decision.as_ref())
    });
    match decision {
        Some(d) if d.effect == Verdict::Deny => {
            let ids = d.deciders();
            let mut text = if ids.is_empty() {
                format!("denied by Arbiter: no policy permits `{}`", d.action)
            } else {
                format!("denied by Arbiter policy {}", ids.join(", "))
            };
            let reasons = reasons(d);
            if !reasons.is_empty() {
                text.push_str(&format!(": {reasons}"));
            }
            if !d.errors.is_empty() {
                text.push_str(&format!(" (errors: {})", d.errors.join("; ")));
            }
            text
        }
        _ => format!(
            "Arbiter did not dispatch the call (session {})",
            response.status
        ),
    }
}

/// The `@reason` annotations of the policies that decided `d`, for the model to read.
fn reasons(d: &kernel::Decision) -> String {
    d.policies
        .iter()
        .filter_map(|p| p.annotations.get("reason").map(String::as_str))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServerHandler for Connection {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        );
        info.server_info =
            rmcp::model::Implementation::new("arbiter-mcp-gateway", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Every tool call is authorized by Arbiter's policies before it reaches the server; a \
             denied call returns an error naming the policy."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.caller(&context)
            .map_err(|e| McpError::invalid_request(e, None))?;
        if let Err(e) = self.gateway.refresh().await {
            tracing::warn!("tool list refresh failed, the old list stays: {e}");
        }
        let agent = self
            .gateway
            .principal()
            .map(|p| p.agent.clone())
            .unwrap_or_default();
        let deployment = self.gateway.service().current();
        let tools = self
            .gateway
            .catalog()
            .tools
            .values()
            .filter(|e| deployment.may_call(&agent, &e.spec.name))
            .map(|e| e.listed.clone())
            .collect();
        // A list built by hand must still carry the 2026-07-28 fields (`ttlMs`, `cacheScope`):
        // it depends on the caller, so it is private, and stale as soon as policies reload.
        Ok(ListToolsResult::with_all_items(tools)
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(match self.call(request, context).await {
            Ok(response) => response,
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]).into(),
        })
    }
}
