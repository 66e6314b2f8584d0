//! The subprocess tool adapter against real processes: protocol, failures, timeouts and
//! cancellation with no orphans, and a scrubbed environment carrying only the tenant's credentials.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::died;
use runtime::{Credentials, SubprocessTool, Tool, ToolCall, ToolError};
use serde_json::{Value, json};

fn call(input: Value, credentials: BTreeMap<String, String>) -> ToolCall {
    ToolCall {
        call_id: "call-1".into(),
        attempt: 1,
        tenant: "acme".into(),
        session: "s-1".into(),
        input,
        credentials,
    }
}

fn sh(script: &str) -> SubprocessTool {
    SubprocessTool::new("sh", ["-c", script])
}

#[tokio::test]
async fn json_in_json_out() {
    let out = sh("cat")
        .call(call(json!({"a": [1, 2]}), BTreeMap::new()))
        .await;
    assert_eq!(out.map(|o| o.value), Ok(json!({"a": [1, 2]})));
}

#[tokio::test]
async fn failures_are_typed_and_retryability_follows_the_exit_status() {
    let temp = sh("echo 'upstream 503' >&2; exit 75")
        .call(call(json!({}), BTreeMap::new()))
        .await;
    assert!(
        matches!(&temp, Err(e) if e.retryable() && e.to_string().contains("upstream 503")),
        "{temp:?}"
    );
    let perm = sh("echo 'bad order id' >&2; exit 2")
        .call(call(json!({}), BTreeMap::new()))
        .await;
    assert!(
        matches!(&perm, Err(e) if !e.retryable() && e.to_string().contains("exit status 2")),
        "{perm:?}"
    );
    let junk = sh("echo 'not json'")
        .call(call(json!({}), BTreeMap::new()))
        .await;
    assert!(matches!(junk, Err(ToolError::Malformed(_))), "{junk:?}");
    let missing = SubprocessTool::new("/no/such/tool", Vec::<String>::new())
        .call(call(json!({}), BTreeMap::new()))
        .await;
    assert!(
        matches!(missing, Err(ToolError::Unavailable(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_hung_tool_is_killed_at_its_timeout_with_its_children() {
    let pidfile = std::env::temp_dir().join(format!("arbiter-hung-{}", std::process::id()));
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let tool = sh(&script);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_millis(300),
        tool.call(call(json!({}), BTreeMap::new())),
    )
    .await;
    assert!(result.is_err(), "the call must time out");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        died(pid).await,
        "the tool's child {pid} outlived the timeout"
    );
    let _ = std::fs::remove_file(pidfile);
}

#[tokio::test]
async fn cancelling_a_call_kills_the_process_group() {
    let pidfile = std::env::temp_dir().join(format!("arbiter-cancel-{}", std::process::id()));
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let task =
        tokio::spawn(async move { sh(&script).call(call(json!({}), BTreeMap::new())).await });
    for _ in 0..100 {
        if pidfile.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let _ = task.await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert!(died(pid).await, "orphan {pid} survived cancellation");
    let _ = std::fs::remove_file(pidfile);
}

#[tokio::test]
async fn the_environment_is_scrubbed_and_holds_only_the_tenants_credentials() {
    let mut creds = Credentials::default();
    creds.grant("acme", "env_dump", "CRM_TOKEN", "acme-secret");
    creds.grant("globex", "env_dump", "CRM_TOKEN", "globex-secret");
    let dump = SubprocessTool::new(
        "python3",
        [
            "-c",
            "import json, os, sys; json.dump(dict(os.environ), sys.stdout)",
        ],
    );

    let acme = dump
        .call(call(json!({}), creds.for_call("acme", "env_dump")))
        .await
        .expect("runs");
    let env = acme.value.as_object().expect("object");
    assert_eq!(env.get("CRM_TOKEN"), Some(&json!("acme-secret")));
    // The idempotency key names tenant and session: call ids repeat between sessions.
    assert_eq!(
        env.get("ARBITER_IDEMPOTENCY_KEY"),
        Some(&json!("acme/s-1/call-1"))
    );
    assert_eq!(env.get("ARBITER_SESSION"), Some(&json!("s-1")));
    assert!(env.contains_key("PATH"));
    assert!(
        !env.keys().any(|k| k.starts_with("CARGO")),
        "the driver's environment leaked: {env:?}"
    );
    assert!(!env.contains_key("HOME"));

    let initech = dump
        .call(call(json!({}), creds.for_call("initech", "env_dump")))
        .await
        .expect("runs");
    assert!(
        initech.value.get("CRM_TOKEN").is_none(),
        "a tenant without a grant gets no credential"
    );
    let globex = dump
        .call(call(json!({}), creds.for_call("globex", "env_dump")))
        .await
        .expect("runs");
    assert_eq!(globex.value.get("CRM_TOKEN"), Some(&json!("globex-secret")));
}
