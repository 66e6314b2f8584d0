//! The snapshot form of an event stream: one canonical JSON line per event without `prev`, `hash`
//! and the bundle hashes `session_started` records, then the bundle and chain head once. A policy edit then
//! shows as the decisions it changed plus two trailer lines, not as every line of the log.

use kernel::Event;
use kernel::event::canonical_json;
use serde_json::Value;

/// Renders `events` for an `insta` snapshot.
pub fn render(events: &[Event]) -> String {
    let mut out = String::new();
    let mut bundle = None;
    for event in events {
        let mut value = serde_json::to_value(event).unwrap_or_default();
        if let Value::Object(map) = &mut value {
            map.remove("prev");
            map.remove("hash");
            map.remove("session");
            map.remove("tenant");
            let started = map.get("kind").and_then(Value::as_str) == Some("session_started");
            if started && let Some(Value::Object(payload)) = map.get_mut("payload") {
                bundle = payload.remove("bundle").or(bundle);
            }
        }
        out.push_str(&canonical_json(&value));
        out.push('\n');
    }
    if let Some(b) = bundle {
        out.push_str(&format!("# bundle {}\n", canonical_json(&b)));
    }
    if let Some(last) = events.last() {
        out.push_str(&format!("# head {} seq {}\n", last.hash, last.seq));
    }
    out
}
