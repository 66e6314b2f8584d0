//! Replay is deterministic and its logs verify, for every shipped scenario.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use kernel::event::{encode_jsonl, verify_jsonl};

#[test]
fn every_scenario_replays_to_identical_bytes_and_a_valid_chain() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for file in eval::scenario_files(&[root]).expect("scenarios") {
        let first = eval::run_file(&file).expect("runs").1;
        let second = eval::run_file(&file).expect("runs").1;
        let (a, b) = (encode_jsonl(&first.events), encode_jsonl(&second.events));
        assert_eq!(a, b, "{} is not deterministic", file.display());
        let summary = verify_jsonl(&a).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(summary.events, first.events.len());
    }
}

#[test]
fn a_run_whose_script_runs_out_stops_without_ending_the_session() {
    // Every model call is denied (a tight model-call limit), each turn is dropped, and the run
    // ends when the turns run out: the replay terminates without the session ending.
    let dir = std::env::temp_dir().join(format!("arbiter-replay-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("out.toml");
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::write(
        &file,
        format!(
            r#"name = "turns run out"
packs = ["demo"]
mode = "enforce"
policies = "{}"
policy_text = """
@id("t.no_models")
forbid (principal, action == Action::"call_model", resource);
"""

[session]
tenant = "acme"
user = "alice@acme"
agent = "assistant@acme"
budget = "acme"
model = "small"
request = "hi"

[[turns]]
answer = "unreachable"

[expect]
status = "running"
"#,
            policies.display()
        ),
    )
    .expect("write");
    let (_, run, failures) = eval::run_file(&file).expect("runs");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(run.status, kernel::Status::Running);
}

/// `log_only` lets denied calls run, but memory is kept per tenant: Northwind's read of
/// `contoso/kb` finds nothing, never Contoso's entry (issue 16, 4: the mode switched isolation off).
#[test]
fn log_only_does_not_switch_tenant_isolation_off() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("../scenarios/enterprise/log_only_keeps_tenants_apart.toml");
    let (_, run, failures) = eval::run_file(&file).expect("runs");
    assert!(failures.is_empty(), "{failures:?}");
    let loaded: Vec<&kernel::EventBody> = run
        .events
        .iter()
        .map(|e| &e.body)
        .filter(|b| matches!(b, kernel::EventBody::MemoryLoaded { .. }))
        .collect();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    let text = serde_json::to_string(loaded[0]).expect("json");
    assert!(!text.contains("secret"), "Contoso's entry leaked: {text}");
}
