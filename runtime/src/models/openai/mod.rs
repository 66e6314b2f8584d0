//! A [`Model`] speaking the OpenAI chat-completions protocol with tool calling, as OpenAI, vLLM,
//! Ollama and llama.cpp servers do, streamed or not.
//!
//! The adapter is stateless between calls: the runtime hands it the transcript each time. Failures
//! are classified for the `@max_retries` obligation: rate limits (429), server errors (5xx),
//! timeouts and broken connections are retryable; other 4xx answers and malformed bodies are not,
//! so the session fails with the reason instead of retrying a request that cannot succeed.

mod stream;
mod wire;

use serde_json::{Value, json};

use crate::tools::http_client;
use crate::{Estimate, Message, Model, ModelCall, ModelError, ModelFuture, ModelReply};
use kernel::Intent;
use kernel::ToolSpec;

/// Prices in micro-units per million tokens (the `Model` entity's `input_price`/`output_price`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pricing {
    /// Per million prompt tokens.
    pub input_price: u64,
    /// Per million completion tokens.
    pub output_price: u64,
}

impl Pricing {
    /// The cost of a call, rounded up to the micro-unit.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        let part = |tokens: u64, price: u64| {
            let micro = u128::from(tokens) * u128::from(price);
            u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX)
        };
        part(input_tokens, self.input_price).saturating_add(part(output_tokens, self.output_price))
    }
}

/// How to reach and use an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL up to and including the API version, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// The server's model name.
    pub model: String,
    /// Sent as a bearer token when set.
    pub api_key: Option<String>,
    /// An optional system prompt.
    pub system: Option<String>,
    /// The tools offered to the model (their JSON Schemas become function parameters).
    pub tools: Vec<ToolSpec>,
    /// Completion tokens asked for at most.
    pub max_tokens: u32,
    /// Ask for a streamed answer.
    pub stream: bool,
    /// Prices used for the reservation and the settlement.
    pub pricing: Pricing,
}

/// The adapter.
pub struct OpenAiModel {
    config: OpenAiConfig,
    client: reqwest::Client,
    url: String,
}

impl OpenAiModel {
    /// An adapter for `config`; fails only when the HTTP client cannot be built.
    pub fn new(config: OpenAiConfig) -> Result<Self, String> {
        let client = http_client()?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            client,
            url,
        })
    }

    async fn complete(&self, call: &ModelCall) -> Result<wire::Completion, ModelError> {
        let c = &self.config;
        let body = wire::request_body(
            &c.model,
            c.system.as_deref(),
            &call.transcript,
            &c.tools,
            c.max_tokens,
            c.stream,
        );
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &c.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await.map_err(|e| ModelError {
            message: format!("cannot reach {}: {}", self.url, error_chain(&e)),
            retryable: true,
            cost: 0,
        })?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (retry-after: {v})"))
                .unwrap_or_default();
            let text = response.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").map(wire::error_text))
                .unwrap_or_else(|| text.chars().take(200).collect());
            let code = status.as_u16();
            return Err(ModelError {
                message: format!("HTTP {code}{retry_after}: {detail}"),
                retryable: code == 408 || code == 429 || status.is_server_error(),
                cost: 0,
            });
        }
        let malformed = |e: String| ModelError {
            message: format!("malformed response from {}: {e}", self.url),
            retryable: false,
            cost: 0,
        };
        let broken = |e: reqwest::Error| ModelError {
            message: format!(
                "the response from {} broke off: {}",
                self.url,
                error_chain(&e)
            ),
            retryable: true,
            cost: 0,
        };
        if c.stream {
            let mut acc = stream::Accumulator::default();
            while let Some(bytes) = response.chunk().await.map_err(broken)? {
                acc.feed(&bytes).map_err(malformed)?;
            }
            acc.finish().map_err(malformed)
        } else {
            let text = response.text().await.map_err(broken)?;
            wire::parse_response(&text).map_err(malformed)
        }
    }

    fn reply(&self, completion: wire::Completion, transcript: &[Message]) -> ModelReply {
        let (input_tokens, output_tokens, measured) = match completion.usage {
            Some((i, o)) => (i, o, true),
            // No usage reported: charge the worst case we reserved rather than nothing.
            None => (
                prompt_tokens(transcript),
                u64::from(self.config.max_tokens),
                false,
            ),
        };
        let named: Vec<(&str, &str)> = completion
            .tool_calls
            .iter()
            .map(|(_, name, arguments)| (name.as_str(), arguments.as_str()))
            .collect();
        let (calls, answer) = next_steps(&named, completion.content.as_deref());
        let output = json!({
            "content": completion.content,
            "tool_calls": completion.tool_calls.iter().map(|(id, name, arguments)| {
                json!({"id": id, "name": name, "arguments": arguments})
            }).collect::<Vec<_>>(),
            "finish_reason": completion.finish_reason,
            "usage": if measured { "reported" } else { "estimated" },
        });
        ModelReply {
            input_tokens,
            output_tokens,
            cost: self.config.pricing.cost(input_tokens, output_tokens),
            output,
            calls,
            answer,
        }
    }
}

impl Model for OpenAiModel {
    /// A live model always has something to say until it answers; the reservation covers the
    /// prompt as estimated from the transcript plus the full `max_tokens`.
    fn next_estimate(&self, transcript: &[Message]) -> Option<Estimate> {
        let prompt = prompt_tokens(transcript);
        let completion = u64::from(self.config.max_tokens);
        Some(Estimate {
            tokens: prompt + completion,
            cost: self.config.pricing.cost(prompt, completion),
        })
    }

    fn skip(&self) {}

    fn plan_from_output(&self, output: &Value) -> Option<(Vec<Intent>, Option<String>)> {
        let calls = output.get("tool_calls")?.as_array()?;
        let named: Vec<(&str, &str)> = calls
            .iter()
            .map(|c| Some((c.get("name")?.as_str()?, c.get("arguments")?.as_str()?)))
            .collect::<Option<_>>()?;
        Some(next_steps(
            &named,
            output.get("content").and_then(Value::as_str),
        ))
    }

    fn call(&self, call: ModelCall) -> ModelFuture<'_> {
        Box::pin(async move {
            let completion = self.complete(&call).await?;
            Ok(self.reply(completion, &call.transcript))
        })
    }
}

/// The calls a reply asks for and, when it asks for none, its text as the final answer.
fn next_steps(calls: &[(&str, &str)], content: Option<&str>) -> (Vec<Intent>, Option<String>) {
    let intents: Vec<Intent> = calls
        .iter()
        .map(|(name, arguments)| Intent::CallTool {
            tool: (*name).to_owned(),
            // Unparseable arguments go to the kernel as text, which its schema check rejects
            // with a reason the model then sees.
            input: serde_json::from_str(arguments)
                .unwrap_or_else(|_| Value::String((*arguments).to_owned())),
            estimated_cost: 0,
        })
        .collect();
    let answer = intents
        .is_empty()
        .then(|| content.unwrap_or_default().to_owned());
    (intents, answer)
}

/// A deliberately high prompt estimate: one token per three bytes of text, plus overhead per
/// message. Tokenizers differ by model; over-reserving is safe, under-reserving is not.
fn prompt_tokens(transcript: &[Message]) -> u64 {
    let bytes: usize = transcript
        .iter()
        .map(|m| match m {
            Message::User { content } | Message::Tool { content, .. } => content.len(),
            Message::Assistant { content, calls } => {
                content.as_ref().map_or(0, String::len)
                    + calls
                        .iter()
                        .map(|c| c.name.len() + c.arguments.to_string().len())
                        .sum::<usize>()
            }
        })
        .sum();
    let overhead = transcript.len() * 8;
    u64::try_from(bytes / 3 + overhead).unwrap_or(u64::MAX)
}

/// An error with its causes, which reqwest keeps in `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_up_to_the_micro_unit() {
        let p = Pricing {
            input_price: 150_000,
            output_price: 600_000,
        };
        assert_eq!(p.cost(1_000_000, 0), 150_000);
        assert_eq!(p.cost(1, 1), 1 + 1);
        assert_eq!(p.cost(100, 10), 15 + 6);
        assert_eq!(p.cost(0, 0), 0);
        let huge = Pricing {
            input_price: u64::MAX,
            output_price: u64::MAX,
        };
        assert_eq!(huge.cost(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn the_estimate_grows_with_the_transcript() {
        let model = OpenAiModel::new(OpenAiConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            model: "m".into(),
            api_key: None,
            system: None,
            tools: Vec::new(),
            max_tokens: 100,
            stream: false,
            pricing: Pricing {
                input_price: 1_000_000,
                output_price: 1_000_000,
            },
        });
        let Ok(model) = model else {
            panic!("client");
        };
        let short = vec![Message::User {
            content: "hi".into(),
        }];
        let long = vec![Message::User {
            content: "x".repeat(3000),
        }];
        let (Some(a), Some(b)) = (model.next_estimate(&short), model.next_estimate(&long)) else {
            panic!("a live model always asks");
        };
        assert!(a.tokens >= 100 && b.tokens >= a.tokens + 1000);
        assert_eq!(b.cost, b.tokens);
    }
}
