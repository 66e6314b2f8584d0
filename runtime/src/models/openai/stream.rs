//! Server-sent events of a streamed chat completion, folded into one [`Completion`].
//!
//! Bytes arrive in arbitrary pieces; events end at a blank line. Tool calls arrive as fragments
//! keyed by `index` (id and name first, arguments in pieces), usage in a last chunk when asked for
//! with `stream_options.include_usage`.

use serde_json::Value;

use super::wire::{Completion, error_text, usage};

/// Accumulates a stream; feed it bytes, then [`Accumulator::finish`].
#[derive(Debug, Default)]
pub struct Accumulator {
    buffer: Vec<u8>,
    content: Option<String>,
    calls: Vec<(String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    done: bool,
}

impl Accumulator {
    /// Takes the next piece of the body.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.buffer.extend_from_slice(bytes);
        while let Some((end, sep)) = event_end(&self.buffer) {
            let event: Vec<u8> = self.buffer.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(event.get(..end).unwrap_or_default()).into_owned();
            self.event(&text)?;
        }
        Ok(())
    }

    fn event(&mut self, text: &str) -> Result<(), String> {
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            return Ok(()); // a comment or keep-alive
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(&data)
            .map_err(|e| format!("a streamed chunk is not JSON ({e}): {data:.200}"))?;
        if let Some(err) = chunk.get("error") {
            return Err(format!("the server streamed an error: {}", error_text(err)));
        }
        if let Some(u) = usage(chunk.get("usage")) {
            self.usage = Some(u);
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(()); // the usage-only last chunk has no choices
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(());
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.content.get_or_insert_with(String::new).push_str(text);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.call_fragment(call)?;
            }
        }
        Ok(())
    }

    fn call_fragment(&mut self, call: &Value) -> Result<(), String> {
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or("a streamed tool call has no `index`")?;
        if index == self.calls.len() {
            self.calls.push(Default::default());
        }
        let Some(slot) = self.calls.get_mut(index) else {
            return Err(format!("a streamed tool call skips to index {index}"));
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            slot.0 = id.to_owned();
        }
        if let Some(f) = call.get("function") {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                slot.1.push_str(name);
            }
            if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                slot.2.push_str(args);
            }
        }
        Ok(())
    }

    /// The completion, once the body has ended; a stream cut before `[DONE]` or a finish reason
    /// is an error, not a short answer.
    pub fn finish(mut self) -> Result<Completion, String> {
        if !self.buffer.iter().all(u8::is_ascii_whitespace) {
            let rest = String::from_utf8_lossy(&self.buffer).into_owned();
            self.event(&rest)?;
        }
        if !self.done && self.finish_reason.is_none() {
            return Err("the stream ended before the completion did".into());
        }
        if let Some(i) = self.calls.iter().position(|c| c.1.is_empty()) {
            return Err(format!("streamed tool call {i} has no function name"));
        }
        Ok(Completion {
            content: self.content,
            tool_calls: self.calls,
            finish_reason: self.finish_reason,
            usage: self.usage,
        })
    }
}

/// Where the first event in `buf` ends, and the separator's length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"arguments\":\"\"}}]}}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"order_id\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"ord-1\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\r\n\r\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":9}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn fragments_in_any_split_give_the_same_completion() {
        let bytes = STREAM.as_bytes();
        for piece in [1, 3, 7, 64, bytes.len()] {
            let mut acc = Accumulator::default();
            for chunk in bytes.chunks(piece) {
                assert_eq!(acc.feed(chunk), Ok(()));
            }
            let c = acc.finish();
            assert_eq!(
                c,
                Ok(super::super::wire::lookup_order_completion((30, 9))),
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn text_deltas_concatenate() {
        let mut acc = Accumulator::default();
        let s = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]";
        assert_eq!(acc.feed(s.as_bytes()), Ok(()));
        let c = acc.finish().map(|c| c.content);
        assert_eq!(c, Ok(Some("Hello".into())));
    }

    #[test]
    fn a_cut_or_garbled_stream_is_an_error() {
        let mut acc = Accumulator::default();
        let _ = acc.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
        assert!(acc.finish().is_err_and(|e| e.contains("ended before")));

        let mut acc = Accumulator::default();
        let e = acc.feed(b"data: {not json\n\n");
        assert!(e.is_err_and(|e| e.contains("not JSON")));

        let mut acc = Accumulator::default();
        let e = acc.feed(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n");
        assert!(e.is_err_and(|e| e.contains("overloaded")));

        let mut acc = Accumulator::default();
        let e = acc.feed(b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3}]}}]}\n\n");
        assert!(e.is_err_and(|e| e.contains("index 3")));
    }
}
