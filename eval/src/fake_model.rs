//! A scripted OpenAI-compatible chat-completions server, for testing the model adapter and for
//! trying `arbiter run` without a real model.
//!
//! The n-th request gets the n-th scripted reply, whatever it asks (so a retried request gets the
//! next reply, which is how a 429 followed by a success is scripted). A reply is a message (text,
//! tool calls), an error status, or a raw body; a request asking for `stream: true` gets the
//! message as server-sent events, split into small fragments. Every request body is kept for
//! inspection. Past the end of the script the server answers 500.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::ScenarioError;
use kernel::Source;

/// The script: replies in order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// One per request.
    #[serde(default, rename = "reply")]
    pub replies: Vec<Reply>,
    /// Answer each request with the reply at its conversation's position (the number of
    /// assistant messages it carries) instead of in arrival order: many concurrent sessions, or
    /// one resumed on another instance, each get the whole script.
    #[serde(default)]
    pub per_conversation: bool,
}

/// One scripted answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Assistant text.
    pub content: Option<String>,
    /// Tool calls asked for.
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    /// Reported `[prompt_tokens, completion_tokens]`; default `[100, 20]`. `[]` reports no usage.
    pub usage: Option<Vec<u64>>,
    /// Answer with this HTTP status and an OpenAI-style error instead.
    pub status: Option<u16>,
    /// Answer with this body verbatim (status 200).
    pub raw: Option<String>,
    /// Cut a streamed answer after this many events (no `[DONE]`).
    pub cut_after: Option<usize>,
}

/// A scripted tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    /// The function name.
    pub name: String,
    /// The arguments (sent as JSON text); a string is sent as is, valid JSON or not.
    pub arguments: Value,
}

impl Script {
    /// Reads a TOML script; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Io {
            path: path.into(),
            source: e,
        })?;
        let source = Source::new(path.display().to_string(), text);
        toml::from_str(&source.text).map_err(|e| {
            let span = e.span().map(|s| (s.start, s.len()));
            ScenarioError::invalid(&source, span, e.message())
        })
    }
}

/// A running fake server.
pub struct FakeModel {
    /// Where it listens.
    pub addr: SocketAddr,
    served: Arc<Served>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeModel {
    /// The base URL to configure an adapter with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body received so far, in order, each with the `Authorization` header it
    /// came with under `_authorization`.
    pub fn requests(&self) -> Vec<Value> {
        self.served
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Serves `script` on `listen` (port 0 picks a free one) until dropped.
    pub async fn start(script: Script, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(Served {
            script,
            requests: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&served));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, served, task })
    }

    /// Serves until the process ends.
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Served {
    script: Script,
    requests: Mutex<Vec<Value>>,
}

async fn complete(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let n = {
        let Ok(mut seen) = served.requests.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let mut entry = body.clone();
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(fields) = entry.as_object_mut() {
            fields.insert("_authorization".into(), json!(auth));
        }
        seen.push(entry);
        if served.script.per_conversation {
            body.get("messages")
                .and_then(Value::as_array)
                .map_or(0, |m| {
                    m.iter()
                        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
                        .count()
                })
        } else {
            seen.len() - 1
        }
    };
    let Some(reply) = served.script.replies.get(n) else {
        return error(500, "the fake model's script is exhausted");
    };
    if let Some(status) = reply.status {
        return error(status, "scripted error");
    }
    if let Some(raw) = &reply.raw {
        return (StatusCode::OK, raw.clone()).into_response();
    }
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let events = stream_events(reply, &model);
        let cut = reply.cut_after.unwrap_or(usize::MAX);
        let text: String = events
            .iter()
            .take(cut)
            .map(|e| format!("data: {e}\n\n"))
            .chain((cut == usize::MAX).then(|| "data: [DONE]\n\n".to_owned()))
            .collect();
        return ([(header::CONTENT_TYPE, "text/event-stream")], text).into_response();
    }
    let calls: Vec<Value> = reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"id": format!("call_{n}_{i}"), "type": "function", "function": {"name": c.name, "arguments": arguments(c)}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": reply.content});
    if !calls.is_empty()
        && let Some(fields) = message.as_object_mut()
    {
        fields.insert("tool_calls".into(), Value::Array(calls));
    }
    let mut out = json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
    });
    if let Some(usage) = usage(reply)
        && let Some(fields) = out.as_object_mut()
    {
        fields.insert("usage".into(), usage);
    }
    Json(out).into_response()
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": "fake", "code": status}});
    let mut response = (code, Json(body)).into_response();
    if status == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("0"));
    }
    response
}

fn arguments(c: &ScriptedCall) -> String {
    match &c.arguments {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn usage(reply: &Reply) -> Option<Value> {
    match reply.usage.as_deref() {
        None => Some(json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})),
        Some([i, o]) => {
            Some(json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}))
        }
        Some(_) => None,
    }
}

/// The reply as chunks: text in 4-character pieces, each call's name first and its arguments in
/// 5-character pieces, then the finish reason, then usage in a chunk without choices.
fn stream_events(reply: &Reply, model: &Value) -> Vec<Value> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut out = vec![chunk(json!({"role": "assistant"}), None)];
    if let Some(text) = &reply.content {
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(4) {
            out.push(chunk(
                json!({"content": piece.iter().collect::<String>()}),
                None,
            ));
        }
    }
    for (i, c) in reply.tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                                   "function": {"name": c.name, "arguments": ""}}]}),
            None,
        ));
        let args: Vec<char> = arguments(c).chars().collect();
        for piece in args.chunks(5) {
            out.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece.iter().collect::<String>()}}]}),
                None,
            ));
        }
    }
    out.push(chunk(json!({}), Some(finish_reason(reply))));
    if let Some(usage) = usage(reply) {
        out.push(json!({"object": "chat.completion.chunk", "choices": [], "usage": usage}));
    }
    out
}
