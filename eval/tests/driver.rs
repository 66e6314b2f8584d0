//! The async driver, fed the scenario's scripted model and tools on tokio's paused clock, produces
//! exactly the pure replay's event stream, for every shipped scenario.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use kernel::event::encode_jsonl;

#[tokio::test(start_paused = true)]
async fn the_driver_reproduces_every_scenario_byte_for_byte() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = eval::scenario_files(&[root]).expect("scenarios");
    assert!(files.len() >= 20);
    for file in files {
        let loaded = eval::load(&file).expect("loads");
        if !loaded.scenario.intents.is_empty() {
            continue; // raw-intent scenarios have no model or tools to drive
        }
        let deployment = Arc::new(eval::deployment(&loaded).expect("deploys"));
        let replayed = eval::replay(&loaded, Arc::clone(&deployment)).expect("replays");
        let driven = eval::scripted::run_on_runtime(&loaded, deployment)
            .await
            .expect("drives");
        assert_eq!(driven.status, replayed.status, "{}", file.display());
        let (a, b) = (encode_jsonl(&replayed.events), encode_jsonl(&driven.events));
        if a != b {
            let line = a
                .lines()
                .zip(b.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "{}: streams differ at event {line}\nreplay: {}\ndriver: {}",
                file.display(),
                a.lines().nth(line).unwrap_or("<end>"),
                b.lines().nth(line).unwrap_or("<end>")
            );
        }
    }
}
