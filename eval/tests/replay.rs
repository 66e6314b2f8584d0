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
    // Each turn's model call is denied (foreign agent), the turn dropped, and the run ends when
    // the turns run out: the replay terminates without the session ending.
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/enterprise/foreign_agent_denied.toml");
    let (_, run, failures) = eval::run_file(&file).expect("runs");
    assert!(failures.is_empty());
    assert_eq!(run.status, kernel::Status::Running);
}
