//! The README's Python client: a LangGraph agent (examples/python/refund_agent.py) asks a real
//! `arbiter serve` on loopback before each model and tool call, reports each result and streams
//! the session's events; the refund its scripted model asks for is refused by policy and never
//! runs; the store it wrote verifies. Needs `examples/python/setup.sh` (the README's test command
//! runs it first); without its environment this test fails and says so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use serde_json::Value;

mod served;
use served::{Served, repo};

#[test]
fn a_langgraph_agent_asks_arbiter_before_each_step() {
    let python = repo().join("target/pyenv/bin/python");
    assert!(
        python.is_file(),
        "no Python environment for the example: run examples/python/setup.sh first"
    );
    let dir = std::env::temp_dir().join(format!("arbiter-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.toml");
    let token = served::token(&tokens);
    let db = dir.join("arbiter.db");
    let store = format!("sqlite:{}", db.display());
    let server = Served::start(&tokens, &["--store", &store]);
    let url = server.url.clone();

    let run = Command::new(&python)
        .arg(repo().join("examples/python/refund_agent.py"))
        .args(["--url", &url, "--token", &token, "--session", "lg-1"])
        .output()
        .unwrap();
    server.stop();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "completed", "{summary}");
    let decisions: Vec<(String, String)> =
        serde_json::from_value(summary["decisions"].clone()).unwrap();
    assert!(
        decisions.contains(&("lookup_order".into(), "allow".into())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("issue_refund".into(), "deny".into())),
        "{decisions:?}"
    );
    // The stream it read while running: every event, in order, to the end.
    let streamed: Vec<(u64, String)> = serde_json::from_value(summary["streamed"].clone()).unwrap();
    let seqs: Vec<u64> = streamed.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (0..streamed.len() as u64).collect::<Vec<_>>());
    assert_eq!(streamed.last().map(|e| e.1.as_str()), Some("completed"));
    // What the service stored verifies, and no refund ran.
    let verify = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["audit", "verify", &store])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    use runtime::store::SessionStore;
    let stored = runtime::store::sqlite::SqliteStore::open(&db)
        .unwrap()
        .load("shopco", "lg-1")
        .unwrap();
    assert_eq!(
        stored.events.len(),
        streamed.len(),
        "it streamed every stored event"
    );
    let refunds = stored
        .events
        .iter()
        .filter(|e| matches!(&e.body, kernel::event::EventBody::ToolCalled { tool, .. } if tool == "issue_refund"))
        .count();
    assert_eq!(refunds, 0, "the refused refund never ran");
    let _ = std::fs::remove_dir_all(&dir);
}
