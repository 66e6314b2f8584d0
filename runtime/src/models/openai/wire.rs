//! The chat-completions wire format: building the request body and reading a complete response.
//!
//! Kept apart from the HTTP code so the mapping can be tested without a server.

use serde_json::{Map, Value, json};

use crate::{Message, ToolRequest};
use kernel::ToolSpec;

/// What a response said, whether it came whole or streamed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    /// The assistant's text.
    pub content: Option<String>,
    /// Requested tool calls: (provider id, function name, raw arguments text).
    pub tool_calls: Vec<(String, String, String)>,
    /// Why the model stopped.
    pub finish_reason: Option<String>,
    /// (prompt tokens, completion tokens) when the server reported usage.
    pub usage: Option<(u64, u64)>,
}

/// The request body for one call.
pub fn request_body(
    model: &str,
    system: Option<&str>,
    transcript: &[Message],
    tools: &[ToolSpec],
    max_tokens: u32,
    stream: bool,
) -> Value {
    let mut messages = Vec::with_capacity(transcript.len() + 1);
    if let Some(system) = system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.extend(transcript.iter().map(message));
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(max_tokens));
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                }})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

fn message(m: &Message) -> Value {
    match m {
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Assistant { content, calls } => {
            if calls.is_empty() {
                json!({"role": "assistant", "content": content})
            } else {
                let calls: Vec<Value> = calls.iter().map(tool_call).collect();
                json!({"role": "assistant", "content": content, "tool_calls": calls})
            }
        }
        Message::Tool { call_ref, content } => {
            json!({"role": "tool", "tool_call_id": call_ref, "content": content})
        }
    }
}

fn tool_call(c: &ToolRequest) -> Value {
    json!({"id": c.call_ref, "type": "function", "function": {
        "name": c.name,
        "arguments": c.arguments.to_string(),
    }})
}

/// Reads a non-streamed response body; the error says what is missing or wrong.
pub fn parse_response(body: &str) -> Result<Completion, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("the server answered an error: {}", error_text(err)));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("no `choices[0]` in the response")?;
    let msg = choice
        .get("message")
        .ok_or("no `choices[0].message` in the response")?;
    let content = match msg.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`choices[0].message.content` is not a string".into()),
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = msg.get("tool_calls").filter(|c| !c.is_null()) {
        let calls = calls
            .as_array()
            .ok_or("`choices[0].message.tool_calls` is not an array")?;
        for (i, call) in calls.iter().enumerate() {
            let at = format!("`choices[0].message.tool_calls[{i}]`");
            let function = call
                .get("function")
                .ok_or(format!("{at} has no `function`"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or(format!("{at}.function has no string `name`"))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => "{}".into(),
                // Some servers send an object rather than its JSON text.
                Some(other) => other.to_string(),
            };
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            tool_calls.push((id, name.to_owned(), arguments));
        }
    }
    Ok(Completion {
        content,
        tool_calls,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        usage: usage(v.get("usage")),
    })
}

/// `usage.prompt_tokens` and `usage.completion_tokens`, when both are there.
pub fn usage(v: Option<&Value>) -> Option<(u64, u64)> {
    let u = v?;
    Some((
        u.get("prompt_tokens")?.as_u64()?,
        u.get("completion_tokens")?.as_u64()?,
    ))
}

/// The message of an OpenAI-style `error` object (or the value itself).
pub fn error_text(err: &Value) -> String {
    err.get("message")
        .and_then(Value::as_str)
        .map_or_else(|| err.to_string(), str::to_owned)
}

/// The completion both wire tests expect: one `lookup_order` call for `ord-1`.
#[cfg(test)]
pub(super) fn lookup_order_completion(usage: (u64, u64)) -> Completion {
    Completion {
        content: None,
        tool_calls: vec![(
            "c1".into(),
            "lookup_order".into(),
            "{\"order_id\":\"ord-1\"}".into(),
        )],
        finish_reason: Some("tool_calls".into()),
        usage: Some(usage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_maps_to_chat_messages_with_paired_tool_ids() {
        let transcript = vec![
            Message::User {
                content: "refund ord-1".into(),
            },
            Message::Assistant {
                content: None,
                calls: vec![ToolRequest {
                    call_ref: "ref-1".into(),
                    name: "lookup_order".into(),
                    arguments: json!({"order_id": "ord-1"}),
                }],
            },
            Message::Tool {
                call_ref: "ref-1".into(),
                content: "{\"amount\":100}".into(),
            },
        ];
        let body = request_body("m", Some("be brief"), &transcript, &[], 64, true);
        let msgs = body["messages"].as_array().map(Vec::len);
        assert_eq!(msgs, Some(4));
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "ref-1");
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"order_id\":\"ord-1\"}"
        );
        assert_eq!(body["messages"][3]["tool_call_id"], "ref-1");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn a_response_with_tool_calls_and_usage_is_read() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup_order",
            "arguments":"{\"order_id\":\"ord-1\"}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":12,"completion_tokens":7}}"#;
        let c = parse_response(body).map_err(|e| e.to_string());
        assert_eq!(c, Ok(lookup_order_completion((12, 7))));
    }

    #[test]
    fn malformed_responses_say_what_is_wrong() {
        for (body, says) in [
            ("<html>502</html>", "not JSON"),
            ("{}", "choices[0]"),
            (r#"{"choices":[{}]}"#, "message"),
            (r#"{"choices":[{"message":{"content":5}}]}"#, "not a string"),
            (
                r#"{"choices":[{"message":{"tool_calls":[{"function":{}}]}}]}"#,
                "tool_calls[0]`.function has no string `name`",
            ),
            (
                r#"{"error":{"message":"model not found"}}"#,
                "model not found",
            ),
        ] {
            let err = parse_response(body).err().unwrap_or_default();
            assert!(err.contains(says), "{body}: {err}");
        }
    }
}
